"""Analyst access, round two: ``linkage_analyst`` may read what the ``linkage`` readers read.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Revision 0004 gave the role the views only, so every ``linkage`` command that reads the store
(``runs``, ``show``, ``explain``, ``diff``, ``report``, the exports, ``evaluate``) failed for an
analyst's login with "permission denied for table runs". This revision grants it ``SELECT``
(and nothing else) on the tables those commands read: ``runs``, ``clusters``, ``memberships``,
``evidence``, ``evidence_signals``, ``cluster_keys``, ``lineage``, ``labels`` and
``alembic_version`` (which schema revision the store is at).

``cluster_keys`` holds keyed hashes of the keys clusters share: the related-clusters section
of ``show cluster`` and the report joins clusters on them. A keyed hash can be compared with
another, not turned back into the value without the key, which never enters the database.
Still out of the role's reach: the quarantined raw input values (``quarantine``), the key's
check value (``store_meta``), the erasure log (``erasures``) and every write.

PostgreSQL only, and only where the role exists (revision 0004 creates it); SQLite has no
roles.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "linkage_analyst"
TABLES = ("runs", "clusters", "memberships", "evidence", "evidence_signals", "cluster_keys",
          "lineage", "labels", "alembic_version")


def _where_role(statement: str) -> None:
    """Run ``statement`` on PostgreSQL where the analyst role exists."""
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                {statement};
            END IF;
        END
        $$
    """)


def upgrade() -> None:
    """Grant the analyst role SELECT on the tables the reading commands read."""
    _where_role(f"GRANT SELECT ON {', '.join(TABLES)} TO {ROLE}")


def downgrade() -> None:
    """Revoke what :func:`upgrade` granted (the views' grants stay)."""
    _where_role(f"REVOKE ALL ON {', '.join(TABLES)} FROM {ROLE}")
