"""Schedule groups: accounts whose activity moves together as a group, beyond chance, when
no pair of them does.

An operator who paraphrases every prompt leaves no shared template; what remains is that its
accounts run the same jobs in the same minutes. Each pair shares only a little more than
chance (a scheduler that spreads its jobs over a group of a hundred gives each pair a handful
of common buckets), but the group as a whole shares far more than chance allows.
Pair tests (``activity_sync``) cannot see that; the group's common direction in the
account x time-bucket matrix can.

Method (all on the driver, from ``activity_sets(idx, e)``: each account's active buckets):

1. **Split the days.** Buckets of even days and of odd days form two halves. Groups are
   found on one half and judged on the other, so the coincidences that chose a group's
   members do not count in its verdict (found and judged on the same days, the nearest
   neighbours of anyone are the accounts whose buckets happened to coincide with theirs,
   and every busy person looks grouped).
2. **Find** (:func:`found_clusters`): the accounts active in at least ``min_buckets``
   buckets over all the days and in one or more of the half, as a binary matrix ``A``; its
   residual from the independence model (each account's activity spread over the buckets
   in proportion to how busy they are), scaled as correspondence analysis does,
   ``D_m^-1/2 (A - m q^T / M) D_q^-1/2``; its ``components`` leading singular vectors
   (sparse products above a small size: the dense residual is not formed); each account's
   ``neighbours`` nearest accounts by cosine in that embedding (:func:`nearest`); Leiden
   (CPM) on the graph of mutual nearest neighbours.
3. **Judge** (:func:`judged`): a found cluster of three or more is kept when its members
   share, in the other half, at least ``min_lift`` times the buckets chance predicts and at
   least ``min_z`` standard deviations above it (Poisson). Chance is the larger of two
   backgrounds (:func:`chance_shared`): busy buckets, and the members' own habits (their
   activity per ``habit_minutes`` slot of the day, on their own days).
4. **Both ways.** Found on the odd days and judged on the even ones, and the other way
   round; an account is in a group when both verdicts keep it. The accounts so kept that a
   cluster of either way puts together are one group.

Heavy users are what busy buckets predict, and a team at work in the same hours what its
habits predict; a group is kept for moving together beyond both. Input that spans fewer than
two days has no second half: no group is found.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds

from linkage.communities import components_of, cpm_by_component, renumber_clusters
from linkage.config import ActivityGroupConfig
from linkage.edge_arrays import EdgeArrays

__all__ = ["MIN_SIZE", "calendar", "chance_shared", "embedding", "found_clusters", "judged",
           "nearest", "schedule_groups", "singular"]

# The nearest-neighbour search (:func:`nearest`): exact up to this many accounts; above,
# this many random projection trees with leaves of at most about this many accounts; and
# at most this many similarities held at once.
_EXACT_ROWS = 20_000
_TABLES = 8
_BLOCK_ROWS = 128
_SIMILARITY_CELLS = 1 << 24
# Matrices of at most this many cells are decomposed exactly, as dense arrays.
_DENSE_CELLS = 1 << 22


# Per bucket (column) of a half: its day (from the first day of the input) and slot of the
# day (:func:`calendar`), both -1 for the buckets of the other half.
Clock = tuple[np.ndarray, np.ndarray]

# The smallest group: two accounts are a pair, which ``activity_sync`` judges.
MIN_SIZE = 3


def calendar(first: int, last: int, bucket_seconds: int, slot_seconds: int = 3600
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For buckets ``first..last`` (bucket ``e`` starts ``e * bucket_seconds`` seconds after
    the epoch): the day of each (from the first's), its slot of the day (UTC; slots of
    ``slot_seconds``, hours by default), and whether it is on an odd day since the
    epoch."""
    seconds = np.arange(first, last + 1, dtype=np.int64) * bucket_seconds
    day = seconds // 86_400
    return day - day[0], seconds % 86_400 // slot_seconds, day % 2 == 1


