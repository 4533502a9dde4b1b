"""The background model: evidence judged against what chance predicts, on hand-computed cases.

* key cohesion (:func:`linkage.graph.key_cohesion`): a crowd-sized key counts as far as its
  carriers are tied to each other by independent evidence beyond chance;
* chance overlap of multi-valued signals (:func:`linkage.graph.build_edges`): the share of a
  pair's shared values that chance explains from how many values each account carries;
* privacy of multi-valued evidence and single-family strong edges in scoring.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace
from datetime import timedelta

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.config import (
    ActivitySyncConfig,
    CoactivityConfig,
    CosignupConfig,
    GraphConfig,
    PromptConfig,
    ScoringConfig,
    SignalConfig,
    SignalsConfig,
    TemplatePoolConfig,
)
from linkage.graph import build_edges, significant_sql
from linkage.signals import build_links, specificity
from tests.helpers import BASE, examples, ingested, insert_rows
from tests.test_scoring import run_scoring

N = 40
ONLY_IDENTIFIERS = SignalsConfig(cosignup=CosignupConfig(enabled=False))


def cohesion_of(con) -> dict[str, tuple[int, float, float]]:
    """key name (by its carriers' first account) -> (n, cohesion, p)."""
    rows = con.execute(
        """SELECT k.signal, min(km.idx), k.n, k.cohesion, k.p
           FROM keys k JOIN key_members km USING (kid) GROUP BY ALL"""
    ).fetchall()
    return {f"{s}@{first}": (n, c, p) for s, first, n, c, p in rows}


def test_cohesion_matches_the_hand_computed_background_model():
    # cohesion_min = 3: keys of more than three carriers are tested.
    stock = [(i, "stock") for i in range(8)]          # a stock device on 0..7
    ring_dev = [(i, "ringdev") for i in range(20, 28)]  # a ring's device on 20..27
    cards = [(0, "c1"), (1, "c1")] + [(i, "ringcard") for i in range(20, 28)]
    con = ingested(N, cards=cards, devices=stock + ring_dev)
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig(clique_max=3, cohesion_min=3))
    got = cohesion_of(con)

    # stock: 2 of its 8 carriers (0, 1) share card c1 (another root): c = 2/8. Each of them
    # reaches one account through other roots, the other six none:
    # e = 2/8 * (1 - exp(-1 * 7 / 40)).
    e = 2 / 8 * (1 - math.exp(-7 / N))
    want = (2 / 8 - e) / (1 - e)
    n, coh, p = got["device@0"]
    assert n == 8 and coh == pytest.approx(want)
    assert p == pytest.approx(ONLY_IDENTIFIERS.device.weight * specificity(8, 1000) * want)

    # the ring: every carrier of its device also carries its card (and vice versa): c = 1,
    # so cohesion is 1 whatever chance predicts.
    assert got["device@20"][1] == pytest.approx(1.0)
    assert got["card@20"][1] == pytest.approx(1.0)
    # a key of two carriers is not tested
    assert got["card@0"][1] == 1.0


def test_a_stock_device_on_a_small_deployments_strangers_is_background():
    # 5,000-account deployments see a stock fingerprint on a couple of dozen accounts: 20
    # strangers on one device (fewer than clique_max, which links them as a clique) are
    # more than a household, so the key is tested, and nothing else ties them.
    con = ingested(60, devices=[(i, "stock") for i in range(20)])
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig())
    n, coh, p = cohesion_of(con)["device@0"]
    assert (n, coh, p) == (20, 0.0, 0.0)
    assert con.execute("SELECT count(*) FROM edges").fetchone() == (0,)
    # a household-sized key is not tested: six accounts on one device keep its weight
    con = ingested(60, devices=[(i, "home") for i in range(6)])
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig())
    assert cohesion_of(con)["device@0"][1] == 1.0


def test_a_value_that_implies_another_is_no_corroboration():
    # An IP implies its /24: eight strangers in one /24, two of them on one IP, are not tied.
    ips = [(i, f"ip{i}", "net") for i in range(10, 18)] + [(11, "ip10", "net")]
    con = ingested(N, ips=ips)
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig(clique_max=3, cohesion_min=3))
    n, coh, p = cohesion_of(con)["ip_net@10"]
    assert (n, coh, p) == (8, 0.0, 0.0)
    # and no edge comes from it: only the shared IP links 10 and 11
    assert con.execute("SELECT DISTINCT signal FROM edge_signals").fetchall() == [("ip",)]


