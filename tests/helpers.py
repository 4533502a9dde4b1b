"""Builders for the ingest stage's output tables, so later stages can be tested alone, and
the in-process CLI runner the command-line tests share."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from linkage.cli import app
from linkage.config import EngineConfig
from linkage.engines import connect_duckdb

BASE = datetime(2026, 1, 1)

# Every column of every contract table (docs/input.md), written out here rather than
# imported from linkage so that the tests hold the code to the contract, not to itself.
CONTRACT_COLUMNS = {
    "accounts": ["account_id", "created_at", "email", "display_name", "phone", "country",
                 "signup_ip", "user_agent", "org_id"],
    "payment_instruments": ["account_id", "fingerprint", "bin", "last4", "billing_postal",
                            "billing_country", "added_at"],
    "ip_events": ["account_id", "ip", "seen_at", "asn"],
    "devices": ["account_id", "device_id", "seen_at"],
    "interactions": ["account_id", "ts", "model", "prompt_fingerprint", "category",
                     "input_tokens", "output_tokens"],
    "observations": ["account_id", "kind", "value", "seen_at"],
}

ACCOUNT_COLUMNS = (
    "email_key", "phone_key", "display_name_key", "country", "signup_ip_key", "signup_net_key",
    "signup_net48_key", "user_agent_key", "org_key",
)


def examples(n: int) -> int:
    """``max_examples`` for a property-based test: ``n``, or ``LINKAGE_TEST_MAX_EXAMPLES`` when
    that is set and smaller (``make test-fast``)."""
    cap = os.environ.get("LINKAGE_TEST_MAX_EXAMPLES")
    return min(n, int(cap)) if cap else n


def ingested(
    n: int,
    *,
    cards: list[tuple[int, str]] = (),
    devices: list[tuple[int, str]] = (),
    ips: list[tuple[int, str, str]] = (),
    created: dict[int, datetime] | None = None,
    orgs: dict[int, str] | None = None,
    user_agents: dict[int, str] | None = None,
    observations: list[tuple[int, str, str, datetime | None]] = (),
    interactions: list[tuple[int, datetime, str | None]] = (),
) -> duckdb.DuckDBPyConnection:
    """A connection holding ingest-shaped tables for ``n`` accounts ``a000000``..."""
    con = connect_duckdb(EngineConfig())
    created = created or {}
    orgs = orgs or {}
    user_agents = user_agents or {}
    con.execute(
        "CREATE TABLE accounts (idx INTEGER, account_id VARCHAR, created_at TIMESTAMP, "
        + ", ".join(f"{c} VARCHAR" for c in ACCOUNT_COLUMNS) + ")"
    )
    rows = [
        (i, f"a{i:06d}", created.get(i, BASE + timedelta(days=i % 97, minutes=7 * i)),
         "US", user_agents.get(i), orgs.get(i))
        for i in range(n)
    ]
    insert_rows(con, "accounts", ["idx", "account_id", "created_at", "country",
                                  "user_agent_key", "org_key"], rows)
    con.execute("CREATE TABLE payment_instruments (idx INTEGER, card_key VARCHAR, "
                "bin_key VARCHAR, bin_postal_key VARCHAR, billing_country VARCHAR, "
                "added_at TIMESTAMP)")
    insert_rows(con, "payment_instruments", ["idx", "card_key"], cards)
    con.execute("CREATE TABLE ip_events (idx INTEGER, ip_key VARCHAR, net_key VARCHAR, "
                "net48_key VARCHAR, asn VARCHAR, seen_at TIMESTAMP)")
    insert_rows(con, "ip_events", ["idx", "ip_key", "net_key"], ips)
    con.execute("CREATE TABLE devices (idx INTEGER, device_key VARCHAR, seen_at TIMESTAMP)")
    insert_rows(con, "devices", ["idx", "device_key"], devices)
    con.execute("CREATE TABLE observations (idx INTEGER, kind VARCHAR, value_key VARCHAR, "
                "seen_at TIMESTAMP)")
    insert_rows(con, "observations", ["idx", "kind", "value_key", "seen_at"], observations)
    con.execute("CREATE TABLE interactions (idx INTEGER, ts TIMESTAMP, model VARCHAR, "
                "prompt_key VARCHAR, category VARCHAR, input_tokens BIGINT, "
                "output_tokens BIGINT)")
    # (idx, ts, template): prompt_key is hex, as ingest's HMAC leaves it
    insert_rows(con, "interactions", ["idx", "ts", "template"], interactions,
                model="'m'", prompt_key="md5(template)", category="'coding'",
                input_tokens="10", output_tokens="100")
    return con


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
                rows: Iterable[Sequence[object]], **values: str) -> None:
    """Append ``rows`` to the DuckDB ``table`` in one statement, as ``executemany`` with one
    ``INSERT`` a row would, but at the speed of a scan.

    Each row has one field per name of ``columns``. The rows become an Arrow table, and every
    field named after a column of ``table`` goes to that column, cast to the type the table
    declares for it. ``values`` gives further columns as SQL over the fields (a field that
    names no column is only there for them), e.g. ``prompt_key="md5(template)"``; every other
    column is NULL."""
    rows = list(rows)
    if not rows:
        return
    types = {name: type_ for name, type_, *_ in con.execute(f'DESCRIBE "{table}"').fetchall()}
    fields = pa.table({name: pa.array([row[i] for row in rows])
                       for i, name in enumerate(columns)})
    targets = {name: f'"{name}"' for name in columns if name in types} | values
    view = f"insert_rows_{uuid.uuid4().hex}"
    con.register(view, fields)
    try:
        con.execute(
            f'INSERT INTO "{table}" (' + ", ".join(f'"{t}"' for t in targets) + ") SELECT "
            + ", ".join(f"CAST({sql} AS {types[t]})" for t, sql in targets.items())
            + f' FROM "{view}"')
    finally:
        con.unregister(view)


def snapshot(db_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the store, in a stable order: compare two to prove that
    nothing was written."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        names = sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            return {n: sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{n}"')).all()),
                              key=repr) for n in names}
    finally:
        engine.dispose()


def invoke(*args: object, **env: str | None) -> Result:
    """Run ``linkage *args`` in this process (each argument passed through ``str``) with the
    variables ``env`` set over the environment (``None`` unsets one). ``LINKAGE_DB_URL`` is
    unset unless given, so a developer's own setting cannot point a test at another database.

    A test module that always passes the same key binds it once:
    ``invoke = functools.partial(helpers.invoke, LINKAGE_SECRET=SECRET)``."""
    runner = CliRunner(env={"LINKAGE_DB_URL": None, **env})
    return runner.invoke(app, [str(a) for a in args])


def run_id_of(res: Result) -> int:
    """The run id a ``linkage run`` that must have succeeded printed on its last line."""
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+", last), res.stdout
    return int(last)


@contextmanager
def pg_database(server_url: str, prefix: str = "linkage_test",
                template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database on the server at ``server_url`` (where we may create
    databases), as a psycopg URL: empty, or a copy of the database named ``template``;
    dropped on exit, even if a leaked connection still uses it."""
    # CREATE/DROP DATABASE cannot run inside a transaction, hence AUTOCOMMIT.
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex}"
    try:
        with admin.connect() as conn:
            if template is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                # a database is copied only while nobody is connected to it: end any session
                # a finished command left open
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (template,))
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE: a connection the test leaked must not keep the database alive.
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def split_nights(full: Path, old: Path, delta: Path, *, every: int) -> None:
    """Split a generated input into what an earlier night saw (``old``) and what arrived
    since (``delta``): every ``every``-th account is new (with all its rows), and every
    ``every // 2``-th row of the other tables is new activity of any account. A table given
    as a folder of Parquet parts is split into one part per side."""
    old.mkdir()
    delta.mkdir()
    accounts = pq.read_table(full / "accounts.parquet")
    ids = sorted(accounts.column("account_id").to_pylist())
    new_ids = pa.array(ids[::every])
    for f in sorted(full.glob("*.parquet")) + sorted(p for p in full.iterdir() if p.is_dir()):
        t = pq.read_table(f)
        is_new = pc.is_in(t.column("account_id"), new_ids)
        if f.name != "accounts.parquet":
            step = max(every // 2, 1)
            recent = pa.array([i % step == step - 1 for i in range(t.num_rows)])
            is_new = pc.or_(is_new, recent)
        for side, rows in ((old, t.filter(pc.invert(is_new))), (delta, t.filter(is_new))):
            if f.is_dir():
                (side / f.name).mkdir()
                pq.write_table(rows, side / f.name / "part-0.parquet")
            else:
                pq.write_table(rows, side / f.name)



def tables_at_each_stage(monkeypatch) -> dict[str, set[str]]:
    """What runs of ``run_pipeline`` in this process (the CLI's too) leave on their driver
    DuckDB: per stage after ingest, the tables it holds when that stage starts (after the
    earlier stages' drops). Filled as the runs go; a later run's stages replace an earlier
    one's."""
    import linkage.pipeline as pipeline
    from linkage.store import Store

    cons: list[duckdb.DuckDBPyConnection] = []
    held: dict[str, set[str]] = {}

    def connect(*args, **kwargs):
        cons.append(connect_duckdb(*args, **kwargs))
        return cons[-1]

    set_stage = Store.set_stage

    def record(self, run_id: int, stage: str) -> None:
        held[stage] = {r[0] for r in cons[-1].execute(
            "SELECT table_name FROM duckdb_tables()").fetchall()}
        set_stage(self, run_id, stage)

    monkeypatch.setattr(pipeline, "connect_duckdb", connect)
    monkeypatch.setattr(Store, "set_stage", record)
    return held
