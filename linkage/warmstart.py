"""Warm start: begin tonight's community detection from last night's clusters.

Three steps around community detection (:func:`linkage.communities.detect_from_edges`), the
same for both engines: :func:`warm_detect` takes the engine's connected components and
Leiden (:data:`Components`, :data:`Leiden`) and does everything else itself.

0. Carry forward. Every connected component of two or more accounts gets a fingerprint
   (:func:`component_fingerprints`): 128 bits over its account ids, its edges and their
   exact weights, salted with the configuration, the code version and the number of
   erasures (``linkage forget`` changes stored memberships, so it ends every carry-forward).
   A component whose fingerprint was also a component of the previous run has not changed
   at all, so it keeps the previous run's clusters exactly (no Leiden, no strong-core
   step): *an untouched component never moves*. A run's fingerprints are published with it,
   in the same transaction (``store_meta`` key ``components:<run_id>``), and only the latest
   published run's are read. Only the components touched by new or changed evidence are
   recomputed; this is also what makes an incremental run (:mod:`linkage.incremental`)
   equal to a full one.
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

All steps are deterministic functions of tonight's graph and the previous run (memberships
and fingerprints), so the same input, configuration and previous run give the same clusters.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa

from linkage.communities import (
    Partition,
    components_of,
    connected_components,
    from_config,
    renumber_clusters,
)
from linkage.config import RunConfig
from linkage.edge_arrays import EdgeArrays

__all__ = [
    "FINGERPRINT_KEY", "Components", "Leiden", "cluster_quality", "component_fingerprints",
    "decode_fingerprints", "encode_fingerprints", "initial_labels", "keep_settled",
    "local_leiden", "unchanged_components", "vertex_hashes", "warm_detect",
]

log = logging.getLogger("linkage.warmstart")

FINGERPRINT_KEY = "components:{run_id}"
"""The ``store_meta`` key that holds a run's component fingerprints."""

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_EDGE = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps modulo 2**64, no warnings)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def vertex_hashes(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    """64 bits per account, in ``idx`` order, from the account id alone (content, not idx)."""
    col = con.execute("SELECT hash(account_id) AS h FROM accounts ORDER BY idx").fetchnumpy()
    return np.asarray(col["h"], dtype=np.uint64)


def component_fingerprints(edges: EdgeArrays, comp: np.ndarray, vertex_hash: np.ndarray,
                           salt: str) -> np.ndarray:
    """A 128-bit fingerprint (two uint64 columns) per connected component.

    The sum, modulo 2**64, of a mixed hash of every account and of every edge (its two
    accounts and the exact bits of its weight), in two independently salted lanes. Sums do
    not depend on order, so the fingerprint is a function of the component's content only.
    Components of one account get ``(0, 0)``.

    >>> e = EdgeArrays(4, np.array([0, 2]), np.array([1, 3]), np.array([0.5, 0.5]))
    >>> fp = component_fingerprints(e, np.array([0, 0, 1, 1]), np.arange(4, dtype=np.uint64),
    ...                             "s")
    >>> bool((fp[0] != fp[1]).any())
    True
    """
    n_comp = int(comp.max()) + 1 if comp.size else 0
    out = np.zeros((n_comp, 2), dtype=np.uint64)
    if not edges.src.size:
        return out
    digest = hashlib.sha256(salt.encode()).digest()
    for lane in range(2):
        s = np.uint64(int.from_bytes(digest[8 * lane:8 * lane + 8], "big"))
        hv = _mix(vertex_hash ^ s)
        he = _mix(_mix(hv[edges.src] + _EDGE) ^ hv[edges.dst]
                  ^ edges.weight.astype(np.float64).view(np.uint64))
        ce = comp[edges.src]
        for values, group in ((hv, comp), (he, ce)):
            order = np.argsort(group, kind="stable")
            g = group[order]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            out[g[starts], lane] += np.add.reduceat(values[order], starts)
    sizes = np.bincount(comp, minlength=n_comp)
    out[sizes < 2] = 0
    return out


def encode_fingerprints(fingerprints: np.ndarray) -> str:
    """The fingerprints of components of two or more accounts as text for ``store_meta``
    (sorted, compressed, base64)."""
    keep = fingerprints[(fingerprints != 0).any(axis=1)]
    keep = keep[np.lexsort((keep[:, 1], keep[:, 0]))]
    return base64.b64encode(zlib.compress(keep.astype("<u8").tobytes(), 6)).decode("ascii")


def decode_fingerprints(text: str) -> np.ndarray:
    """Inverse of :func:`encode_fingerprints`: a sorted ``(k, 2)`` uint64 array."""
    raw = zlib.decompress(base64.b64decode(text))
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(-1, 2)


def unchanged_components(fingerprints: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Per component: was it, byte for byte, a component of the previous run?

    >>> prev = np.array([[1, 2], [3, 4]], dtype=np.uint64)
    >>> now = np.array([[3, 4], [1, 5], [0, 0]], dtype=np.uint64)
    >>> unchanged_components(now, prev).tolist()
    [True, False, False]
    """
    if not previous.size or not fingerprints.size:
        return np.zeros(fingerprints.shape[0], dtype=bool)
    pos = np.searchsorted(previous[:, 0], fingerprints[:, 0])
    pos = np.minimum(pos, previous.shape[0] - 1)
    same = (previous[pos, 0] == fingerprints[:, 0]) & (previous[pos, 1] == fingerprints[:, 1])
    return same & (fingerprints != 0).any(axis=1)


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
    before = renumber_clusters(initial)  # once: it sorts every account
    start = _singletons_apart(before)
    after = _singletons_apart(found.cluster)
    n_start = int(start.max()) + 1
    n_after = int(after.max()) + 1
    # Overlap graph: one node per cluster of either partition, one edge per account.
    region_of = components_of(n_start + n_after, start, n_start + after)
    n_regions = int(region_of.max()) + 1
    gain = (np.bincount(region_of[n_start:], weights=cluster_quality(edges, after, resolution),
                        minlength=n_regions)
            - np.bincount(region_of[:n_start],
                          weights=cluster_quality(edges, start, resolution),
                          minlength=n_regions))
    region = region_of[start]
    # A region changed when some account has a different smallest fellow member.
    moved = np.zeros(n_regions, dtype=bool)
    moved[region[_anchor(found.cluster) != _anchor(before)]] = True
    keep = moved & (gain < min_gain)
    if not keep.any():
        return found, 0
    labels = np.where(keep[region], _offset(before, n), found.cluster)
    # An account kept in last night's cluster must still have evidence into it tonight: one
    # whose links there are gone leaves, whatever the quality says.
    own = _singletons_apart(labels)
    inside = own[edges.src] == own[edges.dst]
    linked = np.zeros(n, dtype=bool)
    linked[edges.src[inside]] = True
    linked[edges.dst[inside]] = True
    labels[~linked & keep[region]] = -1
    cluster = renumber_clusters(labels)
    return Partition(
        cluster=cluster,
        n_clusters=int(cluster.max() + 1) if cluster.max() >= 0 else 0,
        n_components=found.n_components,
        largest_component=found.largest_component,
        component=found.component,
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
        _, first, inverse = np.unique(labels[valid], return_index=True, return_inverse=True)
        out[valid] = valid[first][inverse]
    return out


def _offset(labels: np.ndarray, n: int) -> np.ndarray:
    """``labels`` moved above ``0..n-1`` so they cannot collide with another partition's."""
    return np.where(labels >= 0, labels + n, -1)


Components = Callable[[EdgeArrays], np.ndarray]
"""An engine's connected components: a component number per vertex of the edges, components
numbered by their smallest vertex (:func:`linkage.communities.connected_components`)."""

Leiden = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], Partition]
"""An engine's community detection, ``leiden(component, initial, fixed)``: the components of
:data:`Components`, the starting label per vertex (``None``: a cold start) and, per
component, ``True`` to keep ``initial`` there as it is (``None``: none kept). It must give
:func:`linkage.communities.from_config`'s partition for the same arguments."""


