"""Find the input files of each contract table and load them, normalised, into staging tables.

A table is ``NAME.parquet``, ``NAME.csv``, ``NAME.csv.gz`` or a folder ``NAME/`` holding any
number of such files, at any depth (hive-style ``date=…/`` partitions). Each file is read on
its own, so that every problem can name the file and the row within it:

- **CSV** is read with an explicit dialect (comma, double quote, header, UTF-8) and *every
  column as text*; DuckDB's sniffer is off, because it guesses (it once took a ragged second
  line for the header and silently skipped the real one). The header is read here first, to
  give DuckDB the column list. The row number is the ``rowid`` of a table the file was copied
  into alone: insertion order is preserved, so it is the data row within the file.
- **Parquet** keeps its native types; a text column is parsed like CSV text. The row number
  is ``file_row_number + 1``. A file whose rows sit in a few large row groups (DuckDB reads
  one row group per thread) is copied into a table first, so that all threads normalise it.

Every file lands in one staging table per contract table (``_lk_ingest_<table>``) with its
file number ``_file`` (the position of the file in path order), ``_row`` and the normalised
columns (see :data:`SPECS`). Values that fail to parse keep their text in ``<column>__bad`` so
that validation can quote them; a fingerprint that is a raw card number is *not* copied (only
``fingerprint__card`` says it was there).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import logging
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import duckdb

from linkage.config import IngestConfig
from linkage.errors import CardNumberFilter, InputError, InputProblem, shorten
from linkage.ingest import normalise as nz

__all__ = [
    "SPECS",
    "TABLE_NAMES",
    "Column",
    "Discovery",
    "InputFile",
    "TableSpec",
    "discover",
    "fingerprint",
    "load_table",
    "match_columns",
    "quote_identifier",
    "stage_name",
    "stage_select",
]

log = logging.getLogger("linkage.ingest")
log.addFilter(CardNumberFilter())  # the ingest modules' one logger: no line shows a card

Norm = Literal[
    "text", "lower", "upper", "email", "phone", "display_name", "compact", "asn", "ip",
    "card", "timestamp", "count", "unused",
]


@dataclass(frozen=True)
class Column:
    """A contract column and the normalisation its values get (see ``normalise``)."""

    name: str
    norm: Norm = "text"
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A contract table: its columns, required ones first."""

    name: str
    columns: tuple[Column, ...]

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def stage_columns(self) -> list[tuple[str, str]]:
        """``(name, type)`` of the staging table, after ``_file`` and ``_row``."""
        out: list[tuple[str, str]] = []
        for c in self.columns:
            if c.norm == "timestamp":
                out += [(c.name, "TIMESTAMP"), (c.name + "__bad", "VARCHAR"),
                        (c.name + "__range", "BOOLEAN")]
            elif c.norm == "count":
                out += [(c.name, "BIGINT"), (c.name + "__bad", "VARCHAR")]
            elif c.norm == "card":
                out += [(c.name, "VARCHAR"), (c.name + "__card", "BOOLEAN")]
            elif c.norm != "unused":
                out.append((c.name, "VARCHAR"))
        return out


_ACCOUNT = Column("account_id", required=True)
SPECS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec("accounts", (
            _ACCOUNT,
            Column("created_at", "timestamp"),
            Column("email", "email"),
            Column("display_name", "display_name"),
            Column("phone", "phone"),
            Column("country", "upper"),
            Column("signup_ip", "ip"),
            Column("user_agent"),
            Column("org_id"),
        )),
        TableSpec("payment_instruments", (
            _ACCOUNT,
            Column("fingerprint", "card", required=True),
            Column("bin", "compact"),
            Column("last4", "unused"),  # not a linking signal; never stored
            Column("billing_postal", "compact"),
            Column("billing_country", "upper"),
            Column("added_at", "timestamp"),
        )),
        TableSpec("ip_events", (
            _ACCOUNT,
            Column("ip", "ip", required=True),
            Column("seen_at", "timestamp", required=True),
            Column("asn", "asn"),
        )),
        TableSpec("devices", (
            _ACCOUNT,
            Column("device_id", required=True),
            Column("seen_at", "timestamp"),
        )),
        TableSpec("interactions", (
            _ACCOUNT,
            Column("ts", "timestamp", required=True),
            Column("model"),
            Column("prompt_fingerprint"),
            Column("category", "lower"),
            Column("input_tokens", "count"),
            Column("output_tokens", "count"),
        )),
        TableSpec("observations", (
            _ACCOUNT,
            Column("kind", "lower", required=True),
            Column("value", required=True),
            Column("seen_at", "timestamp"),
        )),
    )
}
"""The contract's tables (docs/input.md), in contract order."""