def incidence(idx: np.ndarray, col: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary accounts x buckets of distinct (row, column) pairs."""
    a = sp.csr_matrix((np.ones(len(idx)), (idx, col)), shape=shape)
    a.data[:] = 1.0
    return a


def singular(a: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` leading singular values (in no particular order) and their left vectors of the
    chance-centred, CA-scaled ``a`` (every row of ``a`` active), ``D_m^-1/2 (A - m q^T / M)
    D_q^-1/2``. Exact (LAPACK) on a small matrix, ARPACK on sparse products with a seeded
    start otherwise: the same matrix gives the same vectors."""
    m = np.asarray(a.sum(1)).ravel()
    q = np.asarray(a.sum(0)).ravel()
    total = m.sum()
    dm, dq = 1 / np.sqrt(m), 1 / np.sqrt(np.maximum(q, 1))
    k = min(k, min(a.shape) - 1)
    if a.shape[0] * a.shape[1] <= _DENSE_CELLS:
        residual = dm[:, None] * (a.toarray() - np.outer(m, q) / total) * dq[None, :]
        u, s, _ = np.linalg.svd(residual, full_matrices=False)
        return s[:k], u[:, :k]

    def mv(v: np.ndarray) -> np.ndarray:
        w = dq * np.asarray(v).ravel()
        return dm * (a @ w - m * (q @ w) / total)

    def rmv(u: np.ndarray) -> np.ndarray:
        w = dm * np.asarray(u).ravel()
        return dq * (a.T @ w - q * (m @ w) / total)

    op = LinearOperator(a.shape, matvec=mv, rmatvec=rmv, dtype=np.float64)
    u, s, _ = svds(op, k=k, random_state=0)
    return s, u


def embedding(a: sp.csr_matrix, k: int) -> np.ndarray:
    """Rows of unit length (or zero): each account's coordinates on the ``k`` leading
    singular vectors of :func:`singular`, times their values."""
    s, u = singular(a, k)
    emb = u * s
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.divide(emb, norm, out=np.zeros_like(emb), where=norm > 1e-12)


def nearest(emb: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine (rows of unit length or zero), -1
    where a row has fewer; nearest first.

    Exact up to :data:`_EXACT_ROWS` rows. Above, the candidates of a row are the rows of its
    leaf in each of :data:`_TABLES` random projection trees (Dasgupta and Freund; Annoy's
    index): each tree halves every block at its median along a random direction until the
    blocks hold at most about :data:`_BLOCK_ROWS` rows, so close rows share a leaf in most
    trees while the work grows with the rows times the leaf size instead of the rows
    squared. The directions are drawn from a fixed seed: the same rows give the same
    neighbours."""
    n = emb.shape[0]
    best = np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)
    live = np.flatnonzero(np.abs(emb).sum(axis=1) > 0)  # a zero row has no direction
    vectors = emb[live].astype(np.float32)
    if len(live) <= _EXACT_ROWS:
        leaves = np.zeros(len(live), dtype=np.int64)
        _merge(best, live, *_leaf_nearest(vectors, leaves, k, live))
        return best[0]
    rng = np.random.default_rng(0)
    levels = max(1, int(np.ceil(np.log2(len(live) / _BLOCK_ROWS))))
    for _ in range(_TABLES):
        leaves = np.zeros(len(live), dtype=np.int64)
        for proj in (vectors @ rng.standard_normal((emb.shape[1], levels)).astype(np.float32)).T:
            # each block cut in halves at its median along one random direction
            order = np.lexsort((proj, leaves))  # stable: ties in row order
            start = np.searchsorted(leaves[order], leaves[order], side="left")
            size = np.bincount(leaves)[leaves[order]]
            upper = np.empty(len(live), dtype=np.int64)
            upper[order] = (np.arange(len(live)) - start) >= size // 2
            leaves = 2 * leaves + upper
        _merge(best, live, *_leaf_nearest(vectors, leaves, k, live))
    return best[0]


def _leaf_nearest(vectors: np.ndarray, leaves: np.ndarray, k: int, names: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest among the rows of its leaf (``names``: what to call the
    rows; -1 and -inf where fewer), computed a batch of leaves (or of a leaf's rows) at a
    time as one stack of similarity matrices of at most :data:`_SIMILARITY_CELLS`."""
    n = len(leaves)
    if n < 2:
        return np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)
    order = np.argsort(leaves, kind="stable")
    _, leaf, count = np.unique(leaves[order], return_inverse=True, return_counts=True)
    width = int(count.max())
    slot = np.arange(n) - np.concatenate([[0], np.cumsum(count)[:-1]])[leaf]
    members = np.full((len(count), width), -1, dtype=np.int64)  # rows of each leaf, padded
    members[leaf, slot] = order
    padded = np.vstack([vectors, np.zeros((1, vectors.shape[1]), dtype=np.float32)])
    kk = min(k, width - 1)
    idx = np.full((n, k), -1, dtype=np.int64)
    sim = np.full((n, k), -np.inf, dtype=np.float32)
    if kk < 1:
        return idx, sim
    # a batch of leaves, and of rows within them, whose similarities fit the budget
    batch = max(1, _SIMILARITY_CELLS // (width * width))
    height = min(width, max(1, _SIMILARITY_CELLS // width))
    for first in range(0, len(count), batch):
        leaf_rows = members[first:first + batch]
        v = padded[leaf_rows]  # the padding's -1 picks the zero row
        for top_slot in range(0, width, height):
            rows = leaf_rows[:, top_slot:top_slot + height]
            sims = v[:, top_slot:top_slot + height] @ v.transpose(0, 2, 1)
            sims[np.broadcast_to((leaf_rows < 0)[:, None, :], sims.shape)] = -np.inf
            own = np.arange(sims.shape[1])
            sims[:, own, top_slot + own] = -np.inf
            top = np.argpartition(-sims, kk - 1, axis=2)[:, :, :kk]
            found = np.take_along_axis(np.broadcast_to(leaf_rows[:, None, :], sims.shape), top,
                                       axis=2)
            score = np.take_along_axis(sims, top, axis=2)
            real = rows >= 0
            idx[rows[real], :kk] = np.where(score[real] > -np.inf, names[found[real]], -1)
            sim[rows[real], :kk] = score[real]
    return idx, sim


def _merge(best: tuple[np.ndarray, np.ndarray], rows: np.ndarray, idx: np.ndarray,
           sim: np.ndarray) -> None:
    """Fold candidates ``idx``/``sim`` of ``rows`` into ``best`` (neighbours, similarities
    per row), keeping each row's ``k`` most similar distinct ones, ties to the lower row."""
    k = best[0].shape[1]
    both_idx = np.hstack([best[0][rows], idx])
    both_sim = np.hstack([best[1][rows], sim])
    by_idx = np.argsort(both_idx, axis=1, kind="stable")
    both_idx = np.take_along_axis(both_idx, by_idx, axis=1)
    both_sim = np.take_along_axis(both_sim, by_idx, axis=1)
    both_sim[:, 1:][both_idx[:, 1:] == both_idx[:, :-1]] = -np.inf  # a candidate twice
    by_sim = np.argsort(-both_sim, axis=1, kind="stable")[:, :k]
    kept_sim = np.take_along_axis(both_sim, by_sim, axis=1)
    best[0][rows] = np.where(kept_sim > -np.inf, np.take_along_axis(both_idx, by_sim, axis=1), -1)
    best[1][rows] = kept_sim


def found_clusters(a: sp.csr_matrix, cfg: ActivityGroupConfig) -> np.ndarray:
    """A cluster label per row of ``a`` (-1: alone), from the mutual nearest neighbours in
    the embedding of :func:`embedding`."""
    n = a.shape[0]
    if n < MIN_SIZE or a.shape[1] < 3:
        return np.full(n, -1, dtype=np.int64)
    nn = nearest(embedding(a, cfg.components), cfg.neighbours)
    src = np.repeat(np.arange(n), nn.shape[1])
    dst = nn.ravel()
    src, dst = src[dst >= 0], dst[dst >= 0]
    # mutual: both directions present
    code = np.minimum(src, dst) * n + np.maximum(src, dst)
    uniq, count = np.unique(code, return_counts=True)
    pairs = uniq[count == 2]
    edges = EdgeArrays(n, pairs // n, pairs % n, np.ones(len(pairs)))
    labels = cpm_by_component(edges, components_of(n, edges.src, edges.dst),
                              resolution=cfg.resolution, iterations=2)
    return renumber_clusters(labels)


def judged(cluster: np.ndarray, judge: sp.csr_matrix, when: Clock, span: np.ndarray,
           cfg: ActivityGroupConfig) -> np.ndarray:
    """Per row, whether its cluster (``-1``: none) of :data:`MIN_SIZE` or more shares in
    ``judge`` (the other half's accounts x buckets, same rows; ``when``: the day and slot of
    the day of each of its buckets, -1 for buckets of the other half) at least ``min_lift``
    times the buckets chance predicts, ``min_z`` standard deviations (Poisson) above it.

    Chance is the larger of two backgrounds (:func:`chance_shared`): busy buckets (each
    account's activity spread over the buckets in proportion to how busy they are) and the
    members' own habits (each account's activity in a slot of the day spread over that
    slot's buckets on the days from its first activity to its last, ``span``: first and last
    day per row). A team at work in the same two hours every day shares what its habits
    predict; a scheduler's accounts share the very buckets of its jobs."""
    n = len(cluster)
    keep = np.zeros(n, dtype=bool)
    clustered = cluster >= 0
    if not clustered.any() or judge.nnz == 0:
        return keep
    n_clusters = int(cluster.max()) + 1
    size = np.bincount(cluster[clustered], minlength=n_clusters)
    # shared buckets: sum over buckets of the member pairs active in them
    coo = judge.tocoo()
    c = cluster[coo.row]
    inside = c >= 0
    cells, per_cell = np.unique(c[inside] * judge.shape[1] + coo.col[inside],
                                return_counts=True)
    shared = np.bincount(cells // judge.shape[1], weights=per_cell * (per_cell - 1) / 2,
                         minlength=n_clusters)
    big = size >= MIN_SIZE
    judged_as = np.full(n_clusters + 1, -1, dtype=np.int64)
    judged_as[np.flatnonzero(big)] = np.arange(int(big.sum()))
    expected = np.ones(n_clusters)
    if big.any():
        expected[big] = chance_shared(judged_as[cluster], judge, when, span)
    expected = np.maximum(expected, 1e-9)
    z = (shared - expected) / np.sqrt(expected)
    good = big & (shared >= cfg.min_lift * expected) & (z >= cfg.min_z)
    keep[clustered] = good[cluster[clustered]]
    return keep


def chance_shared(cluster: np.ndarray, a: sp.csr_matrix, when: Clock,
                  span: np.ndarray) -> np.ndarray:
    """Per cluster, the buckets of ``a`` its members' pairs share by chance: the larger of
    the two backgrounds of :func:`judged`.

    Busy buckets: accounts of activities ``m_i``, ``m_j`` share ``m_i m_j sum_b q_b^2 /
    M^2`` (``q_b``: accounts active in bucket ``b``; ``M``: all activity). Habits: account
    ``i`` is active in each bucket of slot ``h`` of day ``d`` with probability ``r_i(h) =
    n_i(h) / D_i(h)`` (its active buckets in that slot over the buckets of that slot in its
    span) when ``d`` is in its span, 0 outside; a cluster's pairs share ``sum_{d,h}
    B_{d,h} (R^2 - sum_i r_i^2) / 2`` there (``R``: the members' rates summed; ``B``: the
    buckets of that slot on that day)."""
    clustered = cluster >= 0
    n_clusters = int(cluster.max()) + 1
    m = np.asarray(a.sum(1)).ravel()
    q = np.asarray(a.sum(0)).ravel()
    chance = float((q ** 2).sum()) / float(m.sum()) ** 2
    m_sum = np.bincount(cluster[clustered], weights=m[clustered], minlength=n_clusters)
    m_sq = np.bincount(cluster[clustered], weights=m[clustered] ** 2, minlength=n_clusters)
    busy = (m_sum ** 2 - m_sq) / 2 * chance

    day, hour = when
    valid = day >= 0
    slots = int(hour.max()) + 1
    n_days = int(day[valid].max()) + 1
    buckets = np.zeros((n_days, slots))  # B: buckets of the half per day and hour
    np.add.at(buckets, (day[valid], hour[valid]), 1.0)
    # D_i(h): buckets of hour h on the half's days of the span (cumulated over days)
    cum = np.vstack([np.zeros((1, slots)), np.cumsum(buckets, axis=0)])
    first = np.clip(span[:, 0], 0, n_days)
    last = np.clip(span[:, 1] + 1, 0, n_days)
    rows = np.flatnonzero(clustered)
    coo = a.tocoo()
    counted = clustered[coo.row] & valid[coo.col]
    n_h = np.zeros((len(m), slots))
    np.add.at(n_h, (coo.row[counted], hour[coo.col[counted]]), 1.0)
    d_h = cum[last[rows]] - cum[first[rows]]
    rate = np.divide(n_h[rows], d_h, out=np.zeros_like(d_h), where=d_h > 0)
    # members' rates summed per (cluster, day, hour), entering at the span's first day and
    # leaving after its last (difference arrays over days)
    total = np.zeros((n_clusters, n_days + 1, slots))
    squares = np.zeros((n_clusters, n_days + 1, slots))
    for sums, value in ((total, rate), (squares, rate ** 2)):
        np.add.at(sums, (cluster[rows], first[rows]), value)
        np.add.at(sums, (cluster[rows], last[rows]), -value)
    big_r = np.cumsum(total, axis=1)[:, :n_days]
    sq = np.cumsum(squares, axis=1)[:, :n_days]
    habits = (buckets[None] * (big_r ** 2 - sq)).sum(axis=(1, 2)) / 2
    return np.maximum(busy, habits)


def schedule_groups(idx: np.ndarray, e: np.ndarray, bucket_seconds: int,
                    cfg: ActivityGroupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Accounts in schedule groups and a group number for each (see the module docstring).

    ``idx``/``e``: distinct (account, bucket) rows; ``bucket_seconds``: a bucket's width.
    Returns ``(accounts, group)``, sorted by account; groups numbered from 0 in order of
    their smallest account."""
    idx = np.asarray(idx, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not len(e):
        return none
    ids, row = np.unique(idx, return_inverse=True)
    n = len(ids)
    day, hour, odd = calendar(int(e.min()), int(e.max()), bucket_seconds,
                               int(cfg.habit_minutes) * 60)
    col = e - e.min()
    if odd.all() or not odd.any():
        return none  # one day: no second half to judge on
    span = np.column_stack([np.full(n, day[-1]), np.zeros(n, dtype=np.int64)])
    np.minimum.at(span[:, 0], row, day[col])
    np.maximum.at(span[:, 1], row, day[col])
    # active over all the days (``min_buckets``), and on the days the groups are found on
    active = np.bincount(row, minlength=n) >= cfg.min_buckets
    halves = []
    for half in (~odd, odd):
        on = half[col]
        halves.append((incidence(row[on], col[on], (n, len(day))),
                       (np.where(half, day, -1), np.where(half, hour, -1))))
    labels, kept = [], []
    for (find, _), (judge, when) in (halves, halves[::-1]):
        rows = np.flatnonzero(active & (np.diff(find.indptr) > 0))
        cluster = found_clusters(find[rows], cfg)
        labels.append(np.full(n, -1, dtype=np.int64))
        labels[-1][rows] = cluster
        keep = np.zeros(n, dtype=bool)
        keep[rows] = judged(cluster, judge[rows], when, span[rows], cfg)
        kept.append(keep)
    both = np.flatnonzero(kept[0] & kept[1])
    # one group: the kept accounts joined by a cluster of either way round
    ties = [np.zeros(0, dtype=np.int64)] * 2
    for lab in labels:
        order = both[np.argsort(lab[both], kind="stable")]
        same = lab[order][1:] == lab[order][:-1]
        ties = [np.concatenate([ties[0], order[:-1][same]]),
                np.concatenate([ties[1], order[1:][same]])]
    pos = np.full(n, -1, dtype=np.int64)
    pos[both] = np.arange(len(both))
    comp = components_of(len(both), pos[ties[0]], pos[ties[1]])
    size = np.bincount(comp, minlength=1)
    big = size[comp] >= MIN_SIZE
    return ids[both[big]], renumber_clusters(np.where(big, comp, -1))[big]