def test_the_stock_device_links_nobody_and_the_ring_stays_whole():
    # 36 strangers on a stock device; a 36-account ring on one device, chained cards (four
    # accounts each) and a signup burst. Both devices are tested (more than cohesion_min).
    stock = [(i, "stock") for i in range(0, 36)]
    ring = [(i, "ringdev") for i in range(40, 76)]
    cards = [(i, f"rc{(i - 40) // 4}") for i in range(40, 76)]
    created = {i: BASE + timedelta(minutes=i) for i in range(40, 76)}
    con = ingested(120, devices=stock + ring, cards=cards, created=created)
    part, n_flagged, clusters = run_scoring(con)
    assert n_flagged == 1
    (flagged,) = [c["cluster"] for c in clusters if c["flagged"]]
    assert set(map(int, part.members()[0][part.members()[1] == flagged])) == set(range(40, 76))
    assert (part.cluster[:36] == -1).all()  # the strangers are linked to no one


TEMPLATES_ONLY = SignalsConfig(
    cosignup=CosignupConfig(enabled=False),
    prompt=PromptConfig(enabled=False),
    prompt_sync=CoactivityConfig(enabled=False),
    activity_sync=ActivitySyncConfig(enabled=False),
)


def test_chance_overlap_of_templates_matches_the_hand_computed_case():
    # Shared templates: t1 {0, 1}, t2 {2, 3, 4}, t3 {2, 3, 4}, t4 {2, 3}.
    uses = {0: ["t1", "own0"], 1: ["t1"], 2: ["t2", "t3", "t4"], 3: ["t2", "t3", "t4"],
            4: ["t2", "t3"]}
    rows = [(i, BASE + timedelta(hours=h), t) for i, ts in uses.items()
            for h, t in enumerate(ts)]
    con = ingested(10, interactions=rows)
    build_links(con, TEMPLATES_ONLY)
    build_edges(con, GraphConfig())
    got = {(a, b): (p, k) for a, b, p, k in con.execute(
        "SELECT a, b, p, n_keys FROM edge_signals WHERE signal = 'template'").fetchall()}
    w, cap = TEMPLATES_ONLY.template.weight, TEMPLATES_ONLY.template.cap
    p2, p3 = w * specificity(2, cap), w * specificity(3, cap)
    # The chance a pair shares: each value t of a is b's with probability d_b (n_t - 1) /
    # total and would give p_t; both ways round. total = 2 + 3 + 3 + 2 carried values;
    # s = sum p_t (n_t - 1) over an account's values; d: 1, 1, 3, 3, 2.
    total = 10
    s0 = s1 = p2
    s2 = s3 = 2 * p3 * 2 + p2
    s4 = 2 * p3 * 2

    def chance(da, sa, db, sb):
        return (db * sa + da * sb) / (2 * total)

    assert got[(0, 1)] == (pytest.approx(p2 * (1 - chance(1, s0, 1, s1) / p2)), 1)
    raw23 = 1 - (1 - p3) ** 2 * (1 - p2)
    assert got[(2, 3)] == (pytest.approx(raw23 * (1 - chance(3, s2, 3, s3) / (2 * p3 + p2))), 3)
    assert got[(2, 4)] == (pytest.approx((1 - (1 - p3) ** 2)
                                         * (1 - chance(3, s2, 2, s4) / (2 * p3))), 2)


