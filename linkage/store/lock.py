"""One run at a time: a lock on the store that a dead process cannot keep.

Two runs writing one store would race for ``latest``, match continuity against each other's
half-computed clusters and double the night's load. :func:`run_lock` makes the second one
refuse at once with :class:`~linkage.errors.RunLockedError` (exit status 3), naming the
holder where it can.

The lock is one the operating system or the database server releases when its holder dies,
so a crashed run never leaves a lock that someone has to clear by hand:

PostgreSQL
    a session-level advisory lock (``pg_try_advisory_lock``) on a connection kept open, in
    autocommit, for the whole run. The server drops it when that session ends, including when
    the process is killed or the network goes. Advisory locks belong to one database of the
    server, so every URL that reaches that database (another host name, address or role) meets
    the same lock. The holder's pid and host are in the session's ``application_name``,
    which the refusal message reads from ``pg_stat_activity``.
SQLite
    ``flock(LOCK_EX | LOCK_NB)`` on ``<database file>.lock``, where the database file is the
    resolved one (symbolic links followed, relative paths made absolute): two spellings of
    one file, a symlink alias included, are one store and take one lock. The kernel releases
    it when the holding process exits, however it exits. The file itself stays (removing it
    would let two processes lock two different files of the same name); while the lock is
    held it names the holder. An in-memory database is private to its process and needs no lock.

Examples
--------
>>> from linkage.store import Store
>>> with Store("sqlite://") as store, run_lock(store) as holder:
...     holder
'in-memory database: no lock needed'
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from linkage.errors import RunLockedError
from linkage.store.store import Store, StoreUnreachableError, sqlite_path

__all__ = ["LOCK_KEY", "lock_path", "run_lock"]

log = logging.getLogger(__name__)

LOCK_KEY = 0x6C696E6B616765
"""The advisory lock key ("linkage" in ASCII). Advisory locks are per database, so every
linkage store on a server has its own lock under the same key."""

_HINT = "wait for it to finish (a scheduler sees exit status 3: try again later)"


def lock_path(store: Store) -> Path | None:
    """The lock file of a SQLite store (``None``: PostgreSQL, or SQLite in memory): the
    database file's resolved path plus ``.lock``.

    Hard links to one file are not recognised (they have no resolved name in common).
    """
    database = sqlite_path(store.url)
    if database is None:
        return None
    return Path(os.path.realpath(database) + ".lock")


def _holder_text(purpose: str) -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"linkage {purpose} pid={os.getpid()} host={socket.gethostname()} since={started}"


@contextlib.contextmanager
def run_lock(store: Store, *, purpose: str = "run") -> Iterator[str]:
    """Hold the store's run lock for the duration of the ``with`` block.

    Parameters
    ----------
    store
        The store to lock (its schema need not exist yet).
    purpose
        What the holder does (``run``, ``forget``): shown to whoever is refused.

    Yields
    ------
    str
        A description of the lock held (for logs).

    Raises
    ------
    RunLockedError
        Another process holds the lock; nothing was done.
    StoreError
        The lock could not be taken for another reason (:class:`StoreUnreachableError`, exit
        2, for an unreachable server or a folder that does not exist).
    """
    if store.dialect == "postgresql":
        with _pg_lock(store, purpose) as held:
            yield held
        return
    path = lock_path(store)
    if path is None:
        yield "in-memory database: no lock needed"
        return
    # Before any file is created beside it: a path naming something that is not a SQLite
    # database (a typo, /etc/passwd) gets no lock file and no store.
    store.check_sqlite_file(must_exist=False)
    with _file_lock(store, path, purpose) as held:
        yield held


@contextlib.contextmanager
def _file_lock(store: Store, path: Path, purpose: str) -> Iterator[str]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        # A folder that does not exist or may not be written: the --db path needs fixing.
        raise StoreUnreachableError(
            f"cannot create the lock file {str(path)!r} of {store.display_url}: {exc.strerror}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            raise RunLockedError(
                f"another linkage process holds {store.display_url} "
                f"({holder or 'holder unknown'}; lock file {str(path)!r}): {_HINT}"
            ) from None
        previous = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        if previous:
            # Written by a holder that died without clearing it: the kernel has already
            # released its lock, which is what makes taking it over safe.
            log.warning("recovered the lock of %s left by a process that died (%s)",
                        store.display_url, previous)
        holder = _holder_text(purpose)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder + "\n").encode(), 0)
        try:
            yield f"file lock {path}"
        finally:
            os.ftruncate(fd, 0)  # a clean release leaves no holder behind
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pg_lock(store: Store, purpose: str) -> Iterator[str]:
    try:
        # AUTOCOMMIT: the session holds the lock for hours; an open transaction that long
        # would hold back VACUUM on the whole server.
        conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as exc:
        raise store.failure("connecting to take the run lock", exc) from None
    try:
        conn.execute(text("SELECT set_config('application_name', :name, false)"),
                     {"name": _holder_text(purpose)[:63]})
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar()
        if not got:
            raise RunLockedError(
                f"another linkage process holds {store.display_url} "
                f"({_pg_holder(conn)}): {_HINT}"
            )
        try:
            yield f"advisory lock {LOCK_KEY} on {store.display_url}"
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                conn.execute(text("SELECT set_config('application_name', 'linkage', false)"))
            except SQLAlchemyError:
                # The session is gone (and its lock with it); never return it to the pool.
                conn.invalidate()
    finally:
        conn.close()


def _pg_holder(conn: Connection) -> str:
    """Who holds the advisory lock, from the server's own lock table."""
    row = conn.execute(text("""
        SELECT a.pid, a.application_name, a.client_addr, a.backend_start
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1
    """), {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF}).first()
    if row is None:
        return "holder unknown"
    where = f" from {row.client_addr}" if row.client_addr else ""
    return f"{row.application_name or 'unnamed session'}, server pid {row.pid}{where}"
