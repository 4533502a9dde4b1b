"""Invariants of the synthetic data generator (``linkage.synth``)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from linkage.synth import SCENARIOS, GenerateSummary, generate
from linkage.synth.generator import USAGE_SCENARIOS
from linkage.synth.rings import ring_sizes
from linkage.synth.vocab import NASTY_NAMES
from tests.helpers import CONTRACT_COLUMNS

# the generator writes every contract table but interactions
COLUMNS = {t: c for t, c in CONTRACT_COLUMNS.items() if t != "interactions"}
TIME_COLUMN = {"accounts": "created_at", "payment_instruments": "added_at",
               "ip_events": "seen_at", "devices": "seen_at", "observations": "seen_at"}
N = 12_000
SHARE = 0.05
SIZES = (10, 400)


def _read(out: Path) -> tuple[dict[str, pa.Table], dict[str, str]]:
    tables = {name: pq.read_table(out / f"{name}.parquet") for name in COLUMNS}
    truth = pcsv.read_csv(out / "truth.csv", convert_options=pcsv.ConvertOptions(
        column_types={"account_id": pa.string(), "group_id": pa.string()},
        strings_can_be_null=False))
    return tables, dict(zip(truth["account_id"].to_pylist(), truth["group_id"].to_pylist(),
                            strict=True))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[GenerateSummary, Path]]:
    out = {}
    for scenario in SCENARIOS:
        path = tmp_path_factory.mktemp(scenario)
        out[scenario] = (generate(path, scenario=scenario, n_accounts=N, operator_share=SHARE,
                                  group_sizes=SIZES, seed=7), path)
    return out


def _groups(truth: dict[str, str]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for account, group in truth.items():
        if group:
            groups[group].add(account)
    return groups


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tables_are_consistent(made: dict, scenario: str) -> None:
    summary, out = made[scenario]
    tables, truth = _read(out)
    for name, cols in COLUMNS.items():
        assert tables[name].column_names == cols
        assert tables[name].num_rows == summary.rows[name]
        assert tables[name].schema.field(TIME_COLUMN[name]).type == pa.timestamp("us", "UTC")
    ids = tables["accounts"]["account_id"].to_pylist()
    assert len(ids) == len(set(ids)) == summary.n_accounts == N
    assert all(re.fullmatch(r"a\d{7}", a) for a in ids)
    known = set(ids)
    for name in COLUMNS:
        assert set(tables[name]["account_id"].to_pylist()) <= known, name
    assert set(truth) == known
    groups = _groups(truth)
    assert len(groups) == summary.n_groups > 0
    assert sum(map(len, groups.values())) == summary.n_operator_accounts
    assert summary.n_operator_accounts == pytest.approx(SHARE * N, abs=SIZES[0])
    assert all(SIZES[0] <= len(g) <= SIZES[1] for g in groups.values())
    assert all(re.fullmatch(r"op\d{4}", g) for g in groups)
    # Every account has a signup IP and events; none is dated before it signed up.
    acc = tables["accounts"].to_pydict()
    assert None not in acc["signup_ip"]
    created = dict(zip(acc["account_id"], acc["created_at"], strict=True))
    for name in ("ip_events", "devices"):
        t = tables[name].to_pydict()
        assert all(ts >= created[a] for a, ts in zip(t["account_id"], t["seen_at"], strict=True))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_volumes_per_account(made: dict, scenario: str) -> None:
    summary, _ = made[scenario]
    per = {k: v / summary.n_accounts for k, v in summary.rows.items()}
    assert 1.0 <= per["payment_instruments"] <= 1.5
    assert 3.3 <= per["ip_events"] <= 4.7
    assert 1.3 <= per["devices"] <= 1.8
    assert 0.35 <= per["observations"] <= 0.7
    assert 6.5 <= sum(v for k, v in per.items() if k != "interactions") - 1 <= 8.5
    if scenario in USAGE_SCENARIOS:  # exactly 28.8 per account, as in the reported campaign
        assert summary.rows["interactions"] == round(28.8 * summary.n_accounts)
    else:
        assert "interactions" not in summary.rows


def test_operators_are_not_first_or_contiguous(made: dict) -> None:
    _, out = made["mixed"]
    _, truth = _read(out)
    ordered = sorted(truth)
    flags = np.array([bool(truth[a]) for a in ordered])
    ops = np.flatnonzero(flags)
    assert not flags[: len(ops)].all()
    assert ops.max() - ops.min() + 1 > 2 * len(ops)  # spread over the id range
    where = {a: i for i, a in enumerate(ordered)}
    for members in _groups(truth).values():
        pos = sorted(where[a] for a in members)
        assert pos[-1] - pos[0] + 1 > len(pos)


def test_fingerprints_are_never_card_numbers(made: dict) -> None:
    for _, out in made.values():
        tables, _ = _read(out)
        fps = tables["payment_instruments"]["fingerprint"].to_pylist()
        assert fps and all(re.fullmatch(r"fp_[0-9a-f]{16}", f) for f in fps)
        assert not any(re.fullmatch(r"\d{13,19}", f) for f in fps)


def _md5s(path: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_deterministic(tmp_path: Path, fmt: str) -> None:
    kw = {"scenario": "mixed", "n_accounts": 4_000, "operator_share": 0.05, "fmt": fmt}
    generate(tmp_path / "a", seed=3, **kw)
    generate(tmp_path / "b", seed=3, **kw)
    generate(tmp_path / "c", seed=4, **kw)
    a, b, c = (_md5s(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 6
    assert all(a[name] != c[name] for name in a)


def test_csv_and_parquet_read_by_duckdb(tmp_path: Path) -> None:
    kw = {"scenario": "mixed", "n_accounts": 3_000, "seed": 1}
    s_csv = generate(tmp_path / "csv", fmt="csv", **kw)
    s_pq = generate(tmp_path / "pq", fmt="parquet", **kw)
    assert s_csv.rows == s_pq.rows
    for name, cols in COLUMNS.items():
        rel = duckdb.sql(f"select * from read_csv('{tmp_path / 'csv' / name}.csv')")
        assert rel.columns == cols
        assert len(rel.fetchall()) == s_csv.rows[name]
        types = dict(zip(rel.columns, map(str, rel.types), strict=True))
        assert types[TIME_COLUMN[name]] == "TIMESTAMP WITH TIME ZONE"
        rel = duckdb.sql(f"select * from '{tmp_path / 'pq' / name}.parquet'")
        assert rel.columns == cols
    # Same content either way, including the awkward display names.
    q = ("select account_id, display_name, epoch(created_at) from {} "
         "order by account_id")
    from_csv = duckdb.sql(q.format(f"read_csv('{tmp_path / 'csv'}/accounts.csv')")).fetchall()
    from_pq = duckdb.sql(q.format(f"'{tmp_path / 'pq'}/accounts.parquet'")).fetchall()
    assert from_csv == from_pq
    truth = duckdb.sql(f"select * from read_csv('{tmp_path / 'csv'}/truth.csv')")
    assert truth.columns == ["account_id", "group_id"]


def test_hubs_have_a_key_shared_by_a_thousand_legitimate_accounts(tmp_path: Path) -> None:
    generate(tmp_path, scenario="hubs", n_accounts=20_000, seed=2)
    legit = f"(select account_id from read_csv('{tmp_path}/truth.csv', all_varchar=true) " \
            "where group_id is null)"
    top = duckdb.sql(f"""
        select max(n) from (
          select ip, count(distinct account_id) n from '{tmp_path}/ip_events.parquet'
          where account_id in {legit} group by ip)""").fetchall()[0][0]
    assert top >= 1000
    org = duckdb.sql(f"""select count(*) from '{tmp_path}/accounts.parquet'
                         where org_id is not null group by org_id""").fetchall()
    assert org == [(300,)]


def _overlap(table: pa.Table, key: str, members: set[str]) -> dict[str, set[str]]:
    holders: dict[str, set[str]] = defaultdict(set)
    t = table.to_pydict()
    for a, v in zip(t["account_id"], t[key], strict=True):
        if a in members:
            holders[v].add(a)
    return holders


def test_plain_ring_members_share_a_card_or_device(made: dict) -> None:
    _, out = made["plain"]
    tables, truth = _read(out)
    for group, members in _groups(truth).items():
        linked: set[str] = set()
        for name, key in (("payment_instruments", "fingerprint"), ("devices", "device_id")):
            for holders in _overlap(tables[name], key, members).values():
                if len(holders) > 1:
                    linked |= holders
        assert linked == members, group


def test_plain_background_is_distinct_people(made: dict) -> None:
    _, out = made["plain"]
    tables, truth = _read(out)
    legit = {a for a, g in truth.items() if not g}
    for name, key in (("payment_instruments", "fingerprint"), ("devices", "device_id")):
        assert max(map(len, _overlap(tables[name], key, legit).values())) == 1
    acc = tables["accounts"].to_pydict()

    def person(email: str) -> str:
        local, _, domain = email.lower().partition("@")
        return local.split("+")[0].replace(".", "") + "@" + domain

    emails = [person(e) for a, e in zip(acc["account_id"], acc["email"], strict=True)
              if a in legit]
    assert len(emails) == len(set(emails)) == len(legit)
    phones = [re.sub(r"\D", "", p) for a, p in zip(acc["account_id"], acc["phone"], strict=True)
              if a in legit and p]
    assert len(phones) > len(legit) / 3
    assert len(phones) == len(set(phones))


def _ring_components(tables: dict[str, pa.Table], members: set[str]) -> int:
    parent = {a: a for a in members}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for name, key in (("payment_instruments", "fingerprint"), ("devices", "device_id")):
        for holders in _overlap(tables[name], key, members).values():
            first, *rest = holders
            for other in rest:
                parent[find(other)] = find(first)
    return len({find(a) for a in members})


def test_camouflage_rings_are_sparse_chains(made: dict) -> None:
    _, out = made["camouflage"]
    tables, truth = _read(out)
    for group, members in _groups(truth).items():
        for name, key in (("payment_instruments", "fingerprint"), ("devices", "device_id")):
            sizes = [len(h) for h in _overlap(tables[name], key, members).values()]
            assert max(sizes) <= 4, group
        assert _ring_components(tables, members) == 1, group
    # Proxy exits come from the residential pool real users are in: /24s are shared.
    ip = tables["ip_events"].to_pydict()
    nets = defaultdict(set)
    for a, addr in zip(ip["account_id"], ip["ip"], strict=True):
        if ":" not in addr:
            nets[addr.rsplit(".", 1)[0]].add(bool(truth[a]))
    assert sum(1 for kinds in nets.values() if kinds == {True, False}) > 50


def test_slowdrip_rings(made: dict) -> None:
    _, out = made["slowdrip"]
    tables, truth = _read(out)
    pay = tables["payment_instruments"].to_pydict()
    acc = tables["accounts"].to_pydict()
    created = dict(zip(acc["account_id"], acc["created_at"], strict=True))
    signup = dict(zip(acc["account_id"], acc["signup_ip"], strict=True))
    for group, members in _groups(truth).items():
        rows = [(f, b, p) for a, f, b, p in zip(pay["account_id"], pay["fingerprint"], pay["bin"],
                                                pay["billing_postal"], strict=True)
                if a in members]
        assert len({f for f, _, _ in rows}) == len(rows) == len(members), group
        assert len({(b, p) for _, b, p in rows}) == 1, group
        times = sorted(created[a] for a in members)
        assert (times[-1] - times[0]).days >= 14, group
        nets = {signup[a].rsplit(".", 1)[0] for a in members}
        assert len(nets) == len(members), group


def test_plain_rings_sign_up_in_bursts(made: dict) -> None:
    _, out = made["plain"]
    tables, truth = _read(out)
    acc = tables["accounts"].to_pydict()
    created = dict(zip(acc["account_id"], acc["created_at"], strict=True))
    for group, members in _groups(truth).items():
        times = sorted(created[a].timestamp() for a in members)
        median = times[len(times) // 2]
        near = sum(abs(t - median) <= 12 * 3600 for t in times)
        assert near >= 0.6 * len(times), group


def test_text_realism(made: dict) -> None:
    tables, _ = _read(made["mixed"][1])
    ips = tables["ip_events"]["ip"].to_pylist()
    v6 = [ip for ip in ips if ":" in ip]
    assert 0.10 <= len(v6) / len(ips) <= 0.25
    assert any("::" in ip for ip in v6)
    assert any(re.fullmatch(r"([0-9a-f]{4}:){7}[0-9a-f]{4}", ip) for ip in v6)
    acc = tables["accounts"].to_pydict()
    phones = [p for p in acc["phone"] if p]
    assert any(p.startswith("+1 (") for p in phones)
    assert any(re.fullmatch(r"\d{10}", p) for p in phones)
    assert len(set(acc["user_agent"])) >= 30
    assert sum(o is not None for o in acc["org_id"]) < len(acc["org_id"]) / 10
    plain_tables, plain = _read(made["plain"][1])
    names = plain_tables["accounts"].to_pydict()
    nasty = {n for a, n in zip(names["account_id"], names["display_name"], strict=True)
             if plain[a] and n in NASTY_NAMES}
    assert len(nasty) >= 3
    assert not any(n in NASTY_NAMES for a, n in zip(names["account_id"], names["display_name"],
                                                    strict=True) if not plain[a])


def test_summary_and_validation(tmp_path: Path) -> None:
    s = generate(tmp_path, scenario="plain", n_accounts=500, operator_share=0.02)
    assert dataclasses.is_dataclass(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]
    assert s.n_groups == 1 and s.n_operator_accounts == 10
    for bad in ({"scenario": "nope"}, {"fmt": "xlsx"}, {"group_sizes": (1, 5)},
                {"group_sizes": (5, 4)}, {"operator_share": 1.0}, {"n_accounts": 0},
                {"seed": -1}):
        with pytest.raises(ValueError):
            generate(tmp_path, **{"n_accounts": 100, **bad})


def test_small_n_gives_one_smaller_ring(tmp_path: Path) -> None:
    s = generate(tmp_path, scenario="mixed", n_accounts=300, operator_share=0.02)
    assert (s.n_groups, s.n_operator_accounts) == (1, 6)  # fewer than group_sizes[0]
    s = generate(tmp_path, scenario="camouflage", n_accounts=200, operator_share=0.0)
    assert s.n_groups == 0 and s.rows["accounts"] == 200


@pytest.mark.parametrize(("lo", "hi"), [(2, 2), (2, 3), (3, 7), (10, 15), (10, 400)])
def test_ring_sizes_respect_bounds(lo: int, hi: int) -> None:
    rng = np.random.default_rng(0)
    for total in range(0, 300):
        sizes = ring_sizes(rng, total, lo, hi)
        assert sum(sizes) <= total
        if total >= lo:
            assert all(lo <= s <= hi for s in sizes)
            assert total - sum(sizes) < lo
        else:
            assert sizes == ([total] if total >= 2 else [])


def _usage_db(out: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW i AS SELECT * FROM read_parquet('{out}/interactions/*.parquet')")
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_csv('{out}/truth.csv', all_varchar=true)")
    con.execute(f"CREATE VIEW a AS SELECT * FROM read_parquet('{out}/accounts.parquet')")
    for name in ("payment_instruments", "devices", "ip_events"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{out}/{name}.parquet')")
    return con


def test_usageonly_operators_share_no_metadata(made: dict) -> None:
    _, out = made["usageonly"]
    con = _usage_db(out)
    for table, column in (("payment_instruments", "fingerprint"), ("devices", "device_id"),
                          ("a", "email")):
        shared = con.execute(
            f"""SELECT count(*) FROM (SELECT x.{column} FROM {table} x JOIN t USING (account_id)
                WHERE t.group_id IS NOT NULL GROUP BY x.{column}
                HAVING count(DISTINCT account_id) > 1)""").fetchone()
        assert shared == (0,), (table, column)
    # exact IPs: two members of one group meet on an IP no more often than chance allows
    same_group_ip = con.execute(
        """SELECT count(*) FROM (SELECT DISTINCT x.account_id a, y.account_id b
           FROM ip_events x JOIN ip_events y ON x.ip = y.ip AND x.account_id < y.account_id
           JOIN t tx ON tx.account_id = x.account_id JOIN t ty ON ty.account_id = y.account_id
           WHERE tx.group_id IS NOT NULL AND tx.group_id = ty.group_id)""").fetchone()
    assert same_group_ip is not None and same_group_ip[0] <= 2


def test_usageonly_interactions(made: dict) -> None:
    summary, out = made["usageonly"]
    con = _usage_db(out)
    assert con.execute("SELECT count(*) FROM i").fetchone() == (summary.rows["interactions"],)
    early = con.execute("SELECT count(*) FROM i JOIN a USING (account_id) "
                        "WHERE i.ts < a.created_at").fetchone()
    assert early == (0,)
    span = con.execute("SELECT (epoch(max(ts)) - epoch(min(ts))) / 86400 FROM i").fetchone()
    assert span is not None and 41 <= span[0] <= 42
    # Templates used by several accounts of one group only (private pools): most operator
    # requests use them, each by fewer than 200 accounts (the prompt signal's cap).
    tpl = con.execute(
        """WITH u AS (SELECT i.prompt_fingerprint f, i.account_id, t.group_id g
                      FROM i JOIN t USING (account_id))
           SELECT f, count(DISTINCT g) AS groups, count(DISTINCT account_id) AS accounts,
                  bool_or(g IS NULL) AS legit, count(*) AS uses,
                  bool_and(g IS NOT NULL) AS ops_only
           FROM u GROUP BY f""").fetchnumpy()
    private = tpl["ops_only"] & (tpl["groups"] == 1) & (tpl["accounts"] >= 2)
    op_uses = con.execute("SELECT count(*) FROM i JOIN t USING (account_id) "
                          "WHERE t.group_id IS NOT NULL").fetchone()
    assert op_uses is not None and tpl["uses"][private].sum() >= 0.85 * op_uses[0]
    assert tpl["accounts"][private].max() < 200
    # public templates: the most popular is used by a large share of all active accounts
    active = con.execute("SELECT count(DISTINCT account_id) FROM i").fetchone()
    assert active is not None and tpl["accounts"].max() >= 0.2 * active[0]
    # operators: mostly coding/agentic and many requests each; people: mostly not
    share = dict(con.execute(
        """SELECT t.group_id IS NOT NULL, avg((category IN ('coding', 'agentic'))::INT)
           FROM i JOIN t USING (account_id) GROUP BY 1""").fetchall())
    assert share[True] > 0.8 and share[False] < 0.3


def test_seedscale_scales_down(tmp_path: Path) -> None:
    s = generate(tmp_path, scenario="seedscale", n_accounts=20_000, seed=3)
    assert s.n_operator_accounts == 500 and s.rows["interactions"] == 576_000
    sizes = _groups(_read(tmp_path)[1])
    assert all(100 <= len(v) <= 450 for v in sizes.values())
    # a later generation of another scenario into the same folder removes interactions
    generate(tmp_path, scenario="plain", n_accounts=1_000)
    assert not (tmp_path / "interactions").exists()


def test_usageonly_deterministic(tmp_path: Path) -> None:
    def digest(out: Path) -> str:
        return hashlib.sha256(b"".join(
            p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())).hexdigest()
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, scenario="usageonly", n_accounts=3_000, seed=5)
    generate(b, scenario="usageonly", n_accounts=3_000, seed=5)
    assert digest(a) == digest(b)
