"""Row-level checks of the input contract, run as SQL over the staging tables.

Every violation becomes a row of the problems table ``_lk_ingest_problems``: the table number
``t`` (position in :data:`~linkage.ingest.read.TABLE_NAMES`), the file number ``f``, the
1-based data row ``r`` within that file, the check's order ``o`` within a row, the column,
the offending value and a reason from :data:`REASONS`. Problems stay inside DuckDB until they
are summarised, so a file in which every one of ten million rows is bad costs no Python
memory: only the first ``max_reported_problems`` (or ``quarantine_sample``) are fetched.

A row can break several rules; in quarantine mode it is set aside once, counted under its
first reason (by ``o``: the row's own values before its account, columns in contract order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from linkage.config import IngestConfig
from linkage.engines import SQLConnection
from linkage.errors import InputError, InputProblem
from linkage.ingest import normalise as nz
from linkage.ingest.read import TABLE_NAMES, InputFile, TableSpec, stage_name

__all__ = [
    "ACCOUNT_QUARANTINED",
    "BAD_COUNT",
    "BAD_IP",
    "BAD_TIMESTAMP",
    "DUPLICATE",
    "MISSING",
    "PROBLEMS",
    "QUARANTINE",
    "RAW_CARD",
    "REASONS",
    "TIMESTAMP_RANGE",
    "TOO_LONG",
    "UNKNOWN_ACCOUNT",
    "Summary",
    "check_accounts",
    "check_duplicates",
    "check_rows",
    "create_problem_table",
    "quarantine_orphans",
    "shape",
    "summarise",
]

PROBLEMS = "_lk_ingest_problems"
QUARANTINE = "_lk_ingest_quarantine"
"""One row ``(t, f, r)`` per quarantined row: what the output tables leave out."""

MISSING = "required value missing"
BAD_TIMESTAMP = "unparseable timestamp (expected ISO 8601)"
TIMESTAMP_RANGE = "timestamp out of range (expected 1970-01-01 to 2100-12-31 UTC)"
BAD_IP = "invalid IP address (expected IPv4 or IPv6)"
RAW_CARD = "raw card number in fingerprint (expected the processor's token)"
BAD_COUNT = "invalid token count (expected an integer >= 0)"
DUPLICATE = "duplicate account_id"
UNKNOWN_ACCOUNT = "unknown account_id (not in accounts)"
TOO_LONG = "field longer than N characters"
"""N is ``ingest.max_field_chars``; the recorded reason carries the number."""
ACCOUNT_QUARANTINED = "account quarantined (its accounts row was set aside)"
REASONS = (
    MISSING, BAD_TIMESTAMP, TIMESTAMP_RANGE, BAD_IP, RAW_CARD, BAD_COUNT, DUPLICATE,
    UNKNOWN_ACCOUNT, ACCOUNT_QUARANTINED, TOO_LONG,
)
"""Every row-level reason; they are the keys of ``IngestResult.rows_quarantined``."""

# Check order within a row: own values column by column, then the account checks.
_O_DUPLICATE = 900
_O_ACCOUNT = 950


def create_problem_table(con: SQLConnection) -> None:
    """Create (empty) the problems table."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PROBLEMS} (t INTEGER, f INTEGER, r BIGINT, o INTEGER, "
        "col VARCHAR, val VARCHAR, reason VARCHAR)"
    )


def _insert(con: SQLConnection, select: str, params: list[object]) -> None:
    con.execute(f"INSERT INTO {PROBLEMS} {select}", params)