def test_rare_shared_values_are_not_explained_by_the_popular_ones():
    # A crowd of 50 heavy accounts each uses 20 of 30 popular templates; a group of 8 uses 5
    # of them and draws 12 templates each from a private pool of 24 (each used by about four
    # members: a pair of members shares two or three). Counted unweighted, chance explains
    # the pairs' shares through the popular templates that dominate q (the group's edges
    # vanish); weighted by their evidence, popular templates explain little, the private
    # ones remain.
    rng = random.Random(7)
    crowd, group = range(50), range(50, 58)
    uses = {i: rng.sample([f"pub{j}" for j in range(30)], 20) for i in crowd}
    uses |= {i: rng.sample([f"pub{j}" for j in range(30)], 5)
             + rng.sample([f"pool{j}" for j in range(24)], 12) for i in group}
    rows = [(i, BASE + timedelta(minutes=m), t) for i, ts in uses.items()
            for m, t in enumerate(ts)]
    con = ingested(60, interactions=rows)
    build_links(con, TEMPLATES_ONLY)
    build_edges(con, GraphConfig(clique_max=100))
    got = {(a, b): p for a, b, p in con.execute(
        "SELECT a, b, p FROM edge_signals WHERE signal = 'template'").fetchall()}
    # the formula, from the data
    users: dict[str, set[int]] = {}
    for i, ts in uses.items():
        for t in ts:
            users.setdefault(t, set()).add(i)
    w, cap = TEMPLATES_ONLY.template.weight, TEMPLATES_ONLY.template.cap
    p_of = {t: w * specificity(len(u), cap) for t, u in users.items()}
    total = sum(len(u) for u in users.values())

    def s(i: int) -> float:
        return sum(p_of[t] * (len(users[t]) - 1) for t in uses[i])

    for a, b in [(50, 51), (52, 57), (0, 1), (3, 50)]:
        shared = set(uses[a]) & set(uses[b])
        raw = 1 - math.prod(1 - p_of[t] for t in shared)
        mass = sum(p_of[t] for t in shared)
        chance = (len(uses[b]) * s(a) + len(uses[a]) * s(b)) / (2 * total)
        want = raw * max(0.0, 1 - chance / mass)
        assert got.get((a, b), 0.0) == pytest.approx(want, abs=1e-9)
    in_group = [got.get((a, b), 0.0) for a in group for b in group if a < b
                if len(set(uses[a]) & set(uses[b]) - {f"pub{j}" for j in range(30)}) >= 2]
    in_crowd = [got.get((a, b), 0.0) for a in crowd for b in crowd if a < b]
    assert len(in_group) >= 10 and min(in_group) > 0.2
    assert statistics.median(in_crowd) < 0.1 < 0.4 < statistics.median(in_group)


def test_heavy_users_who_meet_on_many_values_by_chance_get_no_evidence():
    # Twenty accounts each use the same twelve templates: every pair shares all twelve,
    # exactly what chance predicts when everyone carries every value (q = 1/20 * 19/20...).
    rows = [(i, BASE + timedelta(minutes=j), f"pub{j}") for i in range(20) for j in range(12)]
    con = ingested(20, interactions=rows)
    build_links(con, TEMPLATES_ONLY)
    build_edges(con, GraphConfig())
    # lambda = 12 * 12 * (12 * 20 * 19) / (12 * 20)^2 = 11.4 of 12 shared: little is left
    (p,) = con.execute("SELECT max(p) FROM edge_signals WHERE signal = 'template'").fetchone()
    raw = 1 - (1 - TEMPLATES_ONLY.template.weight * specificity(20, 200)) ** 12
    assert p == pytest.approx(raw * (1 - 11.4 / 12))


def test_strong_edges_of_one_family_are_not_identifier_reuse():
    # 12 accounts share many observed values pairwise (strong edges, one family only) and
    # nothing else: observation evidence, not identifiers.
    obs = [(i, "url", f"u{(i + k) % 12}", None) for i in range(12) for k in range(4)]
    con = ingested(30, observations=obs)
    _, _, clusters = run_scoring(con)
    big = [c for c in clusters if c["size"] >= 8]
    assert big and all(c["features"]["identifier_reuse"] == 0 for c in big)
    assert all(c["features"]["observation_reuse"] > 0 for c in big)


def test_colleagues_office_range_and_templates_are_not_identifier_reuse():
    # Twelve colleagues, each at its own address of one office /24, each working six of eight
    # internal templates: the range and the templates together make strong edges, yet
    # neither is an identifier the colleagues share. With three exact addresses shared by all
    # twelve (single-valued evidence strong on its own) the same team is linked as by a card.
    def office(exact: bool):
        ips = [(i, f"officeip{k}" if exact else f"officeip{i}", "officenet")
               for i in range(12) for k in range(3)]
        rows = [(i, BASE + timedelta(days=d, hours=i % 5), f"int{(i + k) % 8}")
                for i in range(12) for k in range(6) for d in (0, 3)]
        con = ingested(40, ips=ips, interactions=rows)
        _, _, clusters = run_scoring(con)
        (team,) = [c for c in clusters if c["size"] >= 10]
        (strongest,) = con.execute("SELECT max(weight) FROM intra_edges").fetchone()
        return team, strongest

    (hosts, strongest), (shared, _) = office(exact=False), office(exact=True)
    assert strongest >= ScoringConfig().strong_edge
    assert hosts["features"]["network_concentration"] == 1.0
    assert hosts["features"]["behaviour_reuse"] == 1.0
    assert hosts["features"]["identifier_reuse"] == 0.0
    assert shared["features"]["identifier_reuse"] == 1.0


