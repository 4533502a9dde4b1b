"""bench/real.py's Reddit converter keeps every user and every user-subreddit edge."""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path
from types import ModuleType

import duckdb

from linkage.config import RunConfig
from linkage.pipeline import run_pipeline
from linkage.store import Store

BENCH = Path(__file__).resolve().parent.parent / "bench" / "real.py"


def _real() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_real", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_gz(path: Path, header: list[str], rows: list[tuple[object, ...]]) -> None:
    with gzip.open(path, "wt", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def _reddit_folder(root: Path) -> tuple[int, list[tuple[int, int]]]:
    """A miniature of the shared data's layout: users 0..n-1, then subreddits."""
    n_users, n_subs = 12, 4
    src = root / "reddit_banned"
    src.mkdir(parents=True)
    nodes = [(i, "user", int(i % 5 == 0)) for i in range(n_users)]
    nodes += [(n_users + s, "subreddit", 0) for s in range(n_subs)]
    # Every user in at least one subreddit; the last subreddit has every user.
    edges = [(u, n_users + u % (n_subs - 1)) for u in range(n_users)]
    edges += [(u, n_users + n_subs - 1) for u in range(n_users)]
    _write_gz(src / "nodes.csv.gz", ["node_id", "node_type", "banned"], nodes)
    _write_gz(src / "user_subreddit_edges.csv.gz", ["user_node", "subreddit_node"], edges)
    return n_users, edges


def test_conversion_keeps_every_user_and_edge(tmp_path: Path) -> None:
    real = _real()
    n_users, edges = _reddit_folder(tmp_path / "real")
    out = real.reddit_input(tmp_path / "real", tmp_path / "in")
    con = duckdb.connect()
    accounts = con.execute(
        f"SELECT account_id, created_at FROM read_csv('{out / 'accounts.csv'}', "
        f"all_varchar = true) ORDER BY account_id::INTEGER").fetchall()
    assert [a for a, _ in accounts] == [str(i) for i in range(n_users)]
    # Neutral time: one day apart, so no two accounts share a signup (burst) window.
    days = con.execute(
        f"SELECT count(DISTINCT created_at::DATE), min(created_at::TIMESTAMP) "
        f"FROM read_csv('{out / 'accounts.csv'}')").fetchone()
    assert days is not None and days[0] == n_users and str(days[1]).startswith("2000-01-01")
    obs = con.execute(
        f"SELECT account_id, kind, value FROM read_csv('{out / 'observations.csv'}', "
        f"all_varchar = true)").fetchall()
    assert sorted(obs) == sorted((str(u), "subreddit", str(s)) for u, s in edges)

    # And linkage reads it as contract input, every row kept.
    store = Store(f"sqlite:///{tmp_path}/r.db")
    summary = run_pipeline(out, store, RunConfig.from_dict({}), b"test-secret-0123456789")
    store.close()
    assert summary.n_accounts == n_users
    assert summary.rows_read == {"accounts": n_users, "observations": len(edges)}
    assert summary.rows_quarantined == {}


def test_same_created_at_gives_every_account_one_value(tmp_path: Path) -> None:
    real = _real()
    n_users, _ = _reddit_folder(tmp_path / "real")
    out = real.reddit_input(tmp_path / "real", tmp_path / "in", created_at="same")
    got = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT created_at) FROM read_csv('{out / 'accounts.csv'}', "
        f"all_varchar = true)").fetchone()
    assert got == (n_users, 1)