def check_rows(
    con: SQLConnection, spec: TableSpec, ip_map: str, *, max_chars: int = 10_000
) -> None:
    """Required values, timestamps, token counts, IPs, card numbers and lengths of one table.

    ``ip_map`` is a table ``(raw, ip)`` giving the canonical IP (``NULL``: invalid) of every
    distinct IP text in the stage; ``max_chars`` is ``ingest.max_field_chars``.
    """
    t = TABLE_NAMES.index(spec.name)
    stage = stage_name(spec.name)
    for pos, col in enumerate(spec.columns):
        c = f'"{col.name}"'
        o = pos * 10
        head = "SELECT ?, _file, _row, ?, ?, "
        if col.required:
            # A value that is present but unusable has its own, more precise reason.
            unusable = {
                "timestamp": f" AND {col.name}__bad IS NULL",
                "count": f" AND {col.name}__bad IS NULL",
                "card": f" AND NOT {col.name}__card",
            }.get(col.norm, "")
            _insert(
                con, f"{head} NULL, ? FROM {stage} WHERE {c} IS NULL{unusable}",
                [t, o, col.name, MISSING],
            )
        if col.norm == "timestamp":
            _insert(
                con,
                f"{head} {col.name}__bad, CASE WHEN {col.name}__range THEN ? ELSE ? END "
                f"FROM {stage} WHERE {col.name}__bad IS NOT NULL",
                [t, o + 1, col.name, TIMESTAMP_RANGE, BAD_TIMESTAMP],
            )
        elif col.norm == "count":
            _insert(
                con, f"{head} {col.name}__bad, ? FROM {stage} WHERE {col.name}__bad IS NOT NULL",
                [t, o + 1, col.name, BAD_COUNT],
            )
        elif col.norm == "card":
            _insert(
                con, f"{head} ?, ? FROM {stage} WHERE {col.name}__card",
                [t, o + 1, col.name, nz.CARD_REDACTED, RAW_CARD],
            )
        elif col.norm == "ip":
            _insert(
                con,
                f"{head} s.{c}, ? FROM {stage} s JOIN {ip_map} m ON s.{c} = m.raw "
                "WHERE m.ip IS NULL",
                [t, o + 1, col.name, BAD_IP],
            )
        if col.norm not in ("timestamp", "count", "unused"):
            # A raw card number is reported (redacted) as such, never as an overlong value.
            card = f" AND NOT {col.name}__card" if col.norm == "card" else ""
            _insert(
                con, f"{head} {c}, ? FROM {stage} WHERE length({c}) > ?{card}",
                [t, o + 2, col.name, TOO_LONG.replace("N", str(max_chars)), max_chars],
            )


def check_duplicates(con: SQLConnection, known: str | None = None) -> None:
    """Every occurrence of an ``account_id`` after its first (in file, then row order), and
    with ``known`` (a table of ``account_id`` from earlier runs) every one already known."""
    _insert(
        con,
        f"SELECT 0, _file, _row, {_O_DUPLICATE}, 'account_id', account_id, ? FROM ("
        "SELECT _file, _row, account_id, row_number() OVER "
        "(PARTITION BY account_id ORDER BY _file, _row) AS k "
        f"FROM {stage_name('accounts')} s WHERE account_id IS NOT NULL) s WHERE k > 1"
        + (f" OR EXISTS (SELECT 1 FROM {known} o WHERE o.account_id = s.account_id)"
           if known else ""),
        [DUPLICATE],
    )


def check_accounts(con: SQLConnection, spec: TableSpec,
                   known: str | None = None) -> None:
    """Rows of a non-account table whose ``account_id`` is not in ``accounts`` at all (nor in
    ``known``, a table of ``account_id`` from earlier runs, when given)."""
    t = TABLE_NAMES.index(spec.name)
    _insert(
        con,
        f"SELECT ?, _file, _row, {_O_ACCOUNT}, 'account_id', account_id, ? "
        f"FROM {stage_name(spec.name)} s WHERE account_id IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {stage_name('accounts')} a WHERE a.account_id = s.account_id)"
        + (f" AND NOT EXISTS (SELECT 1 FROM {known} o WHERE o.account_id = s.account_id)"
           if known else ""),
        [t, UNKNOWN_ACCOUNT],
    )


def quarantine_orphans(con: SQLConnection, tables: list[str]) -> None:
    """Quarantine mode: rows of other tables whose account exists but was set aside.

    Call after every check of ``accounts``: an account survives when one of its rows has
    no problem (with duplicates flagged, that is its first row, if that row is good).
    """
    acc = stage_name("accounts")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _lk_ingest_lost AS "
        f"SELECT DISTINCT account_id FROM {acc} WHERE account_id IS NOT NULL "
        f"EXCEPT SELECT account_id FROM {acc} a WHERE NOT EXISTS "
        f"(SELECT 1 FROM {PROBLEMS} p WHERE p.t = 0 AND p.f = a._file AND p.r = a._row)"
    )
    for table in tables:
        if table == "accounts":
            continue
        _insert(
            con,
            f"SELECT ?, _file, _row, {_O_ACCOUNT}, 'account_id', account_id, ? "
            f"FROM {stage_name(table)} JOIN _lk_ingest_lost USING (account_id)",
            [TABLE_NAMES.index(table), ACCOUNT_QUARANTINED],
        )
    con.execute("DROP TABLE _lk_ingest_lost")


