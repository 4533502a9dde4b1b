"""One run at a time: a second run against the same store refuses at once with exit status 3;
a lock left by a dead process is recovered; runs it left ``running`` become ``abandoned``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from linkage.errors import RunLockedError
from linkage.store import RunRecord, Store
from linkage.store.lock import lock_path, run_lock
from tests import helpers

SECRET = "lock-test-secret-0123456789abcdef"
ACCOUNTS = "account_id,created_at,email\na1,2026-01-01T10:00:00Z,ann@example.com\n"


invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "accounts.csv").write_text(ACCOUNTS)
    return tmp_path / "in"


def test_second_run_refuses_at_once_with_exit_3(db_url: str, folder: Path) -> None:
    with Store(db_url) as holder, run_lock(holder):
        started = time.perf_counter()
        res = invoke("run", "--input", folder, "--db", db_url, "--quiet")
        assert time.perf_counter() - started < 5  # refused, not queued
        assert res.exit_code == 3, res.output
        assert res.stderr.startswith("Error: another linkage process holds ")
        # The holder is named: pid and host (SQLite's lock file, PostgreSQL's session).
        assert f"pid={os.getpid()}" in res.stderr
        assert "exit status 3" in res.stderr
        # ... and it did nothing: not even the schema.
        with Store(db_url) as store:
            assert store.is_empty()
        with Store(db_url) as other, pytest.raises(RunLockedError), run_lock(other):
            pass
    # Released at the end of the block: the run now goes through.
    res = invoke("run", "--input", folder, "--db", db_url, "--quiet")
    assert res.exit_code == 0, res.output


def test_erasure_takes_the_lock_too(db_url: str) -> None:
    with Store(db_url) as store:
        store.upgrade()  # an erasure refuses a URL that names no store, before any lock
    with Store(db_url) as holder, run_lock(holder, purpose="run"):
        res = invoke("forget", "a1", "--db", db_url)
        assert res.exit_code == 3, res.output
        assert "linkage run pid=" in res.stderr


HOLD = r"""
import sys, time
from linkage.store import Store
from linkage.store.lock import run_lock
with Store(sys.argv[1]) as store, run_lock(store):
    print("held", flush=True)
    time.sleep(600)
"""


def test_lock_of_a_killed_process_is_recovered(db_url: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", HOLD, db_url], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held"
        refused = pytest.raises(RunLockedError, match=f"pid={child.pid}")
        with Store(db_url) as store, refused, run_lock(store):
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    # The kernel (SQLite's flock) or the server (the session ends) released it: no manual
    # cleanup, even though a SQLite lock file still names the dead holder.
    with Store(db_url) as store:
        for _ in range(500):
            try:
                with run_lock(store) as held:
                    assert held
                    break
            except RunLockedError:  # PostgreSQL ends the dead session promptly, not at once
                time.sleep(0.01)
        else:
            pytest.fail("the dead process's lock was never released")
        path = lock_path(store)
        if path is not None:
            assert path.read_text() == ""  # a clean release leaves no holder named


def test_running_runs_become_abandoned_with_their_stage(store: Store) -> None:
    dead = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="dev",
                           input_path="in/")
    store.set_stage(dead, "communities")
    with run_lock(store):
        assert store.abandon_running() == [dead]
        assert store.abandon_running() == []
    row = store.run(dead)
    assert (row["status"], row["stage"]) == ("abandoned", "communities")
    assert row["finished_at"] is not None
    # Final like failed: an abandoned run cannot be published later.
    with pytest.raises(Exception, match="is abandoned, not running"):
        store.publish_run(dead, RunRecord.empty(input_fingerprint="sha256:0"))


def test_in_memory_store_needs_no_lock() -> None:
    with Store("sqlite://") as store:
        assert lock_path(store) is None
        with run_lock(store) as first, run_lock(store) as second:
            assert first == second == "in-memory database: no lock needed"


def test_lock_file_in_a_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    from linkage.errors import StoreError

    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}"
    refused = pytest.raises(StoreError, match="cannot create the lock file")
    with Store(missing) as store, refused, run_lock(store):
        pass
