"""Parametric worlds (``linkage.synth.worlds``): the truth agrees with the data for every
operator shape and legitimate feature; output is deterministic; drawn parameters stay in
their ranges."""

from __future__ import annotations

import hashlib
from collections import Counter
from itertools import combinations, pairwise
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from linkage.synth import generate
from linkage.synth.people import DAY
from linkage.synth.usage import USAGE_START
from linkage.synth.worlds import (
    SHAPES,
    WORLD_SCENARIOS,
    WorldParams,
    draw_world,
    generate_world,
    plan_groups,
)
from tests.helpers import CONTRACT_COLUMNS, invoke

ALL_SHAPES = tuple((s, 1.0) for s in SHAPES)
# One small world holding every shape and every legitimate feature.
PARAMS = WorldParams(
    n_accounts=6_000, operator_share=0.09, group_sizes=(8, 40), shapes=ALL_SHAPES,
    interactions_per_account=20.0, families=0.06, extended_families=0.03, orgs=0.08,
    contractor_share=0.3, teams=0.04, heavy_users=0.01, stock_device=0.025)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, PARAMS, seed=12)  # a seed whose plan holds every shape and usage
    return _connect(out)


def _connect(out: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for t in CONTRACT_COLUMNS:
        src = f"{out}/interactions/*.parquet" if t == "interactions" else f"{out}/{t}.parquet"
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src}')")
    for t in ("truth", "groups", "roles"):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_csv('{out}/{t}.csv', "
                    "all_varchar = true)")
    con.execute("""CREATE VIEW ops AS SELECT t.account_id, g.group_id, g.shape, g.usage
                   FROM truth t JOIN groups g USING (group_id)""")
    return con


def _card_components(con: duckdb.DuckDBPyConnection, accounts: list[str]) -> list[set[str]]:
    """Connected components of ``accounts`` over the cards they share."""
    rows = con.execute("""SELECT fingerprint, list(account_id) FROM payment_instruments
                          WHERE list_contains(?, account_id) GROUP BY 1""",
                       [accounts]).fetchall()
    parent = {a: a for a in accounts}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for _, holders in rows:
        for x, y in pairwise(holders):
            parent[find(x)] = find(y)
    comps: dict[str, set[str]] = {}
    for a in accounts:
        comps.setdefault(find(a), set()).add(a)
    return list(comps.values())


def _groups_of(con: duckdb.DuckDBPyConnection, shape: str) -> dict[str, list[str]]:
    rows = con.execute("SELECT group_id, list(account_id ORDER BY account_id) FROM ops "
                       "WHERE shape = ? GROUP BY 1", [shape]).fetchall()
    assert rows, f"no {shape} group in the test world"
    return dict(rows)


def test_contract_tables_and_truth(world: duckdb.DuckDBPyConnection) -> None:
    for table, cols in CONTRACT_COLUMNS.items():
        got = [r[0] for r in world.execute(f"DESCRIBE {table}").fetchall()]
        assert got == cols, table
        if table != "accounts":
            assert world.execute(f"SELECT count(*) FROM {table} ANTI JOIN accounts "
                                 "USING (account_id)").fetchone() == (0,), table
    n, truth_n, ops = world.execute("""SELECT (SELECT count(*) FROM accounts),
        (SELECT count(*) FROM truth SEMI JOIN accounts USING (account_id)),
        (SELECT count(*) FROM truth WHERE group_id IS NOT NULL)""").fetchone()
    assert n == truth_n == PARAMS.n_accounts
    assert ops == pytest.approx(PARAMS.operator_share * n, abs=PARAMS.group_sizes[0])
    # groups.csv agrees with the truth, and every shape is present.
    bad = world.execute("""SELECT g.group_id FROM groups g LEFT JOIN (
        SELECT group_id, count(*) AS n FROM truth GROUP BY 1) t USING (group_id)
        WHERE t.n IS DISTINCT FROM g.size::INT""").fetchall()
    assert bad == []
    assert {r[0] for r in world.execute("SELECT DISTINCT shape FROM groups").fetchall()} == \
        set(SHAPES)
    # No request precedes its account's signup.
    assert world.execute("""SELECT count(*) FROM interactions i JOIN accounts a
        USING (account_id) WHERE i.ts < a.created_at""").fetchone() == (0,)