TABLE_NAMES: tuple[str, ...] = tuple(SPECS)

Form = Literal["parquet", "csv", "csv.gz"]
_SUFFIXES: tuple[tuple[str, Form], ...] = (
    (".parquet", "parquet"), (".csv.gz", "csv.gz"), (".csv", "csv"),
)
_MAX_HEADER_BYTES = 1 << 20
_CHUNK = 1 << 20
_COPY_MIN_ROWS = 2 * 122_880
"""Rows below which a Parquet file is normalised straight from the file: a copy of fewer rows
than two of DuckDB's row groups (122,880 rows each) would not be shared among threads."""


@dataclass(frozen=True)
class InputFile:
    """One data file of a contract table."""

    table: str
    path: Path
    rel: str
    """Path relative to the input folder, with ``/``: what messages show."""
    form: Form
    number: int = 0
    """Position in path order within its table: the ``_file`` of its staged rows."""


@dataclass
class Discovery:
    """What :func:`discover` found."""

    files: dict[str, list[InputFile]] = field(default_factory=dict)
    """Present contract tables and their files (possibly none, for an empty folder)."""
    problems: list[InputProblem] = field(default_factory=list)


def stage_name(table: str) -> str:
    """Name of the staging table of a contract table."""
    return f"_lk_ingest_{table}"


def _form_of(name: str) -> tuple[str, Form] | None:
    for suffix, form in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], form
    return None


def discover(input_dir: Path) -> Discovery:
    """List the data files of every contract table in ``input_dir``.

    Unknown entries are ignored and logged at INFO (a ``truth.csv`` beside the input is
    normal); inside a table folder, names starting with ``_`` or ``.`` are the markers and
    checksums of Spark and Hadoop (``_SUCCESS``, ``.part-0.crc``) and are skipped silently.

    Symbolic links are followed, to files and to folders (a partition linked in from
    elsewhere is read like any other). Every data file must be a regular file: a link that
    leads nowhere (dangling, or a loop), a folder that contains itself through a link, a file
    or folder reached twice (its rows would count twice), a FIFO, socket or device is a
    problem naming the path, and none of them is ever opened.
    """
    found = Discovery()
    forms: dict[str, list[tuple[str, Path]]] = {}
    try:
        listing = sorted(input_dir.iterdir())
    except OSError as exc:
        raise InputError(
            f"input folder {str(input_dir)!r} cannot be read: {exc.strerror or exc}"
        ) from None
    for entry in listing:
        if entry.name.startswith("."):
            continue
        table = entry.name if entry.name in SPECS else None
        parsed = _form_of(entry.name)
        if table is None and parsed is not None and parsed[0] in SPECS:
            table = parsed[0]
        if table is None:
            log.info("ignoring %s in the input folder: not a contract table", entry.name)
            continue
        kind, problem = _kind(entry)
        if kind == "dir" and entry.name == table:
            forms.setdefault(table, []).append((entry.name + "/", entry))
        elif kind == "file" and entry.name != table:
            forms.setdefault(table, []).append((entry.name, entry))
        elif problem is not None:
            found.problems.append(InputProblem(table, entry.name, None, None, None, problem))
            forms.setdefault(table, [])
        else:
            log.info("ignoring %s in the input folder: not a contract table", entry.name)
    for table in TABLE_NAMES:
        entries = forms.get(table, [])
        if len(entries) > 1:
            names = ", ".join(name for name, _ in entries)
            found.problems.append(InputProblem(
                table, names, None, None, None,
                f"table {table!r} is given in more than one form ({names}); keep one",
            ))
        elif entries:
            found.files[table] = _files_of(table, entries[0][1], input_dir, found.problems)
    if "accounts" not in forms:
        found.problems.append(InputProblem(
            "accounts", "accounts", None, None, None,
            "required table 'accounts' is missing (expected accounts.parquet, accounts.csv, "
            "accounts.csv.gz or a folder accounts/)",
        ))
    return found


