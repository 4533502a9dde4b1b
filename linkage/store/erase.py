"""Erasure on request: remove one account's rows from every run, and log that it was done.

``linkage forget ACCOUNT_ID`` (a data-subject request, a closed investigation) removes every
row that names the account:

``memberships``
    the account's cluster in each run;
``evidence``, ``evidence_signals``
    every edge with the account at either end, and that edge's per-signal contributions;
``quarantine``
    an input row set aside whose recorded value is the account id (an orphan row naming
    it, a duplicate id): the row stays (which file, row and rule), its ``value`` becomes
    ``erased:<account key>``.

Free text is scrubbed where linkage wrote it or analysts wrote it through linkage: every
occurrence of the id as a whole token (not inside a longer id) in a label's ``note`` and in
a run's ``error`` becomes ``erased:<account key>``. The erasure's own ``--reason`` is stored
as given: do not put the id in it.

What stays, and why:

* ``runs`` counts (``n_accounts``, ``n_edges``, ...) and ``clusters.size`` are what the run
  saw that night. Rewriting them would falsify the audit trail of a decision already taken;
  the ``erasures`` row says how many rows were removed from which runs, which explains the
  difference between a run's totals and the rows it still holds.
* ``cluster_keys`` hold keyed hashes of *shared values* (a card, a device), counted per
  cluster; they name no account.
* ``clusters.cluster_id`` is a digest of the founding members' ids: it identifies a group,
  cannot be inverted, and is the key analysts' notes refer to.
* ``labels`` is an append-only audit log, and erasure is the one exception to that rule: the
  label rows stay (who decided what, when, why), but an account label's ``target_id`` becomes
  ``erased:<account key>`` and the account leaves every cluster label's ``members_json``.
  The append-only triggers are lifted for exactly those updates, inside the erasure's
  transaction, and the ``erasures`` row counts them (``labels``).

The log row names the account only by a keyed hash (HMAC with the store's pseudonymisation
key, its own namespace), so the erasure log does not undo the erasure, yet a second request
for the same account is recognised. The erasure holds the run lock: it cannot interleave
with a run publishing, and a run that starts afterwards simply no longer sees the rows.
An account still present in tomorrow's *input* is of course clustered again; erasure at the
source is the upstream job's part.

Examples
--------
>>> from linkage.store import Store, RunRecord
>>> from linkage.pseudonymise import Pseudonymiser
>>> import pyarrow as pa
>>> store = Store("sqlite://"); store.ensure_schema()
>>> pseudo = Pseudonymiser(b"0123456789abcdef")
>>> store.set_meta("key_check", pseudo.check_value())
>>> run_id = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="dev",
...                          input_path="in/")
>>> record = RunRecord.empty(input_fingerprint="sha256:0")
>>> store.publish_run(run_id, record)
>>> forget_account(store, "nobody", pseudo, by="ann")
Traceback (most recent call last):
...
linkage.errors.NotFoundError: no such account: 'nobody' appears in no run of sqlite://
>>> store.close()
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Table, func, or_, select

from linkage.errors import NotFoundError, shorten
from linkage.pseudonymise import Pseudonymiser
from linkage.store.lock import run_lock
from linkage.store.models import Base
from linkage.store.store import Store

__all__ = ["ERASED_TABLES", "ErasureResult", "account_key", "forget_account"]

log = logging.getLogger(__name__)

_T = Base.metadata.tables

ERASED_TABLES: dict[str, tuple[str, ...]] = {
    "memberships": ("account_id",),
    "evidence": ("account_a", "account_b"),
    "evidence_signals": ("account_a", "account_b"),
}
"""Every table whose rows name an account, and the columns that do: those rows are deleted.
``quarantine`` (its ``value``), label notes and run errors are rewritten instead (see the
module notes)."""

_NAMESPACE = "erasure-account"


def account_key(pseudo: Pseudonymiser, account_id: str) -> str:
    """The keyed hash that names an erased account in ``erasures``."""
    return pseudo.hash(_NAMESPACE, account_id) or ""


@dataclass
class ErasureResult:
    """What one erasure removed."""

    erasure_id: int
    account_key: str
    runs: list[int] = field(default_factory=list)
    rows_removed: dict[str, int] = field(default_factory=dict)

    @property
    def n_rows_removed(self) -> int:
        """Rows removed over all tables."""
        return sum(self.rows_removed.values())


def forget_account(
    store: Store, account_id: str, pseudo: Pseudonymiser, *, by: str, reason: str | None = None
) -> ErasureResult:
    """Delete every row naming ``account_id`` in every run and log the erasure.

    One transaction: either every row goes and the ``erasures`` row is written, or nothing
    changes. Holds the run lock meanwhile.

    Raises
    ------
    NotFoundError
        No run holds a row of the account (also when it was erased before: the message
        says when).
    ConfigError
        ``pseudo``'s key is not the store's (the log would name the account by a hash no
        other erasure shares).
    RunLockedError
        A run (or another erasure) holds the store.
    """
    # Before the lock: no lock file, no database is created for a URL naming no store.
    store.require()
    with run_lock(store, purpose="forget"):
        store.ensure_schema()
        store.check_key(pseudo.check_value())
        key = account_key(pseudo, account_id)
        with store._guard(f"erasing account {shorten(account_id)}"), store.engine.begin() as conn:
            runs = _runs_of(conn, account_id)
            if not runs:
                raise NotFoundError(_unknown(conn, store, account_id, key))
            removed: dict[str, int] = {}
            for name, columns in ERASED_TABLES.items():
                table = _T[name]
                result = conn.execute(
                    table.delete().where(or_(*(table.c[c] == account_id for c in columns)))
                )
                removed[name] = int(result.rowcount)
            removed["quarantine"] = _scrub_quarantine(conn, account_id, key)
            removed["labels"] = _scrub_labels(conn, account_id, key)
            removed["runs"] = _scrub_text(conn, _T["runs"], "run_id", "error", account_id, key)
            erasures = _T["erasures"]
            inserted = conn.execute(erasures.insert().values(
                erased_at=datetime.now(UTC), erased_by=by, reason=reason, account_key=key,
                runs_json=json.dumps(runs), rows_removed_json=json.dumps(removed),
                n_rows_removed=sum(removed.values()),
            ))
            erasure_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
    log.info("erasure %d: removed %d rows from %d runs", erasure_id, sum(removed.values()),
             len(runs))
    return ErasureResult(erasure_id=erasure_id, account_key=key, runs=runs,
                         rows_removed=removed)


def _quarantined(account_id: str) -> ColumnElement[bool]:
    """The ``quarantine`` rows whose value is the account id, as ingest recorded it."""
    return _T["quarantine"].c.value == shorten(account_id)


def _scrub_quarantine(conn: Connection, account_id: str, key: str) -> int:
    """Replace the account id in ``quarantine.value`` by ``erased:<key>``; rows changed."""
    quarantine = _T["quarantine"]
    result = conn.execute(quarantine.update().where(_quarantined(account_id))
                          .values(value=f"erased:{key}"))
    return int(result.rowcount)


def _mentions(account_id: str) -> re.Pattern[str]:
    """The id as a whole token: not inside a longer id such as ``a12`` for ``a1``."""
    return re.compile(r"(?<![\w-])" + re.escape(account_id) + r"(?![\w-])")


def _scrub_text(conn: Connection, table: Table, key_column: str, column: str,
                account_id: str, key: str) -> int:
    """Replace the id in a free-text column by ``erased:<key>``; rows changed. A LIKE finds
    the candidate rows (few), the token pattern decides."""
    pattern = _mentions(account_id)
    candidates = conn.execute(select(table.c[key_column], table.c[column]).where(
        table.c[column].contains(account_id, autoescape=True))).all()
    changed = 0
    for row_key, text in candidates:
        scrubbed = pattern.sub(f"erased:{key}", text)
        if scrubbed != text:
            conn.execute(table.update().where(table.c[key_column] == row_key)
                         .values({column: scrubbed}))
            changed += 1
    return changed


def _scrub_labels(conn: Connection, account_id: str, key: str) -> int:
    """Remove the account's id from the labels log (see the module notes); rows changed."""
    labels = _T["labels"]
    targets = conn.execute(select(labels.c.label_id).where(
        labels.c.target_kind == "account", labels.c.target_id == account_id)).scalars().all()
    # A LIKE finds candidate rows; the JSON decides (an id can be a substring of another).
    candidates = conn.execute(select(labels.c.label_id, labels.c.members_json).where(
        labels.c.members_json.like(f"%{json.dumps(account_id)}%"))).all()
    members = {
        label_id: [m for m in json.loads(text) if m != account_id]
        for label_id, text in candidates
        if account_id in json.loads(text)
    }
    pattern = _mentions(account_id)
    notes = {
        label_id: pattern.sub(f"erased:{key}", text)
        for label_id, text in conn.execute(select(labels.c.label_id, labels.c.note).where(
            labels.c.note.contains(account_id, autoescape=True))).all()
        if pattern.search(text)
    }
    if not targets and not members and not notes:
        return 0
    with _append_only_lifted(conn):
        for label_id in targets:
            conn.execute(labels.update().where(labels.c.label_id == label_id)
                         .values(target_id=f"erased:{key}"))
        for label_id, kept in members.items():
            conn.execute(labels.update().where(labels.c.label_id == label_id)
                         .values(members_json=json.dumps(kept)))
        for label_id, note in notes.items():
            conn.execute(labels.update().where(labels.c.label_id == label_id)
                         .values(note=note))
    return len(set(targets) | set(members) | set(notes))


