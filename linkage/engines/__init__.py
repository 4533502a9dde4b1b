"""Relational engines behind one entry point.

The relational stages (ingest, signals, edges, cluster aggregates) run as SQL on an engine
connection. DuckDB, in-process, is the default and the only engine so far; a Spark engine
will sit beside it behind :func:`connect`.
"""

from __future__ import annotations

from linkage.engines.duckdb import connect_duckdb

__all__ = ["connect_duckdb"]
