"""The ``linkage`` command line (Typer + Rich).

Exit statuses (docs/operations.md): 0 done; 2 bad input, configuration or usage, or no
such run; 1 internal failure; 3 another run holds the store (try again later). Errors are
printed to standard error as ``Error: ...``.
Tables go to standard output; progress and logs to standard error, so ``linkage run``'s last
line of standard output is always the run id.

This module is the application: its own commands (``run``, ``evaluate``, ``generate``,
``runs``, ``db``, ``export memberships``) and the registration of every other command, which
the submodules (:mod:`~linkage.cli.show`, :mod:`~linkage.cli.reports`, ...) define as plain
functions. What all of them share (options, consoles, error handling, opening the store) is
:mod:`linkage.cli.common`; the submodules import it and never this module.
"""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperCommand

from linkage import __version__
from linkage.cli import diff, forget, label, learn, reports, serve, show
from linkage.cli.common import (
    MAX_COUNT,
    DbOpt,
    InputOpt,
    QuietOpt,
    RunOpt,
    SecretFileOpt,
    VerboseOpt,
    err,
    handle_errors,
    open_store,
    out,
    print_rows,
    require_input,
    setup_output,
    usage_error,
)
from linkage.cli.terminal import cell, printable
from linkage.config import load_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="linkage",
    help="Find operator groups of fake accounts: account metadata → weighted graph → Leiden "
    "clusters → scored, explained, stored.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Manage the store's schema (Alembic migrations).",
                     no_args_is_help=True)
