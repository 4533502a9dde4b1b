"""Campaigns: flagged clusters that are pieces of one fleet share a ``campaign_id``."""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.campaigns import (
    assign_campaigns,
    cluster_links,
    fleet_pieces,
    join_clusters,
    name_campaigns,
    publish_campaigns,
)
from linkage.config import CampaignsConfig, RunConfig
from linkage.edge_arrays import EdgeArrays
from linkage.errors import ConfigError
from linkage.evaluate import evaluate_flagged, read_truth
from linkage.reports.html import write_report
from linkage.reports.queries import campaigns, cluster_detail, memberships_table
from linkage.store import RunRecord, Store, migrate
from linkage.store.record import RECORD_SCHEMAS
from tests import helpers
from tests.helpers import examples, run_id_of

STRONG = RunConfig().scoring.strong_edge  # 0.6
invoke = partial(helpers.invoke, LINKAGE_SECRET="campaigns-test-key-0123456789")


def edges_of(n: int, pairs: list[tuple[int, int, float]]) -> EdgeArrays:
    """EdgeArrays from ``(a, b, weight)``, normalised to a < b and sorted like the pipeline's."""
    rows = sorted((min(a, b), max(a, b), w) for a, b, w in pairs)
    src, dst, w = (np.array(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
    return EdgeArrays(n, np.asarray(src, np.int64), np.asarray(dst, np.int64),
                      np.asarray(w, np.float64))


def triangle(a: int, w: float = 0.9) -> list[tuple[int, int, float]]:
    return [(a, a + 1, w), (a, a + 2, w), (a + 1, a + 2, w)]


def campaigns_of(edges: EdgeArrays, cluster: list[int], flagged: list[bool],
                 ids: list[str], **kw: object) -> list[str | None]:
    kw = {"min_lift": 2.0, "min_evidence": STRONG, **kw}
    return assign_campaigns(edges, np.array(cluster), np.array(flagged), np.array(ids),
                            **kw).tolist()  # type: ignore[arg-type]


# --- the function against hand-computed cases ------------------------------------------------

def test_strong_cross_evidence_joins_two_flagged_clusters() -> None:
    # Triangles {0,1,2} and {3,4,5}, each edge 0.9, joined by 2-3 (0.9) and 1-4 (0.5); a third
    # triangle {6,7,8} alone.
    edges = edges_of(9, [*triangle(0), *triangle(3), *triangle(6), (2, 3, 0.9), (1, 4, 0.5)])
    cluster = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    links = cluster_links(edges, np.array(cluster), 3)
    # W_01 = 0.9 + 0.5; k_0 = k_1 = 2 * 3 * 0.9 + 1.4 = 6.8; k_2 = 5.4; 2m = 2 * 9.5 = 19.
    assert (links.left.tolist(), links.right.tolist()) == ([0], [1])
    assert links.weight.tolist() == pytest.approx([1.4])
    # members with an edge across: 1 and 2 of the first, 3 and 4 of the second
    assert (links.touch_left.tolist(), links.touch_right.tolist()) == ([2], [2])
    assert links.strength.tolist() == pytest.approx([6.8, 6.8, 5.4])
    assert links.total == pytest.approx(19.0)
    # E_01 = 6.8 * 6.8 / 19 = 2.434, so the lift is 1.4 / 2.434 = 0.575 in this tiny graph:
    # no join at min_lift 2 ...
    assert links.expected().tolist() == pytest.approx([6.8 * 6.8 / 19])
    assert campaigns_of(edges, cluster, [True] * 3, ["ca", "cb", "cc"]) == ["ca", "cb", "cc"]
    # ... but the same pieces inside a population (a thousand pairs of ordinary accounts
    # sharing something) are what chance does not explain: lift 1.4 / (6.8 * 6.8 / 1819) = 55.
    crowd = [(10 + 2 * i, 11 + 2 * i, 0.9) for i in range(1000)]
    big = edges_of(2010, [*edges_of_pairs(edges), *crowd])
    cluster_big = cluster + [-1] + [-1] * 2000
    assert campaigns_of(big, cluster_big, [True] * 3, ["ca", "cb", "cc"]) == ["ca", "ca", "cc"]


def edges_of_pairs(edges: EdgeArrays) -> list[tuple[int, int, float]]:
    return list(zip(edges.src.tolist(), edges.dst.tolist(), edges.weight.tolist(), strict=True))


def population(start: int, n_pairs: int) -> list[tuple[int, int, float]]:
    """Pairs of unclustered accounts: the rest of the graph, which sets ``2m``."""
    return [(start + 2 * i, start + 2 * i + 1, 0.9) for i in range(n_pairs)]


def test_one_weak_edge_is_a_coincidence() -> None:
    # One edge of 0.3 between two flagged triangles: its lift is huge (the graph is large)
    # but it is less than one strong edge.
    pairs = [*triangle(0), *triangle(3), (2, 3, 0.3), *population(6, 1000)]
    edges = edges_of(2006, pairs)
    cluster = [0, 0, 0, 1, 1, 1] + [-1] * 2000
    links = cluster_links(edges, np.array(cluster), 2)
    assert links.weight[0] / links.expected()[0] > 10  # 0.3 / (5.7 * 5.7 / 1811.4) = 16.7
    assert campaigns_of(edges, cluster, [True, True], ["ca", "cb"]) == ["ca", "cb"]
    # Two weak edges that together reach a strong edge's weight do join.
    edges2 = edges_of(2006, [*pairs, (1, 4, 0.35)])
    assert campaigns_of(edges2, cluster, [True, True], ["ca", "cb"]) == ["ca", "ca"]


def test_a_hub_of_huge_degree_joins_nobody() -> None:
    # A and B (flagged triangles) each share two strong edges with H, a flagged clique of 30
    # that carries most of the graph's weight: W(A, H) = 1.8 but E(A, H) = k_A k_H / 2m
    # = 7.2 * 786.6 / 801.0 = 7.07, a lift of 0.25. A and B touch only through H.
    hub = list(range(6, 36))
    pairs = [*triangle(0), *triangle(3)]
    pairs += [(a, b, 0.9) for a, b in itertools.combinations(hub, 2)]
    pairs += [(1, 6, 0.9), (2, 7, 0.9), (4, 8, 0.9), (5, 9, 0.9)]
    edges = edges_of(36, pairs)
    cluster = [0, 0, 0, 1, 1, 1] + [2] * 30
    links = cluster_links(edges, np.array(cluster), 3)
    lift = links.weight / links.expected()
    assert lift.max() < 0.3
    assert campaigns_of(edges, cluster, [True] * 3, ["ca", "cb", "ch"]) == ["ca", "cb", "ch"]


def test_unflagged_clusters_get_no_campaign_and_relay_nothing() -> None:
    # A - U - B with strong evidence, U not flagged: A and B do not join through U, and U
    # gets no campaign. A - C directly: joined.
    pairs = [*triangle(0), *triangle(3), *triangle(6), *triangle(9)]
    pairs += [(2, 3, 0.9), (1, 4, 0.9), (5, 6, 0.9), (4, 7, 0.9), (0, 9, 0.9), (1, 10, 0.9)]
    pairs += population(12, 1000)
    edges = edges_of(2012, pairs)
    cluster = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] + [-1] * 2000
    got = campaigns_of(edges, cluster, [True, False, True, True], ["ca", "cu", "cb", "cc"])
    assert got == ["ca", None, "cb", "ca"]
    assert campaigns_of(edges, cluster, [False] * 4, ["ca", "cu", "cb", "cc"]) == [None] * 4


def _fleet(extra: list[tuple[int, int, float]], flagged: list[bool], sizes: list[int],
           resolution: float = 0.05):
    """``fleet_pieces`` of a clique of six (0-5, edges 0.9, cluster 0) and the clusters of
    ``sizes`` after it (accounts 6, 7, ...), with the ``extra`` edges, in a population of
    1,000 pairs that sets ``2m``."""
    pairs = [(a, b, 0.9) for a, b in itertools.combinations(range(6), 2)] + extra
    n = 6 + sum(sizes)
    edges = edges_of(n + 2000, pairs + population(n, 1000))
    cluster = np.array([0] * 6 + [c + 1 for c, k in enumerate(sizes) for _ in range(k)]
                       + [-1] * 2000)
    size = np.array([6, *sizes])
    inside = np.zeros(len(size))
    for a, b, w in pairs:
        if cluster[a] == cluster[b]:
            inside[cluster[a]] += w
    density = 2 * inside / (size * (size - 1))
    links = cluster_links(edges, cluster, len(size))
    return fleet_pieces(links, np.array(flagged), size, density, min_lift=2.0,
                        min_evidence=STRONG, resolution=resolution), links


def test_a_piece_tied_more_to_a_flagged_cluster_than_to_itself_is_of_its_fleet() -> None:
    # Triangle P = {6, 7, 8} (edges 0.3 among its members: density 0.3) whose members each
    # have two edges of 0.9 into the flagged clique: W = 5.4, and P's strength is
    # k = 2 * 0.9 + 5.4 = 7.2 < 2 W. Triangle L = {9, 10, 11} (a family: edges 0.9) of
    # which one member shares a device (0.9) with the clique: k = 2 * 2.7 + 0.9 = 6.3 and
    # 2 W = 1.8, its own evidence is most of it.
    piece = [(6, 7, 0.3), (6, 8, 0.3), (7, 8, 0.3)]
    piece += [(v, f, 0.9) for v, fs in ((6, (0, 1)), (7, (2, 3)), (8, (4, 5))) for f in fs]
    family = [*triangle(9), (9, 0, 0.9)]
    got, links = _fleet(piece + family, [True, False, False], [3, 3])
    assert links.strength.tolist() == pytest.approx([2 * 15 * 0.9 + 5.4 + 0.9, 7.2, 6.3])
    assert got.fleet.tolist() == [-1, 0, -1]
    assert got.weight[1] == pytest.approx(5.4)
    assert got.share[1] == pytest.approx(5.4 / 7.2)
    # Not flagged, the clique has no fleet; flagged, P is not a piece of anything.
    assert _fleet(piece + family, [False] * 3, [3, 3])[0].fleet.tolist() == [-1] * 3
    assert _fleet(piece + family, [True, True, False], [3, 3])[0].fleet.tolist() == [-1] * 3


def test_accounts_that_share_nothing_with_each_other_are_no_piece() -> None:
    # Three accounts each tied to the clique by two edges of 0.9 and to nothing else: all of
    # their evidence is the clique's (W = 5.4), but as a cluster they have density 0 (what
    # is left of a cluster when its strong core is taken out), below the resolution.
    left_over = [(v, f, 0.9) for v, fs in ((6, (0, 1)), (7, (2, 3)), (8, (4, 5))) for f in fs]
    assert _fleet(left_over, [True, False], [3])[0].fleet.tolist() == [-1, -1]
    # One edge of 0.3 among them: density 0.1, a group of its own, and a piece.
    got, _ = _fleet([*left_over, (6, 7, 0.3)], [True, False], [3])
    assert got.fleet.tolist() == [-1, 0]


def test_a_piece_is_tied_by_a_strong_link_per_member() -> None:
    # Five accounts in a ring of 0.2 edges (density 2 * 1.0 / 20 = 0.1), each with one edge
    # of 0.5 into the clique: W = 2.5 is most of their evidence (k = 2 * 1.0 + 2.5 = 4.5 <
    # 2 W), but a strong link's worth per member is 0.6 * 5 = 3.0 > 2.5: not a piece. With
    # edges of 0.7 (W = 3.5, k = 5.5 < 7.0): a piece.
    ring = [(6 + i, 6 + (i + 1) % 5, 0.2) for i in range(5)]
    weak = ring + [(6 + i, i, 0.5) for i in range(5)]
    assert _fleet(weak, [True, False], [5])[0].fleet.tolist() == [-1, -1]
    strong = ring + [(6 + i, i, 0.7) for i in range(5)]
    assert _fleet(strong, [True, False], [5])[0].fleet.tolist() == [-1, 0]


def test_a_piece_must_be_tied_to_many_of_the_flagged_cluster() -> None:
    # A pair (edge 0.9: density 0.9) whose members each have two edges of 0.5 into the
    # clique: W = 2.0, k = 1.8 + 2.0 = 3.8 < 2 W. At resolution 0.05 the tie needs
    # 0.05 / 4 * 2 * 6 = 0.15: a piece; at 0.8 it needs 0.2 * 12 = 2.4 > 2.0: not one.
    pair = [(6, 7, 0.9), (6, 0, 0.5), (6, 1, 0.5), (7, 2, 0.5), (7, 3, 0.5)]
    assert _fleet(pair, [True, False], [2])[0].fleet.tolist() == [-1, 0]
    assert _fleet(pair, [True, False], [2], resolution=0.8)[0].fleet.tolist() == [-1, -1]


def test_a_piece_is_tied_through_most_of_its_members() -> None:
    # A pair on one referral code (0.45) whose one member shares a device (0.9) and more
    # with the clique: W = 1.8 is most of the pair's evidence (k = 0.9 + 1.8), but one
    # member of two is tied, not most of them. Both tied (0.9 each): a piece.
    one = [(6, 7, 0.45), (6, 0, 0.9), (6, 1, 0.9)]
    got, links = _fleet(one, [True, False], [2])
    assert (links.touch_left.tolist(), links.touch_right.tolist()) == ([2], [1])
    assert got.fleet.tolist() == [-1, -1]
    both = [(6, 7, 0.45), (6, 0, 0.9), (7, 1, 0.9)]
    assert _fleet(both, [True, False], [2])[0].fleet.tolist() == [-1, 0]


def test_a_piece_whose_own_evidence_is_half_or_more_stays_apart() -> None:
    # The family shares devices with the clique through all three members (W = 2.7), but its
    # own edges weigh as much: k = 2 * 2.7 + 2.7 = 8.1, and 2 W = 5.4 is not more than k.
    family = [*triangle(6), (6, 0, 0.9), (7, 1, 0.9), (8, 2, 0.9)]
    assert _fleet(family, [True, False], [3])[0].fleet.tolist() == [-1, -1]
    # The same ties with weak family edges (0.2: k = 1.2 + 2.7 = 3.9 < 5.4): a piece.
    weak = [*triangle(6, 0.2), (6, 0, 0.9), (7, 1, 0.9), (8, 2, 0.9)]
    assert _fleet(weak, [True, False], [3])[0].fleet.tolist() == [-1, 0]


def test_naming_oldest_then_largest_then_smallest_id() -> None:
    campaign = np.array([0, 0, 0, 1, 1, -1, 2])
    ids = np.array(["c5", "c3", "c9", "c2", "c1", "c0", "c7"])
    # campaign 0: c9 was seen first (run 1), though smallest; campaign 1: both new tonight
    # (NaN), c2 the larger; campaign 2: alone.
    seen = np.array([3, 3, 1, np.nan, np.nan, 1, 2], dtype=float)
    size = np.array([50, 80, 10, 20, 10, 99, 5])
    assert name_campaigns(campaign, ids, seen, size).tolist() == [
        "c9", "c9", "c9", "c2", "c2", None, "c7"]
    # Ties of age and size go to the smallest id.
    assert name_campaigns(np.array([0, 0]), np.array(["cb", "ca"]), np.array([1.0, 1.0]),
                          np.array([4, 4])).tolist() == ["ca", "ca"]


def test_deterministic_and_independent_of_cluster_numbering() -> None:
    pairs = [*triangle(0), *triangle(3), *triangle(6), (2, 3, 0.9), (5, 6, 0.9)]
    pairs += population(9, 500)
    edges = edges_of(1009, pairs)
    cluster = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2] + [-1] * 1000)
    ids = np.array(["cx", "cy", "cz"])
    seen = np.array([2.0, 1.0, 3.0])
    first = assign_campaigns(edges, cluster, np.ones(3, bool), ids, first_seen=seen)
    assert first.tolist() == ["cy", "cy", "cy"]  # a chain: one campaign, its oldest cluster
    perm = np.array([2, 0, 1])  # cluster c gets number perm[c]
    renumbered = np.where(cluster >= 0, perm[np.maximum(cluster, 0)], -1)
    inv = np.argsort(perm)
    again = assign_campaigns(edges, renumbered, np.ones(3, bool), ids[inv],
                             first_seen=seen[inv])
    assert again[perm].tolist() == first.tolist()


