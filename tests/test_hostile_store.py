"""The store and the command line against a hostile or careless operator: aliases of one
store, a kill between publish and key check, spill files, erasure of quarantined ids, run
ids beyond any column, a shrunken night, mistyped URLs, escape sequences in stored text,
an unreachable server. On SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from linkage.config import EngineConfig
from linkage.store import RunRecord, Store
from linkage.store.lock import LOCK_KEY, run_lock
from tests import helpers

SECRET = "hostile-store-secret-0123456789abcdef"
OTHER_SECRET = "another-store-secret-0123456789abcdef"

invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)

# Documented names (docs/security.md, "Spill files"), written out to hold the code to them.
SPILL_PREFIX, SPILL_MARKER = "linkage-spill-", "linkage-spill.lock"


def accounts_csv(n: int, *, prefix: str = "a") -> str:
    """``n`` accounts in pairs sharing an email: ``n // 2`` clusters of two."""
    rows = [f"{prefix}{i:03d},2026-01-01T10:00:00Z,user{i // 2}@example.com" for i in range(n)]
    return "account_id,created_at,email\n" + "\n".join(rows) + "\n"


def folder_of(path: Path, accounts: str, **tables: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "accounts.csv").write_text(accounts)
    for name, text in tables.items():
        (path / f"{name}.csv").write_text(text)
    return path


@pytest.fixture
def night(tmp_path: Path) -> Path:
    return folder_of(tmp_path / "night", accounts_csv(20))


def run(folder: Path, db_url: str, *args: object, **env: str | None) -> helpers.Result:
    return invoke("run", "--input", folder, "--db", db_url, "--quiet", *args, **env)


def wait_for_pg_lock_release(db_url: str) -> None:
    """A killed client's session ends when the server sees the closed socket."""
    if not db_url.startswith("postgresql"):
        return
    with Store(db_url) as store, store.engine.connect() as conn:
        for _ in range(500):
            held = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :lo "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ), {"lo": LOCK_KEY & 0xFFFFFFFF}).scalar()
            if not held:
                return
            time.sleep(0.01)
    pytest.fail("the killed run's session still holds the lock")


# -- one lock per store, however it is spelled -------------------------------------------------


def _alias(db_url: str, tmp_path: Path) -> str:
    """Another URL of the same store: a symbolic link to the SQLite file, or another host
    name (and role spelling) for the same PostgreSQL database."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        link = tmp_path / "alias" / "store.db"
        link.parent.mkdir()
        link.symlink_to(Path(url.database or ""))
        return f"sqlite:///{link}"
    host = "localhost" if url.host != "localhost" else "127.0.0.1"
    return url.set(host=host).render_as_string(hide_password=False)


def test_a_second_run_through_an_alias_of_the_store_refuses_with_exit_3(
        db_url: str, night: Path, tmp_path: Path) -> None:
    alias = _alias(db_url, tmp_path)
    with Store(db_url) as holder, run_lock(holder):
        res = run(night, alias)
        assert res.exit_code == 3, res.output
        assert "another linkage process holds" in res.stderr
    with Store(db_url) as store:
        assert store.is_empty()  # the refused run did nothing
    # ... and the other way round, through the alias, while the first spelling runs.
    with Store(alias) as holder, run_lock(holder):
        assert run(night, db_url).exit_code == 3


def test_a_relative_spelling_of_the_sqlite_file_takes_the_same_lock(
        tmp_path: Path, night: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with Store(f"sqlite:///{tmp_path / 'linkage.db'}") as holder, run_lock(holder):
        assert run(night, "sqlite:///../sub/../linkage.db").exit_code == 3


# -- the key check commits with the first publish ----------------------------------------------

KILL_AFTER_PUBLISH = r"""
import os, sys, time
from pathlib import Path
from linkage.store.store import Store

mark = Path(os.environ["PUBLISH_MARK"])
publish = Store.publish_run


def publish_then_wait(self, *args, **kwargs):
    publish(self, *args, **kwargs)
    mark.write_text("published")
    time.sleep(600)  # until SIGKILL


Store.publish_run = publish_then_wait
from linkage.cli import app

