"""Both engines on the same input: wall time per stage, and whether they agree.

Usage::

    flock /tmp/linkage-heavy.lock python bench/engines.py --scale 100k
    flock /tmp/linkage-heavy.lock python bench/engines.py --scale 1m --driver-memory 8g

Generates (or reuses, ``bench/.cache/``) the ``mixed`` input of ``bench/scale.py``, then runs
``linkage run --engine duckdb`` and ``linkage run --engine spark`` (local master, all cores)
in fresh processes into two new SQLite stores, prints the stage timings side by side and
compares the two stores' memberships. The Spark figure includes starting the JVM.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import SCALES, STAGE, data_for

STAGES = ("ingest", "signals", "graph", "communities", "scoring", "continuity", "store")


def run(engine: str, data: Path, workdir: Path, driver_memory: str) -> tuple[float, dict]:
    db = workdir / f"{engine}.db"
    config = workdir / "config.toml"
    config.write_text(f'[engine.spark]\nconf = {{ "spark.driver.memory" = "{driver_memory}" }}\n')
    env = {**os.environ, "LINKAGE_SECRET": "bench-secret-0123456789abcdef"}
    cmd = [sys.executable, "-m", "linkage", "run", "--input", str(data), "--db",
           f"sqlite:///{db}", "--engine", engine, "--config", str(config)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{engine} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stages = {m[1]: float(m[2]) for m in STAGE.finditer(proc.stderr)}
    rounds = re.search(r"labels settled in (\d+) rounds", proc.stderr)
    if rounds:
        stages["component rounds"] = float(rounds[1])
    return wall, stages


def memberships(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT account_id, cluster_id FROM memberships"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="100k")
    parser.add_argument("--driver-memory", default="4g",
                        help="spark.driver.memory of the local Spark session")
    args = parser.parse_args()
    data = data_for(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {e: run(e, data, work, args.driver_memory) for e in ("duckdb", "spark")}
        same = memberships(work / "duckdb.db") == memberships(work / "spark.db")
    print(f"input: {data}, {SCALES[args.scale][1]:,} accounts, {os.cpu_count()} cores")
    print("| stage | duckdb (s) | spark (s) |\n|---|---:|---:|")
    for stage in STAGES:
        d, s = (results[e][1].get(stage, float("nan")) for e in ("duckdb", "spark"))
        print(f"| {stage} | {d:.1f} | {s:.1f} |")
    print(f"| **whole run** (wall, process start included) | **{results['duckdb'][0]:.1f}** "
          f"| **{results['spark'][0]:.1f}** |")
    if "component rounds" in results["spark"][1]:
        print(f"Spark connected components: {results['spark'][1]['component rounds']:.0f} "
              "rounds")
    print(f"memberships identical: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
