"""python-igraph, imported without its matplotlib plotting backend.

When matplotlib is installed (the ``bench`` extra), ``import igraph`` imports
``matplotlib.pyplot`` for its drawing module, which lengthens the start-up of every process
that builds a graph (``docs/benchmarks.md``). linkage never plots with igraph, so the first
import hides matplotlib from igraph (a ``None`` in :data:`sys.modules` makes its import fail,
and igraph falls back to a placeholder for plotting); matplotlib itself stays importable
afterwards. Modules use ``from linkage._igraph import ig``.
"""

from __future__ import annotations

import sys

if "igraph" not in sys.modules and "matplotlib" not in sys.modules:
    sys.modules["matplotlib"] = None  # type: ignore[assignment]
    try:
        import igraph  # noqa: F401  (the first import, with matplotlib hidden)
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]

import igraph as ig

__all__ = ["ig"]
