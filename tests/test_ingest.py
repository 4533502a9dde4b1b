"""Ingest: input forms, the output hand-off, every contract violation, quarantine mode."""

from __future__ import annotations

import csv
import gzip
import logging
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.config import IngestConfig
from linkage.errors import InputError
from linkage.ingest import OUTPUT_SCHEMAS, TABLES, IngestResult, ingest
from linkage.pseudonymise import Pseudonymiser
from tests.helpers import CONTRACT_COLUMNS

PSEUDO = Pseudonymiser(b"test-secret-0123456789")
FAIL = IngestConfig()
QUARANTINE = IngestConfig(on_bad_rows="quarantine")

COLUMNS = CONTRACT_COLUMNS

DATA: dict[str, list[tuple[str | None, ...]]] = {
    "accounts": [
        ("u3", "2024-05-01T10:00:00+02:00", "John.Smith+promo@GoogleMail.com", "John  Smith",
         "+44 20 7946 0018", "gb", "2001:db8:1:2::5", "Mozilla/5.0 (X11) Firefox/125",
         "acme-corp"),
        ("u1", "2024-05-01 08:00:00", "johnsmith@gmail.com", "john smith", "+44-20-7946-0018",
         "US", "10.20.30.7", "Mozilla/5.0 (Mac) Safari/17", None),
        ("u2", "2024-05-02", " Ann.Lee@Example.org ", None, "123", " de ", "::ffff:10.20.30.9",
         None, None),
        ("u10", "2024-05-03T00:00:00Z", None, None, None, None, None, None, "acme-corp"),
    ],
    "payment_instruments": [
        ("u1", "tok_visa_0001", "411111", "1111", "SW1A 1AA", "GB", "2024-05-01T12:00:00Z"),
        ("u3", "tok_visa_0001", "411111", None, None, "GB", None),
        ("u2", "tok_mc_0002", None, None, "10115", "DE", "2024-05-02T01:00:00+01:00"),
    ],
    "ip_events": [
        ("u1", "10.20.30.7", "2024-05-01T09:00:00Z", "AS13335"),
        ("u2", "2001:DB8:1:2::9", "2024-05-01T09:05:00+00:00", "13335"),
        ("u3", "10.20.31.8", "2024-05-01 09:06:00", None),
        ("u3", "10.20.31.8", "2024-05-01 09:07:00", None),
    ],
    "devices": [
        ("u1", "dev-AAAA-1111", "2024-05-01"),
        ("u2", "dev-AAAA-1111", None),
        ("u3", "dev-BBBB-2222", "2024-05-01T23:59:59.5-01:00"),
    ],
    "interactions": [
        ("u1", "2024-05-01T10:00:00Z", "claude-x", "prompt-fp-111", "Coding", "100", "2000"),
        ("u2", "2024-05-01T10:01:00Z", None, None, None, None, None),
        ("u2", "2024-05-01T10:02:00Z", "claude-x", "prompt-fp-111", " agentic ", "0", "12.0"),
    ],
    "observations": [
        ("u1", " API_Key_Prefix ", "sk-ant-abc123", "2024-05-01"),
        ("u2", "api_key_prefix", "sk-ant-abc123", None),
        ("u3", "referral", "REFCODE-77", None),
    ],
}

# Identifying values (as given and as normalised): none may survive ingest.
RAW = [
    "John.Smith", "johnsmith", "Ann.Lee", "ann.lee", "7946", "2001:db8", "2001:0db8", "10.20.3",
    "Firefox", "Safari", "acme-corp", "tok_visa", "tok_mc", "SW1A", "sw1a", "10115", "dev-AAAA",
    "dev-BBBB", "prompt-fp", "sk-ant", "REFCODE", "john smith", "John  Smith",
]