app(prog_name="linkage")
"""


@pytest.mark.slow
def test_a_kill_right_after_the_first_publish_leaves_the_key_check_in_place(
        db_url: str, night: Path, tmp_path: Path) -> None:
    mark = tmp_path / "published.mark"
    env = {**os.environ, "LINKAGE_SECRET": SECRET, "PUBLISH_MARK": str(mark)}
    env.pop("LINKAGE_DB_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_AFTER_PUBLISH, "run", "--input", str(night), "--db", db_url,
         "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert child.poll() is None, child.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the run never published"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stderr.close()  # type: ignore[union-attr]
    wait_for_pg_lock_release(db_url)
    with Store(db_url) as store:
        assert [r["status"] for r in store.runs()] == ["succeeded"]
        assert store.get_meta(Store.KEY_CHECK) is not None
    res = run(night, db_url, LINKAGE_SECRET=OTHER_SECRET)
    assert res.exit_code == 2, res.output
    assert "pseudonymisation key differs" in res.stderr
    with Store(db_url) as store:
        assert [r["status"] for r in store.runs()] == ["succeeded"]


def test_a_publish_under_another_key_rolls_back(store: Store) -> None:
    """The check inside the publish transaction: the second key is refused even when the
    caller skipped :meth:`Store.check_key`, and nothing of that run is published."""
    first = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="t",
                            input_path="in/")
    store.publish_run(first, RunRecord.empty(input_fingerprint="sha256:0"), key_check="k1")
    assert store.get_meta(Store.KEY_CHECK) == "k1"
    second = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="t",
                             input_path="in/")
    from linkage.errors import ConfigError

    with pytest.raises(ConfigError, match="key differs"):
        store.publish_run(second, RunRecord.empty(input_fingerprint="sha256:1"), key_check="k2")
    assert store.run(second)["status"] == "running"
    assert store.latest_run_id() == first


# -- spill files ---------------------------------------------------------------------------------


def test_duckdb_spills_into_a_private_folder_with_private_files(tmp_path: Path) -> None:
    from linkage.engines import connect_duckdb
    from linkage.engines.spill import spill_folder

    seen: dict[str, int] = {}
    with spill_folder(tmp_path) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(SPILL_PREFIX)
        assert folder.stat().st_mode & 0o777 == 0o700
        con = connect_duckdb(EngineConfig(memory_limit="40MB", threads=1), folder)
        try:
            con.execute("CREATE TABLE t AS SELECT range AS i, 'user' || range || "
                        "'@example.com' AS email FROM range(1500000)")
            con.execute("SELECT email, count(*) FROM t GROUP BY email LIMIT 1").fetchall()
            seen = {p.name: p.stat().st_mode & 0o777 for p in folder.rglob("*")}
        finally:
            con.close()
    assert any(name.startswith("duckdb_temp") for name in seen), seen  # it did spill
    assert set(seen.values()) == {0o600}, seen
    assert list(tmp_path.iterdir()) == []  # removed at the end


def test_a_run_removes_the_spill_folders_of_dead_runs_and_only_those(
        db_url: str, night: Path, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    dead = spill / f"{SPILL_PREFIX}dead0001"
    live = spill / f"{SPILL_PREFIX}live0001"
    unmarked = spill / f"{SPILL_PREFIX}nomarker"
    other = spill / "someone-elses"
    for folder in (dead, live, unmarked, other):
        folder.mkdir(mode=0o700)
        (folder / "duckdb_temp_1_0_storage_DEFAULT-0.tmp").write_text("ann@example.com")
    for folder in (dead, live, other):
        (folder / SPILL_MARKER).write_text("linkage pid=1\n")
    # A run still going on holds its marker locked.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
         "time.sleep(600)", str(live / SPILL_MARKER)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        config = tmp_path / "spill.toml"
        config.write_text(f'[engine]\ntemp_directory = "{spill}"\n')
        res = run(night, db_url, "--config", config)
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in spill.iterdir()) == sorted(
            p.name for p in (live, unmarked, other))
        with open(live / SPILL_MARKER) as marker, pytest.raises(BlockingIOError):
            fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)  # untouched, still held
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


KILL_AT_SIGNALS = r"""
import os, time
from pathlib import Path
from linkage.store.store import Store

mark = Path(os.environ["STAGE_MARK"])
set_stage = Store.set_stage