def _kind(path: Path) -> tuple[Literal["file", "dir"] | None, str | None]:
    """``("file" | "dir", None)`` for a regular file or a folder (through links), else
    ``(None, reason)``: why ``path`` cannot be read as input. Never opens ``path``."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            return None, "a symbolic link that leads nowhere (its target is missing, or a loop)"
        return None, f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return "file", None
    if stat.S_ISDIR(mode):
        return "dir", None
    what = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
    return None, f"not a regular file ({what}); only regular files are read"


def _files_of(table: str, path: Path, root: Path,
              problems: list[InputProblem]) -> list[InputFile]:
    """The data files of ``table`` at ``path`` (a file or a folder, walked in path order);
    every path that cannot be read safely is appended to ``problems`` instead."""
    if path.name != table:  # a file, checked by the caller
        parsed = _form_of(path.name)
        assert parsed is not None
        return [InputFile(table, path, path.relative_to(root).as_posix(), parsed[1])]
    found: list[tuple[str, Path, Form]] = []
    seen: dict[tuple[int, int], str] = {}

    def problem(rel: str, reason: str) -> None:
        problems.append(InputProblem(table, rel, None, None, None, reason))

    def walk(folder: Path, ancestors: tuple[tuple[int, int], ...]) -> None:
        try:
            children = sorted(folder.iterdir())
        except OSError as exc:
            problem(folder.relative_to(root).as_posix() + "/",
                    f"folder cannot be read: {exc.strerror or exc}")
            return
        for child in children:
            if child.name.startswith(("_", ".")):
                continue
            rel = child.relative_to(root).as_posix()
            parsed = _form_of(child.name)
            kind, reason = _kind(child)
            if kind is None:
                # A dangling link may have been a partition folder: its rows would be lost.
                if parsed is not None or child.is_symlink():
                    problem(rel, str(reason))
                else:
                    log.info("ignoring %s: not a .parquet, .csv or .csv.gz file", rel)
                continue
            if kind == "file" and parsed is None:
                log.info("ignoring %s: not a .parquet, .csv or .csv.gz file", rel)
                continue
            st = child.stat()
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                problem(rel + "/", "a symbolic link to a folder that contains it (a loop)")
                continue
            if key in seen:
                problem(rel + ("/" if kind == "dir" else ""),
                        f"the same {'folder' if kind == 'dir' else 'file'} as {seen[key]} "
                        "(reached twice through a link): its rows would be read twice")
                continue
            seen[key] = rel + ("/" if kind == "dir" else "")
            if kind == "dir":
                walk(child, (*ancestors, key))
            else:
                assert parsed is not None
                found.append((rel, child, parsed[1]))

    top = path.stat()
    walk(path, ((top.st_dev, top.st_ino),))
    # Path order, as pathlib sorts: part by part.
    out = [InputFile(table, p, rel, form, i) for i, (rel, p, form) in
           enumerate(sorted(found, key=lambda x: PurePosixPath(x[0]).parts))]
    if not out:
        log.warning("table folder %s/ holds no data files: table %r is empty", table, table)
    return out


def fingerprint(files: Iterable[InputFile]) -> str:
    """SHA-256 over ``(relative path, size, SHA-256 of content)`` of each file, in path order.

    Records exactly which bytes a run read; the files are streamed, never held in memory.
    """
    outer = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        inner = hashlib.sha256()
        size = 0
        try:
            with f.path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    inner.update(chunk)
                    size += len(chunk)
        except OSError as exc:  # removed or replaced since it was read
            raise InputError([InputProblem(
                f.table, f.rel, None, None, None, f"cannot be read: {exc.strerror or exc}"
            )]) from None
        outer.update(f"{f.rel}\0{size}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


# --- loading ---------------------------------------------------------------------------------


class _FileProblem(Exception):
    """A file cannot be used at all; carries the reason."""


def _duckdb_reason(exc: Exception, f: InputFile) -> str:
    """DuckDB's message, cut to its first paragraph (the rest is advice on reader options
    and a dump of the reader's settings), with the absolute path made relative and any card
    number that the message quotes from the file hidden."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        if not line.strip() or line.startswith(("Possible", "LINE ")):
            if lines:
                break
            continue
        if not line.startswith("Original Line:"):  # the raw line: every value on it
            lines.append(line.strip())
    # "Invalid Input Error: CSV Error on Line: 3" says "error" once too often.
    text = re.sub(r"^[A-Za-z ]+ Error: ", "", " ".join(lines)).replace(str(f.path), f.rel)
    text = nz.redact_card_numbers(text)
    return text if len(text) <= 300 else text[:299] + "…"