def local_leiden(con: duckdb.DuckDBPyConnection, edges: EdgeArrays, cfg: RunConfig) -> Leiden:
    """:data:`Leiden` in this process: :func:`linkage.communities.from_config` on ``edges``,
    each component seeded from its first account id in ``con``'s ``accounts``."""

    def leiden(component: np.ndarray, initial: np.ndarray | None,
               fixed: np.ndarray | None) -> Partition:
        names = con.execute("SELECT account_id FROM accounts ORDER BY idx").fetchnumpy()[
            "account_id"].tolist()
        return from_config(edges, cfg.communities, cfg.seed, initial=initial, names=names,
                           fixed=fixed, components=component)

    return leiden


def warm_detect(
    con: duckdb.DuckDBPyConnection,
    edges: EdgeArrays,
    cfg: RunConfig,
    previous: pa.Table | None,
    previous_fingerprints: str | None,
    *,
    salt: str,
    components: Components = connected_components,
    leiden: Leiden | None = None,
) -> tuple[Partition, str]:
    """Tonight's clusters from ``edges`` (accounts of ``con``) and the previous run.

    Steps 0-2 of the module docstring; ``previous`` is the previous run's memberships and
    ``previous_fingerprints`` its stored fingerprints (``None``: none kept). ``components``
    and ``leiden`` are the engine's (default: in this process, :func:`local_leiden`;
    :meth:`linkage.engines.Engine.communities` passes its own), and everything else, the
    fingerprints, the starting labels and the hysteresis, is this function's for every
    engine. Returns the partition and tonight's fingerprints, to be stored for
    the next run.
    """
    comm = cfg.communities
    if leiden is None:
        leiden = local_leiden(con, edges, cfg)
    comp = components(edges)
    fingerprints = component_fingerprints(edges, comp, vertex_hashes(con), salt)
    initial = initial_labels(con, previous, edges.n_vertices) if comm.warm_start else None
    fixed = None
    if initial is not None and comm.objective == "cpm" and previous_fingerprints:
        fixed = unchanged_components(fingerprints, decode_fingerprints(previous_fingerprints))
        log.info("warm start: %d of %d linked components unchanged, carried forward",
                 int(fixed.sum()), int((fingerprints != 0).any(axis=1).sum()))
    partition = leiden(comp, initial, fixed)
    if initial is not None and comm.objective == "cpm":
        partition, settled = keep_settled(edges, initial, partition,
                                          resolution=comm.resolution, min_gain=comm.warm_min_gain)
        log.info("warm start: %d regions kept last run's clusters", settled)
    return partition, encode_fingerprints(fingerprints)
