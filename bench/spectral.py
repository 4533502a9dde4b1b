"""Probe: does a spectral view of co-activity see the groups that no pair of accounts can?

    python bench/spectral.py --seeds 0 5 15 21 93      # tuning worlds only (cached or made)

Not part of a run: the evidence for the next group-level method (docs/quality.md, "Spectral
view of co-activity"). For each drawn world (``bench/robustness.py``'s worlds, at 30,000
accounts at most) it builds the account x ten-minute-bucket incidence of the accounts active
in at least 20 buckets (``signals.activity_sync.min_buckets``), centres it on chance (each
account's activity spread over the buckets in proportion to how busy they are: the
independence model of ``activity_sync``) and scales it as correspondence analysis does
(``D_m^-1/2 (A - m q^T / M) D_q^-1/2``), then takes its leading singular vectors by products
with the sparse matrix (never forming the dense residual). The null: the same accounts with
each one's activity rotated by a random whole number of days, which keeps every account's
volume and hours of the day and breaks synchrony between accounts on a given day (but not
that of schedules whose period divides a day: see the findings in docs/quality.md).

Reported per world: active accounts; operator groups among them; how many singular values
stand above the null; for each group the share of its members' ten nearest neighbours
(cosine in the embedding of the ``--components`` leading vectors) that are of the same
group; and how many active legitimate accounts have a majority of operators among their ten
nearest neighbours (what a linking rule built on the embedding would have to keep apart).
Then two judges of what the embedding finds: Leiden on the mutual nearest-neighbour graph, and
each cluster's shared buckets against the independence model, on the days the clusters were
found on (:func:`judge_clusters`) or, found on the odd days, on the even ones
(:func:`split_judge`); how many operator and legitimate accounts the clusters kept hold.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
from collections import Counter
from pathlib import Path

import igraph as ig
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from robustness import ensure_world

from linkage.schedule_groups import singular
from linkage.synth.worlds import draw_world

BUCKET = 600
DAY = 86_400 // BUCKET
MIN_BUCKETS = 20
NEIGHBOURS = 10
# A found cluster is judged beyond chance when its members share this many times the
# buckets the independence model predicts, at this many standard deviations.
MIN_LIFT, MIN_Z = 4.0, 5.0


def incidence(world: Path) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary accounts x buckets of the active accounts; their buckets' first index; ids."""
    parts = sorted(glob.glob(str(world / "interactions" / "*")))
    t = pa.concat_tables([pq.read_table(f, columns=["account_id", "ts"]) for f in parts])
    ids, row = np.unique(t.column("account_id").to_numpy(zero_copy_only=False),
                         return_inverse=True)
    bucket = t.column("ts").cast(pa.int64()).to_numpy() // 1_000_000 // BUCKET
    col = bucket - bucket.min()
    a = sp.csr_matrix((np.ones(len(row)), (row, col)), shape=(len(ids), int(col.max()) + 1))
    a.data[:] = 1.0
    active = np.asarray(a.sum(1)).ravel() >= MIN_BUCKETS
    return a[active], ids[active], col


def rotated(a: sp.csr_matrix, seed: int) -> sp.csr_matrix:
    """Each account's activity shifted by a random whole number of days, circularly."""
    coo = a.tocoo()
    n_days = a.shape[1] // DAY
    shift = np.random.default_rng(seed).integers(0, n_days, a.shape[0]) * DAY
    cols = (coo.col + shift[coo.row]) % (n_days * DAY)
    out = sp.csr_matrix((coo.data, (coo.row, cols)), shape=(a.shape[0], n_days * DAY))
    out.data[:] = 1.0
    return out


def probe(seed: int, k: int, max_accounts: int) -> dict:
    world, _ = ensure_world(seed, draw_world(seed).scaled(max_accounts))
    a, ids, _ = incidence(world)
    truth = pcsv.read_csv(world / "truth.csv", convert_options=pcsv.ConvertOptions(
        column_types={"group_id": pa.string()})).to_pydict()
    group_of = dict(zip(truth["account_id"], truth["group_id"], strict=True))
    g = np.array([group_of.get(i) or "" for i in ids])
    s, nn = neighbours(a, k)
    null = np.sort(singular(rotated(a, seed), 5)[0])[::-1]
    signal = int((s > null[0]).sum())
    groups = {}
    for name in sorted(set(g) - {""}):
        idx = np.flatnonzero(g == name)
        groups[name] = {"active": len(idx),
                        "nn_same": round(float((g[nn[idx]] == name).mean()), 3)}
    legit = np.flatnonzero(g == "")
    among_ops = (g[nn[legit]] != "").mean(1) >= 0.5
    roles = pcsv.read_csv(world / "roles.csv").to_pydict()
    role_of = dict(zip(roles["account_id"], roles["role"], strict=True))
    verdicts = {"same_days": judge_clusters(nn, a), "split_days": split_judge(a, k)}
    return {"seed": seed, "describe": draw_world(seed).scaled(max_accounts).describe(),
            "active": len(ids), "active_operators": int((g != "").sum()),
            "singular_values": [round(float(x), 3) for x in s[:12]],
            "null_top": round(float(null[0]), 3), "above_null": signal, "groups": groups,
            "legit_active": len(legit), "legit_among_operators": int(among_ops.sum()),
            "judged": {name: {
                "operators": int((g[kept] != "").sum()), "legit": int((g[kept] == "").sum()),
                "legit_roles": dict(Counter(role_of.get(i) or "plain"
                                            for i in ids[kept][g[kept] == ""]))}
                for name, kept in ((n, np.flatnonzero(v)) for n, v in verdicts.items())}}


