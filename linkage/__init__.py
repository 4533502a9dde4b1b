"""linkage: a graph-based account-linkage engine.

Account metadata becomes a weighted account graph; Leiden community detection finds operator
groups; every cluster is scored, explained and stored for audit. See ``docs/``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("linkage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
