"""Schedule groups: found on some days, judged against chance on the others."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage import schedule_groups as sg
from linkage.config import ActivityGroupConfig, RunConfig
from linkage.schedule_groups import MIN_SIZE, calendar, chance_shared, judged, schedule_groups
from linkage.signals import ACTIVITY_GROUP, build_links
from tests.helpers import examples

BUCKET = 600
PER_DAY = 86_400 // BUCKET
CFG = ActivityGroupConfig()


def world(seed: int, *, days: int = 14, people: int = 600, heavy: int = 20, group: int = 40,
          per_job: int = 12, job_share: float = 0.05, team: int = 0, team_hours: int = 2
          ) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Distinct (account, bucket) rows: ``people`` independent accounts of varied volume
    on a day-night profile, ``heavy`` of them active in most buckets, a ``team`` of people
    at work in the same ``team_hours`` of every night (half of those buckets each, at
    random), and one operator of ``group`` accounts (numbered after the others) whose
    scheduler runs a job in ``job_share`` of the buckets, each on ``per_job`` of its
    accounts drawn afresh: any two of them share a few buckets, the group a great many.
    Returns the rows and the operator's accounts."""
    rng = np.random.default_rng(seed)
    n_buckets = days * PER_DAY
    hour = (np.arange(n_buckets) % PER_DAY) / PER_DAY * 24
    profile = 0.2 + np.exp(-((hour - 14) ** 2) / 18)  # busy afternoons, quiet nights
    profile /= profile.mean()
    rate = rng.lognormal(np.log(0.03), 0.8, people)
    rate[:heavy] = 0.6
    active = rng.random((people, n_buckets)) < np.minimum(rate[:, None] * profile, 0.95)
    ops = np.zeros((group, n_buckets), dtype=bool)
    for b in np.flatnonzero(rng.random(n_buckets) < job_share) if group else []:
        ops[rng.choice(group, per_job, replace=False), b] = True
    ops |= rng.random((group, n_buckets)) < 0.01 * profile  # and some work of their own
    night = (hour - 2) % 24 < team_hours  # from 02:00, when few others are about
    crew = rng.random((team, n_buckets)) < 0.5 * night
    rows, cols = np.nonzero(np.vstack([active, crew, ops]))
    first = people + team
    return rows, cols + 20_000 * PER_DAY, set(range(first, first + group))


def test_finds_an_operator_whose_accounts_share_little_pairwise() -> None:
    idx, e, ops = world(1)
    a = sp.csr_matrix((np.ones(len(idx)), (idx, e - e.min())))
    members = sorted(ops)
    co = (a[members] @ a[members].T).toarray()
    # pairwise, the operator's accounts share little: a handful of buckets each
    assert np.median(co[np.triu_indices(len(members), 1)]) <= 0.25 * np.median(np.diag(co))
    found, group = schedule_groups(idx, e, BUCKET, CFG)
    assert set(found.tolist()) <= ops  # no independent account, heavy users included
    assert len(found) >= 0.8 * len(ops)
    assert len(np.unique(group)) == 1


def test_nearest_neighbours_in_trees_are_those_of_the_exact_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 3,000 points around 60 centres (40 dimensions, cosine about 0.8 to their centre) and
    # 600 zero rows (no direction: no neighbours).
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((60, 40))
    points = centres[rng.integers(0, 60, 3000)] + 0.45 * rng.standard_normal((3000, 40))
    emb = np.vstack([points / np.linalg.norm(points, axis=1, keepdims=True),
                     np.zeros((600, 40))])
    exact = sg.nearest(emb, 10)
    monkeypatch.setattr(sg, "_EXACT_ROWS", 100)
    trees = sg.nearest(emb, 10)
    assert (exact[3000:] == -1).all() and (trees[3000:] == -1).all()
    assert (exact[:3000] >= 0).all() and (exact[:3000] != np.arange(3000)[:, None]).all()
    sims = np.einsum("ij,ikj->ik", emb[:3000], emb[exact[:3000]])
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # nearest first
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, trees[:3000])])
    assert found >= 0.9
    assert np.array_equal(trees, sg.nearest(emb, 10))  # the same rows, the same neighbours
    # held to a few rows' similarities at a time, the very same neighbours
    monkeypatch.setattr(sg, "_SIMILARITY_CELLS", 5_000)
    assert np.array_equal(trees, sg.nearest(emb, 10))
    monkeypatch.setattr(sg, "_EXACT_ROWS", 20_000)
    assert np.array_equal(exact, sg.nearest(emb, 10))


