"""Incremental runs: read only tonight's new rows, carry everything else forward.

A run with a *state directory* (``linkage run --state DIR``) leaves there, next to the store,
the normalised and pseudonymised input of that run: the six tables ingest hands the signals
stage (:data:`linkage.ingest.OUTPUT_SCHEMAS`), with ``account_id`` in place of the run-local
``idx``, as Parquet. An incremental run (``linkage run --incremental --state DIR --input
DELTA``) then

1. ingests ``DELTA`` only: new accounts in ``accounts`` (none may be known already), new rows
   of the other tables for any account, new or known (validated, normalised and hashed
   exactly as a full run would);
2. appends them to the previous state (:func:`merge`), which gives exactly the tables a full
   run over all input so far would have built (same rows, same order, same ``idx``);
3. runs the remaining stages unchanged. Community detection recomputes only the connected
   components whose accounts or evidence changed and carries every other component's
   clusters forward (:mod:`linkage.warmstart`), as a full run does, so an incremental run's
   clusters, ids, scores and lineage equal those of a full run over the cumulative input with
   the same history (``tests/test_incremental.py``).

Layout and consistency
----------------------
``DIR/run-<id>/`` holds the state of run ``<id>``: one Parquet file per table and
``manifest.json`` (format, run id, the key's check value, the ingest configuration). A run
writes its state to a temporary folder inside ``DIR``, renames it to ``run-<id>`` (atomic)
*before* it publishes, and removes older states only *after* the publish transaction
committed. An incremental run reads the state of the store's latest published run and
refuses (exit 2) when there is none, when it was written with another key or ingest
configuration, or when ``linkage forget`` erased an account since (the state would bring
the account's rows back). A crash at any point therefore leaves the latest published run's state in
place; a state of a run that never published is ignored and removed by the next success.
Like the store, the state holds identifying values only as keyed hashes; the folders are
created readable by their owner only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

import duckdb
from sqlalchemy import func, select

from linkage.config import IngestConfig
from linkage.errors import ConfigError
from linkage.ingest import OUTPUT_SCHEMAS, TABLES
from linkage.store import Store
from linkage.store.models import Erasure

__all__ = [
    "KNOWN", "STATE_FORMAT", "commit_state", "erasure_count", "load_known", "merge",
    "prune_states",
    "state_path", "write_state",
]

log = logging.getLogger("linkage.incremental")

STATE_FORMAT = 1
KNOWN = "_lk_known_accounts"
"""The DuckDB table of known accounts ``(account_id, idx < 0)`` that ingest accepts."""
_MANIFEST = "manifest.json"


def state_path(state_dir: Path, run_id: int) -> Path:
    """The folder of run ``run_id``'s state."""
    return Path(state_dir) / f"run-{int(run_id)}"


def _columns(table: str) -> list[tuple[str, str]]:
    """A state table's columns: the output schema with ``account_id`` for ``idx``."""
    cols = [(n, t) for n, t in OUTPUT_SCHEMAS[table] if n != "idx"]
    return cols if table == "accounts" else [("account_id", "VARCHAR"), *cols]


def _manifest(key_check: str, ingest_cfg: IngestConfig, run_id: int | None,
              erasures: int) -> dict:
    return {"format": STATE_FORMAT, "run_id": run_id, "key_check": key_check,
            "ingest": json.loads(json.dumps(asdict(ingest_cfg))), "erasures": erasures}


def erasure_count(store: Store) -> int:
    """How many ``linkage forget`` erasures the store has recorded."""
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Erasure.__table__)).scalar()
                   or 0)


def load_known(con: duckdb.DuckDBPyConnection, state: Path, *, key_check: str,
               ingest_cfg: IngestConfig, erasures: int) -> int:
    """Check the state folder and create :data:`KNOWN` from its accounts; return their
    number. Raises :class:`ConfigError` when the state does not fit tonight's run."""
    manifest_file = state / _MANIFEST
    if not manifest_file.is_file():
        raise ConfigError(
            f"no incremental state for the latest run in {str(state.parent)!r} (expected "
            f"{state.name}/): run a full 'linkage run --state {state.parent}' first")
    manifest = json.loads(manifest_file.read_text())
    expected = _manifest(key_check, ingest_cfg, manifest.get("run_id"), erasures)
    if manifest.get("format") != STATE_FORMAT:
        raise ConfigError(f"incremental state {str(state)!r} has format "
                          f"{manifest.get('format')!r}, this version reads {STATE_FORMAT}")
    if manifest.get("key_check") != key_check:
        raise ConfigError(f"incremental state {str(state)!r} was written with another "
                          "pseudonymisation key: its hashes would not match tonight's")
    if manifest.get("ingest") != expected["ingest"]:
        raise ConfigError(f"incremental state {str(state)!r} was normalised with another "
                          "[ingest] configuration: run a full run with --state instead")
    if manifest.get("erasures") != erasures:
        raise ConfigError(f"an account was erased (linkage forget) after incremental state "
                          f"{str(state)!r} was written, and the state still holds its rows: "
                          "run a full run with --state over input without it")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {KNOWN} AS SELECT account_id, "
        "(-row_number() OVER (ORDER BY account_id))::INTEGER AS idx "
        f"FROM read_parquet('{_sql_path(state / 'accounts.parquet')}')")
    (n,) = con.execute(f"SELECT count(*) FROM {KNOWN}").fetchone() or (0,)
    return int(n)