@settings(max_examples=examples(60), deadline=None)
@given(st.data())
def test_joins_match_a_brute_force_oracle(data: st.DataObject) -> None:
    # Random graphs: the columnar aggregation and components equal a plain double loop.
    n = data.draw(st.integers(4, 14))
    k = data.draw(st.integers(1, 5))
    cluster = np.array(data.draw(st.lists(st.integers(-1, k - 1), min_size=n, max_size=n)))
    flagged = np.array(data.draw(st.lists(st.booleans(), min_size=k, max_size=k)))
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                         st.sampled_from([0.1, 0.3, 0.6, 0.9])),
                               max_size=30))
    unique = {(min(a, b), max(a, b)): w for a, b, w in pairs if a != b}
    edges = edges_of(n, [(a, b, w) for (a, b), w in unique.items()])
    got = join_clusters(cluster_links(edges, cluster, k), flagged, min_lift=1.5,
                        min_evidence=STRONG)
    strength = np.zeros(k)
    w_between: dict[tuple[int, int], float] = {}
    for (a, b), w in unique.items():
        for v in (a, b):
            if cluster[v] >= 0:
                strength[cluster[v]] += w
        i, j = sorted((int(cluster[a]), int(cluster[b])))
        if i >= 0 and i != j:
            w_between[i, j] = w_between.get((i, j), 0.0) + w
    total = 2 * sum(unique.values())
    parent = list(range(k))

    def root(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for (i, j), w in w_between.items():
        if flagged[i] and flagged[j] and w >= STRONG - 1e-12 and \
                w >= 1.5 * strength[i] * strength[j] / total - 1e-12:
            parent[root(i)] = root(j)
    for i, j in itertools.combinations(range(k), 2):
        if flagged[i] and flagged[j]:
            assert (got[i] == got[j]) == (root(i) == root(j))
    assert ((got >= 0) == flagged).all()


def test_no_clusters_and_no_edges() -> None:
    empty = edges_of(3, [])
    assert campaigns_of(empty, [-1, -1, -1], [], []) == []
    assert campaigns_of(empty, [0, 0, -1], [True], ["ca"]) == ["ca"]


def test_publish_reads_flags_and_ids_and_can_be_switched_off() -> None:
    con = duckdb.connect()
    con.execute("""CREATE TABLE cluster_scores AS SELECT * FROM (VALUES
        (0, 3, TRUE), (1, 3, TRUE), (2, 3, FALSE)) v(cluster, size, flagged)""")
    con.execute("""CREATE TABLE cluster_ids AS SELECT * FROM (VALUES
        (0, 'cb', 4), (1, 'ca', NULL), (2, 'cc', 1)) v(cluster, cluster_id, first_seen_run_id)""")
    pairs = [*triangle(0), *triangle(3), *triangle(6), (2, 3, 0.9), (5, 6, 0.9)]
    edges = edges_of(1009, [*pairs, *population(9, 500)])
    links = cluster_links(edges, np.array([0, 0, 0, 1, 1, 1, 2, 2, 2] + [-1] * 1000), 3)
    assert publish_campaigns(con, links, CampaignsConfig(), min_evidence=STRONG) == 1
    # cb was seen in run 4; ca is new tonight (NULL): cb is the older and names the campaign.
    assert con.execute("SELECT * FROM campaigns ORDER BY cluster").fetchall() == [
        (0, "cb"), (1, "cb")]
    off = CampaignsConfig(enabled=False)
    assert publish_campaigns(con, links, off, min_evidence=STRONG) == 0
    assert con.execute("SELECT count(*) FROM campaigns").fetchone() == (0,)


def test_min_lift_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'campaigns\.min_lift' must be at least 1"):
        RunConfig.from_dict({"campaigns": {"min_lift": 0.5}})
    assert RunConfig.from_dict({"campaigns": {"enabled": False}}).campaigns.enabled is False


# --- the store -----------------------------------------------------------------------------

def campaign_record(campaign: dict[str, str | None]) -> RunRecord:
    """Four clusters: ca, cb flagged in campaign ca; cc flagged alone; cd not flagged."""
    sizes = {"ca": 3, "cb": 2, "cc": 2, "cd": 2}
    clusters = pa.table({
        "cluster_id": list(sizes), "size": list(sizes.values()),
        "score": [0.9, 0.8, 0.7, 0.1], "flagged": [True, True, True, False],
        "origin": ["new"] * 4, "parents_json": ["[]"] * 4, "features_json": ["{}"] * 4,
        "contributions_json": ["{}"] * 4, "reasons_json": ['["shared cards"]'] * 4,
        "first_seen_run_id": pa.array([None] * 4, pa.int64()),
        "campaign_id": pa.array([campaign.get(c) for c in sizes], pa.string()),
    }, schema=RECORD_SCHEMAS["clusters"])
    accounts = [(f"{c}{i}", c) for c, n in sizes.items() for i in range(n)]
    memberships = pa.table({
        "account_id": [a for a, _ in accounts], "cluster_id": [c for _, c in accounts],
    })
    return replace(RunRecord.empty(input_fingerprint="sha256:0"), clusters=clusters,
                   memberships=memberships, n_clusters=4, n_flagged=3)


CAMPAIGNS = {"ca": "ca", "cb": "ca", "cc": "cc", "cd": None}


def publish(store: Store, record: RunRecord) -> int:
    run_id = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="test",
                             input_path="in/")
    store.publish_run(run_id, record)
    return run_id