@contextlib.contextmanager
def _append_only_lifted(conn: Connection) -> Iterator[None]:
    """Lift the labels table's append-only triggers for the current transaction only.

    PostgreSQL: ``ALTER TABLE ... DISABLE TRIGGER`` is transactional, so a failure anywhere
    rolls the triggers back on too. SQLite: the triggers are dropped and recreated from their
    own stored SQL, also inside the transaction.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE labels DISABLE TRIGGER labels_append_only")
        yield
        conn.exec_driver_sql("ALTER TABLE labels ENABLE TRIGGER labels_append_only")
        return
    saved = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'labels'"
    ).all()
    for name, _ in saved:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    for _, sql in saved:
        conn.exec_driver_sql(sql)


def _runs_of(conn: Connection, account_id: str) -> list[int]:
    """Ids of the runs holding any row that names the account, ascending."""
    found: set[int] = set()
    for name, columns in ERASED_TABLES.items():
        table = _T[name]
        query = select(table.c.run_id).distinct().where(
            or_(*(table.c[c] == account_id for c in columns)))
        found.update(int(r) for r in conn.execute(query).scalars())
    quarantine = _T["quarantine"]
    found.update(int(r) for r in conn.execute(
        select(quarantine.c.run_id).distinct().where(_quarantined(account_id))).scalars())
    return sorted(found)


def _unknown(conn: Connection, store: Store, account_id: str, key: str) -> str:
    erasures = _T["erasures"]
    when = conn.execute(
        select(func.max(erasures.c.erased_at)).where(erasures.c.account_key == key)
    ).scalar()
    text = f"no such account: {shorten(account_id)} appears in no run of {store.display_url}"
    if when is not None:
        text += f" (it was erased on {when:%Y-%m-%d %H:%M} UTC)"
    return text
