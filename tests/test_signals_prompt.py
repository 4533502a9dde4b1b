"""The set signals (MinHash-LSH: ``prompt`` and ``activity_sync``) against an exact oracle on
small random data.

The oracle computes every pair's exact Jaccard similarity of template sets as the signal
defines them (templates used ``min_uses`` times, among those used by fewer than ``cap``
accounts; accounts with ``min_templates`` of them) and checks that the sparse construction
links every pair above the documented threshold, almost none far below it, and that each
edge's evidence is the documented noisy-OR of its shared band keys.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from linkage.config import ActivitySyncConfig, GraphConfig, PromptConfig, SignalsConfig
from linkage.graph import build_edges
from linkage.ingest import OUTPUT_SCHEMAS
from linkage.pseudonymise import HASH_HEX_CHARS
from linkage.signals import activity_bands, build_links, prompt_bands, specificity

N_GROUPS, GROUP, N_LONERS = 6, 8, 120


def _interactions(seed: int) -> pa.Table:
    """Groups whose members draw from a shared pool with a few private changes (high J),
    and loners with their own templates plus a few from a common public pool (low J)."""
    rng = np.random.default_rng(seed)
    idx: list[np.ndarray] = []
    key: list[np.ndarray] = []
    acct = 0
    for g in range(N_GROUPS):  # one iteration per planted group (test data)
        pool = np.arange(30) + 1000 * (g + 1)
        for _ in range(GROUP):
            own = pool[rng.random(30) < rng.uniform(0.75, 1.0)]
            extra = rng.integers(10**6, 2 * 10**6, rng.integers(0, 4))
            tpl = np.concatenate([own, extra])
            idx.append(np.full(2 * len(tpl), acct))
            key.append(np.repeat(tpl, 2))  # each used twice (min_uses)
            acct += 1
    for _ in range(N_LONERS):
        tpl = np.concatenate([rng.integers(10**7, 2 * 10**7, rng.integers(2, 12)),
                              rng.integers(0, 60, rng.integers(2, 10))])  # public pool
        uses = rng.integers(1, 4, len(tpl))
        idx.append(np.repeat(np.full(len(tpl), acct), uses))
        key.append(np.repeat(tpl, uses))
        acct += 1
    all_idx, all_key = np.concatenate(idx), np.concatenate(key)
    return pa.table({"idx": pa.array(all_idx, pa.int32()),
                     "prompt_key": pa.array([_hex(f"k{k}") for k in all_key.tolist()])})


def _hex(template: str) -> str:
    """A template's ``prompt_key`` as ingest leaves it: 32 hex digits of a keyed hash."""
    return hashlib.sha256(template.encode()).hexdigest()[:HASH_HEX_CHARS]


def _con(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, cols in OUTPUT_SCHEMAS.items():
        con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in cols)})")
    con.register("src", table)
    con.execute("INSERT INTO interactions (idx, prompt_key) SELECT idx, prompt_key FROM src")
    n = int(table.column("idx").to_numpy().max()) + 1
    con.execute(f"INSERT INTO accounts (idx) SELECT range FROM range({n})")
    return con


def _exact_sets(table: pa.Table, cfg: PromptConfig) -> dict[int, set[str]]:
    uses: dict[tuple[int, str], int] = {}
    for i, k in zip(table["idx"].to_pylist(), table["prompt_key"].to_pylist(), strict=True):
        uses[(i, k)] = uses.get((i, k), 0) + 1
    users: dict[str, set[int]] = {}
    for i, k in uses:
        users.setdefault(k, set()).add(i)
    sets: dict[int, set[str]] = {}
    for (i, k), u in uses.items():
        if u >= cfg.min_uses and len(users[k]) < cfg.cap:
            sets.setdefault(i, set()).add(k)
    return {i: s for i, s in sets.items() if len(s) >= cfg.min_templates}


