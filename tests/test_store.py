"""Tests of linkage.store.Store on real databases (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from sqlalchemy import text

from linkage.errors import NotFoundError, StoreError
from linkage.store import RECORD_COLUMNS, RECORD_SCHEMAS, RunRecord, Store
from linkage.store import store as store_module

CHILD_TABLES = (
    "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys", "quarantine",
)


def _table(name: str, rows: list[tuple]) -> pa.Table:
    # the required columns (optional ones, like memberships.created_at, are left out)
    schema = pa.schema([f for f in RECORD_SCHEMAS[name] if f.name in RECORD_COLUMNS[name]])
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema.names]
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)],
                    schema=schema)


def make_record(
    clusters: dict[str, tuple[float, list[str]]],
    *,
    first_seen: dict[str, int] | None = None,
    quarantine: list[tuple] = (),
) -> RunRecord:
    """A RunRecord with the given clusters {cluster_id: (score, members)}."""
    first_seen = first_seen or {}
    cluster_rows, member_rows, evidence_rows, signal_rows, key_rows = [], [], [], [], []
    for cid, (score, members) in clusters.items():
        cluster_rows.append((
            cid, len(members), score, score >= 0.5, "new", "[]",
            json.dumps({"size": len(members)}), json.dumps({"card": score}),
            json.dumps([f"{len(members)} accounts share a card"]), first_seen.get(cid),
        ))
        member_rows += [(a, cid) for a in members]
        a, b = sorted(members)[:2]
        evidence_rows.append((cid, a, b, 2.5))
        signal_rows += [(a, b, "card", 2.0, 1), (a, b, "device", 0.5, 2)]
        key_rows.append((cid, "card", f"hash-{cid}", len(members)))
    flagged = sum(score >= 0.5 for score, _ in clusters.values())
    return RunRecord(
        input_fingerprint="sha256:abc",
        rows_read={"accounts": 10, "devices": 4},
        rows_quarantined={"devices": {"unknown account_id": len(quarantine)}},
        n_accounts=10,
        n_edges=len(evidence_rows),
        n_clusters=len(clusters),
        n_flagged=flagged,
        timings={"ingest": 0.5, "graph": 1.25},
        clusters=_table("clusters", cluster_rows),
        memberships=_table("memberships", member_rows),
        evidence=_table("evidence", evidence_rows),
        evidence_signals=_table("evidence_signals", signal_rows),
        cluster_keys=_table("cluster_keys", key_rows),
        quarantine=_table("quarantine", list(quarantine)),
    )


def begin(store: Store, seed: int = 7) -> int:
    return store.begin_run(
        config_json='{"communities": {"resolution": 0.1}}', config_hash="cafe", seed=seed,
        code_version="0.1.0", input_path="/data/in",
    )


def publish(store: Store, clusters: dict[str, tuple[float, list[str]]], **kw) -> int:
    run_id = begin(store)
    store.publish_run(run_id, make_record(clusters, **kw))
    return run_id


def count_rows(store: Store, table: str, run_id: int) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            text(f"SELECT COUNT(*) FROM {table} WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()


def query(store: Store, sql: str, **params) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


TWO_CLUSTERS = {"c-a": (0.9, ["a1", "a2", "a3"]), "c-b": (0.2, ["b1", "b2"])}


# -- writing and reading a run ---------------------------------------------------------------


@pytest.mark.parametrize("top", [0, 1, 2, 3, 4, 6, 50])
def test_top_clusters_are_the_head_of_all_clusters(store: Store, top: int) -> None:
    # Ties at the cut (0.5 three times) are ordered by cluster_id in Arrow, as for all.
    run_id = publish(store, {
        "c-9": (0.5, ["a1", "a2"]), "c-10": (0.5, ["b1", "b2"]), "c-2": (0.5, ["c1", "c2"]),
        "c-a": (0.9, ["d1", "d2"]), "c-b": (0.1, ["e1", "e2"]), "c-c": (0.7, ["f1", "f2"]),
    })
    everything = store.clusters(run_id)
    assert everything.column("cluster_id").to_pylist() == [
        "c-a", "c-c", "c-10", "c-2", "c-9", "c-b"]
    head = store.clusters(run_id, top=top)
    assert head.schema == RECORD_SCHEMAS["clusters"]
    assert head.to_pylist() == everything.slice(0, top).to_pylist()


def test_publish_and_read_back(store: Store) -> None:
    quarantine = [
        ("devices", "devices.csv", 3, "account_id", "unknown account_id", "'zz'"),
        ("devices", "devices.csv", None, None, "file is empty", None),
    ]
    run_id = begin(store)
    store.set_stage(run_id, "store")
    record = make_record(TWO_CLUSTERS, first_seen={"c-b": run_id}, quarantine=quarantine)
    store.publish_run(run_id, record)

    run = store.run(run_id)
    assert run["status"] == "succeeded"
    assert run["stage"] == "store"
    assert run["seed"] == 7 and run["config_hash"] == "cafe" and run["code_version"] == "0.1.0"
    assert run["input_fingerprint"] == "sha256:abc"
    assert (run["n_rows_read"], run["n_rows_quarantined"]) == (14, 2)
    assert (run["n_accounts"], run["n_edges"], run["n_clusters"], run["n_flagged"]) == (
        10, 2, 2, 1,
    )
    assert json.loads(run["rows_read_json"]) == {"accounts": 10, "devices": 4}
    assert json.loads(run["rows_quarantined_json"]) == {"devices": {"unknown account_id": 2}}
    assert json.loads(run["timings_json"]) == {"ingest": 0.5, "graph": 1.25}
    assert run["error"] is None
    assert run["started_at"].tzinfo is UTC and run["finished_at"].tzinfo is UTC
    assert run["started_at"] <= run["finished_at"] <= datetime.now(UTC)

    memberships = store.memberships(run_id)
    assert memberships.schema.names == ["account_id", "cluster_id", "cluster_score", "flagged"]
    assert memberships.to_pylist() == [
        {"account_id": a, "cluster_id": "c-a", "cluster_score": 0.9, "flagged": True}
        for a in ("a1", "a2", "a3")
    ] + [
        {"account_id": b, "cluster_id": "c-b", "cluster_score": 0.2, "flagged": False}
        for b in ("b1", "b2")
    ]

    clusters = store.clusters(run_id)
    assert clusters.schema == RECORD_SCHEMAS["clusters"]
    assert clusters.column("cluster_id").to_pylist() == ["c-a", "c-b"]  # score desc
    # A NULL first_seen_run_id means "this run" and is stored as the run's id.
    assert clusters.column("first_seen_run_id").to_pylist() == [run_id, run_id]
    assert json.loads(clusters.column("reasons_json")[0].as_py()) == ["3 accounts share a card"]

    for table, n in [("evidence", 2), ("evidence_signals", 4), ("cluster_keys", 2)]:
        assert count_rows(store, table, run_id) == n
    rows = query(store, "SELECT * FROM quarantine WHERE run_id = :r ORDER BY seq", r=run_id)
    assert [(r["seq"], r["row_number"], r["column_name"], r["value"]) for r in rows] == [
        (1, 3, "account_id", "'zz'"), (2, None, None, None),
    ]


def test_runs_lists_newest_first_with_every_status(store: Store) -> None:
    first = publish(store, TWO_CLUSTERS)
    running = begin(store)
    failed = begin(store)
    store.fail_run(failed, stage="graph", error="Traceback: boom")
    listed = store.runs()
    assert [(r["run_id"], r["status"]) for r in listed] == [
        (failed, "failed"), (running, "running"), (first, "succeeded"),
    ]
    assert listed[0]["stage"] == "graph" and listed[0]["error"] == "Traceback: boom"
    assert listed[0]["finished_at"] is not None and listed[1]["finished_at"] is None
    assert [r["run_id"] for r in store.runs(limit=1)] == [failed]
    assert len(store.runs(limit=None)) == 3


def test_latest_ignores_running_and_failed_runs(store: Store) -> None:
    assert store.latest_run_id() is None
    first = publish(store, TWO_CLUSTERS)
    running = begin(store)
    failed = begin(store)
    store.fail_run(failed, stage="communities", error="boom")
    assert store.latest_run_id() == first
    assert store.resolve_run(None) == store.resolve_run("latest") == first
    with pytest.raises(NotFoundError, match=f"no such run: {running} is running"):
        store.resolve_run(str(running))
    with pytest.raises(NotFoundError, match=f"no such run: {failed} is failed"):
        store.resolve_run(failed)
    second = publish(store, TWO_CLUSTERS)
    assert store.resolve_run("latest") == second
    assert store.resolve_run(str(first)) == first


def test_failed_publish_leaves_no_rows_and_latest_unchanged(store: Store) -> None:
    first = publish(store, TWO_CLUSTERS)
    run_id = begin(store)
    record = make_record(TWO_CLUSTERS)
    # The duplicate comes last, after every other table's rows were written.
    duplicate = pa.concat_tables([record.memberships, record.memberships.slice(0, 1)])
    with pytest.raises(StoreError, match=f"publishing run {run_id} failed"):
        store.publish_run(run_id, replace(record, memberships=duplicate))
    for table in CHILD_TABLES:
        assert count_rows(store, table, run_id) == 0, table
    assert store.run(run_id)["status"] == "running"
    assert store.run(run_id)["n_clusters"] is None
    assert store.latest_run_id() == first
    store.fail_run(run_id, stage="store", error="duplicate membership")
    assert store.run(run_id)["status"] == "failed"


def test_publish_refuses_memberships_of_unknown_clusters(store: Store) -> None:
    run_id = begin(store)
    record = make_record(TWO_CLUSTERS)
    stray = pa.concat_tables([record.memberships, _table("memberships", [("x1", "c-zz")])])
    with pytest.raises(StoreError, match="memberships names 1 rows of cluster_id not in"):
        store.publish_run(run_id, replace(record, memberships=stray))
    assert store.run(run_id)["status"] == "running"


def test_publish_converts_engine_types(store: Store) -> None:
    record = make_record(TWO_CLUSTERS)
    # What DuckDB or a careless stage may hand over: dictionary-encoded ids, int32 sizes.
    memberships = record.memberships.set_column(
        1, "cluster_id", record.memberships.column("cluster_id").dictionary_encode()
    )
    sizes = record.clusters.column("size").cast(pa.int32())
    clusters = record.clusters.set_column(1, "size", sizes)
    run_id = begin(store)
    store.publish_run(run_id, replace(record, memberships=memberships, clusters=clusters))
    assert store.memberships(run_id).column("cluster_id").to_pylist() == ["c-a"] * 3 + ["c-b"] * 2
    bad = record.clusters.set_column(1, "size", pa.array(["three", "two"]))
    with pytest.raises(StoreError, match=r"clusters column 'size' is string, which does"):
        store.publish_run(begin(store), replace(record, clusters=bad))


def test_publish_refuses_a_score_outside_0_1(store: Store) -> None:
    run_id = begin(store)
    with pytest.raises(StoreError, match="score_range"):
        store.publish_run(run_id, make_record({"c-a": (1.5, ["a1", "a2"])}))
    assert count_rows(store, "clusters", run_id) == 0


def test_a_published_run_is_final(store: Store) -> None:
    run_id = publish(store, TWO_CLUSTERS)
    with pytest.raises(StoreError, match=f"run {run_id} is succeeded, not running"):
        store.publish_run(run_id, make_record(TWO_CLUSTERS))
    with pytest.raises(StoreError, match="not running"):
        store.fail_run(run_id, stage="reports", error="late failure")
    with pytest.raises(StoreError, match="not running"):
        store.set_stage(run_id, "reports")
    with pytest.raises(NotFoundError, match="no such run: 999"):
        store.set_stage(999, "graph")
    assert store.run(run_id)["status"] == "succeeded"


def test_set_stage_is_visible_to_another_connection_at_once(store: Store) -> None:
    run_id = begin(store)
    store.set_stage(run_id, "signals")
    with Store(store.url) as other:
        assert other.run(run_id)["stage"] == "signals"
        assert other.run(run_id)["status"] == "running"


def test_empty_record_and_bulk_chunks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = begin(store)
    store.publish_run(empty, RunRecord.empty(input_fingerprint="sha256:0"))
    assert store.memberships(empty).num_rows == 0
    assert store.clusters(empty).schema == RECORD_SCHEMAS["clusters"]
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 2)  # 7 memberships -> 4 chunks
    many = {f"c{i}": (0.6, [f"a{i}{j}" for j in range(i + 2)]) for i in range(2)}
    many["c9"] = (0.7, ["z1", "z2"])
    run_id = publish(store, many)
    assert store.memberships(run_id).num_rows == 7


def test_awkward_text_round_trips(store: Store) -> None:
    # COPY's text format escapes tabs, newlines and backslashes; none may be mangled.
    awkward = ["tab\there", "new\nline", "back\\slash", "quote'\"", "ünïcødé 𝄞", r"\N", ""]
    run_id = publish(store, {"c\t1": (0.5, awkward)})
    assert store.memberships(run_id).column("account_id").to_pylist() == sorted(awkward)
    assert store.clusters(run_id).column("cluster_id").to_pylist() == ["c\t1"]


def test_deleting_a_run_cascades(store: Store) -> None:
    keep = publish(store, TWO_CLUSTERS)
    drop = publish(store, TWO_CLUSTERS, quarantine=[("a", "a.csv", 1, "x", "bad", None)])
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM runs WHERE run_id = :r"), {"r": drop})
    for table in CHILD_TABLES:
        assert count_rows(store, table, drop) == 0, table
    assert count_rows(store, "memberships", keep) == 5
    assert store.latest_run_id() == keep
    assert begin(store) > drop  # a deleted run's id is never reused


# -- resolving runs ----------------------------------------------------------------------------


def test_resolve_run_errors(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"^no finished run in (sqlite|postgresql)"):
        store.resolve_run("latest")
    run_id = publish(store, TWO_CLUSTERS)
    assert store.resolve_run(f" {run_id} ") == run_id
    assert store.resolve_run("LATEST") == run_id
    for ref in ("999", 999, "0", "-1", "abc", "1.0", True, "٣"):
        with pytest.raises(NotFoundError, match=r"^no such run: "):
            store.resolve_run(ref)
    with pytest.raises(NotFoundError, match="expected a run id or 'latest'"):
        store.resolve_run("newest")
    with pytest.raises(NotFoundError, match="no such run: 42"):
        store.run(42)
    with pytest.raises(NotFoundError, match="no such run: 42"):
        store.memberships(42)


def test_previous_memberships(store: Store) -> None:
    assert store.previous_memberships() is None
    first = publish(store, TWO_CLUSTERS)
    second = publish(store, {"c-a": (0.8, ["a1", "a2"])}, first_seen={"c-a": first})
    begin(store)  # a running run is not "previous"
    previous = store.previous_memberships()
    assert previous is not None
    assert previous.to_pylist() == [
        {"cluster_id": "c-a", "account_id": "a1", "first_seen_run_id": first},
        {"cluster_id": "c-a", "account_id": "a2", "first_seen_run_id": first},
    ]
    assert second == store.latest_run_id()


# -- store metadata ----------------------------------------------------------------------------


def test_meta(store: Store) -> None:
    assert store.get_meta("key_check") is None
    store.set_meta("key_check", "abc")
    assert store.get_meta("key_check") == "abc"
    store.set_meta("key_check", "def")
    assert store.get_meta("key_check") == "def"
    assert query(store, "SELECT COUNT(*) AS n FROM store_meta") == [{"n": 1}]


# -- analyst views -----------------------------------------------------------------------------


def test_latest_views(store: Store) -> None:
    assert query(store, "SELECT * FROM latest_run") == []
    assert query(store, "SELECT * FROM latest_memberships") == []
    publish(store, TWO_CLUSTERS)
    second = publish(store, {"c-a": (0.95, ["a1", "a2", "a9"])})
    failed = begin(store)
    store.fail_run(failed, stage="graph", error="boom")

    latest = query(store, "SELECT * FROM latest_run")
    assert [(r["run_id"], r["status"]) for r in latest] == [(second, "succeeded")]
    clusters = query(store, "SELECT cluster_id, score, size FROM latest_clusters")
    assert clusters == [{"cluster_id": "c-a", "score": 0.95, "size": 3}]
    rows = query(store, "SELECT * FROM latest_memberships ORDER BY account_id")
    assert [
        (r["run_id"], r["account_id"], r["cluster_id"], r["cluster_score"], bool(r["flagged"]))
        for r in rows
    ] == [(second, a, "c-a", 0.95, True) for a in ("a1", "a2", "a9")]
    # The view and the Store agree on what an export contains.
    exported = store.memberships(store.resolve_run("latest")).to_pylist()
    assert exported == [
        {k: (bool(v) if k == "flagged" else v) for k, v in r.items() if k != "run_id"}
        for r in rows
    ]


def test_cluster_history(store: Store) -> None:
    first = publish(store, TWO_CLUSTERS)
    second = publish(store, {"c-a": (0.95, ["a1", "a2"]), "c-n": (0.3, ["a3", "b1"])})
    begin(store)  # running: not history yet
    rows = query(
        store,
        "SELECT * FROM cluster_history WHERE account_id = :a ORDER BY run_id",
        a="a3",
    )
    seen = [(r["run_id"], r["cluster_id"], r["cluster_score"], bool(r["flagged"])) for r in rows]
    assert seen == [(first, "c-a", 0.9, True), (second, "c-n", 0.3, False)]
    finished = {r["run_id"]: r["finished_at"] for r in store.runs()}
    assert all(r["finished_at"] is not None for r in rows)
    # SQLite returns the stored text, PostgreSQL a timestamp: compare as datetimes.
    as_dt = [
        r["finished_at"] if isinstance(r["finished_at"], datetime)
        else datetime.fromisoformat(r["finished_at"]).replace(tzinfo=UTC)
        for r in rows
    ]
    assert as_dt == [finished[first], finished[second]]
    total = query(store, "SELECT COUNT(*) AS n FROM cluster_history")
    assert total == [{"n": 5 + 4}]
