"""Campaigns: flagged clusters that are pieces of one operator's fleet get one ``campaign_id``.

Community detection optimises a local objective (CPM: a cluster is kept while its internal
evidence density exceeds the resolution), so one operator's fleet, held together by many
sparse rings, may come out as several flagged clusters that still share devices, cards or
BIN + postal codes. Nothing in the partition relates those pieces; this stage does, from the
same edges, after scoring.

Input: the run's edges (:class:`linkage.edge_arrays.EdgeArrays`, account indices ``a < b`` and a
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
>>> from linkage.edge_arrays import EdgeArrays
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
from linkage.edge_arrays import EdgeArrays, graph_from_arrays

__all__ = [
    "ClusterLinks", "FleetPieces", "assign_campaigns", "cluster_links", "fleet_pieces",
    "join_clusters", "name_campaigns", "publish_campaigns",
]


@dataclass(frozen=True)
class ClusterLinks:
    """The evidence between clusters, aggregated from the account edges.

    ``left < right`` are cluster numbers and ``weight`` the summed edge weight ``W`` between
    them (one entry per pair of clusters with an edge between them, sorted by pair);
    ``touch_left`` and ``touch_right`` the members of ``left`` with an edge into ``right``
    and of ``right`` into ``left``; ``strength[c]`` is cluster ``c``'s total edge weight
    ``k_c``; ``total`` is ``2m``, the sum of every account's strength (clustered or not).
    """

    left: np.ndarray
    right: np.ndarray
    weight: np.ndarray
    touch_left: np.ndarray
    touch_right: np.ndarray
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
    k = max(n_clusters, 1)
    pairs, inverse = np.unique(lo * k + hi, return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=w[cross], minlength=len(pairs))
    # Each end of a crossing edge touches the other end's cluster; counted once per account.
    acct = np.concatenate([edges.src[cross], edges.dst[cross]]).astype(np.int64)
    other = np.concatenate([cb[cross], ca[cross]])
    touched = np.unique(acct * k + other)
    del acct, other
    t_own, t_other = cluster[touched // k], touched % k
    t_pair = np.searchsorted(pairs, np.minimum(t_own, t_other) * k + np.maximum(t_own, t_other))
    on_left = t_own < t_other
    return ClusterLinks(
        left=pairs // k, right=pairs % k, weight=weight,
        touch_left=np.bincount(t_pair[on_left], minlength=len(pairs)),
        touch_right=np.bincount(t_pair[~on_left], minlength=len(pairs)),
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


@dataclass(frozen=True)
class FleetPieces:
    """Per cluster number: ``fleet``, the flagged cluster it is a piece of (``-1``: none),
    the evidence ``weight`` between the two and its ``share`` of the piece's strength."""

    fleet: np.ndarray
    weight: np.ndarray
    share: np.ndarray


def fleet_pieces(
    links: ClusterLinks, flagged: np.ndarray, size: np.ndarray, density: np.ndarray, *,
    min_lift: float, min_evidence: float, resolution: float,
) -> FleetPieces:
    """The clusters not flagged on their own evidence that are pieces of a flagged
    cluster's fleet (``size`` and internal ``density`` per cluster number):

    * the piece is a group by its own evidence: its density is at least CPM's
      ``resolution`` (what a cluster must keep; the accounts left over when a strong core
      is taken out of a cluster share nothing with each other and are no piece);
    * the evidence ``W`` between it and the flagged cluster passes the test of two flagged
      clusters joining one campaign (:func:`join_clusters`: ``min_lift``) with
      ``min_evidence`` (a strong link's worth) per member of the piece, and has at least a
      quarter of the density CPM asks inside a cluster (``W >= resolution / 4 * n_piece *
      n_flagged``): members tied to many of the flagged cluster's, not one member's shared
      device; and most of its members have an edge into the flagged cluster;
    * it is more than half of all the piece's evidence (``2 W > k``): its members are tied
      more to the flagged cluster than to each other and everyone else together.

    CPM keeps a piece apart when its evidence towards a large cluster is thinner than the
    resolution, however much of the piece's own evidence that is: one operator's fleet comes
    out as a flagged cluster and pieces too small to be flagged alone. At most one fleet per
    piece (more than half), and flagged clusters only: pieces do not relay."""
    flagged = np.asarray(flagged, dtype=bool)
    n = len(flagged)
    w = np.round(links.weight, 9)
    ok = (w >= min_evidence) & (w >= np.round(min_lift * links.expected(), 9))
    piece = np.concatenate([links.left, links.right])
    fleet = np.concatenate([links.right, links.left])
    both_w, both_ok = np.concatenate([w, w]), np.concatenate([ok, ok])
    touch = np.concatenate([links.touch_left, links.touch_right])
    sizes = np.asarray(size, dtype=np.float64)
    own = np.round(np.asarray(density, dtype=np.float64), 9) >= resolution
    tie = both_w >= np.round(np.maximum(resolution / 4 * sizes[fleet], min_evidence)
                             * sizes[piece], 9)
    raw = np.concatenate([links.weight, links.weight])
    # "more than half", compared at 9 digits: a tie (a key shared by the piece and one of
    # the cluster's members) must not pass by the last bits of two sums
    most = np.round(2 * raw - links.strength[piece], 9) > 0
    keep = (both_ok & tie & own[piece] & flagged[fleet] & ~flagged[piece]
            & (2 * touch > sizes[piece]) & most)
    out = FleetPieces(np.full(n, -1, dtype=np.int64), np.zeros(n), np.zeros(n))
    out.fleet[piece[keep]] = fleet[keep]
    out.weight[piece[keep]] = both_w[keep]
    out.share[piece[keep]] = raw[keep] / links.strength[piece[keep]]
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
