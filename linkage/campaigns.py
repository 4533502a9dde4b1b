"""Campaigns: flagged clusters that are pieces of one operator's fleet get one ``campaign_id``.

Community detection optimises a local objective (CPM: a cluster is kept while its internal
evidence density exceeds the resolution), so one operator's fleet, held together by many
sparse rings, may come out as several flagged clusters that still share devices, cards or
BIN + postal codes. Nothing in the partition relates those pieces; this stage does, from the
same edges, after scoring.

Input: the run's edges (:class:`linkage.graph.EdgeArrays`, account indices ``a < b`` and a
weight), each account's cluster number (``-1`` for an account alone) and, per cluster, whether
it is flagged, its run-independent ``cluster_id``, the run it was first seen in and its size.

Output: per cluster, a ``campaign_id`` (``None`` for a cluster that is not flagged).

The method
----------
1. **Evidence between clusters** (:func:`cluster_links`): ``W_ij``, the sum of the weights of
   the edges between members of cluster ``i`` and members of cluster ``j``, and each
   cluster's strength ``k_i``, the total weight of its members' edges (inside, to other
   clusters and to accounts alone); ``2m`` is the sum of all strengths.
2. **Against a null model** (:func:`join_clusters`): the configuration model, which keeps
   every cluster's strength and wires edges at random, expects ``E_ij = k_i k_j / 2m`` between
   ``i`` and ``j`` (the null model of modularity). The *lift* ``W_ij / E_ij`` says how much
   more the two clusters share than their activity alone explains. Merging ``i`` and ``j``
   raises modularity exactly when ``W_ij > E_ij`` (lift above 1), so a lift of at least
   ``campaigns.min_lift`` (default 2: twice what chance predicts) is the significance test: a
   hub cluster that touches everyone has a huge strength, hence a huge expectation, and its
   many links are no evidence of a shared operator.
3. **More than a coincidence**: the cross evidence must also amount to at least one strong
   edge, ``W_ij >= scoring.strong_edge`` (0.6): in a large graph ``E_ij`` of two small
   clusters is tiny, so any single weak edge has a large lift; the floor asks for what one
   shared card or device gives, or several weaker links together.
4. **Campaigns** are the connected components of the graph of flagged clusters and these
   joins: joining is transitive, like the accounts of one cluster. A flagged cluster with no
   join is a campaign of its own. Clusters that are not flagged neither join nor relay.

Naming
------
A campaign takes the ``cluster_id`` of its *oldest* cluster (the smallest
``first_seen_run_id``; a cluster new tonight counts as the newest), then the largest, then the
smallest id. Cluster ids are stable across nights (:mod:`linkage.continuity`), and the oldest
piece is the one most likely to continue: a new piece that joins tomorrow, however large,
does not rename the campaign. A campaign of one cluster is named by that cluster.

Examples
--------
>>> from linkage.graph import EdgeArrays
>>> # Two flagged triangles {0,1,2} and {3,4,5} joined by two strong edges (2-3, 1-4); a
>>> # third flagged triangle {6,7,8} touches them by nothing.
>>> src = np.array([0, 0, 1, 1, 2, 3, 3, 4, 6, 6, 7])
>>> dst = np.array([1, 2, 2, 4, 3, 4, 5, 5, 7, 8, 8])
>>> edges = EdgeArrays(9, src, dst, np.full(11, 0.9))
>>> cluster = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
>>> assign_campaigns(edges, cluster, np.array([True, True, True]),
...                  np.array(["ca", "cb", "cc"]), min_lift=2.0, min_evidence=0.6).tolist()
['ca', 'ca', 'cc']
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from linkage.config import CampaignsConfig
from linkage.graph import EdgeArrays, graph_from_arrays

__all__ = [
    "ClusterLinks", "assign_campaigns", "cluster_links", "join_clusters", "name_campaigns",
    "publish_campaigns",
]


@dataclass(frozen=True)
class ClusterLinks:
    """The evidence between clusters, aggregated from the account edges.

    ``left < right`` are cluster numbers and ``weight`` the summed edge weight ``W`` between
    them (one entry per pair of clusters with an edge between them, sorted by pair);
    ``strength[c]`` is cluster ``c``'s total edge weight ``k_c``; ``total`` is ``2m``, the
    sum of every account's strength (clustered or not).
    """

    left: np.ndarray
    right: np.ndarray
    weight: np.ndarray
    strength: np.ndarray
    total: float

    def expected(self) -> np.ndarray:
        """``E = k_left k_right / 2m`` per pair: what the configuration model predicts."""
        if self.total <= 0:
            return np.zeros(len(self.weight))
        return self.strength[self.left] * self.strength[self.right] / self.total


def cluster_links(edges: EdgeArrays, cluster: np.ndarray, n_clusters: int) -> ClusterLinks:
    """Aggregate ``edges`` by the clusters of their ends (``cluster[v]``, ``-1``: alone).

    Columnar: one ``np.unique`` over the pairs of clusters of the cross-cluster edges and
    ``np.bincount`` sums, in the edges' own (sorted) order, so the sums are reproducible.
    """
    cluster = np.asarray(cluster, dtype=np.int64)
    w = np.asarray(edges.weight, dtype=np.float64)
    ca, cb = cluster[edges.src], cluster[edges.dst]
    strength = np.zeros(n_clusters, dtype=np.float64)
    for c in (ca, cb):  # the two ends of every edge
        inside = c >= 0
        strength += np.bincount(c[inside], weights=w[inside], minlength=n_clusters)
    cross = (ca >= 0) & (cb >= 0) & (ca != cb)
    lo = np.minimum(ca[cross], cb[cross])
    hi = np.maximum(ca[cross], cb[cross])
    pairs, inverse = np.unique(lo * max(n_clusters, 1) + hi, return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=w[cross], minlength=len(pairs))
    return ClusterLinks(
        left=pairs // max(n_clusters, 1), right=pairs % max(n_clusters, 1), weight=weight,
        strength=strength, total=float(2.0 * w.sum()),
    )


def join_clusters(
    links: ClusterLinks, flagged: np.ndarray, *, min_lift: float, min_evidence: float
) -> np.ndarray:
    """Per cluster, the number of its campaign (``-1`` for a cluster that is not flagged).

    Two flagged clusters join when ``W >= min_evidence`` and ``W >= min_lift * E``; campaigns
    are the connected components of the joins, numbered in the order of their smallest
    cluster number.
    """
    flagged = np.asarray(flagged, dtype=bool)
    n = len(flagged)
    both = flagged[links.left] & flagged[links.right]
    # Compared at 9 digits: a sum of edge weights lands a last bit under a threshold it
    # equals (0.3 + 0.3 < 0.6 in floating point), depending on the order of the sum.
    weight = np.round(links.weight, 9)
    keep = both & (weight >= min_evidence) & (weight >= np.round(min_lift * links.expected(), 9))
    graph = graph_from_arrays(n, links.left[keep], links.right[keep])
    component = np.asarray(graph.connected_components().membership, dtype=np.int64)
    # Components numbered among flagged clusters only, by their smallest cluster number.
    out = np.full(n, -1, dtype=np.int64)
    if flagged.any():
        _, first, inverse = np.unique(component[flagged], return_index=True,
                                      return_inverse=True)
        rank = np.argsort(np.argsort(first))
        out[flagged] = rank[inverse.ravel()]
    return out


def name_campaigns(
    campaign: np.ndarray,
    cluster_id: np.ndarray,
    first_seen: np.ndarray | None = None,
    size: np.ndarray | None = None,
) -> np.ndarray:
    """Per cluster, its campaign's id: the ``cluster_id`` of the campaign's oldest cluster
    (smallest ``first_seen``; negative or NaN: new tonight, the newest), then largest
    ``size``, then smallest id. ``None`` where ``campaign`` is ``-1``."""
    campaign = np.asarray(campaign, dtype=np.int64)
    ids = np.asarray(cluster_id, dtype=str)
    n = len(campaign)
    seen = (np.zeros(n) if first_seen is None
            else np.asarray(first_seen, dtype=np.float64).copy())
    seen[~(seen >= 0)] = np.inf  # NaN or negative: first seen tonight
    sizes = np.zeros(n) if size is None else np.asarray(size, dtype=np.float64)
    out = np.full(n, None, dtype=object)
    member = np.flatnonzero(campaign >= 0)
    if not len(member):
        return out
    # Sort by campaign, then the naming order; the first of each campaign names it.
    order = member[np.lexsort((ids[member], -sizes[member], seen[member], campaign[member]))]
    heads = order[np.r_[True, campaign[order][1:] != campaign[order][:-1]]]
    name = np.empty(int(campaign.max()) + 1, dtype=object)
    name[campaign[heads]] = ids[heads]
    out[member] = name[campaign[member]]
    return out


def assign_campaigns(
    edges: EdgeArrays,
    cluster: np.ndarray,
    flagged: np.ndarray,
    cluster_id: np.ndarray,
    *,
    first_seen: np.ndarray | None = None,
    size: np.ndarray | None = None,
    min_lift: float = 2.0,
    min_evidence: float = 0.6,
) -> np.ndarray:
    """The campaign id of every cluster (``None`` where not flagged): :func:`cluster_links`,
    :func:`join_clusters` and :func:`name_campaigns` in one call.

    ``cluster`` holds each account's cluster number (``0..n-1``, ``-1``: alone); ``flagged``,
    ``cluster_id``, ``first_seen`` and ``size`` are indexed by cluster number.
    """
    links = cluster_links(edges, cluster, len(flagged))
    campaign = join_clusters(links, flagged, min_lift=min_lift, min_evidence=min_evidence)
    return name_campaigns(campaign, cluster_id, first_seen, size)


def publish_campaigns(
    con: duckdb.DuckDBPyConnection,
    links: ClusterLinks,
    cfg: CampaignsConfig,
    *,
    min_evidence: float,
) -> int:
    """Create ``campaigns(cluster INTEGER, campaign_id VARCHAR)`` in ``con`` from scoring's
    ``cluster_scores`` and continuity's ``cluster_ids`` (run-local cluster numbers
    ``0..n-1``); returns the number of campaigns of two or more clusters.

    With ``campaigns.enabled = false`` the table is empty (every ``campaign_id`` NULL).
    """
    rows = con.execute("""
        SELECT s.cluster, s.flagged, i.cluster_id, i.first_seen_run_id, s.size
        FROM cluster_scores s JOIN cluster_ids i USING (cluster) ORDER BY s.cluster
    """).fetchnumpy()
    n = len(links.strength)
    flagged = np.zeros(n, dtype=bool)
    ids = np.full(n, "", dtype=object)
    seen = np.full(n, np.nan)
    size = np.zeros(n)
    at = np.asarray(rows["cluster"], dtype=np.int64)
    if cfg.enabled:
        flagged[at] = np.asarray(rows["flagged"], dtype=bool)
    ids[at] = np.asarray(rows["cluster_id"], dtype=object)
    seen[at] = np.ma.filled(np.ma.asarray(rows["first_seen_run_id"], dtype=np.float64), np.nan)
    size[at] = np.asarray(rows["size"], dtype=np.float64)
    campaign = join_clusters(links, flagged, min_lift=cfg.min_lift, min_evidence=min_evidence)
    names = name_campaigns(campaign, ids, seen, size)
    keep = np.flatnonzero(campaign >= 0)
    table = pa.table({"cluster": pa.array(keep, pa.int32()),
                      "campaign_id": pa.array(names[keep].tolist(), pa.string())})
    con.register("campaigns_in", table)
    con.execute("CREATE OR REPLACE TEMP TABLE campaigns AS SELECT * FROM campaigns_in")
    con.unregister("campaigns_in")
    counts = np.bincount(campaign[keep]) if len(keep) else np.zeros(0, dtype=np.int64)
    return int((counts >= 2).sum())
