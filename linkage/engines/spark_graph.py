"""Connected components and per-component Leiden on Spark DataFrames.

Connected components: large-star / small-star (Kiveris et al., "Connected Components in
MapReduce and Beyond", 2014). The edges are kept as pairs ``(a, b)``, ``a > b``. Large-star
links every neighbour larger than a vertex to the smallest vertex of its closed
neighbourhood; small-star links a vertex and its smaller neighbours to the smallest of them.
Both keep each component connected and its smallest vertex in it, and alternating them
reaches a forest of stars, each centred on its component's smallest vertex: the fixed point,
found when a round changes no pair. The paper bounds the rounds by O(log^2 n); they do not
grow with the components' longest paths as label propagation's do. Each step's pairs are
written as Parquet under the staging folder and read back, as Splink does: that cuts the
lineage and, unlike ``localCheckpoint``, the size estimate too. A checkpoint keeps the
estimate of the plan it came from, and Spark estimates a join's size as the product of its
sides', so the joins of every round would compound it until planning a round took longer
than running it (``docs/operations.md``, "Spark", has the rounds and times measured). Each
step's folder is deleted once the next is written. A run that still changes after
``engine.spark.max_rounds`` rounds stops with :class:`ConvergenceError` instead of looping.

Leiden: components are hashed into ``engine.spark.buckets`` groups; each group is one
``applyInPandas`` task that builds an igraph graph from its edge arrays and runs the same
community detection as the DuckDB engine (:func:`linkage.communities.from_config`). CPM's
quality is a sum over components, so grouping components does not change what is optimised.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from linkage.communities import Partition, from_config
from linkage.communities import connected_components as components_of
from linkage.config import CommunitiesConfig
from linkage.edge_arrays import EdgeArrays
from linkage.engines.spark_sql import delete_path, materialise
from linkage.errors import LinkageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from linkage.engines.spark_sql import SparkSQL

log = logging.getLogger("linkage.engines.spark")

__all__ = ["ConvergenceError", "bucket_labels", "connected_components", "spark_components",
           "spark_leiden"]


class ConvergenceError(LinkageError):
    """Connected components did not settle within ``engine.spark.max_rounds`` rounds."""

    exit_code = 1


def connected_components(edges: DataFrame, max_rounds: int, staging: str) -> DataFrame:
    """``(v, comp)`` for every vertex of ``edges(a, b)``: ``comp`` is the smallest vertex id
    of ``v``'s connected component. Isolated vertices (no edge) are not listed. Each step's
    pairs are written under ``staging/components-*``."""
    from pyspark.sql import functions as F

    spark = edges.sparkSession

    def written(df: DataFrame, name: str) -> DataFrame:
        return materialise(df, f"{staging}/components-{name}")

    def both_ways(pairs: DataFrame) -> DataFrame:
        return (pairs.select(F.col("a").alias("u"), F.col("b").alias("v"))
                .unionByName(pairs.select(F.col("b").alias("u"), F.col("a").alias("v"))))

    pairs = written(edges.select(F.greatest("a", "b").alias("a"), F.least("a", "b").alias("b"))
                    .where(F.col("a") != F.col("b")).distinct(), "round-0")
    for rounds in range(1, max_rounds + 1):
        # large-star: each neighbour v > u of u links to m(u), the smallest of u and its
        # neighbours
        nbr = both_ways(pairs)
        m = nbr.groupBy("u").agg(F.least(F.col("u"), F.min("v")).alias("m"))
        large = written(nbr.join(m, "u").where(F.col("v") > F.col("u"))
                        .select(F.col("v").alias("a"), F.col("m").alias("b")).distinct(),
                        f"large-{rounds}")
        # small-star: u and each of its smaller neighbours link to the smallest of them
        low = large.groupBy("a").agg(F.min("b").alias("m"))
        small = written(large.join(low, "a").where(F.col("b") != F.col("m"))
                        .select(F.col("b").alias("a"), F.col("m").alias("b"))
                        .unionByName(low.select("a", F.col("m").alias("b"))).distinct(),
                        f"round-{rounds}")
        delete_path(spark, f"{staging}/components-large-{rounds}")
        changed = (small.exceptAll(pairs).limit(1).count()
                   or pairs.exceptAll(small).limit(1).count())
        delete_path(spark, f"{staging}/components-round-{rounds - 1}")
        pairs = small
        if not changed:
            log.info("connected components: labels settled in %d rounds", rounds)
            return (both_ways(pairs).groupBy("u")
                    .agg(F.least(F.col("u"), F.min("v")).alias("comp"))
                    .withColumnRenamed("u", "v"))
    raise ConvergenceError(
        f"connected components still changing after engine.spark.max_rounds = {max_rounds} "
        "rounds; raise engine.spark.max_rounds (a chain of very long paths needs more)")


def bucket_labels(edges: pd.DataFrame, vertices: pd.DataFrame, cfg: CommunitiesConfig,
                  seed: int, warm: bool) -> pd.DataFrame:
    """Communities of the whole components in one bucket.

    ``edges(a, b, weight)`` and ``vertices(v, name, init, fixed)``: the account id, and with
    a warm start (``warm``) the starting label and whether the vertex's component is carried
    forward unchanged (:mod:`linkage.warmstart`). The bucket is renumbered ``0..k-1`` in
    vertex order, which keeps every component's vertex and edge order, so
    :func:`linkage.communities.from_config` sees each component exactly as it does on the
    whole graph. Returns ``(idx, rep)`` for every clustered vertex, ``rep`` being the
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
    comp = components_of(arrays)
    initial = fixed = None
    if warm:
        initial = vertices["init"].to_numpy(np.int64)
        fixed = np.zeros(int(comp.max()) + 1 if comp.size else 0, dtype=bool)
        fixed[comp] = vertices["fixed"].to_numpy(bool)
        if cfg.objective != "cpm" or not fixed.any():
            fixed = None
    cluster = from_config(arrays, cfg, seed, initial=initial, names=vertices["name"].tolist(),
                          fixed=fixed, components=comp).cluster
    clustered = np.flatnonzero(cluster >= 0)
    # clusters are numbered by their smallest vertex: first occurrence = representative
    _, first = np.unique(cluster[clustered], return_index=True)
    rep = ids[clustered[first]][cluster[clustered]]
    return pd.DataFrame({"idx": ids[clustered], "rep": rep})


