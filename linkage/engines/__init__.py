"""Relational engines behind one boundary: every difference between engines lives here.

The relational stages (ingest, signals, edges, scoring's per-cluster aggregates) run as SQL
written once, in DuckDB's dialect, on a :class:`SQLConnection`, and never ask which engine
that is. DuckDB, in-process, is the default (:mod:`linkage.engines.local`); the Spark engine
(:mod:`linkage.engines.spark`, ``pip install 'linkage[spark]'``) runs the same statements on a
Spark cluster through :class:`linkage.engines.spark_sql.SparkSQL`. What a stage needs beyond
SQL is an operation of this package: :func:`key_sets` (a numpy function applied to each
account's rows, where the rows are), and the run-level steps of an :class:`Engine` (ingest,
communities, copying the evidence to the driver), chosen once by :func:`open_engine`.
Scoring's numpy and JSON, continuity and the store write work on the driver's DuckDB with
either engine; with Spark, what they read of the stage tables is copied back once, after
scoring (``docs/operations.md``, "Spark").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
from duckdb import DuckDBPyConnection

from linkage.engines.duckdb import connect_duckdb
from linkage.engines.spill import spill_folder

if TYPE_CHECKING:
    from linkage.communities import Partition
    from linkage.config import EngineConfig, IngestConfig, RunConfig
    from linkage.edge_arrays import EdgeArrays
    from linkage.ingest import IngestResult
    from linkage.pseudonymise import Pseudonymiser

__all__ = ["Engine", "KeyFunction", "SQLConnection", "connect_duckdb", "drop_temp_tables",
           "in_file_order", "key_sets", "open_engine", "spill_folder"]


class SQLConnection(Protocol):
    """What a relational stage may ask of its connection: DuckDB-dialect statements."""

    def execute(self, sql: str, parameters: Any = None, /) -> SQLConnection: ...

    def executemany(self, sql: str, parameters: Any, /) -> SQLConnection: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchnumpy(self) -> dict[str, Any]: ...

    def register(self, view_name: str, python_object: Any, /) -> Any: ...

    def unregister(self, view_name: str, /) -> Any: ...


class Engine(Protocol):
    """One run's relational engine: where the stages' SQL runs (:attr:`sql`) and the steps
    whose work differs between engines. The driver's DuckDB (:attr:`driver`) holds what the
    driver-side stages (continuity, the store write) read, with every engine."""

    @property
    def driver(self) -> DuckDBPyConnection:
        """The driver's DuckDB."""
        ...

    @property
    def sql(self) -> SQLConnection:
        """Where the stages' SQL runs and their tables are."""
        ...

    def ingest(self, input_dir: Path, cfg: IngestConfig, pseudo: Pseudonymiser, *,
               known: str | None = None, skip: tuple[str, ...] = ()) -> IngestResult:
        """:func:`linkage.ingest.ingest` into :attr:`sql`; the driver then holds every output
        table but those in ``skip``. With ``known`` (an incremental run) it runs on the
        driver, whose state it builds on."""
        ...

    def load(self) -> None:
        """Make the ingest tables readable on :attr:`sql` (they are already, unless
        :meth:`ingest` ran on the driver)."""
        ...

    def communities(self, edges: EdgeArrays, cfg: RunConfig, previous: pa.Table | None,
                    previous_fingerprints: str | None, *, salt: str
                    ) -> tuple[Partition, str]:
        """:func:`linkage.warmstart.warm_detect` with this engine's components and Leiden."""
        ...

    def collect(self, tables: Mapping[str, str], *,
                send: Sequence[str] = ()) -> dict[str, int]:
        """Create each table of ``tables`` on the driver from its DuckDB-dialect query run on
        :attr:`sql`, rows in the query's order, after copying the driver's tables ``send``
        to :attr:`sql`; returns the rows per table."""
        ...

    def close(self) -> None:
        """Release what the run used on the engine (the driver stays open)."""
        ...


def open_engine(cfg: EngineConfig, spill: Path, driver: DuckDBPyConnection) -> Engine:
    """The configured engine for one run, around the driver's DuckDB ``driver`` (pyspark is
    imported only when ``cfg.name`` is ``"spark"``)."""
    if cfg.name == "spark":
        from linkage.engines.spark import SparkEngine

        return SparkEngine(cfg.spark, spill, driver)
    from linkage.engines.local import DuckDBEngine

    return DuckDBEngine(driver)


KeyFunction = Callable[[np.ndarray, np.ndarray], pa.Table]
"""A function of whole accounts' rows ``(idx, e)`` (sorted by ``idx``) to a table of
``(idx INTEGER, key VARCHAR)`` rows that depends on each account's rows alone."""


def key_sets(con: SQLConnection, select: str, table: str, key: KeyFunction) -> int:
    """Create ``table(idx INTEGER, key VARCHAR)`` on ``con`` from ``key`` applied to the
    ``(idx, e BIGINT)`` rows of the DuckDB-dialect ``select``; returns its number of rows.

    On DuckDB the rows come to Python ordered by account and are keyed in one call; on Spark
    (:func:`linkage.engines.spark_bands.spark_key_sets`) they stay on the executors,
    partitioned by account, and each partition is keyed by the same function.
    """
    if not isinstance(con, DuckDBPyConnection):
        from linkage.engines.spark_bands import spark_key_sets
        from linkage.engines.spark_sql import SparkSQL

        if not isinstance(con, SparkSQL):
            raise TypeError(f"no keyed sets on {type(con).__name__}")
        return spark_key_sets(con, select, table, key)
    got = con.execute(select + " ORDER BY idx").fetchnumpy()
    keyed = key(np.asarray(got["idx"]), np.asarray(got["e"]))
    con.register("keyed_in", keyed)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT idx, key FROM keyed_in")
    finally:
        con.unregister("keyed_in")
    return keyed.num_rows


@contextlib.contextmanager
def in_file_order(con: SQLConnection) -> Iterator[None]:
    """Within the block, ``con`` reads timestamps in UTC and keeps rows in the order they were
    inserted (CSV row numbers are insertion order); its settings are restored afterwards. An
    engine other than DuckDB sees to both in its reader."""
    if not isinstance(con, DuckDBPyConnection):
        yield
        return
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB keeps insertion order only with this setting (an engine may turn it off to save
    # memory)
    ((keep,),) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()
    con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(keep)}")


def drop_temp_tables(con: SQLConnection, prefix: str, names: Sequence[str]) -> None:
    """Drop every temporary table of ``con`` whose name starts with ``prefix``: found in
    DuckDB's catalogue, on another engine the ``names`` given."""
    if isinstance(con, DuckDBPyConnection):
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, ?)",
            [prefix]).fetchall()]
    for name in names:
        con.execute(f"DROP TABLE IF EXISTS {name}")
