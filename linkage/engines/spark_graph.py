"""Connected components and per-component Leiden on Spark DataFrames.

Connected components: min-label propagation with pointer jumping. Every vertex starts with
the smallest id of its closed neighbourhood; each round it takes the smallest label among its
neighbours (propagation) and then its label's label (jumping, which roughly doubles the
distance a label travels per round). Labels only decrease and are vertex ids of the same
component, so the fixed point gives every component its smallest vertex id. Each round's
labels are checkpointed (lineage cut, as Splink does), and a run that still changes after
``engine.spark.max_rounds`` rounds stops with :class:`ConvergenceError` instead of looping.

Leiden: components are hashed into ``engine.spark.buckets`` groups; each group is one
``applyInPandas`` task that builds an igraph graph from its edge arrays and runs the same
community detection as the DuckDB engine (:func:`linkage.communities.from_config`). CPM's
quality is a sum over components, so grouping components does not change what is optimised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from linkage.communities import Partition, from_config
from linkage.config import CommunitiesConfig
from linkage.errors import LinkageError
from linkage.graph import EdgeArrays

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from linkage.engines.spark_sql import SparkSQL

__all__ = ["ConvergenceError", "bucket_labels", "connected_components", "detect_on_spark"]


class ConvergenceError(LinkageError):
    """Connected components did not settle within ``engine.spark.max_rounds`` rounds."""

    exit_code = 1


def connected_components(edges: DataFrame, max_rounds: int) -> DataFrame:
    """``(v, comp)`` for every vertex of ``edges(a, b)``: ``comp`` is the smallest vertex id
    of ``v``'s connected component. Isolated vertices (no edge) are not listed."""
    from pyspark.sql import functions as F

    nbr = (edges.select(F.col("a").alias("v"), F.col("b").alias("u"))
           .unionByName(edges.select(F.col("b").alias("v"), F.col("a").alias("u")))
           .localCheckpoint())
    labels = (nbr.groupBy("v").agg(F.least(F.col("v"), F.min("u")).alias("l"))
              .localCheckpoint())
    for _ in range(max_rounds):
        seen = (nbr.join(labels.select(F.col("v").alias("u"), F.col("l").alias("lu")), "u")
                .groupBy("v").agg(F.min("lu").alias("m")))
        step = labels.join(seen, "v").select("v", F.least("l", "m").alias("l"))
        # every label is a vertex of the same component, so the self-join loses no vertex
        jumped = (step.alias("x").join(step.alias("y"), F.col("x.l") == F.col("y.v"))
                  .select(F.col("x.v").alias("v"), F.col("y.l").alias("l"))
                  .localCheckpoint())
        changed = (jumped.join(labels.withColumnRenamed("l", "old"), "v")
                   .where(F.col("l") != F.col("old")).limit(1).count())
        labels = jumped
        if not changed:
            return labels.withColumnRenamed("l", "comp")
    raise ConvergenceError(
        f"connected components still changing after engine.spark.max_rounds = {max_rounds} "
        "rounds; raise engine.spark.max_rounds (a chain of very long paths needs more)")


def bucket_labels(edges: pd.DataFrame, vertices: pd.DataFrame, cfg: CommunitiesConfig,
                  seed: int) -> pd.DataFrame:
    """Communities of the whole components in one bucket.

    ``edges(a, b, weight)`` and ``vertices(v, name)`` (``name``: the account id). The bucket
    is renumbered ``0..k-1`` in vertex order, which keeps every component's vertex and edge
    order, so :func:`linkage.communities.from_config` sees each component exactly as it does
    on the whole graph. Returns ``(idx, rep)`` for every clustered vertex, ``rep`` being the
    smallest vertex of its cluster, so labels from different buckets never collide.
    """
    vertices = vertices.sort_values("v", kind="stable")
    ids = vertices["v"].to_numpy(np.int64)
    edges = edges.sort_values(["a", "b"], kind="stable")
    arrays = EdgeArrays(
        n_vertices=int(ids.shape[0]),
        src=np.searchsorted(ids, edges["a"].to_numpy(np.int64)),
        dst=np.searchsorted(ids, edges["b"].to_numpy(np.int64)),
        weight=edges["weight"].to_numpy(np.float64),
    )
    cluster = from_config(arrays, cfg, seed, names=vertices["name"].tolist()).cluster
    clustered = np.flatnonzero(cluster >= 0)
    # clusters are numbered by their smallest vertex: first occurrence = representative
    _, first = np.unique(cluster[clustered], return_index=True)
    rep = ids[clustered[first]][cluster[clustered]]
    return pd.DataFrame({"idx": ids[clustered], "rep": rep})


def detect_on_spark(sql: SparkSQL, cfg: CommunitiesConfig, seed: int, n_vertices: int, *,
                    buckets: int, max_rounds: int) -> Partition:
    """Components and Leiden of the ``edges`` table, as a :class:`Partition` on the driver."""
    from pyspark.sql import functions as F

    edges = sql.table("edges")
    comp = sql.save("components", connected_components(edges.select("a", "b"), max_rounds))
    # Modularity is not a sum over components: it needs the whole graph in one task.
    n_buckets = buckets if cfg.objective == "cpm" else 1

    def bucket(df: DataFrame) -> DataFrame:
        return df.withColumn("bucket", F.pmod(F.xxhash64("comp"), F.lit(n_buckets)))

    names = sql.table("accounts").select(F.col("idx").cast("long").alias("v"),
                                         F.col("account_id").alias("name"))
    vertices = bucket(comp).join(names, "v").select("bucket", "v", "name")
    # the bucket computed twice, so that the two sides of the cogroup share no column
    keyed = bucket(edges.join(comp.select(F.col("v").alias("a"), "comp"), "a"))

    def run(e: pd.DataFrame, v: pd.DataFrame) -> pd.DataFrame:
        return bucket_labels(e, v, cfg, seed)

    found = (keyed.select("bucket", "a", "b", "weight").groupBy("bucket")
             .cogroup(vertices.groupBy("bucket"))
             .applyInPandas(run, "idx long, rep long")
             .toArrow())
    idx = found.column("idx").to_numpy()
    rep = found.column("rep").to_numpy()
    cluster = np.full(n_vertices, -1, dtype=np.int64)
    reps = np.unique(rep)
    cluster[idx] = np.searchsorted(reps, rep)  # numbered by smallest vertex, as communities

    members = comp.toArrow()
    smallest = np.arange(n_vertices, dtype=np.int64)  # an isolated vertex is its own component
    smallest[members.column("v").to_numpy()] = members.column("comp").to_numpy()
    _, component = np.unique(smallest, return_inverse=True)  # numbered by smallest vertex
    sizes = np.bincount(component) if n_vertices else np.zeros(0, dtype=np.int64)
    return Partition(
        cluster=cluster,
        n_clusters=int(reps.shape[0]),
        n_components=int(sizes.shape[0]),
        largest_component=int(sizes.max()) if n_vertices else 0,
        component=component.astype(np.int64),
    )