def write_csv(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(["" if v is None else v for v in row] for row in rows)


def write_parquet(path: Path, header: list[str], rows: list[tuple[Any, ...]],
                  types: dict[str, pa.DataType] | None = None) -> None:
    types = types or {}
    arrays = {
        name: pa.array([row[i] for row in rows], types.get(name, pa.string()))
        for i, name in enumerate(header)
    }
    pq.write_table(pa.table(arrays), path, row_group_size=10_000)


def write(folder: Path, table: str, form: str, rows: list[tuple[Any, ...]] | None = None,
          header: list[str] | None = None) -> Path:
    rows = DATA[table] if rows is None else rows
    header = COLUMNS[table] if header is None else header
    path = folder / f"{table}.{form}"
    if form == "parquet":
        write_parquet(path, header, rows)
    else:
        write_csv(path, header, rows)
    return path


def write_all(folder: Path, form: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table in COLUMNS:
        if form == "partitioned":
            write_partitioned(folder, table, DATA[table], order=(0, 1, 2))
        else:
            write(folder, table, form)
    return folder


def write_partitioned(folder: Path, table: str, rows: list[tuple[Any, ...]],
                      order: tuple[int, int, int]) -> None:
    """Rows split over a CSV, a Parquet and a gzipped CSV in a hive-style subfolder."""
    part = folder / table
    (part / "date=2024-05-01").mkdir(parents=True)
    (part / "_SUCCESS").write_text("")
    chunks = [rows[i::3] for i in range(3)]
    write_csv(part / "part-0.csv", COLUMNS[table], chunks[order[0]])
    write_parquet(part / "part-1.parquet", COLUMNS[table], chunks[order[1]])
    write_csv(part / "date=2024-05-01" / "part-2.csv.gz", COLUMNS[table], chunks[order[2]])


def run(folder: Path, cfg: IngestConfig = FAIL) -> tuple[duckdb.DuckDBPyConnection, IngestResult]:
    con = duckdb.connect()
    return con, ingest(con, folder, cfg, PSEUDO)


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: con.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}


def fails(folder: Path, cfg: IngestConfig = FAIL) -> InputError:
    con = duckdb.connect()
    with pytest.raises(InputError) as info:
        ingest(con, folder, cfg, PSEUDO)
    assert staging_tables(con) == []
    assert info.value.exit_code == 2
    return info.value


def staging_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            if r[0].startswith("_lk")]


def all_text(con: duckdb.DuckDBPyConnection) -> str:
    """Every VARCHAR value of every table in ``con``, joined."""
    out = []
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE data_type = 'VARCHAR' AND NOT internal"
    ).fetchall():
        out += [str(v) for (v,) in con.execute(f'SELECT "{column}" FROM "{table}"').fetchall()]
    return "\n".join(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, list[tuple[Any, ...]]], IngestResult]:
    con, result = run(write_all(tmp_path_factory.mktemp("csv"), "csv"))
    return tables(con), result


# --- forms and the hand-off ------------------------------------------------------------------


@pytest.mark.parametrize("form", ["csv.gz", "parquet", "partitioned"])
def test_every_form_gives_identical_tables(tmp_path, reference, form):
    con, result = run(write_all(tmp_path, form))
    assert tables(con) == reference[0]
    assert result.rows_read == reference[1].rows_read
    assert result.n_accounts == 4


def test_output_schema(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder, "accounts", "csv")
    con, result = run(folder)
    assert result.tables == ("accounts",)
    for table, schema in OUTPUT_SCHEMAS.items():
        got = con.execute(f"DESCRIBE {table}").fetchall()
        assert [(r[0], r[1]) for r in got] == list(schema)
    assert con.execute("SELECT count(*) FROM devices").fetchone() == (0,)
    assert set(OUTPUT_SCHEMAS) == set(TABLES)


