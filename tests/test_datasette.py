"""The Datasette metadata (datasette/metadata.json) describes the real store, and every canned
query runs against a real SQLite store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa

from linkage.store import RunRecord, Store

ROOT = Path(__file__).resolve().parents[1]
META = json.loads((ROOT / "datasette" / "metadata.json").read_text(encoding="utf-8"))
DB = META["databases"]["linkage"]
CORE = {"runs", "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys",
        "quarantine", "store_meta", "latest_run", "latest_clusters", "latest_memberships",
        "cluster_history"}


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'linkage.db'}"
    with Store(url) as store:
        store.upgrade()
        run_id = store.begin_run(config_json="{}", config_hash="0", seed=1,
                                 code_version="test", input_path="in/")
        store.publish_run(run_id, RunRecord.empty(input_fingerprint="sha256:0"))
    return url


def test_descriptions_name_real_tables_and_columns(tmp_path):
    engine = sa.create_engine(_store(tmp_path))
    try:
        inspector = sa.inspect(engine)
        objects = set(inspector.get_table_names()) | set(inspector.get_view_names())
        assert set(DB["tables"]) >= CORE
        for name, table in DB["tables"].items():
            assert name in objects, f"{name} is described but not in the store"
            assert table["description"]
            real = {c["name"] for c in inspector.get_columns(name)}
            stale = set(table.get("columns", {})) - real
            assert not stale, f"{name}: described columns not in the store: {stale}"
    finally:
        engine.dispose()


def test_every_canned_query_runs(tmp_path):
    engine = sa.create_engine(_store(tmp_path))
    assert len(DB["queries"]) >= 10
    try:
        with engine.connect() as conn:
            for name, query in DB["queries"].items():
                params = {p: "x" for p in re.findall(r"(?<!:):(\w+)", query["sql"])}
                conn.execute(sa.text(query["sql"]), params).fetchall()
                assert query["title"], name
    finally:
        engine.dispose()
