"""Warm start: begin tonight's community detection from last night's clusters.

Two steps around :func:`linkage.communities.detect_communities`:

1. :func:`initial_labels` maps the previous run's memberships onto tonight's accounts:
   every account that was in a cluster starts in it, every other account (new, or a
   singleton last night) starts alone under a label of its own.
2. :func:`keep_settled` is hysteresis. Leiden is a randomised local search: started from last
   night's partition it still finds small "improvements" in parts of the graph where
   nothing changed, and every such move renames a case an analyst is working on. So in each
   region it changed (a set of accounts both partitions cut into whole clusters) tonight's
   result replaces the starting partition only when it is better by at least ``min_gain``
   in CPM quality
   (``sum_c w_c - resolution * n_c (n_c - 1) / 2``; the gain of keeping one more pair of
   accounts together at the resolution density is ``resolution``). Where the evidence
   changed, the starting partition is usually much worse (a cluster lost its links, a
   newcomer shares a card) and tonight's result wins.

Both steps are deterministic functions of tonight's graph and the previous memberships,
so the same input, configuration and previous run give the same clusters.
"""

from __future__ import annotations

import duckdb
import igraph as ig
import numpy as np
import pyarrow as pa

from linkage.communities import Partition, _renumber
from linkage.graph import EdgeArrays

__all__ = ["cluster_quality", "initial_labels", "keep_settled"]


def initial_labels(
    con: duckdb.DuckDBPyConnection, previous: pa.Table | None, n_vertices: int
) -> np.ndarray | None:
    """Leiden's starting membership per account ``idx`` from the previous run's memberships.

    ``None`` when there is no previous run (a cold start).
    """
    if previous is None or previous.num_rows == 0:
        return None
    con.register("warm_in", previous.select(["cluster_id", "account_id"]))
    try:
        seen = con.execute(
            """
            SELECT a.idx, dense_rank() OVER (ORDER BY w.cluster_id) - 1 AS label
            FROM accounts a JOIN warm_in w USING (account_id)
            """
        ).fetchnumpy()
    finally:
        con.unregister("warm_in")
    idx = np.asarray(seen["idx"], dtype=np.int64)
    labels = np.asarray(seen["label"], dtype=np.int64)
    n_labels = int(labels.max()) + 1 if labels.size else 0
    initial = np.arange(n_labels, n_labels + n_vertices, dtype=np.int64)
    initial[idx] = labels
    return initial


def cluster_quality(edges: EdgeArrays, own: np.ndarray, resolution: float) -> np.ndarray:
    """CPM quality per label of ``own`` (labels ``0..L-1``, singletons included):
    internal weight minus ``resolution`` per pair of members. Columnar, no loop per edge.

    Examples
    --------
    >>> e = EdgeArrays(3, np.array([0, 1]), np.array([1, 2]), np.array([1.0, 1.0]))
    >>> cluster_quality(e, np.array([0, 0, 0]), 0.5).tolist()
    [0.5]
    """
    n_labels = int(own.max()) + 1 if own.size else 0
    inside = own[edges.src] == own[edges.dst]
    quality = np.bincount(own[edges.src[inside]], weights=edges.weight[inside],
                          minlength=n_labels)
    size = np.bincount(own, minlength=n_labels).astype(np.float64)
    return quality - resolution * size * (size - 1) / 2.0


def keep_settled(
    edges: EdgeArrays, initial: np.ndarray, found: Partition, *, resolution: float,
    min_gain: float,
) -> tuple[Partition, int]:
    """Keep ``initial`` wherever ``found`` is not better by at least ``min_gain``.

    The comparison is made per *region*: a smallest set of accounts that both partitions
    cut into whole clusters (connected components of the overlap between the starting and
    the found clusters). CPM quality is a sum over clusters, so each region can keep one
    partition or the other independently. Returns the partition and how many regions that
    Leiden had changed kept their starting clusters.
    """
    n = found.cluster.shape[0]
    if n == 0:
        return found, 0
    start = _singletons_apart(_renumber(initial))
    after = _singletons_apart(found.cluster)
    n_start = int(start.max()) + 1
    n_after = int(after.max()) + 1
    # Overlap graph: one node per cluster of either partition, one edge per account.
    overlap = ig.Graph(n=n_start + n_after,
                       edges=np.column_stack([start, n_start + after]))
    region_of = np.asarray(overlap.connected_components().membership, dtype=np.int64)
    n_regions = int(region_of.max()) + 1
    gain = (np.bincount(region_of[n_start:], weights=cluster_quality(edges, after, resolution),
                        minlength=n_regions)
            - np.bincount(region_of[:n_start],
                          weights=cluster_quality(edges, start, resolution),
                          minlength=n_regions))
    region = region_of[start]
    # A region changed when some account has a different smallest fellow member.
    moved = np.zeros(n_regions, dtype=bool)
    moved[region[_anchor(found.cluster) != _anchor(_renumber(initial))]] = True
    keep = moved & (gain < min_gain)
    if not keep.any():
        return found, 0
    labels = np.where(keep[region], _offset(_renumber(initial), n), found.cluster)
    # An account kept in last night's cluster must still have evidence into it tonight: one
    # whose links there are gone leaves, whatever the quality says.
    own = _singletons_apart(labels)
    inside = own[edges.src] == own[edges.dst]
    linked = np.zeros(n, dtype=bool)
    linked[edges.src[inside]] = True
    linked[edges.dst[inside]] = True
    labels[~linked & keep[region]] = -1
    cluster = _renumber(labels)
    return Partition(
        cluster=cluster,
        n_clusters=int(cluster.max() + 1) if cluster.max() >= 0 else 0,
        n_components=found.n_components,
        largest_component=found.largest_component,
    ), int(keep.sum())


def _singletons_apart(labels: np.ndarray) -> np.ndarray:
    """Labels ``0..L-1`` with every singleton (``-1``) under a label of its own."""
    top = labels.max(initial=-1) + 1
    return np.where(labels >= 0, labels, top + np.arange(labels.shape[0]))


def _anchor(labels: np.ndarray) -> np.ndarray:
    """Each vertex's smallest fellow member (itself for a singleton)."""
    out = np.arange(labels.shape[0])
    valid = np.flatnonzero(labels >= 0)
    if valid.size:
        uniq, first = np.unique(labels[valid], return_index=True)
        out[valid] = valid[first][np.searchsorted(uniq, labels[valid])]
    return out


def _offset(labels: np.ndarray, n: int) -> np.ndarray:
    """``labels`` moved above ``0..n-1`` so they cannot collide with another partition's."""
    return np.where(labels >= 0, labels + n, -1)