def test_accounts_idx_times_and_keys(reference):
    out, result = reference
    accounts = {row[1]: row for row in out["accounts"]}
    # idx follows account_id order ('u10' sorts before 'u2').
    assert [(r[0], r[1]) for r in out["accounts"]] == [(0, "u1"), (1, "u10"), (2, "u2"), (3, "u3")]
    assert str(accounts["u3"][2]) == "2024-05-01 08:00:00"  # +02:00 → UTC
    assert str(accounts["u2"][2]) == "2024-05-02 00:00:00"
    # Dots and +tag dropped and googlemail aliased: u1 and u3 share an email key.
    assert accounts["u1"][3] == accounts["u3"][3] == PSEUDO.hash("email", "johnsmith@gmail.com")
    assert accounts["u2"][3] == PSEUDO.hash("email", "ann.lee@example.org")
    assert accounts["u1"][4] == accounts["u3"][4] == PSEUDO.hash("phone", "442079460018")
    assert accounts["u2"][4] is None  # fewer than six digits
    assert accounts["u1"][5] == accounts["u3"][5] == PSEUDO.hash("display_name", "john smith")
    assert (accounts["u3"][6], accounts["u2"][6]) == ("GB", "DE")
    assert accounts["u1"][7] == PSEUDO.hash("ip", "10.20.30.7")
    assert accounts["u2"][7] == PSEUDO.hash("ip", "10.20.30.9")  # IPv4-mapped
    assert accounts["u1"][8] == accounts["u2"][8] == PSEUDO.hash("net", "10.20.30.0/24")
    assert accounts["u1"][9] is None
    assert accounts["u3"][8] == PSEUDO.hash("net", "2001:0db8:0001:0002:0000:0000:0000:0000/64")
    assert accounts["u3"][9] == PSEUDO.hash("net48", "2001:0db8:0001:0000:0000:0000:0000:0000/48")
    assert accounts["u3"][11] == accounts["u10"][11] == PSEUDO.hash("org", "acme-corp")
    assert result.tables == TABLES


def test_other_tables(reference):
    out, _ = reference
    pay = out["payment_instruments"]
    assert [r[0] for r in pay] == [0, 2, 3]
    assert pay[0][1] == pay[2][1] == PSEUDO.hash("card", "tok_visa_0001")
    assert pay[0][3] == PSEUDO.hash("bin_postal", "411111 sw1a1aa")
    assert pay[1][3] is None and pay[2][3] is None  # no BIN / no postal code
    assert str(pay[1][5]) == "2024-05-02 00:00:00"
    ips = out["ip_events"]
    assert ips[1][2] == PSEUDO.hash("net", "2001:0db8:0001:0002:0000:0000:0000:0000/64")
    assert (ips[0][4], ips[1][4]) == ("13335", "13335")
    assert len(ips) == 4  # repeated events are kept
    devices = out["devices"]
    assert devices[0][1] == devices[1][1] == PSEUDO.hash("device", "dev-AAAA-1111")
    assert str(devices[2][2]) == "2024-05-02 00:59:59.500000"
    obs = out["observations"]
    assert [r[1] for r in obs] == ["api_key_prefix", "api_key_prefix", "referral"]
    assert obs[0][2] == obs[1][2] == PSEUDO.hash("obs:api_key_prefix", "sk-ant-abc123")
    inter = out["interactions"]
    assert inter[0][1:] == (inter[0][1], "claude-x", PSEUDO.hash("prompt", "prompt-fp-111"),
                            "coding", 100, 2000)
    assert [r[4] for r in inter] == ["coding", None, "agentic"]
    assert inter[2][6] == 12


def test_no_raw_identifying_value_survives(tmp_path):
    con, _ = run(write_all(tmp_path, "partitioned"))
    text = all_text(con).lower()
    for raw in RAW:
        assert raw.lower() not in text, raw
    assert staging_tables(con) == []


def test_idx_and_rows_do_not_depend_on_file_order(tmp_path, reference):
    for i, order in enumerate([(2, 1, 0), (1, 2, 0)]):
        folder = tmp_path / f"in{i}"
        folder.mkdir()
        for table in COLUMNS:
            rows = DATA[table][::-1] if i else DATA[table]
            write_partitioned(folder, table, rows, order)
        con, _ = run(folder)
        assert tables(con) == reference[0]


def test_parquet_native_types(tmp_path):
    from datetime import datetime, timedelta, timezone

    folder = tmp_path / "in"
    folder.mkdir()
    tz = timezone(timedelta(hours=2))
    write_parquet(folder / "accounts.parquet", ["account_id", "created_at"],
                  [(7, datetime(2024, 5, 1, 10, tzinfo=tz)), (8, datetime(2024, 5, 1, 10))],
                  {"account_id": pa.int64(), "created_at": pa.timestamp("us", tz="UTC")})
    write_parquet(folder / "interactions.parquet",
                  ["account_id", "ts", "input_tokens", "output_tokens"],
                  [("7", datetime(2024, 5, 1), 5, 6.0)],
                  {"ts": pa.timestamp("ns"), "input_tokens": pa.int32(),
                   "output_tokens": pa.float64()})
    con, _ = run(folder)
    assert con.execute("SELECT account_id, created_at::VARCHAR FROM accounts").fetchall() == [
        ("7", "2024-05-01 08:00:00"), ("8", "2024-05-01 10:00:00")]
    assert con.execute("SELECT idx, input_tokens, output_tokens FROM interactions").fetchall() == [
        (0, 5, 6)]


