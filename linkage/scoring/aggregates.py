"""Scoring's aggregates, SQL run on the engine's connection.

Written once, in DuckDB's dialect, for every engine (:mod:`linkage.engines`). They read the
stage tables ``accounts``, ``links``, ``keys``, ``key_members``, ``edges`` and
``edge_signals``, create ``members``, ``families`` (temporary), ``cluster_keys`` and
``intra_edges`` (see :mod:`linkage.scoring`), and hand the driver one row per cluster (or
per cluster and signal), or one kind of evidence's intra-cluster pairs as numpy columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa

from linkage.engines import SQLConnection
from linkage.graph import product_sql
from linkage.scoring.features import MULTI_VALUED, PIPELINE, PRIVATE_FAMILIES, family_of

__all__ = [
    "cluster_aggregates",
    "create_cluster_keys",
    "create_families",
    "create_intra_edges",
    "create_members",
    "intra_family_pairs",
    "ip_ranges_used",
    "privacy_shares",
]


def create_members(con: duckdb.DuckDBPyConnection, sql: SQLConnection, idx: np.ndarray,
                   cluster: np.ndarray) -> None:
    """``members(idx INTEGER, cluster INTEGER)``, every clustered account in ``idx`` order,
    on the driver's DuckDB ``con`` and, when it is another connection, on ``sql``."""
    members = pa.table({"idx": pa.array(idx, pa.int32()), "cluster": pa.array(cluster, pa.int32())})
    for target in (con,) if sql is con else (con, sql):
        target.register("members_in", members)
        target.execute("CREATE OR REPLACE TABLE members AS SELECT * FROM members_in ORDER BY idx")
        target.unregister("members_in")


def create_families(sql: SQLConnection, caps: dict[str, int]) -> None:
    """The temporary ``families(signal, family, cap)``: each signal's scoring family
    (:func:`linkage.scoring.features.family_of`) and cap."""
    fam = pa.table({
        "signal": list(caps),
        "family": [family_of(s) for s in caps],
        "cap": [caps[s] for s in caps],
    })
    sql.register("families_in", fam)
    sql.execute("CREATE OR REPLACE TEMP TABLE families AS SELECT * FROM families_in")
    sql.unregister("families_in")


def create_cluster_keys(sql: SQLConnection) -> dict[int, list[tuple[str, int, int]]]:
    """``cluster_keys(cluster, signal, key, n_members, n_global)``: every key two or more
    members of a cluster carry, below its cap or not. Returns, per cluster, its signals
    with a shared key below the cap: ``(signal, keys, members carrying one)``, by signal.
    """
    # Keys shared by two or more members. Most links are keys of one account (an email, an
    # IP): only keys of 2 <= n < cap accounts (signals' `keys`, members in `key_members`,
    # integers) and the hub keys above their cap can be shared, so the strings of all the
    # links are grouped once, for the hubs, and never joined. The hubs are first found by the
    # keys' 64-bit hashes (a collision only adds a candidate, counted exactly below): the
    # group-by then holds integers, not strings (a third less memory, no slower). Another
    # engine's hash() may be another function (32 bits, say): more collisions, so a few more
    # candidates, and the same hubs.
    sql.execute(
        """
        CREATE OR REPLACE TEMP TABLE hub_keys AS
        WITH candidates AS (
            SELECT signal, hash(key) AS h FROM links GROUP BY signal, hash(key)
            HAVING count(*) >= (SELECT min(cap) FROM families)
        )
        SELECT l.signal, l.key, count(*)::INTEGER AS n_global
        FROM links l SEMI JOIN candidates c ON c.signal = l.signal AND c.h = hash(l.key)
        JOIN families f USING (signal)
        GROUP BY l.signal, l.key, f.cap HAVING count(*) >= f.cap
        """
    )
    # (cluster, kid, idx): members carrying a key below its cap that another member shares.
    sql.execute(
        """
        CREATE OR REPLACE TEMP TABLE shared_members AS
        WITH km AS (SELECT m.cluster, k.kid, k.idx FROM key_members k JOIN members m USING (idx)),
        s AS (SELECT cluster, kid FROM km GROUP BY cluster, kid HAVING count(*) >= 2)
        SELECT km.cluster, km.kid, km.idx FROM km SEMI JOIN s USING (cluster, kid)
        """
    )
    sql.execute(
        """
        CREATE OR REPLACE TABLE cluster_keys AS
        WITH below_cap AS (
            SELECT s.cluster, k.signal, k.key, s.n_members, k.n AS n_global
            FROM (SELECT cluster, kid, count(*)::INTEGER AS n_members FROM shared_members
                  GROUP BY cluster, kid) s
            JOIN keys k USING (kid)
        ),
        hubs AS (
            SELECT m.cluster, l.signal, l.key, count(*)::INTEGER AS n_members,
                   any_value(h.n_global) AS n_global
            FROM links l JOIN hub_keys h USING (signal, key) JOIN members m USING (idx)
            GROUP BY m.cluster, l.signal, l.key HAVING count(*) >= 2
        )
        SELECT * FROM (SELECT * FROM below_cap UNION ALL SELECT * FROM hubs)
        ORDER BY cluster, signal, n_members DESC, key
        """
    )
    sql.execute("DROP TABLE hub_keys")
    # Per signal: how many shared keys and how many members carry one (for the reasons);
    # keys at or above their cap are not reuse.
    rows = sql.execute(
        """
        SELECT sm.cluster, k.signal, count(DISTINCT sm.kid) AS n_keys,
               count(DISTINCT sm.idx) AS covered
        FROM shared_members sm JOIN keys k USING (kid)
        GROUP BY sm.cluster, k.signal ORDER BY sm.cluster, k.signal
        """
    ).fetchall()
    sql.execute("DROP TABLE shared_members")
    signals: dict[int, list[tuple[str, int, int]]] = {}
    for c, sig, n_keys, cov in rows:
        signals.setdefault(c, []).append((sig, n_keys, cov))
    return signals


