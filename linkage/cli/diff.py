"""``linkage diff``: what changed between two runs, cluster by cluster.

The lineage is recomputed from the stored memberships of the two runs with the continuity
stage's own matching (:func:`linkage.continuity.compare_runs`), so ``diff`` between two
consecutive runs says what the stored ``lineage`` of the later one says, and ``diff`` also
works across any distance (last week against tonight). The Jaccard threshold is the one the
later run was configured with.
"""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from linkage.cli import DbOpt, _errors, _store, out
from linkage.cli.terminal import cell

__all__ = ["DiffFormat", "diff", "register"]

COLUMNS = ("cluster_id", "kind", "other_cluster_id", "overlap", "jaccard")


class DiffFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def diff(
    from_run: Annotated[str, typer.Option("--from", help="The earlier run: id or 'latest'.")],
    to_run: Annotated[str, typer.Option("--to", help="The later run: id or 'latest'.")] = (
        "latest"),
    db: DbOpt = None,
    fmt: Annotated[DiffFormat, typer.Option(
        "--format", "-f", help="table (Rich), csv or json.")] = DiffFormat.table,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Also list clusters that continued unchanged.")] = False,
) -> None:
    """Changes between two runs: new, grown, shrunk, merged, split and dissolved clusters.

    Example: linkage diff --from 41 --to latest --format csv
    """
    with _errors():
        from linkage.config import ContinuityConfig
        from linkage.continuity import compare_runs

        with _store(db) as store:
            before_id = store.resolve_run(from_run)
            after_id = store.resolve_run(to_run)
            config = json.loads(store.run(after_id)["config_json"] or "{}")
            min_jaccard = float(config.get("continuity", {}).get(
                "min_jaccard", ContinuityConfig().min_jaccard))
            changes = compare_runs(store.memberships(before_id), store.memberships(after_id),
                                   min_jaccard=min_jaccard)
    rows = changes.to_pylist()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    if not show_all:
        rows = [r for r in rows if r["kind"] != "continued"]
    if fmt is DiffFormat.json:
        print(json.dumps({"from_run": before_id, "to_run": after_id,
                          "min_jaccard": min_jaccard, "counts": counts, "changes": rows}))
    elif fmt is DiffFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(before_id, after_id, counts, rows)


def _print_table(before: int, after: int, counts: dict[str, int],
                 rows: list[dict[str, Any]]) -> None:
    summary = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "no clusters"
    table = Table(title=f"run {before} → run {after}: {summary}")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("overlap", "jaccard") else "left")
    for r in rows:
        # cell(): ids are data, never Rich markup nor terminal commands.
        table.add_row(
            cell(r["cluster_id"]), cell(r["kind"]), cell(r["other_cluster_id"]),
            "" if r["overlap"] is None else f"{r['overlap']:,}",
            "" if r["jaccard"] is None else f"{r['jaccard']:.3f}",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``diff`` to the ``linkage`` app."""
    app.command("diff")(diff)