def set_stage_then_wait(self, run_id, stage):
    set_stage(self, run_id, stage)
    if stage == "signals":
        mark.write_text(stage)
        time.sleep(600)  # until SIGKILL


Store.set_stage = set_stage_then_wait
from linkage.cli import app

app(prog_name="linkage")
"""


@pytest.mark.slow
def test_the_spill_folder_of_a_killed_run_is_removed_by_the_next_run(
        db_url: str, night: Path, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    config = tmp_path / "spill.toml"
    config.write_text(f'[engine]\nmemory_limit = "40MB"\ntemp_directory = "{spill}"\n')
    mark = tmp_path / "signals.mark"
    env = {**os.environ, "LINKAGE_SECRET": SECRET, "STAGE_MARK": str(mark)}
    env.pop("LINKAGE_DB_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_AT_SIGNALS, "run", "--input", str(night), "--db", db_url,
         "--config", str(config), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert child.poll() is None, child.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the run never reached signals"
            time.sleep(0.02)
        [folder] = list(spill.iterdir())
        assert folder.name.startswith(SPILL_PREFIX)
        assert folder.stat().st_mode & 0o777 == 0o700
        assert {p.stat().st_mode & 0o777 for p in folder.rglob("*")} == {0o600}
        # While the run lives, another run leaves its folder alone (and is refused: exit 3).
        assert run(night, db_url, "--config", config).exit_code == 3
        assert folder.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stderr.close()  # type: ignore[union-attr]
    assert folder.exists()  # SIGKILL runs no cleanup
    wait_for_pg_lock_release(db_url)
    res = run(night, db_url, "--config", config)
    assert res.exit_code == 0, res.output
    assert list(spill.iterdir()) == []


# -- erasure covers quarantine and free text -----------------------------------------------------


def test_forget_covers_quarantined_ids_and_label_notes(
        db_url: str, tmp_path: Path) -> None:
    folder = folder_of(
        tmp_path / "q", accounts_csv(6),
        devices="account_id,device_id\nghost-7,dev-1\na001,dev-2\nghost-8,dev-3\n")
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    assert run(folder, db_url, "--config", config).exit_code == 0
    with Store(db_url) as store, store.engine.connect() as conn:
        values = conn.execute(sa.text("SELECT value FROM quarantine")).scalars().all()
    assert "'ghost-7'" in values  # what the probe found: the id, kept as quarantined
    assert invoke("label", "account", "a001", "--as", "watch", "--by", "ann", "--db", db_url,
                  "--note", "same device as a001 and a0012; see ghost-7").exit_code == 0
    # An id present only in quarantine is an account the store names: it can be erased.
    res = invoke("forget", "ghost-7", "--by", "dpo", "--db", db_url)
    assert res.exit_code == 0, res.output
    assert "1 quarantine" in res.stderr and "--reason" in res.stderr
    res = invoke("forget", "a001", "--by", "dpo", "--db", db_url)
    assert res.exit_code == 0, res.output
    dump = "\n".join(str(row) for rows in helpers.snapshot(db_url).values() for row in rows)
    assert "ghost-7" not in dump
    assert "'a001'" not in dump and "a001 " not in dump
    assert "ghost-8" in dump  # another account's quarantined id stays
    with Store(db_url) as store, store.engine.connect() as conn:
        note = conn.execute(sa.text("SELECT note FROM labels")).scalar_one()
    assert note.startswith("same device as erased:") and "and a0012; see erased:" in note
    # ... and the second request is recognised as done.
    res = invoke("forget", "ghost-7", "--by", "dpo", "--db", db_url)
    assert res.exit_code == 2 and "it was erased on" in res.stderr


# -- run ids and counts beyond any column ----------------------------------------------------------

HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def one_run(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding one run over ``night``'s input, which tests take copies of."""
    assert run(folder_of(tmp_path_factory.mktemp("night"), accounts_csv(20)),
               module_db_url).exit_code == 0
    return module_db_url


