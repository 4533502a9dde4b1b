"""Every contract violation through `linkage run`: exit 2, a message naming file, column, row
and value, and the store exactly as it was (docs/input.md, "Validation")."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from linkage.errors import InputProblem
from tests import helpers
from tests.helpers import snapshot

SECRET = "bad-input-test-secret-0123456789"
CARD = "4111111111111111"  # a Luhn-valid test card number

ACCOUNTS = """account_id,created_at,email,signup_ip
a1,2026-01-01T10:00:00Z,ann@example.com,10.0.0.1
a2,2026-01-01T10:01:00Z,bob@example.com,10.0.0.2
a3,2026-01-01T10:02:00+01:00,cy@example.com,10.0.0.3
a4,2026-01-01 10:03:00,dee@example.com,2001:db8::1
"""
PAYMENTS = "account_id,fingerprint,bin,billing_postal\na1,fp_1,411111,10115\na2,fp_1,411111,10115\n"
DEVICES = "account_id,device_id,seen_at\na1,dev9,2026-01-02T00:00:00Z\na3,dev9,\n"


invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


def write_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "payment_instruments.csv").write_text(PAYMENTS)
    (folder / "devices.csv").write_text(DEVICES)
    return folder


@pytest.fixture(scope="module")
def one_good_run(tmp_path_factory, module_db_url):
    good = write_input(tmp_path_factory.mktemp("good"))
    res = invoke("run", "--input", good, "--db", module_db_url, "--quiet")
    assert res.exit_code == 0, res.output
    return module_db_url, snapshot(module_db_url)


@pytest.fixture
def store_with_a_run(one_good_run, database_copy):
    """A copy of a store holding one good run, and the snapshot of that store."""
    url, before = one_good_run
    return database_copy(url), before


def broken(tmp_path: Path, change) -> Path:
    folder = write_input(tmp_path / "bad")
    change(folder)
    return folder


def replace_in(name: str, old: str, new: str):
    def change(folder: Path) -> None:
        path = folder / name
        path.write_text(path.read_text().replace(old, new, 1))
    return change


VIOLATIONS = {
    "missing accounts table": (
        lambda f: (f / "accounts.csv").unlink(),
        ["accounts"]),
    "missing required column": (
        replace_in("payment_instruments.csv", "fingerprint", "fp"),
        ["payment_instruments.csv", "fingerprint"]),
    "unparseable timestamp": (
        replace_in("accounts.csv", "2026-01-01T10:01:00Z", "yesterday"),
        ["accounts.csv", "created_at", "row 2", "'yesterday'"]),
    "invalid IP": (
        replace_in("accounts.csv", "10.0.0.3", "10.0.0.300"),
        ["accounts.csv", "signup_ip", "row 3", "10.0.0.300"]),
    "duplicate account_id": (
        replace_in("accounts.csv", "a4,", "a1,"),
        ["accounts.csv", "account_id", "row 4", "'a1'"]),
    "unknown account_id": (
        replace_in("devices.csv", "a3,", "zz9,"),
        ["devices.csv", "account_id", "row 2", "'zz9'"]),
    "raw card number": (
        replace_in("payment_instruments.csv", "fp_1", CARD),
        ["payment_instruments.csv", "fingerprint", "row 1", "card number"]),
    "file not what its name says": (
        lambda f: (f / "devices.csv").rename(f / "devices.parquet"),
        ["devices.parquet"]),
    "missing required value": (
        replace_in("devices.csv", "a1,dev9", "a1,"),
        ["devices.csv", "device_id", "row 1"]),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violation_exits_2_names_the_place_and_leaves_the_store_untouched(
        name, store_with_a_run, tmp_path):
    db_url, before = store_with_a_run
    change, expected = VIOLATIONS[name]
    res = invoke("run", "--input", broken(tmp_path, change), "--db", db_url)
    assert res.exit_code == 2, res.output
    assert "\nError: " in "\n" + res.stderr
    for fragment in expected:
        assert fragment in res.stderr, (fragment, res.stderr)
    assert CARD not in res.output
    assert snapshot(db_url) == before


def test_quarantine_sets_rows_aside_and_counts_them(tmp_path, db_url):
    bad = broken(tmp_path, replace_in("accounts.csv", "10.0.0.3", "10.0.0.300"))
    replace_in("payment_instruments.csv", "fp_1", CARD)(bad)
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    res = invoke("run", "--input", bad, "--db", db_url, "--config", config, "--quiet")
    assert res.exit_code == 0, res.output
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            run = conn.execute(sa.text("SELECT rows_quarantined_json, n_rows_quarantined "
                                       "FROM runs")).one()
            sample = conn.execute(sa.text(
                "SELECT table_name, file, row_number, column_name, reason, value "
                "FROM quarantine ORDER BY seq")).all()
    finally:
        engine.dispose()
    counts = json.loads(run[0])
    assert sum(sum(v.values()) for v in counts.values()) == run[1] >= 2
    assert {r[0] for r in sample} >= {"accounts", "payment_instruments"}
    assert all(CARD not in repr(r) for r in sample)
    assert CARD not in json.dumps(snapshot(db_url), default=str)


def _quarantined(db_url: str) -> list[tuple[str | None, str, str | None]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT column_name, reason, value FROM quarantine ORDER BY seq"))]
    finally:
        engine.dispose()


def test_a_missing_value_is_sql_null_in_the_quarantine_and_null_in_the_message(tmp_path,
                                                                                db_url):
    bad = broken(tmp_path, replace_in("devices.csv", "a1,dev9", "a1,"))
    res = invoke("run", "--input", bad, "--db", db_url)
    assert res.exit_code == 2
    assert "devices.csv, column 'device_id', row 1: required value missing (value NULL)" \
        in " ".join(res.stderr.split())
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    res = invoke("run", "--input", bad, "--db", db_url, "--config", config, "--quiet")
    assert res.exit_code == 0, res.output
    assert _quarantined(db_url) == [("device_id", "required value missing", None)]


def test_the_text_null_is_a_value_not_a_missing_one(tmp_path, db_url):
    """An account_id that reads NULL is text like any other: quoted in the message and kept
    as text in the quarantine, never taken for a missing value."""
    bad = broken(tmp_path, replace_in("devices.csv", "a3,", "NULL,"))
    res = invoke("run", "--input", bad, "--db", db_url)
    assert res.exit_code == 2
    assert "devices.csv, column 'account_id', row 2: unknown account_id (not in accounts) " \
        "(value 'NULL')" in " ".join(res.stderr.split())
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    res = invoke("run", "--input", bad, "--db", db_url, "--config", config, "--quiet")
    assert res.exit_code == 0, res.output
    assert _quarantined(db_url) == [
        ("account_id", "unknown account_id (not in accounts)", "'NULL'")]


def test_an_empty_cell_is_rendered_null_only_in_text():
    empty = InputProblem.of_cell("devices", "devices.csv", "device_id", 1, None, "missing")
    text = InputProblem.of_cell("devices", "devices.csv", "device_id", 1, "NULL", "unknown")
    file_level = InputProblem("devices", "devices.csv", "device_id", None, None, "no column")
    assert (empty.value, text.value, file_level.value) == (None, "'NULL'", None)
    assert str(empty) == "devices.csv, column 'device_id', row 1: missing (value NULL)"
    assert str(text) == "devices.csv, column 'device_id', row 1: unknown (value 'NULL')"
    assert str(file_level) == "devices.csv, column 'device_id': no column"


def test_partitioned_and_gzip_input_give_the_same_result(tmp_path):
    import gzip

    plain = write_input(tmp_path / "plain")
    parted = tmp_path / "parted"
    shutil.copytree(plain, parted)
    lines = ACCOUNTS.splitlines(keepends=True)
    (parted / "accounts.csv").unlink()
    (parted / "accounts").mkdir()
    (parted / "accounts" / "part-0.csv").write_text("".join(lines[:3]))
    with gzip.open(parted / "accounts" / "part-1.csv.gz", "wt") as f:
        f.write(lines[0] + "".join(lines[3:]))
    out = []
    for folder in (plain, parted):
        db = f"sqlite:///{tmp_path / (folder.name + '.db')}"
        assert invoke("run", "--input", folder, "--db", db, "--quiet").exit_code == 0
        res = invoke("export", "memberships", "--db", db, "--out", tmp_path / f"{folder.name}.csv")
        assert res.exit_code == 0
        out.append((tmp_path / f"{folder.name}.csv").read_text())
    assert out[0] == out[1] and out[0].count("\n") >= 3


def test_a_line_longer_than_the_limit_is_refused(tmp_path, db_url):
    folder = write_input(tmp_path / "long")
    (folder / "devices.csv").write_text(DEVICES + "a2," + "d" * 5000 + ",\n")
    config = tmp_path / "c.toml"
    config.write_text("[ingest]\nmax_line_bytes = 2048\n")
    res = invoke("run", "--input", folder, "--db", db_url, "--config", config)
    assert res.exit_code == 2, res.output
    assert "devices.csv" in res.stderr and "Line" in res.stderr
    assert len(res.stderr) < 3000  # the offending line is not echoed whole