def neighbours(a: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` leading singular values of ``a`` (:func:`linkage.schedule_groups.singular`)
    and each account's ``NEIGHBOURS`` nearest accounts by cosine in the embedding of their
    vectors."""
    s, u = singular(a, k)
    order = np.argsort(-s)
    s, u = s[order], u[:, order]
    emb = u * s
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -2.0)
    return s, np.argsort(-sims, axis=1)[:, :NEIGHBOURS]


def judge_clusters(nn: np.ndarray, judge: sp.csr_matrix) -> np.ndarray:
    """Accounts in clusters of the graph of mutual nearest neighbours ``nn``
    (:func:`neighbours`; Leiden with CPM 0.05) of three or more whose members share, in
    ``judge``, at least ``MIN_LIFT`` times the buckets the independence model of ``judge``
    predicts (a pair of activities ``m_i``, ``m_j`` shares ``m_i m_j sum q^2 / M^2``), at
    least ``MIN_Z`` standard deviations (Poisson) above it.

    Judged on the data they were found on, clusters are biased upwards: the neighbours are
    the accounts whose buckets happened to coincide most. :func:`split_judge` finds them on
    some days and judges them on the others."""
    n = nn.shape[0]
    knn = sp.csr_matrix((np.ones(nn.size), (np.repeat(np.arange(n), nn.shape[1]), nn.ravel())),
                        shape=(n, n))
    mutual = sp.triu(knn.multiply(knn.T), 1).tocoo()
    graph = ig.Graph(n=n, edges=np.column_stack([mutual.row, mutual.col]).tolist())
    random.seed(0)  # igraph's Leiden draws from Python's generator
    member = np.array(graph.community_leiden(objective_function="CPM", resolution=0.05,
                                             n_iterations=-1).membership)
    m = np.asarray(judge.sum(1)).ravel()
    q = np.asarray(judge.sum(0)).ravel()
    chance = (q ** 2).sum() / max(m.sum(), 1.0) ** 2
    co = (judge @ judge.T).tocsr()
    out = np.zeros(n, dtype=bool)
    for c in np.unique(member):
        idx = np.flatnonzero(member == c)
        if len(idx) < 3:
            continue
        inner = co[idx][:, idx]
        shared = (inner.sum() - inner.diagonal().sum()) / 2
        expected = max((m[idx].sum() ** 2 - (m[idx] ** 2).sum()) / 2 * chance, 1e-9)
        z = (shared - expected) / np.sqrt(expected)
        out[idx] = shared >= MIN_LIFT * expected and z >= MIN_Z
    return out


def split_judge(a: sp.csr_matrix, k: int) -> np.ndarray:
    """:func:`judge_clusters` with clusters found on the odd days and judged on the even
    ones: a coincidence that chose the neighbours does not count in the verdict."""
    day = np.arange(a.shape[1]) // DAY
    odd = (a @ sp.diags((day % 2 == 1).astype(np.float64))).tocsr()
    even = (a @ sp.diags((day % 2 == 0).astype(np.float64))).tocsr()
    odd.eliminate_zeros()
    even.eliminate_zeros()
    return judge_clusters(neighbours(odd, k)[1], even)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 5, 15, 21, 93])
    parser.add_argument("--components", type=int, default=40)
    parser.add_argument("--max-accounts", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("spectral.json"))
    args = parser.parse_args()
    if any(seed >= 100 for seed in args.seeds):
        parser.error("report seeds (100 and up) are not probed: this is a tuning experiment")
    rows = []
    for seed in args.seeds:
        row = probe(seed, args.components, args.max_accounts)
        rows.append(row)
        same = [v["nn_same"] for v in row["groups"].values()]
        print(f"seed {seed:>3}: {row['active']} active ({row['active_operators']} operators), "
              f"{row['above_null']} singular values above the day-rotation null "
              f"({row['null_top']}); groups' NN purity median "
              f"{np.median(same) if same else float('nan'):.2f} min "
              f"{min(same) if same else float('nan'):.2f}; legit among operators "
              f"{row['legit_among_operators']} of {row['legit_active']}; judged clusters hold "
              + "; ".join(f"{name}: {v['operators']} operators, {v['legit']} legitimate "
                          f"{v['legit_roles']}" for name, v in row["judged"].items()),
              flush=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
