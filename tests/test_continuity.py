"""Continuity: stable ids across runs and the lineage rule."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from linkage.config import load_config
from linkage.continuity import assign_identities, compare_runs
from linkage.pipeline import run_pipeline
from linkage.store import Store
from linkage.synth import generate
from tests.helpers import ingested, insert_rows, invoke


def tonight(n: int, clusters: dict[int, list[int]]):
    con = ingested(n)
    rows = [(i, c) for c, members in clusters.items() for i in members]
    con.execute("CREATE TABLE members (idx INTEGER, cluster INTEGER)")
    insert_rows(con, "members", ["idx", "cluster"], rows)
    return con


def previous(clusters: dict[str, list[int]], first_seen: int = 1) -> pa.Table:
    ids, accounts = [], []
    for cid, members in clusters.items():
        ids += [cid] * len(members)
        accounts += [f"a{i:06d}" for i in members]
    return pa.table({"cluster_id": ids, "account_id": accounts,
                     "first_seen_run_id": [first_seen] * len(ids)})


def result(con):
    return {r[0]: (r[1], r[2], json.loads(r[3]), r[4]) for r in con.execute(
        "SELECT cluster, cluster_id, origin, parents_json, first_seen_run_id FROM cluster_ids"
    ).fetchall()}


def test_first_run_ids_are_new_and_derived_from_members():
    con = tonight(10, {0: [0, 1, 2], 1: [5, 6]})
    assert assign_identities(con, None, min_jaccard=0.5) == {"new": 2}
    r = result(con)
    assert {v[1] for v in r.values()} == {"new"}
    again = tonight(10, {0: [5, 6], 1: [0, 1, 2]})
    assign_identities(again, None, min_jaccard=0.5)
    r2 = result(again)
    assert r[0][0] == r2[1][0] and r[1][0] == r2[0][0]  # same members, same id
    assert r[0][0].startswith("c") and len(r[0][0]) == 13


def lineage(con):
    return sorted(con.execute(
        "SELECT cluster_id, kind, other_cluster_id, overlap FROM lineage").fetchall(),
        key=str)


def test_grown_and_shrunk_clusters_keep_their_id():
    prev = previous({"cRING": list(range(10)), "cOTHER": [20, 21, 22, 23],
                     "cSAME": [30, 31]}, first_seen=3)
    con = tonight(40, {0: list(range(12)), 1: [20, 21, 22], 2: [30, 31]})
    counts = assign_identities(con, prev, min_jaccard=0.5)
    assert counts == {"continued": 1, "grown": 1, "shrunk": 1}
    r = result(con)
    assert r[0] == ("cRING", "grown", ["cRING"], 3)
    assert r[1] == ("cOTHER", "shrunk", ["cOTHER"], 3)
    assert r[2] == ("cSAME", "continued", ["cSAME"], 3)
    assert lineage(con) == [("cOTHER", "shrunk", "cOTHER", 3), ("cRING", "grown", "cRING", 10),
                            ("cSAME", "continued", "cSAME", 2)]


def test_equal_size_with_swapped_members_counts_as_grown():
    prev = previous({"cA": [0, 1, 2, 3]})
    con = tonight(40, {0: [0, 1, 2, 9]})
    assign_identities(con, prev, min_jaccard=0.5)
    assert result(con)[0][:2] == ("cA", "grown")


def test_merge_and_split():
    prev = previous({"cA": [0, 1, 2, 3], "cB": [4, 5, 6, 7], "cC": list(range(10, 20))})
    con = tonight(40, {0: list(range(8)), 1: list(range(10, 15)), 2: list(range(15, 20))})
    assign_identities(con, prev, min_jaccard=0.6)
    r = result(con)
    assert r[0][1] == "merged" and r[0][2] == ["cA", "cB"] and r[0][0] not in ("cA", "cB")
    assert r[1][1] == "split" and r[1][2] == ["cC"]
    assert r[2][1] == "split" and r[2][2] == ["cC"]
    assert len({v[0] for v in r.values()}) == 3
    rows = lineage(con)
    merged, left, right = r[0][0], r[1][0], r[2][0]
    assert (merged, "merged", "cA", 4) in rows and (merged, "merged", "cB", 4) in rows
    assert ("cA", "merged_into", merged, 4) in rows and ("cB", "merged_into", merged, 4) in rows
    assert (left, "split", "cC", 5) in rows and ("cC", "split_into", left, 5) in rows
    assert ("cC", "split_into", right, 5) in rows
    assert len(rows) == 8


def test_a_parent_that_keeps_its_id_still_records_its_split_pieces():
    prev = previous({"cC": list(range(12))})
    con = tonight(40, {0: list(range(8)), 1: [8, 9, 10, 11]})
    assign_identities(con, prev, min_jaccard=0.5)
    r = result(con)
    assert r[0][:2] == ("cC", "shrunk") and r[1][1:3] == ("split", ["cC"])
    assert ("cC", "split_into", r[1][0], 4) in lineage(con)


def test_vanished_cluster_is_dissolved():
    prev = previous({"cA": [0, 1, 2, 3], "cGONE": [10, 11, 12, 13]})
    con = tonight(40, {0: [0, 1, 2, 3]})
    assign_identities(con, prev, min_jaccard=0.5)
    assert ("cGONE", "dissolved", None, None) in lineage(con)


def test_unrelated_cluster_is_new():
    prev = previous({"cA": [0, 1, 2]})
    con = tonight(40, {0: [30, 31, 32]})
    assign_identities(con, prev, min_jaccard=0.5)
    assert result(con)[0][1:] == ("new", [], None)
    rows = lineage(con)
    assert (result(con)[0][0], "new", None, None) in rows
    assert ("cA", "dissolved", None, None) in rows


def test_compare_runs_reads_stored_ids_with_the_same_rule():
    before = pa.table({"account_id": ["a", "b", "c", "x", "y"],
                       "cluster_id": ["cA", "cA", "cA", "cX", "cX"]})
    after = pa.table({"account_id": ["a", "b", "c", "d", "p", "q"],
                      "cluster_id": ["cA", "cA", "cA", "cA", "cP", "cP"]})
    rows = compare_runs(before, after, min_jaccard=0.5).to_pylist()
    kinds = {(r["cluster_id"], r["kind"], r["other_cluster_id"]) for r in rows}
    assert kinds == {("cA", "grown", "cA"), ("cP", "new", None), ("cX", "dissolved", None)}


# --- night after night, end to end ---------------------------------------------------------

SECRET = b"continuity-test-secret-0123456789"


def _night(tmp_path: Path, seed: int = 3) -> Path:
    first = tmp_path / "night1"
    generate(first, scenario="mixed", n_accounts=6_000, seed=seed)
    return first


def _change_one_percent(src: Path, dst: Path) -> set[str]:
    """Copy ``src`` to ``dst`` with 1% of accounts changed: half lose their card and device
    rows, half get a new device; plus 10 new accounts copying the attributes of the first 10.
    Returns the ids of accounts whose evidence changed (the copied ones included)."""
    dst.mkdir()
    accounts = pq.read_table(src / "accounts.parquet")
    ids = accounts.column("account_id").to_pylist()
    changed = ids[::100]  # every hundredth: 1%, spread over clusters and singletons
    dropped, altered = set(changed[::2]), set(changed[1::2])
    for f in src.glob("*.parquet"):
        t = pq.read_table(f)
        if f.name in ("payment_instruments.parquet", "devices.parquet"):
            keep = pc.invert(pc.is_in(t.column("account_id"), pa.array(sorted(dropped))))
            t = t.filter(keep)
        if f.name == "devices.parquet":
            extra = pa.table({
                "account_id": sorted(altered),
                "device_id": [f"new-device-{a}" for a in sorted(altered)],
                "seen_at": pa.array([t.column("seen_at")[0].as_py()] * len(altered),
                                    t.schema.field("seen_at").type),
            })
            t = pa.concat_tables([t, extra.select(t.schema.names).cast(t.schema)])
        if f.name == "accounts.parquet":
            newcomers = t.slice(0, 10).set_column(
                0, "account_id", pa.array([f"new-{i}" for i in range(10)]))
            t = pa.concat_tables([t, newcomers])
        pq.write_table(t, dst / f.name)
    return set(changed) | set(ids[:10])


@pytest.mark.slow
def test_same_history_same_result(tmp_path):
    night1 = _night(tmp_path)
    night2 = tmp_path / "night2"
    _change_one_percent(night1, night2)
    cfg = load_config(None)
    results = []
    for name in ("a", "b"):
        with Store(f"sqlite:///{tmp_path / name}.db") as store:
            run_pipeline(night1, store, cfg, SECRET)
            run = run_pipeline(night2, store, cfg, SECRET)
            results.append((store.memberships(run.run_id), _lineage_rows(store, run.run_id)))
    assert results[0][0].equals(results[1][0])
    assert results[0][1] == results[1][1]


def _groups(memberships: pa.Table) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for account, cid in zip(memberships.column("account_id").to_pylist(),
                            memberships.column("cluster_id").to_pylist(), strict=True):
        out.setdefault(cid, set()).add(account)
    return {cid: frozenset(m) for cid, m in out.items()}


def _lineage_rows(store: Store, run_id: int) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT cluster_id, kind, other_cluster_id, overlap, jaccard FROM cluster_lineage "
            f"WHERE run_id = {int(run_id)} ORDER BY cluster_id, kind, other_cluster_id")]


@pytest.mark.slow
def test_diff_between_two_runs_matches_the_stored_lineage(db_url, tmp_path):
    night1 = _night(tmp_path)
    night2 = tmp_path / "night2"
    _change_one_percent(night1, night2)
    cfg = load_config(None)
    with Store(db_url) as store:
        first = run_pipeline(night1, store, cfg, SECRET)
        second = run_pipeline(night2, store, cfg, SECRET)
        stored = _lineage_rows(store, second.run_id)

    def diff(*args: str):
        res = invoke("diff", "--from", first.run_id, "--to", "latest", "--db", db_url, *args)
        assert res.exit_code == 0, res.output
        return res.stdout

    doc = json.loads(diff("--format", "json", "--all"))
    assert (doc["from_run"], doc["to_run"]) == (first.run_id, second.run_id)
    got = sorted((r["cluster_id"], r["kind"], r["other_cluster_id"], r["overlap"])
                 for r in doc["changes"])
    assert got == sorted(r[:4] for r in stored)  # one definition of lineage
    changes = json.loads(diff("--format", "json"))["changes"]
    assert changes and all(r["kind"] != "continued" for r in changes)
    csv_lines = diff("--format", "csv").splitlines()
    header = csv_lines[0].replace('"', "")
    assert header.startswith("cluster_id,kind,other_cluster_id,overlap,jaccard,")
    assert len(csv_lines) == len(changes) + 1
    assert f"run {first.run_id} → run {second.run_id}" in diff()
    res = invoke("diff", "--from", "999", "--db", db_url)
    assert res.exit_code == 2 and "no such run" in res.stderr