def test_one_pipeline_links_members_like_an_identifier():
    # Ten scripts in the same 30 buckets beside ten heavy users (_schedule_world): their
    # synchronised activity is strong evidence on its own, yet one family; where two of them
    # also share private templates (one pipeline: its work on its schedule) the edge links
    # them for identifier_reuse too.
    def scripts(template):
        rows = [(i, BASE + timedelta(minutes=10 * b), f"h{i}-{b}") for i in range(10)
                for b in range(200)]
        rows += [(i, BASE + timedelta(minutes=10 * b + 1), template(i, b))
                 for i in range(10, 20) for b in range(1, 176, 6)]
        _, _, clusters = run_scoring(ingested(40, interactions=rows))
        (group,) = [c for c in clusters if c["size"] == 10]
        return group["features"]

    timed = scripts(lambda i, b: f"s{i}-{b}")
    pipeline = scripts(lambda i, b: f"pool{(b + i) % 9}")
    assert timed["schedule_sync"] == pipeline["schedule_sync"] == 1.0
    assert timed["identifier_reuse"] == 0.0
    assert pipeline["behaviour_reuse"] > 0 and pipeline["identifier_reuse"] > 0


def test_privacy_weighs_observed_values_by_the_members_share_of_their_users():
    # Accounts 0-7 share six observed values nobody else has (private). Accounts 8-15 share
    # six values that 30 outsiders have too, five per value: each has 13 carriers.
    obs = [(i, "url", f"t{j}", None) for i in range(8) for j in range(6)]
    obs += [(i, "url", f"pub{j}", None) for i in range(8, 16) for j in range(6)]
    obs += [(i, "url", f"pub{i % 6}", None) for i in range(16, 46)]
    _, _, clusters = run_scoring(ingested(46, observations=obs))
    private, public = (c for c in clusters if c["size"] == 8)
    # both are linked whole by their values (linked share 1); the private group's values are
    # all its own, the public group's members are 8 of the 13 carriers of each
    assert private["features"]["observation_reuse"] == pytest.approx(1.0)
    assert public["features"]["observation_reuse"] == pytest.approx(8 / 13, abs=1e-4)


def test_an_organisations_own_keys_link_neither_members_nor_contractors():
    # Ten members of one org and three contractors (no org_id) carry the corporate card and
    # sit in the office range; two contractors also share a personal card. A key with most
    # of its carriers outside any org (the personal card) still links.
    orgs = {i: "acme" for i in range(10)}
    cards = [(i, "corp") for i in range(13)] + [(11, "own"), (12, "own")]
    ips = [(i, f"ip{i}", "office") for i in range(13)]
    con = ingested(20, cards=cards, ips=ips, orgs=orgs)
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig())
    assert con.execute("SELECT a, b, signal FROM edge_signals").fetchall() == [(11, 12, "card")]
    # the same keys without org suppression link everyone, and rebuilding gives the same
    build_edges(con, GraphConfig(suppress_org=False))
    assert con.execute("SELECT count(*) FROM edges").fetchone()[0] == 13 * 12 // 2
    build_edges(con, GraphConfig())
    assert con.execute("SELECT a, b FROM edges").fetchall() == [(11, 12)]


def test_a_card_of_more_contractors_than_members_is_still_the_organisations():
    # Six members of one org (of 200 accounts) and nine contractors carry the corporate card:
    # six of its 15 carriers are the org's, where chance puts 15 * 6 / 200 = 0.45. A ring's
    # card of 15 carriers, one of them a seventh member of the org, is not the org's (one
    # where chance puts 0.45): it still links its carriers.
    orgs = {i: "acme" for i in [*range(6), 100]}
    cards = [(i, "corp") for i in range(15)] + [(i, "ring") for i in range(100, 115)]
    con = ingested(200, cards=cards, orgs=orgs)
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig())
    linked = con.execute("SELECT DISTINCT a, b FROM edge_signals WHERE signal = 'card'").fetchall()
    assert {a for a, _ in linked} | {b for _, b in linked} == set(range(100, 115))
    assert len(linked) == 15 * 14 // 2  # every pair of the ring, none of the card of the org


POOLS_ONLY = replace(TEMPLATES_ONLY, template=SignalConfig(weight=0.3, enabled=False),
                     template_pool=TemplatePoolConfig(enabled=True))


def pool_carriers(con) -> list[tuple[str, list[int]]]:
    """Build the links with template pools alone; (pool key, its carriers) per pool."""
    build_links(con, POOLS_ONLY)
    return con.execute(
        "SELECT key, list(idx ORDER BY idx) FROM links WHERE signal = 'template_pool' "
        "GROUP BY key").fetchall()


