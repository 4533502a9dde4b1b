"""Soak: the nightly job ten times in a row on a growing store, SQLite and PostgreSQL.

Usage::

    python bench/soak.py                       # 10 nights of 20,000 accounts, both stores
    python bench/soak.py --nights 5 --accounts 50000 --pg ""     # SQLite only

Each night runs ``linkage run`` in a fresh process (as a scheduler would) on input that
grows by 2% a night (new accounts join, every earlier account stays), and records wall
time, the process's peak RSS (from the OS, ``getrusage`` of the child) and the store's size
on disk (SQLite: the file and its WAL; PostgreSQL: ``pg_database_size``). The claim it
checks: time and memory stay flat per night (they follow the night's input, not the history
in the store), and the store grows only with what is kept. Figures go to
``docs/benchmarks.md`` (section "Soak").
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from linkage.synth import generate

DOC = Path(__file__).parent.parent / "docs" / "benchmarks.md"
SECRET = "bench-soak-secret-0123456789abcdef"


def night(data: Path, db: str) -> tuple[float, float]:
    env = {**os.environ, "LINKAGE_SECRET": SECRET}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "linkage", "run", "--input", str(data),
                           "--db", db, "--quiet"], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"night failed ({proc.returncode}): {proc.stderr[-2000:]}")
    # ru_maxrss of children is the largest child so far: report it once it grows
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return wall, peak


def store_size(db: str) -> float:
    if db.startswith("sqlite"):
        path = Path(db.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT pg_database_size(current_database())")
                                ).scalar() / 2**20
    finally:
        engine.dispose()


def soak(kind: str, db: str, nights: int, accounts: int, work: Path) -> list[tuple]:
    rows = []
    for i in range(nights):
        n = int(accounts * (1 + 0.02 * i))
        data = work / f"night-{i}"
        # same seed: the first n accounts of a bigger night are the accounts of the smaller
        # one only approximately (the generator draws per size), which is fine for a soak
        generate(data, scenario="mixed", n_accounts=n, seed=1)
        wall, peak = night(data, db)
        size = store_size(db)
        rows.append((kind, i + 1, n, wall, peak, size))
        print(f"{kind} night {i + 1}: {n} accounts, {wall:.1f} s, peak {peak:.0f} MB, "
              f"store {size:.1f} MB", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="server URL where a scratch database may be created; '' skips")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows += soak("SQLite", f"sqlite:///{work / 'soak.db'}", args.nights, args.accounts,
                     work)
        if args.pg:
            admin = sa.create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://",
                                                     1), isolation_level="AUTOCOMMIT")
            name = f"linkage_soak_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            try:
                url = args.pg.rsplit("/", 1)[0] + f"/{name}"
                rows += soak("PostgreSQL", url, args.nights, args.accounts, work)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    write(args.out, rows, args)


def write(path: Path, rows: list[tuple], args: argparse.Namespace) -> None:
    lines = [
        "## Soak: ten nights on a growing store",
        "",
        f"`python bench/soak.py --nights {args.nights} --accounts {args.accounts}`: each night "
        "is a fresh `linkage run` process on the `mixed` scenario, 2% more accounts than the "
        "night before, into the same store. Peak RSS is the largest child process so far "
        "(the OS's accounting), so it can only stay or grow.",
        "",
        "| store | night | accounts | seconds | peak RSS (MB) | store size (MB) |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {k} | {i} | {n:,} | {w:.1f} | {p:,.0f} | {s:.1f} |" for k, i, n, w, p, s in rows),
        "",
    ]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = "\n## Soak"
    if marker in text:
        end = text.find("\n## ", text.index(marker) + 1)
        text = text[: text.index(marker)] + (text[end:] if end != -1 else "\n")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
