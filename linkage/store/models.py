"""SQLAlchemy models of the store: one class per table, one shared ``metadata``.

The Alembic migrations in ``migrations/versions`` are the source of truth of the schema; these
models describe the same tables so that :meth:`linkage.store.Store.check` (Alembic's
autogenerate comparison) can prove that models and migrations have not drifted, and so that
the store builds its Core statements from typed columns rather than SQL strings.

Table and column names are a contract with analysts (``docs/`` and their notebooks query them
directly), so they are never renamed without a migration that keeps a view under the old name.
The analyst views (``latest_run``, ``latest_clusters``, ``latest_memberships``,
``cluster_history``) are created by the migration only: views are not tables, so they are not
modelled here and autogenerate does not compare them.

Every child table keys on ``run_id`` first: rows of one run are contiguous in each primary-key
index, reading a run is a range scan, and deleting a run (``ON DELETE CASCADE``) touches only
that run's rows.

Examples
--------
>>> sorted(Base.metadata.tables)  # doctest: +NORMALIZE_WHITESPACE
['cluster_keys', 'clusters', 'erasures', 'evidence', 'evidence_signals', 'labels',
 'lineage', 'memberships', 'quarantine', 'runs', 'store_meta']
>>> Membership.__table__.primary_key.name
'pk_memberships'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "LABELS",
    "NAMING_CONVENTION",
    "RUN_STATUSES",
    "Base",
    "Cluster",
    "ClusterKey",
    "Erasure",
    "Evidence",
    "EvidenceSignal",
    "Label",
    "Lineage",
    "Membership",
    "Quarantine",
    "Run",
    "StoreMeta",
    "UTCDateTime",
]

# Deterministic constraint and index names: Alembic can only drop or alter a constraint it can
# name, and SQLite's batch mode recreates tables by name. Without a convention PostgreSQL
# invents names (memberships_pkey) that differ from what a migration written against SQLite
# would use.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# abandoned: left running by a process that died; set by the next run (which holds the lock).
# retracted: published, then withdrawn by `linkage runs retract` (migration 0006): its rows
# stay for the audit trail, but it is never `latest` nor what a later run compares with.
RUN_STATUSES = ("running", "succeeded", "failed", "abandoned", "retracted")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz`` natively, but SQLite has no timestamp type and
    SQLAlchemy's SQLite ``DateTime`` drops the offset, so a naive value would come back from
    one backend and an aware one from the other. Values are converted to UTC on the way in
    (a naive value is refused: its zone would be a guess) and always come back aware in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; linkage stores UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored from a UTC value, so it is UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the one ``metadata`` that Alembic compares against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _run_fk() -> ForeignKey:
    # Deleting a run (retention, or removing a bad run) removes everything it wrote.
    return ForeignKey("runs.run_id", ondelete="CASCADE")


class Run(Base):
    """One nightly run: its parameters, provenance, counts and outcome.

    A row is inserted as ``running`` when the run starts and becomes ``succeeded`` only in the
    transaction that writes its results, so ``latest`` can never name a half-written run.
    """

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'abandoned', 'retracted')",
            name="status",
        ),
        # AUTOINCREMENT on SQLite: a deleted run's id is never handed out again, so an id
        # quoted in an old audit note cannot come to mean a different run (PostgreSQL's
        # sequence already behaves this way).
        {"sqlite_autoincrement": True},
    )

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    code_version: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(BigInteger)
    input_path: Mapped[str] = mapped_column(Text)
    # Everything below is known only once the run has computed its results; it stays NULL for
    # a run that is running or failed.
    input_fingerprint: Mapped[str | None] = mapped_column(String(128))
    rows_read_json: Mapped[str | None] = mapped_column(Text)
    rows_quarantined_json: Mapped[str | None] = mapped_column(Text)
    # BigInteger: usage tables reach tens of millions of rows a night, edges more.
    n_rows_read: Mapped[int | None] = mapped_column(BigInteger)
    n_rows_quarantined: Mapped[int | None] = mapped_column(BigInteger)
    n_accounts: Mapped[int | None] = mapped_column(BigInteger)
    n_edges: Mapped[int | None] = mapped_column(BigInteger)
    n_clusters: Mapped[int | None] = mapped_column(BigInteger)
    n_flagged: Mapped[int | None] = mapped_column(BigInteger)
    timings_json: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # Set by `linkage runs retract` (migration 0006): when, by whom and why a published run
    # was withdrawn; NULL for every other run.
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retracted_by: Mapped[str | None] = mapped_column(String(255))
    retraction_reason: Mapped[str | None] = mapped_column(Text)


class Cluster(Base):
    """A cluster of two or more accounts in one run (singletons are not stored)."""

    __tablename__ = "clusters"
    # The contract promises cluster_score in [0, 1]; NaN fails this too on PostgreSQL (NaN
    # sorts above every number) and becomes NULL, refused by NOT NULL, on SQLite.
    __table_args__ = (CheckConstraint("score >= 0 AND score <= 1", name="score_range"),)

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    # Run-independent identity assigned by the continuity stage: the same group of accounts
    # keeps its cluster_id from night to night.
    cluster_id: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(16))
    parents_json: Mapped[str] = mapped_column(Text)
    features_json: Mapped[str] = mapped_column(Text)
    contributions_json: Mapped[str] = mapped_column(Text)
    reasons_json: Mapped[str] = mapped_column(Text)
    # Deliberately not a foreign key: deleting an old run must not cascade into (or be
    # blocked by) the clusters of later runs that still remember where they began.
    first_seen_run_id: Mapped[int] = mapped_column(Integer)
    # The campaign of a flagged cluster (migration 0007): the cluster_id of the campaign's
    # oldest cluster, so it lives as long as that cluster does (linkage.campaigns). NULL for a
    # cluster that is not flagged and in runs published before 0007.
    campaign_id: Mapped[str | None] = mapped_column(Text, nullable=True)


class Membership(Base):
    """Which cluster each clustered account belongs to in a run (a partition: one each)."""

    __tablename__ = "memberships"
    __table_args__ = (
        Index(None, "run_id", "cluster_id"),  # the members of one cluster
        Index(None, "account_id"),  # one account's history across runs
    )

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    account_id: Mapped[str] = mapped_column(Text, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(Text)
    # The account's creation time from the input (migration 0005): the signup timeline of
    # reports. Not identifying on its own; NULL in runs published before 0005.
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Evidence(Base):
    """The weighted edges inside each cluster: why its accounts are linked."""

    __tablename__ = "evidence"
    __table_args__ = (Index(None, "run_id", "cluster_id"),)  # explaining one cluster

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    # An edge is stored once, as (account_a, account_b) with account_a < account_b.
    account_a: Mapped[str] = mapped_column(Text, primary_key=True)
    account_b: Mapped[str] = mapped_column(Text, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float)


class EvidenceSignal(Base):
    """Per-signal contributions of an evidence edge: the weight, taken apart."""

    __tablename__ = "evidence_signals"

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    account_a: Mapped[str] = mapped_column(Text, primary_key=True)
    account_b: Mapped[str] = mapped_column(Text, primary_key=True)
    signal: Mapped[str] = mapped_column(String(64), primary_key=True)
    contribution: Mapped[float] = mapped_column(Float)
    shared_keys: Mapped[int] = mapped_column(Integer)


class ClusterKey(Base):
    """Keys (hashed values) shared inside a cluster: which signal, how many members."""

    __tablename__ = "cluster_keys"

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(Text, primary_key=True)
    signal: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A keyed hash (linkage.pseudonymise): identifying values never reach the database.
    key_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    n_members: Mapped[int] = mapped_column(Integer)
    # How many accounts of the whole input carried the key (migration 0008): its popularity,
    # which the online check weighs it by. NULL in runs published before 0008.
    n_global: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Quarantine(Base):
    """Input rows a run set aside, located precisely (file, row, column) and why."""

    __tablename__ = "quarantine"

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    # Position in the run's quarantine list; the same row may break several rules, so the
    # natural key (file, row, column) is not unique.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(Text)
    row_number: Mapped[int | None] = mapped_column(BigInteger)
    column_name: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    # Already shortened by ingest (linkage.errors.shorten): never a full identifying value.
    value: Mapped[str | None] = mapped_column(Text)


class StoreMeta(Base):
    """Small facts about the store itself, e.g. the pseudonymisation key's check value."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Erasure(Base):
    """One ``linkage forget``: when, by whom, why, and how many rows it removed.

    The account is named only by a keyed hash (``account_key``), so the audit trail neither
    keeps nor reveals the identifier it erased, yet a repeated request can be recognised.
    """

    __tablename__ = "erasures"
    __table_args__ = (
        Index(None, "account_key"),
        {"sqlite_autoincrement": True},
    )

    erasure_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    account_key: Mapped[str] = mapped_column(String(128))
    # The run ids that held rows of the account, and rows removed per table.
    runs_json: Mapped[str] = mapped_column(Text)
    rows_removed_json: Mapped[str] = mapped_column(Text)
    n_rows_removed: Mapped[int] = mapped_column(BigInteger)


