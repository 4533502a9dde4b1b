"""Continuity: lineage and analyst labels.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Written by hand and checked against the models by ``Store.check()``:

* ``lineage``: what each cluster of a run is relative to the previous run (``new``,
  ``continued``, ``grown``, ``shrunk``, ``merged``, ``split``; ``merged_into``,
  ``split_into``, ``dissolved`` for previous clusters), written in the run's publish
  transaction; the view ``cluster_lineage`` adds the run's finish time and the cluster's
  size, score and flag (the same SQL on both backends).
* ``labels``: analysts' verdicts, an append-only audit log. The code only ever inserts; the
  database refuses UPDATE and DELETE too (triggers on both backends, and on PostgreSQL also
  TRUNCATE), so a note cannot be rewritten after the fact by a stray SQL session either.
  ``DROP TABLE`` (this revision's downgrade) fires none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = {
    # Lineage rows of succeeded runs; size/score/flagged are NULL for rows about a previous
    # cluster that did not keep its id (it has no cluster in that run).
    "cluster_lineage": """
        SELECT l.run_id, r.finished_at, l.cluster_id, l.kind, l.other_cluster_id,
               l.overlap, l.jaccard, c.size, c.score, c.flagged
        FROM lineage l
        JOIN runs r ON r.run_id = l.run_id
        LEFT JOIN clusters c ON c.run_id = l.run_id AND c.cluster_id = l.cluster_id
        WHERE r.status = 'succeeded'
    """,
}

_REFUSAL = "labels are append-only: add a new label instead of changing or deleting one"


def upgrade() -> None:
    """Create ``lineage``, ``labels`` (append-only) and the ``cluster_lineage`` view."""
    op.create_table(
        "lineage",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("other_cluster_id", sa.Text(), nullable=True),
        sa.Column("overlap", sa.Integer(), nullable=True),
        sa.Column("jaccard", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_lineage_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_lineage")),
    )
    op.create_index(
        op.f("ix_lineage_run_id_cluster_id"), "lineage", ["run_id", "cluster_id"], unique=False
    )
    op.create_table(
        "labels",
        sa.Column("label_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("members_json", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "target_kind IN ('cluster', 'account')", name=op.f("ck_labels_target_kind")
        ),
        sa.CheckConstraint(
            "label IN ('confirmed', 'false_positive', 'watch')", name=op.f("ck_labels_label")
        ),
        sa.PrimaryKeyConstraint("label_id", name=op.f("pk_labels")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_labels_target_kind_target_id"), "labels", ["target_kind", "target_id"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION labels_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$
        """)
        op.execute("""
            CREATE TRIGGER labels_append_only BEFORE UPDATE OR DELETE ON labels
            FOR EACH ROW EXECUTE FUNCTION labels_append_only()
        """)
        op.execute("""
            CREATE TRIGGER labels_no_truncate BEFORE TRUNCATE ON labels
            FOR EACH STATEMENT EXECUTE FUNCTION labels_append_only()
        """)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER labels_no_{event.lower()} BEFORE {event} ON labels
                BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END
            """)
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql.strip()}")


def downgrade() -> None:
    """Drop the view, the triggers and both tables."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER labels_no_truncate ON labels")
        op.execute("DROP TRIGGER labels_append_only ON labels")
        op.execute("DROP FUNCTION labels_append_only()")
    else:
        op.execute("DROP TRIGGER labels_no_update")
        op.execute("DROP TRIGGER labels_no_delete")
    op.drop_index(op.f("ix_labels_target_kind_target_id"), table_name="labels")
    op.drop_table("labels")
    op.drop_index(op.f("ix_lineage_run_id_cluster_id"), table_name="lineage")
    op.drop_table("lineage")
