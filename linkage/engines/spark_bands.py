"""Keyed sets on Spark executors: the set-similarity signals' MinHash bands.

:func:`linkage.signals.prompt_bands` and :func:`~linkage.signals.activity_bands` select each
account's set elements with DuckDB-dialect SQL (run here through
:class:`~linkage.engines.spark_sql.SparkSQL`) and key the sets with a numpy function of whole
accounts (:func:`linkage.engines.key_sets`). On Spark the element rows are hash-partitioned by
account (``spark.sql.shuffle.partitions`` partitions) and sorted within each partition;
``mapInArrow`` then streams each partition through the very function the DuckDB engine calls
on the whole table, a few hundred thousand rows of whole accounts at a time (an account's rows
are held back until its last one has arrived). No element row reaches the driver; the keys
are written to the staging folder like any stage table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from linkage.engines import KeyFunction
    from linkage.engines.spark_sql import SparkSQL

__all__ = ["key_sorted_batches", "spark_key_sets"]

# Element rows keyed per call: enough that numpy's per-call overhead is small, few enough
# that a task's memory stays well under an executor's (16 bytes a row, times a few).
BATCH_ROWS = 1 << 18


def key_sorted_batches(batches: Iterator[pa.RecordBatch], key: KeyFunction,
                       batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """``key`` over ``(idx, e)`` batches sorted by ``idx``, called on whole accounts only: the
    rows of the last account seen are carried into the next call until a larger ``idx``
    shows that account complete."""
    held_idx: list[np.ndarray] = []
    held_e: list[np.ndarray] = []
    n_held = 0
    for batch in batches:
        held_idx.append(batch.column("idx").to_numpy().astype(np.int64))
        held_e.append(batch.column("e").to_numpy().astype(np.int64))
        n_held += batch.num_rows
        if n_held < batch_rows:
            continue
        idx, e = np.concatenate(held_idx), np.concatenate(held_e)
        cut = int(np.searchsorted(idx, idx[-1], side="left"))  # the last account may go on
        if cut:
            yield from key(idx[:cut], e[:cut]).to_batches()
        held_idx, held_e, n_held = [idx[cut:]], [e[cut:]], len(idx) - cut
    if n_held:
        idx, e = np.concatenate(held_idx), np.concatenate(held_e)
        yield from key(idx, e).to_batches()


def spark_key_sets(sql: SparkSQL, select: str, table: str, key: KeyFunction) -> int:
    """Create ``table(idx INTEGER, key VARCHAR)`` on Spark from ``key`` applied to the
    ``(idx, e)`` rows of the DuckDB-dialect ``select`` (:func:`linkage.engines.key_sets`);
    returns its number of rows."""
    from pyspark.sql import functions as F

    elements = sql.dataframe(select).select(
        F.col("idx").cast("int").alias("idx"), F.col("e").cast("long").alias("e"))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return key_sorted_batches(batches, key)

    keyed = (elements.repartition("idx").sortWithinPartitions("idx")
             .mapInArrow(run, "idx int, key string"))
    return int(sql.save(table, keyed).count())
