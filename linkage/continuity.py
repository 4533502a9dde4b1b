"""Continuity: give tonight's clusters run-independent identities and a lineage.

Input: the ``members`` table (run-local cluster numbers) joined to ``accounts``, and the
previous published run's memberships ``(cluster_id, account_id, first_seen_run_id)``.

Output (DuckDB table ``cluster_ids``):
``cluster(INTEGER), cluster_id, origin, parents_json, first_seen_run_id``

The rule
--------
Let ``J(c, p) = |c and p| / |c or p|`` for a cluster ``c`` of tonight and ``p`` of the previous
run.

* ``continued``: the best previous match has ``J >= continuity.min_jaccard`` (0.5 by
  default), and no other cluster of tonight matches that ``p`` better. ``c`` keeps ``p``'s id
  and ``first_seen_run_id``: a ring that gains or loses a few accounts keeps its case number.
* ``merged``: otherwise, when two or more previous clusters each put at least half of their
  members into ``c``; ``parents`` lists them.
* ``split``: otherwise, when at least half of ``c`` comes from one previous cluster whose
  members now sit in several clusters; ``parents`` names it.
* ``new``: anything else.

A cluster that does not continue gets a new id derived from its members (``c`` + 12 hex
digits of SHA-256 over the sorted account ids), so the same input and configuration give the
same ids in any store.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["assign_identities"]


def assign_identities(
    con: duckdb.DuckDBPyConnection,
    previous: pa.Table | None,
    *,
    min_jaccard: float,
) -> dict[str, int]:
    """Create ``cluster_ids`` in ``con``; return counts per origin."""
    if previous is None:
        previous = pa.table({
            "cluster_id": pa.array([], pa.string()),
            "account_id": pa.array([], pa.string()),
            "first_seen_run_id": pa.array([], pa.int64()),
        })
    con.register("prev_in", previous)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE prev AS
        SELECT cluster_id, account_id, first_seen_run_id FROM prev_in
        """
    )
    con.unregister("prev_in")
    con.execute(
        f"""
        CREATE OR REPLACE TABLE cluster_ids AS
        WITH cur AS (
            SELECT m.cluster, a.account_id FROM members m JOIN accounts a USING (idx)
        ),
        cur_size AS (SELECT cluster, count(*) AS n FROM cur GROUP BY cluster),
        prev_size AS (
            SELECT cluster_id, count(*) AS n, min(first_seen_run_id) AS first_seen
            FROM prev GROUP BY cluster_id
        ),
        overlap AS (
            SELECT c.cluster, p.cluster_id, count(*) AS inter
            FROM cur c JOIN prev p USING (account_id)
            GROUP BY c.cluster, p.cluster_id
        ),
        scored AS (
            SELECT o.cluster, o.cluster_id, o.inter, cs.n AS cur_n, ps.n AS prev_n,
                   ps.first_seen,
                   o.inter / (cs.n + ps.n - o.inter) AS jaccard
            FROM overlap o JOIN cur_size cs USING (cluster) JOIN prev_size ps USING (cluster_id)
        ),
        ranked AS (
            SELECT *,
                   row_number() OVER (PARTITION BY cluster
                                      ORDER BY jaccard DESC, cluster_id) AS rank_cur,
                   row_number() OVER (PARTITION BY cluster_id
                                      ORDER BY jaccard DESC, cluster) AS rank_prev,
                   count(*) OVER (PARTITION BY cluster_id) AS prev_spread
            FROM scored
        ),
        continued AS (
            SELECT cluster, cluster_id, first_seen FROM ranked
            WHERE rank_cur = 1 AND rank_prev = 1 AND jaccard >= {float(min_jaccard)}
        ),
        merged AS (
            SELECT cluster, list(cluster_id ORDER BY cluster_id) AS parents FROM ranked
            WHERE inter * 2 >= prev_n
            GROUP BY cluster HAVING count(*) >= 2
        ),
        split AS (
            SELECT cluster, list(cluster_id ORDER BY cluster_id) AS parents FROM ranked
            WHERE inter * 2 >= cur_n AND prev_spread >= 2
            GROUP BY cluster
        ),
        fresh AS (
            SELECT cluster,
                   'c' || left(sha256(string_agg(account_id, chr(10) ORDER BY account_id)), 12)
                       AS cluster_id
            FROM cur GROUP BY cluster
        )
        SELECT cs.cluster,
               coalesce(co.cluster_id, f.cluster_id) AS cluster_id,
               CASE WHEN co.cluster IS NOT NULL THEN 'continued'
                    WHEN mg.cluster IS NOT NULL THEN 'merged'
                    WHEN sp.cluster IS NOT NULL THEN 'split'
                    ELSE 'new' END AS origin,
               to_json(CASE WHEN co.cluster IS NOT NULL THEN [co.cluster_id]
                            WHEN mg.cluster IS NOT NULL THEN mg.parents
                            WHEN sp.cluster IS NOT NULL THEN sp.parents
                            ELSE []::VARCHAR[] END)::VARCHAR AS parents_json,
               co.first_seen AS first_seen_run_id
        FROM cur_size cs
        JOIN fresh f USING (cluster)
        LEFT JOIN continued co USING (cluster)
        LEFT JOIN merged mg USING (cluster)
        LEFT JOIN split sp USING (cluster)
        ORDER BY cs.cluster
        """
    )
    dup = con.execute(
        "SELECT cluster_id FROM cluster_ids GROUP BY cluster_id HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if dup:
        # Only possible if a new cluster has exactly the members of a previous cluster that
        # another cluster continues; keep ids unique by salting the newcomer's id.
        con.execute(
            """
            UPDATE cluster_ids SET cluster_id = cluster_id || '-' || cluster::VARCHAR
            WHERE origin <> 'continued' AND cluster_id IN (
                SELECT cluster_id FROM cluster_ids GROUP BY cluster_id HAVING count(*) > 1)
            """
        )
    con.execute("DROP TABLE prev")
    return dict(con.execute(
        "SELECT origin, count(*) FROM cluster_ids GROUP BY origin ORDER BY origin").fetchall())