runs_app = typer.Typer(invoke_without_command=True)
export_app = typer.Typer(help="Export results of a run.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(export_app, name="export")
app.add_typer(runs_app, name="runs")

class Engine(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


@app.command()
def run(
    input: InputOpt,
    db: DbOpt = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML configuration (docs/configuration.md).")] = None,
    secret_file: SecretFileOpt = None,
    top: Annotated[int, typer.Option(help="Flagged clusters to list at the end.", min=0,
                                     max=MAX_COUNT)] = 5,
    engine: Annotated[Engine | None, typer.Option(
        help="Relational engine; overrides engine.name of the configuration. spark needs "
        "pip install 'linkage[spark]' (docs/operations.md).")] = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="Folder where the run keeps its normalised input for the next "
        "incremental run (docs/operations.md#incremental-runs).", file_okay=False)] = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="--input holds only what is new since the latest run; build "
        "on that run's --state.")] = False,
    allow_shrink: Annotated[bool, typer.Option(
        "--allow-shrink", help="Publish even if the input has fewer accounts than the latest "
        "published run by more than store.max_shrink (docs/operations.md).")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """One nightly run (full, or --incremental); prints the run id on the last line of
    standard output.

    Example: linkage run --input ./night/2026-11-29 --db sqlite:///linkage.db
    """
    setup_output(quiet, verbose)
    with handle_errors(verbose):
        from linkage.cli.progress import StageProgress
        from linkage.pipeline import run_pipeline
        from linkage.pseudonymise import load_secret

        require_input(input)
        cfg = load_config(config)
        if engine is not None:
            cfg = dataclasses.replace(
                cfg, engine=dataclasses.replace(cfg.engine, name=engine.value))
        secret = load_secret(secret_file)
        with open_store(db, create=True) as store:
            with StageProgress(err, enabled=not quiet) as progress:
                summary = run_pipeline(input, store, cfg, secret, reporter=progress,
                                       state_dir=state, incremental=incremental,
                                       allow_shrink=allow_shrink)
            if not quiet:
                _print_summary(summary)
                _print_top(store, summary.run_id, top)
    print(summary.run_id, flush=True)


def _print_summary(summary) -> None:
    from linkage.continuity import describe_counts

    table = Table(title=f"run {summary.run_id}", show_header=False)
    table.add_row("accounts", f"{summary.n_accounts:,}")
    table.add_row("rows read", f"{sum(summary.rows_read.values()):,}")
    quarantined = sum(sum(v.values()) for v in summary.rows_quarantined.values())
    table.add_row("rows quarantined", f"{quarantined:,}")
    table.add_row("edges", f"{summary.n_edges:,}")
    table.add_row("largest component", f"{summary.largest_component:,}")
    table.add_row("clusters (2+ accounts)", f"{summary.n_clusters:,}")
    table.add_row("flagged clusters", f"{summary.n_flagged:,}")
    table.add_row("lineage", describe_counts(summary.origins))
    table.add_row("stage seconds", ", ".join(f"{k} {v:.1f}" for k, v in summary.timings.items()))
    if summary.peak_rss_mb:
        table.add_row("peak memory", f"{max(summary.peak_rss_mb.values()):,.0f} MB")
    out.print(table)


def _print_top(store, run_id: int, top: int) -> None:
    if top <= 0:
        return
    clusters = store.clusters(run_id, top=top).to_pylist()
    flagged = [c for c in clusters if c["flagged"]]
    if not flagged:
        out.print("No cluster reached the flagging threshold.")
        return
    table = Table("cluster", "size", "score", "origin", "reasons", title="top flagged clusters")
    for c in flagged:
        reasons = "\n".join(json.loads(c["reasons_json"])[:3])
        table.add_row(cell(c["cluster_id"]), str(c["size"]), f"{c['score']:.2f}",
                      cell(c["origin"]), cell(reasons))
    out.print(table, markup=False)


class MembershipFormat(StrEnum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


@export_app.command("memberships")
def export_memberships(
    out_file: Annotated[Path, typer.Option(
        "--out", "-o", help="File to write (CSV, JSON or Parquet, as --format says).")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    fmt: Annotated[MembershipFormat, typer.Option(
        "--format", "-f", help="csv (the default, docs/reports.md), json or parquet.")] = (
        "csv"),  # type: ignore[assignment]
) -> None:
    """The accounts of every cluster of two or more accounts in a run, as CSV
    (account_id, cluster_id, cluster_score, flagged, campaign_id), or the same columns as
    JSON or Parquet. campaign_id is empty for a cluster that stands alone.

    Example: linkage export memberships --run latest --out memberships.csv
    """
    with handle_errors():
        from linkage.reports import write_memberships, write_table
        from linkage.reports.queries import memberships_table

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            memberships = memberships_table(store, run_id)
            if fmt == "csv":
                n = write_memberships(memberships, out_file)
            else:
                n = write_table(memberships, out_file, MembershipFormat(fmt).value)
    err.print(printable(f"wrote {n:,} memberships of run {run_id} to {out_file}"),
              markup=False, highlight=False)


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option("--truth", help="CSV with account_id,group_id.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision, recall and F1 of a run's flagged accounts against a truth file.

    Example: linkage evaluate --truth demo/data/truth.csv --run latest
    """
    with handle_errors():
        from linkage.evaluate import evaluate_flagged, read_truth
        from linkage.reports.queries import memberships_table

        truth_table = read_truth(truth)
        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            result = evaluate_flagged(truth_table, memberships_table(store, run_id))
    if as_json:
        print(json.dumps({"run_id": run_id, **result.as_dict()}))
        return
    table = Table(title=cell(f"run {run_id} against {truth.name}"), show_header=False)
    for name, text in result.display_rows():
        table.add_row(name, text)
    out.print(table)


class Scenario(StrEnum):
    plain = "plain"
    camouflage = "camouflage"
    hubs = "hubs"
    slowdrip = "slowdrip"
    mixed = "mixed"
    usageonly = "usageonly"
    seedscale = "seedscale"
    largepool = "largepool"
    paraphrase = "paraphrase"
    cells = "cells"
    aged = "aged"
    orgs = "orgs"
    stockdevice = "stockdevice"
    world = "world"


class Format(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    scenario: Annotated[Scenario, typer.Option(help="Which planted pattern.")] = Scenario.mixed,
    accounts: Annotated[int | None, typer.Option(
        help="Number of accounts [default: 100000; seedscale: 1000000; stockdevice: 5000; "
        "world: drawn from the seed].", min=100, max=MAX_COUNT)] = None,
    operator_share: Annotated[float | None, typer.Option(
        help="Share of operator accounts [default: 0.02; seedscale: 0.025].", min=0.0,
        max=0.5)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[Format, typer.Option("--format", help="File format.")] = Format.parquet,
    group_sizes: Annotated[tuple[int, int] | None, typer.Option(
        "--group-sizes", metavar="MIN MAX", help="Smallest and largest operator group "
        "(log-uniform between) [default: 10 400; seedscale: 100 450].",
    )] = None,
    night: Annotated[int, typer.Option(
        "--night", min=1, max=3650, help="1: the world as drawn; N: the same world N-1 days "
        "later (every earlier row, plus new accounts, grown rings and merged rings; "
        "--accounts is night 1's size). plain, camouflage, hubs, slowdrip and mixed only.",
    )] = 1,
) -> None:
    """Generate realistic input with planted operator groups and a truth file (truth.csv).

    Example: linkage generate --out demo/night2 --scenario mixed --accounts 200000 --night 2

    The scenario world draws a whole world (size, shapes, background) from --seed.
    """
    with handle_errors():
        from linkage.synth import generate as gen

        try:
            summary = gen(out_dir, scenario=scenario.value, n_accounts=accounts,
                          operator_share=operator_share, seed=seed, fmt=fmt.value,
                          group_sizes=group_sizes, night=night)
        except ValueError as exc:  # the generator's argument checks
            raise usage_error(str(exc)) from None
    err.print(
        f"wrote {summary.n_accounts:,} accounts ({summary.n_operator_accounts:,} operator "
        f"accounts in {summary.n_groups:,} groups) to {out_dir}"
        + (f" (night {night})" if night > 1 else ""), markup=False)


@runs_app.callback()
def runs(
    ctx: typer.Context,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=0,
                                       max=MAX_COUNT)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runs with status and counts (newest first); `linkage runs retract RUN`
    withdraws a published one.

    Example: linkage runs --limit 5
    """
    if ctx.invoked_subcommand is not None:
        return
    with handle_errors(), open_store(db) as store:
        rows = store.runs(limit)
    print_rows(rows, title="runs", as_json=as_json, columns=(
        "run_id", "status", "stage", "started_at", "n_accounts", "n_edges", "n_clusters",
        "n_flagged"))


@runs_app.command("retract")
def runs_retract(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The id of the run to retract.")],
    db: DbOpt = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Who decided (default: $LINKAGE_USER, else the login name).",
        show_default=False)] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why, e.g. 'truncated input folder'.")] = None,
) -> None:
    """Withdraw a published run: it stays in the store, but is no longer `latest` (views and
    commands), nor what the next run compares with or warm-starts from.

    Example: linkage runs retract 42 --by ann --reason "input folder was truncated"
    """
    with handle_errors():
        from linkage.errors import NotFoundError
        from linkage.labels import default_labeller
        from linkage.store import parse_run_id
        from linkage.store.lock import run_lock

        parsed = parse_run_id(run_id)
        if parsed is None:
            raise NotFoundError(f"no such run: {printable(run_id)[:60]!r}")
        with open_store(db) as store, run_lock(store, purpose="retract"):
            store.retract_run(parsed, by=by or default_labeller(), reason=reason)
            latest = store.latest_run_id()
    err.print(f"run {parsed} retracted; latest is now "
              f"{'none' if latest is None else f'run {latest}'}", markup=False, highlight=False)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Migrate the store to the newest schema.

    Example: linkage db upgrade --db postgresql://linkage@db/linkage
    """
    with handle_errors(), open_store(db, create=True) as store:
        store.upgrade()
    err.print("schema is at head", markup=False)


@db_app.command("check")
def db_check(db: DbOpt = None) -> None:
    """Check that the store's schema matches the models; exit 1 on any difference.

    Example: linkage db check
    """
    with handle_errors(), open_store(db) as store:
        diffs = store.check()
    if diffs:
        for d in diffs:
            err.print(f"difference: {printable(d)}", markup=False, highlight=False)
        raise typer.Exit(1)
    err.print("models and migrations agree", markup=False)


def _version(value: bool) -> None:
    if value:
        print(f"linkage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """linkage: graph-based account linkage."""


# The commands the other modules define, after this module's own, in the order
# `linkage --help` lists them.
app.command("explain")(show.explain)
app.command("report")(reports.report)
app.command("browse")(reports.browse)
app.command("forget")(forget.forget)
app.command("diff")(diff.diff)
app.command("label")(label.label)
app.command("labels")(label.labels)
app.command("learn")(learn.learn)
app.command("serve")(serve.serve)
app.add_typer(show.show_app, name="show")
export_app.command("banlist")(reports.export_banlist)
export_app.command("clusters")(reports.export_clusters)
export_app.command("case")(reports.export_case)


class _Command(TyperCommand):
    """A command whose usage line names its arguments as ``linkage explain [OPTIONS] A B``
    (Click's convention; optional ones in brackets) rather than ``{a} {b}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


def _use_command_class(typer_app: typer.Typer) -> None:
    """Give every command of ``typer_app`` (and of its sub-apps) :class:`_Command`."""
    for info in typer_app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _use_command_class(group.typer_instance)


_use_command_class(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="linkage")