def create_intra_edges(sql: SQLConnection) -> None:
    """``intra_edges(cluster, a, b, weight)``: the edges inside clusters, in ``(a, b)``
    order."""
    sql.execute(
        """
        CREATE OR REPLACE TABLE intra_edges AS
        SELECT ma.cluster, e.a, e.b, e.weight
        FROM edges e
        JOIN members ma ON ma.idx = e.a
        JOIN members mb ON mb.idx = e.b
        WHERE ma.cluster = mb.cluster
        ORDER BY e.a, e.b
        """
    )


def cluster_aggregates(sql: SQLConnection, burst_window_minutes: int,
                       strong_edge: float) -> dict[str, np.ndarray]:
    """One row per cluster, in cluster order, as numpy columns: ``cluster``, ``size``,
    ``w`` (the summed weight of its intra-cluster edges), ``n_edges``, ``n_strong``
    (members with an edge of at least ``strong_edge``), ``burst_n`` (the most sign-ups
    within ``burst_window_minutes``), ``burst_span`` (the seconds the shortest such window
    took) and ``signup_span``."""
    window = int(burst_window_minutes)
    return sql.execute(
        f"""
        WITH sizes AS (SELECT cluster, count(*) AS size FROM members GROUP BY cluster),
        weight AS (
            -- summed in (a, b) order: a parallel float sum differs in the last bits from
            -- run to run (and engine to engine), and a rounded density could flip
            SELECT cluster, sum(weight ORDER BY a, b) AS w, count(*) AS n_edges
            FROM intra_edges GROUP BY cluster
        ),
        strong AS (
            SELECT cluster, count(DISTINCT v) AS n_strong FROM (
                SELECT cluster, a AS v FROM intra_edges WHERE weight >= {float(strong_edge)}
                UNION ALL
                SELECT cluster, b FROM intra_edges WHERE weight >= {float(strong_edge)}
            ) GROUP BY cluster
        ),
        timed AS (
            SELECT m.cluster, a.created_at,
                   count(*) OVER w AS k,
                   epoch(max(a.created_at) OVER w) - epoch(a.created_at) AS span
            FROM members m JOIN accounts a USING (idx)
            WHERE a.created_at IS NOT NULL  -- no signup time, no burst evidence
            WINDOW w AS (PARTITION BY m.cluster ORDER BY a.created_at
                         RANGE BETWEEN CURRENT ROW AND INTERVAL {window} MINUTES FOLLOWING)
        ),
        burst AS (
            -- the most sign-ups within one window, and how long the shortest of the windows
            -- holding that many took: arg_max(span, k) would take any of them (a tie of
            -- counts), not always the same one, and not the same on every engine
            SELECT cluster, max(k) AS burst_n,
                   min(span) FILTER (WHERE k = top) AS burst_span,
                   epoch(max(created_at)) - epoch(min(created_at)) AS signup_span
            FROM (SELECT *, max(k) OVER (PARTITION BY cluster) AS top FROM timed)
            GROUP BY cluster
        )
        SELECT s.cluster, s.size, coalesce(w.w, 0) AS w, coalesce(w.n_edges, 0) AS n_edges,
               coalesce(st.n_strong, 0) AS n_strong, coalesce(b.burst_n, 0) AS burst_n,
               b.burst_span, b.signup_span
        FROM sizes s LEFT JOIN weight w USING (cluster) LEFT JOIN strong st USING (cluster)
        LEFT JOIN burst b USING (cluster)
        ORDER BY s.cluster
        """
    ).fetchnumpy()


