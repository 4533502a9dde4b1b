"""Minimal peer pipelines: the least a linkage job can do on the same Parquet input.

``bench/scale.py`` runs each peer in its own process beside ``linkage run`` (so that each
has its own peak RSS, from the OS) and compares them; run one by hand with::

    python bench/peers.py --peer duckdb-igraph --input bench/.cache/mixed-100k

It prints one JSON object: per-stage seconds, edges, clusters.

``duckdb-igraph``
    Read the tables with DuckDB; give every account an integer index; take the exact
    attributes linkage also links on (card, BIN + postal code, device, email, phone, IP of
    events and signup, IPv4 /24 and IPv6 /64 of those IPs, every observation kind);
    keep keys carried by 2..200 accounts (the hub cap); link every pair of a key's accounts
    in one self-join with IDF weights ``sum log(N / n_key)``; build an igraph graph from the
    arrays; CPM Leiden (igraph's C implementation, 1 iteration, as linkage's default); write
    the memberships to SQLite with ``executemany``. No validation, pseudonymisation,
    time-bucketed signals, hub rings, scoring, explanations or audit store.
``networkx``
    The same pairs into a networkx graph and ``louvain_communities`` (seeded): the pure-Python
    baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import igraph as ig
import numpy as np

CAP = 200
PEERS = ("duckdb-igraph", "networkx")


def _source(data: Path, table: str) -> str:
    """``read_parquet`` of a table that is one file or a folder of part files."""
    folder = data / table
    path = f"{folder}/*.parquet" if folder.is_dir() else f"{data / f'{table}.parquet'}"
    return f"read_parquet('{path}')"


def _tables(data: Path) -> set[str]:
    return {p.name.split(".")[0] for p in data.iterdir()}


def peer_pairs(data: Path) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Accounts and the IDF-weighted pairs of accounts sharing an exact attribute."""
    con = duckdb.connect()
    have = _tables(data)
    con.execute(f"""
        CREATE TABLE acc AS SELECT (row_number() OVER (ORDER BY account_id) - 1)::INTEGER AS idx,
            account_id, email, phone, signup_ip FROM {_source(data, "accounts")}""")

    def by_account(table: str, kind: str, key: str) -> str:
        return (f"SELECT a.idx, {kind} AS kind, {key} AS key FROM {_source(data, table)} t "
                "JOIN acc a USING (account_id)")

    parts = ["SELECT idx, 'email' AS kind, lower(email) AS key FROM acc",
             "SELECT idx, 'phone', phone FROM acc",
             "SELECT idx, 'ip', signup_ip FROM acc"]
    if "payment_instruments" in have:
        parts += [by_account("payment_instruments", "'card'", "t.fingerprint"),
                  by_account("payment_instruments", "'bin_postal'",
                             "t.bin || ' ' || t.billing_postal")]
    if "devices" in have:
        parts.append(by_account("devices", "'device'", "t.device_id"))
    if "ip_events" in have:
        parts.append(by_account("ip_events", "'ip'", "t.ip"))
    if "observations" in have:
        parts.append(by_account("observations", "'obs:' || t.kind", "t.value"))
    con.execute(f"CREATE TABLE raw AS {' UNION ALL '.join(parts)}")
    # The network of every IP: IPv4 /24, IPv6 /64 (first four groups as written).
    con.execute("""
        INSERT INTO raw SELECT idx, 'ip_net', CASE WHEN contains(key, ':')
            THEN array_to_string(string_split(key, ':')[1:4], ':')
            ELSE regexp_replace(key, '\\.[0-9]+$', '') END
        FROM raw WHERE kind = 'ip'""")
    con.execute("""
        CREATE TABLE links AS SELECT DISTINCT idx, kind, key FROM raw WHERE key IS NOT NULL""")
    con.execute("DROP TABLE raw")
    n = con.execute("SELECT count(*) FROM acc").fetchone()[0]
    cols = con.execute(f"""
        WITH k AS (SELECT kind, key, count(*) AS n FROM links GROUP BY kind, key
                   HAVING count(*) BETWEEN 2 AND {CAP}),
        m AS (SELECT l.idx, kk.kid, kk.n FROM links l JOIN
              (SELECT row_number() OVER () AS kid, kind, key, n FROM k) kk USING (kind, key))
        SELECT x.idx AS a, y.idx AS b, sum(ln({n}::DOUBLE / x.n)) AS w
        FROM m x JOIN m y ON x.kid = y.kid AND x.idx < y.idx
        GROUP BY x.idx, y.idx""").fetchnumpy()
    con.close()
    return n, cols["a"], cols["b"], cols["w"]


@contextlib.contextmanager
def _timed(t: dict[str, float], stage: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block as ``t[stage]``."""
    start = time.perf_counter()
    yield
    t[stage] = time.perf_counter() - start


def duckdb_igraph(data: Path, work: Path) -> dict[str, float]:
    t: dict[str, float] = {}
    with _timed(t, "pairs"):
        n, a, b, w = peer_pairs(data)
    with _timed(t, "graph"):
        g = ig.Graph(n=n, edges=list(zip(a.tolist(), b.tolist(), strict=True)))
        g.es["weight"] = w / (w.max() if len(w) else 1.0)
    with _timed(t, "leiden"):
        random.seed(1)
        membership = g.community_leiden(objective_function="CPM", weights="weight",
                                        resolution=0.05, n_iterations=1).membership
    with _timed(t, "write"):
        db = sqlite3.connect(work / "peer.db")
        db.execute("CREATE TABLE m (idx INTEGER PRIMARY KEY, cluster INTEGER)")
        db.executemany("INSERT INTO m VALUES (?, ?)", enumerate(membership))
        db.commit()
        db.close()
    t["edges"] = float(len(a))
    t["clusters"] = float(len(np.unique(np.asarray(membership))))
    return t


def networkx(data: Path, work: Path) -> dict[str, float]:
    import networkx as nx  # only this peer needs it

    t: dict[str, float] = {}
    with _timed(t, "pairs"):
        n, a, b, w = peer_pairs(data)
    with _timed(t, "graph"):
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_weighted_edges_from(
            zip(a.tolist(), b.tolist(), (w / w.max()).tolist(), strict=True))
    with _timed(t, "louvain"):
        communities = nx.community.louvain_communities(g, seed=1)
    t["edges"] = float(len(a))
    t["clusters"] = float(len(communities))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--input", type=Path, required=True)
    args = parser.parse_args()
    run = duckdb_igraph if args.peer == "duckdb-igraph" else networkx
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args.input, Path(tmp))))


if __name__ == "__main__":
    main()
