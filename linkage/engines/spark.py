"""The Spark engine: ingest, signals, edges, components, Leiden and scoring's aggregates.

What runs where (``docs/operations.md``, "Spark"):

* Spark: ingest (the executors read the files; validation, normalisation and
  pseudonymisation are ingest's own SQL, :mod:`linkage.engines.spark_ingest`), the signals
  (``links``, ``keys``, ``key_members``) and the edge building (``edge_signals``, ``edges``:
  the self-join, the largest relational stage), from the same DuckDB-dialect SQL
  (:mod:`linkage.engines.spark_sql`); the MinHash bands of the set-similarity signals (their
  elements selected by the same SQL, the sets keyed by the same numpy function on the
  executors, :mod:`linkage.engines.spark_bands`); connected components and per-component
  Leiden (:mod:`linkage.engines.spark_graph`); scoring's per-cluster aggregates (``members``,
  ``cluster_keys``, ``intra_edges``, the features' aggregates and the usage scan,
  :func:`linkage.scoring.score_clusters`).
* The driver: the warm start's fingerprints and hysteresis, on the edges fetched as numpy
  arrays (:func:`linkage.graph.edge_arrays`); scoring's numpy and JSON (a row per cluster and each
  kind of evidence's intra-cluster pairs come back); continuity and the store write
  (DuckDB), exactly as with the default engine; ingest too for an incremental run (its
  state is DuckDB's).

What travels back to the driver's DuckDB, as Arrow: the ingest tables the driver's stages
read (:meth:`SparkEngine.ingest`: ``interactions``, the largest, stays on Spark unless the run
writes incremental state), and after scoring, in one place
(:meth:`SparkEngine.collect`), the evidence the store keeps: the rows of ``intra_edges``,
``edge_signals`` and ``cluster_keys`` of the clusters scored at least
``store.evidence_min_score``, as ``evidence_edges``, ``evidence_signals`` and
``evidence_keys`` (:data:`linkage.pipeline.EVIDENCE`; the DuckDB engine makes the same
tables with the same queries). ``links``, ``keys``,
``key_members`` and the rest of ``edge_signals`` stay on Spark; ``edges`` reach the driver
only as the numpy arrays above.

pyspark is an optional dependency, imported only here and only when the engine is chosen.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from linkage.config import IngestConfig, RunConfig, SparkConfig
from linkage.edge_arrays import EdgeArrays
from linkage.errors import ConfigError
from linkage.ingest import OUTPUT_SCHEMAS, IngestResult, ingest
from linkage.pseudonymise import Pseudonymiser
from linkage.stage_tables import INGEST_TABLES, TABLES
from linkage.warmstart import warm_detect

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from linkage.communities import Partition
    from linkage.engines.spark_sql import SparkSQL

log = logging.getLogger("linkage.engines.spark")

__all__ = ["SparkEngine", "require_pyspark", "session_settings",
           "spark_session"]

LOCAL_DRIVER_MEMORY = "4g"
"""``spark.driver.memory`` of a local session linkage starts, unless ``engine.spark.conf``
sets it."""


def require_pyspark() -> None:
    """Fail with a clear message (exit status 2) when pyspark is not installed."""
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"the Spark engine (engine.name = \"spark\", --engine spark) needs {exc.name}: "
            "pip install 'linkage[spark]'"
        ) from None


def spark_session(cfg: SparkConfig) -> SparkSession:
    """The active Spark session, else a new one: under ``spark-submit`` with its master and
    settings, otherwise on ``cfg.master`` with ``cfg.conf``."""
    require_pyspark()
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    # spark-submit starts the JVM first and this process from it, passing the JVM's address:
    # its --master and --conf then hold (a builder's master would override them)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if spark is None and submitted:
        spark = SparkSession.builder.appName("linkage").getOrCreate()
    elif spark is None:
        builder = SparkSession.builder.appName("linkage").master(cfg.master)
        if cfg.master.startswith("local"):
            # Python workers must import linkage, igraph and pandas: this interpreter has them.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in session_settings(cfg).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    # Time buckets are computed from UTC epochs, as DuckDB does (engines/duckdb.py).
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


def session_settings(cfg: SparkConfig) -> dict[str, str]:
    """The settings of a session linkage starts: for a local master, loopback addresses, no
    UI and :data:`LOCAL_DRIVER_MEMORY`; then ``cfg.conf``, which overrides them."""
    settings: dict[str, str] = {}
    if cfg.master.startswith("local"):
        settings.update({"spark.driver.host": "127.0.0.1",
                         "spark.driver.bindAddress": "127.0.0.1",
                         # the executors share the driver's JVM (Spark's 1g is too little
                         # from a few hundred thousand accounts on)
                         "spark.driver.memory": LOCAL_DRIVER_MEMORY,
                         "spark.ui.enabled": "false",
                         "spark.ui.showConsoleProgress": "false"})
    return {**settings, **cfg.conf}


class SparkEngine:
    """:class:`linkage.engines.Engine` on Spark: one run's staging folder, the SQL connection
    and the graph stages, around the driver's DuckDB."""

    def __init__(self, cfg: SparkConfig, spill: Path, driver: duckdb.DuckDBPyConnection
                 ) -> None:
        from linkage.engines.spark_sql import SparkSQL

        self.cfg = cfg
        self.driver = driver
        self.spark = spark_session(cfg)
        root = cfg.staging.rstrip("/") if cfg.staging else str(spill / "spark")
        self.staging = f"{root}/linkage-{uuid.uuid4().hex}"
        self.sql: SparkSQL = SparkSQL(self.spark, self.staging)
        self._ingested = False

    def ingest(self, input_dir: Path, cfg: IngestConfig, pseudo: Pseudonymiser, *,
               known: str | None = None, skip: tuple[str, ...] = ()) -> IngestResult:
        """:func:`linkage.ingest.ingest` on Spark (files read by the executors, checked,
        normalised and hashed there), then the output tables, except those in ``skip``,
        copied into the driver's DuckDB.

        The copy serves the stages that still run on the driver: continuity and the store
        write read ``accounts`` from DuckDB, and the incremental state every table. A run
        without state skips the rest (the pipeline's choice): the signals, the MinHash bands
        and scoring read them on Spark, so ``interactions`` never reaches the driver. The
        copy holds hashes and normalised values, not raw input. An incremental run
        (``known``) ingests on the driver, where its state is; :meth:`load` then copies the
        tables to Spark.
        """
        if known is not None:
            return ingest(self.driver, input_dir, cfg, pseudo, known=known)
        from linkage.engines.spark_ingest import load_table

        con = self.driver
        result = ingest(self.sql, input_dir, cfg, pseudo, load=load_table)
        for name in (t for t in INGEST_TABLES if t not in skip):
            schema = ", ".join(f"{c} {t}" for c, t in OUTPUT_SCHEMAS[name])
            columns = ", ".join(c for c, _ in OUTPUT_SCHEMAS[name])
            con.execute(f"CREATE OR REPLACE TABLE {name} ({schema})")
            con.register("spark_in", self.sql.table(name).select(
                *(c for c, _ in OUTPUT_SCHEMAS[name])).toArrow())
            try:
                # timestamps arrive with a UTC offset; the session time zone is UTC
                con.execute(f"INSERT INTO {name} SELECT {columns} FROM spark_in ORDER BY ALL")
            finally:
                con.unregister("spark_in")
        self._ingested = True
        return result

    def load(self) -> None:
        """Copy the ingest tables from DuckDB into Spark (Arrow, then Parquet in staging),
        unless :meth:`ingest` made them there (an incremental run ingests on DuckDB).

        Everything the signals stage needs is then on Spark: :func:`linkage.signals.build_links`
        on :attr:`sql` computes the MinHash bands of the prompt and activity_sync signals
        there too (:mod:`linkage.engines.spark_bands`).
        """
        if self._ingested:
            return
        for name in INGEST_TABLES:
            table = self.driver.sql(f"SELECT * FROM {name}").to_arrow_table()
            self.sql.save(name, self.spark.createDataFrame(table))

    def collect(self, tables: Mapping[str, str], *,
                send: Sequence[str] = ()) -> dict[str, int]:
        """The copy of stage rows from Spark back into the driver's DuckDB, after scoring.

        ``tables`` maps each table to create in ``con`` to the DuckDB-dialect query that
        fills it, run on Spark, whose ORDER BY gives the DuckDB engine's row order (Spark
        sorts, the rows arrive and are stored in that order). ``send`` names small tables of
        ``con`` those queries read (the clusters whose evidence is kept), copied to Spark
        first. Returns the number of rows copied per table.
        """
        con = self.driver
        for name in send:
            self.sql.register(name, con.sql(f"SELECT * FROM {name}").to_arrow_table())
        copied: dict[str, int] = {}
        for name, query in tables.items():
            rows = self.sql.execute(query).to_arrow_table()
            con.register("spark_out", rows)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM spark_out")
            finally:
                con.unregister("spark_out")
            copied[name] = rows.num_rows
        log.info("copied back from Spark: %s",
                 ", ".join(f"{name} {n:,} rows" for name, n in copied.items()))
        return copied

    def communities(self, edges: EdgeArrays, cfg: RunConfig, previous: pa.Table | None,
                    previous_fingerprints: str | None, *, salt: str
                    ) -> tuple[Partition, str]:
        """:func:`linkage.warmstart.warm_detect` with the engine's components and Leiden on
        Spark (:func:`~linkage.engines.spark_graph.spark_components`,
        :func:`~linkage.engines.spark_graph.spark_leiden`): the same warm start, the same
        functions per component, the same result."""
        from linkage.engines.spark_graph import spark_components, spark_leiden

        def components(e: EdgeArrays) -> np.ndarray:
            return spark_components(self.sql, e.n_vertices, self.cfg.max_rounds)

        def leiden(component: np.ndarray, initial: np.ndarray | None,
                   fixed: np.ndarray | None) -> Partition:
            return spark_leiden(self.sql, component, cfg.communities, cfg.seed,
                                buckets=self.cfg.buckets, initial=initial, fixed=fixed)

        return warm_detect(self.driver, edges, cfg, previous, previous_fingerprints, salt=salt,
                           components=components, leiden=leiden)

    def close(self) -> None:
        """Remove this run's views and staging folder (the session stays for the next run,
        the driver for its owner)."""
        for table in TABLES:  # every stage table of a run (linkage.stage_tables)
            self.spark.catalog.dropTempView(table.name)
        from linkage.engines.spark_sql import delete_path

        try:
            delete_path(self.spark, self.staging)
        except Exception as exc:  # never hide the run's own outcome behind a cleanup error
            log.warning("could not remove the Spark staging folder %s: %s", self.staging, exc)