def ip_ranges_used(sql: SQLConnection) -> dict[int, int]:
    """Per cluster, how many IP ranges (``ip_net`` keys) its members used, shared or not;
    clusters without one are absent."""
    return dict(sql.execute(
        """
        SELECT m.cluster, count(DISTINCT l.key) FROM links l JOIN members m USING (idx)
        WHERE l.signal = 'ip_net' GROUP BY m.cluster
        """
    ).fetchall())


@contextmanager
def intra_family_pairs(
    sql: SQLConnection, strong_edge: float,
) -> Iterator[Callable[[str], dict[str, np.ndarray]]]:
    """Within the block, a function from a signal family to its intra-cluster pairs
    (``a``, ``b`` numpy columns), from the temporary ``intra_families`` that the block
    holds: the intra-cluster pairs of each family and the product of ``1 - p`` over the
    family's signals, in one pass over ``edge_signals``.

    The ``identifier`` family's pairs include the strong intra-cluster edges (at least
    ``strong_edge``) that single-valued evidence alone makes strong, or that one pipeline
    makes (:data:`linkage.scoring.features.PIPELINE`: shared templates on a shared
    schedule); other multi-valued evidence
    (:data:`linkage.scoring.features.MULTI_VALUED`) is its own family's feature only."""
    sql.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE intra_families AS
        SELECT es.a, es.b, f.family, {product_sql("1 - es.p")} AS q FROM edge_signals es
        JOIN families f ON f.signal = es.signal
        SEMI JOIN intra_edges ie ON ie.a = es.a AND ie.b = es.b
        GROUP BY es.a, es.b, f.family
        """
    )

    def pairs(family: str) -> dict[str, np.ndarray]:
        # Identifier links also run through strong edges that weaker signals make together
        # (an exact IP and a BIN+postal code and a co-signup): a camouflage ring chained by
        # such edges is still one linked group. So does one pipeline: private templates
        # used on one schedule. Other multi-valued evidence counts in its own feature only:
        # colleagues' office range and internal templates are not a card they share.
        multi = ", ".join(f"'{f}'" for f in MULTI_VALUED)
        pipeline = ", ".join(f"'{f}'" for f in PIPELINE)
        single = f"CASE WHEN f.family IN ({multi}) THEN 1 ELSE f.q END"
        strong = (f"""UNION SELECT f.a, f.b FROM intra_families f
                      JOIN intra_edges ie USING (a, b)
                      WHERE ie.weight >= {float(strong_edge)}
                      GROUP BY f.a, f.b
                      HAVING 1 - {product_sql(single)} >= {float(strong_edge)}
                          OR count(DISTINCT CASE WHEN f.family IN ({pipeline})
                                                 THEN f.family END) = {len(PIPELINE)}"""
                  if family == "identifier" else "")
        return sql.execute(
            f"SELECT DISTINCT a, b FROM intra_families WHERE family = ? {strong}", [family],
        ).fetchnumpy()

    yield pairs
    sql.execute("DROP TABLE intra_families")


def privacy_shares(sql: SQLConnection, n: int) -> dict[str, np.ndarray]:
    """Per family of :data:`linkage.scoring.features.PRIVATE_FAMILIES`, an array over the
    ``n`` clusters: the members' share of all the carriers of the values two or more
    members share (the mean of ``n_members / n_global`` over ``cluster_keys``, each value
    weighted by its specificity): 1 when no one outside has them, small when the members
    only met on values a crowd has."""
    rows = sql.execute(
        """
        -- rounded: a float sum's order and the JVM's ln() may change the last bits
        SELECT cluster, family, round(sum(w * n_members / n_global) / sum(w), 9) AS share
        FROM (
            SELECT ck.cluster, f.family, ck.n_members::DOUBLE AS n_members, ck.n_global,
                   ln(f.cap::DOUBLE / ck.n_global) / ln(f.cap::DOUBLE / 2) AS w
            FROM cluster_keys ck JOIN families f USING (signal)
            WHERE f.family = 'observation'
              AND ck.n_global < f.cap
        ) k GROUP BY cluster, family ORDER BY cluster, family
        """
    ).fetchnumpy()
    out: dict[str, np.ndarray] = {}
    for family in PRIVATE_FAMILIES:
        mask = rows["family"] == family
        share = np.ones(n)
        share[rows["cluster"][mask].astype(np.int64)] = rows["share"][mask].astype(float)
        out[family] = share
    return out
