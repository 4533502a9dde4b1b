"""Signup times of cluster members: ``memberships.created_at`` (the reports' timeline).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

A nullable column: runs published before this revision keep NULL there, and the reports say
the timeline is not available for them. No view selects ``memberships.*``, so no view needs
recreating (and no analyst grant is lost).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends (SQLite has ADD and DROP COLUMN natively since 3.35):
# batch mode would rebuild the table under the analyst views that read it.


def upgrade() -> None:
    """Add ``memberships.created_at``."""
    op.add_column("memberships",
                  sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop ``memberships.created_at``."""
    op.drop_column("memberships", "created_at")
