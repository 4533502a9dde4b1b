"""Evaluate a run's flagged accounts against a truth file.

A truth file is a CSV with the columns ``account_id,group_id``; ``group_id`` is empty for a
legitimate account and names the operator group otherwise (CONTRACT.md, section 2). An
account missing from the truth file counts as legitimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from linkage.errors import InputError, InputProblem, shorten

__all__ = ["Evaluation", "evaluate_flagged", "read_truth"]


@dataclass(frozen=True)
class Evaluation:
    """Account-level quality of the flagged set."""

    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    operator_accounts: int
    legitimate_accounts: int
    false_positive_rate: float
    """Flagged legitimate accounts / legitimate accounts (those the truth file marks
    legitimate plus flagged accounts it does not list)."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def read_truth(path: Path) -> pa.Table:
    """Read and validate a truth file; returns ``account_id, group_id`` (group_id null for
    legitimate accounts)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"truth file {str(path)!r} does not exist")
    con = duckdb.connect()
    try:
        try:
            table = con.sql(
                "SELECT * FROM read_csv(?, header = true, all_varchar = true, delim = ',', "
                "quote = '\"', escape = '\"')",
                params=[str(path)],
            ).to_arrow_table()
            cols = table.column_names
        except duckdb.Error as exc:
            raise InputError(f"{path.name}: not a readable CSV file ({exc})") from None
        missing = [c for c in ("account_id", "group_id") if c not in cols]
        if missing:
            raise InputError([InputProblem(
                "truth", path.name, missing[0], None, None,
                f"missing required column; found columns {cols}")])
        con.register("truth_in", table)
        problems = [
            InputProblem("truth", path.name, "account_id", int(row), shorten(value), reason)
            for row, value, reason in con.execute(
                """
                WITH t AS (SELECT row_number() OVER () AS row, trim(account_id) AS account_id
                           FROM truth_in)
                SELECT row, account_id, 'missing account_id' FROM t
                WHERE account_id IS NULL OR account_id = ''
                UNION ALL
                SELECT row, account_id, 'duplicate account_id' FROM (
                    SELECT *, row_number() OVER (PARTITION BY account_id ORDER BY row) AS k
                    FROM t WHERE account_id <> '') WHERE k > 1
                ORDER BY 1 LIMIT 50
                """
            ).fetchall()
        ]
        if problems:
            raise InputError(problems)
        return con.sql(
            """
            SELECT trim(account_id) AS account_id, nullif(trim(group_id), '') AS group_id
            FROM truth_in
            """
        ).to_arrow_table()
    finally:
        con.close()


def evaluate_flagged(truth: pa.Table, memberships: pa.Table) -> Evaluation:
    """Compare flagged accounts of ``memberships`` (``account_id``, ``flagged``) with
    ``truth`` (``account_id``, ``group_id``)."""
    con = duckdb.connect()
    try:
        con.register("truth", truth)
        con.register("m", memberships)
        row = con.execute(
            """
            WITH flagged AS (SELECT DISTINCT account_id FROM m WHERE flagged),
            ops AS (SELECT account_id FROM truth WHERE group_id IS NOT NULL)
            SELECT
              (SELECT count(*) FROM flagged SEMI JOIN ops USING (account_id)) AS tp,
              (SELECT count(*) FROM flagged ANTI JOIN ops USING (account_id)) AS fp,
              (SELECT count(*) FROM ops ANTI JOIN flagged USING (account_id)) AS fn,
              (SELECT count(*) FROM ops) AS n_ops,
              -- an account the truth file does not list counts as legitimate
              (SELECT count(*) FROM truth WHERE group_id IS NULL)
                + (SELECT count(*) FROM flagged ANTI JOIN truth USING (account_id)) AS n_legit
            """
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    tp, fp, fn, n_ops, n_legit = (int(v) for v in row)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Evaluation(
        precision=round(precision, 4), recall=round(recall, 4), f1=round(f1, 4),
        true_positives=tp, false_positives=fp, false_negatives=fn,
        operator_accounts=n_ops, legitimate_accounts=n_legit,
        false_positive_rate=round(fp / n_legit, 6) if n_legit else 0.0,
    )