def test_a_private_pool_is_found_from_its_templates_users_and_weighed_by_its_work():
    # Accounts 0-11 each use all ten templates of a pool once and a personal template twice;
    # accounts 12-141 use public templates, each by a random-looking third of them (the
    # pool's users are a small part of everyone's template use: D = 120 + about 260).
    rows = [(i, BASE + timedelta(minutes=i + 60 * j), f"pool{j}") for i in range(12)
            for j in range(10)]
    rows += [(i, BASE + timedelta(hours=200 + h), f"own{i}") for i in range(12) for h in (0, 1)]
    rng = random.Random(1)
    rows += [(i, BASE + timedelta(hours=j), f"pub{j}") for i in range(12, 142) for j in range(6)
             if rng.random() < 1 / 3]
    con = ingested(142, interactions=rows)
    carriers = pool_carriers(con)
    assert [ids for _, ids in carriers] == [list(range(12))]
    (key,) = (k for k, _ in carriers)
    (first,) = con.execute("SELECT min(md5('pool' || j)) FROM range(10) t(j)").fetchone()
    assert key == f"pool:{first}"
    (p_key,) = con.execute("SELECT p_key FROM keys WHERE signal = 'template_pool'").fetchone()
    cfg = POOLS_ONLY.template_pool
    # ten of each user's twelve requests are on the pool's templates
    assert p_key == pytest.approx(cfg.weight * specificity(12, cfg.cap) * 10 / 12)
    assert con.execute("SELECT count(DISTINCT prompt_key) FROM pool_templates").fetchone() == (10,)


def test_shared_templates_count_as_far_as_they_are_the_members_own_work():
    # Ten accounts share six templates nobody else uses (12 requests each, the same set:
    # MinHash bands link them) and send 2 requests each on public templates that 40 others
    # use: own_work = 12 / 14.
    rows = [(i, BASE + timedelta(days=i, minutes=k), f"t{k % 6}") for i in range(10)
            for k in range(12)]
    rows += [(i, BASE + timedelta(hours=100 + k), f"pub{k}") for i in range(50) for k in range(2)]
    _, _, clusters = run_scoring(ingested(50, interactions=rows))
    (ring,) = [c for c in clusters if c["size"] == 10]
    assert ring["features"]["own_work"] == pytest.approx(12 / 14, abs=1e-4)
    w = ScoringConfig().weights["behaviour_reuse"]
    share = ring["features"]["behaviour_reuse"]
    assert share > 0
    assert ring["contributions"]["behaviour_reuse"] == pytest.approx(
        w * share**2 * 12 / 14, abs=1e-4)


def test_strong_edges_of_shared_exact_ips_still_link_like_identifiers():
    # Ten accounts, each consecutive pair on one exact IP (and so its /24): 1 - 0.5 * 0.8 =
    # 0.6, a strong edge made by the network family, which is not multi-valued evidence.
    ips = [(i, f"ip{k}", f"net{k}") for k in range(9) for i in (k, k + 1)]
    _, _, clusters = run_scoring(ingested(20, ips=ips))
    big = max(clusters, key=lambda c: c["size"])
    assert big["size"] >= 5
    assert big["features"]["identifier_reuse"] == pytest.approx(1.0)


def test_a_bin_and_postal_code_behind_one_card_is_that_card():
    # bp1: six accounts on one family card; bp2: five accounts, five cards of one issuer
    # batch; bp3: three accounts, two of them on one card (d = 2 of n = 3).
    rows = ([(i, "fam", "bp1") for i in range(6)] + [(i, f"v{i}", "bp2") for i in range(6, 11)]
            + [(11, "c3", "bp3"), (12, "c3", "bp3"), (13, "c4", "bp3")])
    con = ingested(20)
    insert_rows(con, "payment_instruments", ["idx", "card_key", "bin_postal_key"], rows)
    build_links(con, ONLY_IDENTIFIERS)
    build_edges(con, GraphConfig())
    p_key = dict(con.execute("SELECT min(km.idx), k.p_key FROM keys k JOIN key_members km "
                             "USING (kid) WHERE k.signal = 'bin_postal' GROUP BY k.kid, k.p_key"
                             ).fetchall())
    w, cap = ONLY_IDENTIFIERS.bin_postal.weight, ONLY_IDENTIFIERS.bin_postal.cap
    assert p_key[0] == 0.0  # (1 - 1) / (6 - 1): the family card's BIN and postal code
    assert p_key[6] == pytest.approx(w * specificity(5, cap))  # (5 - 1) / (5 - 1)
    assert p_key[11] == pytest.approx(w * specificity(3, cap) * (2 - 1) / (3 - 1))
    # the family is linked by its card alone: no BIN+postal evidence between its members
    signals = {s for (s,) in con.execute(
        "SELECT DISTINCT signal FROM edge_signals WHERE a < 6 AND b < 6").fetchall()}
    assert signals == {"card"}


