"""Continuity: stable ids across runs and the lineage rule."""

from __future__ import annotations

import json

import pyarrow as pa

from linkage.continuity import assign_identities
from tests.helpers import ingested


def tonight(n: int, clusters: dict[int, list[int]]):
    con = ingested(n)
    rows = [(i, c) for c, members in clusters.items() for i in members]
    con.execute("CREATE TABLE members (idx INTEGER, cluster INTEGER)")
    con.executemany("INSERT INTO members VALUES (?, ?)", rows)
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


def test_grown_and_shrunk_clusters_keep_their_id():
    prev = previous({"cRING": list(range(10)), "cOTHER": [20, 21, 22, 23]}, first_seen=3)
    con = tonight(40, {0: list(range(12)), 1: [20, 21, 22]})
    assign_identities(con, prev, min_jaccard=0.5)
    r = result(con)
    assert r[0] == ("cRING", "continued", ["cRING"], 3)
    assert r[1] == ("cOTHER", "continued", ["cOTHER"], 3)


def test_merge_and_split():
    prev = previous({"cA": [0, 1, 2, 3], "cB": [4, 5, 6, 7], "cC": list(range(10, 20))})
    con = tonight(40, {0: list(range(8)), 1: list(range(10, 15)), 2: list(range(15, 20))})
    assign_identities(con, prev, min_jaccard=0.6)
    r = result(con)
    assert r[0][1] == "merged" and r[0][2] == ["cA", "cB"] and r[0][0] not in ("cA", "cB")
    assert r[1][1] == "split" and r[1][2] == ["cC"]
    assert r[2][1] == "split" and r[2][2] == ["cC"]
    assert len({v[0] for v in r.values()}) == 3


def test_unrelated_cluster_is_new():
    prev = previous({"cA": [0, 1, 2]})
    con = tonight(40, {0: [30, 31, 32]})
    assign_identities(con, prev, min_jaccard=0.5)
    assert result(con)[0][1:] == ("new", [], None)