def _csv_header(f: InputFile) -> list[str] | None:
    """Column names from the first line, or ``None`` for an empty file."""
    opener = gzip.open if f.form == "csv.gz" else open
    try:
        with opener(f.path, "rb") as fh:
            line = fh.readline(_MAX_HEADER_BYTES)
            if not line:
                return None
            if not line.endswith(b"\n") and fh.read(1):
                raise _FileProblem(
                    f"not a CSV file: no line break in the first {_MAX_HEADER_BYTES} bytes"
                )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _FileProblem(f"not a gzip-compressed CSV file ({exc})") from None
    except OSError as exc:
        raise _FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _FileProblem("not a CSV file: the header line is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise _FileProblem("not a CSV file: the header line holds control characters")
    return next(csv.reader([text]), [])


def _describe(con: duckdb.DuckDBPyConnection, f: InputFile) -> list[tuple[str, str]] | None:
    """``(name, DuckDB type)`` of every column of ``f``; ``None`` for an empty CSV file."""
    if f.form == "parquet":
        path = nz.sql_string(str(f.path))
        try:
            rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()
            schema = con.execute(
                f"SELECT name, num_children FROM parquet_schema({path})"
            ).fetchall()
        except duckdb.Error as exc:
            raise _FileProblem(f"not a readable Parquet file: {_duckdb_reason(exc, f)}") from None
        # The file's own names: DuckDB renames a repeated one (created_at_1), which would
        # hide it. They differ from DuckDB's only for such a repeat, which is refused, or an
        # empty name, which no contract column has: the matched names are DuckDB's too.
        names = _top_level_names(schema)
        if len(names) != len(rows):
            raise _FileProblem("not a readable Parquet file: its schema cannot be read")
        return [(name, r[1]) for name, r in zip(names, rows, strict=True)]
    header = _csv_header(f)
    return None if header is None else [(name, "VARCHAR") for name in header]


def _top_level_names(schema: list[tuple[str, int | None]]) -> list[str]:
    """The top-level column names of a Parquet schema, flattened depth first as DuckDB's
    ``parquet_schema`` lists it: the root, then each node followed by its descendants."""
    names: list[str] = []
    i = 1
    while i < len(schema):
        names.append(schema[i][0])
        pending = 1
        while pending:  # skip the node and all its descendants
            pending += (schema[i][1] or 0) - 1
            i += 1
    return names


def _is_nested(dtype: str) -> bool:
    return dtype.endswith("]") or dtype.startswith(("STRUCT", "MAP", "UNION"))


_TIMESTAMP_TYPES = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE")
_NATIVE_TIMES = (*_TIMESTAMP_TYPES, "TIMESTAMP WITH TIME ZONE")
_INT_TYPES = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
)


