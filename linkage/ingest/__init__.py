"""Ingest: read the input folder, validate it, normalise and pseudonymise it.

The first stage of a nightly run (docs/algorithm.md). :func:`ingest` reads every contract
table of the input folder (docs/input.md) through DuckDB, checks it, and leaves six tables in the
connection, the hand-off to the signals stage (schemas in :data:`OUTPUT_SCHEMAS`):

``accounts``
    one row per account; ``idx`` is 0..n-1 in ``account_id`` order, so it depends neither on
    file order nor on partitioning.
``payment_instruments``, ``ip_events``, ``devices``, ``observations``, ``interactions``
    one row per input row; ``idx`` is the account's. Empty (with the same columns) when the
    input has no such table.

Identifying values leave ingest only as keyed hashes (``*_key``, the ``lk_hash`` macro of
:class:`~linkage.pseudonymise.Pseudonymiser`), each kind in its own namespace; the staging
tables that held raw values are dropped before :func:`ingest` returns or raises. Rows of every
output table are sorted by all their columns, so equal input gives equal tables.

All work is SQL on the engine's connection: no Python loop touches a row. The files reach
staging tables through the engine's reader (``load``: by default
:func:`~linkage.ingest.read.load_table`, DuckDB's own, whose memory spills to its temporary
directory; :meth:`linkage.engines.Engine.ingest` passes the engine's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linkage.config import IngestConfig
from linkage.engines import SQLConnection, drop_temp_tables, in_file_order
from linkage.errors import InputError, InputProblem
from linkage.ingest import normalise as nz
from linkage.ingest import validate
from linkage.ingest.read import (
    SPECS,
    TABLE_NAMES,
    InputFile,
    TableSpec,
    discover,
    fingerprint,
    load_table,
    stage_name,
)
from linkage.pseudonymise import Pseudonymiser

__all__ = ["OUTPUT_SCHEMAS", "TABLES", "IngestResult", "ingest"]

log = logging.getLogger("linkage.ingest")

TABLES: tuple[str, ...] = TABLE_NAMES
"""The contract tables, in contract order; each is also the name of an output table."""

OUTPUT_SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "accounts": (
        ("idx", "INTEGER"), ("account_id", "VARCHAR"), ("created_at", "TIMESTAMP"),
        ("email_key", "VARCHAR"), ("phone_key", "VARCHAR"), ("display_name_key", "VARCHAR"),
        ("country", "VARCHAR"), ("signup_ip_key", "VARCHAR"), ("signup_net_key", "VARCHAR"),
        ("signup_net48_key", "VARCHAR"), ("user_agent_key", "VARCHAR"), ("org_key", "VARCHAR"),
    ),
    "payment_instruments": (
        ("idx", "INTEGER"), ("card_key", "VARCHAR"), ("bin_key", "VARCHAR"),
        ("bin_postal_key", "VARCHAR"), ("billing_country", "VARCHAR"), ("added_at", "TIMESTAMP"),
    ),
    "ip_events": (
        ("idx", "INTEGER"), ("ip_key", "VARCHAR"), ("net_key", "VARCHAR"),
        ("net48_key", "VARCHAR"), ("asn", "VARCHAR"), ("seen_at", "TIMESTAMP"),
    ),
    "devices": (("idx", "INTEGER"), ("device_key", "VARCHAR"), ("seen_at", "TIMESTAMP")),
    "interactions": (
        ("idx", "INTEGER"), ("ts", "TIMESTAMP"), ("model", "VARCHAR"), ("prompt_key", "VARCHAR"),
        ("category", "VARCHAR"), ("input_tokens", "BIGINT"), ("output_tokens", "BIGINT"),
    ),
    "observations": (
        ("idx", "INTEGER"), ("kind", "VARCHAR"), ("value_key", "VARCHAR"),
        ("seen_at", "TIMESTAMP"),
    ),
}
"""Columns and DuckDB types of every output table: the hand-off to the signals stage."""


@dataclass(frozen=True)
class _Key:
    """An output column ``lk_hash(namespace, value)``, both SQL over the staging table ``s``.

    ``shared``: values repeat across rows (a device seen a thousand times, a prompt template,
    a BIN), so each distinct value is hashed once and joined back, far cheaper than hashing
    every row when values repeat. Account attributes that are nearly unique (email, phone)
    are hashed per row, where a dictionary would only add work; display names repeat, so
    they are shared.
    """

    namespace: str
    value: str
    shared: bool = True


# The columns of each output table (in OUTPUT_SCHEMAS order) over its staging table ``s``,
# the IP map ``m`` (tables with an IP), the numbering ``i`` of the kept accounts (``_IDS``,
# for accounts) and the output accounts ``a`` (the others, for idx).
_COLUMNS: dict[str, tuple[str | _Key, ...]] = {
    "accounts": (
        "i.idx", "s.account_id",
        "s.created_at", _Key("'email'", "s.email", shared=False),
        _Key("'phone'", "s.phone", shared=False),
        _Key("'display_name'", "s.display_name"), "s.country",
        "m.ip_key", "m.net_key", "m.net48_key",
        _Key("'user_agent'", "s.user_agent"), _Key("'org'", "s.org_id"),
    ),
    "payment_instruments": (
        "a.idx", _Key("'card'", "s.fingerprint"), _Key("'bin'", "s.bin"),
        _Key("'bin_postal'", "s.bin || ' ' || s.billing_postal"),  # NULL if either is
        "s.billing_country", "s.added_at",
    ),
    "ip_events": ("a.idx", "m.ip_key", "m.net_key", "m.net48_key", "s.asn", "s.seen_at"),
    "devices": ("a.idx", _Key("'device'", "s.device_id"), "s.seen_at"),
    "interactions": (
        "a.idx", "s.ts", "s.model", _Key("'prompt'", "s.prompt_fingerprint"), "s.category",
        "s.input_tokens", "s.output_tokens",
    ),
    "observations": ("a.idx", "s.kind", _Key("'obs:' || s.kind", "s.value"), "s.seen_at"),
}
_IP_COLUMN = {"accounts": "signup_ip", "ip_events": "ip"}
_IP_MAP = "_lk_ingest_ipmap"
_IDS = "_lk_ingest_ids"


@dataclass(frozen=True)
class IngestResult:
    """What ingest read and set aside; the run record keeps it."""

    tables: tuple[str, ...]
    """Contract tables present in the input, in contract order."""
    rows_read: dict[str, int]
    """Per present table, every row read (quarantined ones included)."""
    rows_quarantined: dict[str, dict[str, int]]
    """Table → reason → rows set aside; only tables with any; empty in ``fail`` mode."""
    quarantine_sample: list[InputProblem]
    """The first ``quarantine_sample`` quarantined rows, in table, file and row order."""
    input_fingerprint: str
    """SHA-256 hex over ``(relative path, size, SHA-256 of content)`` of every file read."""
    n_accounts: int


# the connection is the engine's own (a DuckDB connection for DuckDB's reader)
Loader = Callable[[Any, TableSpec, list[InputFile], IngestConfig],
                  tuple[list[InputProblem], bool]]
"""Creates a table's staging table from its files (:func:`linkage.ingest.read.load_table`)."""


