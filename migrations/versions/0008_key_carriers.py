"""Key popularity: ``cluster_keys.n_global``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

A nullable column: how many accounts of the whole input carried the key (its popularity, from
which its specificity follows). The online check (``linkage serve``) weighs a new account's
shared keys by it. NULL in every run published before this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``cluster_keys.n_global``."""
    # Plain ALTER TABLE on both backends, as in 0007: no view reads cluster_keys.
    op.add_column("cluster_keys", sa.Column("n_global", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop ``cluster_keys.n_global``."""
    op.drop_column("cluster_keys", "n_global")
