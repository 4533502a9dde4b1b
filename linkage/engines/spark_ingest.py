"""Ingest's file reading on Spark: the executors read the input files into staging tables.

:func:`linkage.ingest.ingest` with the Spark engine's connection
(:class:`~linkage.engines.spark_sql.SparkSQL`) and :func:`load_table` as its reader runs
every step of ingest on Spark: this module reads the files, and the checks, the
normalisation and the keyed hashes are ingest's own SQL, transpiled. The driver only lists
the files, reads each CSV header and each Parquet footer (to match columns and report
file-level problems exactly as the DuckDB engine does) and fetches the few problems shown.

Row numbers, which every problem names:

* **Parquet**: Spark's ``_metadata.row_index``, plus one (DuckDB's ``file_row_number + 1``).
* **CSV** is read with ``multiLine`` (a quoted field may hold a line break, as DuckDB
  allows), which never splits a file: each file is read whole, in order, by one task, so
  ``monotonically_increasing_id()`` counts its rows consecutively, and the data row is that
  id less the file's smallest, plus one. Files are the unit of parallelism: a large table
  should come as a folder of part files, as upstream jobs write them.

Files with the same columns are read together in one Spark job. When the read fails (a
malformed CSV, a file that is not Parquet), the files of that job are read one at a time to
name the bad one.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import duckdb

from linkage.config import IngestConfig
from linkage.errors import InputProblem
from linkage.ingest import normalise as nz

# the DuckDB reader's own steps of describing a file and matching its columns: the engines
# must agree on every file-level problem
from linkage.ingest.read import (
    InputFile,
    TableSpec,
    match_columns,
    matching_files,
    quote_identifier,
    stage_name,
    stage_select,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from linkage.engines.spark_sql import SparkSQL

__all__ = ["load_table"]

log = logging.getLogger("linkage.ingest")

_SOURCE = "_lk_ingest_source"


def load_table(sql: SparkSQL, spec: TableSpec, files: list[InputFile],
               cfg: IngestConfig) -> tuple[list[InputProblem], bool]:
    """:func:`linkage.ingest.read.load_table` on Spark: the same staging table, the same
    file-level problems (a CSV that Spark cannot parse is reported with Spark's reason)."""
    from pyspark.errors import AnalysisException

    stage = stage_name(spec.name)
    cols = ", ".join(f'"{n}" {t}' for n, t in spec.stage_columns())
    sql.execute(f"CREATE OR REPLACE TEMP TABLE {stage} (_file INTEGER, _row BIGINT, {cols})")
    problems: list[InputProblem] = []
    groups: dict[tuple[bool, tuple[tuple[str, str], ...]], list[InputFile]] = {}
    layout: tuple[tuple[str, str], ...]
    meta = duckdb.connect()  # CSV headers and Parquet footers only, on the driver
    try:
        for f, columns, _ in matching_files(meta, spec, files, problems):
            layout = tuple(columns)
            groups.setdefault((f.form == "parquet", layout), []).append(f)
    finally:
        meta.close()
    for (parquet, layout), group in groups.items():
        try:
            _read(sql, spec, group, list(layout), cfg, stage, parquet)
        except AnalysisException:
            raise  # a query that does not compile is a bug here, not bad input
        except Exception as exc:  # reading failed: Spark's errors have no narrower base
            for f in group if len(group) > 1 else []:
                try:
                    _read(sql, spec, [f], list(layout), cfg, stage, parquet)
                except AnalysisException:
                    raise
                except Exception as one:
                    problems.append(_unreadable(spec, f, one))
            if len(group) == 1:
                problems.append(_unreadable(spec, group[0], exc))
        finally:
            sql.drop(_SOURCE)
    return problems, not problems


def _unreadable(spec: TableSpec, f: InputFile, exc: Exception) -> InputProblem:
    what = "Parquet" if f.form == "parquet" else "CSV"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = nz.redact_card_numbers(text.replace(str(f.path), f.rel))
    if len(text) > 300:
        text = text[:299] + "…"
    return InputProblem(spec.name, f.rel, None, None, None, f"cannot read as {what}: {text}")


def _key(path: str) -> str:
    """A file's URI as Spark's ``_metadata.file_path`` spells it, without the scheme's
    slashes (``file:/x`` there, ``file:///x`` from Hadoop's qualified path)."""
    return re.sub("^file:/+", "/", path)


def _read(sql: SparkSQL, spec: TableSpec, group: list[InputFile],
          columns: list[tuple[str, str]], cfg: IngestConfig, stage: str, parquet: bool) -> None:
    """Read files of one layout and append their staging rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = sql.spark
    matched, _, _ = match_columns(spec, group[0], columns)
    paths = [str(f.path) for f in group]
    df: DataFrame
    if parquet:
        df = spark.read.parquet(*paths)
        df = df.select("*", F.col("_metadata.file_path").alias("_lk_path"),
                       (F.col("_metadata.row_index") + 1).alias("_lk_row"))
        names = {c: quote_identifier(columns[i][0]) for c, (i, _) in matched.items()}
    else:
        # Positional names (c0, c1 …), as DuckDB's reader: odd header text stays out of SQL.
        schema = ", ".join(f"c{i} STRING" for i in range(len(columns)))
        df = (spark.read.schema(schema)
              .options(header=True, multiLine=True, sep=",", quote='"', escape='"',
                       encoding="UTF-8", mode="FAILFAST", enforceSchema=True,
                       ignoreLeadingWhiteSpace=False, ignoreTrailingWhiteSpace=False,
                       unescapedQuoteHandling="RAISE_ERROR",
                       maxCharsPerColumn=int(cfg.max_line_bytes))
              .csv(paths))
        by_file = Window.partitionBy("_lk_path")
        df = (df.select("*", F.col("_metadata.file_path").alias("_lk_path"),
                        F.monotonically_increasing_id().alias("_lk_id"))
              .withColumn("_lk_row", F.col("_lk_id") - F.min("_lk_id").over(by_file) + 1)
              .drop("_lk_id"))
        names = {c: f"c{i}" for c, (i, _) in matched.items()}
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    numbers = []
    for f in group:
        path = jvm.org.apache.hadoop.fs.Path(str(f.path))
        uri = path.getFileSystem(conf).makeQualified(path).toUri().toString()
        numbers.append((_key(uri), f.number))
    files = spark.createDataFrame(numbers, "_lk_key string, _lk_file int")
    df = (df.withColumn("_lk_key", F.regexp_replace("_lk_path", "^file:/+", "/"))
          .join(F.broadcast(files), "_lk_key"))
    df.createOrReplaceTempView(_SOURCE)
    targets, select = stage_select(spec, matched, names, cfg, _SOURCE, "_lk_file")
    sql.execute(f"INSERT INTO {stage} ({', '.join(targets)}) {select}")