@dataclass
class Summary:
    """The problems of a run, as the caller reports them."""

    total: int = 0
    listed: list[InputProblem] = field(default_factory=list)
    """File-level problems first, then row-level ones in table, file, row order."""
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    sample: list[InputProblem] = field(default_factory=list)

    def error(self) -> InputError:
        return InputError(self.listed, total=self.total)


def shape(value: str) -> str:
    """A value with every digit replaced by ``9`` and every letter by ``a``.

    Examples
    --------
    >>> shape("10.0.0.300:80"), shape("Ann@Example.com")
    ('99.9.9.999:99', 'aaa@aaaaaaa.aaa')
    """
    return re.sub(r"[^\W\d_]", "a", re.sub(r"\d", "9", value))


def _problem(files: dict[str, list[InputFile]], row: tuple, *, stored: bool) -> InputProblem:
    t, f, r, col, val, reason = row
    table = TABLE_NAMES[t]
    # Any value can be a card number that slid into the wrong column (a shifted CSV row,
    # swapped columns putting card numbers under account_id); hide it.
    value = val if val is None else nz.redact_card_numbers(val)
    if stored and value is not None and col != "account_id":
        # The quarantine sample goes to the store, where identifying values may live only as
        # keyed hashes, and any column of a shifted CSV row can hold an email or an IP. Keep
        # the value's shape ('99.9.9.999', 'aaaaaaaaa'), which still shows what was wrong;
        # the file and row lead to the value itself. A redacted card number stays readable.
        value = nz.CARD_REDACTED.join(map(shape, value.split(nz.CARD_REDACTED)))
    return InputProblem.of_cell(table, files[table][f].rel, col, r, value, reason)


def summarise(
    con: SQLConnection,
    files: dict[str, list[InputFile]],
    file_problems: list[InputProblem],
    cfg: IngestConfig,
) -> Summary:
    """Count the problems and fetch the few that are shown.

    In quarantine mode also fills :data:`QUARANTINE` (one row per quarantined row, with its
    first reason) and counts it per table and reason.
    """
    out = Summary()
    quarantine = cfg.on_bad_rows == "quarantine"
    (rows,) = con.execute(f"SELECT count(*) FROM {PROBLEMS}").fetchone() or (0,)
    if quarantine and file_problems:
        # Only the file-level problems stop a quarantining run; the rows would be set aside.
        rows = 0
    out.total = len(file_problems) + rows
    out.listed = file_problems[: cfg.max_reported_problems]
    room = cfg.max_reported_problems - len(out.listed)
    if room > 0 and rows:
        top = con.execute(
            f"SELECT t, f, r, col, val, reason FROM {PROBLEMS} ORDER BY t, f, r, o LIMIT ?",
            [room],
        ).fetchall()
        out.listed += [_problem(files, row, stored=False) for row in top]
    if not quarantine or file_problems:
        return out
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {QUARANTINE} AS SELECT t, f, r, arg_min(col, o) AS col, "
        "arg_min(val, o) AS val, arg_min(reason, o) AS reason "
        f"FROM {PROBLEMS} GROUP BY t, f, r"
    )
    for t, reason, n in con.execute(
        f"SELECT t, reason, count(*) FROM {QUARANTINE} GROUP BY t, reason ORDER BY t, reason"
    ).fetchall():
        out.quarantined.setdefault(TABLE_NAMES[t], {})[reason] = n
    if cfg.quarantine_sample > 0:
        sample = con.execute(
            f"SELECT t, f, r, col, val, reason FROM {QUARANTINE} ORDER BY t, f, r LIMIT ?",
            [cfg.quarantine_sample],
        ).fetchall()
        out.sample = [_problem(files, row, stored=True) for row in sample]
    return out

