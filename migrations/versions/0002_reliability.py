"""Reliability: erasure log, abandoned runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Two changes, written by hand and checked against the models by ``Store.check()``:

* ``runs.status`` may be ``abandoned``: a run left ``running`` by a process that died (SIGKILL,
  power loss) is marked so by the next run, which holds the run lock and therefore knows that
  nobody else is still working on it.
* ``erasures``: one row per ``linkage forget``, the audit trail of rows removed on request.
  It names the account only by a keyed hash, so the log of an erasure does not undo it.

SQLite cannot alter a CHECK constraint in place: batch mode recreates ``runs`` (copy, drop,
rename), from the frozen definition of ``runs`` below rather than by reflection, so that the
offline ``--sql`` script works too. Two things of the old table would not survive that on their
own and are carried over explicitly, in plain SQL (again for offline mode): the analyst views
(since SQLite 3.26 a rename checks every view, and they refer to ``runs`` while it is briefly
missing; ``legacy_alter_table`` skips that check, and the views then find the new ``runs`` by
name), and the AUTOINCREMENT high-water mark in ``sqlite_sequence`` (so an id of a deleted run
is never handed out again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_ABANDONED = "status IN ('running', 'succeeded', 'failed', 'abandoned')"
_WITHOUT_ABANDONED = "status IN ('running', 'succeeded', 'failed')"


def _runs(condition: str) -> sa.Table:
    """``runs`` as revisions 0001 and 0002 define it, with the status check ``condition``."""
    return sa.Table(
        "runs",
        sa.MetaData(),
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.String(length=128), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("input_path", sa.Text(), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("rows_read_json", sa.Text(), nullable=True),
        sa.Column("rows_quarantined_json", sa.Text(), nullable=True),
        sa.Column("n_rows_read", sa.BigInteger(), nullable=True),
        sa.Column("n_rows_quarantined", sa.BigInteger(), nullable=True),
        sa.Column("n_accounts", sa.BigInteger(), nullable=True),
        sa.Column("n_edges", sa.BigInteger(), nullable=True),
        sa.Column("n_clusters", sa.BigInteger(), nullable=True),
        sa.Column("n_flagged", sa.BigInteger(), nullable=True),
        sa.Column("timings_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(condition, name="ck_runs_status"),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sqlite_autoincrement=True,
    )


def _set_status_check(old: str, new: str) -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
        op.create_check_constraint(op.f("ck_runs_status"), "runs", new)
        return
    op.execute("CREATE TEMP TABLE _lk_runs_seq AS "
               "SELECT seq FROM sqlite_sequence WHERE name = 'runs'")
    op.execute("PRAGMA legacy_alter_table = ON")
    with op.batch_alter_table(
        "runs", recreate="always", copy_from=_runs(old),
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), new)
    op.execute("PRAGMA legacy_alter_table = OFF")
    op.execute("UPDATE sqlite_sequence SET seq = max(seq, coalesce("
               "(SELECT max(seq) FROM _lk_runs_seq), 0)) WHERE name = 'runs'")
    op.execute("DROP TABLE _lk_runs_seq")


def upgrade() -> None:
    """Allow ``abandoned`` runs; create ``erasures``."""
    _set_status_check(_WITHOUT_ABANDONED, _WITH_ABANDONED)
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("account_key", sa.String(length=128), nullable=False),
        sa.Column("runs_json", sa.Text(), nullable=False),
        sa.Column("rows_removed_json", sa.Text(), nullable=False),
        sa.Column("n_rows_removed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("erasure_id", name=op.f("pk_erasures")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_erasures_account_key"), "erasures", ["account_key"])


def downgrade() -> None:
    """Drop ``erasures``; an ``abandoned`` run becomes ``failed`` (the old schema's nearest)."""
    op.drop_index(op.f("ix_erasures_account_key"), table_name="erasures")
    op.drop_table("erasures")
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'abandoned'")
    _set_status_check(_WITH_ABANDONED, _WITHOUT_ABANDONED)