def test_fingerprint_and_unknown_files(tmp_path, caplog):
    folder = write_all(tmp_path / "in", "csv")
    (folder / "truth.csv").write_text("account_id,group_id\n")
    caplog.set_level(logging.INFO, logger="linkage.ingest")
    _, first = run(folder)
    assert any("truth.csv" in r.getMessage() for r in caplog.records)
    (folder / "truth.csv").write_text("changed, but not input\n")
    _, same = run(folder)
    assert same.input_fingerprint == first.input_fingerprint
    write(folder, "devices", "csv", DATA["devices"][:2])
    _, changed = run(folder)
    assert changed.input_fingerprint != first.input_fingerprint
    assert re.fullmatch("[0-9a-f]{64}", first.input_fingerprint)


def test_extra_columns_are_logged_once(tmp_path, caplog):
    folder = tmp_path / "in"
    (folder / "accounts").mkdir(parents=True)
    header = [*COLUMNS["accounts"], "favourite_colour"]
    for i in range(2):
        rows = [(*row, "blue") for row in DATA["accounts"][i::2]]
        write_csv(folder / "accounts" / f"part-{i}.csv", header, rows)
    caplog.set_level(logging.INFO, logger="linkage.ingest")
    run(folder)
    hits = [r for r in caplog.records if "favourite_colour" in r.getMessage()]
    assert len(hits) == 1 and hits[0].levelno == logging.INFO


# --- contract violations ---------------------------------------------------------------------


def accounts_folder(tmp_path: Path, rows: list[tuple[Any, ...]] | None = None,
                    form: str = "csv") -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    write(folder, "accounts", form, rows)
    return folder


def test_missing_accounts_table(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder, "devices", "csv")
    err = fails(folder)
    assert "required table 'accounts' is missing" in str(err)


def test_missing_required_column(tmp_path):
    folder = accounts_folder(tmp_path)
    write(folder, "devices", "csv", [("u1", "2024-05-01")], ["account_id", "seen_at"])
    msg = str(fails(folder))
    assert "devices.csv, column 'device_id': required column 'device_id' is missing" in msg
    assert "columns found: 'account_id', 'seen_at'" in msg


@pytest.mark.parametrize(
    ("row", "column", "value"),
    [
        (("", "2024-05-01"), "account_id", "NULL"),
        (("   ", "2024-05-01"), "account_id", "NULL"),
    ],
)
def test_required_value_missing(tmp_path, row, column, value):
    folder = accounts_folder(tmp_path, [*DATA["accounts"], (*row, *[None] * 7)])
    msg = str(fails(folder))
    assert f"accounts.csv, column '{column}', row 5: required value missing (value {value})" in msg


def test_created_at_may_be_empty_or_absent(tmp_path):
    folder = accounts_folder(tmp_path, [*DATA["accounts"], ("u9", "", *[None] * 7)])
    con, _ = run(folder)
    assert con.execute("SELECT created_at FROM accounts WHERE account_id = 'u9'").fetchall() \
        == [(None,)]
    folder = tmp_path / "no_column"
    folder.mkdir()
    write(folder, "accounts", "csv", [("u1",), ("u2",)], ["account_id"])
    con, _ = run(folder)
    assert con.execute("SELECT account_id, created_at FROM accounts ORDER BY 1").fetchall() \
        == [("u1", None), ("u2", None)]


def test_unparseable_timestamp(tmp_path):
    folder = accounts_folder(tmp_path)
    write(folder, "ip_events", "csv", [*DATA["ip_events"], ("u1", "10.0.0.1", "yesterday", None)])
    msg = str(fails(folder))
    assert ("ip_events.csv, column 'seen_at', row 5: unparseable timestamp (expected ISO 8601) "
            "(value 'yesterday')") in msg


