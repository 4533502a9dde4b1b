"""Signals and edge building, checked against a brute-force pair builder."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from datetime import timedelta

import numpy as np
import pytest

from linkage.communities import detect_communities
from linkage.config import GraphConfig, SignalConfig, SignalsConfig
from linkage.edge_arrays import EdgeArrays, build_graph
from linkage.graph import _band_overlap, build_edges, edge_arrays
from linkage.signals import build_links, specificity
from tests.helpers import ingested


def signals(**over):
    from dataclasses import replace

    from linkage.config import CosignupConfig, TemplatePoolConfig

    # one signal at a time where a test says so: co-signup and single shared templates and template
    # pools (tests/test_background.py) would add their own pairs
    base = SignalsConfig(cosignup=CosignupConfig(enabled=False),
                         template=SignalConfig(weight=0.3, enabled=False),
                         template_pool=TemplatePoolConfig(enabled=False))
    return replace(base, **over)


def brute_force(cards, devices, cfg: SignalsConfig):
    """Every pair sharing a key, noisy-OR within and across signals."""
    per_signal: dict[tuple[int, int, str], float] = defaultdict(lambda: 1.0)
    for signal, links, sig in (("card", cards, cfg.card), ("device", devices, cfg.device)):
        holders: dict[str, set[int]] = defaultdict(set)
        for idx, key in links:
            holders[key].add(idx)
        for members in holders.values():
            p = sig.weight * specificity(len(members), sig.cap)
            if p <= 0:
                continue
            for a, b in itertools.combinations(sorted(members), 2):
                per_signal[(a, b, signal)] *= 1 - p
    edges: dict[tuple[int, int], float] = defaultdict(lambda: 1.0)
    for (a, b, _), keep in per_signal.items():
        edges[(a, b)] *= keep
    return {pair: 1 - keep for pair, keep in edges.items()}


@pytest.mark.parametrize("seed", range(5))
def test_edges_match_brute_force(seed):
    rng = random.Random(seed)
    n = 300
    cards = [(rng.randrange(n), f"card{rng.randrange(60)}") for _ in range(500)]
    devices = [(rng.randrange(n), f"dev{rng.randrange(40)}") for _ in range(400)]
    cfg = signals()
    cards, devices = sorted(set(cards)), sorted(set(devices))
    con = ingested(n, cards=cards, devices=devices)
    build_links(con, cfg)
    build_edges(con, GraphConfig(clique_max=10_000, cohesion_min=10_000))
    got = {(a, b): w for a, b, w in con.execute("SELECT a, b, weight FROM edges").fetchall()}
    want = brute_force(cards, devices, cfg)
    want = {k: v for k, v in want.items() if v > 0}
    assert got.keys() == want.keys()
    for pair, w in want.items():
        assert got[pair] == pytest.approx(w, rel=1e-9)


def test_edge_signals_keep_per_signal_contributions():
    con = ingested(3, cards=[(0, "c"), (1, "c")], devices=[(0, "d"), (1, "d"), (2, "d")])
    cfg = signals()
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    rows = con.execute(
        "SELECT a, b, signal, p, n_keys FROM edge_signals ORDER BY a, b, signal").fetchall()
    card_p = cfg.card.weight * specificity(2, cfg.card.cap)
    dev_p = cfg.device.weight * specificity(3, cfg.device.cap)
    assert rows == [
        (0, 1, "card", pytest.approx(card_p), 1),
        (0, 1, "device", pytest.approx(dev_p), 1),
        (0, 2, "device", pytest.approx(dev_p), 1),
        (1, 2, "device", pytest.approx(dev_p), 1),
    ]
    (w,) = con.execute("SELECT weight FROM edges WHERE a = 0 AND b = 1").fetchone()
    assert w == pytest.approx(1 - (1 - card_p) * (1 - dev_p))


def test_key_above_cap_gives_no_edges():
    n = 250
    con = ingested(n, ips=[(i, "nat-ip", "nat-net") for i in range(n)])
    build_links(con, signals())
    assert build_edges(con, GraphConfig()) == 0


def test_large_key_uses_linear_ring_not_clique():
    n, d = 150, 4
    # the card's carriers are also tied pairwise by devices (another root), so the card is
    # cohesive and keeps its full evidence
    con = ingested(n, cards=[(i, "shared") for i in range(n)],
                   devices=[(i, f"dev{i // 2}") for i in range(n)])
    build_links(con, signals())
    build_edges(con, GraphConfig(clique_max=20, ring_degree=d))
    ring = con.execute("SELECT a, b FROM edge_signals WHERE signal = 'card'").fetchnumpy()
    assert len(ring["a"]) == n * d  # a circulant graph: each account linked to d successors
    g = build_graph(EdgeArrays(n, ring["a"], ring["b"], np.ones(n * d)))
    assert g.is_connected()
    assert max(g.degree()) == 2 * d


def test_hub_does_not_merge_unrelated_rings():
    """Two rings share nothing but a hub IP that 1,000 ordinary accounts also use."""
    n = 1200
    ring_a, ring_b = range(0, 12), range(12, 24)
    cards = [(i, "cardA") for i in ring_a] + [(i, "cardB") for i in ring_b]
    devices = [(i, f"devA{i % 3}") for i in ring_a] + [(i, f"devB{i % 3}") for i in ring_b]
    ips = [(i, "hub-ip", "hub-net") for i in range(n)]
    con = ingested(n, cards=cards, devices=devices, ips=ips)
    build_links(con, signals())
    build_edges(con, GraphConfig())
    part = detect_communities(build_graph(edge_arrays(con)), seed=1)
    labels = part.cluster
    assert len(set(labels[list(ring_a)])) == 1
    assert len(set(labels[list(ring_b)])) == 1
    assert labels[0] != labels[12]
    assert (labels[24:] == -1).all()  # the hub's ordinary users stay unlinked


def test_org_members_are_not_linked_by_their_corporate_card():
    orgs = {i: "org1" for i in range(10)}
    con = ingested(12, cards=[(i, "corp") for i in range(10)] + [(10, "x"), (11, "x")],
                   orgs=orgs)
    build_links(con, signals())
    build_edges(con, GraphConfig(suppress_org=True))
    assert con.execute("SELECT a, b FROM edges").fetchall() == [(10, 11)]
    build_edges(con, GraphConfig(suppress_org=False))
    assert con.execute("SELECT count(*) FROM edges").fetchone()[0] == 46


def test_cosignup_links_burst_on_same_weak_key_only():
    from dataclasses import replace

    from linkage.config import CosignupConfig
    from tests.helpers import BASE

    created = {0: BASE, 1: BASE.replace(minute=5), 2: BASE.replace(minute=9),
               3: BASE.replace(hour=5)}
    ua = {0: "ua1", 1: "ua1", 2: "ua2", 3: "ua1"}
    cfg = replace(signals(), cosignup=CosignupConfig(window_minutes=30,
                                                     weak_keys=("user_agent",)))
    con = ingested(4, created=created, user_agents=ua)
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    rows = con.execute("SELECT a, b, signal, n_keys FROM edge_signals").fetchall()
    assert rows == [(0, 1, "cosignup", 2)]  # same UA within minutes, seen by both grids
    (w,) = con.execute("SELECT weight FROM edges").fetchone()
    assert w == pytest.approx(cfg.cosignup.weight)  # counted once, not twice


def test_specificity_is_monotone_and_bounded():
    caps = [3, 10, 200]
    for cap in caps:
        values = [specificity(n, cap) for n in range(2, cap + 2)]
        assert values[0] == 1.0
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(x >= y for x, y in itertools.pairwise(values))
        assert values[-1] == 0.0 and specificity(cap, cap) == 0.0
    assert math.isclose(specificity(20, 200), 0.5)


def test_edge_arrays_are_sorted_and_typed():
    con = ingested(5, cards=[(3, "k"), (1, "k"), (4, "j"), (0, "j")])
    build_links(con, signals())
    build_edges(con, GraphConfig())
    e = edge_arrays(con)
    assert e.n_vertices == 5
    assert e.src.tolist() == [0, 1] and e.dst.tolist() == [4, 3]
    assert (e.src < e.dst).all()
    assert e.weight.dtype == np.float64


def test_coactivity_links_accounts_acting_on_one_value_in_one_window():
    from dataclasses import replace

    from linkage.config import CoactivityConfig, ObservationConfig
    from tests.helpers import BASE

    obs = [
        (0, "product", "p1", BASE),
        (1, "product", "p1", BASE.replace(minute=20)),  # same product, 20 minutes later
        (2, "product", "p1", BASE.replace(hour=9)),  # same product, hours later
        (3, "product", "p2", BASE.replace(minute=5)),  # another product, same time
    ]
    cfg = replace(signals(), coactivity=CoactivityConfig(enabled=True, window_minutes=60),
                  observation=ObservationConfig(enabled=False))
    con = ingested(4, observations=obs)
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    rows = con.execute("SELECT a, b, signal, p FROM edge_signals ORDER BY a, b").fetchall()
    assert rows == [(0, 1, "coactivity", pytest.approx(cfg.coactivity.weight))]
    # off by default: observations of account metadata are attributes, not events
    con = ingested(4, observations=obs)
    build_links(con, replace(cfg, coactivity=CoactivityConfig()))
    assert build_edges(con, GraphConfig()) == 0


def test_shared_private_prompt_templates_link_and_public_ones_do_not():
    from linkage.config import CoactivityConfig
    from tests.helpers import BASE

    n = 260
    # three accounts with the same set of five private templates, each used twice
    rows = [(i, BASE + timedelta(days=i, hours=h), f"private{k}")
            for i in (0, 1, 2) for k in range(5) for h in (0, 1)]
    rows += [(i, BASE + timedelta(hours=i), "public") for i in range(n)]  # everybody's
    # one shared template (and a set too small to compare): not enough
    rows += [(i, BASE + timedelta(hours=h), "coincidence") for i in (10, 11) for h in (0, 1)]
    cfg = signals(prompt_sync=CoactivityConfig(enabled=False))
    con = ingested(n, interactions=rows)
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    got = con.execute("SELECT a, b, signal, n_keys FROM edge_signals ORDER BY a, b").fetchall()
    bands = cfg.prompt.bands  # identical sets share every MinHash band
    assert got == [(0, 1, "prompt", bands), (0, 2, "prompt", bands), (1, 2, "prompt", bands)]
    (w,) = con.execute("SELECT weight FROM edges WHERE a = 0 AND b = 1").fetchone()
    p = cfg.prompt.weight * specificity(3, cfg.prompt.cap)
    assert w == pytest.approx(1 - (1 - p) ** bands)  # noisy-OR of the shared bands


def test_prompt_sync_links_accounts_using_one_template_in_the_same_minutes():
    from linkage.config import CoactivityConfig, PromptConfig
    from tests.helpers import BASE

    rows = [(0, BASE, "t"), (1, BASE + timedelta(minutes=3), "t"),
            (2, BASE + timedelta(hours=5), "t")]
    cfg = signals(prompt=PromptConfig(enabled=False),
                  prompt_sync=CoactivityConfig(weight=0.4, enabled=True, window_minutes=10))
    con = ingested(3, interactions=rows)
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    assert con.execute("SELECT a, b, signal FROM edge_signals").fetchall() == [
        (0, 1, "prompt_sync")]


def test_a_lone_weak_witness_is_no_edge_unless_corroborated():
    """One shared /24 (ip_net, weight 0.2) is what neighbours share: no edge at the default
    floor (graph.min_edge_weight = 0.2). With a shared device beside it, the range still
    counts in the pair's weight and its evidence; with the floor at 0 every edge stays."""
    ips = [(0, "ip0", "netA"), (1, "ip1", "netA"), (2, "ip2", "netB"), (3, "ip3", "netB")]
    con = ingested(10, ips=ips, devices=[(2, "dev"), (3, "dev")])
    cfg = signals()
    build_links(con, cfg)
    build_edges(con, GraphConfig())
    assert con.execute("SELECT a, b FROM edges").fetchall() == [(2, 3)]
    (weight,) = con.execute("SELECT weight FROM edges").fetchone()
    assert weight == pytest.approx(1 - (1 - cfg.device.weight) * (1 - cfg.ip_net.weight))
    assert con.execute("SELECT signal FROM edge_signals WHERE a = 2 ORDER BY signal"
                       ).fetchall() == [("device",), ("ip_net",)]
    build_edges(con, GraphConfig(min_edge_weight=0.0))
    assert con.execute("SELECT a, b FROM edges ORDER BY a").fetchall() == [(0, 1), (2, 3)]


