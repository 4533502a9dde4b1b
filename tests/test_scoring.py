"""Scoring: features, the documented formula, flags and reasons."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import timedelta

import pytest

from linkage.communities import detect_communities
from linkage.config import (
    CosignupConfig,
    GraphConfig,
    ScoringConfig,
    SignalConfig,
    SignalsConfig,
)
from linkage.edge_arrays import build_graph
from linkage.graph import build_edges, edge_arrays
from linkage.scoring import FEATURES, HOUSEHOLD, score_clusters, size_factor, usage_campaign
from linkage.signals import build_links
from tests.helpers import BASE, ingested, insert_rows

SIGNALS = SignalsConfig(cosignup=CosignupConfig(enabled=False))
INTERACTIONS = ["idx", "ts", "model", "prompt_key", "category", "input_tokens", "output_tokens"]


def run_scoring(con, cfg=ScoringConfig(), graph=GraphConfig()):
    weights = build_links(con, SIGNALS)
    build_edges(con, graph)
    part = detect_communities(build_graph(edge_arrays(con)), seed=1)
    flagged = score_clusters(con, part, cfg, {s: c for s, (_, c) in weights.items()})
    rows = con.execute(
        "SELECT cluster, size, score, flagged, features, contributions, reasons "
        "FROM cluster_scores ORDER BY cluster").fetchall()
    return part, flagged, [
        dict(cluster=r[0], size=r[1], score=r[2], flagged=r[3], features=json.loads(r[4]),
             contributions=json.loads(r[5]), reasons=json.loads(r[6])) for r in rows]


def ring_and_family():
    """A 16-account ring (one card, 3 devices, signups 2 minutes apart) and a family of 3."""
    ring = range(16)
    cards = [(i, "ringcard") for i in ring] + [(20, "fam"), (21, "fam"), (22, "fam")]
    devices = [(i, f"ringdev{i % 3}") for i in ring]
    created = {i: BASE + timedelta(minutes=2 * i) for i in ring}
    return ingested(40, cards=cards, devices=devices, created=created)


def test_ring_is_flagged_family_is_not():
    _, n_flagged, clusters = run_scoring(ring_and_family())
    assert n_flagged == 1
    ring, family = clusters
    assert ring["size"] == 16 and ring["flagged"] and ring["score"] > 0.7
    assert family["size"] == 3 and not family["flagged"]
    # one card and three devices bind all 16 together
    assert ring["features"]["identifier_reuse"] == 1.0
    assert ring["features"]["burst"] == 1.0  # all 16 within 30 minutes < 120-minute window
    assert "16 of 16 accounts share one card" in ring["reasons"]
    assert "16 of 16 accounts share 3 device fingerprints" in ring["reasons"]
    assert "16 of 16 signed up within 30 minutes" in ring["reasons"]
    assert any("small cluster (3 accounts)" in r for r in family["reasons"])


def test_score_follows_the_documented_formula():
    cfg = ScoringConfig()
    _, _, clusters = run_scoring(ring_and_family(), cfg)
    for c in clusters:
        evidence = {f: c["features"][f] ** (1 if f == "burst" else 2) for f in FEATURES}
        household = 1 - math.prod(1 - cfg.weights[f] * evidence[f] for f in HOUSEHOLD)
        other = 1 - math.prod(1 - cfg.weights[f] * evidence[f] for f in FEATURES
                              if f not in HOUSEHOLD)
        for f in FEATURES:
            assert c["contributions"][f] == pytest.approx(cfg.weights[f] * evidence[f],
                                                          abs=1e-3)
        damp_h = size_factor(c["size"], cfg.household_full_size)
        damp = size_factor(c["size"], cfg.full_size)
        assert c["features"]["household_factor"] == pytest.approx(damp_h, abs=1e-4)
        assert c["score"] == pytest.approx(1 - (1 - damp_h * household) * (1 - damp * other),
                                           abs=1e-3)
        assert 0.0 <= c["score"] <= 1.0
        assert c["flagged"] == (c["score"] >= cfg.threshold)


def test_two_families_in_one_neighbourhood_are_not_a_ring():
    """Shares count the largest group linked by one kind of evidence, not every member that
    shares something: two families glued by a /24 range look nothing like one ring."""
    cards = [(i, "famA") for i in range(4)] + [(i, "famB") for i in range(4, 8)]
    ips = [(i, f"home{i // 4}", "net") for i in range(8)] + [(i, f"n{i}", "net")
                                                            for i in range(8, 12)]
    # every edge kept: the /24 alone (weight 0.2) is below the default floor
    _, n_flagged, clusters = run_scoring(ingested(40, cards=cards, ips=ips),
                                         graph=GraphConfig(min_edge_weight=0.0))
    (hood,) = [c for c in clusters if c["size"] >= 8]
    assert hood["features"]["identifier_reuse"] == pytest.approx(4 / hood["size"], abs=1e-3)
    assert n_flagged == 0


def test_burst_of_tied_windows_is_the_shortest():
    """Two windows hold the most sign-ups (8 of 16 each, one over 70 minutes, one over 14):
    the reason names the shortest, whatever order the rows come in."""
    ring = range(16)
    created = {i: BASE + (timedelta(minutes=10 * i) if i < 8
                          else timedelta(days=1, minutes=2 * (i - 8))) for i in ring}
    con = ingested(40, cards=[(i, "ringcard") for i in ring], created=created)
    _, _, clusters = run_scoring(con)
    (cluster,) = [c for c in clusters if c["size"] == 16]
    assert cluster["features"]["burst"] == 0.5
    assert "8 of 16 signed up within 14 minutes" in cluster["reasons"]


def test_threshold_is_configurable():
    _, n_flagged, _ = run_scoring(ring_and_family(), ScoringConfig(threshold=0.99999))
    assert n_flagged == 0


def test_families_of_two_to_four_cannot_be_flagged():
    for size in (2, 3, 4):
        assert size_factor(size, ScoringConfig().full_size) < ScoringConfig().threshold


def test_an_extended_family_on_one_card_is_not_flagged_and_a_ring_of_eight_is():
    # Two households of four (each on its own card, home IP and device) joined by one
    # family card: everything a household shares, and nothing else. A ring of eight shares
    # one card and signs up within minutes.
    cards = [(i, "family") for i in range(8)] + [(i, f"home{i // 4}") for i in range(8)]
    cards += [(i, "ring") for i in range(20, 28)]
    ips = [(i, f"ip{i // 4}", f"net{i // 4}") for i in range(8)]
    devices = [(i, f"dev{i // 4}") for i in range(8)]
    created = {i: BASE + timedelta(days=40 * i) for i in range(8)}
    created |= {i: BASE + timedelta(minutes=3 * i) for i in range(20, 28)}
    con = ingested(40, cards=cards, ips=ips, devices=devices, created=created)
    _, _, clusters = run_scoring(con)
    family = next(c for c in clusters if c["size"] == 8 and c["features"]["burst"] < 0.5)
    ring = next(c for c in clusters if c["size"] == 8 and c["features"]["burst"] == 1.0)
    assert family["features"]["identifier_reuse"] == 1.0
    cfg = ScoringConfig()
    # 1 - (1 - log 4 / log 12 * 0.75 ...) stays under the threshold
    assert family["features"]["household_factor"] == pytest.approx(
        math.log(4) / math.log(cfg.household_full_size / 2), abs=1e-4)
    assert not family["flagged"]
    assert ring["flagged"]
    assert any("which households share too" in r for r in family["reasons"])


def test_cluster_keys_and_intra_edges():
    con = ring_and_family()
    run_scoring(con)
    keys = con.execute(
        "SELECT signal, n_members, n_global FROM cluster_keys WHERE cluster = 0 "
        "ORDER BY signal, n_members").fetchall()
    assert keys == [("card", 16, 16), ("device", 5, 5), ("device", 5, 5), ("device", 6, 6)]
    (n_intra,) = con.execute("SELECT count(*) FROM intra_edges WHERE cluster = 0").fetchone()
    assert n_intra == con.execute(
        "SELECT count(*) FROM edges WHERE a < 16 AND b < 16").fetchone()[0]


def test_a_hub_key_is_listed_with_its_count_but_is_not_reuse():
    # The ring's card is carried by 16 accounts, above a card cap of 10: no edges (the ring
    # falls apart into its three device groups), no reuse in the reasons, but each group's
    # keys list it with its global count.
    con = ring_and_family()
    signals = dataclasses.replace(SIGNALS, card=SignalConfig(weight=0.9, cap=10))
    weights = build_links(con, signals)
    build_edges(con, GraphConfig())
    part = detect_communities(build_graph(edge_arrays(con)), seed=1)
    score_clusters(con, part, ScoringConfig(), {s: c for s, (_, c) in weights.items()})
    ring = con.execute("SELECT cluster FROM members WHERE idx = 0").fetchone()[0]
    keys = con.execute(
        "SELECT signal, n_members, n_global FROM cluster_keys WHERE cluster = ? "
        "ORDER BY signal, n_members", [ring]).fetchall()
    size = con.execute("SELECT count(*) FROM members WHERE cluster = ?", [ring]).fetchone()[0]
    assert ("card", size, 16) in keys
    assert all(n_global < 10 for signal, _, n_global in keys if signal == "device")
    (reasons,) = con.execute(
        "SELECT reasons FROM cluster_scores WHERE cluster = ?", [ring]).fetchone()
    assert not any("card" in r for r in json.loads(reasons))
    assert any("device fingerprint" in r for r in json.loads(reasons))


def test_usage_is_reported_with_the_features_and_as_a_reason():
    con = ring_and_family()
    rows = [(i, BASE + timedelta(days=d, minutes=i), "m1", None,
             "coding" if d % 4 else "chat", 100, 900)
            for i in range(16) for d in range(10)]
    insert_rows(con, "interactions", INTERACTIONS, rows)
    _, _, clusters = run_scoring(con)
    ring = clusters[0]
    f = ring["features"]
    assert (f["requests"], f["usage_accounts"]) == (160, 16)
    assert (f["input_tokens"], f["output_tokens"]) == (16_000, 144_000)
    assert f["coding_agentic_share"] == 0.7  # 7 of every 10 days are coding
    assert f["usage_days"] == pytest.approx(9.01, abs=0.01)
    # every request at the same hour of day, on one model: a scheduler's regularity
    assert (f["timing_regularity"], f["model_concentration"]) == (1.0, 1.0)
    assert f["requests_per_account_day"] == pytest.approx(160 / 16 / 9.01, abs=0.01)
    assert f["usage_campaign"] == pytest.approx(usage_campaign(f), abs=1e-4)
    assert f["usage_campaign"] == pytest.approx(
        0.7 * 1.0 * math.log(f["requests_per_account_day"]) / math.log(20), abs=1e-3)
    assert ("16 accounts sent 160 requests (160.0k tokens) in 9.0 days, 70% coding/agentic, "
            "100% of each account's requests in its two busiest hours of the day, 100% on one "
            "model") in ring["reasons"]
    assert "requests" not in clusters[1]["features"]  # the family sent nothing


def test_campaign_usage_raises_the_score_and_human_usage_does_not():
    def ring_score(hour_of: Callable[[int, int], int], category: str) -> dict:
        con = ring_and_family()
        rows = [(i, BASE + timedelta(days=r // 40, hours=hour_of(i, r), seconds=r), "m1",
                 None, category, 10, 10) for i in range(16) for r in range(400)]
        insert_rows(con, "interactions", INTERACTIONS, rows)
        return run_scoring(con)[2][0]

    base = run_scoring(ring_and_family())[2][0]["score"]
    bot = ring_score(lambda i, r: 3 + r % 2, "agentic")  # two hours a day, 40 a day
    person = ring_score(lambda i, r: (i * 7 + r * 5) % 24, "agentic")  # all day long
    chat = ring_score(lambda i, r: 3 + r % 2, "chat")
    assert bot["features"]["timing_regularity"] == 1.0
    assert person["features"]["timing_regularity"] < 0.2
    assert bot["features"]["usage_campaign"] == 1.0
    assert person["features"]["usage_campaign"] == chat["features"]["usage_campaign"] == 0.0
    w = ScoringConfig().weights["usage_campaign"]
    assert bot["contributions"]["usage_campaign"] == pytest.approx(w)
    assert 1 - bot["score"] == pytest.approx((1 - base) * (1 - w), abs=1e-3)
    assert person["score"] == pytest.approx(base) and chat["score"] == pytest.approx(base)


def test_a_ring_that_shares_only_private_prompt_templates_is_flagged():
    # ten accounts with nothing in common but five private templates, each used twice, days
    # apart
    rows = [(i, BASE + timedelta(days=i, hours=k, minutes=m), f"tpl{k}") for i in range(10)
            for k in range(5) for m in (0, 30)]
    con = ingested(30, interactions=rows)
    _, n_flagged, clusters = run_scoring(con)
    assert n_flagged == 1
    (ring,) = clusters
    assert ring["size"] == 10 and ring["features"]["behaviour_reuse"] == 1.0
    assert "10 of 10 accounts share 20 MinHash bands of near-identical prompt-template sets" \
        in ring["reasons"]
    assert any(r.endswith("; 10 of them share 5 private prompt templates")
               for r in ring["reasons"])


def test_a_piece_of_a_flagged_fleet_is_flagged_with_it():
    # The ring of 16 (flagged on its own) and three accounts, 30-32, that share a card and
    # are each on one of the ring's devices: alone, three accounts on one card are a
    # household. Given as their own cluster (CPM splits such pieces off large clusters),
    # each links to five or six ring members: most of the piece's evidence ties it to the
    # ring, far beyond what 400 pairs of card-sharing accounts around them make chance
    # predict. The family of 3 is tied to nobody.
    import numpy as np

    from linkage.campaigns import cluster_links
    from linkage.communities import Partition

    ring = range(16)
    cards = [(i, "ringcard") for i in ring] + [(20, "fam"), (21, "fam"), (22, "fam")]
    cards += [(40 + i, f"pc{i // 2}") for i in range(800)] + [(30, "pcard"), (31, "pcard"),
                                                              (32, "pcard")]
    devices = [(i, f"ringdev{i % 3}") for i in ring] + [(30 + k, f"ringdev{k}") for k in range(3)]
    created = {i: BASE + timedelta(minutes=2 * i) for i in ring}
    con = ingested(840, cards=cards, devices=devices, created=created)
    weights = build_links(con, SIGNALS)
    build_edges(con, GraphConfig())
    edges = edge_arrays(con)
    cluster = np.full(840, -1)
    cluster[list(ring)], cluster[30:33], cluster[20:23] = 0, 1, 2
    part = Partition(cluster=cluster, n_clusters=3, n_components=1, largest_component=19)
    caps = {s: c for s, (_, c) in weights.items()}
    links = cluster_links(edges, cluster, 3)

    def scored(**kw):
        n = score_clusters(con, part, ScoringConfig(), caps, **kw)
        rows = con.execute("SELECT cluster, score, flagged, reasons FROM cluster_scores "
                           "ORDER BY cluster").fetchall()
        return n, [(s, f, json.loads(r)) for _, s, f, r in rows]

    n_alone, alone = scored()
    assert n_alone == 1 and [f for _, f, _ in alone] == [True, False, False]
    n, got = scored(links=links)
    assert n == 2 and [f for _, f, _ in got] == [True, True, False]
    assert [s for s, _, _ in got] == [s for s, _, _ in alone]  # the scores stay their own
    # the store keeps a flagged piece's evidence whatever its own score
    from linkage.pipeline import _explain

    _explain(con, 0.4)
    assert got[1][0] < 0.4
    assert con.execute("SELECT cluster FROM explained ORDER BY cluster").fetchall() == [
        (0,), (1,)]
    piece_reasons = got[1][2]
    assert piece_reasons[0].startswith("a piece of a flagged cluster of 16 accounts: ")
    assert piece_reasons[1:] == alone[1][2]
    # the lift: W / (k_ring k_piece / 2m) with every edge of the graph in 2m
    w = links.weight[(links.left == 0) & (links.right == 1)][0]
    assert w >= 0.6 * 3 and w / links.expected()[(links.left == 0) & (links.right == 1)][0] > 2