@pytest.mark.parametrize("bad", ["256.1.1.1", "1.2.3", "1::2::3", "10.0.0.1:443", "+1.2.3.4"])
def test_invalid_ip(tmp_path, bad):
    folder = accounts_folder(tmp_path)
    write(folder, "ip_events", "csv", [("u1", bad, "2024-05-01", None)])
    msg = str(fails(folder))
    assert "ip_events.csv, column 'ip', row 1: invalid IP address" in msg
    assert f"(value {bad!r})" in msg


def test_invalid_signup_ip(tmp_path):
    rows = [DATA["accounts"][0], ("u1", "2024-05-01", *[None] * 4, "999.0.0.1", None, None)]
    msg = str(fails(accounts_folder(tmp_path, rows)))
    assert "accounts.csv, column 'signup_ip', row 2: invalid IP address" in msg


def test_duplicate_account_id(tmp_path):
    folder = tmp_path / "in"
    (folder / "accounts").mkdir(parents=True)
    write_csv(folder / "accounts" / "a.csv", COLUMNS["accounts"], DATA["accounts"])
    write_csv(folder / "accounts" / "b.csv", COLUMNS["accounts"][:2],
              [("u5", "2024-05-01"), ("u1", "2024-05-01")])
    msg = str(fails(folder))
    assert ("accounts/b.csv, column 'account_id', row 2: duplicate account_id (value 'u1')"
            in msg)
    assert "a.csv" not in msg


def test_unknown_account_id(tmp_path):
    folder = accounts_folder(tmp_path)
    write(folder, "devices", "parquet", [("u1", "d1", None), ("ghost", "d2", None)])
    msg = str(fails(folder))
    assert ("devices.parquet, column 'account_id', row 2: unknown account_id (not in accounts) "
            "(value 'ghost')") in msg


@pytest.mark.parametrize("card", ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004"])
def test_raw_card_number(tmp_path, card):
    folder = accounts_folder(tmp_path)
    write(folder, "payment_instruments", "csv",
          [("u1", "tok_ok", None, None, None, None, None), ("u2", card, None, None, None, None,
                                                            "2024-13-45")])
    con = duckdb.connect()
    with pytest.raises(InputError) as info:
        ingest(con, folder, FAIL, PSEUDO)
    msg = str(info.value)
    assert ("payment_instruments.csv, column 'fingerprint', row 2: raw card number in "
            "fingerprint (expected the processor's token) (value '<redacted card number>')"
            ) in msg
    digits = card.replace(" ", "").replace("-", "")
    for text in (msg, all_text(con), repr(info.value.problems)):
        assert digits not in text.replace(" ", "").replace("-", "")
    assert staging_tables(con) == []
    # In quarantine mode the row is dropped, and the digits are still nowhere.
    con, result = run(folder, QUARANTINE)
    assert result.rows_quarantined == {"payment_instruments": {
        "raw card number in fingerprint (expected the processor's token)": 1}}
    assert digits not in all_text(con) + repr(result)
    # the sample (kept in the store) says what was there, not the shape of the marker
    assert [p.value for p in result.quarantine_sample] == ["'<redacted card number>'"]


def test_card_number_in_a_reader_error_is_redacted(tmp_path):
    folder = accounts_folder(tmp_path)
    (folder / "payment_instruments.csv").write_text(
        "account_id,fingerprint\nu1,tok\nu2,4111 1111 1111 1111,extra\n")
    msg = str(fails(folder))
    assert "payment_instruments.csv, row 2: cannot read as CSV: CSV Error on Line: 3" in msg
    # the reader's quote of the raw line, card number and all, is never shown
    assert "1111" not in msg and "u2," not in msg


@pytest.mark.parametrize("bad", ["-1", "1.5", "ten", "1e3"])
def test_bad_token_count(tmp_path, bad):
    folder = accounts_folder(tmp_path)
    write(folder, "interactions", "csv", [("u1", "2024-05-01", None, None, None, "3", bad)])
    msg = str(fails(folder))
    assert (f"interactions.csv, column 'output_tokens', row 1: invalid token count "
            f"(expected an integer >= 0) (value {bad!r})") in msg


def test_negative_native_token_count(tmp_path):
    folder = accounts_folder(tmp_path)
    write_parquet(folder / "interactions.parquet", ["account_id", "ts", "input_tokens"],
                  [("u1", "2024-05-01", 3), ("u1", "2024-05-01", -4)],
                  {"input_tokens": pa.int64()})
    msg = str(fails(folder))
    assert "interactions.parquet, column 'input_tokens', row 2: invalid token count" in msg
    assert "(value '-4')" in msg


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("accounts.parquet", b"account_id,created_at\nu1,2024-05-01\n",
         "accounts.parquet: not a readable Parquet file"),
        ("accounts.csv", bytes(range(256)) * 8 + b"\n\xff\xfe\x00\n",
         "accounts.csv: not a CSV file"),
        ("accounts.csv.gz", b"account_id,created_at\nu1,2024-05-01\n",
         "accounts.csv.gz: not a gzip-compressed CSV file"),
        ("accounts.csv", b"account_id,created_at\nu1,2024-05-01\nu2,2024-05-01,x\n",
         "accounts.csv, row 2: cannot read as CSV: CSV Error on Line: 3 Expected Number "
         "of Columns: 2 Found: 3"),
        ("accounts.csv", b"account_id,created_at\nu1,2024-05-01\nu2,\xff\xfe\n",
         "accounts.csv, column 'created_at', row 2: cannot read as CSV: CSV Error on "
         "Line: 3: not UTF-8 text (a CSV file must be UTF-8) (value '\ufffd\ufffd')"),
    ],
)
def test_file_that_is_not_what_its_name_says(tmp_path, name, content, expected):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(content)
    msg = str(fails(folder))
    assert expected in msg
    assert str(tmp_path) not in msg  # paths are relative to the input folder