@pytest.mark.parametrize("command", [
    ["export", "memberships", "--out", "{tmp}/m.csv", "--run", HUGE],
    ["export", "banlist", "--out", "{tmp}/b.csv", "--run", HUGE],
    ["export", "clusters", "--out", "{tmp}/c.csv", "--run", HUGE],
    ["export", "case", "c0", "--out", "{tmp}/c.html", "--run", HUGE],
    ["report", "--out", "{tmp}/r", "--run", HUGE],
    ["show", "cluster", "c0", "--run", HUGE],
    ["show", "account", "a000", "--run", HUGE],
    ["explain", "a000", "a001", "--run", HUGE],
    ["diff", "--from", HUGE],
    ["diff", "--from", "latest", "--to", "2147483648"],
    ["evaluate", "--truth", "{tmp}/truth.csv", "--run", HUGE],
    ["runs", "retract", HUGE],
    ["runs", "--limit", HUGE],
    ["show", "account", "a000", "--links", HUGE],
    ["show", "cluster", "c0", "--max-members", HUGE],
], ids=lambda c: " ".join(c[:2]) + ("" if HUGE in c else f" {c[-2]}"))
def test_a_run_id_or_count_beyond_any_column_is_a_usage_error(
        one_run: str, database_copy: Callable[[str], str], tmp_path: Path,
        command: list[str]) -> None:
    db_url = database_copy(one_run)
    (tmp_path / "truth.csv").write_text("account_id,group_id\na000,g\n")
    res = invoke(*(c.format(tmp=tmp_path) for c in command), "--db", db_url)
    assert res.exit_code == 2, res.output
    assert "no such run" in res.stderr or "Invalid value" in res.output, res.output
    assert "Overflow" not in res.output and "out of range" not in res.output


def test_run_top_beyond_any_column_is_a_usage_error(db_url: str, night: Path) -> None:
    res = run(night, db_url, "--top", HUGE)
    assert res.exit_code == 2, res.output


def test_generate_accounts_beyond_any_column_is_a_usage_error(tmp_path: Path) -> None:
    res = invoke("generate", "--out", tmp_path / "g", "--accounts", HUGE)  # was: ran forever
    assert res.exit_code == 2 and "Invalid value" in res.output, res.output
    assert not (tmp_path / "g").exists()


# -- a shrunken night, and retracting a published run ----------------------------------------------


@pytest.mark.slow
def test_a_night_that_shrinks_beyond_store_max_shrink_is_refused(
        db_url: str, night: Path, tmp_path: Path) -> None:
    first = helpers.run_id_of(run(night, db_url))
    small = folder_of(tmp_path / "small", accounts_csv(3))
    before = helpers.snapshot(db_url)
    res = run(small, db_url)
    assert res.exit_code == 2, res.output
    assert ("the input has 3 accounts, 85.0% fewer than the 20 of run "
            f"{first}") in res.stderr
    assert "--allow-shrink" in res.stderr
    assert helpers.snapshot(db_url) == before  # nothing written, not even a run row
    # The share is configurable ...
    config = tmp_path / "shrink.toml"
    config.write_text("[store]\nmax_shrink = 0.9\n")
    assert run(small, db_url, "--config", config).exit_code == 0
    # ... and the refusal can be overridden (against the latest run, now of 3 accounts).
    empty_ish = folder_of(tmp_path / "one", accounts_csv(1, prefix="z"))
    assert run(empty_ish, db_url).exit_code == 2
    assert run(empty_ish, db_url, "--allow-shrink").exit_code == 0


@pytest.mark.slow
def test_a_retracted_run_is_skipped_by_latest_continuity_and_warm_start(
        db_url: str, night: Path, tmp_path: Path) -> None:
    good = helpers.run_id_of(run(night, db_url))
    bad = helpers.run_id_of(run(folder_of(tmp_path / "small", accounts_csv(3)), db_url,
                                "--allow-shrink"))
    res = invoke("runs", "retract", bad, "--by", "ann", "--reason", "truncated export",
                 "--db", db_url)
    assert res.exit_code == 0, res.output
    assert f"run {bad} retracted; latest is now run {good}" in res.stderr
    with Store(db_url) as store:
        assert store.latest_run_id() == good
        assert store.resolve_run("latest") == good
        row = store.run(bad)
        assert (row["status"], row["retracted_by"], row["retraction_reason"]) == (
            "retracted", "ann", "truncated export")
        assert row["retracted_at"] is not None
        # What the next run compares with and warm-starts from: the good run.
        previous = store.previous_memberships()
        assert previous is not None and previous.num_rows == 20
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT run_id FROM latest_run")).scalar() == good
            assert set(conn.execute(sa.text(
                "SELECT DISTINCT run_id FROM latest_memberships")).scalars()) == {good}
            assert conn.execute(sa.text(
                "SELECT retracted_by FROM runs WHERE run_id = :r"), {"r": bad}).scalar() == "ann"
    # Named explicitly, the retracted run is still readable (the audit trail).
    res = invoke("export", "memberships", "--run", bad, "--out", tmp_path / "bad.csv",
                 "--db", db_url)
    assert res.exit_code == 0, res.output
    # The next night continues the good run's clusters instead of calling them all new.
    third = helpers.run_id_of(run(night, db_url))
    with Store(db_url) as store:
        origins = set(store.clusters(third).column("origin").to_pylist())
    assert origins == {"continued"}
    # Only a succeeded run can be retracted; twice is refused.
    res = invoke("runs", "retract", bad, "--by", "ann", "--db", db_url)
    assert res.exit_code == 2 and f"run {bad} is retracted" in res.stderr


