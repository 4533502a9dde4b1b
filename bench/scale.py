"""Time the nightly run at a named scale: wall time and peak memory per stage.

Usage::

    python bench/scale.py --scale 1m            # 1,000,000 accounts, mixed scenario
    python bench/scale.py --scale 100k --runs 3

Generates the input once per scale (cached in ``bench/.cache/``), then runs ``linkage run``
as a user would, in a fresh process, and reads the per-stage lines it logs
(``stage X: done in S s, peak RSS M MB``) plus the process's peak RSS from the OS
(``/usr/bin/time -v`` when present, else ``resource.getrusage`` of the child).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = {"20k": 20_000, "100k": 100_000, "200k": 200_000, "1m": 1_000_000, "5m": 5_000_000}
CACHE = Path(__file__).parent / ".cache"
STAGE = re.compile(r"stage (\w+): done in ([\d.]+) s, peak RSS (\d+) MB")


def data_for(scale: str, scenario: str) -> Path:
    out = CACHE / f"{scenario}-{scale}"
    if not (out / "truth.csv").exists():
        from linkage.synth import generate

        start = time.perf_counter()
        generate(out, scenario=scenario, n_accounts=SCALES[scale], seed=1)
        print(f"generated {scale} {scenario} in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    return out


def run_once(data: Path, workdir: Path) -> dict:
    db = f"sqlite:///{workdir / 'bench.db'}"
    env = {**os.environ, "LINKAGE_SECRET": "bench-secret-0123456789abcdef"}
    cmd = [sys.executable, "-m", "linkage", "run", "--input", str(data), "--db", db]
    log_path = CACHE / "last-run.log"  # follow a long run with `tail -f`
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                              check=False)
    wall = time.perf_counter() - start
    stderr = log_path.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"linkage run failed ({proc.returncode}):\n{stderr[-3000:]}")
    stages = {m[1]: (float(m[2]), int(m[3])) for m in STAGE.finditer(stderr)}
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall": wall, "stages": stages, "peak_mb": peak,
            "summary": proc.stdout.strip().splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="100k")
    parser.add_argument("--scenario", default="mixed")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    data = data_for(args.scale, args.scenario)
    rows = sum(1 for _ in data.iterdir())
    print(f"input: {data} ({rows} files)")
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_once(data, Path(tmp))
        print(f"\nrun {i + 1}: wall {r['wall']:.1f} s, peak RSS {r['peak_mb']:.0f} MB")
        print("| stage | seconds | peak RSS so far (MB) |\n|---|---:|---:|")
        for stage, (secs, mb) in r["stages"].items():
            print(f"| {stage} | {secs:.1f} | {mb} |")
        print("\n".join(r["summary"][-25:]))


if __name__ == "__main__":
    main()