def test_templates_everyone_uses_are_no_pool_and_a_pipelines_are():
    # Twelve accounts use ten pool templates each; all 100 accounts use the same five public
    # templates, whose users are identical sets (Jaccard 1) but no more than chance: a
    # template used by everyone shares all of its users with any other (lift 1).
    rows = [(i, BASE + timedelta(minutes=i + 60 * j), f"pool{j}") for i in range(12)
            for j in range(10)]
    rows += [(i, BASE + timedelta(hours=300 + j), f"pub{j}") for i in range(100)
             for j in range(5)]
    con = ingested(100, interactions=rows)
    carriers = pool_carriers(con)
    assert [ids for _, ids in carriers] == [list(range(12))]
    # Each account's volume d (compared templates it used) is 15 for the twelve, 5 for the
    # others: D = 12 * 15 + 88 * 5 = 620. A pool template's 12 users reach S = 180, so chance
    # shares (12 * 180 + 12 * 180) / (2 * 620) = 3.5 of them and 12 >= 2 * 3.5; a public
    # template's 100 users reach all of D, and chance shares all 100.
    assert con.execute("SELECT count(DISTINCT prompt_key) FROM pool_templates").fetchone() == (10,)


def test_heavy_users_who_use_every_popular_template_make_no_pool():
    # Twelve heavy users use all twenty public templates; sixty ordinary accounts use two
    # each; eight pipeline accounts use six pool templates each. Two public templates share
    # their twelve heavy users (of 18 users each: Jaccard 0.5). Counted against everyone
    # alike (18 * 18 / 80 = 4.1 by chance) that is a pool; counted against who the users are
    # it is chance: d = 20, 2 and 6, D = 240 + 120 + 48 = 408, and a public template's users
    # reach S = 12 * 20 + 6 * 2 = 252, so chance shares 18 * 252 / 408 = 11.1 and
    # 12 < 2 * 11.1. The pipeline's templates (8 users, S = 48) share their 8 where chance
    # says 8 * 48 / 408 = 0.9: a pool.
    rows = [(i, BASE + timedelta(hours=j, minutes=i), f"pub{j}") for i in range(12)
            for j in range(20)]
    rows += [(i, BASE + timedelta(days=2, minutes=i), f"pub{t}") for i in range(12, 72)
             for t in (i % 20, (i * 7 + 3) % 20)]
    rows += [(i, BASE + timedelta(days=5, hours=j, minutes=i), f"pool{j}") for i in range(72, 80)
             for j in range(6)]
    con = ingested(80, interactions=rows)
    assert [ids for _, ids in pool_carriers(con)] == [list(range(72, 80))]


SCHEDULE_ONLY = replace(TEMPLATES_ONLY, template=SignalConfig(weight=0.3, enabled=False),
                        activity_sync=ActivitySyncConfig())


def _schedule_world() -> list:
    """Ten heavy users active in every one of 200 ten-minute buckets (0-199); ten scripts
    in the same 30 of them, every sixth (1, 7, ..., 175)."""
    rows = [(i, BASE + timedelta(minutes=10 * b), f"h{i}-{b}") for i in range(10)
            for b in range(200)]
    rows += [(i, BASE + timedelta(minutes=10 * b + 1), f"s{i}-{b}") for i in range(10, 20)
             for b in range(1, 176, 6)]
    return rows


