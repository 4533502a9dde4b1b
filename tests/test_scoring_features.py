"""Scoring's pure functions, without a database: the features of intra-cluster pairs, the
contributions and their combination, the category-departure test, the usage feature, the
verdicts' flag, the reasons' words and the JSON rows; and every docstring example of
:mod:`linkage.scoring`'s modules."""

from __future__ import annotations

import doctest
import importlib
import json
import math
import pkgutil

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linkage.scoring
from linkage.config import ScoringConfig
from linkage.scoring.departure import departure_z, overdispersion
from linkage.scoring.features import (
    FEATURES,
    HOUSEHOLD,
    UNSQUARED,
    burst_share,
    combine,
    contributions,
    density,
    family_of,
    largest_linked,
    members_with_partner,
    size_factor,
)
from linkage.scoring.reasons import (
    cluster_reasons,
    duration,
    evidence_reasons,
    noun,
    usage_reason,
)
from linkage.scoring.rows import contributions_json, features_json, rounded
from linkage.scoring.usage import usage_campaign
from linkage.scoring.verdicts import cleared
from tests.helpers import examples

MODULES = sorted(m.name for m in pkgutil.iter_modules(linkage.scoring.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(f"linkage.scoring.{name}")
    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.failed == 0


# --- features of intra-cluster pairs -----------------------------------------------------


def _partition(sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Accounts 0..n-1 in clusters of the given sizes, in order."""
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    return np.arange(len(cluster)), cluster


@st.composite
def clustered_pairs(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]]]:
    sizes = draw(st.lists(st.integers(1, 7), min_size=1, max_size=6))
    _, cluster = _partition(sizes)
    candidates = [(a, b) for a in range(len(cluster)) for b in range(a + 1, len(cluster))
                  if cluster[a] == cluster[b]]
    pairs = draw(st.lists(st.sampled_from(candidates), max_size=20)) if candidates else []
    return sizes, pairs


def _arrays(pairs: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    return {"a": np.array([a for a, _ in pairs], dtype=np.int64),
            "b": np.array([b for _, b in pairs], dtype=np.int64)}


@settings(max_examples=examples(100), deadline=None)
@given(clustered_pairs())
def test_largest_linked_is_the_largest_component_of_the_pairs_in_each_cluster(case) -> None:
    sizes, pairs = case
    idx, cluster = _partition(sizes)
    graph = nx.Graph(pairs)
    want = np.zeros(len(sizes))
    for component in nx.connected_components(graph):
        c = cluster[next(iter(component))]
        want[c] = max(want[c], len(component))
    got = largest_linked(_arrays(pairs), idx, cluster, len(idx), len(sizes))
    assert got.tolist() == want.tolist()


@settings(max_examples=examples(100), deadline=None)
@given(clustered_pairs())
def test_members_with_partner_counts_every_member_in_a_pair(case) -> None:
    sizes, pairs = case
    idx, cluster = _partition(sizes)
    linked = {v for pair in pairs for v in pair}
    want = [sum(1 for v in linked if cluster[v] == c) for c in range(len(sizes))]
    got = members_with_partner(_arrays(pairs), idx, cluster, len(idx), len(sizes))
    assert got.tolist() == want


def test_a_scheduler_in_shifts_is_linked_whole_by_partners_not_by_its_largest_group() -> None:
    # one cluster of six: two shifts of three, no link between the shifts
    idx, cluster = _partition([6])
    pairs = _arrays([(0, 1), (1, 2), (3, 4), (4, 5)])
    assert largest_linked(pairs, idx, cluster, 6, 1).tolist() == [3.0]
    assert members_with_partner(pairs, idx, cluster, 6, 1).tolist() == [6.0]


def test_linked_shares_count_only_clustered_accounts() -> None:
    # accounts 0-3 in cluster 0, account 4 unclustered (not in idx), 5-6 in cluster 1
    idx, cluster = np.array([0, 1, 2, 3, 5, 6]), np.array([0, 0, 0, 0, 1, 1])
    pairs = _arrays([(0, 1), (5, 6)])
    assert largest_linked(pairs, idx, cluster, 7, 2).tolist() == [2.0, 2.0]
    assert members_with_partner(pairs, idx, cluster, 7, 2).tolist() == [2.0, 2.0]
    none = _arrays([])
    assert largest_linked(none, idx, cluster, 7, 2).tolist() == [0.0, 0.0]
    assert members_with_partner(none, idx, cluster, 7, 2).tolist() == [0.0, 0.0]


def test_burst_share_counts_no_signup_time_as_no_burst() -> None:
    got = burst_share(np.array([8, np.nan, 3.0]), np.array([16, 5, 0]))
    assert got.tolist() == [0.5, 0.0, 3.0]


def test_family_of_signals() -> None:
    assert family_of("card") == "identifier" and family_of("device") == "identifier"
    assert family_of("ip_net48") == "network" and family_of("bin_postal") == "issuer"
    assert family_of("obs:referral_code") == "observation"
    assert family_of("template_pool") == "behaviour" and family_of("cosignup") == "timing"
    assert family_of("no_such_signal") == "other"


def test_density_is_weight_over_member_pairs() -> None:
    assert density(np.array([6.0, 0.5, 0.0]), np.array([4, 2, 1])).tolist() == [1.0, 0.5, 0.0]


# --- contributions and the score -----------------------------------------------------------


def test_contributions_square_shares_and_weigh_behaviour_by_the_members_work() -> None:
    feats = {f: np.array([0.5, 1.0]) for f in FEATURES}
    weights = ScoringConfig().weights
    got = contributions(feats, weights, np.array([0.2, 1.0]))
    for f in FEATURES:
        e = feats[f] if f in UNSQUARED else feats[f] ** 2
        factor = np.array([0.2, 1.0]) if f == "behaviour_reuse" else 1.0
        assert got[f].tolist() == pytest.approx((weights[f] * e * factor).tolist())
    assert set(UNSQUARED) == {"burst", "usage_campaign", "known_bad"}


def test_a_feature_without_a_weight_contributes_nothing() -> None:
    feats = {f: np.array([1.0]) for f in FEATURES}
    got = contributions(feats, {"burst": 0.45}, np.array([1.0]))
    assert got["burst"].tolist() == [0.45]
    assert all(got[f].tolist() == [0.0] for f in FEATURES if f != "burst")


def test_combine_is_the_documented_formula() -> None:
    rng = np.random.default_rng(3)
    contrib = {f: rng.uniform(0, 1, 50) for f in FEATURES}
    damp, damp_h = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    got = combine(contrib, damp, damp_h)
    for i in range(50):
        raw_h = 1 - math.prod(1 - contrib[f][i] for f in HOUSEHOLD)
        raw_o = 1 - math.prod(1 - contrib[f][i] for f in FEATURES
                              if f not in HOUSEHOLD and f != "known_bad")
        evidence = 1 - (1 - damp_h[i] * raw_h) * (1 - damp[i] * raw_o)
        want = 1 - (1 - evidence) * (1 - contrib["known_bad"][i])
        assert got[i] == pytest.approx(want, abs=1e-12)
        assert 0.0 <= got[i] <= 1.0


def test_household_evidence_waits_for_the_household_size_and_known_bad_for_nothing() -> None:
    zero = {f: np.zeros(1) for f in FEATURES}
    card = {**zero, "identifier_reuse": np.array([0.75])}
    burst = {**zero, "burst": np.array([0.45])}
    verdict = {**zero, "known_bad": np.array([0.9])}
    damp, damp_h = np.array([1.0]), np.array([0.5])
    assert combine(card, damp, damp_h).tolist() == pytest.approx([0.375])
    assert combine(burst, damp, damp_h).tolist() == pytest.approx([0.45])
    assert combine(verdict, np.zeros(1), np.zeros(1)).tolist() == pytest.approx([0.9])
    assert combine(zero, damp, damp_h).tolist() == [0.0]


def test_size_factor_is_zero_for_pairs_one_from_full_size_and_grows_between() -> None:
    sizes = np.arange(1, 60)
    for full in (3, 10, 24):
        got = size_factor(sizes, full)
        assert got[0] == got[1] == 0.0  # one account, two
        assert (got[sizes >= full] == 1.0).all()
        assert (np.diff(got) >= 0).all()
        between = (sizes > 2) & (sizes < full)
        assert np.allclose(got[between], np.log(sizes[between] / 2) / math.log(full / 2))


# --- category departure --------------------------------------------------------------------


def test_departure_z_is_about_normal_under_the_chi_square_law() -> None:
    rng = np.random.default_rng(11)
    for nu in (2.0, 4.0, 9.0):  # three to ten request categories
        z = departure_z(rng.chisquare(nu, 200_000), 1.0, nu)
        assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03
        # the one-sided test at 0.1%
        assert (z > 3.09).mean() == pytest.approx(0.001, abs=0.0004)


def test_departure_z_divides_by_the_overdispersion_and_clamps_negative_x2() -> None:
    x2 = np.array([4.0, 40.0])
    assert departure_z(x2 * 10, 10.0, 4.0).tolist() == pytest.approx(
        departure_z(x2, 1.0, 4.0).tolist())
    assert departure_z(np.array([-3.0]), 1.0, 4.0).tolist() == departure_z(
        np.array([0.0]), 1.0, 4.0).tolist()


def test_overdispersion_is_the_median_over_the_laws_and_at_least_one() -> None:
    nu = 4.0
    law_median = nu * (1 - 2 / (9 * nu)) ** 3
    assert overdispersion(np.array([1.0, law_median * 3, 100.0]), nu) == pytest.approx(3.0)
    assert overdispersion(np.array([0.1, 0.2, 0.3]), nu) == 1.0


# --- usage ---------------------------------------------------------------------------------


@settings(max_examples=examples(100), deadline=None)
@given(share=st.floats(0, 1), timing=st.floats(0, 1), volume=st.floats(0, 1e4))
def test_usage_campaign_lies_in_0_1_and_grows_with_each_factor(share, timing, volume) -> None:
    u = {"coding_agentic_share": share, "timing_regularity": timing,
         "requests_per_account_day": volume}
    got = usage_campaign(u)
    assert 0.0 <= got <= 1.0
    for key, more in (("coding_agentic_share", 1.0), ("timing_regularity", 1.0),
                      ("requests_per_account_day", 1e5)):
        assert usage_campaign({**u, key: more}) >= got


def test_people_use_is_not_campaign_like() -> None:
    person = {"coding_agentic_share": 1.0, "timing_regularity": 0.3,
              "requests_per_account_day": 100.0}
    light = {"coding_agentic_share": 1.0, "timing_regularity": 1.0,
             "requests_per_account_day": 1.0}
    bot = {"coding_agentic_share": 1.0, "timing_regularity": 0.8,
           "requests_per_account_day": 20.0}
    assert usage_campaign(person) == 0.0 and usage_campaign(light) == 0.0
    assert usage_campaign(bot) == 1.0


# --- verdicts, reasons, rows ---------------------------------------------------------------


def test_cleared_clusters_are_only_those_still_the_labelled_group() -> None:
    got = cleared({0: ("cleared", True), 3: ("changed", False)}, 4)
    assert got.tolist() == [True, False, False, False]
    assert cleared({}, 0).tolist() == []


def _base(size: list[int], burst_n: list[float], burst_span: list[float],
          n_strong: list[int]) -> dict[str, np.ndarray]:
    return {"cluster": np.arange(len(size)), "size": np.array(size),
            "burst_n": np.array(burst_n), "burst_span": np.array(burst_span),
            "n_strong": np.array(n_strong)}


def test_evidence_reasons_strongest_first_then_the_size_damping() -> None:
    base = _base([16], [15], [38 * 60.0], [16])
    signals = [("card", 1, 16), ("cosignup", 4, 15), ("ip_net", 2, 16), ("obs:ref_code", 1, 6)]
    got = evidence_reasons(0, 16, base, signals, 3, 1.0, 0.9, 0.6)
    assert got == [
        "16 of 16 accounts share one card",
        "15 of 16 signed up within 38 minutes; all its accounts together used 3 IP ranges",
        "16 of 16 accounts share 2 IP ranges (/24 or /64)",
        "6 of 16 accounts share one ref code value",
        "16 of 16 have at least one strong link (evidence >= 0.6)",
        "small cluster (16 accounts): identifiers and networks, which households share too, "
        "count 90%, other evidence 100%",
    ]


def test_a_small_or_spread_burst_is_not_a_reason() -> None:
    base = _base([10, 10], [2, 4], [60.0, 60.0], [0, 0])
    assert evidence_reasons(0, 10, base, [], 0, 1.0, 1.0, 0.6) == []  # fewer than three
    assert evidence_reasons(1, 10, base, [], 0, 1.0, 1.0, 0.6) == []  # under half


def test_cluster_reasons_lead_with_the_verdicts_and_end_with_usage() -> None:
    base = _base([4, 12], [np.nan, 0], [np.nan, np.nan], [0, 0])
    usage = {1: {"usage_accounts": 12, "requests": 1_200_000, "input_tokens": 40e6,
                 "output_tokens": 8e6, "usage_days": 41.94, "coding_agentic_share": 0.88,
                 "timing_regularity": 0.93, "model_concentration": 0.95,
                 "private_templates": 1, "template_sharers": 10,
                 "category_departure": 0.5}}
    got = cluster_reasons(base, {1: [("device", 2, 12)]}, {}, np.array([0.43, 1.0]),
                          np.array([0.28, 1.0]), 0.6,
                          (np.array([0.0, 3.0]), ["", "by ann on 2026-11-20"]), usage,
                          {1: ("marked false positive by bob", True)})
    assert got[0] == ["small cluster (4 accounts): identifiers and networks, which households "
                      "share too, count 28%, other evidence 43%"]
    assert got[1] == [
        "marked false positive by bob",
        "3 of 12 accounts were confirmed operators by ann on 2026-11-20",
        "12 of 12 accounts share 2 device fingerprints",
        "12 accounts sent 1.2M requests (48.0M tokens) in 41.9 days, 88% coding/agentic, 93% "
        "of each account's requests in its two busiest hours of the day, 95% on one model; "
        "10 of them share 1 private prompt template; 50% of them ask for other kinds of "
        "request than the average account does",
    ]
    assert usage_reason({**usage[1], "private_templates": 0, "category_departure": 0.0}) \
        .endswith("95% on one model")


def test_nouns_and_durations() -> None:
    assert (noun("card", 1), noun("card", 2)) == ("card", "cards")
    assert (noun("obs:ref_code", 1), noun("obs:ref_code", 3)) == ("ref code value",
                                                                  "ref code values")
    assert noun("new_signal", 2) == "new signal"
    assert noun("bin_postal", 1) == "BIN + billing postal code"  # as the glossary names it
    assert noun("prompt", 2) == "MinHash bands of near-identical prompt-template sets"
    assert duration(-5) == "0 seconds" and duration(119) == "119 seconds"
    assert duration(120) == "2 minutes" and duration(7200) == "2.0 hours"
    assert duration(172800) == "2.0 days"


def test_rows_are_rounded_json_with_sorted_keys() -> None:
    feats = {f: np.array([1 / 3, 0.0]) for f in FEATURES}
    usage = {1: {"requests": 7, "usage_campaign": 0.5}}
    got = [json.loads(row) for row in features_json(
        feats, np.array([0.123456, 1.0]), np.array([0.5, 1.0]), np.array([0.25, 1.0]), usage)]
    assert got[0] == {**{f: 0.3333 for f in FEATURES}, "density": 0.1235,
                      "size_factor": 0.5, "household_factor": 0.25}
    assert got[1]["requests"] == 7 and got[1]["usage_campaign"] == 0.5
    row = features_json(feats, np.zeros(2), np.zeros(2), np.zeros(2), {})[0]
    assert list(json.loads(row)) == sorted(json.loads(row))
    contrib = contributions_json({f: np.array([2 / 3]) for f in FEATURES})
    assert json.loads(contrib[0]) == {f: 0.6667 for f in FEATURES}
    assert rounded(np.array([0.00005, 0.99996])) == [0.0001, 1.0]
    assert features_json({f: np.zeros(0) for f in FEATURES}, np.zeros(0), np.zeros(0),
                         np.zeros(0), {}) == []
