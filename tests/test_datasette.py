"""``linkage browse``: the Datasette metadata (linkage/browse/metadata.json) is what
docs/schema.md describes, describes the real store, and every canned query runs against a
real SQLite store; the plugin links cluster ids to their pages and serves them."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from linkage.browse import METADATA
from linkage.browse.build_metadata import build, text
from linkage.store import RunRecord, Store

ROOT = Path(__file__).resolve().parents[1]
META = json.loads(METADATA.read_text(encoding="utf-8"))
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


def test_shipped_metadata_is_built_from_the_schema_page():
    doc = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    assert METADATA.read_text(encoding="utf-8") == text(build(doc)), (
        "run: python -m linkage.browse.build_metadata")


def test_the_plugin_links_clusters_to_their_pages(tmp_path):
    pytest.importorskip("datasette", reason="the browse extra installs it")
    from linkage.browse import app
    from tests.test_report_views import _record

    path = tmp_path / "night.db"
    with Store(f"sqlite:///{path}") as store:
        store.upgrade()
        run_id = store.begin_run(config_json="{}", config_hash="0", seed=1,
                                 code_version="test", input_path="in/")
        store.publish_run(run_id, _record())
    ds = app(path)

    async def get(url):
        return await ds.client.get(url)

    table = asyncio.run(get("/night/clusters?flagged=1"))
    assert table.status_code == 200
    assert f'<a href="/-/linkage/night/runs/{run_id}/clusters/cA"' in table.text
    assert f'<a href="/-/linkage/night/runs/{run_id}/campaigns/cA"' in table.text
    # The view without a run of its own links the latest run; canned queries link too.
    meta = asyncio.run(get("/night/latest_clusters"))
    assert '<a href="/-/linkage/night/runs/' in meta.text and "the clusters of the latest" \
        in meta.text
    page = asyncio.run(get(f"/-/linkage/night/runs/{run_id}/clusters/cB"))
    assert page.status_code == 200 and "Related clusters (2)" in page.text
    assert f'href="/-/linkage/night/runs/{run_id}/clusters/cA"' in page.text
    assert 'href="/night">overview</a>' in page.text and ">glossary</a>" in page.text
    camp = asyncio.run(get("/-/linkage/night/runs/latest/campaigns/cA"))
    assert camp.status_code == 200 and "Campaign" in camp.text
    # A cluster's own campaign of one redirects to the cluster; unknown ids are 404.
    alone = asyncio.run(get("/-/linkage/night/runs/latest/campaigns/cC"))
    assert alone.status_code == 302 and alone.headers["location"].endswith("/clusters/cC")
    assert asyncio.run(get("/-/linkage/night/runs/latest/clusters/nope")).status_code == 404
    assert asyncio.run(get("/-/linkage/night/runs/latest/glossary")).status_code == 200


def test_browse_refuses_what_datasette_cannot_open(tmp_path, db_url):
    from tests.helpers import invoke

    missing = invoke("browse", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.exit_code == 2 and "no store" in missing.output
    assert not (tmp_path / "none.db").exists()
    if db_url.startswith("sqlite"):
        return  # a SQLite store is served: test_datasette_in_chromium does that
    with Store(db_url) as store:
        store.upgrade()
    res = invoke("browse", "--db", db_url)
    assert res.exit_code == 2 and "SQLite stores only" in res.output