def test_more_than_one_form(tmp_path):
    folder = accounts_folder(tmp_path)
    write(folder, "accounts", "parquet")
    msg = str(fails(folder))
    assert "table 'accounts' is given in more than one form (accounts.csv, accounts.parquet)" in msg


def test_all_problems_of_all_files_are_collected(tmp_path):
    folder = accounts_folder(tmp_path, [*DATA["accounts"], ("u1", "soon", *[None] * 7)])
    write(folder, "devices", "csv", [("ghost", "d", None), ("u1", "", None)])
    write(folder, "observations", "csv", [("u1", "k", "v", "x")], ["account_id", "kind", "value",
                                                                   "seen_at"])
    (folder / "ip_events.csv").write_bytes(b"\x00\x01")
    err = fails(folder)
    lines = str(err).splitlines()
    assert lines[0] == "input breaks the contract (6 problems)"
    assert "ip_events.csv: not a CSV file" in lines[1]  # file-level problems first
    assert [p.file for p in err.problems[1:]] == [
        "accounts.csv", "accounts.csv", "devices.csv", "devices.csv", "observations.csv"]
    short = fails(folder, IngestConfig(max_reported_problems=2))
    assert len(short.problems) == 2 and str(short).endswith("… and 4 more")


def test_deep_row_numbers(tmp_path):
    n, bad = 100_000, 77_777
    rows = [(f"a{i:06d}", "2024-05-01T00:00:00Z") for i in range(1, n + 1)]
    rows[bad - 1] = (rows[bad - 1][0], "2024-05-01T25:00:00Z")
    folder = tmp_path / "in"
    (folder / "accounts").mkdir(parents=True)
    write_csv(folder / "accounts" / "big.csv", ["account_id", "created_at"], rows)
    rows[bad - 1] = (rows[bad - 1][0], "2024-05-01T00:00:00Z")
    rows[54_320] = (rows[54_320][0], "not a time")
    write_parquet(folder / "accounts" / "big.parquet", ["account_id", "created_at"],
                  [(f"p{a}", t) for a, t in rows])
    con = duckdb.connect()
    con.execute("SET threads = 4")
    con.execute("SET preserve_insertion_order = false")  # as an engine may set it
    with pytest.raises(InputError) as info:
        ingest(con, folder, FAIL, PSEUDO)
    assert [(p.file, p.row, p.value) for p in info.value.problems] == [
        ("accounts/big.csv", bad, "'2024-05-01T25:00:00Z'"),
        ("accounts/big.parquet", 54_321, "'not a time'"),
    ]
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() == (
        False,)