def test_household_cells_share_a_card_within_and_nothing_across(
        world: duckdb.DuckDBPyConnection) -> None:
    for gid, members in _groups_of(world, "cells").items():
        cells = _card_components(world, members)
        assert all(2 <= len(c) <= 5 for c in cells), (gid, sorted(map(len, cells)))
        assert len(cells) >= len(members) // 5
        # Cells of one operator share no card, device or IP of their own (keys that others
        # hold too, such as a stock device or a popular roaming /24, tie people as much).
        for table, col in (("payment_instruments", "fingerprint"), ("devices", "device_id"),
                           ("ip_events", "ip")):
            holders = world.execute(f"SELECT list(DISTINCT account_id) FROM {table} "
                                    f"GROUP BY {col} HAVING bool_and(list_contains(?, "
                                    "account_id))", [members]).fetchall()
            cell_of = {a: i for i, c in enumerate(cells) for a in c}
            assert all(len({cell_of[a] for a in h}) == 1 for (h,) in holders), (gid, table)


def test_cells_look_like_families(world: duckdb.DuckDBPyConnection) -> None:
    # A cell and a legitimate household have the same shape: a card and a signup IP shared
    # by 2-5 accounts.
    for role_or_shape, query in (
        ("family", "SELECT account_id FROM roles WHERE role = 'family'"),
        ("cells", "SELECT account_id FROM ops WHERE shape = 'cells'"),
    ):
        sizes = world.execute(f"""SELECT count(DISTINCT account_id) FROM payment_instruments
            WHERE account_id IN ({query}) GROUP BY fingerprint HAVING count(*) > 1""").fetchall()
        assert sizes and all(2 <= s <= 5 for (s,) in sizes), role_or_shape


def test_paraphrasing_groups_never_repeat_a_fingerprint(
        world: duckdb.DuckDBPyConnection) -> None:
    n, distinct, shared = world.execute("""
        WITH p AS (SELECT i.prompt_fingerprint AS f FROM interactions i
                   JOIN ops o USING (account_id) WHERE o.usage = 'paraphrase')
        SELECT count(*), count(DISTINCT f),
               (SELECT count(*) FROM interactions WHERE prompt_fingerprint IN (SELECT f FROM p))
        FROM p""").fetchone()
    assert n > 1000
    assert n == distinct == shared  # each request its own fingerprint, used nowhere else
    # What remains: their jobs' minutes and their mix of categories.
    coding = world.execute("""SELECT avg((category IN ('coding', 'agentic'))::INT)
        FROM interactions JOIN ops USING (account_id) WHERE usage = 'paraphrase'""").fetchone()
    assert coding[0] > 0.8


def test_org_contractors_carry_the_org_card_but_no_org_id(
        world: duckdb.DuckDBPyConnection) -> None:
    rows = world.execute("""
        WITH c AS (SELECT account_id FROM roles WHERE role = 'contractor')
        SELECT c.account_id, a.org_id, t.group_id,
               (SELECT count(DISTINCT o.org_id) FROM payment_instruments p2
                JOIN accounts o USING (account_id)
                WHERE p2.fingerprint IN (SELECT fingerprint FROM payment_instruments p
                                         WHERE p.account_id = c.account_id)
                  AND o.org_id IS NOT NULL) AS orgs,
               split_part(a.email, '@', 2) AS domain,
               (SELECT count(*) FROM accounts o2 WHERE o2.org_id IS NOT NULL
                  AND split_part(o2.email, '@', 2) = split_part(a.email, '@', 2)) AS colleagues
        FROM c JOIN accounts a USING (account_id) JOIN truth t USING (account_id)""").fetchall()
    assert len(rows) > 20
    for account, org_id, group_id, orgs, domain, colleagues in rows:
        assert org_id is None and group_id is None, account
        assert orgs == 1, account  # the corporate card of exactly one organisation
        assert colleagues > 0, (account, domain)
    sizes = [s for (s,) in world.execute(
        "SELECT count(*) FROM accounts WHERE org_id IS NOT NULL GROUP BY org_id").fetchall()]
    assert sizes and max(sizes) <= 200