@pytest.mark.parametrize("seed", range(3))
def test_band_overlap_counts_shared_buckets_of_proposed_pairs(seed):
    """``_band_overlap`` (without the group step) against a count in Python: only pairs
    with at least ``min_shared`` shared ``activity_sync`` band keys are counted (and make
    ``tested``), other signals' keys propose nothing, and a pair that shares no bucket has
    no row."""
    import duckdb

    from linkage.signals import ACTIVITY_SYNC

    rng = random.Random(seed)
    n, min_shared = 60, 2
    sets = {i: {rng.randrange(40) for _ in range(rng.randrange(1, 15))} for i in range(n)}
    sets[n] = {1000}  # shares no bucket with anyone
    keys = [(kid, ACTIVITY_SYNC if kid % 4 else "prompt") for kid in range(30)]
    pair_keys = sorted({(a, b, kid) for _ in range(400) for kid in [rng.randrange(30)]
                        for a, b in [sorted(rng.sample(range(n), 2))]}
                       | {(0, n, 1), (0, n, 2)})
    con = duckdb.connect()
    con.execute("CREATE TABLE keys (kid INTEGER, signal VARCHAR)")
    con.executemany("INSERT INTO keys VALUES (?, ?)", keys)
    con.execute("CREATE TABLE pair_keys (a INTEGER, b INTEGER, kid INTEGER)")
    con.executemany("INSERT INTO pair_keys VALUES (?, ?, ?)", pair_keys)
    con.execute("CREATE TABLE activity_sets (idx INTEGER, e BIGINT)")
    con.executemany("INSERT INTO activity_sets VALUES (?, ?)",
                    [(i, e) for i, es in sets.items() for e in sorted(es)])
    con.execute("CREATE TABLE signal_min_shared (signal VARCHAR, min_shared INTEGER)")
    con.execute("INSERT INTO signal_min_shared VALUES (?, ?), ('prompt', 1)",
                [ACTIVITY_SYNC, min_shared])
    con.execute("CREATE TABLE band_background (signal VARCHAR, rounds INTEGER, fanout INTEGER)")
    con.execute("INSERT INTO band_background VALUES (?, 0, 0)", [ACTIVITY_SYNC])
    _band_overlap(con)

    sync = {kid for kid, signal in keys if signal == ACTIVITY_SYNC}
    shared_keys: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, kid in pair_keys:
        if kid in sync:
            shared_keys[(a, b)] += 1
    proposed = [pair for pair, c in shared_keys.items() if c >= min_shared]
    expected = sorted((a, b, ACTIVITY_SYNC, len(sets[a] & sets[b]), len(proposed))
                      for a, b in proposed if sets[a] & sets[b])
    got = con.execute("SELECT a, b, signal, k, tested FROM band_overlap ORDER BY a, b").fetchall()
    assert got == expected
    assert (0, n) in proposed and len(expected) >= 5


