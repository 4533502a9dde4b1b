"""``linkage report``, ``linkage browse`` and the analyst exports: ``export banlist``,
``export clusters`` and ``export case``.

All of them read from the store only; CSV output is spreadsheet-safe
(:func:`linkage.reports.write_csv`) and HTML output escapes everything that came from the input.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from linkage.cli.common import DbOpt, RunOpt, err, handle_errors, open_store
from linkage.cli.terminal import printable

__all__ = ["TableFormat", "browse", "export_banlist", "export_case", "export_clusters",
           "report"]


class TableFormat(StrEnum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


MinScoreOpt = Annotated[float | None, typer.Option(
    "--min-score", min=0.0, max=1.0,
    help="Clusters whose score reaches this (default: the run's flagged clusters).",
    show_default=False)]


def export_banlist(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    min_score: MinScoreOpt = None,
) -> None:
    """Accounts to act on, as spreadsheet-safe CSV: account_id, cluster_id, score,
    top_reason (members of flagged clusters, or of clusters scoring at least --min-score).

    Example: linkage export banlist --min-score 0.7 --out banlist.csv
    """
    with handle_errors():
        from linkage.reports import write_csv
        from linkage.reports.queries import banlist

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            table = banlist(store, run_id, min_score=min_score)
        write_csv(table, out_file)
    err.print(printable(f"wrote {table.num_rows:,} accounts of run {run_id} to {out_file}"),
              markup=False, highlight=False)


def export_clusters(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="File format.")]
    = TableFormat.csv,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", min=0.0, max=1.0, help="Only clusters whose score reaches this.",
        show_default=False)] = None,
) -> None:
    """A run's clusters (size, score, flag, lineage, features, contributions, reasons,
    top_reason) as CSV, JSON or Parquet.

    Example: linkage export clusters --format parquet --out clusters.parquet
    """
    with handle_errors():
        from linkage.reports import write_table
        from linkage.reports.queries import clusters_table

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            table = clusters_table(store, run_id, min_score=min_score)
        n = write_table(table, out_file, fmt.value)
    err.print(printable(f"wrote {n:,} clusters of run {run_id} to {out_file}"), markup=False,
              highlight=False)


def export_case(
    cluster_id: Annotated[str, typer.Argument(help="Cluster id, e.g. c503c28b60cd5.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
) -> None:
    """One self-contained HTML case packet for a cluster: summary, reasons, score breakdown,
    graph drawing, shared keys, every evidence edge with its signals, members and their
    history, lineage.

    Example: linkage export case c503c28b60cd5 --out case-c503c28b60cd5.html
    """
    with handle_errors():
        from linkage.reports.html import write_case

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            write_case(store, run_id, cluster_id, out_file)
    err.print(printable(f"wrote the case packet of cluster {cluster_id!r} (run {run_id}) to "
                        f"{out_file}"),
              markup=False, highlight=False)


def report(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.",
                                          file_okay=False)],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    min_score: MinScoreOpt = None,
) -> None:
    """A static, self-contained HTML report of a run (no network needed to open it): an
    overview and one page per flagged cluster (or per cluster scoring at least --min-score).

    Example: linkage report --run latest --out report/
    """
    with handle_errors():
        from linkage.reports.html import write_report

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            index = write_report(store, run_id, out_dir, min_score=min_score)
    err.print(printable(f"wrote the report of run {run_id} to {index}"), markup=False,
              highlight=False)


def browse(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8001,
) -> None:
    """Open a SQLite store in Datasette (pip install 'linkage[browse]'): every table, view
    and column described, the SQL recipes as canned queries, and every cluster id linked to
    its page. Read-only; stop it with Ctrl-C.

    Example: linkage browse --db sqlite:///linkage.db --port 8001
    """
    with handle_errors():
        from linkage.browse import app as datasette_app
        from linkage.errors import ConfigError
        from linkage.store.store import sqlite_path

        with open_store(db) as store:
            path = sqlite_path(store.url)
            if path is None:
                raise ConfigError(
                    f"linkage browse opens SQLite stores only, not {store.display_url}: on "
                    "PostgreSQL query the views with the linkage_analyst role (docs/schema.md)")
        ds = datasette_app(Path(path))
    import uvicorn

    err.print(printable(f"Datasette on http://{host}:{port}/ (Ctrl-C stops it)"),
              markup=False, highlight=False)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning")
