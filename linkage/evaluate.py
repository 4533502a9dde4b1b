"""Evaluate a run's flagged accounts against a truth file.

A truth file is a CSV with the columns ``account_id,group_id``; ``group_id`` is empty for a
legitimate account and names the operator group otherwise (docs/input.md). An
account missing from the truth file counts as legitimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from linkage.errors import InputError, InputProblem

__all__ = ["Evaluation", "adjusted_rand", "evaluate_flagged", "read_truth"]


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
    groups: int = 0
    """Operator groups in the truth file."""
    groups_detected: int = 0
    """Groups with at least one flagged account."""
    group_recall_min: float = 0.0
    group_recall_median: float = 0.0
    """Per operator group: the share of its accounts flagged (smallest and median)."""
    fragmentation: float = 0.0
    """Mean number of flagged clusters a detected group's flagged accounts fall into (1 is
    ideal: one case per operator)."""
    adjusted_rand: float = 0.0
    """Adjusted Rand index between true groups and predicted clusters over the flagged
    accounts (a flagged legitimate account is its own true group)."""
    precision_at_k: dict[str, float] = field(default_factory=dict)
    """For k in 10, 50, 100: the share of the k top-scored clusters whose members are mostly
    operators (``"10": 1.0``)."""
    cluster_purity: float = 0.0
    """Share of flagged accounts whose flagged cluster's majority true group (operator group,
    or legitimate) is their own."""
    campaign_fragmentation: float = 0.0
    """As ``fragmentation``, counting campaigns instead of clusters (a flagged cluster with no
    ``campaign_id`` is a campaign of its own); equal to it without campaign ids."""
    campaign_purity: float = 0.0
    """As ``cluster_purity``, over campaigns: below it when a campaign joins clusters of
    different groups."""
    campaigns_joining_groups: int = 0
    """Campaigns whose clusters' majority groups are two or more different operator groups."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def display_rows(self) -> list[tuple[str, str]]:
        """(label, formatted value) pairs for a table."""
        rows = []
        for key, value in self.as_dict().items():
            if isinstance(value, dict):
                text = ", ".join(f"{k}: {v:.2f}" for k, v in value.items()) or "-"
                label = "precision at k (top clusters)"
            elif isinstance(value, int):
                text, label = f"{value:,}", key.replace("_", " ")
            else:
                text = f"{value:.4f}" if value >= 0.001 or value == 0 else f"{value:.2e}"
                label = key.replace("_", " ")
            rows.append((label, text))
        return rows


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
            InputProblem.of_cell("truth", path.name, "account_id", int(row), value, reason)
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
    """Compare the flagged accounts of ``memberships`` with ``truth`` (``account_id``,
    ``group_id``).

    ``memberships`` has ``account_id`` and ``flagged``, and for the cluster-level metrics
    ``cluster_id`` and ``cluster_score`` (as :meth:`linkage.store.Store.memberships` returns).
    """
    con = duckdb.connect()
    try:
        con.register("truth", truth)
        con.register("m", memberships)
        extra = _cluster_metrics(con) if {"cluster_id", "cluster_score"} <= set(
            memberships.column_names) else {}
        if "cluster_id" in memberships.column_names:
            extra.update(_campaign_metrics(con, "campaign_id" in memberships.column_names))
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
        **extra,
    )