def test_aged_accounts_are_old_spread_and_chained(world: duckdb.DuckDBPyConnection) -> None:
    for gid, members in _groups_of(world, "aged").items():
        created = np.array([r[0].timestamp() for r in world.execute(
            "SELECT created_at FROM accounts WHERE list_contains(?, account_id)",
            [members]).fetchall()])
        assert created.max() - created.min() > 45 * DAY, gid  # months apart, no burst
        assert created.max() < USAGE_START - 59 * DAY
        # No two accounts signed up within the same minute.
        assert len(np.unique(created // 60)) == len(created)
        assert len(_card_components(world, members)) == 1, gid  # one chain of cards
        holders = world.execute("""SELECT count(*) FROM payment_instruments
            WHERE list_contains(?, account_id) GROUP BY fingerprint HAVING count(*) > 1""",
                                [members]).fetchall()
        assert {h for (h,) in holders} <= {2, 3}


def test_largepool_groups_are_private_and_barely_overlap(tmp_path: Path) -> None:
    params = WorldParams(n_accounts=4_000, operator_share=0.03, group_sizes=(40, 80),
                         shapes=(("largepool", 1.0),))
    generate_world(tmp_path, params, seed=5)
    con = _connect(tmp_path)
    for gid, members in _groups_of(con, "largepool").items():
        sets = {a: set(fs) for a, fs in con.execute(
            """SELECT account_id, list(DISTINCT prompt_fingerprint) FROM interactions
               WHERE list_contains(?, account_id) GROUP BY 1""", [members]).fetchall()}
        jac = [len(sets[a] & sets[b]) / len(sets[a] | sets[b])
               for a, b in combinations(sorted(sets), 2)]
        assert np.median(jac) < 0.05, gid
        private = con.execute("""
            WITH g AS (SELECT DISTINCT prompt_fingerprint AS f FROM interactions
                       WHERE list_contains(?, account_id))
            SELECT count(*) FROM g WHERE NOT EXISTS (
                SELECT 1 FROM interactions i WHERE i.prompt_fingerprint = g.f
                AND NOT list_contains(?, i.account_id))""", [members, members]).fetchone()[0]
        assert private >= 1_000, gid  # thousands of templates nobody else uses


def test_extended_families_are_two_households_joined_by_a_card(
        world: duckdb.DuckDBPyConnection) -> None:
    # (roles.csv names one role per account: a few members are listed as stock-device users)
    holders = [frozenset(h) for (h,) in world.execute("""
        SELECT list(DISTINCT account_id) FROM payment_instruments WHERE fingerprint IN (
            SELECT fingerprint FROM payment_instruments WHERE account_id IN (
                SELECT account_id FROM roles WHERE role = 'extended'))
        GROUP BY fingerprint HAVING count(DISTINCT account_id) > 1""").fetchall()]
    joined = [h for h in holders if any(o < h for o in holders)]
    assert len(joined) >= 5
    for h in joined:  # the family card covers exactly two households' cards
        inner = [o for o in holders if o < h]
        assert len(inner) == 2 and inner[0] | inner[1] == h and 4 <= len(h) <= 8
    assert world.execute("""SELECT count(group_id) FROM truth WHERE account_id IN (
        SELECT account_id FROM roles WHERE role = 'extended')""").fetchone() == (0,)


def test_stock_device_is_shared_by_a_few_percent(world: duckdb.DuckDBPyConnection) -> None:
    n, holders, ops = world.execute("""SELECT (SELECT count(*) FROM accounts), count(*),
        count(t.group_id) FROM devices d JOIN truth t USING (account_id)
        GROUP BY d.device_id ORDER BY 2 DESC LIMIT 1""").fetchone()
    assert 0.015 * n <= holders <= 0.04 * n
    assert ops / holders < 0.2


def test_heavy_users_send_many_requests_at_most_hours(world: duckdb.DuckDBPyConnection) -> None:
    rows = world.execute("""SELECT count(*), count(DISTINCT hour(ts)) FROM interactions
        WHERE account_id IN (SELECT account_id FROM roles WHERE role = 'heavy')
        GROUP BY account_id""").fetchall()
    assert rows
    assert np.median([r[0] for r in rows]) > 300
    assert np.median([r[1] for r in rows]) >= 18


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(out).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    small = WorldParams(n_accounts=1_500, operator_share=0.06, group_sizes=(4, 30),
                        shapes=ALL_SHAPES, orgs=0.05, teams=0.03, extended_families=0.02,
                        heavy_users=0.01, stock_device=0.02, hubs=True)
    for name in ("a", "b"):
        generate_world(tmp_path / name, small, seed=3)
    generate_world(tmp_path / "c", small, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_draw_world_ranges() -> None:
    drawn = [draw_world(s) for s in range(300)]
    n = np.array([p.n_accounts for p in drawn])
    assert n.min() >= 5_000 and n.max() <= 1_000_000
    # log-uniform: half below the geometric midpoint, a fair share at each end
    assert 0.4 < np.mean(n < np.sqrt(5_000 * 1_000_000)) < 0.6
    assert np.mean(n < 15_000) > 0.1 and np.mean(n > 300_000) > 0.1
    for p in drawn:
        assert 0.005 <= p.operator_share <= 0.10
        assert 3 <= p.group_sizes[0] <= p.group_sizes[1] <= 3_000
        assert 1 <= len(p.shapes) <= 5 and {s for s, _ in p.shapes} <= set(SHAPES)
    assert Counter(s for p in drawn for s, _ in p.shapes).keys() == set(SHAPES)
    assert max(p.group_sizes[1] for p in drawn) > 1_000
    assert draw_world(7) == draw_world(7) and draw_world(7) != draw_world(8)


def test_plan_groups_follow_the_shape_mix() -> None:
    params = WorldParams(n_accounts=200_000, operator_share=0.05, group_sizes=(3, 30),
                         shapes=(("cells", 3.0), ("paraphrase", 1.0)))
    g = plan_groups(params, seed=1)
    shapes = Counter(g["shape"].to_pylist())
    assert 2.0 < shapes["cells"] / shapes["paraphrase"] < 4.5
    assert sum(g["size"].to_pylist()) == 10_000
    assert set(g["usage"].to_pylist()) <= {"whole", "largepool", "paraphrase"}


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="shapes must name"):
        WorldParams(shapes=(("nosuch", 1.0),))
    with pytest.raises(ValueError, match="operator_share"):
        WorldParams(operator_share=0.7)
    with pytest.raises(ValueError, match=r"at most 0\.5"):
        WorldParams(families=0.3, orgs=0.3)


@pytest.mark.parametrize("scenario", sorted(WORLD_SCENARIOS))
def test_generate_scenarios(tmp_path: Path, scenario: str) -> None:
    s = generate(tmp_path, scenario=scenario, n_accounts=1_200, seed=2)
    assert s.scenario == scenario and s.n_accounts == 1_200
    assert pq.read_table(tmp_path / "accounts.parquet").num_rows == 1_200
    assert s.rows["interactions"] > 0


def test_cli_generates_a_world(tmp_path: Path) -> None:
    res = invoke("generate", "--out", tmp_path, "--scenario", "paraphrase", "--accounts",
                 1000, "--seed", 1)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "truth.csv").exists() and (tmp_path / "interactions").is_dir()
    res = invoke("generate", "--out", tmp_path, "--scenario", "stockdevice",
                 "--group-sizes", 1, 5)
    assert res.exit_code == 2