def test_finds_nothing_among_independent_accounts() -> None:
    idx, e, ops = world(2, group=0)
    assert not ops
    found, _ = schedule_groups(idx, e, BUCKET, CFG)
    assert len(found) == 0


@pytest.mark.parametrize(("hours", "busy_buckets_alone_find_it"), [(2, True), (6, False)])
def test_a_team_at_work_in_the_same_hours_is_not_a_group(
        hours: int, busy_buckets_alone_find_it: bool) -> None:
    # Forty people active in the same few hours of every night, when few others are: far
    # more shared buckets than bucket popularity predicts, no more than their habits do.
    idx, e, _ = world(3, team=40, team_hours=hours, group=0)
    team = set(range(600, 640))
    found, _ = schedule_groups(idx, e, BUCKET, CFG)
    assert not set(found.tolist()) & team
    # Without the habits in the background (one slot: the whole day), a team of two hours
    # is a group; one of six fills its hours enough to make them busy buckets.
    found, _ = schedule_groups(idx, e, BUCKET, ActivityGroupConfig(habit_minutes=1440))
    assert bool(set(found.tolist()) & team) == busy_buckets_alone_find_it


def test_the_same_input_gives_the_same_groups() -> None:
    idx, e, _ = world(3)
    first = schedule_groups(idx, e, BUCKET, CFG)
    order = np.random.default_rng(0).permutation(len(idx))
    again = schedule_groups(idx[order], e[order], BUCKET, CFG)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_one_day_has_no_second_half_to_judge_on() -> None:
    idx, e, _ = world(4, days=6)
    one_day = (e * BUCKET // 86_400) == (e.min() * BUCKET // 86_400)
    found, group = schedule_groups(idx[one_day], e[one_day], BUCKET, CFG)
    assert len(found) == len(group) == 0


@given(st.integers(0, 4_000_000_000 // 60), st.integers(0, 5_000),
       st.sampled_from([60, 600, 900, 3600, 7200]))
@settings(max_examples=examples(100), deadline=None)
def test_calendar_agrees_with_the_clock(first: int, count: int, width: int) -> None:
    first = first * 60 // width
    day, hour, odd = calendar(first, first + count, width)
    assert len(day) == len(hour) == len(odd) == count + 1
    for i in sorted({0, count // 2, count}):
        at = datetime.fromtimestamp((first + i) * width, UTC)
        since_epoch = (at - datetime(1970, 1, 1, tzinfo=UTC)).days
        assert hour[i] == at.hour
        assert odd[i] == (since_epoch % 2 == 1)
        first_day = datetime.fromtimestamp(first * width, UTC).date()
        assert day[i] == (at.date() - first_day).days


def test_judged_against_a_hand_computed_background() -> None:
    # Five accounts over four buckets of one day; accounts 0-2 are a found cluster, 3-4
    # another.
    judge = sp.csr_matrix(np.array([
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 0, 1],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ], dtype=float))
    span = np.zeros((5, 2), dtype=np.int64)  # every account active on day 0 only
    cluster = np.array([0, 0, 0, 1, 1])
    one_slot = (np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    own_slots = (np.zeros(4, dtype=np.int64), np.arange(4))
    # Busy buckets: m = (2, 2, 3, 1, 1), M = 9; q = (3, 3, 1, 2), sum q^2 = 23: a pair of
    # activities m_i, m_j shares m_i m_j 23 / 81 buckets by chance. Cluster {0, 1, 2}: 4 + 6
    # + 6 = 16 activity products, 16 * 23 / 81 = 4.543 expected; {3, 4}: 23 / 81.
    busy = np.array([16 * 23 / 81, 23 / 81])
    # Habits, all four buckets in one slot: r_i = m_i / 4 in each of them, so a cluster's
    # pairs share 4 (R^2 - sum r^2) / 2 = ((sum m)^2 - sum m^2) / 8: (49 - 17) / 8 = 4 and
    # (4 - 2) / 8 = 0.25, below the busy buckets' on both.
    assert np.allclose(chance_shared(cluster, judge, one_slot, span), busy)
    # Each bucket its own slot: an account's habits are its very buckets, and chance is
    # what the members share, 6 and 0: above the busy buckets' for the first.
    assert np.allclose(chance_shared(cluster, judge, own_slots, span), [6.0, busy[1]])
    # Shared: 2 + 2 + 2 = 6 for the first cluster: lift 6 / 4.543 = 1.32 on the busy buckets.
    expected = busy[0]
    lift = 6 / expected
    z = (6 - expected) / np.sqrt(expected)
    strict = ActivityGroupConfig(min_lift=lift + 1e-9, min_z=0.1)
    loose = ActivityGroupConfig(min_lift=lift - 1e-9, min_z=z - 1e-9)
    assert not judged(cluster, judge, one_slot, span, strict).any()
    kept = judged(cluster, judge, one_slot, span, loose)
    # the cluster of two is below the smallest group whatever it shares
    assert kept.tolist() == [True, True, True, False, False] and MIN_SIZE == 3
    assert not judged(cluster, judge, one_slot, span,
                      ActivityGroupConfig(min_lift=1.0, min_z=z + 1e-9)).any()
    # its own habits explain all it shares
    assert not judged(cluster, judge, own_slots, span, ActivityGroupConfig(
        min_lift=1.0 + 1e-9, min_z=0.0)).any()


@pytest.mark.parametrize("sync", [True, False])
def test_build_links_links_a_group_by_one_key(sync: bool) -> None:
    idx, e, ops = world(5)
    con = duckdb.connect()
    n = int(idx.max()) + 1
    con.register("a_in", pa.table({"idx": np.arange(n, dtype=np.int32),
                                   "account_id": [f"acct{i:04d}" for i in range(n)]}))
    con.execute("CREATE TABLE accounts AS SELECT * FROM a_in")
    ts = pa.array((e * BUCKET * 1_000_000).astype("datetime64[us]"))
    con.register("i_in", pa.table({"idx": idx.astype(np.int32), "ts": ts,
                                   "prompt_key": pa.nulls(len(idx), pa.string())}))
    con.execute("CREATE TABLE interactions AS SELECT * FROM i_in")
    for table, cols in {"payment_instruments": "card_key VARCHAR, bin_postal_key VARCHAR, "
                                               "bin_key VARCHAR",
                        "devices": "device_key VARCHAR",
                        "ip_events": "ip_key VARCHAR, net_key VARCHAR, net48_key VARCHAR",
                        "observations": "kind VARCHAR, value_key VARCHAR, seen_at TIMESTAMP"
                        }.items():
        con.execute(f"CREATE TABLE {table} (idx INTEGER, {cols})")
    for col in ("email_key", "phone_key", "signup_ip_key", "signup_net_key",
                "signup_net48_key", "user_agent_key", "org_key"):
        con.execute(f"ALTER TABLE accounts ADD COLUMN {col} VARCHAR")
    con.execute("ALTER TABLE accounts ADD COLUMN created_at TIMESTAMP")
    cfg = RunConfig.from_dict({"signals": {"activity_sync": {"enabled": sync}}}).signals
    build_links(con, cfg)
    keys = con.execute(f"SELECT key, list(idx ORDER BY idx) FROM links "
                       f"WHERE signal = '{ACTIVITY_GROUP}' GROUP BY key").fetchall()
    assert len(keys) == 1
    key, members = keys[0]
    assert set(members) <= ops and len(members) >= 0.8 * len(ops)
    assert key == f"group:acct{min(members):04d}"
    assert con.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_name = 'activity_group_links'").fetchone() == (0,)
