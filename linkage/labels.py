"""Analyst labels: verdicts on clusters and accounts, an append-only audit log.

``linkage label cluster|account ID --as confirmed|false_positive|watch --note TEXT`` adds a
row to ``labels``; nothing ever updates or deletes one (this module only inserts, and the
database refuses UPDATE and DELETE with triggers, migration 0003). A later label on the same
target supersedes the earlier one for scoring, and both stay in the log.

A cluster label records the run it was made against and the cluster's members in that run:
what the analyst saw. From the log, :func:`label_facts` derives the plain data that scoring
uses (scoring never reads the database):

``confirmed`` (``account_id, by, created_at``)
    accounts confirmed as operators: directly (their latest account label is
    ``confirmed``) or as members of a cluster whose latest label is ``confirmed``, at the
    time of labelling (unless the account's own latest label says otherwise).
``false_positive`` (``label_id, account_id, by, created_at, note``)
    the labelled membership of every cluster whose latest label is ``false_positive``.

Examples
--------
>>> from linkage.store import Store
>>> store = Store("sqlite://")
>>> store.ensure_schema()
>>> row = add_label(store, "account", "a1", "confirmed", note="chargebacks", by="ann")
>>> row["label"], row["by"]
('confirmed', 'ann')
>>> label_facts(store).confirmed.column("account_id").to_pylist()
['a1']
>>> store.close()
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import select

from linkage.errors import ConfigError, NotFoundError, shorten
from linkage.store import Store
from linkage.store.models import LABELS, Base

__all__ = [
    "LABELS",
    "TARGETS",
    "LabelFacts",
    "add_label",
    "default_labeller",
    "label_facts",
    "list_labels",
]

TARGETS = ("cluster", "account")
_LABELS = Base.metadata.tables["labels"]
_MEMBERSHIPS = Base.metadata.tables["memberships"]
_RUNS = Base.metadata.tables["runs"]

CONFIRMED_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("by", pa.string()), ("created_at", pa.string())]
)
FALSE_POSITIVE_SCHEMA = pa.schema(
    [("label_id", pa.int64()), ("account_id", pa.string()), ("by", pa.string()),
     ("created_at", pa.string()), ("note", pa.string())]
)


@dataclass(frozen=True)
class LabelFacts:
    """What scoring needs from the labels: two Arrow tables (see the module docstring).

    ``created_at`` is an ISO date (``2026-11-20``): what a reason sentence shows.
    """

    confirmed: pa.Table
    false_positive: pa.Table

    @classmethod
    def empty(cls) -> LabelFacts:
        """No labels at all."""
        return cls(CONFIRMED_SCHEMA.empty_table(), FALSE_POSITIVE_SCHEMA.empty_table())


def default_labeller() -> str:
    """``$LINKAGE_USER``, else the login name: who a label is by when ``--by`` is not given."""
    return os.environ.get("LINKAGE_USER") or getpass.getuser()


def add_label(
    store: Store, target_kind: str, target_id: str, label: str, *, note: str, by: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Append one label; return the stored row as a dict.

    A cluster must exist in a succeeded run (the newest run holding it is recorded, with
    its members then); an account may be labelled before it was ever clustered.
    """
    if target_kind not in TARGETS:
        raise ConfigError(f"unknown label target {shorten(target_kind)}: expected one of "
                          f"{', '.join(TARGETS)}")
    if label not in LABELS:
        raise ConfigError(f"unknown label {shorten(label)}: expected one of {', '.join(LABELS)}")
    target_id, note, by = target_id.strip(), note.strip(), by.strip()
    if not target_id:
        raise ConfigError(f"an empty {target_kind} id cannot be labelled")
    if not note:
        raise ConfigError("a label needs a note (--note): why, in a sentence")
    if not by:
        raise ConfigError("a label needs an author (--by)")
    store.ensure_schema()
    run_id: int | None = None
    members_json: str | None = None
    with store._guard("reading the cluster to label"), store.engine.connect() as conn:
        if target_kind == "cluster":
            m, r = _MEMBERSHIPS, _RUNS
            run_id = conn.execute(
                select(m.c.run_id).join(r, r.c.run_id == m.c.run_id)
                .where(m.c.cluster_id == target_id, r.c.status == "succeeded")
                .order_by(m.c.run_id.desc()).limit(1)
            ).scalar()
            if run_id is None:
                raise NotFoundError(f"no such cluster: {shorten(target_id)} is in no finished "
                                    f"run of {store.display_url}")
            members = conn.execute(
                select(m.c.account_id).where(m.c.run_id == run_id, m.c.cluster_id == target_id)
            ).scalars().all()
            members_json = json.dumps(sorted(members))
    values = {
        "target_kind": target_kind, "target_id": target_id, "label": label, "note": note,
        "by": by, "created_at": now or datetime.now(UTC), "run_id": run_id,
        "members_json": members_json,
    }
    with store._guard("recording a label"), store.engine.begin() as conn:
        result = conn.execute(_LABELS.insert().values(**values))
        label_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    return {"label_id": label_id, **values}


def list_labels(
    store: Store, *, target_kind: str | None = None, target_id: str | None = None
) -> list[dict[str, Any]]:
    """Labels, oldest first, optionally of one cluster or account."""
    query = select(_LABELS).order_by(_LABELS.c.label_id)
    if target_kind is not None:
        query = query.where(_LABELS.c.target_kind == target_kind)
    if target_id is not None:
        query = query.where(_LABELS.c.target_id == target_id)
    store.ensure_schema()
    with store._guard("reading labels"), store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def label_facts(store: Store) -> LabelFacts:
    """Derive :class:`LabelFacts` from the whole log (plain Python: analysts write labels by
    hand, so the log is small next to a run)."""
    rows = list_labels(store)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # oldest first: a later label supersedes an earlier one
        latest[(row["target_kind"], row["target_id"])] = row
    direct = {tid: row for (kind, tid), row in latest.items() if kind == "account"}
    confirmed: dict[str, dict[str, Any]] = {}
    false_positive: list[tuple[Any, ...]] = []
    for (kind, _), row in latest.items():
        if kind != "cluster":
            continue
        members = json.loads(row["members_json"] or "[]")
        if row["label"] == "confirmed":
            for account in members:
                confirmed.setdefault(account, row)
        elif row["label"] == "false_positive":
            false_positive += [(row["label_id"], a, row["by"], _day(row["created_at"]),
                                row["note"]) for a in members]
    for tid, row in direct.items():
        if row["label"] == "confirmed":
            confirmed[tid] = row
        elif tid in confirmed and row["created_at"] >= confirmed[tid]["created_at"]:
            del confirmed[tid]  # the account's own later verdict overrides its cluster's
    ids = sorted(confirmed)
    return LabelFacts(
        confirmed=pa.table(
            [ids, [confirmed[a]["by"] for a in ids],
             [_day(confirmed[a]["created_at"]) for a in ids]],
            schema=CONFIRMED_SCHEMA,
        ),
        false_positive=pa.table(
            [list(col) for col in zip(*false_positive, strict=True)]
            if false_positive else [[] for _ in FALSE_POSITIVE_SCHEMA.names],
            schema=FALSE_POSITIVE_SCHEMA,
        ),
    )


def _day(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()
