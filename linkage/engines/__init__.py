"""Relational engines behind one entry point.

The relational stages (ingest, signals, edges, scoring's per-cluster aggregates) run as SQL
written once, in DuckDB's dialect, on a :class:`SQLConnection`. DuckDB, in-process, is the
default; the Spark engine (:mod:`linkage.engines.spark`, ``pip install 'linkage[spark]'``)
runs the same statements on a Spark cluster through
:class:`linkage.engines.spark_sql.SparkSQL`. Scoring's numpy and JSON, continuity and the
store write work on the driver's DuckDB in both; with Spark, what they read of the stage
tables is copied back once, after scoring (``docs/operations.md``, "Spark").
"""

from __future__ import annotations

from typing import Any, Protocol

from linkage.engines.duckdb import connect_duckdb

__all__ = ["SQLConnection", "connect_duckdb"]


class SQLConnection(Protocol):
    """What a relational stage may ask of its connection: DuckDB-dialect statements."""

    def execute(self, sql: str, parameters: Any = None, /) -> SQLConnection: ...

    def executemany(self, sql: str, parameters: Any, /) -> SQLConnection: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchnumpy(self) -> dict[str, Any]: ...

    def register(self, view_name: str, python_object: Any, /) -> Any: ...

    def unregister(self, view_name: str, /) -> Any: ...
