"""A store written by the previous release upgrades to head without losing its runs.

``fixtures/store_0001.sql`` is a SQLite store as the release before the reliability
migration (0002) left it (schema revision 0001, one succeeded run). On SQLite it is loaded
as is; on PostgreSQL an empty database is migrated to 0001 and given the fixture's rows.
Then the store is upgraded the way a nightly run does it (``ensure_schema``), must match the
models, must still serve its run, and a new run must continue its clusters. Keep the
fixture; add one per release that changes the schema.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from linkage.config import RunConfig
from linkage.pipeline import run_pipeline
from linkage.store import Store, migrate

FIXTURE = Path(__file__).parent / "fixtures" / "store_0001.sql"
SECRET = b"fixture-secret-0123456789abcdef"
ACCOUNTS = """account_id,created_at,email,signup_ip
a1,2026-01-01T10:00:00Z,ann@example.com,10.0.0.1
a2,2026-01-01T10:01:00Z,ann@example.com,10.0.0.2
a3,2026-01-01T10:02:00Z,cy@example.com,10.0.0.3
"""
# Parents before children (foreign keys on PostgreSQL).
TABLES = ("runs", "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys",
          "quarantine", "store_meta")


def load_fixture(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            con.executescript(FIXTURE.read_text())
        finally:
            con.close()
        return
    source = sqlite3.connect(":memory:")
    source.executescript(FIXTURE.read_text())
    with Store(db_url) as store:
        migrate.upgrade(store.engine, "0001")
        meta = sa.MetaData()
        with store.engine.begin() as conn:
            for name in TABLES:
                table = sa.Table(name, meta, autoload_with=conn)
                cursor = source.execute(f'SELECT * FROM "{name}"')
                columns = [d[0] for d in cursor.description]
                rows = [dict(zip(columns, map(_convert, columns, row, [table] * len(row)),
                                 strict=True)) for row in cursor]
                if rows:
                    conn.execute(table.insert(), rows)
            # The ids of the copied runs were given explicitly; move the sequence past them.
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('runs', 'run_id'), max(run_id)) FROM runs")
    source.close()


def _convert(column: str, value: object, table: sa.Table) -> object:
    kind = table.c[column].type
    if value is not None and isinstance(kind, sa.Boolean):
        return bool(value)
    if isinstance(value, str) and isinstance(kind, sa.DateTime):
        return datetime.fromisoformat(value)
    return value


def test_previous_release_store_upgrades_without_losing_runs(
    db_url: str, tmp_path: Path
) -> None:
    load_fixture(db_url)
    with Store(db_url) as store:
        assert migrate.current_revision(store.engine) == "0001"
        before = store.memberships(1).to_pylist()
        assert len(before) == 3
        store.ensure_schema()
        assert store.check() == []
        assert store.latest_run_id() == 1
        assert store.run(1)["status"] == "succeeded"
        assert store.memberships(1).to_pylist() == before
        assert store.get_meta("key_check") is not None

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "payment_instruments.csv").write_text(
        "account_id,fingerprint\na1,fp_1\na2,fp_1\na3,fp_1\n")
    (folder / "devices.csv").write_text("account_id,device_id\na1,dev9\na3,dev9\n")
    with Store(db_url) as store:
        summary = run_pipeline(folder, store, RunConfig(), SECRET)
        assert summary.run_id == 2  # a new id, after the fixture's
        now = store.memberships(2).to_pylist()
    # The same input: the same accounts, in the same (continued) cluster.
    assert [(r["account_id"], r["cluster_id"]) for r in now] == \
        [(r["account_id"], r["cluster_id"]) for r in before]


def test_downgrade_to_the_previous_release_keeps_the_run(db_url: str) -> None:
    load_fixture(db_url)
    with Store(db_url) as store:
        store.upgrade()
        dead = store.begin_run(config_json="{}", config_hash="0", seed=1,
                               code_version="dev", input_path="in/")
        assert store.abandon_running() == [dead]
        migrate.downgrade(store.engine, "0001")
        assert migrate.current_revision(store.engine) == "0001"
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT run_id, status FROM runs ORDER BY run_id")).all()
        # 0001 knows no 'abandoned': it becomes the nearest status the old code knows.
        assert [tuple(r) for r in rows] == [(1, "succeeded"), (dead, "failed")]
        assert len(store.memberships(1)) == 3
        store.upgrade()
        assert store.check() == []


@pytest.mark.parametrize("revision", ["0001"])
def test_fixture_is_at_the_revision_it_claims(revision: str) -> None:
    assert f"INSERT INTO \"alembic_version\" VALUES('{revision}');" in FIXTURE.read_text()
