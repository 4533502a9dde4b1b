"""Analyst access, round two: ``linkage_analyst`` may read what the ``linkage`` readers read.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Revision 0004 gave the role the views only, so every ``linkage`` command that reads the store
(``runs``, ``show``, ``explain``, ``diff``, ``report``, the exports, ``evaluate``) failed for an
analyst's login with "permission denied for table runs". This revision grants it ``SELECT``
(and nothing else) on the tables those commands read: ``runs``, ``clusters``, ``memberships``,
``evidence``, ``evidence_signals``, ``lineage``, ``labels`` and ``alembic_version`` (which
schema revision the store is at), and on every column of ``cluster_keys`` except ``key_hash``.

Still out of its reach: every keyed hash (``cluster_keys.key_hash``, ``erasures``), the
quarantine sample of raw input values (``quarantine``), the key's check value
(``store_meta``), and every write. The ``cluster_keys`` columns are read from the catalogue
when the revision runs, so a column added by any earlier revision is granted too; a later
revision that adds a column to ``cluster_keys`` grants it itself if analysts may read it.

PostgreSQL only, and only where the role exists (revision 0004 creates it); SQLite has no
roles.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "linkage_analyst"
TABLES = ("runs", "clusters", "memberships", "evidence", "evidence_signals", "lineage",
          "labels", "alembic_version")
HIDDEN_COLUMN = ("cluster_keys", "key_hash")


def _where_role(statements: str) -> None:
    """Run PL/pgSQL ``statements`` on PostgreSQL where the analyst role exists."""
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"""
        DO $$
        DECLARE
            cols text;
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                {statements}
            END IF;
        END
        $$
    """)


def _columns_but_hidden() -> str:
    """PL/pgSQL setting ``cols`` to the quoted columns of ``cluster_keys`` but ``key_hash``."""
    table, hidden = HIDDEN_COLUMN
    return f"""
        SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
          INTO cols
          FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = '{table}'
           AND column_name <> '{hidden}';
    """


def upgrade() -> None:
    """Grant the analyst role SELECT on the readers' tables and on ``cluster_keys`` but
    ``key_hash``."""
    table = HIDDEN_COLUMN[0]
    _where_role(f"""
        GRANT SELECT ON {', '.join(TABLES)} TO {ROLE};
        {_columns_but_hidden()}
        EXECUTE format('GRANT SELECT (%s) ON {table} TO {ROLE}', cols);
    """)


def downgrade() -> None:
    """Revoke what :func:`upgrade` granted (the views' grants stay)."""
    table = HIDDEN_COLUMN[0]
    _where_role(f"""
        REVOKE ALL ON {', '.join(TABLES)} FROM {ROLE};
        {_columns_but_hidden()}
        EXECUTE format('REVOKE SELECT (%s) ON {table} FROM {ROLE}', cols);
    """)