def test_retracting_takes_the_run_lock(db_url: str, night: Path) -> None:
    good = helpers.run_id_of(run(night, db_url))
    with Store(db_url) as holder, run_lock(holder):
        res = invoke("runs", "retract", good, "--by", "ann", "--db", db_url)
        assert res.exit_code == 3, res.output
    with Store(db_url) as store:
        assert store.latest_run_id() == good


# -- read-only commands never create a store ------------------------------------------------

READERS = [
    ["runs"],
    ["runs", "retract", "1"],
    ["export", "memberships", "--out", "{tmp}/m.csv"],
    ["export", "banlist", "--out", "{tmp}/b.csv"],
    ["export", "clusters", "--out", "{tmp}/c.csv"],
    ["export", "case", "c0", "--out", "{tmp}/c.html"],
    ["report", "--out", "{tmp}/r"],
    ["show", "cluster", "c0"],
    ["show", "account", "a0"],
    ["explain", "a0", "a1"],
    ["diff", "--from", "1"],
    ["labels"],
    ["label", "account", "a0", "--as", "watch", "--note", "n", "--by", "ann"],
    ["forget", "a0", "--by", "ann"],
    ["evaluate", "--truth", "{tmp}/truth.csv"],
    ["db", "check"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_a_command_that_reads_a_store_never_creates_one(
        tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "truth.csv").write_text("account_id,group_id\na0,g\n")
    typo = tmp_path / "typo.db"
    res = invoke(*(c.format(tmp=tmp_path) for c in command), "--db", f"sqlite:///{typo}")
    assert res.exit_code == 2, res.output
    assert f"no store at {str(typo)!r}" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth.csv"]  # no file, no lock


@pytest.mark.parametrize("command", [c for c in READERS if c[0] in ("runs", "labels", "forget")],
                         ids=lambda c: " ".join(c[:2]))
def test_a_command_that_reads_a_store_leaves_an_empty_database_empty(
        db_url: str, command: list[str]) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").touch()  # an empty SQLite database, as `touch` makes one
    res = invoke(*command, "--db", db_url)
    assert res.exit_code == 2, res.output
    assert "no store at" in res.stderr and "holds no linkage schema" in res.stderr
    with Store(db_url) as store:
        assert store.is_empty()
        assert sa.inspect(store.engine).get_table_names() == []


def test_a_file_that_is_not_a_sqlite_database_gets_no_lock_file(
        tmp_path: Path, night: Path) -> None:
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for command in (["run", "--input", night, "--quiet"], ["forget", "a0", "--by", "ann"],
                    ["runs"], ["db", "upgrade"]):
        res = invoke(*command, "--db", f"sqlite:///{text}")
        assert res.exit_code == 2, res.output
        assert "not a SQLite database" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night", "passwd"]
    assert text.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


# -- terminal output -------------------------------------------------------------------------------

ESC_ID = "a\x1b[2Jx"  # clear screen
ESC_NOTE = "see \x1b]0;owned\x07 and \x1b]8;;http://evil.example/\x1b\\here\x1b]8;;\x1b\\ \u202e"


def test_commands_show_escape_sequences_rather_than_obey_them(
        db_url: str, tmp_path: Path) -> None:
    folder = folder_of(tmp_path / "esc", "account_id,created_at,email\n"
                       f"{ESC_ID},2026-01-01T10:00:00Z,x@example.com\n"
                       "b1,2026-01-01T10:00:00Z,x@example.com\n")
    assert run(folder, db_url).exit_code == 0
    with Store(db_url) as store:
        stored = store.memberships(store.resolve_run("latest"))
        cluster = stored.column("cluster_id")[0].as_py()
    assert ESC_ID in stored.column("account_id").to_pylist()
    outputs = [
        invoke("label", "account", ESC_ID, "--as", "watch", "--note", ESC_NOTE,
               "--by", "m\x1b[31mallory", "--db", db_url),
        invoke("label", "cluster", cluster, "--as", "watch", "--note", ESC_NOTE, "--by", "ann",
               "--db", db_url),
        invoke("labels", "--db", db_url),
        invoke("show", "account", ESC_ID, "--db", db_url),
        invoke("show", "cluster", cluster, "--db", db_url),
        invoke("explain", ESC_ID, "b1", "--db", db_url),
        invoke("runs", "--db", db_url),
        invoke("show", "account", "nobody\x1b[2J", "--db", db_url),
    ]
    for res in outputs:
        assert "\x1b" not in res.output and "\x07" not in res.output, res.output
        assert "\u202e" not in res.output
    # Shown, escaped (Rich wraps a long note across lines of its cell).
    assert "\\x" in outputs[2].stdout
    assert "a\\x1b[2Jx" in outputs[3].stdout


def test_printable_leaves_ordinary_text_alone() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from linkage.cli.terminal import printable

    @given(st.text())
    def check(text: str) -> None:
        shown = printable(text)
        assert not any(ord(ch) < 0x20 and ch not in "\t\n" for ch in shown)
        assert "\x7f" not in shown and "\x1b" not in shown
        if all(ch.isprintable() or ch in "\t\n" for ch in text):
            assert shown == text or any(0x2028 <= ord(ch) <= 0x2069 for ch in text)

    check()


# -- an unreachable store is a URL to fix --------------------------------------------------


def _unreachable(db_url: str, tmp_path: Path) -> list[str]:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return [f"sqlite:///{tmp_path / 'no-such-folder' / 'linkage.db'}"]
    return [
        url.set(port=1).render_as_string(hide_password=False),
        url.set(database="linkage_no_such_database").render_as_string(hide_password=False),
        url.set(username="linkage_no_such_role").render_as_string(hide_password=False),
    ]


def test_an_unreachable_store_is_exit_2(db_url: str, night: Path, tmp_path: Path) -> None:
    for bad in _unreachable(db_url, tmp_path):
        for command in (["runs"], ["run", "--input", night, "--quiet"], ["db", "upgrade"],
                        ["export", "memberships", "--out", tmp_path / "m.csv"]):
            res = invoke(*command, "--db", bad)
            assert res.exit_code == 2, (command, bad, res.output)
            assert res.stderr.startswith("Error: "), res.output
    assert not (tmp_path / "no-such-folder").exists()


def test_another_run_never_finds_a_starting_runs_marker_unlocked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two runs starting at once: the second one's cleanup runs at the worst moment, after the
    # first created its folder and marker and before it locked the marker.
    import fcntl as real_fcntl
    import types

    from linkage.engines import spill

    cleaned: list[list[Path]] = []

    def flock(fd: int, op: int) -> None:
        if op == real_fcntl.LOCK_EX and not cleaned:
            cleaned.append(spill.remove_leftovers(tmp_path))  # the other run's cleanup
        real_fcntl.flock(fd, op)

    monkeypatch.setattr(spill, "fcntl", types.SimpleNamespace(
        flock=flock, LOCK_EX=real_fcntl.LOCK_EX, LOCK_NB=real_fcntl.LOCK_NB))
    with spill.spill_folder(tmp_path) as folder:
        assert cleaned == [[]] and folder.is_dir()  # the starting run's folder survived
        assert sorted(p.name for p in folder.iterdir()) == [SPILL_MARKER]
        with open(folder / SPILL_MARKER) as marker, pytest.raises(BlockingIOError):
            real_fcntl.flock(marker, real_fcntl.LOCK_EX | real_fcntl.LOCK_NB)
    assert list(tmp_path.iterdir()) == []