def test_store_round_trip_views_and_export(store: Store, tmp_path: Path) -> None:
    run_id = publish(store, campaign_record(CAMPAIGNS))
    stored = store.clusters(run_id).select(["cluster_id", "campaign_id"]).to_pylist()
    assert {r["cluster_id"]: r["campaign_id"] for r in stored} == CAMPAIGNS
    with store.engine.connect() as conn:
        latest = conn.execute(sa.text(
            "SELECT campaign_id, n_clusters, n_accounts, first_seen_run_id "
            "FROM latest_campaigns ORDER BY campaign_id")).all()
        members = conn.execute(sa.text(
            "SELECT account_id FROM campaign_memberships WHERE run_id = :r AND campaign_id = :c"
            " ORDER BY account_id"), {"r": run_id, "c": "ca"}).scalars().all()
        view_cols = conn.execute(sa.text(
            "SELECT cluster_id, campaign_id FROM latest_clusters ORDER BY cluster_id")).all()
    assert [tuple(r) for r in latest] == [("ca", 2, 5, run_id), ("cc", 1, 2, run_id)]
    assert members == ["ca0", "ca1", "ca2", "cb0", "cb1"]
    assert dict(view_cols) == CAMPAIGNS
    # The export: campaign_id after the contract's columns, empty for a cluster that stands
    # alone (cc: a campaign of its own; cd: not flagged).
    table = memberships_table(store, run_id)
    assert table.column_names == ["account_id", "cluster_id", "cluster_score", "flagged",
                                  "campaign_id"]
    by_cluster = {r["cluster_id"]: r["campaign_id"] for r in table.to_pylist()}
    assert by_cluster == {"ca": "ca", "cb": "ca", "cc": None, "cd": None}
    assert table.column("account_id").to_pylist() == \
        store.memberships(run_id).column("account_id").to_pylist()
    # Reports: the campaign section and the cluster pages' siblings.
    (g,) = campaigns(store, run_id)
    assert (g["campaign_id"], g["n_clusters"], g["n_accounts"]) == ("ca", 2, 5)
    assert [c["cluster_id"] for c in g["clusters"]] == ["ca", "cb"]
    assert [s["cluster_id"] for s in cluster_detail(store, run_id, "cb")["siblings"]] == ["ca"]
    assert cluster_detail(store, run_id, "cc")["siblings"] == []
    index = write_report(store, run_id, tmp_path / "report").read_text()
    assert "Campaigns (1)" in index and 'href="clusters/cb.html"' in index
    page = (tmp_path / "report" / "clusters" / "cb.html").read_text()
    assert ('Campaign <a class="mono" href="../campaigns/ca.html">ca</a>, with 1 other cluster'
            in page)
    assert 'href="../clusters/ca.html"' in page


