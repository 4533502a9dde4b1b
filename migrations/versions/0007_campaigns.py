"""Campaigns: ``clusters.campaign_id`` and the views ``latest_campaigns`` and
``campaign_memberships``.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06

A nullable column: the campaign of a flagged cluster (``linkage.campaigns``), NULL for a
cluster that is not flagged and in every run published before this revision.

``latest_clusters`` selects ``clusters.*``: PostgreSQL fixes a view's columns when it is
created, so the view is recreated to show the new column (SQLite expands ``*`` when the view
is read, but gets the same statements). The analyst role of revision 0004 loses its grant on
a dropped view, so the recreated and the new views are granted to it again where it exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "linkage_analyst"
_LATEST = "(SELECT MAX(run_id) FROM runs WHERE status = 'succeeded')"
LATEST_CLUSTERS = f"""
    SELECT clusters.* FROM clusters
    WHERE clusters.run_id = {_LATEST}
"""
VIEWS = {
    # One row per campaign of the latest run: its clusters, accounts, best score, and the
    # run its oldest cluster was first seen in.
    "latest_campaigns": f"""
        SELECT c.run_id, c.campaign_id, COUNT(*) AS n_clusters, SUM(c.size) AS n_accounts,
               MAX(c.score) AS max_score, MIN(c.first_seen_run_id) AS first_seen_run_id
        FROM clusters c
        WHERE c.run_id = {_LATEST} AND c.campaign_id IS NOT NULL
        GROUP BY c.run_id, c.campaign_id
    """,
    # The accounts of every campaign, run by run (succeeded runs only).
    "campaign_memberships": """
        SELECT m.run_id, c.campaign_id, m.cluster_id, m.account_id,
               c.score AS cluster_score, r.finished_at
        FROM memberships m
        JOIN clusters c ON c.run_id = m.run_id AND c.cluster_id = m.cluster_id
        JOIN runs r ON r.run_id = m.run_id
        WHERE r.status = 'succeeded' AND c.campaign_id IS NOT NULL
    """,
}


def _grant(*views: str) -> None:
    """Grant the analyst role SELECT on ``views`` (PostgreSQL, where the role exists)."""
    if op.get_context().dialect.name != "postgresql":
        return
    names = ", ".join(views)
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                GRANT SELECT ON {names} TO {ROLE};
            END IF;
        END
        $$
    """)


def upgrade() -> None:
    """Add ``clusters.campaign_id``; recreate ``latest_clusters``; create the campaign views."""
    # Plain ALTER TABLE on both backends (SQLite has ADD and DROP COLUMN natively since
    # 3.35): batch mode would rebuild the table under the analyst views that read it.
    op.add_column("clusters", sa.Column("campaign_id", sa.Text(), nullable=True))
    op.execute("DROP VIEW latest_clusters")
    op.execute(f"CREATE VIEW latest_clusters AS {LATEST_CLUSTERS.strip()}")
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql.strip()}")
    _grant("latest_clusters", *VIEWS)


def downgrade() -> None:
    """Drop the campaign views and ``clusters.campaign_id``; recreate ``latest_clusters``."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    # PostgreSQL refuses to drop a column a view shows.
    op.execute("DROP VIEW latest_clusters")
    op.drop_column("clusters", "campaign_id")
    op.execute(f"CREATE VIEW latest_clusters AS {LATEST_CLUSTERS.strip()}")
    _grant("latest_clusters")
