"""Robustness: linkage's default configuration on many independently drawn worlds.

Usage::

    python bench/robustness.py                  # tuning seeds 0-9 and report seeds 100-159
    python bench/robustness.py --quick          # 12 worlds of at most 30,000 accounts
    python bench/robustness.py --seeds 100 101 --max-accounts 50000 --jobs 2

Each seed draws a world with :func:`linkage.synth.worlds.draw_world` (5,000 to 1,000,000
accounts, 0.5-10% operators in groups of 3 to 3,000, a random mix of operator shapes and
legitimate features); worlds drawn above ``--max-accounts`` are generated at that size
(same parameters otherwise) and marked so in the report. Worlds are cached in
``bench/.cache/robustness/``. linkage runs with its default configuration exactly as in
``bench/quality.py`` (:func:`quality.run_linkage`) and is scored with
:func:`linkage.evaluate.evaluate_flagged`; if the memberships carry a ``campaign_id``, the
number of campaigns a detected group's flagged accounts fall into is reported too.

The median and the worst world are taken over the report seeds only (100 and up); the
tuning seeds (below 100) are listed apart, for tuning against. Raw rows go to
``bench/robustness.json``; the section between the robustness markers of
``docs/quality.md`` is rewritten (the rest of the page is kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

sys.path.insert(0, str(Path(__file__).parent))
from marked import write_marked
from quality import run_linkage

from linkage.evaluate import evaluate_flagged, read_truth
from linkage.synth.worlds import WorldParams, draw_world, generate_world

CACHE = Path(__file__).parent / ".cache" / "robustness"
JSON_OUT = Path(__file__).parent / "robustness.json"
DOC = Path(__file__).parent.parent / "docs" / "quality.md"
TUNING = list(range(10))
REPORT = list(range(100, 160))
QUICK_SEEDS = [0, 1, 2, 3, *range(100, 108)]
QUICK_MAX = 30_000
TARGET_F1, TARGET_FPR = 0.95, 0.001
HEADING = "## Robustness: drawn worlds"
BEGIN, END = "<!-- robustness:begin -->", "<!-- robustness:end -->"


def world_dir(seed: int, params: WorldParams) -> Path:
    """The cache folder of one world (named by seed and a digest of its parameters)."""
    digest = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()
    return CACHE / f"w{seed:03d}-{params.n_accounts}-{digest[:10]}"


def ensure_world(seed: int, params: WorldParams) -> tuple[Path, float]:
    """Generate the world unless cached; return its folder and the seconds spent."""
    out = world_dir(seed, params)
    if (out / "truth.csv").exists():
        return out, 0.0
    start = time.perf_counter()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_world(tmp, params, seed)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, time.perf_counter() - start


def breakdown(data: Path, memberships: pa.Table) -> dict:
    """Recall per operator shape and usage mode, false positives per legitimate role, and
    campaign fragmentation when the memberships name campaigns."""
    read = pcsv.ConvertOptions(strings_can_be_null=False)
    con = duckdb.connect()
    try:
        con.register("m", memberships)
        con.register("truth", read_truth(data / "truth.csv"))
        con.register("groups", pcsv.read_csv(data / "groups.csv", convert_options=read))
        con.register("roles", pcsv.read_csv(data / "roles.csv", convert_options=read))
        flagged = "(SELECT DISTINCT account_id FROM m WHERE flagged)"
        by = {}
        for col in ("shape", "usage"):
            by[col] = {k: {"accounts": int(n), "recall": round(float(r), 4)} for k, n, r in
                       con.execute(f"""
                SELECT g.{col}, count(*), avg((f.account_id IS NOT NULL)::INT)
                FROM truth t JOIN groups g USING (group_id)
                LEFT JOIN {flagged} f USING (account_id)
                GROUP BY 1 ORDER BY 1""").fetchall()}
        fp_roles = dict(con.execute(f"""
            SELECT coalesce(r.role, 'plain'), count(*) FROM {flagged} f
            JOIN truth t USING (account_id) LEFT JOIN roles r USING (account_id)
            WHERE t.group_id IS NULL GROUP BY 1 ORDER BY 2 DESC""").fetchall())
        campaign = None
        if "campaign_id" in memberships.column_names:
            row = con.execute("""
                SELECT avg(n) FROM (
                    SELECT t.group_id, count(DISTINCT coalesce(nullif(m.campaign_id, ''),
                                                             'cluster:' || m.cluster_id)) AS n
                    FROM m JOIN truth t USING (account_id)
                    WHERE m.flagged AND t.group_id IS NOT NULL GROUP BY 1)""").fetchone()
            campaign = round(float(row[0]), 4) if row and row[0] is not None else 0.0
    finally:
        con.close()
    return {"by_shape": by["shape"], "by_usage": by["usage"],
            "fp_by_role": {k: int(v) for k, v in fp_roles.items()},
            "campaign_fragmentation": campaign}


def measure(seed: int, max_accounts: int, config: Path | None = None) -> dict:
    """Generate (or reuse) one world, run linkage on it (the default configuration, or the
    TOML ``config``) and score it."""
    drawn = draw_world(seed)
    params = drawn.scaled(max_accounts)
    data, gen_secs = ensure_world(seed, params)
    start = time.perf_counter()
    memberships = run_linkage(data, config)
    run_secs = time.perf_counter() - start
    ev = evaluate_flagged(read_truth(data / "truth.csv"), memberships)
    row = {
        "seed": seed, "set": "report" if seed >= 100 else "tuning",
        "drawn_accounts": drawn.n_accounts, "scaled": params is not drawn,
        "params": asdict(params), "describe": params.describe(),
        "precision": ev.precision, "recall": ev.recall, "f1": ev.f1,
        "fpr": ev.false_positive_rate, "false_positives": ev.false_positives,
        "operator_accounts": ev.operator_accounts, "groups": ev.groups,
        "groups_detected": ev.groups_detected, "group_recall_min": ev.group_recall_min,
        "group_recall_median": ev.group_recall_median, "fragmentation": ev.fragmentation,
        **breakdown(data, memberships),
        "seconds_generate": round(gen_secs, 1), "seconds_run": round(run_secs, 1),
    }
    print(f"seed {seed:>3} F1 {ev.f1:.3f} P {ev.precision:.3f} R {ev.recall:.3f} "
          f"FPR {ev.false_positive_rate:.4%} ({run_secs:.0f}s)  {row['describe']}",
          file=sys.stderr, flush=True)
    return row


def _fmt_shapes(row: dict) -> str:
    return ", ".join(f"{s} {v['recall']:.2f}" for s, v in row["by_shape"].items())


def _fmt_fp(row: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in row["fp_by_role"].items()) or "-"


def _table(rows: list[dict]) -> list[str]:
    campaign = any(r["campaign_fragmentation"] is not None for r in rows)
    head = ("| seed | accounts | ops | sizes | shapes (recall) | background | P | R | F1 | FPR "
            "| group recall min | frag |" + (" campaign frag |" if campaign else "")
            + " false positives by role | s |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(rows, key=lambda r: r["seed"]):
        p = r["params"]
        acc = f"{p['n_accounts']:,}" + (f" (of {r['drawn_accounts']:,})" if r["scaled"] else "")
        bg = ", ".join(k.replace("_", " ") for k in (
            "families", "extended_families", "orgs", "teams", "heavy_users", "stock_device",
            "hubs") if p[k])
        cf = f" {r['campaign_fragmentation']:.2f} |" if campaign else ""
        out.append(
            f"| {r['seed']} | {acc} | {p['operator_share']:.1%} | {p['group_sizes'][0]}-"
            f"{p['group_sizes'][1]} | {_fmt_shapes(r)} | {bg or '-'} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['f1']:.3f} | {r['fpr']:.3%} | {r['group_recall_min']:.2f} | "
            f"{r['fragmentation']:.2f} |{cf} {_fmt_fp(r)} | {r['seconds_run']:.0f} |")
    return out


def section(rows: list[dict], argv: str, max_accounts: int) -> str:
    report = [r for r in rows if r["set"] == "report"]
    tuning = [r for r in rows if r["set"] == "tuning"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    lines = [
        f"Generated by `python bench/robustness.py{' ' + argv if argv else ''}` at commit "
        f"{commit or '?'}: each seed draws a world with `linkage.synth.worlds.draw_world` "
        "(5,000 to 1,000,000 accounts, 0.5-10% operators in groups of 3 to 3,000, a random "
        "mix of operator shapes and legitimate features; see `linkage generate --scenario "
        "world`) and linkage runs with its default configuration. Worlds drawn above "
        f"{max_accounts:,} accounts are generated at {max_accounts:,} (marked \"of N\"). "
        "Median and worst are over the report seeds (100 and up) only; tuning seeds (below "
        "100) are listed apart. Shapes: metadata rings `plain`, `camouflage`, `slowdrip`; "
        "clean metadata with usage `whole` (shared private pool), `window`, `largepool` "
        "(thousands of private templates), `paraphrase` (no fingerprint used twice); "
        "`cells` (household-shaped cells tied by usage); `aged` (bought accounts, chained "
        "prepaid cards). Raw rows: `bench/robustness.json`.", "",
    ]
    if report:
        f1 = np.array([r["f1"] for r in report])
        fpr = np.array([r["fpr"] for r in report])
        worst = min(report, key=lambda r: (r["f1"], -r["fpr"], r["seed"]))
        worst_fpr = max(report, key=lambda r: (r["fpr"], r["seed"]))
        ok_f1, ok_fpr = worst["f1"] >= TARGET_F1, worst_fpr["fpr"] <= TARGET_FPR
        lines += [
            f"Report seeds: {len(report)} worlds.", "",
            "| | precision | recall | F1 | FPR |", "|---|---:|---:|---:|---:|",
            "| median | {:.3f} | {:.3f} | {:.3f} | {:.3%} |".format(
                *(float(np.median([r[k] for r in report])) for k in
                  ("precision", "recall", "f1", "fpr"))),
            f"| worst world by F1 (seed {worst['seed']}) | {worst['precision']:.3f} | "
            f"{worst['recall']:.3f} | {worst['f1']:.3f} | {worst['fpr']:.3%} |",
            f"| worst world by FPR (seed {worst_fpr['seed']}) | {worst_fpr['precision']:.3f} | "
            f"{worst_fpr['recall']:.3f} | {worst_fpr['f1']:.3f} | {worst_fpr['fpr']:.3%} |", "",
            f"Worst world by F1: {worst['describe']}.", "",
            "| target | value | |", "|---|---:|---|",
            f"| worst world F1 >= {TARGET_F1} | {worst['f1']:.3f} | "
            f"{'met' if ok_f1 else '**missed**'} |",
            f"| every world's FPR <= {TARGET_FPR:.1%} | {worst_fpr['fpr']:.3%} | "
            f"{'met' if ok_fpr else '**missed**'} |",
            f"| worlds with F1 >= {TARGET_F1} | {int((f1 >= TARGET_F1).sum())} of "
            f"{len(report)} | |",
            f"| worlds with FPR <= {TARGET_FPR:.1%} | {int((fpr <= TARGET_FPR).sum())} of "
            f"{len(report)} | |", "",
        ]
        lines += ["Recall per operator shape (operator accounts flagged, over all report "
                  "worlds):", "", "| shape | accounts | recall |", "|---|---:|---:|"]
        for key in ("by_shape", "by_usage"):
            tot: dict[str, list[float]] = {}
            for r in report:
                for s, v in r[key].items():
                    t = tot.setdefault(s, [0.0, 0.0])
                    t[0] += v["accounts"]
                    t[1] += v["accounts"] * v["recall"]
            lines += [f"| {'usage ' if key == 'by_usage' else ''}{s} | {int(a):,} | "
                      f"{h / a:.3f} |" for s, (a, h) in sorted(tot.items()) if a]
        fp: dict[str, int] = {}
        for r in report:
            for k, v in r["fp_by_role"].items():
                fp[k] = fp.get(k, 0) + v
        lines += ["", "False positives by what the legitimate account is (all report worlds): "
                  + (", ".join(f"{k} {v:,}" for k, v in sorted(fp.items(),
                                                              key=lambda kv: -kv[1])) or "none")
                  + ".", "", "### Report worlds", "", *_table(report), ""]
    if tuning:
        lines += ["### Tuning worlds", "", *_table(tuning), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="World seeds (default: tuning 0-9 and report 100-159).")
    parser.add_argument("--max-accounts", type=int, default=None,
                        help="Generate bigger worlds at this size (default 200000; quick 30000).")
    parser.add_argument("--jobs", type=int, default=1, help="Worlds measured at once.")
    parser.add_argument("--quick", action="store_true",
                        help="12 worlds (tuning 0-3, report 100-107) of at most 30,000 accounts.")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, default=JSON_OUT)
    parser.add_argument("--no-doc", action="store_true", help="Only print and write JSON.")
    parser.add_argument("--config", type=Path, default=None,
                        help="A linkage TOML configuration to measure instead of the default "
                             "(implies --no-doc: the page reports the default).")
    args = parser.parse_args()
    seeds = args.seeds or (QUICK_SEEDS if args.quick else TUNING + REPORT)
    max_accounts = args.max_accounts or (QUICK_MAX if args.quick else 200_000)
    CACHE.mkdir(parents=True, exist_ok=True)
    def save(rows: list[dict]) -> None:
        args.json.write_text(json.dumps(
            {"argv": sys.argv[1:], "max_accounts": max_accounts, "rows": rows}, indent=1) + "\n")

    rows: list[dict] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        # Rows are saved as worlds finish: a long sweep that is stopped keeps what it measured.
        for row in pool.map(measure, seeds, [max_accounts] * len(seeds),
                            [args.config] * len(seeds)):
            rows.append(row)
            save(rows)
    text = section(rows, " ".join(sys.argv[1:]), max_accounts)
    print(text)
    if not (args.no_doc or args.config):
        write_marked(args.out, HEADING, BEGIN, END, text)


if __name__ == "__main__":
    main()
