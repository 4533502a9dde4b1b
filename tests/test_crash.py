"""Crash safety: SIGKILL at every stage, a lost connection and a full disk during publish.

A real ``linkage run`` process is killed with SIGKILL (no cleanup code runs) at each point of
a run. The child is the real CLI with one instrument added: at the chosen point it writes a
marker file and sleeps, so the kill lands exactly there instead of wherever a poll happens to
catch it. Stages before ``store`` keep their work inside the process (DuckDB, igraph), so the
kill right after a stage is entered is as bad as one in its middle; the publish transaction
is killed in its middle (``publish``: after the memberships rows were written).

After each kill: every table is exactly as before except the killed run's own ``runs`` row
(``running``, at the stage where it died; a kill during ingest leaves no trace at all); the
lock the dead process held is free again; the next run succeeds and marks the dead one
``abandoned`` with its stage kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from linkage.config import RunConfig
from linkage.pipeline import STAGES, run_pipeline
from linkage.store import Store
from linkage.store.lock import LOCK_KEY
from linkage.synth import generate
from tests import helpers
from tests.helpers import snapshot

pytestmark = pytest.mark.slow

SECRET = "crash-test-secret-0123456789abcdef"

CHILD = r"""
import os, sys, time
from pathlib import Path

import linkage.ingest as ingest_module
from linkage.store.store import Store

target, mark = os.environ["CRASH_AT"], Path(os.environ["CRASH_MARK"])


def pause():
    mark.write_text(target)
    time.sleep(600)  # until SIGKILL


def wrap(owner, name, after):
    original = getattr(owner, name)

    def wrapper(*args):
        result = original(*args)
        after(*args)
        return result

    setattr(owner, name, wrapper)


wrap(Store, "set_stage", lambda self, run_id, stage: stage == target and pause())
wrap(Store, "_write", lambda self, conn, name, run_id, data:
     target == "publish" and name == "memberships" and pause())
wrap(ingest_module, "_build_output", lambda con, table:
     target == "ingest" and table == "accounts" and pause())

from linkage.cli import app