def merge(con: duckdb.DuckDBPyConnection, state: Path) -> int:
    """Turn the delta tables ingest left in ``con`` (``idx < 0``: a known account) into the
    cumulative tables: the state's rows plus tonight's, with ``idx`` renumbered over all
    accounts in ``account_id`` order, rows sorted as ingest sorts them. Returns the number
    of accounts."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _lk_inc_ids AS SELECT idx, account_id "
                f"FROM accounts UNION ALL SELECT idx, account_id FROM {KNOWN}")
    for table in TABLES:
        names = [n for n, _ in _columns(table)]
        delta = ", ".join(f"d.{n}" if n != "account_id" else "i.account_id" for n in names)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _lk_inc_{table} AS "
            f"SELECT {', '.join(names)} FROM read_parquet("
            f"'{_sql_path(state / f'{table}.parquet')}') "
            f"UNION ALL SELECT {delta} FROM {table} d JOIN _lk_inc_ids i USING (idx)")
    for table in TABLES:
        schema = ", ".join(f"{n} {t}" for n, t in OUTPUT_SCHEMAS[table])
        cols = [n for n, _ in OUTPUT_SCHEMAS[table] if n != "idx"]
        con.execute(f"CREATE OR REPLACE TABLE {table} ({schema})")
        if table == "accounts":
            con.execute(
                f"INSERT INTO accounts SELECT (row_number() OVER (ORDER BY account_id) - 1)"
                f"::INTEGER, {', '.join(cols)} FROM _lk_inc_accounts ORDER BY ALL")
        else:
            con.execute(
                f"INSERT INTO {table} SELECT a.idx, {', '.join('u.' + c for c in cols)} "
                f"FROM _lk_inc_{table} u JOIN accounts a USING (account_id) ORDER BY ALL")
    for table in TABLES:
        con.execute(f"DROP TABLE _lk_inc_{table}")
    con.execute(f"DROP TABLE _lk_inc_ids; DROP TABLE {KNOWN}")
    # fetchall: a result left unfinished would block the next relation on ``con`` (an
    # engine may copy the merged tables out with ``con.sql`` next)
    ((n,),) = con.execute("SELECT count(*) FROM accounts").fetchall()
    return int(n)


def write_state(con: duckdb.DuckDBPyConnection, state_dir: Path, *, key_check: str,
                ingest_cfg: IngestConfig, erasures: int) -> Path:
    """Write the cumulative tables of ``con`` to a new temporary folder in ``state_dir``
    (not yet any run's state: see :func:`commit_state`) and return it."""
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = state_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(mode=0o700)
    for table in TABLES:
        cols = []
        for n, _ in _columns(table):
            cols.append("a.account_id" if n == "account_id" and table != "accounts"
                        else f"t.{n}")
        join = "" if table == "accounts" else " JOIN accounts a USING (idx)"
        con.execute(
            f"COPY (SELECT {', '.join(cols)} FROM {table} t{join}) "
            f"TO '{_sql_path(tmp / f'{table}.parquet')}' (FORMAT parquet)")
    (tmp / _MANIFEST).write_text(json.dumps(_manifest(key_check, ingest_cfg, None, erasures)))
    return tmp


def commit_state(tmp: Path, run_id: int) -> Path:
    """Make ``tmp`` (from :func:`write_state`) the state of run ``run_id``: the manifest
    gets the run id, then one atomic rename. Call before the run is published."""
    manifest = json.loads((tmp / _MANIFEST).read_text())
    manifest["run_id"] = int(run_id)
    (tmp / _MANIFEST).write_text(json.dumps(manifest))
    target = state_path(tmp.parent, run_id)
    if target.exists():  # left by an earlier attempt under the same id; never published
        shutil.rmtree(target)
    # On disk before the rename, and the rename on disk before the publish: after a power
    # cut the folder is either absent or complete.
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    os.replace(tmp, target)
    _fsync(tmp.parent)
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_states(state_dir: Path, keep_run_id: int) -> None:
    """Remove every state and temporary folder except run ``keep_run_id``'s. Call only after
    that run was published."""
    keep = state_path(state_dir, keep_run_id).name
    for child in Path(state_dir).iterdir():
        if child.is_dir() and child.name != keep and (
                child.name.startswith("run-") or child.name.startswith(".tmp-")):
            shutil.rmtree(child, ignore_errors=True)
            log.info("removed old incremental state %s", child)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