def test_runs_without_campaigns_stay_valid(store: Store) -> None:
    # A record built before campaigns existed (no campaign_id column) is stored as NULL.
    record = campaign_record({})
    record = replace(record, clusters=record.clusters.drop_columns(["campaign_id"]))
    run_id = publish(store, record)
    assert store.clusters(run_id).column("campaign_id").null_count == 4
    assert campaigns(store, run_id) == []
    assert memberships_table(store, run_id).column("campaign_id").null_count == 9


def test_migration_0007_down_and_up_keeps_the_runs(store: Store) -> None:
    run_id = publish(store, campaign_record(CAMPAIGNS))
    migrate.downgrade(store.engine, "0005")
    with store.engine.connect() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("clusters")}
        views = set(sa.inspect(conn).get_view_names())
        n = conn.execute(sa.text("SELECT count(*) FROM latest_clusters")).scalar()
    assert "campaign_id" not in cols and n == 4
    assert not {"latest_campaigns", "campaign_memberships"} & views
    store.upgrade()
    assert store.check() == []
    assert store.clusters(run_id).column("campaign_id").null_count == 4
    if store.dialect == "postgresql":  # the analyst role reads the recreated and new views
        with store.engine.connect() as conn:
            conn.execute(sa.text("SET ROLE linkage_analyst"))
            for view in ("latest_clusters", "latest_campaigns", "campaign_memberships"):
                conn.execute(sa.text(f"SELECT * FROM {view}")).fetchall()


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_campaigns_reduce_fragmentation_without_joining_groups(tmp_path: Path) -> None:
    from linkage.synth import generate

    data = tmp_path / "world"
    generate(data, scenario="slowdrip", n_accounts=20_000, seed=5)
    db = f"sqlite:///{tmp_path / 'l.db'}"
    run_id = run_id_of(invoke("run", "--input", data, "--db", db))
    with Store(db) as store:
        quality = evaluate_flagged(read_truth(data / "truth.csv"),
                                   memberships_table(store, run_id))
    assert quality.fragmentation > 1.5  # CPM cuts the slow-drip rings into pieces ...
    assert quality.campaign_fragmentation < quality.fragmentation  # ... campaigns rejoin them
    assert quality.campaigns_joining_groups == 0
    assert quality.campaign_purity == quality.cluster_purity
    out = tmp_path / "m.csv"
    assert invoke("export", "memberships", "--db", db, "--out", out).exit_code == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["account_id", "cluster_id", "cluster_score", "flagged",
                             "campaign_id"]
    assert any(r["campaign_id"] for r in rows)
    assert all(r["flagged"] == "true" for r in rows if r["campaign_id"])
    res = invoke("evaluate", "--truth", data / "truth.csv", "--db", db, "--json")
    assert json.loads(res.stdout)["campaign_fragmentation"] == quality.campaign_fragmentation