class Lineage(Base):
    """What each cluster of a run is relative to the previous run (``linkage.continuity``).

    ``kind`` is one of ``new``, ``continued``, ``grown``, ``shrunk``, ``merged``, ``split``
    (about a cluster of this run) or ``merged_into``, ``split_into``, ``dissolved`` (about a
    cluster of the previous run, named by its old id). A merged cluster has a row per
    parent, a split parent a row per piece, hence a sequence number as the key.
    """

    __tablename__ = "lineage"
    __table_args__ = (Index(None, "run_id", "cluster_id"),)

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    other_cluster_id: Mapped[str | None] = mapped_column(Text)
    # Accounts in both clusters, and their Jaccard index; NULL for new and dissolved.
    overlap: Mapped[int | None] = mapped_column(Integer)
    jaccard: Mapped[float | None] = mapped_column(Float)


LABELS = ("confirmed", "false_positive", "watch")


class Label(Base):
    """An analyst's verdict on a cluster or an account: an append-only audit log.

    Rows are only ever inserted (``linkage.labels``); a later label supersedes an earlier
    one for the same target, but both stay. On PostgreSQL a trigger refuses UPDATE and
    DELETE (migration 0003); on SQLite two triggers do the same. Not keyed on a run: a label
    outlives the run it was made on, and deleting a run must not erase the audit trail.
    """

    __tablename__ = "labels"
    __table_args__ = (
        CheckConstraint("target_kind IN ('cluster', 'account')", name="target_kind"),
        CheckConstraint("label IN ('confirmed', 'false_positive', 'watch')", name="label"),
        Index(None, "target_kind", "target_id"),
        {"sqlite_autoincrement": True},
    )

    label_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The run whose clusters the label was made against, and for a cluster label its
    # members at that time (JSON list): what "the labelled membership" means later.
    run_id: Mapped[int | None] = mapped_column(Integer)
    members_json: Mapped[str | None] = mapped_column(Text)
