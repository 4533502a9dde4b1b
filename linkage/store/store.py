"""The store: every run, its clusters and its evidence, in SQLite or PostgreSQL.

A nightly run talks to the store four times: :meth:`Store.begin_run` records its parameters
(status ``running``), :meth:`Store.set_stage` marks each stage as it is entered (committed at
once, so a crashed run shows where it died), and at the end either :meth:`Store.publish_run`
writes all results and flips the status to ``succeeded`` in one transaction, or
:meth:`Store.fail_run` records the error. ``latest`` means the succeeded run with the greatest
id, so readers never see a half-written run.

Readers return Arrow tables sorted in Arrow, by code point: an ``ORDER BY`` on PostgreSQL
follows the database's collation (``en_US`` puts ``a-2`` after ``a1``), and exports must not
depend on which backend or locale a store happens to use.

Bulk writes avoid per-row ORM objects: Arrow columns are converted in chunks and written with
the driver's executemany (SQLite), or on PostgreSQL with ``COPY ... FROM STDIN`` on the same
transaction's connection (several times faster than any INSERT).

Examples
--------
>>> store = Store("sqlite://")
>>> store.ensure_schema()
>>> run_id = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="dev",
...                          input_path="in/")
>>> store.publish_run(run_id, RunRecord.empty(input_fingerprint="sha256:0"))
>>> store.resolve_run("latest") == run_id
True
>>> store.close()
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from linkage.errors import ConfigError, LinkageError, NotFoundError, StoreError, shorten
from linkage.store import migrate
from linkage.store.models import Base
from linkage.store.record import RECORD_SCHEMAS, RunRecord

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_DB_URL",
    "MAX_RUN_ID",
    "Store",
    "StoreDeniedError",
    "StoreUnreachableError",
    "create_store_engine",
    "resolve_db_url",
]

log = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///linkage.db"
CHUNK_ROWS = 50_000  # rows per executemany: bounds memory, big enough to amortise round trips
SQLITE_BUSY_TIMEOUT_MS = 60_000  # wait for another writer rather than fail at once
SQLITE_CACHE_KIB = 65_536  # page cache per connection

MAX_RUN_ID = 2**31 - 1
"""The largest run id a store can hold (``runs.run_id`` is a 32-bit integer on PostgreSQL)."""

_SQLITE_HEADER = b"SQLite format 3\x00"

_ACCEPTED = "sqlite:///PATH, postgresql://USER@HOST/DB (or postgresql+psycopg://)"

_T = Base.metadata.tables
_RUNS, _CLUSTERS, _MEMBERSHIPS, _META = (
    _T["runs"], _T["clusters"], _T["memberships"], _T["store_meta"]
)


def resolve_db_url(url: str | None) -> str:
    """The database URL to use: ``url``, else ``$LINKAGE_DB_URL``, else ``sqlite:///linkage.db``.

    Only SQLite and PostgreSQL are accepted. A plain ``postgresql://`` URL is rewritten to
    psycopg 3 (``postgresql+psycopg://``): that is the driver linkage ships with, and the
    bulk writer relies on its COPY support.

    Examples
    --------
    >>> resolve_db_url("postgresql://ann@db/linkage")
    'postgresql+psycopg://ann@db/linkage'
    >>> resolve_db_url("mysql://db/linkage")
    Traceback (most recent call last):
    ...
    linkage.errors.ConfigError: unsupported database URL 'mysql://db/linkage' (from --db): \
accepted are sqlite:///PATH, postgresql://USER@HOST/DB (or postgresql+psycopg://)
    """
    if url:
        raw, source = url, "--db"
    elif os.environ.get("LINKAGE_DB_URL"):
        raw, source = os.environ["LINKAGE_DB_URL"], "LINKAGE_DB_URL"
    else:
        raw, source = DEFAULT_DB_URL, "default"
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"invalid database URL {shorten(raw)} (from {source}): accepted are {_ACCEPTED}"
        ) from None
    shown = repr(parsed.render_as_string(hide_password=True))
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.render_as_string(hide_password=False)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL {shown} (from {source}): accepted are {_ACCEPTED}")


def create_store_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a store URL, with the connection settings the store relies on.

    SQLite gets foreign keys (off by default, and ``ON DELETE CASCADE`` depends on them), WAL
    (readers such as report builders never block the nightly writer, nor it them), a busy
    timeout, a 64 MB page cache, and real transactions: Python's sqlite3 module does not
    ``BEGIN`` before DDL or SELECT, so SQLAlchemy emits ``BEGIN`` itself (the recipe in
    SQLAlchemy's SQLite docs), which makes migrations transactional too.
    """
    url = resolve_db_url(url)
    if make_url(url).get_backend_name() == "postgresql":
        # pre_ping: the pooled connection may sit idle for the hours a run computes.
        return create_engine(
            url, pool_pre_ping=True, connect_args={"application_name": "linkage"}
        )
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy owns BEGIN (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")  # persistent; 'memory' for :memory:
        # 64 MB of page cache instead of 2 MB: a night's million membership rows go into
        # primary-key B-trees that do not fit 2 MB (docs/benchmarks.md).
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


_WRONG_KEY = (
    "the pseudonymisation key differs from the one this store was written with: its hashes "
    "would not match the stored ones. Use the original key (LINKAGE_SECRET / --secret-file) "
    "or a new store."
)


def _now() -> datetime:
    return datetime.now(UTC)


class StoreUnreachableError(StoreError):
    """The store could not be opened at all: a wrong host, port, database, role or password,
    or a SQLite path that cannot be opened. Exit status 2: the ``--db`` URL needs fixing
    (a store that was reachable and then failed mid-work stays a :class:`StoreError`, 1)."""

    exit_code = 2


class StoreDeniedError(StoreError):
    """The database refused the login a privilege (PostgreSQL ``permission denied``): say a
    ``linkage_analyst`` login, which reads, asked to write. Exit status 2: the command needs
    another role, not a repair of the store."""

    exit_code = 2


# SQLSTATE of insufficient_privilege (PostgreSQL): permission denied for a table or schema.
_DENIED = "42501"
_DENIED_HINT = (" (this login may not do that: a linkage_analyst login runs the reading "
                "commands only; labels, retractions, runs and erasures need the role the "
                "nightly job writes with)")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite store URL (``None``: PostgreSQL or an in-memory database).

    Examples
    --------
    >>> sqlite_path("sqlite:///night.db"), sqlite_path("sqlite://"), sqlite_path("postgresql://h/d")
    ('night.db', None, None)
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    return database


def parse_run_id(ref: object) -> int | None:
    """``ref`` as a run id if it is one a store can hold (digits, 1 to :data:`MAX_RUN_ID`),
    else ``None``: an id beyond what the column holds names no run rather than overflowing
    the driver.

    Examples
    --------
    >>> parse_run_id("12"), parse_run_id(" 7 "), parse_run_id("99999999999999999999")
    (12, 7, None)
    >>> parse_run_id("-1"), parse_run_id("1e3"), parse_run_id(True)
    (None, None, None)
    """
    if isinstance(ref, bool):
        return None
    text = str(ref).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    run_id = int(text)
    return run_id if 1 <= run_id <= MAX_RUN_ID else None


class Store:
    """A linkage database: runs, clusters, memberships, evidence; SQLite or PostgreSQL.

    Parameters
    ----------
    url
        A SQLAlchemy URL accepted by :func:`resolve_db_url` (``None``: the environment or the
        default). ``Store.url`` holds the resolved URL.

    A store holds a connection pool: call :meth:`close` (or use it as a context manager).
    """

    def __init__(self, url: str | None) -> None:
        self.url = resolve_db_url(url)
        self.engine = create_store_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        # Whether a connection was ever opened: a failure before that is a URL to fix
        # (StoreUnreachableError, exit 2); after it, a failure of the store (exit 1).
        self.reached = False

        @event.listens_for(self.engine, "connect")
        def _reached(_dbapi_connection: Any, _record: Any) -> None:
            self.reached = True

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Migrate the database to the newest schema (``alembic upgrade head``)."""
        with self._guard("migrating the schema"):
            migrate.upgrade(self.engine)

    def is_empty(self) -> bool:
        """Whether the database was never migrated (it has no Alembic version table)."""
        with self._guard("inspecting the schema"):
            return not migrate.has_version_table(self.engine)

    def require(self) -> None:
        """Refuse (:class:`NotFoundError`, exit 2) a URL that names no existing store.

        What every command that only reads (or adds to) a store calls first: SQLite would
        otherwise create an empty database file for a mistyped path, and a migration would
        write a schema into any database named by mistake. For a SQLite file nothing is
        opened before the file is known to exist and to start with SQLite's header.
        """
        self.check_sqlite_file(must_exist=True)
        if self.is_empty():
            path = sqlite_path(self.url)
            where = repr(path) if path is not None else self.display_url
            raise NotFoundError(
                f"no store at {where}: it holds no linkage schema (a first `linkage run` or "
                "`linkage db upgrade` creates one)")

    def check_sqlite_file(self, *, must_exist: bool) -> None:
        """Refuse (exit 2) a SQLite path that is not a SQLite database file: a folder, a
        device, a text file; with ``must_exist``, also one that does not exist. Nothing is
        created or opened for writing. No-op for PostgreSQL and in-memory databases."""
        path = sqlite_path(self.url)
        if path is None:
            return
        if not os.path.exists(path):
            if must_exist:
                raise NotFoundError(f"no store at {path!r}: no such file")
            return
        if not os.path.isfile(path):
            raise NotFoundError(f"no store at {path!r}: not a regular file")
        try:
            with open(path, "rb") as file:
                header = file.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreUnreachableError(f"cannot read {path!r}: {exc.strerror}") from None
        # An empty file is a valid, empty SQLite database (what `touch` makes).
        if header and header != _SQLITE_HEADER:
            raise NotFoundError(f"no store at {path!r}: the file is not a SQLite database")

    def ensure_schema(self) -> None:
        """Upgrade the database if it is empty or behind; refuse one newer than this code."""
        with self._guard("inspecting the schema"):
            current = migrate.current_revision(self.engine)
            if current == migrate.head_revision():
                return
            if current is not None and current not in migrate.known_revisions():
                raise StoreError(
                    f"{self.display_url} is at schema revision {current!r}, which this "
                    f"linkage does not know (newest known: {migrate.head_revision()!r}); "
                    "it was written by a newer linkage: upgrade linkage"
                )
        self.upgrade()

    def check(self) -> list[str]:
        """Differences between the models and the database schema; ``[]`` when they agree.

        Also reports a database that is not at the newest revision. This is what CI runs
        after ``upgrade()`` so that models and migrations cannot drift apart.
        """
        with self._guard("comparing the schema"), self.engine.connect() as conn:
            problems = []
            current, head = migrate.current_revision(conn), migrate.head_revision()
            if current != head:
                problems.append(
                    f"database is at revision {current or 'none (never migrated)'}, "
                    f"the newest is {head}"
                )
            return problems + migrate.compare(conn)

    # -- writing a run -------------------------------------------------------------------

    def begin_run(
        self, *, config_json: str, config_hash: str, seed: int, code_version: str,
        input_path: str,
    ) -> int:
        """Record a new run as ``running`` at stage ``start``; return its id."""
        with self._guard("starting a run"), self.engine.begin() as conn:
            result = conn.execute(
                _RUNS.insert().values(
                    status="running", stage="start", started_at=_now(),
                    code_version=code_version, config_json=config_json,
                    config_hash=config_hash, seed=seed, input_path=input_path,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def set_stage(self, run_id: int, stage: str) -> None:
        """Record that a running run entered ``stage`` (committed at once)."""
        with self._guard(f"recording the stage of run {run_id}"), self.engine.begin() as conn:
            self._update_running(conn, run_id, stage=stage)

    def fail_run(self, run_id: int, *, stage: str, error: str) -> None:
        """Mark a running run as failed at ``stage`` with ``error`` (e.g. the traceback)."""
        with self._guard(f"recording the failure of run {run_id}"), self.engine.begin() as conn:
            self._update_running(
                conn, run_id, status="failed", stage=stage, error=error, finished_at=_now()
            )

    def abandon_running(self) -> list[int]:
        """Mark every ``running`` run ``abandoned`` (its stage kept); return their ids.

        Only for a caller holding the run lock (:func:`linkage.store.lock.run_lock`): then no
        live process can be working on a ``running`` run, so each one was left behind by a
        process that died without recording why (SIGKILL, power loss, OOM killer).
        """
        with self._guard("marking abandoned runs"), self.engine.begin() as conn:
            stale = [
                int(r) for r in conn.execute(
                    select(_RUNS.c.run_id).where(_RUNS.c.status == "running")
                ).scalars()
            ]
            if stale:
                conn.execute(
                    _RUNS.update()
                    .where(_RUNS.c.run_id.in_(stale), _RUNS.c.status == "running")
                    .values(status="abandoned", finished_at=_now(),
                            error="abandoned: the process running it died without recording "
                            "an outcome (found by the next run)")
                )
        for run_id in stale:
            log.warning("run %d was left running by a process that died: marked abandoned",
                        run_id)
        return stale

    def retract_run(self, run_id: int, *, by: str, reason: str | None = None) -> None:
        """Mark a succeeded run ``retracted``: its rows stay (the audit trail of what was
        published), but it is no longer ``latest`` nor what later runs compare with.

        Only for a caller holding the run lock: a run in progress has already read the
        previous run it builds on. Raises :class:`NotFoundError` for an unknown run or one
        that is not ``succeeded``.
        """
        if parse_run_id(run_id) is None:
            raise NotFoundError(f"no such run: {shorten(run_id)} in {self.display_url}")
        with self._guard(f"retracting run {run_id}"), self.engine.begin() as conn:
            result = conn.execute(
                _RUNS.update()
                .where(_RUNS.c.run_id == run_id, _RUNS.c.status == "succeeded")
                .values(status="retracted", retracted_at=_now(), retracted_by=by,
                        retraction_reason=reason)
            )
            if result.rowcount == 1:
                log.warning("run %d retracted by %s", run_id, by)
                return
            status = conn.execute(
                select(_RUNS.c.status).where(_RUNS.c.run_id == run_id)).scalar()
        if status is None:
            raise NotFoundError(f"no such run: {run_id} in {self.display_url}")
        raise NotFoundError(
            f"run {run_id} is {status}: only a succeeded run can be retracted")

    def publish_run(self, run_id: int, result: RunRecord, *, key_check: str | None = None,
                    ) -> None:
        """Write a run's results and mark it ``succeeded``, all in one transaction.

        If anything fails, nothing of it remains and the run is still ``running`` (for the
        caller to :meth:`fail_run`); ``latest`` is unchanged either way until the commit.

        ``key_check``: the check value of the pseudonymisation key the results were hashed
        with. The store's first publish records it in the same transaction (so no store can
        hold hashes without the check of their key), and every later one is refused
        (:class:`~linkage.errors.ConfigError`) if it differs.
        """
        result.validate()
        started = time.perf_counter()
        with self._guard(f"publishing run {run_id}"), self.engine.begin() as conn:
            # The runs row first: it takes the write lock at once (SQLite would otherwise
            # let another writer in between our first read and first write) and refuses a
            # run that is not running, e.g. one published twice.
            self._update_running(
                conn, run_id,
                status="succeeded", finished_at=_now(),
                input_fingerprint=result.input_fingerprint,
                rows_read_json=json.dumps(result.rows_read),
                rows_quarantined_json=json.dumps(result.rows_quarantined),
                n_rows_read=result.n_rows_read, n_rows_quarantined=result.n_rows_quarantined,
                n_accounts=result.n_accounts, n_edges=result.n_edges,
                n_clusters=result.n_clusters, n_flagged=result.n_flagged,
                timings_json=json.dumps(result.timings),
            )
            clusters = result.table("clusters")
            first_seen = clusters.column("first_seen_run_id").cast(pa.int64())
            clusters = clusters.set_column(
                clusters.schema.get_field_index("first_seen_run_id"),
                "first_seen_run_id", pc.fill_null(first_seen, run_id),
            )
            self._write(conn, "clusters", run_id, clusters)
            self._write(conn, "memberships", run_id, result.table("memberships"))
            self._write(conn, "evidence", run_id, result.table("evidence"))
            self._write(conn, "evidence_signals", run_id, result.table("evidence_signals"))
            self._write(conn, "cluster_keys", run_id, result.table("cluster_keys"))
            # rows without a natural key are numbered in their given order
            self._write(conn, "quarantine", run_id, _numbered(result.table("quarantine")))
            self._write(conn, "lineage", run_id, _numbered(result.table("lineage")))
            for key, value in result.meta.items():
                self._upsert_meta(conn, key, value)
            if key_check is not None:
                stored = conn.execute(
                    select(_META.c.value).where(_META.c.key == self.KEY_CHECK)).scalar()
                if stored is None:
                    self._upsert_meta(conn, self.KEY_CHECK, key_check)
                elif stored != key_check:
                    raise ConfigError(_WRONG_KEY)
        log.info("published run %d in %.1fs", run_id, time.perf_counter() - started)

    # -- reading -------------------------------------------------------------------------

    def latest_run_id(self) -> int | None:
        """The id of the newest succeeded run, or ``None`` when there is none."""
        with self._guard("finding the latest run"), self.engine.connect() as conn:
            return self._latest(conn)

    def resolve_run(self, ref: str | int | None) -> int:
        """Turn ``None``, ``'latest'`` or a run id (int or digits) into a succeeded run's id.

        Raises :class:`NotFoundError` for an unknown id, a run that did not succeed, or a
        store without any finished run. A retracted run is never ``latest`` but can be
        named by its id.
        """
        if self.is_empty():
            # A store that was never written (or a mistyped path, which SQLite would create)
            # holds no run: that is the user's "no such run", not an internal failure.
            raise NotFoundError(f"no finished run in {self.display_url}: the store is empty")
        with self._guard("finding a run"), self.engine.connect() as conn:
            if ref is None or (isinstance(ref, str) and ref.strip().lower() == "latest"):
                latest = self._latest(conn)
                if latest is None:
                    raise NotFoundError(f"no finished run in {self.display_url}")
                return latest
            run_id = parse_run_id(ref)
            if run_id is None:
                raise NotFoundError(f"no such run: {shorten(ref)} (expected a run id or 'latest')")
            status = conn.execute(
                select(_RUNS.c.status).where(_RUNS.c.run_id == run_id)
            ).scalar()
            if status is None:
                raise NotFoundError(f"no such run: {run_id} in {self.display_url}")
            if status not in ("succeeded", "retracted"):
                raise NotFoundError(
                    f"no such run: {run_id} is {status}; only succeeded runs have results"
                )
            if status == "retracted":
                # Kept for the audit trail, and readable when named: never `latest`.
                log.warning("run %d is retracted: its results are shown as they were "
                            "published, but no later run builds on them", run_id)
            return run_id

    def runs(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (``None``: all), newest first, whatever their status.

        Each is a dict of the ``runs`` columns as stored (JSON columns stay text).
        """
        query = select(_RUNS).order_by(_RUNS.c.run_id.desc())
        if limit is not None:
            # Never more rows than ids exist, and never a number the driver cannot bind.
            query = query.limit(min(max(limit, 0), MAX_RUN_ID))
        with self._guard("listing runs"), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's ``runs`` row as a dict, whatever its status."""
        if parse_run_id(run_id) is None:
            raise NotFoundError(f"no such run: {shorten(run_id)} in {self.display_url}")
        with self._guard(f"reading run {run_id}"), self.engine.connect() as conn:
            row = conn.execute(select(_RUNS).where(_RUNS.c.run_id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no such run: {run_id} in {self.display_url}")
        return dict(row._mapping)

    def memberships(self, run_id: int) -> pa.Table:
        """``account_id, cluster_id, cluster_score, flagged`` of a run, by cluster, account."""
        m, c = _MEMBERSHIPS, _CLUSTERS
        query = (
            select(m.c.account_id, m.c.cluster_id, c.c.score.label("cluster_score"), c.c.flagged)
            .join(c, (c.c.run_id == m.c.run_id) & (c.c.cluster_id == m.c.cluster_id))
            .where(m.c.run_id == run_id)
        )
        schema = pa.schema(
            [("account_id", pa.string()), ("cluster_id", pa.string()),
             ("cluster_score", pa.float64()), ("flagged", pa.bool_())]
        )
        table = self._read(f"reading memberships of run {run_id}", run_id, query, schema)
        return table.sort_by([("cluster_id", "ascending"), ("account_id", "ascending")])

    def cluster_keys(self, run_id: int) -> tuple[pa.Table, pa.Table]:
        """The keys a run's explained clusters share (``cluster_id, signal, key_hash,
        n_members, n_global``) and those clusters' ``cluster_id, size, score, flagged``:
        what the online check indexes (:mod:`linkage.serve.index`)."""
        k, c = _T["cluster_keys"], _CLUSTERS
        keys = self._read(
            f"reading cluster keys of run {run_id}", run_id,
            select(k.c.cluster_id, k.c.signal, k.c.key_hash, k.c.n_members, k.c.n_global)
            .where(k.c.run_id == run_id),
            pa.schema([("cluster_id", pa.string()), ("signal", pa.string()),
                       ("key_hash", pa.string()), ("n_members", pa.int32()),
                       ("n_global", pa.int32())]))
        explained = select(k.c.cluster_id).where(k.c.run_id == run_id).distinct()
        clusters = self._read(
            f"reading clusters of run {run_id}", run_id,
            select(c.c.cluster_id, c.c.size, c.c.score, c.c.flagged)
            .where(c.c.run_id == run_id, c.c.cluster_id.in_(explained)),
            pa.schema([("cluster_id", pa.string()), ("size", pa.int32()),
                       ("score", pa.float64()), ("flagged", pa.bool_())]))
        return keys, clusters

    def clusters(self, run_id: int, top: int | None = None) -> pa.Table:
        """A run's clusters (the columns of ``RunRecord.clusters``), by score desc, id.

        ``top``: only the first ``top`` of that order. The database returns only the clusters
        scoring at least the ``top``-th highest score (ties at that score included), which
        are then sorted here as always: a night's summary reads five rows, not every
        cluster of the run (docs/operations.md, "The nightly job").
        """
        schema = RECORD_SCHEMAS["clusters"]
        c = _CLUSTERS
        query = (
            select(*(c.c[name] for name in schema.names))
            .where(c.c.run_id == run_id)
        )
        if top is not None:
            if top <= 0:
                return schema.empty_table()
            # A scalar subquery: the top-th highest score (NULL when there are fewer rows,
            # and then every row qualifies).
            nth = (select(c.c.score).where(c.c.run_id == run_id)
                   .order_by(c.c.score.desc()).limit(1).offset(top - 1).scalar_subquery())
            query = query.where((c.c.score >= nth) | nth.is_(None))
        table = self._read(f"reading clusters of run {run_id}", run_id, query, schema)
        table = table.sort_by([("score", "descending"), ("cluster_id", "ascending")])
        return table if top is None else table.slice(0, top)

    def previous_memberships(self) -> pa.Table | None:
        """``cluster_id, account_id, first_seen_run_id`` of the latest succeeded run.

        What the continuity stage matches tonight's clusters against; ``None`` before the
        first successful run.
        """
        latest = self.latest_run_id()
        if latest is None:
            return None
        m, c = _MEMBERSHIPS, _CLUSTERS
        query = (
            select(m.c.cluster_id, m.c.account_id, c.c.first_seen_run_id)
            .join(c, (c.c.run_id == m.c.run_id) & (c.c.cluster_id == m.c.cluster_id))
            .where(m.c.run_id == latest)
        )
        schema = pa.schema(
            [("cluster_id", pa.string()), ("account_id", pa.string()),
             ("first_seen_run_id", pa.int64())]
        )
        table = self._read("reading the previous run's memberships", latest, query, schema)
        return table.sort_by([("cluster_id", "ascending"), ("account_id", "ascending")])

    # -- store metadata ------------------------------------------------------------------

    KEY_CHECK = "key_check"
    """The ``store_meta`` key of the pseudonymisation key's check value (its hash of a fixed
    text): a store is written with one key."""

    def check_key(self, check_value: str) -> None:
        """Raise :class:`~linkage.errors.ConfigError` if the store was written with another
        pseudonymisation key than the one whose check value is ``check_value``."""
        stored = self.get_meta(self.KEY_CHECK)
        if stored is not None and stored != check_value:
            raise ConfigError(_WRONG_KEY)

    def get_meta(self, key: str) -> str | None:
        """A value of ``store_meta``, or ``None`` when unset."""
        with self._guard(f"reading store_meta {key!r}"), self.engine.connect() as conn:
            return conn.execute(select(_META.c.value).where(_META.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of ``store_meta`` (insert or replace)."""
        # INSERT ... ON CONFLICT: one statement, so two writers cannot both insert. The
        # syntax is the same on both backends, but each dialect has its own construct.
        with self._guard(f"writing store_meta {key!r}"), self.engine.begin() as conn:
            self._upsert_meta(conn, key, value)

    def _upsert_meta(self, conn: Connection, key: str, value: str) -> None:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        insert = dialect.insert(_META).values(key=key, value=value)
        conn.execute(insert.on_conflict_do_update(
            index_elements=[_META.c.key], set_={"value": insert.excluded.value}
        ))

    def delete_meta(self, prefix: str, *, keep: str) -> None:
        """Delete every ``store_meta`` key that starts with ``prefix``, except ``keep``."""
        stmt = _META.delete().where(_META.c.key.startswith(prefix, autoescape=True),
                                    _META.c.key != keep)
        with self._guard(f"deleting store_meta {prefix!r}*"), self.engine.begin() as conn:
            conn.execute(stmt)

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn database and migration errors into :class:`StoreError` naming the action."""
        try:
            yield
        except LinkageError:
            raise
        except (SQLAlchemyError, CommandError, self._driver_error) as exc:
            raise self.failure(doing, exc) from exc

    def failure(self, doing: str, exc: BaseException) -> StoreError:
        """The :class:`StoreError` for a database error met while ``doing`` something.

        An :class:`~sqlalchemy.exc.OperationalError` before any connection was ever opened is
        a :class:`StoreUnreachableError` (exit 2: a wrong port, database, role or path);
        the message is the same either way. A privilege the login lacks is a
        :class:`StoreDeniedError` (exit 2), whose message says which logins may.
        """
        detail = getattr(exc, "orig", None) or exc
        text = " ".join(str(detail).split())[:500]
        if getattr(detail, "sqlstate", None) == _DENIED:
            return StoreDeniedError(f"{doing} failed on {self.display_url}: {text}{_DENIED_HINT}")
        unreachable = not self.reached and isinstance(exc, OperationalError)
        kind = StoreUnreachableError if unreachable else StoreError
        return kind(f"{doing} failed on {self.display_url}: {text}")

    def _latest(self, conn: Connection) -> int | None:
        query = select(func.max(_RUNS.c.run_id)).where(_RUNS.c.status == "succeeded")
        return conn.execute(query).scalar()

    def _update_running(self, conn: Connection, run_id: int, **values: Any) -> None:
        """Update a run that is still running; refuse any other (published runs are final)."""
        result = conn.execute(
            _RUNS.update()
            .where(_RUNS.c.run_id == run_id, _RUNS.c.status == "running")
            .values(**values)
        )
        if result.rowcount == 1:
            return
        status = conn.execute(select(_RUNS.c.status).where(_RUNS.c.run_id == run_id)).scalar()
        if status is None:
            raise NotFoundError(f"no such run: {run_id} in {self.display_url}")
        raise StoreError(f"run {run_id} is {status}, not running: its record is final")

    def _read(self, doing: str, run_id: int, query: Any, schema: pa.Schema) -> pa.Table:
        with self._guard(doing), self.engine.connect() as conn:
            exists = conn.execute(select(_RUNS.c.run_id).where(_RUNS.c.run_id == run_id))
            if exists.first() is None:
                raise NotFoundError(f"no such run: {run_id} in {self.display_url}")
            rows = conn.execute(query).all()
        columns: Sequence[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in schema.names]
        )
        return pa.table(
            [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)],
            schema=schema,
        )

    def _write(self, conn: Connection, name: str, run_id: int, data: pa.Table) -> None:
        """Append ``data`` (plus ``run_id``) to table ``name`` inside ``conn``'s transaction."""
        if data.num_rows == 0:
            return
        table = _T[name]
        columns = ["run_id", *data.column_names]
        started = time.perf_counter()
        if self.dialect == "postgresql":
            _copy_rows(conn, table, columns, _row_chunks(run_id, data))
        else:
            # The driver's executemany on plain tuples: Core insert() builds and processes a
            # dict per row, much slower at a million rows (docs/benchmarks.md).
            quote = conn.dialect.identifier_preparer.quote
            sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                   f"VALUES ({', '.join('?' * len(columns))})")
            # Timestamps are formatted in Arrow (_sqlite_timestamps); other columns go through
            # their type's bind processor, as Core would.
            processors = [
                None if pa.types.is_timestamp(f.type)
                else table.c[f.name].type._cached_bind_processor(conn.dialect)
                for f in data.schema
            ]
            for rows in _row_chunks(run_id, _sqlite_timestamps(data), processors):
                conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        log.debug(
            "wrote %d rows to %s in %.2fs (%.0f rows/s)",
            data.num_rows, name, seconds, data.num_rows / max(seconds, 1e-9),
        )


def _numbered(data: pa.Table) -> pa.Table:
    """``data`` with a first column ``seq``: 1, 2, ... in row order."""
    return data.add_column(0, "seq", pa.array(range(1, data.num_rows + 1), pa.int64()))


def _row_chunks(
    run_id: int, data: pa.Table, processors: Sequence[Callable[[Any], Any] | None] = ()
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``(run_id, *columns)`` in chunks of :data:`CHUNK_ROWS`.

    Column by column (``to_pylist`` on a zero-copy slice), which is an order of magnitude
    faster than touching Arrow row by row, and never holds more than a chunk in Python.
    ``processors`` (one per column, ``None`` for none) convert values to what the driver
    takes, as SQLAlchemy's bind processors do.
    """
    procs = list(processors) or [None] * data.num_columns
    for offset in range(0, data.num_rows, CHUNK_ROWS):
        part = data.slice(offset, CHUNK_ROWS)
        cols = [col.to_pylist() if proc is None else [proc(v) for v in col.to_pylist()]
                for col, proc in zip(part.columns, procs, strict=True)]
        yield list(zip(repeat(run_id), *cols))


def _sqlite_timestamps(data: pa.Table) -> pa.Table:
    """Timestamp columns as the text SQLAlchemy's SQLite ``DateTime`` stores
    (``2024-05-01 08:00:00.000000``, UTC), formatted in Arrow rather than row by row."""
    for i, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type):
            utc = data.column(i).cast(pa.timestamp("us", tz="UTC"))
            data = data.set_column(i, field.name, pc.strftime(utc, format="%Y-%m-%d %H:%M:%S"))
    return data


def _copy_rows(
    conn: Connection, table: Table, columns: list[str], chunks: Iterator[list[tuple[Any, ...]]]
) -> None:
    """``COPY table (columns) FROM STDIN`` through psycopg 3, in ``conn``'s transaction.

    The raw connection is the one SQLAlchemy's transaction runs on, so the copied rows
    commit or roll back with everything else of the run.
    """
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None  # an open SQLAlchemy connection always has one
    with driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
        for rows in chunks:
            for row in rows:
                copy.write_row(row)
