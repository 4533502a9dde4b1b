"""``python -m linkage`` is the same as the ``linkage`` command."""

from linkage.cli import main

main()