def _sync_tables(sets: dict[int, set[int]], proposed: list[tuple[int, int]], rounds: int,
                 fanout: int = 16):
    """A DuckDB connection holding what ``_band_overlap`` reads: the active buckets ``sets``,
    the pairs the bands ``proposed`` (two band keys each), and the background of 1,000
    buckets in which two of everyone's active buckets meet with probability 1/1,000, with
    ``rounds`` and ``fanout`` of the group step."""
    import duckdb

    from linkage.signals import ACTIVITY_SYNC

    con = duckdb.connect()
    con.execute("CREATE TABLE accounts AS SELECT range::INTEGER AS idx, "
                "'acct' || range AS account_id FROM range(100)")
    con.execute("CREATE TABLE keys (kid INTEGER, signal VARCHAR)")
    con.execute("INSERT INTO keys VALUES (0, ?), (1, ?)", [ACTIVITY_SYNC, ACTIVITY_SYNC])
    con.execute("CREATE TABLE pair_keys (a INTEGER, b INTEGER, kid INTEGER)")
    con.executemany("INSERT INTO pair_keys VALUES (?, ?, ?)",
                    [(a, b, kid) for a, b in proposed for kid in (0, 1)])
    con.execute("CREATE TABLE activity_sets (idx INTEGER, e BIGINT)")
    con.executemany("INSERT INTO activity_sets VALUES (?, ?)",
                    [(i, e) for i, es in sets.items() for e in sorted(es)])
    con.execute("CREATE TABLE signal_min_shared (signal VARCHAR, min_shared INTEGER)")
    con.execute("INSERT INTO signal_min_shared VALUES (?, 2)", [ACTIVITY_SYNC])
    con.execute("CREATE TABLE band_chance AS SELECT ? AS signal, idx, count(*)::INTEGER AS d, "
                "0::BIGINT AS lo, 999::BIGINT AS hi FROM activity_sets GROUP BY idx",
                [ACTIVITY_SYNC])
    con.execute("CREATE TABLE band_background AS SELECT ? AS signal, 0.001::DOUBLE AS q, "
                "1000::BIGINT AS span, 0.01::DOUBLE AS alpha, ? AS rounds, ? AS fanout",
                [ACTIVITY_SYNC, rounds, fanout])
    return con


