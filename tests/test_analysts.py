"""The analyst role (migrations 0004 and 0009): on PostgreSQL it reads the views and, read-only,
the tables the ``linkage`` readers need; never the quarantine, the key check or the erasure
log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from linkage.store import RunRecord, Store, migrate

VIEWS = ("latest_run", "latest_clusters", "latest_memberships", "cluster_history",
         "latest_campaigns", "campaign_memberships")
TABLES = ("runs", "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys",
          "quarantine", "store_meta", "erasures")
# What the role may SELECT (0009).
READABLE = ("runs", "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys",
            "lineage", "labels", "alembic_version")


def _publish_one(store: Store) -> None:
    run_id = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="test",
                             input_path="in/")
    store.publish_run(run_id, RunRecord.empty(input_fingerprint="sha256:0"))


def test_analyst_role_reads_views_and_readers_tables_only(store: Store) -> None:
    _publish_one(store)
    if store.dialect != "postgresql":
        # SQLite has no roles: the revision is a no-op and the views work as before.
        with store.engine.connect() as conn:
            for view in VIEWS:
                conn.execute(sa.text(f"SELECT * FROM {view}")).fetchall()
        return
    with store.engine.connect() as conn:
        conn.execute(sa.text("SET ROLE linkage_analyst"))
        (run_id,) = conn.execute(sa.text("SELECT run_id FROM latest_run")).one()
        assert run_id == 1
        for view in VIEWS:
            conn.execute(sa.text(f"SELECT * FROM {view}")).fetchall()
        for table in READABLE:
            conn.execute(sa.text(f"SELECT * FROM {table}")).fetchall()
        conn.commit()
        for table in TABLES:
            sqls = [f"DELETE FROM {table}"]
            if table not in READABLE:
                sqls.append(f"SELECT * FROM {table}")
            for sql in sqls:
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(sql))
                conn.rollback()
                conn.execute(sa.text("SET ROLE linkage_analyst"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text(
                "INSERT INTO runs (status, stage, started_at, code_version, config_json, "
                "config_hash, seed, input_path) VALUES ('running', 'start', now(), 'x', '{}', "
                "'0', 1, 'x')"))
        conn.rollback()
        conn.execute(sa.text("SET ROLE linkage_analyst"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("CREATE TABLE notes (x int)"))
        conn.rollback()


def test_analyst_grants_survive_downgrade_and_upgrade(store: Store) -> None:
    migrate.downgrade(store.engine, "0003")
    store.upgrade()
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(sa.text("SET ROLE linkage_analyst"))
            conn.execute(sa.text("SELECT * FROM latest_clusters")).fetchall()
