"""Migrations are the schema's source of truth: they must build what the models describe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import inspect

from linkage.errors import ConfigError, StoreError
from linkage.store import DEFAULT_DB_URL, Store, migrate, resolve_db_url
from linkage.store.models import Base

VIEWS = {"latest_run", "latest_clusters", "latest_memberships", "cluster_history",
         "cluster_lineage", "latest_campaigns", "campaign_memberships"}
TABLES = set(Base.metadata.tables)


def names(store: Store) -> tuple[set[str], set[str]]:
    with store.engine.connect() as conn:
        inspector = inspect(conn)
        return set(inspector.get_table_names()), set(inspector.get_view_names())


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.is_empty()
        problems = store.check()
        head = migrate.head_revision()
        assert f"database is at revision none (never migrated), the newest is {head}" in problems
        assert "add_table runs" in problems

        store.upgrade()
        assert not store.is_empty()
        assert store.check() == []
        tables, views = names(store)
        assert tables == TABLES | {"alembic_version"}
        assert views == VIEWS

        migrate.downgrade(store.engine, "base")
        tables, views = names(store)
        assert tables <= {"alembic_version"}  # Alembic keeps its (now empty) version table
        assert views == set()
        assert migrate.current_revision(store.engine) is None

        store.upgrade()
        assert store.check() == []
        assert names(store) == (TABLES | {"alembic_version"}, VIEWS)


def test_ensure_schema_is_idempotent(db_url: str) -> None:
    with Store(db_url) as store:
        store.ensure_schema()
        store.set_meta("k", "v")
        store.ensure_schema()
        assert store.get_meta("k") == "v"
        assert migrate.current_revision(store.engine) == migrate.head_revision() is not None


def test_ensure_schema_refuses_a_database_from_the_future(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(StoreError, match="revision 'ffff', which this linkage does not know"):
        store.ensure_schema()
    assert any("revision ffff" in p for p in store.check())


def test_check_reports_drift(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_memberships_account_id")
        conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN operator_note TEXT")
    problems = store.check()
    assert "add_index ix_memberships_account_id on memberships" in problems
    assert "remove_column runs.operator_note" in problems
    assert len(problems) == 2


BROKEN_REVISION = '''
"""A migration that fails halfway (test only)."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("half_done", sa.Column("x", sa.Integer(), primary_key=True))
    op.execute("DELETE FROM store_meta")
    op.execute("SELECT * FROM no_such_table")


def downgrade():
    op.drop_table("half_done")
'''


def test_a_failed_migration_changes_nothing(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "linkage"
    scripts = package / "_migrations"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(migrate.script_location(), scripts, ignore=skip)
    head = migrate.head_revision()
    with Store(db_url) as store:
        store.upgrade()
        store.set_meta("k", "v")
        (scripts / "versions" / "9999_broken.py").write_text(
            BROKEN_REVISION.replace("{head}", str(head)))
        monkeypatch.setattr(migrate, "_PACKAGE_DIR", package)
        assert migrate.head_revision() == "9999"
        with pytest.raises(StoreError, match=r"migrating the schema failed on .*no_such_table"):
            store.upgrade()
        # DDL is transactional on both backends (on SQLite because the store emits BEGIN
        # itself): the half-created table is gone and the database is still at the old head.
        assert migrate.current_revision(store.engine) == head
        assert "half_done" not in names(store)[0]
        assert store.get_meta("k") == "v"


def test_sqlite_migration_keeps_foreign_keys_on(tmp_path: Path) -> None:
    # Migrations switch SQLite's foreign keys off (batch mode recreates tables); the pooled
    # connection must come back with them on, or ON DELETE CASCADE silently stops working.
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.upgrade()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("url", ["sqlite://", "postgresql://"])
def test_offline_sql_script(url: str) -> None:
    sql = migrate.sql_script(url)
    assert "CREATE TABLE runs" in sql
    assert "CREATE VIEW latest_memberships AS" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in sql
    assert f"UPDATE alembic_version SET version_num='{migrate.head_revision()}'" in sql


def test_script_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    assert migrate.script_location() == repo / "migrations"
    # An installed wheel carries the scripts as linkage/_migrations, preferred when present.
    package = tmp_path / "site-packages" / "linkage"
    (package / "_migrations").mkdir(parents=True)
    (package / "_migrations" / "env.py").write_text("")
    monkeypatch.setattr(migrate, "_PACKAGE_DIR", package)
    assert migrate.script_location() == package / "_migrations"
    (package / "_migrations" / "env.py").unlink()
    with pytest.raises(StoreError, match="cannot find the migration scripts"):
        migrate.script_location()


# -- resolve_db_url ----------------------------------------------------------------------------


def test_resolve_db_url_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINKAGE_DB_URL", raising=False)
    assert resolve_db_url(None) == DEFAULT_DB_URL == "sqlite:///linkage.db"
    assert resolve_db_url("") == DEFAULT_DB_URL
    monkeypatch.setenv("LINKAGE_DB_URL", "sqlite:////var/lib/linkage.db")
    assert resolve_db_url(None) == "sqlite:////var/lib/linkage.db"
    assert resolve_db_url("sqlite:///other.db") == "sqlite:///other.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://", "sqlite://"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("postgresql://ann@db:5432/linkage", "postgresql+psycopg://ann@db:5432/linkage"),
        ("postgresql+psycopg://ann:s%40cret@db/linkage", "postgresql+psycopg://ann:s%40cret@db/linkage"),
    ],
)
def test_resolve_db_url_accepts(url: str, expected: str) -> None:
    assert resolve_db_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://db/linkage", "postgresql+psycopg2://db/x", "duckdb:///x.db", "sqlite+aiosqlite://"]
)
def test_resolve_db_url_rejects(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_db_url(url)
    message = str(info.value)
    assert message.startswith(f"unsupported database URL '{url}' (from --db): accepted are ")
    assert "sqlite:///PATH" in message and "postgresql://" in message


def test_resolve_db_url_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"invalid database URL 'linkage\.db' \(from --db\)"):
        resolve_db_url("linkage.db")
    monkeypatch.setenv("LINKAGE_DB_URL", "mysql://ann:hunter2@db/x")
    with pytest.raises(ConfigError, match=r"'mysql://ann:\*\*\*@db/x' \(from LINKAGE_DB_URL\)"):
        resolve_db_url(None)
    with pytest.raises(ConfigError):
        Store("oracle://db")