def test_fellows_of_synchronised_fellows_are_tested_too():
    # Five scripts active in the same 30 buckets; the bands propose only the chain 0-1-2-3-4.
    # Chance shares 30 * 30 / 1000 = 0.9 buckets, and 30 shared is far beyond it
    # (-0.9 + 30 (1 + ln 0.9 - ln 30) = -76 < ln(0.01 / 11)). Account 5 (proposed with 0)
    # shares nothing; account 6 shares 2 buckets with 4 (-0.9 + 2 (1 + ln 0.9 - ln 2) = -0.5:
    # a coincidence), so its pair proposes no fellows.
    script = set(range(0, 300, 10))
    sets = {i: set(script) for i in range(5)}
    sets[5] = set(range(500, 530))
    sets[6] = {0, 10} | set(range(600, 628))
    chain = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (4, 6)]

    def overlap(rounds: int) -> dict[tuple[int, int], tuple[int, int, bool]]:
        con = _sync_tables(sets, chain, rounds)
        _band_overlap(con)
        return {(a, b): (k, tested, expanded) for a, b, k, tested, expanded in con.execute(
            "SELECT a, b, k, tested, expanded FROM band_overlap").fetchall()}

    scripts = {(a, b) for a in range(5) for b in range(a + 1, 5)}
    none = overlap(0)
    assert set(none) == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 6)}
    assert {t for _, t, _ in none.values()} == {6}
    # Round one: the fellows' fellows 0-2, 1-3, 2-4; round two: 0-3 (through 1 or 2), 1-4
    # and 0-4 (through 2). Nothing is left to propose in round three.
    one = overlap(1)
    assert set(one) == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (0, 2), (1, 3), (2, 4)}
    assert {t for _, t, _ in one.values()} == {9}
    full = overlap(5)
    assert set(full) == scripts | {(4, 6)}
    assert {t for _, t, _ in full.values()} == {12}
    assert all(k == 30 for pair, (k, _, _) in full.items() if pair in scripts)
    assert {pair for pair, (_, _, x) in full.items() if x} == scripts - set(chain)


def test_the_group_step_asks_each_account_for_its_strongest_fellows_only():
    # A hub active in 40 buckets; leaf i (1-6) in the first 30 + i of them, proposed with the
    # hub only. With a fanout of 2 the hub offers its two strongest links (leaves 6 and 5,
    # 36 and 35 shared buckets) and each leaf its only one: one new pair, (5, 6). With 16,
    # every pair of leaves: 15.
    hub = list(range(0, 400, 10))
    sets = {0: set(hub)} | {i: set(hub[:30 + i]) for i in range(1, 7)}
    star = [(0, i) for i in range(1, 7)]
    for fanout, new in ((2, {(5, 6)}), (16, {(i, j) for i in range(1, 7)
                                               for j in range(i + 1, 7)})):
        con = _sync_tables(sets, star, 1, fanout)
        _band_overlap(con)
        got = con.execute("SELECT a, b, k FROM band_overlap WHERE expanded").fetchall()
        assert {(a, b) for a, b, _ in got} == new
        assert all(k == 30 + min(a, b) for a, b, k in got)
