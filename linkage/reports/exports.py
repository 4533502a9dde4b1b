"""Spreadsheet-safe CSV exports.

Account ids, names and reasons can carry text written by the people linkage hunts. A cell
that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets (CSV injection); such cells are prefixed with a single
quote, the neutralisation OWASP recommends. Done column-wise with Arrow compute.

JSON and Parquet carry the same columns as the CSV, values as stored (no neutralising: they
are read by programs, not spreadsheets).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["FORMATS", "safe_text_column", "write_csv", "write_memberships", "write_table"]

FORMATS = ("csv", "json", "parquet")

_FORMULA_START = r"^[=+\-@\t\r]"


def safe_text_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Prefix ``'`` to every string that a spreadsheet would run as a formula."""
    risky = pc.match_substring_regex(column, _FORMULA_START)
    return pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)


def write_csv(table: pa.Table, out: Path) -> None:
    """Write ``table`` as CSV with a header, neutralising formulas in every text column."""
    cols = [
        safe_text_column(col) if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        else col
        for col in table.columns
    ]
    safe = pa.table(cols, names=table.column_names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    pacsv.write_csv(safe, tmp, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    tmp.replace(out)  # a reader never sees a half-written export


def write_memberships(memberships: pa.Table, out: Path) -> int:
    """Write the contract's memberships CSV: ``account_id,cluster_id,cluster_score,flagged``
    (plus any further columns given); returns the number of rows."""
    write_csv(memberships, out)
    return memberships.num_rows


def write_table(table: pa.Table, out: Path, fmt: str = "csv") -> int:
    """Write ``table`` as ``csv`` (spreadsheet-safe), ``json`` (an array of objects) or
    ``parquet``; atomically (a reader never sees half a file). Returns the number of rows."""
    if fmt == "csv":
        write_csv(table, out)
        return table.num_rows
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if fmt == "json":
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(table.to_pylist(), f, default=str, ensure_ascii=False, indent=1)
            f.write("\n")
    else:
        pq.write_table(table, tmp)
    tmp.replace(out)
    return table.num_rows
