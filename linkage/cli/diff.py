"""``linkage diff``: what changed between two runs, cluster by cluster.

The lineage is recomputed from the stored memberships of the two runs with the continuity
stage's own matching (:func:`linkage.continuity.compare_runs`), so ``diff`` between two
consecutive runs says what the stored ``lineage`` of the later one says, and ``diff`` also
works across any distance (last week against tonight). The Jaccard threshold is the one the
later run was configured with. The counts are :func:`linkage.continuity.lineage_counts`, the
same that ``linkage run`` prints: a number of clusters per kind, never of rows.

Every row carries what an analyst sorts by: the cluster's size, score and flag in the later
run (for a cluster of the earlier run that did not keep its id: in the earlier run), the same
in the earlier run for a cluster that kept its id, whether its flag was raised or cleared, and
the labels analysts recorded on it between the two runs. Rows come flagged first, then by
score and size.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import typer
from rich.table import Table

from linkage.cli.common import DbOpt, handle_errors, open_store, out
from linkage.cli.terminal import cell

__all__ = ["COLUMNS", "DiffFormat", "diff", "diff_table"]

COLUMNS = ("cluster_id", "kind", "other_cluster_id", "overlap", "jaccard", "size", "score",
           "flagged", "size_before", "score_before", "flagged_before", "flag_change", "labels")
"""The columns of every row, in CSV and JSON order."""

_CLUSTER_COLUMNS = ["cluster_id", "size", "score", "flagged"]
_LABEL_SCHEMA = pa.schema([("target_id", pa.string()), ("text", pa.string())])


class DiffFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def diff_table(changes: pa.Table, before: pa.Table, after: pa.Table,
               labels: pa.Table) -> pa.Table:
    """``changes`` (:func:`~linkage.continuity.compare_runs`) with the columns of
    :data:`COLUMNS`, flagged first, then by score, size and id.

    ``before``/``after``: ``cluster_id, size, score, flagged`` of the two runs' clusters;
    ``labels``: ``target_id, text`` of the cluster labels recorded between the two runs.
    """
    con = duckdb.connect()
    try:
        for name, table in (("changes", changes), ("before_c", before), ("after_c", after),
                            ("labels_in", labels)):
            con.register(name, table)
        return con.sql(
            """
            WITH by_label AS (
                SELECT target_id, string_agg(text, '; ' ORDER BY text) AS labels
                FROM labels_in GROUP BY target_id
            ),
            rows AS (
                SELECT ch.*,
                       -- rows about a cluster of the earlier run that lost its id describe
                       -- it as it was; every other row the cluster of the later run
                       ch.kind IN ('merged_into', 'split_into', 'dissolved') AS earlier,
                       a.size AS a_size, a.score AS a_score, a.flagged AS a_flagged,
                       b.size AS b_size, b.score AS b_score, b.flagged AS b_flagged
                FROM changes ch
                LEFT JOIN after_c a ON a.cluster_id = ch.cluster_id
                LEFT JOIN before_c b ON b.cluster_id = ch.cluster_id
            )
            SELECT cluster_id, kind, other_cluster_id, overlap, jaccard,
                   CASE WHEN earlier THEN b_size ELSE a_size END::BIGINT AS size,
                   CASE WHEN earlier THEN b_score ELSE a_score END::DOUBLE AS score,
                   CASE WHEN earlier THEN b_flagged ELSE a_flagged END AS flagged,
                   CASE WHEN earlier THEN NULL ELSE b_size END::BIGINT AS size_before,
                   CASE WHEN earlier THEN NULL ELSE b_score END::DOUBLE AS score_before,
                   CASE WHEN earlier THEN NULL ELSE b_flagged END AS flagged_before,
                   CASE WHEN earlier OR b_flagged IS NULL OR a_flagged = b_flagged THEN ''
                        WHEN a_flagged THEN 'raised' ELSE 'cleared' END AS flag_change,
                   coalesce(l.labels, '') AS labels
            FROM rows LEFT JOIN by_label l ON l.target_id = rows.cluster_id
            ORDER BY coalesce(flagged, false) OR coalesce(flagged_before, false) DESC,
                     score DESC NULLS LAST, size DESC NULLS LAST, cluster_id, kind,
                     other_cluster_id NULLS FIRST
            """
        ).to_arrow_table()
    finally:
        con.close()


def _shown(table: pa.Table, *, show_all: bool, flagged: bool) -> pa.Table:
    """The rows to print: without ``show_all`` only those that say something besides "the
    same cluster again"; with ``flagged`` only clusters flagged in either run."""
    keep = pa.scalar(True)
    if not show_all:
        keep = pc.or_(pc.or_(pc.not_equal(table["kind"], "continued"),
                             pc.not_equal(table["flag_change"], "")),
                      pc.not_equal(table["labels"], ""))
    if flagged:
        keep = pc.and_(keep, pc.or_(pc.fill_null(table["flagged"], False),
                                    pc.fill_null(table["flagged_before"], False)))
    return table.filter(keep) if isinstance(keep, pa.ChunkedArray) else table


