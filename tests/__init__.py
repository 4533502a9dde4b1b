"""The test suite (see the README's "Tests")."""

import os

# Rich fixes a console's width from COLUMNS when the console is made, and the command-line
# consoles are made when linkage.cli is imported: take the terminal's size out of the
# environment first, so that every test process (xdist's workers, whose environment carries
# COLUMNS and LINES, included) renders as a pipe does, whatever terminal started the run.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