def _column_sql(
    col: Column, src: str | None, dtype: str, cfg: IngestConfig
) -> tuple[str, str, list[tuple[str, str]]]:
    """The three query levels of one column: source → text ``t``, text → parsed ``p``,
    parsed → stage columns. ``src`` is the quoted source column (``None``: absent)."""
    t = f'"t_{col.name}"'
    p = f'"p_{col.name}"'
    # Native Parquet timestamps and integers are taken as they are; anything else is text.
    native = True
    if src is None:
        level1 = "NULL::VARCHAR"
        native = False
    elif dtype in {"timestamp": _NATIVE_TIMES, "count": _INT_TYPES}.get(col.norm, ()):
        level1 = src
    else:
        level1 = nz.clean_text_sql(src)
        native = False
    bad = f"CASE WHEN {p} IS NULL AND {t} IS NOT NULL THEN {t}::VARCHAR END"
    match col.norm:
        case "timestamp":
            if not native:
                level2 = nz.timestamp_sql(t)
            elif dtype == "TIMESTAMP WITH TIME ZONE":
                # An instant's microseconds since 1970 are its UTC time: no time-zone lookup
                # per value (an infinite instant becomes NULL: out of range either way).
                level2 = f"make_timestamp(epoch_us({t}))"
            else:  # a DATE or TIMESTAMP beyond TIMESTAMP's range is NULL: out of range
                level2 = f"TRY_CAST({t} AS TIMESTAMP)"
            inside = nz.timestamp_in_range_sql(p)
            # Text that parses, or any native value, outside the contract's range.
            outside = (f"({t} IS NOT NULL AND NOT coalesce({inside}, false))" if native
                       else f"({p} IS NOT NULL AND NOT {inside})")
            return level1, level2, [
                (col.name, f"CASE WHEN {inside} THEN {p} END"),
                (col.name + "__bad",
                 f"CASE WHEN {t} IS NOT NULL AND NOT coalesce({inside}, false) "
                 f"THEN {t}::VARCHAR END"),
                (col.name + "__range", outside),
            ]
        case "count":
            level2 = (
                f"CASE WHEN {t} >= 0 AND {t} <= 9223372036854775807 THEN {t}::BIGINT END"
                if native else nz.count_sql(t)
            )
            return level1, level2, [(col.name, p), (col.name + "__bad", bad)]
        case "card":
            # The raw card number stops here: the stage keeps only the flag.
            value = f"CASE WHEN {p} THEN NULL ELSE {t} END"
            return level1, nz.card_number_sql(t), [(col.name, value), (col.name + "__card", p)]
        case "email":
            level2 = nz.email_sql(
                t, cfg.email_ignore_dots, cfg.email_ignore_plus, cfg.email_domain_aliases
            )
        case "phone":
            level2 = nz.phone_sql(t)
        case "display_name":
            level2 = nz.display_name_sql(t)
        case "compact":
            level2 = nz.compact_sql(t)
        case "asn":
            level2 = nz.asn_sql(t)
        case "lower":
            level2 = f"lower({t})"
        case "upper":
            level2 = f"upper({t})"
        case _:  # text, ip (canonicalised once per distinct value, later)
            level2 = t
    return level1, level2, [(col.name, p)]


def match_columns(
    spec: TableSpec, f: InputFile, columns: list[tuple[str, str]]
) -> tuple[dict[str, tuple[int, str]], list[str], list[InputProblem]]:
    """Map contract columns to the file's columns (by name, ignoring case and surrounding
    whitespace); returns the map to ``(position, type)``, the unknown names and problems."""
    known = {c.name for c in spec.columns}
    unused = {c.name for c in spec.columns if c.norm == "unused"}
    matched: dict[str, tuple[int, str]] = {}
    unknown: list[str] = []
    problems: list[InputProblem] = []
    seen: set[str] = set()
    for i, (name, dtype) in enumerate(columns):
        key = name.strip(nz.WHITESPACE).lower()
        if key in seen:
            # Any repeat, of a contract column or not: which one was meant is a guess.
            if not any(p.column == key for p in problems):
                problems.append(InputProblem(
                    spec.name, f.rel, key, None, None, f"column {key!r} appears more than once"
                ))
            matched.pop(key, None)
            continue
        seen.add(key)
        if key not in known:
            unknown.append(name)
        elif key in unused:
            continue
        elif _is_nested(dtype):
            problems.append(InputProblem(
                spec.name, f.rel, key, None, shorten(dtype),
                f"column {key!r} has the nested type {dtype}; expected a scalar",
            ))
        else:
            matched[key] = (i, dtype)
    found = ", ".join(repr(name) for name, _ in columns) or "none"
    for req in spec.required:
        if req not in matched and not any(p.column == req for p in problems):
            problems.append(InputProblem(
                spec.name, f.rel, req, None, None,
                f"required column {req!r} is missing (columns found: {found})",
            ))
    for col in spec.columns:
        if col.norm in ("timestamp", "count") and col.name in matched:
            dtype = matched[col.name][1]
            allowed = (
                ("VARCHAR", "TIMESTAMP WITH TIME ZONE", *_TIMESTAMP_TYPES)
                if col.norm == "timestamp"
                else ("VARCHAR", "FLOAT", "DOUBLE", *_INT_TYPES)
            )
            if dtype not in allowed and not dtype.startswith("DECIMAL"):
                what = "a timestamp or ISO 8601 text" if col.norm == "timestamp" else "an integer"
                problems.append(InputProblem(
                    spec.name, f.rel, col.name, None, shorten(dtype),
                    f"column {col.name!r} has type {dtype}; expected {what}",
                ))
    return matched, unknown, problems