# --- quarantine mode -------------------------------------------------------------------------


def test_quarantine_counts_sample_and_good_rows(tmp_path):
    accounts = [
        *DATA["accounts"],
        ("u1", "2024-06-01", *[None] * 7),           # duplicate: the first u1 is kept
        ("u7", "not-a-date", *[None] * 7),           # bad: u7's other rows go too
        ("", "2024-05-01", *[None] * 7),             # missing id
    ]
    folder = accounts_folder(tmp_path, accounts)
    write(folder, "devices", "csv", [
        *DATA["devices"],
        ("u7", "dev-7", None),                       # account quarantined
        ("ghost", "dev-8", None),                    # unknown account
        ("u1", "dev-9", "nope"),                     # bad timestamp
    ])
    write(folder, "ip_events", "csv", [*DATA["ip_events"], ("u1", "10.9.8.7:443", "2024-05-01",
                                                            None)])
    con, result = run(folder, IngestConfig(on_bad_rows="quarantine", quarantine_sample=4))
    assert result.rows_read == {"accounts": 7, "ip_events": 5, "devices": 6}
    assert result.rows_quarantined == {
        "accounts": {"duplicate account_id": 1, "required value missing": 1,
                     "unparseable timestamp (expected ISO 8601)": 1},
        "devices": {"account quarantined (its accounts row was set aside)": 1,
                    "unknown account_id (not in accounts)": 1,
                    "unparseable timestamp (expected ISO 8601)": 1},
        "ip_events": {"invalid IP address (expected IPv4 or IPv6)": 1},
    }
    assert [(p.file, p.row, p.column, p.value) for p in result.quarantine_sample] == [
        ("accounts.csv", 5, "account_id", "'u1'"),
        # The sample goes to the store: values show their shape, never their text (any
        # column of a shifted row can hold an email or an IP); account ids stay readable.
        ("accounts.csv", 6, "created_at", "'aaa-a-aaaa'"),
        ("accounts.csv", 7, "account_id", None),  # empty: SQL NULL in the store
        ("ip_events.csv", 5, "ip", "'99.9.9.9:999'"),
    ]
    assert "(value '10.9.8.7:443')" in str(fails(folder))  # the operator sees it all
    assert result.n_accounts == 4
    assert con.execute("SELECT account_id, created_at::VARCHAR FROM accounts WHERE "
                       "account_id = 'u1'").fetchall() == [("u1", "2024-05-01 08:00:00")]
    assert con.execute("SELECT count(*) FROM devices").fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM ip_events").fetchone() == (4,)
    assert staging_tables(con) == []


def test_quarantine_still_fails_on_file_problems(tmp_path):
    folder = accounts_folder(tmp_path, [*DATA["accounts"], ("u1", "x", *[None] * 7)])
    write(folder, "devices", "csv", [("u1", "2024-05-01")], ["account_id", "seen_at"])
    err = fails(folder, QUARANTINE)
    assert [p.column for p in err.problems] == ["device_id"]


def test_clean_input_quarantines_nothing(tmp_path):
    _, result = run(write_all(tmp_path, "csv"), QUARANTINE)
    assert result.rows_quarantined == {} and result.quarantine_sample == []


def test_missing_input_folder(tmp_path):
    err = fails(tmp_path / "nowhere")
    assert "does not exist" in str(err)


def test_empty_files_and_folders_are_empty_tables(tmp_path, caplog):
    folder = tmp_path / "in"
    (folder / "accounts").mkdir(parents=True)
    (folder / "devices").mkdir()
    write_csv(folder / "accounts" / "a.csv", COLUMNS["accounts"], DATA["accounts"])
    write_csv(folder / "accounts" / "b.csv", COLUMNS["accounts"], [])  # header only
    (folder / "accounts" / "c.csv").write_bytes(b"")  # an empty partition
    with gzip.open(folder / "accounts" / "d.csv.gz", "wb"):
        pass
    caplog.set_level(logging.INFO, logger="linkage.ingest")
    _, result = run(folder)
    assert result.tables == ("accounts", "devices")
    assert result.rows_read == {"accounts": 4, "devices": 0}
    assert any("devices/ holds no data files" in r.getMessage() for r in caplog.records)