def _shared_bands(con: duckdb.DuckDBPyConnection) -> dict[tuple[int, int], int]:
    rows = con.execute(
        """SELECT x.idx, y.idx, count(*) FROM prompt_bands x JOIN prompt_bands y
           ON x.key = y.key AND x.idx < y.idx GROUP BY ALL""").fetchall()
    return {(a, b): c for a, b, c in rows}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lsh_candidates_contain_every_similar_pair(seed: int) -> None:
    cfg = PromptConfig()
    table = _interactions(seed)
    con = _con(table)
    n_sets = prompt_bands(con, cfg)
    sets = _exact_sets(table, cfg)
    assert n_sets == len(sets)
    shared = _shared_bands(con)
    jac = {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b])
           for a, b in itertools.combinations(sorted(sets), 2)}
    high = [p for p, j in jac.items() if j >= 0.8]
    low = [p for p, j in jac.items() if j <= 0.1]
    assert len(high) > 30 and len(low) > 1000  # the data has both kinds of pairs
    # documented: linked with probability 0.99999 at J >= 0.8, 0.0002 at J <= 0.1
    assert all(shared.get(p, 0) >= cfg.min_shared for p in high)
    assert sum(shared.get(p, 0) >= cfg.min_shared for p in low) <= max(2, len(low) // 1000)
    # MinHash is unbiased: shared bands average bands * J ** rows over all pairs
    expected = sum(cfg.bands * j ** cfg.rows for j in jac.values())
    got = sum(shared.get(p, 0) for p in jac)
    assert abs(got - expected) <= 0.15 * expected
    # no account outside the sets has a band key; each set account has exactly `bands`
    per = dict(con.execute("SELECT idx, count(*) FROM prompt_bands GROUP BY idx").fetchall())
    assert set(per) == set(sets) and set(per.values()) == {cfg.bands}


def test_prompt_evidence_is_noisy_or_of_shared_bands() -> None:
    cfg = replace(SignalsConfig(), prompt_sync=replace(SignalsConfig().prompt_sync,
                                                       enabled=False))
    table = _interactions(5)
    con = _con(table)
    build_links(con, cfg)
    build_edges(con, GraphConfig(clique_max=10_000, cohesion_min=10_000))
    band = con.execute("SELECT idx, key FROM links WHERE signal = 'prompt'").fetchall()
    members: dict[str, list[int]] = {}
    for i, k in band:
        members.setdefault(k, []).append(i)
    want: dict[tuple[int, int], list[float]] = {}
    for accounts in members.values():
        p = cfg.prompt.weight * specificity(len(accounts), cfg.prompt.cap)
        for a, b in itertools.combinations(sorted(accounts), 2):
            if p > 0:
                want.setdefault((a, b), []).append(p)
    expected = {pair: 1 - float(np.prod([1 - p for p in ps]))
                for pair, ps in want.items() if len(ps) >= cfg.prompt.min_shared}
    got = {(a, b): p for a, b, p in con.execute(
        "SELECT a, b, p FROM edge_signals WHERE signal = 'prompt'").fetchall()}
    assert set(got) == set(expected) and len(got) > 50
    assert all(abs(got[k] - expected[k]) < 1e-9 for k in got)


def test_no_interactions_no_bands() -> None:
    con = _con(pa.table({"idx": pa.array([0], pa.int32()), "prompt_key": [_hex("k")]}))
    assert prompt_bands(con, PromptConfig()) == 0
    assert con.execute("SELECT count(*) FROM prompt_bands").fetchone() == (0,)


def test_activity_bands_link_one_schedule_whatever_the_templates() -> None:
    """activity_sync: accounts active in nearly the same 10-minute buckets share band keys
    even though no two of them use one template; exact Jaccard of bucket sets is the oracle."""
    cfg = ActivitySyncConfig(enabled=True)
    rng = np.random.default_rng(4)
    window = cfg.window_minutes * 60
    base = 1_700_000_000 // window * window
    schedule = base + window * np.sort(rng.choice(5_000, 60, replace=False))
    rows_idx, rows_ts = [], []
    for acct in range(12):  # one schedule, each account skips a few bursts
        ts = schedule[rng.random(60) < 0.95] + rng.integers(0, 300)
        rows_idx.append(np.full(len(ts), acct))
        rows_ts.append(ts)
    for acct in range(12, 200):  # people: active at random moments
        ts = base + rng.integers(0, 5_000 * window, rng.integers(5, 80))
        rows_idx.append(np.full(len(ts), acct))
        rows_ts.append(ts)
    idx, ts = np.concatenate(rows_idx), np.concatenate(rows_ts)
    table = pa.table({"idx": pa.array(idx, pa.int32()),
                      "prompt_key": [_hex(f"own{i}-{j}") for j, i in enumerate(idx.tolist())],
                      "ts": pa.array(ts * 1_000_000, pa.timestamp("us"))})
    con = _con(pa.table({"idx": table["idx"], "prompt_key": table["prompt_key"]}))
    con.execute("DELETE FROM interactions")
    con.register("act", table)
    con.execute("INSERT INTO interactions (idx, ts, prompt_key) SELECT idx, ts, prompt_key "
                "FROM act")
    sets: dict[int, set[int]] = {}
    for i, t in zip(idx.tolist(), ts.tolist(), strict=True):
        sets.setdefault(i, set()).add(t // window)
    sets = {i: s for i, s in sets.items() if len(s) >= cfg.min_buckets}
    assert activity_bands(con, cfg) == len(sets)
    rows = con.execute(
        """SELECT x.idx, y.idx, count(*) FROM activity_bands x JOIN activity_bands y
           ON x.key = y.key AND x.idx < y.idx GROUP BY ALL""").fetchall()
    shared = {(a, b): c for a, b, c in rows}
    jac = {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b])
           for a, b in itertools.combinations(sorted(sets), 2)}
    high = [p for p, j in jac.items() if j >= 0.8]
    assert len(high) >= 40 and all(shared.get(p, 0) >= cfg.min_shared for p in high)
    linked = {p for p, c in shared.items() if c >= cfg.min_shared}
    assert linked <= {p for p, j in jac.items() if j >= 0.3}  # no person is linked
    # through build_links: the pairs of the schedule get activity_sync evidence
    build_links(con, replace(SignalsConfig(), activity_sync=cfg))
    build_edges(con, GraphConfig())
    got = {(a, b) for a, b in con.execute(
        "SELECT a, b FROM edge_signals WHERE signal = 'activity_sync'").fetchall()}
    assert set(high) <= got and all(b < 12 for _, b in got)