def load_table(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    files: list[InputFile],
    cfg: IngestConfig,
) -> tuple[list[InputProblem], bool]:
    """Create the staging table of ``spec`` and load ``files`` into it.

    Returns the file-level problems and whether every file loaded. Unknown columns are logged
    once per table at INFO.
    """
    stage = stage_name(spec.name)
    cols = ", ".join(f'"{n}" {t}' for n, t in spec.stage_columns())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} (_file INTEGER, _row BIGINT, {cols})")
    problems: list[InputProblem] = []
    for f, columns, matched in matching_files(con, spec, files, problems):
        try:
            _insert(con, spec, f, columns, matched, cfg, stage)
        except _FileProblem as exc:
            problems.append(InputProblem(spec.name, f.rel, None, None, None, str(exc)))
        except duckdb.Error as exc:
            problems.append(_unreadable(spec, f, exc) if f.form == "parquet"
                            else _csv_problem(con, spec, f, columns, cfg, exc))
        finally:
            con.execute("DROP TABLE IF EXISTS _lk_ingest_raw")
    return problems, not problems


def matching_files(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    files: list[InputFile],
    problems: list[InputProblem],
) -> Iterator[tuple[InputFile, list[tuple[str, str]], dict[str, tuple[int, str]]]]:
    """The files of ``spec`` whose columns (CSV header, Parquet footer, read through ``con``)
    meet the contract, each with its columns and :func:`match_columns`' match.

    Empty files are skipped; every other file's problems are appended to ``problems``.
    Columns not in the contract are logged once per table, at INFO, when the files are
    exhausted. Both engines' readers take their files from here, so they report the same
    file-level problems.
    """
    unknown: dict[str, None] = {}
    for f in files:
        try:
            columns = _describe(con, f)
        except _FileProblem as exc:
            problems.append(InputProblem(spec.name, f.rel, None, None, None, str(exc)))
            continue
        except duckdb.Error as exc:
            problems.append(_unreadable(spec, f, exc))
            continue
        if columns is None:
            log.info("%s is empty: no rows", f.rel)
            continue
        matched, extra, file_problems = match_columns(spec, f, columns)
        unknown.update(dict.fromkeys(extra))
        if file_problems:
            problems += file_problems
            continue
        yield f, columns, matched
    if unknown:
        log.info(
            "%s: ignoring columns not in the contract: %s",
            spec.name, ", ".join(map(repr, unknown)),
        )


def _unreadable(spec: TableSpec, f: InputFile, exc: duckdb.Error) -> InputProblem:
    what = "Parquet" if f.form == "parquet" else "CSV"
    return InputProblem(spec.name, f.rel, None, None, None,
                        f"cannot read as {what}: {_duckdb_reason(exc, f)}")


def _insert(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    f: InputFile,
    columns: list[tuple[str, str]],
    matched: dict[str, tuple[int, str]],
    cfg: IngestConfig,
    stage: str,
) -> None:
    path = nz.sql_string(str(f.path))
    if f.form == "parquet":
        names = {c: quote_identifier(columns[i][0]) for c, (i, _) in matched.items()}
        read = f"read_parquet({path}, file_row_number = true, hive_partitioning = false)"
        if _one_thread(con, path):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _lk_ingest_raw AS SELECT file_row_number + 1 "
                f"AS _lk_row, {', '.join(names.values())} FROM {read}"
            )
            source = "_lk_ingest_raw"
        else:
            source = f"(SELECT file_row_number + 1 AS _lk_row, * FROM {read})"
    else:
        picked = ", ".join(f"c{i}" for i, _ in matched.values())
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _lk_ingest_raw AS SELECT {picked} "
            f"FROM {_read_csv_sql(f, len(columns), cfg)}"
        )
        source = "(SELECT rowid + 1 AS _lk_row, * FROM _lk_ingest_raw)"
        names = {c: f"c{i}" for c, (i, _) in matched.items()}
    targets, select = stage_select(spec, matched, names, cfg, source, str(f.number))
    con.execute(f"INSERT INTO {stage} ({', '.join(targets)}) {select}")


def _one_thread(con: duckdb.DuckDBPyConnection, path: str) -> bool:
    """Whether a Parquet file keeps most of DuckDB's threads idle while it is normalised.

    DuckDB reads a Parquet file one row group per thread, and writers often put a million
    rows in a row group: a file whose largest row group holds half as much again as a
    thread's share of its rows would be normalised mostly by one thread. Such a file is
    first copied as it is into a table (DuckDB's row groups are small), which all threads
    then normalise.
    """
    rows, largest = con.execute(
        "SELECT sum(n), max(n) FROM (SELECT DISTINCT row_group_id, row_group_num_rows AS n "
        f"FROM parquet_metadata({path}))"
    ).fetchone() or (None, None)
    (threads,) = con.execute("SELECT current_setting('threads')").fetchone() or (1,)
    return bool(rows) and rows >= _COPY_MIN_ROWS and 2 * int(largest) * int(threads) > 3 * rows


