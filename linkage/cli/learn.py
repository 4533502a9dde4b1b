"""``linkage learn``: estimate signal weights from a truth file and write them as a config.

The model and the rule that turns its coefficients into weights are in :mod:`linkage.learn`
and ``docs/algorithm.md`` ("Learning weights from labels").
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from linkage.cli.common import (
    InputOpt,
    QuietOpt,
    SecretFileOpt,
    VerboseOpt,
    err,
    handle_errors,
    out,
    require_input,
    setup_output,
    usage_error,
)
from linkage.cli.terminal import cell, printable

__all__ = ["learn"]


def learn(
    input: InputOpt,
    truth: Annotated[Path, typer.Option(
        "--truth", help="CSV with account_id,group_id (group_id empty: legitimate).")],
    out_path: Annotated[Path, typer.Option(
        "--out", "-o", help="TOML file to write (a configuration `linkage run` accepts).")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML configuration to learn under; the output is this file "
        "with the learned weights merged over it.")] = None,
    secret_file: SecretFileOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Learn signal weights from labelled accounts (regularised logistic regression on pair
    evidence) and write them as a configuration file.

    Example: linkage learn --input night --truth night/truth.csv --out weights.toml
    """
    setup_output(quiet, verbose)
    with handle_errors(verbose):
        from linkage.config import RunConfig, load_config
        from linkage.evaluate import read_truth
        from linkage.learn import dump_toml, learn_from_input, merge, weights_config
        from linkage.pseudonymise import load_secret
        from linkage.signals import signal_weights

        require_input(input)
        if not out_path.parent.is_dir():
            raise usage_error(f"cannot write {str(out_path)!r}: folder {str(out_path.parent)!r} "
                         "does not exist")
        labels = read_truth(truth)
        cfg = load_config(config)
        base: dict[str, Any] = (
            tomllib.loads(config.read_text(encoding="utf-8")) if config is not None else {})
        secret = load_secret(secret_file)
        fit = learn_from_input(input, labels, cfg, secret)
        data = merge(base, weights_config(fit.weights))
        text = dump_toml(data)
        RunConfig.from_dict(tomllib.loads(text))  # what we write must load
        out_path.write_text(
            "# Signal weights learned by `linkage learn` from "
            f"{truth.name} ({fit.n_pairs:,} candidate pairs, {fit.n_same:,} same-operator)\n"
            + text, encoding="utf-8")
        kinds = [s[4:] for s in fit.signals if s.startswith("obs:")]
        defaults = signal_weights(RunConfig().signals, kinds)
        given = signal_weights(cfg.signals, kinds)
    if not fit.weights:
        err.print("nothing to learn: the truth file gives candidate pairs of one class only; "
                  "the configuration was written unchanged", markup=False)
    if quiet:
        return
    table = Table(title=f"learned weights ({fit.n_pairs:,} pairs, {fit.n_same:,} "
                  "same-operator)")
    for col in ("signal", "default", "config", "coefficient", "learned"):
        table.add_column(col, justify="left" if col == "signal" else "right")
    for i, s in enumerate(fit.signals):
        table.add_row(
            cell(s),
            f"{defaults[s][0]:.2f}" if s in defaults else "-",
            f"{given[s][0]:.2f}" if s in given else "-",
            f"{fit.coef[i]:+.2f}",
            f"{fit.weights[s]:.3f}" if s in fit.weights else "-",
        )
    out.print(table)
    err.print(printable(f"wrote {out_path}"), markup=False, highlight=False)
