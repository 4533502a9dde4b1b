"""Analyst access: a read-only PostgreSQL role that sees the views and nothing else.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

On PostgreSQL this creates the role ``linkage_analyst`` (``NOLOGIN``: a group role; grant it
to real login roles with ``GRANT linkage_analyst TO alice``) unless it exists, and grants it
``SELECT`` on the analyst views only. It gets nothing on any table: a PostgreSQL view reads
its tables with the privileges of the view's owner, so the role reads through the views and
cannot read or write the raw tables (keyed hashes of identifying values, the quarantine
sample) at all.

Roles belong to the PostgreSQL cluster, not to one database, so the downgrade revokes this
database's grants and leaves the role (other databases may still grant it something).
A later migration that drops and recreates one of these views must grant it again.

SQLite has no roles: there the revision does nothing (file permissions are the access control).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "linkage_analyst"
# The views of docs/schema.md; cluster_lineage (0003) only where that revision created it.
VIEWS = ("latest_run", "latest_clusters", "latest_memberships", "cluster_history",
         "cluster_lineage")


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _existing_views() -> list[str]:
    if op.get_context().as_sql:
        # Offline SQL script for a DBA: no database to ask; the chain before this revision
        # creates every one of them.
        return list(VIEWS)
    rows = op.get_bind().exec_driver_sql(
        "SELECT table_name FROM information_schema.views "
        "WHERE table_schema = current_schema()"
    )
    present = {r[0] for r in rows}
    return [v for v in VIEWS if v in present]


def upgrade() -> None:
    """Create the role if needed and grant it SELECT on the analyst views (PostgreSQL)."""
    if not _postgresql():
        return
    # DO block: CREATE ROLE has no IF NOT EXISTS, and the role may exist from another
    # database of the same cluster.
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
        END
        $$
    """)
    # USAGE on the schema: PostgreSQL 15+ no longer grants it to PUBLIC in every setup.
    op.execute(f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', "
               "current_schema()); END $$")
    for view in _existing_views():
        op.execute(f"GRANT SELECT ON {view} TO {ROLE}")


def downgrade() -> None:
    """Revoke this database's grants; the role itself stays (it is cluster-wide)."""
    if not _postgresql():
        return
    for view in _existing_views():
        op.execute(f"REVOKE ALL ON {view} FROM {ROLE}")
    op.execute(f"DO $$ BEGIN EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {ROLE}', "
               "current_schema()); END $$")