def _read_csv_sql(f: InputFile, n_columns: int, cfg: IngestConfig,
                  encoding: str = "utf-8") -> str:
    """DuckDB's ``read_csv`` of ``f`` in the contract's dialect, every column as text under a
    positional name (``c0``, ``c1`` …, which keeps odd header text out of the SQL)."""
    struct = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n_columns))
    return (
        f"read_csv({nz.sql_string(str(f.path))}, header = true, auto_detect = false, "
        f"columns = {{{struct}}}, delim = ',', quote = '\"', escape = '\"', comment = '', "
        f"skip = 0, strict_mode = true, null_padding = false, encoding = '{encoding}', "
        f"max_line_size = {int(cfg.max_line_bytes)}, "
        f"compression = '{'gzip' if f.form == 'csv.gz' else 'none'}', "
        "hive_partitioning = false)"
    )


_CSV_LINE = re.compile(r"CSV Error on Line: ([0-9]+)")


def _csv_problem(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, f: InputFile,
    columns: list[tuple[str, str]], cfg: IngestConfig, exc: duckdb.Error,
) -> InputProblem:
    """The first unreadable line of a CSV file that DuckDB refused, located.

    DuckDB's message is kept without its quote of the raw line (every email and IP on it);
    its line number counts records from the header, so the data row is one less. A line
    that is not UTF-8 is read once more as Latin-1 (every byte a character, the same fields)
    to find the column, and the problem shows that one value, shortened like any value.
    """
    problem = _unreadable(spec, f, exc)
    found = _CSV_LINE.search(str(exc))
    if found is None:
        return problem
    row = int(found.group(1)) - 1
    problem = dataclasses.replace(problem, row=row)
    if "Invalid unicode" not in str(exc) or row < 1:
        return problem
    try:
        fields = con.execute(
            f"SELECT * FROM {_read_csv_sql(f, len(columns), cfg, 'latin-1')} LIMIT 1 OFFSET ?",
            [row - 1],
        ).fetchone()
    except duckdb.Error:
        return problem
    for i, text in enumerate(fields or ()):
        raw = (text or "").encode("latin-1")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return InputProblem(
                spec.name, f.rel, columns[i][0].strip(nz.WHITESPACE).lower(), row,
                shorten(raw.decode("utf-8", "replace")),
                f"cannot read as CSV: CSV Error on Line: {row + 1}: not UTF-8 text "
                "(a CSV file must be UTF-8)",
            )
    return problem


def stage_select(
    spec: TableSpec,
    matched: dict[str, tuple[int, str]],
    names: dict[str, str],
    cfg: IngestConfig,
    source: str,
    file: str,
) -> tuple[list[str], str]:
    """The staging columns of one file and the SELECT that fills them (any engine).

    ``source`` is a relation with the data row number ``_lk_row`` and the file's columns,
    ``names`` the SQL name in ``source`` of each matched contract column, ``file`` the SQL of
    the file number (``_file``). Normalisation is three levels of SELECT: source → text,
    text → parsed, parsed → staging columns.
    """
    level1 = ["_lk_row", f"{file} AS _lk_file"]
    level2, level3, targets = ["_lk_row", "_lk_file"], ["_lk_file", "_lk_row"], []
    for col in spec.columns:
        if col.norm == "unused":
            continue
        src = names.get(col.name)
        dtype = matched[col.name][1] if col.name in matched else "VARCHAR"
        l1, l2, outs = _column_sql(col, src, dtype, cfg)
        level1.append(f'{l1} AS "t_{col.name}"')
        level2 += [f'"t_{col.name}"', f'{l2} AS "p_{col.name}"']
        for name, expr in outs:
            targets.append(f'"{name}"')
            level3.append(expr)
    return ["_file", "_row", *targets], (
        f"SELECT {', '.join(level3)} FROM (SELECT {', '.join(level2)} FROM "
        f"(SELECT {', '.join(level1)} FROM {source}))"
    )


def quote_identifier(name: str) -> str:
    """``name`` as an SQL identifier in double quotes (a quote inside doubled)."""
    return '"' + name.replace('"', '""') + '"'

