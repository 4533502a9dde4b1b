"""Learned signal weights against the defaults, on held-out seeds.

Usage::

    python bench/learn.py                                  # every scenario, 20k accounts
    python bench/learn.py --scenarios plain hubs --accounts 50000

For each scenario: generate data with seed 1 (training) and seed 2 (held out), learn signal
weights on seed 1 with :func:`linkage.learn.learn_from_input` (the same code as
``linkage learn``), then run linkage on seed 2 twice — with the default configuration and with
the learned weights merged over it — and evaluate both against seed 2's truth. The result
replaces the section "## Learned weights (held-out seeds)" of ``docs/quality.md`` (the rest of
the file is left as it is).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from linkage.config import RunConfig
from linkage.evaluate import Evaluation, evaluate_flagged, read_truth
from linkage.learn import learn_from_input, weights_config
from linkage.pipeline import run_pipeline
from linkage.store import Store
from linkage.synth import SCENARIOS, generate

CACHE = Path(__file__).parent / ".cache" / "learn"
DOC = Path(__file__).parent.parent / "docs" / "quality.md"
SECRET = b"bench-quality-secret-0123456789"
HEADING = "## Learned weights (held-out seeds)"
# The reading of the table below, written from the figures it produced (update it with them).
READING = (
    "Reading (written from the 20,000-account figures above): on one held-out seed, with about "
    "400 operator accounts per scenario (0.01 of recall is four accounts), learned weights are "
    "no clear improvement over the defaults. Weights learned per scenario gain on plain "
    "(recall 0.978 to 0.995), camouflage (precision 0.992 to 0.998) and slowdrip (recall 0.953 "
    "to 0.980: the model raises `bin_postal`, the tie between slowdrip's virtual cards, from "
    "0.3 to 0.77), lose a little on hubs (recall 0.978 to 0.968) and lose on mixed (F1 0.986 "
    "to 0.973, FPR 0.046% to 0.077%). The one configuration learned on mixed keeps the "
    "camouflage gain but loses recall on plain, hubs and slowdrip, and loses on mixed itself "
    "although it was learned there. What the model says consistently: a shared /24 range "
    "(`ip_net`) and co-signup add no same-operator evidence once cards and devices are known "
    "(weight 0 almost everywhere), and `bin_postal` is worth more than 0.3 where operators use "
    "virtual cards. Why it does not simply win: it fits evidence pair by pair, while detection "
    "also depends on the clustering and scoring thresholds (CPM resolution, strong cores at "
    "0.6, the flag threshold), which were chosen with the default weights and are not "
    "re-tuned here. The defaults stay the defaults; `linkage learn` is a tool for a deployment "
    "with its own labels, whose result should be checked on held-out labels (as here) before "
    "it replaces them."
)
TRAIN_SEED, TEST_SEED = 1, 2
POOLED = "mixed"
Row = tuple[str, dict[str, float], dict[str, Evaluation]]


def data_for(scenario: str, n: int, seed: int) -> Path:
    out = CACHE / f"{scenario}-{n}-s{seed}"
    if not (out / "truth.csv").exists():
        generate(out, scenario=scenario, n_accounts=n, seed=seed)
    return out


def run_linkage(data: Path, cfg: RunConfig) -> pa.Table:
    with tempfile.TemporaryDirectory() as tmp, Store(f"sqlite:///{tmp}/q.db") as store:
        summary = run_pipeline(data, store, cfg, SECRET)
        return store.memberships(summary.run_id)


def learn(scenario: str, n: int) -> dict[str, float]:
    train = data_for(scenario, n, TRAIN_SEED)
    start = time.perf_counter()
    fit = learn_from_input(train, read_truth(train / "truth.csv"), RunConfig(), SECRET)
    print(f"{scenario:<11} learned in {time.perf_counter() - start:.1f}s: {fit.weights}",
          file=sys.stderr, flush=True)
    return fit.weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    pooled = learn(POOLED, args.accounts)
    rows: list[Row] = []
    for scenario in args.scenarios:
        own = pooled if scenario == POOLED else learn(scenario, args.accounts)
        test = data_for(scenario, args.accounts, TEST_SEED)
        truth = read_truth(test / "truth.csv")
        results = {}
        for name, cfg in (
            ("default", RunConfig()),
            ("learned", RunConfig.from_dict(weights_config(own))),
            (f"learned on {POOLED}", RunConfig.from_dict(weights_config(pooled))),
        ):
            r = evaluate_flagged(truth, run_linkage(test, cfg))
            results[name] = r
            print(f"{scenario:<11} {name:<17} P {r.precision:.3f} R {r.recall:.3f} "
                  f"F1 {r.f1:.3f} FPR {r.false_positive_rate:.5f}", file=sys.stderr, flush=True)
        rows.append((scenario, own, results))
    argv = []
    if args.scenarios != list(SCENARIOS):
        argv.append("--scenarios " + " ".join(args.scenarios))
    if args.accounts != 20_000:
        argv.append(f"--accounts {args.accounts}")
    write_section(args.out, rows, " ".join(argv), args.accounts)


def section(rows: list[Row], argv: str, n: int) -> str:
    lines = [
        HEADING,
        "",
        "Generated by `python bench/learn.py" + (f" {argv}" if argv else "") + "`. "
        f"Signal weights are learned with `linkage learn`'s model on seed {TRAIN_SEED} of a "
        f"scenario ({n:,} accounts); linkage then runs on seed {TEST_SEED} of the same "
        "scenario (held out: other accounts, other rings) three times: with the default "
        "configuration, with the weights learned on that scenario (*learned*), and with the "
        f"weights learned on `{POOLED}` (*learned on {POOLED}*: one learned configuration for "
        "every scenario, like the default). Only signal weights change; resolution, strong "
        "cores and scoring stay at their defaults.",
        "",
        "| scenario | weights | precision | recall | F1 | FPR |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario, _w, results in rows:
        for name, r in results.items():
            lines.append(f"| {scenario} | {name} | {r.precision:.3f} | {r.recall:.3f} | "
                         f"{r.f1:.3f} | {r.false_positive_rate:.4%} |")
    lines += ["", "Weights learned per scenario (seed 1; signals that no candidate pair shared "
              "are not learned and keep their default):", ""]
    for scenario, w, _r in rows:
        lines.append(f"- {scenario}: " + ", ".join(f"`{s}` {v:.2f}" for s, v in sorted(
            w.items())))
    lines += ["", READING, ""]
    return "\n".join(lines)


def write_section(path: Path, rows: list[Row], argv: str, n: int) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new = section(rows, argv, n)
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + new
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + new + ("" if end < 0 else text[end + 1:])
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