def test_synchronised_activity_is_judged_against_the_overlap_of_volumes():
    # Both kinds of pair share every bucket they have (Jaccard 1: all 20 bands). Per bucket
    # n = 10, or 20 in the scripts' 30: q = sum n(n-1) / (sum n)^2
    # = (170 * 90 + 30 * 380) / 2300^2; everyone's span is 200 buckets.
    con = ingested(20, interactions=_schedule_world())
    build_links(con, SCHEDULE_ONLY)
    build_edges(con, GraphConfig())
    q = (170 * 90 + 30 * 380) / 2300**2
    assert con.execute("SELECT q, span FROM band_background").fetchone() == (
        pytest.approx(q), 200)
    ev = {(a, b): (p, k) for a, b, p, k in con.execute(
        "SELECT a, b, p, n_keys FROM edge_signals WHERE signal = 'activity_sync'").fetchall()}
    # heavy users: chance alone shares 200 * 200 * q = 202 buckets (all of them): no evidence
    assert not any(a < 10 for a, _ in ev)
    # scripts: active from bucket 1 to 175 (L = 175), so chance shares
    # 30 * 30 * q * 200 * 175 / 175^2 = 5.19 buckets, a Jaccard of 5.19 / (60 - 5.19) = 0.095
    # of the observed 1; and 30 shared where chance says 5.19 is far beyond chance:
    # -5.19 + 30 (1 + ln 5.19 - ln 30) = -27.8 < ln(0.01 / pairs tested)
    e = 30 * 30 * q * 200 * 175 / 175**2
    assert -e + 30 * (1 + math.log(e) - math.log(30)) < math.log(0.01 / 90)
    j0 = e / (60 - e)
    cfg = SCHEDULE_ONLY.activity_sync
    p_band = cfg.weight * specificity(10, cfg.cap)
    assert len(ev) == 45
    for p, k in ev.values():
        assert k == cfg.bands
        assert p == pytest.approx((1 - (1 - p_band) ** k) * (1 - j0))