sys.argv[0] = "linkage"
app(prog_name="linkage")
"""

KILL_POINTS = [*STAGES, "publish"]  # STAGES starts with ingest
# On PostgreSQL, the points where the store is touched differently: none yet (ingest), the
# first stage row, the last one, and the open publish transaction. The stages in between
# differ only in work that stays inside the process, and every kill point runs on SQLite.
PG_KILL_POINTS = ["ingest", "signals", "store", "publish"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash")
    generate(out, scenario="plain", n_accounts=1_500, seed=2)
    return out




def run_ok(data: Path, db_url: str) -> int:
    with Store(db_url) as store:
        return run_pipeline(data, store, RunConfig(), SECRET.encode()).run_id


def kill_at(data: Path, db_url: str, target: str, tmp: Path) -> None:
    """Start ``linkage run`` in a child process and SIGKILL it at ``target``."""
    mark = tmp / f"{target}.mark"
    env = {**os.environ, "LINKAGE_SECRET": SECRET, "CRASH_AT": target,
           "CRASH_MARK": str(mark)}
    env.pop("LINKAGE_DB_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "run", "--input", str(data), "--db", db_url, "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            if child.poll() is not None:
                pytest.fail(f"the run ended before {target}: {child.stderr.read().decode()}")
            assert time.monotonic() < deadline, f"never reached {target}"
            time.sleep(0.01)
        if target != "ingest" and target in STAGES:
            # The store shows the stage the run is in, committed before the stage's work.
            with Store(db_url) as store:
                running = [r for r in store.runs(None) if r["status"] == "running"]
            assert [r["stage"] for r in running] == [target]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def wait_for_pg_lock_release(db_url: str) -> None:
    """The server ends a killed client's session when it sees the closed socket (promptly,
    but not synchronously with our SIGKILL)."""
    if not db_url.startswith("postgresql"):
        return
    with Store(db_url) as store, store.engine.connect() as conn:
        for _ in range(500):
            held = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :lo"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ), {"lo": LOCK_KEY & 0xFFFFFFFF}).scalar()
            if not held:
                return
            time.sleep(0.01)
    pytest.fail("the killed run's session still holds the lock")


def test_sigkill_at_every_stage(data: Path, db_url: str, tmp_path: Path) -> None:
    first = run_ok(data, db_url)
    for target in PG_KILL_POINTS if db_url.startswith("postgresql") else KILL_POINTS:
        before = snapshot(db_url)
        with Store(db_url) as store:
            latest = store.latest_run_id()
            known = {r["run_id"] for r in store.runs(None)}
        kill_at(data, db_url, target, tmp_path)
        after = snapshot(db_url)
        with Store(db_url) as store:
            assert store.latest_run_id() == latest
            new = [r for r in store.runs(None) if r["run_id"] not in known]
        if target == "ingest":
            # Input is validated before the store is touched: a kill there leaves no trace.
            assert new == []
            assert after == before
        else:
            [killed] = new
            assert killed["status"] == "running"
            assert killed["stage"] == ("store" if target == "publish" else target)
            after["runs"] = [r for r in after["runs"] if r[0] != killed["run_id"]]
            assert after == before, f"killed at {target}: earlier results changed"
        wait_for_pg_lock_release(db_url)
        next_run = run_ok(data, db_url)
        with Store(db_url) as store:
            assert store.latest_run_id() == next_run
            if target != "ingest":
                dead = store.run(killed["run_id"])
                assert dead["status"] == "abandoned"
                assert dead["stage"] == killed["stage"]
                assert dead["error"].startswith("abandoned")
            # The next run found the same clusters as the first, so nothing was lost.
            assert store.memberships(next_run).column("account_id").to_pylist() == \
                store.memberships(first).column("account_id").to_pylist()


invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


def _fail_after_memberships(monkeypatch: pytest.MonkeyPatch, fault) -> None:
    """Make the publish transaction hit ``fault`` once it has written the memberships."""
    original = Store._write

    def write(self, conn, name, run_id, data):  # type: ignore[no-untyped-def]
        if name == "evidence":
            fault(self, conn)
        return original(self, conn, name, run_id, data)

    monkeypatch.setattr(Store, "_write", write)


def _disk_full(store: Store, conn: sa.Connection) -> None:
    # SQLite's own "database or disk is full" (SQLITE_FULL): the file may not grow by a page.
    pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    conn.exec_driver_sql(f"PRAGMA max_page_count = {int(pages or 1)}")


def _connection_lost(store: Store, conn: sa.Connection) -> None:
    # What a network cut or a server restart does to the publishing session.
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with Store(store.url) as other, other.engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_lost_connection_or_full_disk_during_publish(
    data: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_ok(data, db_url)
    before = snapshot(db_url)
    postgres = db_url.startswith("postgresql")
    _fail_after_memberships(monkeypatch, _connection_lost if postgres else _disk_full)
    res = invoke("run", "--input", data, "--db", db_url, "--quiet")
    assert res.exit_code == 1, res.output
    expected = "the connection is lost" if postgres else "database or disk is full"
    assert res.stderr.startswith("Error: publishing run ")
    assert expected in res.stderr
    monkeypatch.undo()
    after = snapshot(db_url)
    with Store(db_url) as store:
        assert store.latest_run_id() == first
        [failed] = [r for r in store.runs(None) if r["run_id"] != first]
    # Nothing half-published: the failed run has no rows anywhere, its record says why.
    assert failed["status"] == "failed" and failed["stage"] == "store"
    assert expected in failed["error"]
    after["runs"] = [r for r in after["runs"] if r[0] != failed["run_id"]]
    assert after == before
    assert run_ok(data, db_url) > failed["run_id"]