def spark_components(sql: SparkSQL, n_vertices: int, max_rounds: int) -> np.ndarray:
    """Connected components of the ``edges`` table (saved as the table ``components``), as
    a component number per vertex, numbered by smallest vertex like
    :func:`linkage.communities.connected_components`."""
    comp = sql.save("components", connected_components(sql.table("edges").select("a", "b"),
                                                       max_rounds, sql.staging))
    members = comp.toArrow()
    smallest = np.arange(n_vertices, dtype=np.int64)  # an isolated vertex is its own component
    smallest[members.column("v").to_numpy()] = members.column("comp").to_numpy()
    return np.unique(smallest, return_inverse=True)[1].astype(np.int64)


def spark_leiden(sql: SparkSQL, component: np.ndarray, cfg: CommunitiesConfig, seed: int, *,
                 buckets: int, initial: np.ndarray | None = None,
                 fixed: np.ndarray | None = None) -> Partition:
    """Leiden per component of ``edges`` on the executors (components from
    :func:`spark_components`): :data:`linkage.warmstart.Leiden` on Spark. ``initial`` is per
    vertex and ``fixed`` per component (warm start)."""
    from pyspark.sql import functions as F

    n_vertices = int(component.shape[0])
    edges = sql.table("edges")
    comp = sql.table("components")
    # Modularity is not a sum over components: it needs the whole graph in one task.
    n_buckets = buckets if cfg.objective == "cpm" else 1

    def bucket(df: DataFrame) -> DataFrame:
        return df.withColumn("bucket", F.pmod(F.xxhash64("comp"), F.lit(n_buckets)))

    names = sql.table("accounts").select(F.col("idx").cast("long").alias("v"),
                                         F.col("account_id").alias("name"))
    vertices = bucket(comp).join(names, "v")
    warm = initial is not None
    if warm:
        state = pd.DataFrame({
            "v": np.arange(n_vertices, dtype=np.int64),
            "init": np.asarray(initial, dtype=np.int64),
            "fixed": (np.zeros(n_vertices, bool) if fixed is None
                      else np.asarray(fixed, bool)[component]),
        })
        vertices = vertices.join(sql.spark.createDataFrame(state), "v")
    else:
        vertices = (vertices.withColumn("init", F.lit(-1).cast("long"))
                    .withColumn("fixed", F.lit(False)))
    # the bucket computed twice, so that the two sides of the cogroup share no column
    keyed = bucket(edges.join(comp.select(F.col("v").alias("a"), "comp"), "a"))

    def run(e: pd.DataFrame, v: pd.DataFrame) -> pd.DataFrame:
        return bucket_labels(e, v, cfg, seed, warm)

    found = (keyed.select("bucket", "a", "b", "weight").groupBy("bucket")
             .cogroup(vertices.select("bucket", "v", "name", "init", "fixed").groupBy("bucket"))
             .applyInPandas(run, "idx long, rep long")
             .toArrow())
    idx = found.column("idx").to_numpy()
    rep = found.column("rep").to_numpy()
    cluster = np.full(n_vertices, -1, dtype=np.int64)
    reps = np.unique(rep)
    cluster[idx] = np.searchsorted(reps, rep)  # numbered by smallest vertex, as communities
    sizes = np.bincount(component) if n_vertices else np.zeros(0, dtype=np.int64)
    return Partition(
        cluster=cluster,
        n_clusters=int(reps.shape[0]),
        n_components=int(sizes.shape[0]),
        largest_component=int(sizes.max()) if n_vertices else 0,
        component=component,
    )