def diff(
    from_run: Annotated[str, typer.Option("--from", help="The earlier run: id or 'latest'.")],
    to_run: Annotated[str, typer.Option("--to", help="The later run: id or 'latest'.")] = (
        "latest"),
    db: DbOpt = None,
    fmt: Annotated[DiffFormat, typer.Option(
        "--format", "-f", help="table (Rich), csv or json.")] = DiffFormat.table,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Also list clusters that continued with the same members, flag and "
        "labels.")] = False,
    flagged: Annotated[bool, typer.Option(
        "--flagged", help="Only clusters flagged in either run.")] = False,
) -> None:
    """Changes between two runs: new, grown, shrunk, merged, split and dissolved clusters,
    flags raised and cleared, and labels recorded in between; flagged clusters first.

    Example: linkage diff --from 41 --to latest --flagged
    """
    with handle_errors():
        from linkage.config import ContinuityConfig
        from linkage.continuity import compare_runs, lineage_counts

        with open_store(db) as store:
            before_id = store.resolve_run(from_run)
            after_id = store.resolve_run(to_run)
            config = json.loads(store.run(after_id)["config_json"] or "{}")
            min_jaccard = float(config.get("continuity", {}).get(
                "min_jaccard", ContinuityConfig().min_jaccard))
            changes = compare_runs(store.memberships(before_id), store.memberships(after_id),
                                   min_jaccard=min_jaccard)
            before = store.clusters(before_id).select(_CLUSTER_COLUMNS)
            after = store.clusters(after_id).select(_CLUSTER_COLUMNS)
            labels = _labels_between(store, before_id, after_id)
        counts = lineage_counts(changes)
        table = diff_table(changes, before, after, labels)
    shown = _shown(table, show_all=show_all, flagged=flagged)
    change = table["flag_change"]
    flags = {kind: pc.sum(pc.equal(change, kind)).as_py() or 0 for kind in ("raised", "cleared")}
    if fmt is DiffFormat.json:
        print(json.dumps({"from_run": before_id, "to_run": after_id,
                          "min_jaccard": min_jaccard, "counts": counts, "flags": flags,
                          "n_labels": labels.num_rows, "changes": shown.to_pylist()}))
    elif fmt is DiffFormat.csv:
        _write_csv(shown)
    else:
        _print_table(before_id, after_id, counts, flags, shown.to_pylist(), flagged=flagged)


def _labels_between(store: Any, before_id: int, after_id: int) -> pa.Table:
    """``target_id, text`` of the cluster labels recorded after the earlier run finished and
    up to when the later one did (what the later run could take into account)."""
    from linkage.labels import list_labels

    start, end = (store.run(i)["finished_at"] for i in (before_id, after_id))
    if start is None or end is None or end <= start:
        return _LABEL_SCHEMA.empty_table()
    rows = [r for r in list_labels(store, target_kind="cluster")
            if start < r["created_at"] <= end]
    return pa.table({"target_id": [r["target_id"] for r in rows],
                     "text": [f"{r['label']} by {r['by']}" for r in rows]},
                    schema=_LABEL_SCHEMA)


def _write_csv(table: pa.Table) -> None:
    """``table`` as spreadsheet-safe CSV on standard output (labellers' names are free
    text)."""
    from linkage.reports import safe_text_column

    safe = pa.table([safe_text_column(c) if pa.types.is_string(c.type) else c
                     for c in table.columns], names=table.column_names)
    sys.stdout.flush()
    pacsv.write_csv(safe, sys.stdout.buffer,
                    pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    sys.stdout.buffer.flush()


def _num(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _yes(value: Any) -> str:
    return "" if value is None else ("yes" if value else "no")


def _print_table(before: int, after: int, counts: dict[str, int], flags: dict[str, int],
                 rows: list[dict[str, Any]], *, flagged: bool) -> None:
    from linkage.continuity import describe_counts

    summary = describe_counts(counts)
    flag_text = f"flags raised {flags['raised']:,}, cleared {flags['cleared']:,}"
    shown = "; flagged clusters only" if flagged else ""
    table = Table(title=f"run {before} → run {after}: {summary}; {flag_text}{shown}")
    for col, head in (("cluster_id", "cluster"), ("kind", "kind"), ("other", "other cluster"),
                      ("size", "size"), ("score", "score"), ("flagged", "flagged"),
                      ("before", "before (size, score, flagged)"), ("overlap", "overlap"),
                      ("jaccard", "jaccard"), ("flag_change", "flag"), ("labels", "labels")):
        right = col in ("size", "score", "overlap", "jaccard")
        table.add_column(head, justify="right" if right else "left")
    for r in rows:
        before_text = ("" if r["size_before"] is None else
                       f"{r['size_before']:,}, {r['score_before']:.2f}, "
                       f"{_yes(r['flagged_before'])}")
        # cell(): ids and labellers' names are data, never Rich markup nor terminal commands.
        table.add_row(
            cell(r["cluster_id"]), cell(r["kind"]), cell(r["other_cluster_id"]),
            _num(r["size"], ","), _num(r["score"], ".2f"), _yes(r["flagged"]), before_text,
            _num(r["overlap"], ","), _num(r["jaccard"], ".3f"), r["flag_change"],
            cell(r["labels"]),
        )
    out.print(table)
