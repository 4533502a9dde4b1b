"""Load test of ``linkage serve`` on loopback: latency and throughput at fixed concurrency,
and the index's build time and memory.

Bounded: each level sends a fixed number of requests and stops at a time limit whichever
comes first; the service is started and stopped (SIGTERM) by this script. The store is a
normal ``linkage run`` over generated data (default: the 1M-account ``mixed`` world in
``bench/.cache/serve1m``; build it once with ``--prepare``, a few minutes).

    python bench/serve.py --prepare                      # generate + run, once
    python bench/serve.py --levels 1 16 64 --requests 20000 --doc docs/benchmarks.md

Requests are real accounts' rows from the input under new account ids: a third are members of
flagged clusters (their cards, devices and IPs link), the rest ordinary accounts. The load
generator is raw asyncio streams with keep-alive connections (one per client) and prebuilt
request bytes, so that it costs the shared CPU as little as possible; a request's latency is
from its first byte sent to the last byte of its reply read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from marked import write_marked  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "serve1m"
TOKEN = "bench-token-0123456789abcdef"
HEADING = "## The online check (`linkage serve`, `bench/serve.py`)"
BEGIN, END = "<!-- serve:start -->", "<!-- serve:end -->"
TABLES = ("payment_instruments", "ip_events", "devices", "observations")


def prepare(folder: Path, accounts: int) -> None:
    """Generate the world and run one night into ``folder/linkage.db`` (once)."""
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "secret"
    if not secret.exists():
        secret.write_text(os.urandom(32).hex())
        secret.chmod(0o600)
    if not (folder / "data" / "accounts.parquet").exists():
        subprocess.run([python, "-m", "linkage", "generate", "--scenario", "mixed",
                        "--accounts", str(accounts), "--out", str(folder / "data"),
                        "--seed", "7"], check=True, env=env)
    subprocess.run([python, "-m", "linkage", "run", "--input", str(folder / "data"),
                    "--db", f"sqlite:///{folder / 'linkage.db'}", "--secret-file",
                    str(secret)], check=True, env=env)


def bodies(data: Path, n: int, seed: int = 7) -> list[bytes]:
    """``n`` request bodies: a third from operator accounts (truth.csv), the rest ordinary."""
    rng = random.Random(seed)
    truth = pq.read_table(data / "accounts.parquet", columns=["account_id"])["account_id"]
    import csv

    with open(data / "truth.csv", newline="") as f:
        ops = [r["account_id"] for r in csv.DictReader(f) if r["group_id"]]
    ids = rng.sample(ops, min(len(ops), n // 3))
    ids += rng.sample(truth.to_pylist(), n - len(ids))
    wanted = set(ids)

    def by_account(table: str) -> dict[str, list[dict]]:
        t = pq.read_table(data / f"{table}.parquet")
        t = t.filter(pc.is_in(t["account_id"], value_set=__import__("pyarrow").array(
            sorted(wanted))))
        out: dict[str, list[dict]] = {}
        for row in t.to_pylist():
            out.setdefault(row.pop("account_id"), []).append(_text(row))
        return out

    accounts = {a: r[0] for a, r in by_account("accounts").items()}
    rows = {t: by_account(t) for t in TABLES}
    out = []
    for i, account_id in enumerate(ids):
        account = {**accounts[account_id], "account_id": f"bench-{i}"}
        body = {"account": account, **{t: rows[t].get(account_id, []) for t in TABLES}}
        out.append(json.dumps(body).encode())
    rng.shuffle(out)
    return out


def _text(row: dict) -> dict:
    return {k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime)
                else None if v is None else str(v)) for k, v in row.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(port: int, requests: list[bytes], deadline: float,
                  latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its child processes (the workers) have used
    (``/proc/PID/stat``)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _level(port: int, bodies_: list[bytes], clients: int, total: int,
                 seconds: float, pid: int) -> dict:
    raws = [b"POST /v1/check HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b
            for b in bodies_]
    per = [[raws[(c + clients * i) % len(raws)] for i in range(total // clients)]
           for c in range(clients)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    load = os.getloadavg()[0]
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, p, started + seconds, latencies, statuses)
                           for p in per))
    elapsed = time.perf_counter() - started
    cpu_ms = (_cpu_seconds(pid) - cpu) * 1000 / max(1, len(latencies))
    lat = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2), "statuses": statuses,
            "server_cpu_ms": round(cpu_ms, 3),
            "load_before": round(load, 2)}


def measure_build(db: str, secret: Path) -> dict:
    """Index build time and memory, in a fresh process (peak RSS above the process's
    baseline after imports, and the index's own arrays)."""
    code = f"""
import json, resource, time, tracemalloc
from linkage.pseudonymise import Pseudonymiser, load_secret
from linkage.serve.index import build_index
from linkage.store import Store
store = Store({db!r}); pseudo = Pseudonymiser(load_secret({str(secret)!r}))
run_id = store.latest_run_id()
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
base = rss(); tracemalloc.start(); t = time.perf_counter()
index = build_index(store, run_id, pseudo)
seconds = time.perf_counter() - t
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({{"run_id": run_id, "build_seconds": round(seconds, 2),
    "keys": index.n_keys, "pairs": int(len(index.pair_cluster)),
    "clusters": len(index.cluster_id), "index_mb": round(index.nbytes / 1e6, 2),
    "rss_growth_mb": round((rss() - base) / 1e6, 1),
    "traced_peak_mb": round(peak / 1e6, 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve(db: str, secret: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LINKAGE_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "linkage", "serve", "--db", db,
                             "--port", str(port), "--secret-file", str(secret), "--quiet",
                             "--workers", str(workers)],
                            env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not become healthy in 300 s")


def render(result: dict) -> str:
    b = result["build"]
    lines = [
        f"Measured {result['date']} at commit `{result['commit']}` on {result['accounts']:,} "
        f"accounts (`mixed`, seed 7; run {b['run_id']}: {b['clusters']:,} clusters with "
        f"stored keys, {b['keys']:,} keys, {b['pairs']:,} key-cluster pairs), one "
        "`linkage serve` service (uvicorn; `--workers` processes) and the load generator on "
        "the same "
        f"2 cores, loopback. Bodies: {result['bodies']:,} real accounts' rows under new ids, "
        "a third from operator groups.",
        "",
        "| workers | clients | requests | seconds | requests/s | p50 ms | p99 ms | max ms | "
        "server CPU ms / request | load before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["levels"]:
        lines.append(f"| {r['workers']} | {r['clients']} | {r['requests']:,} | {r['seconds']} | "
                     f"{r['rps']:,} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['server_cpu_ms']} | "
                     f"{r['load_before']} |")
    lines += [
        "",
        f"Index build (fresh process, store already on disk): **{b['build_seconds']} s**, "
        f"arrays {b['index_mb']} MB, resident memory grew {b['rss_growth_mb']} MB "
        f"(Python allocations peaked at {b['traced_peak_mb']} MB; the process's peak RSS, "
        f"imports included, {b['peak_rss_mb']} MB).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=CACHE)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--prepare", action="store_true", help="generate and run the store first")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="linkage serve --workers values to measure, one service each")
    ap.add_argument("--requests", type=int, default=20_000, help="per level")
    ap.add_argument("--seconds", type=float, default=60.0, help="time limit per level")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--bodies", type=int, default=3_000)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "serve.json")
    ap.add_argument("--doc", type=Path, help="rewrite this page's serve section")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.folder, args.accounts)
    db = f"sqlite:///{args.folder / 'linkage.db'}"
    secret = args.folder / "secret"
    build = measure_build(db, secret)
    print("build:", build, flush=True)
    bodies_ = bodies(args.folder / "data", args.bodies)
    levels = []
    exits = []
    for workers in args.workers:
        port = _free_port()
        proc = serve(db, secret, port, workers)
        try:
            asyncio.run(_level(port, bodies_, 4, args.warmup, args.seconds, proc.pid))
            for clients in args.levels:
                r = asyncio.run(_level(port, bodies_, clients, args.requests, args.seconds,
                                       proc.pid))
                r = {"workers": workers, **r}
                print(r, flush=True)
                levels.append(r)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            exits.append(proc.returncode)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "commit": commit,
              "accounts": args.accounts, "bodies": len(bodies_), "build": build,
              "levels": levels, "serve_exits": exits,
              "client_cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 1)}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.doc:
        write_marked(args.doc, HEADING, BEGIN, END, render(result))


if __name__ == "__main__":
    main()
