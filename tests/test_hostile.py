"""Hostile input: fuzz the readers, validators and normalisers.

Whatever bytes arrive (random bytes, a damaged Parquet file, wrong encodings, NUL bytes, huge
fields, absurd timestamps and IPs, spreadsheet formulas and markup), ingest either succeeds
or raises a :class:`~linkage.errors.LinkageError`; nothing else escapes. Through a whole run,
a refused input leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.config import IngestConfig, RunConfig
from linkage.errors import InputError, LinkageError
from linkage.ingest import ingest
from linkage.pipeline import run_pipeline
from linkage.pseudonymise import Pseudonymiser
from linkage.store import Store
from tests.helpers import examples

PSEUDO = Pseudonymiser(b"hostile-test-secret-0123456789")
SECRET = b"hostile-test-secret-0123456789"
FUZZ = settings(max_examples=examples(40), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

GOOD_ACCOUNTS = "account_id,created_at,email\na1,2026-01-01T00:00:00Z,ann@example.com\n"

# Text a hostile or broken upstream might put in any field.
NASTY = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from([
        "=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@HYPERLINK(\"http://x\")", "\t=1",
        "<script>alert(1)</script>", "[red]markup[/red]", "{{7*7}}", "'; DROP TABLE runs;--",
        "\x00", "a\x00b", "\u202eevil", "\ufeffbom", "\r\n", "\"", "'", "\\", "NULL", "",
        "9999-99-99T99:99:99Z", "0000-00-00", "-infinity", "292278994-08-17", "1e308",
        "2026-13-45T25:61:61+99:99", "1970-01-01T00:00:00+14:01", "NaT", "now",
        "999.1.1.1", "1.2.3", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/24", "0x7f.1",
        "2001:db8::1::1", "01.02.03.004", "4111111111111111", "4111 1111 1111 1111",
    ]),
    st.integers(min_value=10_001, max_value=30_000).map(lambda n: "x" * n),
)


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="linkage-hostile-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ingest_only(path: Path, cfg: IngestConfig | None = None) -> None:
    """Ingest ``path``; only a LinkageError may escape."""
    con = duckdb.connect()
    try:
        ingest(con, path, cfg or IngestConfig(), PSEUDO)
    except LinkageError:
        pass
    finally:
        con.close()


def fresh(path: Path) -> Path:
    for child in path.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return path


@FUZZ
@given(data=st.binary(max_size=2_000), name=st.sampled_from(
    ["accounts.csv", "accounts.csv.gz", "accounts.parquet", "devices.csv"]))
def test_random_bytes(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        if name == "devices.csv":
            (path / "accounts.csv").write_text(GOOD_ACCOUNTS)
        (path / name).write_bytes(data)
        ingest_only(path)


@FUZZ
@given(header=st.sampled_from([b"account_id,created_at,email\n", b""]), data=st.binary(
    max_size=500), encoding=st.sampled_from(["latin-1", "utf-16", "utf-8-sig", "cp1252"]))
def test_wrong_encodings_and_binary_tails(header: bytes, data: bytes, encoding: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        text = "account_id,created_at,email\nä1,2026-01-01,Jürgen@exämple.com\n"
        (path / "accounts.csv").write_bytes(text.encode(encoding, "replace") + header + data)
        ingest_only(path)


def _parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"account_id": ["a1", "a2"], "created_at": ["2026-01-01"] * 2,
                             "email": ["x@y.z", None]}), sink)
    return sink.getvalue()


PARQUET = _parquet_bytes()


@FUZZ
@given(at=st.integers(0, len(PARQUET) - 1), junk=st.binary(min_size=1, max_size=16),
       cut=st.booleans())
def test_damaged_parquet(at: int, junk: bytes, cut: bool) -> None:
    damaged = PARQUET[:at] + (b"" if cut else junk + PARQUET[at + len(junk):])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "accounts.parquet").write_bytes(damaged)
        ingest_only(Path(tmp))


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


ROWS = st.lists(st.tuples(NASTY, NASTY, NASTY, NASTY, NASTY), min_size=1, max_size=6)


@FUZZ
@given(rows=ROWS, quarantine=st.booleans())
def test_weird_values_in_every_column(rows: list[tuple[str, ...]], quarantine: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        (path / "accounts.csv").write_text(_csv(
            [["account_id", "created_at", "email", "signup_ip", "display_name"]]
            + [list(r) for r in rows]), encoding="utf-8", errors="surrogatepass")
        (path / "ip_events.csv").write_text(_csv(
            [["account_id", "ip", "seen_at"]] + [[r[0], r[3], r[1]] for r in rows]),
            encoding="utf-8", errors="surrogatepass")
        cfg = IngestConfig(on_bad_rows="quarantine" if quarantine else "fail")
        ingest_only(path, cfg)


def test_overlong_field_is_a_row_problem(folder: Path) -> None:
    (folder / "accounts.csv").write_text(
        "account_id,created_at,display_name\n"
        f"a1,2026-01-01,{'=' + 'A' * 20_000}\na2,2026-01-01,Bo\n")
    with pytest.raises(InputError, match="row 1: field longer than 10000 characters"):
        ingest(duckdb.connect(), folder, IngestConfig(), PSEUDO)
    result = ingest(duckdb.connect(), folder,
                    IngestConfig(on_bad_rows="quarantine", max_field_chars=30_000), PSEUDO)
    assert result.n_accounts == 2


def snapshot(db_url: str) -> dict[str, list[tuple[object, ...]]]:
    with Store(db_url) as store, store.engine.connect() as conn:
        return {n: sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{n}"')).all()),
                          key=repr) for n in sa.inspect(conn).get_table_names()}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("hostile_store")
    (tmp / "in").mkdir()
    (tmp / "in" / "accounts.csv").write_text(GOOD_ACCOUNTS)
    url = f"sqlite:///{tmp / 'store.db'}"
    with Store(url) as store:
        run_pipeline(tmp / "in", store, RunConfig(), SECRET)
    return url


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=ROWS)
def test_no_partial_write(rows: list[tuple[str, ...]], store_url: str, folder: Path) -> None:
    fresh(folder)
    (folder / "accounts.csv").write_text(_csv(
        [["account_id", "created_at", "email", "signup_ip", "user_agent"]]
        + [list(r) for r in rows]), encoding="utf-8", errors="surrogatepass")
    before = snapshot(store_url)
    with Store(store_url) as store:
        latest = store.latest_run_id()
        try:
            summary = run_pipeline(folder, store, RunConfig(), SECRET)
        except LinkageError:
            assert snapshot(store_url) == before
            return
        assert store.latest_run_id() == summary.run_id != latest
        assert store.run(summary.run_id)["status"] == "succeeded"
