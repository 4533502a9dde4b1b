"""``linkage label`` (append a verdict) and ``linkage labels`` (list them).

The logic lives in :mod:`linkage.labels`; this module parses, prints and maps errors.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from linkage.cli.common import (
    DbOpt,
    err,
    handle_errors,
    open_store,
    print_rows,
    usage_error,
)
from linkage.cli.terminal import printable

__all__ = ["label", "labels"]


class Target(StrEnum):
    cluster = "cluster"
    account = "account"


class Verdict(StrEnum):
    confirmed = "confirmed"
    false_positive = "false_positive"
    watch = "watch"


def label(
    target: Annotated[Target, typer.Argument(help="What is labelled: cluster or account.")],
    target_id: Annotated[str, typer.Argument(metavar="ID", help="Its cluster_id or account_id.")],
    verdict: Annotated[Verdict, typer.Option("--as", help="The verdict.")],
    note: Annotated[str, typer.Option("--note", help="Why, in a sentence.")],
    by: Annotated[str | None, typer.Option(
        "--by", help="Who (default: $LINKAGE_USER, else the login name).",
        show_default=False)] = None,
    db: DbOpt = None,
) -> None:
    """Record an analyst's verdict on a cluster or an account (append-only: a later label
    supersedes an earlier one, both are kept).

    Example: linkage label cluster c3f2a9b1c0de --as confirmed --note "chargebacks" --by ann
    """
    with handle_errors():
        from linkage.labels import add_label, default_labeller

        with open_store(db) as store:
            row = add_label(store, target.value, target_id, verdict.value, note=note,
                            by=by if by is not None else default_labeller())
    err.print(printable(f"label {row['label_id']}: {target.value} {row['target_id']} is "
                        f"{row['label']} (by {row['by']})"), markup=False, highlight=False)


def labels(
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List analysts' labels, oldest first.

    Example: linkage labels --cluster c3f2a9b1c0de
    """
    with handle_errors():
        from linkage.labels import list_labels

        if cluster is not None and account is not None:
            raise usage_error("give --cluster or --account, not both")
        kind = "cluster" if cluster is not None else "account" if account is not None else None
        with open_store(db) as store:
            rows = list_labels(store, target_kind=kind, target_id=cluster or account)
    print_rows(rows, title="labels", as_json=as_json, columns=(
        "label_id", "created_at", "by", "target_kind", "target_id", "label", "note"))
