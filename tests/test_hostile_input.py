"""Input an outside probe used to break ingest's promises, through `linkage run` on every
store backend: each is refused with exit 2 and a message naming the file (and the column,
row and value where there is one), the store stays as it was, and no card number is shown
anywhere (docs/security.md, "Input that is refused")."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from linkage.config import IngestConfig
from linkage.errors import InputError
from linkage.ingest import ingest
from linkage.ingest.read import SPECS
from linkage.pseudonymise import Pseudonymiser
from tests import helpers
from tests.helpers import snapshot

SECRET = "hostile-input-test-secret-012345"
PSEUDO = Pseudonymiser(SECRET.encode())
CARD = "4111111111111111"  # a Luhn-valid test card number
RANGE = "timestamp out of range (expected 1970-01-01 to 2100-12-31 UTC)"

ACCOUNTS = ("account_id,created_at,email\n"
            "a1,2026-01-01T10:00:00Z,ann@example.com\n"
            "a2,2026-01-01T10:01:00Z,bob@example.com\n")

invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


def good_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "devices.csv").write_text("account_id,device_id,seen_at\na1,d1,\na2,d1,\n")
    return folder


@pytest.fixture(scope="module")
def one_good_run(tmp_path_factory: pytest.TempPathFactory,
                 module_db_url: str) -> tuple[str, dict]:
    res = invoke("run", "--input", good_input(tmp_path_factory.mktemp("good")), "--db",
                 module_db_url, "--quiet")
    assert res.exit_code == 0, res.output
    return module_db_url, snapshot(module_db_url)


@pytest.fixture
def store(one_good_run: tuple[str, dict],
          database_copy: Callable[[str], str]) -> tuple[str, dict]:
    """A store holding one good run (a copy for this test alone), and its snapshot."""
    url, before = one_good_run
    return database_copy(url), before


def refused(store: tuple[str, dict], folder: Path, *fragments: str,
            config: Path | None = None) -> str:
    """Run over ``folder``: exit 2, every fragment in the message, no card number shown, the
    store untouched. Returns the message."""
    db_url, before = store
    extra = ["--config", str(config)] if config else []
    res = invoke("run", "--input", folder, "--db", db_url, *extra)
    assert res.exit_code == 2, res.output
    message = " ".join(res.stderr.split())
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in res.output and CARD not in res.output
    assert snapshot(db_url) == before
    return message


def fails(folder: Path, cfg: IngestConfig | None = None) -> str:
    with pytest.raises(InputError) as info:
        ingest(duckdb.connect(), folder, cfg or IngestConfig(), PSEUDO)
    return " ".join(str(info.value).split())


# --- 1-3: one range of timestamps, offsets within ±14:00 --------------------------------------


def test_a_timestamp_after_2100_in_utc_is_refused(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").write_text(ACCOUNTS.replace(
        "2026-01-01T10:01:00Z", "9999-12-31T23:59:59-01:00"))
    refused(store, folder, f"accounts.csv, column 'created_at', row 2: {RANGE} "
                           "(value '9999-12-31T23:59:59-01:00')")


TIMESTAMP_COLUMNS = [(t, c.name) for t, spec in SPECS.items() for c in spec.columns
                     if c.norm == "timestamp"]


def _table_with(table: str, column: str, value: str) -> str:
    """A one-row CSV of ``table`` for account a1 with ``value`` in ``column``."""
    spec = SPECS[table]
    filler = {"account_id": "a1", "ip": "10.0.0.1", "fingerprint": "tok_1", "kind": "k"}
    names = [c.name for c in spec.columns if c.required or c.name == column]
    cells = [value if n == column else filler.get(n, "x") if n != "created_at"
             else "2026-01-01" for n in names]
    second = "a2,2026-01-01\n" if table == "accounts" else ""  # devices.csv names a2
    return ",".join(names) + "\n" + ",".join(cells) + "\n" + second


@pytest.mark.parametrize(("table", "column"), TIMESTAMP_COLUMNS)
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
                                   "2101-01-01", "0001-01-01"])
def test_every_timestamp_column_has_one_range(tmp_path, table, column, value):
    folder = good_input(tmp_path / "in")
    (folder / f"{table}.csv").write_text(_table_with(table, column, value))
    assert f"{table}.csv, column '{column}', row 1: {RANGE} (value {value!r})" in \
        fails(folder)


@pytest.mark.parametrize(("table", "column"), TIMESTAMP_COLUMNS)
def test_the_ends_of_the_range_are_accepted(tmp_path, table, column):
    for value in ("1970-01-01T00:00:00Z", "2100-12-31T23:59:59.999999Z",
                  "2101-01-01T00:30:00+01:00"):
        folder = good_input(tmp_path / value.replace(":", ""))
        (folder / f"{table}.csv").write_text(_table_with(table, column, value))
        con = duckdb.connect()
        ingest(con, folder, IngestConfig(), PSEUDO)
        (got,) = con.execute(f"SELECT max({column}) FROM {table}").fetchone() or (None,)
        assert got is not None and datetime(1970, 1, 1) <= got < datetime(2101, 1, 1)


def _parquet(path: Path, values: pa.Array) -> None:
    n = len(values)
    pq.write_table(pa.table({"account_id": [f"a{i}" for i in range(n)], "created_at": values}),
                   path)


PARQUET_TIMES = {
    "year 12000": pa.array([0, 316_224_000_000_000_000], pa.timestamp("us")),
    "INT64 max": pa.array([0, 2**63 - 1], pa.timestamp("us")),
    "INT64 min": pa.array([0, -(2**63) + 1], pa.timestamp("us")),
    "INT64 min exactly": pa.array([0, -(2**63)], pa.timestamp("us")),
    "INT64 max in ns": pa.array([0, 2**63 - 1], pa.timestamp("ns")),
    "DATE 2^31-1": pa.array([0, 2**31 - 1], pa.date32()),
    "DATE -2^31": pa.array([0, -(2**31)], pa.date32()),
    "1969 with a zone": pa.array([0, -1], pa.timestamp("s", tz="UTC")),
    "2200 with a zone": pa.array([0, 7_258_118_400], pa.timestamp("s", tz="Europe/Paris")),
}


@pytest.mark.parametrize("case", list(PARQUET_TIMES))
def test_native_parquet_timestamps_have_the_same_range(tmp_path, case):
    folder = tmp_path / "in"
    folder.mkdir()
    _parquet(folder / "accounts.parquet", PARQUET_TIMES[case])
    assert f"accounts.parquet, column 'created_at', row 2: {RANGE} (value " in fails(folder)


def test_native_parquet_out_of_range_through_the_cli(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").unlink()
    _parquet(folder / "accounts.parquet", pa.array([20_000, 2**31 - 1], pa.date32()))
    (folder / "devices.csv").write_text("account_id,device_id\na0,d1\n")
    refused(store, folder, f"accounts.parquet, column 'created_at', row 2: {RANGE}")


@pytest.mark.parametrize("offset", ["+25:00", "+99:99", "+14:01", "-15", "+05:60", "+1400:"])
def test_offsets_beyond_14_hours_are_unparseable(store, tmp_path, offset):
    folder = good_input(tmp_path / "in")
    value = "2026-01-01T10:01:00" + offset
    (folder / "accounts.csv").write_text(ACCOUNTS.replace("2026-01-01T10:01:00Z", value))
    refused(store, folder, "accounts.csv, column 'created_at', row 2: unparseable timestamp "
                           f"(expected ISO 8601) (value {value!r})")


# --- 4: a column name at most once -------------------------------------------------------------


@pytest.mark.parametrize("names", [
    ["account_id", "created_at", "created_at"],
    ["account_id", "created_at", "CREATED_AT"],
    ["account_id", "created_at", " Created_At "],
    ["account_id", "created_at", "extra", "EXTRA"],  # a column outside the contract too
])
@pytest.mark.parametrize("form", ["parquet", "csv"])
def test_a_repeated_column_is_refused(store, tmp_path, names, form):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").unlink()
    row = ["a1", "2026-01-01", "2026-01-02", "x"][: len(names)]
    if form == "parquet":
        pq.write_table(pa.table([pa.array([v]) for v in row], names=names),
                       folder / "accounts.parquet")
    else:
        (folder / "accounts.csv").write_text(",".join(names) + "\n" + ",".join(row) + "\n")
    repeated = names[-1].strip().lower()
    refused(store, folder, f"accounts.{form}, column '{repeated}': column {repeated!r} "
                           "appears more than once")


def test_a_repeated_ignored_column_is_refused(tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "payment_instruments.csv").write_text(
        "account_id,fingerprint,last4,LAST4\na1,tok_1,1111,2222\n")
    assert "column 'last4' appears more than once" in fails(folder)


# --- 5, 6, 16: only regular files, links followed safely ------------------------------------


def _partitioned(folder: Path) -> Path:
    good_input(folder)
    (folder / "devices.csv").unlink()
    part = folder / "devices" / "date=1"
    part.mkdir(parents=True)
    (part / "part-0.csv").write_text("account_id,device_id,seen_at\na1,d1,\n")
    return folder / "devices"


def test_a_dangling_link_or_a_link_loop_is_named(store, tmp_path):
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    (devices / "part-9.csv").symlink_to(tmp_path / "nowhere.csv")
    (devices / "loop.csv").symlink_to(devices / "loop.csv")
    message = refused(store, folder, "devices/loop.csv: a symbolic link that leads nowhere",
                      "devices/part-9.csv: a symbolic link that leads nowhere")
    assert "OSError" not in message and "Errno" not in message


def test_a_dangling_link_to_a_table_at_the_top_is_named(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "devices.csv").unlink()
    (folder / "devices.csv").symlink_to(tmp_path / "gone.csv")
    refused(store, folder, "devices.csv: a symbolic link that leads nowhere")


def test_a_dangling_link_where_a_partition_was_is_named(store, tmp_path):
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    (devices / "date=2").symlink_to(tmp_path / "gone")
    refused(store, folder, "devices/date=2: a symbolic link that leads nowhere")


def test_a_linked_partition_folder_is_read(tmp_path):
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    elsewhere = tmp_path / "elsewhere" / "date=2"
    elsewhere.mkdir(parents=True)
    (elsewhere / "part-0.csv").write_text("account_id,device_id,seen_at\na2,d2,\na1,d3,\n")
    (devices / "date=2").symlink_to(elsewhere)
    result = ingest(duckdb.connect(), folder, IngestConfig(), PSEUDO)
    assert result.rows_read["devices"] == 3


def test_a_link_to_a_folder_that_contains_it_is_a_loop(store, tmp_path):
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    (devices / "date=1" / "again").symlink_to(devices)
    refused(store, folder, "devices/date=1/again/: a symbolic link to a folder that "
                           "contains it (a loop)")


def test_a_folder_reached_twice_is_refused(store, tmp_path):
    """Two links to one partition would count its rows twice."""
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    (devices / "date=0").symlink_to(devices / "date=1")
    refused(store, folder, "devices/date=1/: the same folder as devices/date=0/")


def test_a_file_reached_twice_is_refused(tmp_path):
    folder = tmp_path / "in"
    devices = _partitioned(folder)
    (devices / "part-1.csv").symlink_to(devices / "date=1" / "part-0.csv")
    assert "the same file as" in fails(folder)


def _finishes(target, *args, timeout: float = 60) -> object:
    """``target(*args)`` in a daemon thread (a blocked one dies with the test process);
    its result, or a failure if it has not returned after ``timeout`` seconds."""
    out: dict[str, object] = {}
    thread = threading.Thread(target=lambda: out.update(r=target(*args)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked: a FIFO was opened"
    return out["r"]


@pytest.mark.parametrize("where", ["devices/date=1/part-1.csv", "devices.csv"])
def test_a_fifo_is_refused_without_being_opened(store, tmp_path, where):
    folder = tmp_path / "in"
    _partitioned(folder)
    if where == "devices.csv":
        shutil.rmtree(folder / "devices")
    os.mkfifo(folder / where)
    db_url, before = store
    res = _finishes(invoke, "run", "--input", folder, "--db", db_url)
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert f"{where}: not a regular file (a FIFO)" in res.stderr  # type: ignore[attr-defined]
    assert snapshot(db_url) == before


# --- 7, 8, 19: card numbers and raw lines never shown --------------------------------------


def test_a_headerless_file_does_not_show_its_card_number(store, tmp_path, caplog):
    folder = good_input(tmp_path / "in")
    (folder / "payment_instruments.csv").write_text(f"a1,{CARD},411111\na2,tok_2,411111\n")
    message = refused(store, folder, "payment_instruments.csv, column 'account_id': "
                                     "required column 'account_id' is missing",
                      "<redacted card number>")
    assert CARD not in message
    # The CLI stops the linkage logger's propagation; listen on it directly.
    logger = logging.getLogger("linkage.ingest")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="linkage.ingest"):
            fails(folder)
    finally:
        logger.removeHandler(caplog.handler)
    assert CARD not in caplog.text
    assert "<redacted card number>" in caplog.text  # the ignored "columns" are logged


def test_card_numbers_under_account_id_are_redacted_in_the_quarantine(tmp_path, db_url):
    """Swapped columns put card numbers under account_id: the stored value is redacted."""
    folder = good_input(tmp_path / "in")
    (folder / "payment_instruments.csv").write_text(
        f"account_id,fingerprint\n{CARD},a1\n4242 4242 4242 4242,a2\n")
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    res = invoke("run", "--input", folder, "--db", db_url, "--config", config, "--quiet")
    assert res.exit_code == 0, res.output
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT column_name, reason, value FROM quarantine ORDER BY seq")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("account_id", "unknown account_id (not in accounts)", "'<redacted card number>'")] * 2
    dump = repr(snapshot(db_url))
    assert CARD not in dump and "4242 4242" not in dump
    res = invoke("run", "--input", folder, "--db", db_url)  # fail mode: the message too
    assert res.exit_code == 2 and CARD not in res.output and "4242 4242" not in res.output


def test_a_card_number_as_a_file_name_is_redacted(store, tmp_path):
    folder = _partitioned(tmp_path / "in").parent
    os.mkfifo(folder / "devices" / f"{CARD}.csv")
    _finishes(refused, store, folder, "devices/<redacted card number>.csv: not a regular file")


def test_a_line_that_is_not_utf8_names_the_column_and_shows_only_its_value(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").write_bytes(
        b"account_id,created_at,email,display_name\n"
        b"a1,2026-01-01,ann@example.com,Ann\n"
        b"a2,2026-01-01,bob@example.com,J\xfcrgen " + CARD.encode() + b"\n")
    message = refused(store, folder,
                      "accounts.csv, column 'display_name', row 2: cannot read as CSV: "
                      "CSV Error on Line: 3: not UTF-8 text (a CSV file must be UTF-8) "
                      "(value 'J\ufffdrgen <redacted card number>')")
    assert "bob@example.com" not in message  # the rest of the line stays out


def test_a_ragged_line_is_located_without_quoting_it(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").write_text(ACCOUNTS + "a3,2026-01-01,cy@example.com,extra\n")
    message = refused(store, folder, "accounts.csv, row 3: cannot read as CSV: CSV Error on "
                                     "Line: 4 Expected Number of Columns: 3 Found: 4")
    assert "cy@example.com" not in message


# --- 14a: a full run needs accounts ------------------------------------------------------------


def _empty_accounts(folder: Path, how: str) -> str:
    good_input(folder)
    (folder / "accounts.csv").unlink()
    (folder / "devices.csv").unlink()
    if how == "0-byte CSV":
        (folder / "accounts.csv").write_bytes(b"")
        return "accounts.csv"
    if how == "header-only CSV":
        (folder / "accounts.csv").write_text("account_id,created_at\n")
        return "accounts.csv"
    if how == "empty Parquet":
        pq.write_table(pa.table({"account_id": pa.array([], pa.string()),
                                 "created_at": pa.array([], pa.string())}),
                       folder / "accounts.parquet")
        return "accounts.parquet"
    (folder / "accounts" / "date=1").mkdir(parents=True)
    (folder / "accounts" / "date=1" / "part-0.csv").write_text("account_id,created_at\n")
    return "accounts/"


@pytest.mark.parametrize("how", ["0-byte CSV", "header-only CSV", "empty Parquet", "folder"])
def test_an_empty_accounts_table_is_refused(store, tmp_path, how):
    name = _empty_accounts(tmp_path / "in", how)
    refused(store, tmp_path / "in",
            f"{name}: table 'accounts' has no rows: a full run needs at least one account")


def test_quarantining_every_account_is_refused(store, tmp_path):
    folder = good_input(tmp_path / "in")
    (folder / "accounts.csv").write_text("account_id,created_at\na1,soon\na2,later\n")
    config = tmp_path / "q.toml"
    config.write_text('[ingest]\non_bad_rows = "quarantine"\n')
    refused(store, folder, "accounts.csv: every row of 'accounts' (2) was set aside: a full "
                           "run needs at least one account", config=config)


def test_an_incremental_night_may_bring_no_accounts(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "accounts.csv").write_text("account_id,created_at\n")
    (folder / "devices.csv").write_text("account_id,device_id\nold,d1\n")
    con = duckdb.connect()
    con.execute("CREATE TABLE known AS SELECT 'old' AS account_id, -1 AS idx")
    result = ingest(con, folder, IngestConfig(), PSEUDO, known="known")
    assert (result.n_accounts, result.rows_read["devices"]) == (0, 1)