def _poisson_tail(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), summed exactly."""
    return 1.0 - sum(math.exp(-mean + i * math.log(mean) - math.lgamma(i + 1))
                     for i in range(k))


@settings(max_examples=examples(200), deadline=None)
@given(k=st.integers(0, 400), mean=st.floats(1e-3, 300.0),
       alpha=st.floats(1e-12, 0.5))
def test_the_significance_of_an_overlap_never_claims_more_than_poisson_allows(
        k: int, mean: float, alpha: float) -> None:
    # The SQL test says "beyond chance" exactly when the Chernoff bound is below alpha, and
    # the bound is above the true tail: what it calls significant is at least that unlikely.
    ((got,),) = duckdb.sql(f"SELECT {significant_sql(str(k), repr(mean), repr(alpha))}"
                           ).fetchall()
    bound = -mean + k * (1 + math.log(mean) - math.log(k)) if k > mean else 0.0
    assert got == (k > mean and bound < math.log(alpha))
    if got:
        assert _poisson_tail(k, mean) <= alpha * (1 + 1e-9)


def test_a_few_shared_buckets_are_a_coincidence_and_many_are_not():
    # By hand: 3 shared where chance says 0.13 (two light accounts): bound
    # -0.13 + 3 (1 + ln 0.13 - ln 3) = -6.5, beyond 1% alone but not among 1,000 pairs
    # (ln(1e-5) = -11.5); 8 shared: -0.13 + 8 (1 + ln 0.13 - ln 8) = -25.1, beyond both.
    def beyond(k: int, alpha: float) -> bool:
        return duckdb.sql(f"SELECT {significant_sql(str(k), '0.13', repr(alpha))}"
                          ).fetchall()[0][0]
    assert beyond(3, 0.01) and not beyond(3, 0.01 / 1000)
    assert beyond(8, 0.01 / 1000)
    assert not beyond(0, 0.5) and not beyond(1, 0.01)  # none, or one: chance says so


def test_scripts_on_one_schedule_are_scored_by_their_synchronised_activity():
    _, _, clusters = run_scoring(ingested(30, interactions=_schedule_world()))
    scripts = [c for c in clusters if c["size"] == 10 and c["features"]["schedule_sync"] > 0]
    assert len(scripts) == 1
    assert scripts[0]["features"]["schedule_sync"] == pytest.approx(1.0)
    w = ScoringConfig().weights["schedule_sync"]
    assert scripts[0]["contributions"]["schedule_sync"] == pytest.approx(w)
    assert any("activity schedule" in r for r in scripts[0]["reasons"])


def test_a_schedulers_shifts_count_as_one_schedule():
    # Five cells of four accounts, each cell on one card: two accounts of each cell work the
    # scheduler's first shift (every 12th bucket from 1), two its second (every 12th from 7).
    # A shift's accounts share all of their buckets, two shifts none; ten heavy users in
    # every bucket are the background. Every member is synchronised with another: the
    # feature is 1, where the larger shift alone would be half of the cluster.
    rows = [(i, BASE + timedelta(minutes=10 * b), f"h{i}-{b}") for i in range(10)
            for b in range(300)]
    shift = {i: 1 + 6 * ((i - 10) % 4 // 2) for i in range(10, 30)}
    rows += [(i, BASE + timedelta(minutes=10 * b + 1), f"s{i}-{b}") for i in range(10, 30)
             for b in range(shift[i], 300, 12)]
    cards = [(i, f"cell{(i - 10) // 4}") for i in range(10, 30)]
    _, _, clusters = run_scoring(ingested(40, cards=cards, interactions=rows))
    (cells,) = [c for c in clusters if c["features"]["schedule_sync"] > 0]
    assert cells["size"] == 20
    assert cells["features"]["schedule_sync"] == pytest.approx(1.0)


def _category_world(groups: dict[int, tuple[int, dict[str, int]]]) -> dict[int, float]:
    """Shares of departing members per cluster, for clusters of accounts whose requests
    follow the given category counts: ``{cluster: (accounts, {category: requests})}``;
    cluster -1 is the unclustered population."""
    import duckdb

    from linkage.scoring.departure import category_departure

    con = duckdb.connect()
    rows, members, idx = [], [], 0
    for cluster, (accounts, counts) in groups.items():
        for _ in range(accounts):
            rows += [(idx, cat) for cat, n in counts.items() for _ in range(n)]
            if cluster >= 0:
                members.append((idx, cluster))
            idx += 1
    con.execute("CREATE TABLE interactions (idx INTEGER, category VARCHAR)")
    insert_rows(con, "interactions", ["idx", "category"], rows)
    con.execute("CREATE TABLE members (idx INTEGER, cluster INTEGER)")
    insert_rows(con, "members", ["idx", "cluster"], members)
    return category_departure(con)


PEOPLE = {"chat": 18, "writing": 8, "analysis": 5, "coding": 7, "agentic": 2}   # 40 requests
SCRIPTS = {"coding": 24, "agentic": 16}                                           # 40 requests


def test_members_who_ask_for_other_things_than_people_depart_one_by_one():
    shares = _category_world({
        -1: (300, PEOPLE),
        0: (12, SCRIPTS),          # a fleet asking for code all day
        1: (10, PEOPLE),           # a team of people: their mix is everyone's
        2: (6, {"coding": 6, "agentic": 4}),   # scripts of ten requests: too few to judge
    })
    # Against the people's mix p = (.45, .2, .125, .175, .05), a script's X² = 24²/(40·.175)
    # + 16²/(40·.05) - 40 = 170.3: z = 10.8 with 4 degrees of freedom, far beyond 3.09.
    assert shares[0] == pytest.approx(1.0)
    assert shares[1] == pytest.approx(0.0)
    assert shares[2] == pytest.approx(0.0)


def test_a_fleet_does_not_pull_the_norm_towards_itself():
    # The fleet is a tenth of the accounts and sends most of the requests: the norm is the
    # average account's mix, estimated again without the accounts that depart, so the
    # people stay typical and the fleet does not.
    heavy_scripts = {"coding": 240, "agentic": 160}
    shares = _category_world({
        -1: (80, PEOPLE),
        0: (10, heavy_scripts),
        1: (20, PEOPLE),
    })
    assert shares[0] == pytest.approx(1.0)
    assert shares[1] == pytest.approx(0.0)


def test_a_cluster_of_people_and_scripts_departs_by_the_scripts_share():
    import duckdb

    from linkage.scoring.departure import category_departure

    con = duckdb.connect()
    con.execute("CREATE TABLE interactions (idx INTEGER, category VARCHAR)")
    people = [(i, c) for i in range(100) for c, n in PEOPLE.items() for _ in range(n)]
    scripts = [(i, c) for i in range(100, 106) for c, n in SCRIPTS.items() for _ in range(n)]
    insert_rows(con, "interactions", ["idx", "category"], people + scripts)
    con.execute("CREATE TABLE members AS SELECT range::INTEGER AS idx, 0 AS cluster "
                "FROM range(94, 106)")
    # six people (94-99) and six scripts (100-105): half the members depart
    assert category_departure(con) == {0: pytest.approx(0.5)}


def test_a_category_only_the_fleet_asks_for_still_makes_it_depart():
    # Once the departing accounts are set aside, no typical account asks for "extraction":
    # it stays in the norm as a rare category, so the fleet's X² is the larger for it.
    shares = _category_world({
        -1: (100, PEOPLE),
        0: (8, {"extraction": 30, "coding": 10}),
        1: (10, PEOPLE),
    })
    assert shares[0] == pytest.approx(1.0)
    assert shares[1] == pytest.approx(0.0)
