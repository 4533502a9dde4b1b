"""``linkage show cluster``, ``linkage show account`` and ``linkage explain``.

Explanations read from the store only (:mod:`linkage.reports.queries`). Rich tables on a
terminal, ``--format json`` for tools. Every value that came from the input or an analyst
(account ids, notes) goes through :func:`linkage.cli.terminal.cell`: a name such as
``[red]x[/red]`` is printed as written rather than read as Rich markup, and an escape
sequence is shown rather than obeyed by the terminal.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from linkage.cli.common import (
    MAX_COUNT,
    DbOpt,
    RunOpt,
    handle_errors,
    json_default,
    open_store,
    out,
)
from linkage.cli.terminal import cell, printable

__all__ = ["OutputFormat", "explain", "show_app"]

show_app = typer.Typer(help="Explain a cluster or an account from the store.",
                       no_args_is_help=True)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOpt = Annotated[OutputFormat, typer.Option(
    "--format", "-f", help="text (Rich tables) or json (one JSON document).")]


def _json(data: Any) -> None:
    # json_default: timestamps become ISO 8601; everything else is plain JSON already.
    print(json.dumps(data, default=json_default, indent=2))


_t = cell


def _signals(signals: list[dict[str, Any]], limit: int = 4) -> Text:
    return _t(", ".join(f"{s['signal']} {s['contribution']:.2f}" for s in signals[:limit]))


def _kv(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(_t(key), _t(value))
    return table


@show_app.command("cluster")
def show_cluster(
    cluster_id: Annotated[str, typer.Argument(help="Cluster id, e.g. c503c28b60cd5.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    fmt: FormatOpt = OutputFormat.text,
    max_members: Annotated[int, typer.Option(help="Members to list (text format).", min=0,
                                             max=MAX_COUNT)] = 50,
    max_related: Annotated[int, typer.Option(
        help="Related clusters to list (text format; json lists them all).", min=0,
        max=MAX_COUNT)] = 10,
) -> None:
    """A cluster: analysts' labels first, then score and each feature's contribution,
    reasons, shared keys by kind with counts, related clusters (other clusters sharing keys
    with it, flagged or not), lineage and members.

    Example: linkage show cluster c503c28b60cd5 --run latest
    """
    with handle_errors():
        from linkage.reports.glossary import feature_name, signal_name, signal_phrase
        from linkage.reports.queries import cluster_detail, cluster_labels, related_clusters

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            detail = cluster_detail(store, run_id, cluster_id)
            detail["labels"] = cluster_labels(store, cluster_id, detail["members"])
            detail["related"] = related_clusters(store, run_id, [cluster_id])[cluster_id]
    edges = detail.pop("edges")
    detail["n_evidence_edges"] = len(edges)
    if fmt is OutputFormat.json:
        _json(detail)
        return
    if detail["labels"]:  # an analyst's verdict comes before everything else
        verdicts = Table("label", "on", "note", "by", "when", title="verdicts and labels")
        for row in detail["labels"]:
            on = ("this cluster" if row["target_kind"] == "cluster"
                  else f"account {row['target_id']}")
            verdicts.add_row(_t(row["label"] + ("" if row["current"] else " (superseded)")),
                             _t(on), _t(row["note"]), _t(row["by"]),
                             f"{row['created_at']:%Y-%m-%d %H:%M}")
        out.print(verdicts)
    out.print(_kv(printable(f"cluster {detail['cluster_id']} in run {run_id}"), [
        ("size", detail["size"]), ("score", f"{detail['score']:.3f}"),
        ("flagged", "yes" if detail["flagged"] else "no"),
        ("origin", detail["origin"]), ("parents", ", ".join(detail["parents"]) or "-"),
        ("first seen in run", detail["first_seen_run_id"]),
        ("campaign", (detail["campaign_id"] or "-") + (
            f" (with {len(detail['siblings'])} other clusters)" if detail["siblings"] else "")),
        ("evidence edges", len(edges) if edges else "not kept (score below "
         "store.evidence_min_score)"),
    ]))
    contrib = Table("feature", "value", "contribution", title="score breakdown")
    for name, value in sorted(detail["contributions"].items(), key=lambda kv: -kv[1]):
        contrib.add_row(_t(feature_name(name)), f"{detail['features'].get(name, 0.0):.3f}",
                        f"{value:.3f}")
    contrib.add_row(feature_name("size_factor"),
                    f"{detail['features'].get('size_factor', 1.0):.3f}", "x")
    out.print(contrib)
    reasons = Table(title="reasons", show_header=False)
    for r in detail["reasons"]:
        reasons.add_row(_t(r))
    out.print(reasons)
    keys = Table("signal", "keys", "most members on one key", title="shared keys by kind")
    for k in detail["shared_keys"]:
        keys.add_row(_t(signal_name(k["signal"], plural=True)), str(k["n_keys"]),
                     str(k["max_members"]))
    out.print(keys)
    shown_related = detail["related"][:max_related]
    related = Table("cluster", "size", "score", "flagged", "campaign", "strength",
                    "shared keys (members on one: here/there)",
                    title=f"related clusters: {len(detail['related'])} share keys with this one"
                    + (f", the {len(shown_related)} strongest" if
                       len(shown_related) < len(detail["related"]) else ""))
    for r in shown_related:
        related.add_row(
            _t(r["cluster_id"]), str(r["size"]), f"{r['score']:.3f}",
            "yes" if r["flagged"] else "no",
            "same" if r["same_campaign"] else _t(r["campaign_id"] or "-"),
            f"{r['strength']:.2f}",
            _t(", ".join(f"{signal_phrase(x['signal'], x['n_keys'])} ({x['here']} / "
                         f"{x['there']})" for x in r["signals"])))
    out.print(related)
    history = Table("run", "size", "score", "flagged", "origin",
                    title="lineage: this cluster id across runs")
    for h in detail["history"]:
        history.add_row(str(h["run_id"]), str(h["size"]), f"{h['score']:.3f}",
                        "yes" if h["flagged"] else "no", _t(h["origin"]))
    out.print(history)
    shown = detail["members"][:max_members]
    more = len(detail["members"]) - len(shown)
    out.print(_t(f"members ({len(detail['members'])}): " + ", ".join(shown)
                 + (f", … {more} more" if more > 0 else "")))


@show_app.command("account")
def show_account(
    account_id: Annotated[str, typer.Argument(help="Account id as given in the input.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    fmt: FormatOpt = OutputFormat.text,
    links: Annotated[int, typer.Option(help="How many strongest links to list.", min=0,
                                       max=MAX_COUNT)] = 10,
) -> None:
    """An account: its cluster in each run, the analysts' labels on it and on those
    clusters, and its strongest links in the chosen run.

    Example: linkage show account a0000013
    """
    with handle_errors():
        from linkage.errors import NotFoundError, shorten
        from linkage.labels import list_labels
        from linkage.reports.queries import account_history, account_links

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            history = account_history(store, account_id)
            if not history:
                raise NotFoundError(
                    f"no such account in any cluster: {shorten(account_id)} (accounts that "
                    "share nothing with anyone are not stored)")
            strongest = account_links(store, run_id, account_id, limit=links)
            clusters = {h["cluster_id"] for h in history}
            labels = list_labels(store, target_kind="account", target_id=account_id) + [
                row for row in list_labels(store, target_kind="cluster")
                if row["target_id"] in clusters]
    labels.sort(key=lambda row: row["label_id"])
    current = next((h for h in history if h["run_id"] == run_id), None)
    data = {"account_id": account_id, "run_id": run_id,
            "cluster_id": current["cluster_id"] if current else None,
            "history": history,
            "labels": [{k: row[k] for k in ("label_id", "target_kind", "target_id", "label",
                                             "note", "by", "created_at")} for row in labels],
            "links": strongest}
    if fmt is OutputFormat.json:
        _json(data)
        return
    table = Table("run", "cluster", "size", "score", "flagged", "origin",
                  title=_t(f"account {account_id}: cluster by run"))
    for h in history:
        table.add_row(str(h["run_id"]), _t(h["cluster_id"]), str(h["size"]),
                      f"{h['cluster_score']:.3f}", "yes" if h["flagged"] else "no",
                      _t(h["origin"]))
    out.print(table)
    if labels:
        label_table = Table("when", "on", "label", "by", "note",
                            title="labels on this account and its clusters")
        for row in labels:
            label_table.add_row(f"{row['created_at']:%Y-%m-%d %H:%M}",
                                _t(f"{row['target_kind']} {row['target_id']}"),
                                _t(row["label"]), _t(row["by"]), _t(row["note"]))
        out.print(label_table)
    if current is None:
        out.print(_t(f"not in a cluster in run {run_id}"))
        return
    link_table = Table("other account", "weight", "signals",
                       title=f"strongest links in run {run_id}")
    for link in strongest:
        link_table.add_row(_t(link["other"]), f"{link['weight']:.3f}",
                           _signals(link["signals"]))
    out.print(link_table)


def explain(
    a: Annotated[str, typer.Argument(metavar="ACCOUNT_A", help="First account id.")],
    b: Annotated[str, typer.Argument(metavar="ACCOUNT_B", help="Second account id.")],
    db: DbOpt = None,
    run_ref: RunOpt = "latest",
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """The strongest evidence path between two accounts: every hop with its signals and
    weights (path strength = product of the hop weights).

    Example: linkage explain a0000013 a0002795 --run latest
    """
    with handle_errors():
        from linkage.reports.queries import explain_path

        with open_store(db) as store:
            run_id = store.resolve_run(run_ref)
            result = explain_path(store, run_id, a, b)
    if fmt is OutputFormat.json:
        _json(result)
        return
    if not result["found"]:
        out.print(_t(f"no evidence path in run {run_id}: {result['note']} "
                     f"({result['cluster_a']}, {result['cluster_b']})"))
        return
    table = Table("from", "to", "weight", "signals (contribution x shared keys)",
                  title=_t(f"strongest evidence path {a} → {b} in run {run_id} "
                           f"(strength {result['strength']:.3f}, "
                           f"{len(result['hops'])} hops)"))
    for hop in result["hops"]:
        signals = ", ".join(f"{s['signal']} {s['contribution']:.2f} x{s['shared_keys']}"
                            for s in hop["signals"])
        table.add_row(_t(hop["from"]), _t(hop["to"]), f"{hop['weight']:.3f}", _t(signals))
    out.print(table)
