"""Retraction: a published run can be withdrawn (``linkage runs retract``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

* ``runs.status`` may be ``retracted``: a run that was published and then withdrawn (a
  truncated input folder published as ``latest``, say). Its rows stay, for the audit trail,
  but every definition of ``latest`` (``status = 'succeeded'``: the analyst views, the CLI's
  ``--run latest``, the run a night compares with, the warm start) skips it with no change of
  its own.
* ``runs.retracted_at``, ``retracted_by``, ``retraction_reason``: when, by whom and why.

SQLite cannot alter a CHECK constraint in place: batch mode recreates ``runs`` from the frozen
definition below, keeping the analyst views and the AUTOINCREMENT high-water mark as revision
0002 explains. PostgreSQL expands ``runs.*`` when a view is created, so ``latest_run`` is
recreated to show the new columns, and granted again to ``linkage_analyst`` (0004).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH = "status IN ('running', 'succeeded', 'failed', 'abandoned', 'retracted')"
_WITHOUT = "status IN ('running', 'succeeded', 'failed', 'abandoned')"
_COLUMNS = ("retracted_at", "retracted_by", "retraction_reason")
_LATEST_RUN = """
    SELECT runs.* FROM runs
    WHERE runs.run_id = (SELECT MAX(run_id) FROM runs WHERE status = 'succeeded')
"""
_ROLE = "linkage_analyst"


def _retraction_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retracted_by", sa.String(length=255), nullable=True),
        sa.Column("retraction_reason", sa.Text(), nullable=True),
    ]


def _runs(condition: str, *, retraction: bool) -> sa.Table:
    """``runs`` as revisions 0002 to 0005 (``retraction=False``) or 0006 define it."""
    extra = _retraction_columns() if retraction else []
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
        *extra,
        sa.CheckConstraint(condition, name="ck_runs_status"),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sqlite_autoincrement=True,
    )


def _sqlite_rebuild(old: str, new: str, *, had_retraction: bool, add: bool) -> None:
    op.execute("CREATE TEMP TABLE _lk_runs_seq AS "
               "SELECT seq FROM sqlite_sequence WHERE name = 'runs'")
    op.execute("PRAGMA legacy_alter_table = ON")
    with op.batch_alter_table(
        "runs", recreate="always", copy_from=_runs(old, retraction=had_retraction),
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), new)
        for column in _retraction_columns():
            if add:
                batch.add_column(column)
            else:
                batch.drop_column(column.name)
    op.execute("PRAGMA legacy_alter_table = OFF")
    op.execute("UPDATE sqlite_sequence SET seq = max(seq, coalesce("
               "(SELECT max(seq) FROM _lk_runs_seq), 0)) WHERE name = 'runs'")
    op.execute("DROP TABLE _lk_runs_seq")


def _recreate_latest_run() -> None:
    """PostgreSQL: ``latest_run`` anew (``runs.*`` as it is now), granted as in 0004."""
    op.execute(f"CREATE VIEW latest_run AS {_LATEST_RUN.strip()}")
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{_ROLE}') THEN
                GRANT SELECT ON latest_run TO {_ROLE};
            END IF;
        END
        $$
    """)


def upgrade() -> None:
    """Allow ``retracted`` runs; add who retracted a run, when and why."""
    if op.get_context().dialect.name == "sqlite":
        _sqlite_rebuild(_WITHOUT, _WITH, had_retraction=False, add=True)
        return
    op.execute("DROP VIEW latest_run")
    op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", _WITH)
    for column in _retraction_columns():
        op.add_column("runs", column)
    _recreate_latest_run()


def downgrade() -> None:
    """A retracted run becomes ``failed`` (never ``latest`` in the old schema either), with
    the retraction kept in its ``error``; the three columns go."""
    op.execute("""
        UPDATE runs SET status = 'failed',
            error = 'retracted by ' || coalesce(retracted_by, 'unknown') || ': '
                    || coalesce(retraction_reason, 'no reason given')
        WHERE status = 'retracted'
    """)
    if op.get_context().dialect.name == "sqlite":
        _sqlite_rebuild(_WITH, _WITHOUT, had_retraction=True, add=False)
        return
    op.execute("DROP VIEW latest_run")
    for name in reversed(_COLUMNS):
        op.drop_column("runs", name)
    op.drop_constraint(op.f("ck_runs_status"), "runs", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", _WITHOUT)
    _recreate_latest_run()