def _cluster_metrics(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Group recall, fragmentation, adjusted Rand index and precision at k, in SQL."""
    per_group = con.execute(
        """
        SELECT t.group_id, count(*) AS n, count(*) FILTER (WHERE m.flagged) AS hit,
               count(DISTINCT m.cluster_id) FILTER (WHERE m.flagged) AS clusters
        FROM truth t LEFT JOIN m USING (account_id)
        WHERE t.group_id IS NOT NULL GROUP BY t.group_id
        """
    ).fetchall()
    recall = np.array([hit / n for _, n, hit, _ in per_group]) if per_group else np.zeros(0)
    frag = [c for _, _, hit, c in per_group if hit]
    # Contingency of (true group, predicted cluster) over flagged accounts.
    cells = np.array([r[0] for r in con.execute(
        """
        SELECT count(*) FROM m LEFT JOIN truth t USING (account_id)
        WHERE m.flagged
        GROUP BY coalesce(t.group_id, 'legit:' || m.account_id), m.cluster_id
        """
    ).fetchall()], dtype=np.float64)
    rows = np.array([r[0] for r in con.execute(
        """
        SELECT count(*) FROM m LEFT JOIN truth t USING (account_id) WHERE m.flagged
        GROUP BY coalesce(t.group_id, 'legit:' || m.account_id)
        """
    ).fetchall()], dtype=np.float64)
    cols = np.array([r[0] for r in con.execute(
        "SELECT count(*) FROM m WHERE flagged GROUP BY cluster_id").fetchall()],
        dtype=np.float64)
    ranked = [bool(r[0]) for r in con.execute(
        """
        SELECT count(t.group_id) * 2 > count(*) FROM m LEFT JOIN truth t USING (account_id)
        GROUP BY m.cluster_id ORDER BY max(m.cluster_score) DESC, m.cluster_id
        """
    ).fetchall()]
    return {
        "groups": len(per_group),
        "groups_detected": len(frag),
        "group_recall_min": round(float(recall.min()), 4) if recall.size else 0.0,
        "group_recall_median": round(float(np.median(recall)), 4) if recall.size else 0.0,
        "fragmentation": round(float(np.mean(frag)), 4) if frag else 0.0,
        "adjusted_rand": round(adjusted_rand(cells, rows, cols), 4),
        "precision_at_k": {str(k): round(sum(ranked[:k]) / min(k, len(ranked)), 4)
                           for k in (10, 50, 100) if ranked},
    }


def _campaign_metrics(con: duckdb.DuckDBPyConnection, has_campaigns: bool) -> dict[str, Any]:
    """Fragmentation and purity of campaigns beside the clusters', in SQL."""
    campaign = "coalesce(campaign_id, cluster_id)" if has_campaigns else "cluster_id"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fm AS
        SELECT m.account_id, m.cluster_id, {campaign} AS campaign,
               coalesce(t.group_id, '') AS grp
        FROM m LEFT JOIN truth t USING (account_id) WHERE m.flagged
    """)

    def purity(unit: str) -> float:
        row = con.execute(f"""
            SELECT sum(top)::DOUBLE / nullif(sum(n), 0) FROM (
                SELECT max(k) AS top, sum(k) AS n
                FROM (SELECT {unit}, grp, count(*) AS k FROM fm GROUP BY {unit}, grp)
                GROUP BY {unit})
        """).fetchone()
        return round(float(row[0]), 4) if row and row[0] is not None else 0.0

    frag = con.execute("""
        SELECT avg(n) FROM (SELECT count(DISTINCT campaign) AS n FROM fm
                            WHERE grp <> '' GROUP BY grp)
    """).fetchone()
    joining = con.execute("""
        WITH major AS (
            SELECT campaign, cluster_id, arg_max(grp, k) AS grp FROM (
                SELECT campaign, cluster_id, grp, count(*) AS k FROM fm
                GROUP BY campaign, cluster_id, grp)
            GROUP BY campaign, cluster_id)
        SELECT count(*) FROM (SELECT campaign FROM major WHERE grp <> '' GROUP BY campaign
                              HAVING count(DISTINCT grp) >= 2)
    """).fetchone()
    return {
        "cluster_purity": purity("cluster_id"),
        "campaign_fragmentation": round(float(frag[0]), 4) if frag and frag[0] else 0.0,
        "campaign_purity": purity("campaign"),
        "campaigns_joining_groups": int(joining[0]) if joining else 0,
    }


def adjusted_rand(cells: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """Adjusted Rand index (Hubert and Arabie, 1985) from a contingency table's nonzero
    cells and its row and column sums.

    Examples
    --------
    >>> float(adjusted_rand(np.array([2., 2.]), np.array([2., 2.]), np.array([2., 2.])))
    1.0
    """
    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = rows.sum()
    if n < 2:
        return 0.0
    index, a, b = pairs(cells), pairs(rows), pairs(cols)
    expected = a * b / (n * (n - 1) / 2)
    best = (a + b) / 2
    if best == expected:  # both partitions trivial: agreement is perfect by definition
        return 1.0
    return (index - expected) / (best - expected)