def ingest(
    con: SQLConnection,
    input_dir: Path,
    cfg: IngestConfig,
    pseudo: Pseudonymiser,
    *,
    known: str | None = None,
    load: Loader | None = None,
) -> IngestResult:
    """Read, validate, normalise and pseudonymise the input folder into ``con``.

    Parameters
    ----------
    con
        DuckDB connection that receives the output tables (:data:`OUTPUT_SCHEMAS`). Its
        ``TimeZone`` is set to UTC.
    input_dir
        The input folder (docs/input.md).
    cfg
        Validation mode and normalisation rules.
    pseudo
        Keyed hash; its ``lk_hash`` macro is (re)installed in ``con``.
    known
        Incremental runs (:mod:`linkage.incremental`): a table ``(account_id, idx)`` in
        ``con`` of accounts from earlier runs, with negative ``idx``. Rows of other tables
        may then name them (and get their negative ``idx``); ``accounts`` may not repeat them.
    load
        How ``con``'s engine reads the files into staging tables; default: DuckDB's
        :func:`~linkage.ingest.read.load_table` (``con`` is then a DuckDB connection).

    Returns
    -------
    IngestResult

    Raises
    ------
    InputError
        The input breaks the contract: in ``fail`` mode any problem, in ``quarantine`` mode a
        file-level one (missing table or column, unreadable file). It lists the first
        ``cfg.max_reported_problems`` problems of *all* files and counts the rest. Nothing
        is left in ``con`` then, except output tables of an earlier call.

    Examples
    --------
    >>> import duckdb, pathlib, tempfile
    >>> from linkage.config import IngestConfig
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "accounts.csv").write_text(
    ...     "account_id,created_at,email\\nb,2024-05-01T10:00:00+02:00,B@x.org\\n"
    ...     "a,2024-05-01,\\n")
    >>> con = duckdb.connect()
    >>> result = ingest(con, folder, IngestConfig(), Pseudonymiser(b"0123456789abcdef"))
    >>> result.n_accounts, result.tables
    (2, ('accounts',))
    >>> con.execute("SELECT idx, account_id, created_at FROM accounts").fetchall()
    [(0, 'a', datetime.datetime(2024, 5, 1, 0, 0)), (1, 'b', datetime.datetime(2024, 5, 1, 8, 0))]
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {str(input_dir)!r} does not exist or is not a folder")
    pseudo.install(con)
    # UTC and row numbers: the engine's reader sees to them (DuckDB's by these settings).
    with in_file_order(con):
        try:
            return _ingest(con, input_dir, cfg, known, load or load_table)
        finally:
            _drop_staging(con)


def _ingest(con: SQLConnection, input_dir: Path, cfg: IngestConfig,
            known: str | None, load: Loader) -> IngestResult:
    found = discover(input_dir)
    file_problems = list(found.problems)
    present = [t for t in TABLES if t in found.files]
    loaded: dict[str, bool] = {}
    for table in TABLES:
        # Absent tables get an empty stage too, so that every later query has its input.
        problems, ok = load(con, SPECS[table], found.files.get(table, []), cfg)
        file_problems += problems
        loaded[table] = ok and table in found.files
    if known is None and loaded["accounts"] and not _count(con, stage_name("accounts")):
        # A full run over no accounts would publish an empty night as the latest one.
        file_problems.append(InputProblem(
            "accounts", _where("accounts", found.files["accounts"]), None, None, None,
            "table 'accounts' has no rows: a full run needs at least one account",
        ))

    _build_ip_map(con)
    validate.create_problem_table(con)
    for table in present:
        validate.check_rows(con, SPECS[table], _IP_MAP, max_chars=cfg.max_field_chars)
    if loaded["accounts"]:
        validate.check_duplicates(con, known)
        for table in present:
            if table != "accounts":
                validate.check_accounts(con, SPECS[table], known)
    quarantine = cfg.on_bad_rows == "quarantine"
    if quarantine and not file_problems:
        validate.quarantine_orphans(con, present)

    summary = validate.summarise(con, found.files, file_problems, cfg)
    if file_problems or (summary.total and not quarantine):
        raise summary.error()
    if not quarantine:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {validate.QUARANTINE} (t INTEGER, f INTEGER, "
                    "r BIGINT)")
    elif known is None and summary.quarantined.get("accounts") and not _count(
        con, f"{stage_name('accounts')} a WHERE NOT EXISTS (SELECT 1 FROM "
        f"{validate.QUARANTINE} q WHERE q.t = 0 AND q.f = a._file AND q.r = a._row)"
    ):
        n = sum(summary.quarantined["accounts"].values())
        raise InputError([InputProblem(
            "accounts", _where("accounts", found.files["accounts"]), None, None, None,
            f"every row of 'accounts' ({n}) was set aside: a full run needs at least one "
            "account",
        ), *summary.listed[: cfg.max_reported_problems - 1]], total=1 + summary.total)

    rows_read = {t: _count(con, stage_name(t)) for t in present}
    for table in TABLES:
        if known is None:
            _build_output(con, table)
        else:
            _build_output(con, table, known=known)
        # A staging table goes as soon as it is used up: less memory, fewer raw values.
        con.execute(f"DROP TABLE {stage_name(table)}")
    n_accounts = _count(con, "accounts")
    for t in present:
        lost = sum(summary.quarantined.get(t, {}).values())
        log.info("%s: %d rows read, %d quarantined", t, rows_read[t], lost)
    return IngestResult(
        tables=tuple(present),
        rows_read=rows_read,
        rows_quarantined=summary.quarantined,
        quarantine_sample=summary.sample,
        input_fingerprint=fingerprint(f for t in present for f in found.files[t]),
        n_accounts=n_accounts,
    )


def _where(table: str, files: list[InputFile]) -> str:
    """How a problem of a whole table names it: its one file, or its folder."""
    if len(files) == 1 and "/" not in files[0].rel:
        return files[0].rel
    return f"{table}/"


def _count(con: SQLConnection, table: str) -> int:
    (n,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
    return int(n)


def _build_ip_map(con: SQLConnection) -> None:
    """Canonicalise and hash every distinct IP text once.

    IPs repeat (an account's events, a NAT's accounts), and parsing IPv6 with string
    functions costs about a microsecond, so the work is done per distinct text and joined
    back; networks repeat even more, so each distinct network is hashed once. ``ip`` is
    ``NULL`` for text that is not an IP address.
    """
    sources = "SELECT DISTINCT raw FROM (" + " UNION ALL ".join(
        f"SELECT {col} AS raw FROM {stage_name(table)}" for table, col in _IP_COLUMN.items()
    ) + ") WHERE raw IS NOT NULL"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_IP_MAP} AS "
        f"WITH p AS (SELECT raw, {nz.ip_sql('raw')} AS ip FROM ({sources})), "
        # Materialised: q feeds three branches, and the IP parse must run once.
        f"q AS MATERIALIZED (SELECT raw, ip, {nz.ip_net_sql('ip')} AS net, "
        f"{nz.ip_net48_sql('ip')} AS net48 FROM p), "
        "n AS (SELECT net, lk_hash('net', net) AS net_key FROM "
        "(SELECT DISTINCT net FROM q WHERE net IS NOT NULL)), "
        "n48 AS (SELECT net48, lk_hash('net48', net48) AS net48_key FROM "
        "(SELECT DISTINCT net48 FROM q WHERE net48 IS NOT NULL)) "
        "SELECT raw, ip, lk_hash('ip', ip) AS ip_key, net_key, net48_key "
        "FROM q LEFT JOIN n USING (net) LEFT JOIN n48 USING (net48)"
    )


def _build_output(con: SQLConnection, table: str, *,
                  known: str | None = None) -> None:
    schema = ", ".join(f"{name} {dtype}" for name, dtype in OUTPUT_SCHEMAS[table])
    con.execute(f"CREATE OR REPLACE TABLE {table} ({schema})")
    stage = stage_name(table)
    t = TABLES.index(table)
    kept = (f"NOT EXISTS (SELECT 1 FROM {validate.QUARANTINE} q "
            f"WHERE q.t = {t} AND q.f = s._file AND q.r = s._row)")
    joins = ""
    order = "ALL"
    if table == "accounts":
        # Numbered apart from the wide rows, which the window would otherwise carry through
        # its sort; idx is unique, so ordering by it is ordering by all columns.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_IDS} AS SELECT _file, _row, (row_number() OVER "
            f"(ORDER BY account_id) - 1)::INTEGER AS idx FROM {stage} s WHERE {kept}"
        )
        joins += f" JOIN {_IDS} i ON i._file = s._file AND i._row = s._row"
        order = "i.idx"
    if table in _IP_COLUMN:
        joins += f" LEFT JOIN {_IP_MAP} m ON m.raw = s.{_IP_COLUMN[table]}"
    if table != "accounts":
        ids = ("accounts" if known is None else
               f"(SELECT idx, account_id FROM accounts UNION ALL "
               f"SELECT idx, account_id FROM {known})")
        joins += f" JOIN {ids} a ON a.account_id = s.account_id"
    select: list[str] = []
    for i, col in enumerate(_COLUMNS[table]):
        if isinstance(col, str):
            select.append(col)
        elif not col.shared:
            select.append(f"lk_hash({col.namespace}, {col.value})")
        else:
            # NULL values find no partner in the dictionary, so their key stays NULL.
            d = f"d{i}"
            joins += (
                f" LEFT JOIN (SELECT n, v, lk_hash(n, v) AS k FROM (SELECT DISTINCT "
                f"{col.namespace} AS n, {col.value} AS v FROM {stage} s WHERE {col.value} "
                f"IS NOT NULL)) {d} ON {d}.n = {col.namespace} AND {d}.v = {col.value}"
            )
            select.append(f"{d}.k")
    con.execute(
        f"INSERT INTO {table} SELECT {', '.join(select)} FROM {stage} s{joins} "
        f"WHERE {kept} ORDER BY {order}"
    )


def _drop_staging(con: SQLConnection) -> None:
    """Drop every ``_lk_ingest_*`` table: they hold raw identifying values."""
    drop_temp_tables(con, "_lk_ingest_", (*map(stage_name, TABLES), validate.PROBLEMS,
                                          validate.QUARANTINE, _IP_MAP, _IDS, "_lk_ingest_lost"))
