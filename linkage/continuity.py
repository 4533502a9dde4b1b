"""Continuity: give tonight's clusters run-independent identities and a lineage.

Input: the ``members`` table (run-local cluster numbers) joined to ``accounts``, and the
previous published run's memberships ``(cluster_id, account_id, first_seen_run_id)``.

Output (DuckDB tables):

``cluster_ids(cluster INTEGER, cluster_id, origin, parents_json, first_seen_run_id)``
    one row per cluster of tonight; ``origin`` is its lineage kind.
``lineage(cluster_id, kind, other_cluster_id, overlap, jaccard)``
    what every cluster of tonight is relative to the previous run, plus a row for every
    previous cluster that did not keep its id (the ``lineage`` table of the store).

The rule
--------
Let ``J(c, p) = |c and p| / |c or p|`` (Jaccard) for a cluster ``c`` of tonight and ``p``
of the previous run, and call ``|c and p| / |p|`` the share of ``p`` that went into ``c``.

* ``c`` **keeps** ``p``'s id (and ``first_seen_run_id``) when ``p`` is ``c``'s best match,
  ``c`` is ``p``'s best match, and ``J >= continuity.min_jaccard`` (0.5 by default). It is then

  - ``continued`` when the members are exactly the same,
  - ``grown`` when it has at least as many members as ``p`` (so it gained some),
  - ``shrunk`` when it has fewer members than ``p``.

* ``merged``: otherwise, when two or more previous clusters each put at least half of their
  members into ``c``; one lineage row per parent.
* ``split``: otherwise, when at least half of ``c`` comes from one previous cluster whose
  members now sit in several clusters; the row names that parent.
* ``new``: anything else.

Previous clusters whose id did not survive get rows of their own: ``merged_into`` (a parent
of a ``merged`` cluster, or more than half of its members went into a cluster of tonight that
kept another id), else ``split_into`` (one row per
cluster of tonight that split from them), else ``dissolved``. A previous cluster that kept its
id but also shed clusters that count as ``split`` from it gets ``split_into`` rows as well, so
a parent's record says where its pieces went.

A cluster that does not keep an id gets a new id derived from its members (``c`` + 12 hex
digits of SHA-256 over the sorted account ids), so the same input and configuration give the
same ids in any store.

The same matching (:func:`match_clusters`) serves ``linkage diff``, which compares the stored
memberships of any two runs: there is one definition of what "the same cluster" means.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["KEPT", "LINEAGE_KINDS", "assign_identities", "compare_runs", "describe_counts",
           "lineage_counts", "match_clusters"]

# Kinds of a cluster of tonight that kept a previous cluster's id.
KEPT = ("continued", "grown", "shrunk")
LINEAGE_KINDS = (
    "new", *KEPT, "merged", "split",  # a cluster of tonight
    "merged_into", "split_into", "dissolved",  # a previous cluster
)


def lineage_counts(lineage: pa.Table) -> dict[str, int]:
    """How many clusters each lineage kind holds, in :data:`LINEAGE_KINDS` order (kinds with
    none left out): the one count that ``linkage run``'s summary and ``linkage diff`` print.

    A count is of clusters, never of rows: ``merged 1`` is one cluster of the later run that
    two or more earlier clusters went into (it has a row per parent), and ``merged_into 2``
    the two earlier clusters. ``new``, ``continued``, ``grown``, ``shrunk``, ``merged`` and
    ``split`` count clusters of the later run (they sum to its clusters); ``merged_into``,
    ``split_into`` and ``dissolved`` count clusters of the earlier run.

    Examples
    --------
    >>> rows = pa.table({"cluster_id": ["cM", "cM", "cA", "cB", "cN"],
    ...                  "kind": ["merged", "merged", "merged_into", "merged_into", "new"]})
    >>> lineage_counts(rows)
    {'new': 1, 'merged': 1, 'merged_into': 2}
    """
    grouped = lineage.group_by("kind").aggregate([("cluster_id", "count_distinct")])
    found = dict(zip(grouped.column("kind").to_pylist(),
                     grouped.column("cluster_id_count_distinct").to_pylist(), strict=True))
    return {kind: int(found[kind]) for kind in LINEAGE_KINDS if found.get(kind)}


def describe_counts(counts: dict[str, int]) -> str:
    """:func:`lineage_counts` as one line of text (``"no clusters"`` when empty).

    >>> describe_counts({"new": 1, "merged": 1, "merged_into": 2})
    'new 1, merged 1, merged_into 2'
    """
    return ", ".join(f"{kind} {n:,}" for kind, n in counts.items()) or "no clusters"


def match_clusters(con: duckdb.DuckDBPyConnection, *, min_jaccard: float) -> None:
    """Match ``cur(cluster, account_id)`` against ``prev(cluster_id, account_id)`` in ``con``.

    ``cur.cluster`` may be of any type (a run-local number, or a stored ``cluster_id`` when
    two stored runs are compared). Creates the temporary table ``matches``:

    ``side``
        ``'cur'`` for a row about a cluster of ``cur``, ``'prev'`` for one about a
        cluster of ``prev`` that did not keep its id (or shed split pieces).
    ``cur``, ``prev``
        the two clusters of the row (``prev`` NULL for ``new``, ``cur`` NULL for
        ``dissolved``).
    ``kind``, ``overlap``, ``jaccard``
        see the module docstring; ``overlap``/``jaccard`` are NULL when there is no other.

    Examples
    --------
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE cur AS SELECT * FROM (VALUES (0, 'a'), (0, 'b'), "
    ...                 "(0, 'c')) t(cluster, account_id)")
    >>> _ = con.execute("CREATE TABLE prev AS SELECT * FROM (VALUES ('cX', 'a'), ('cX', 'b'))"
    ...                 " t(cluster_id, account_id)")
    >>> match_clusters(con, min_jaccard=0.5)
    >>> con.execute("SELECT side, cur, prev, kind, overlap FROM matches").fetchall()
    [('cur', 0, 'cX', 'grown', 2)]
    """
    threshold = float(min_jaccard)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE matches AS
        WITH cur_size AS (SELECT cluster, count(*) AS n FROM cur GROUP BY cluster),
        prev_size AS (SELECT cluster_id, count(*) AS n FROM prev GROUP BY cluster_id),
        overlap AS (
            SELECT c.cluster, p.cluster_id, count(*) AS inter
            FROM cur c JOIN prev p USING (account_id)
            GROUP BY c.cluster, p.cluster_id
        ),
        scored AS (
            SELECT o.cluster, o.cluster_id, o.inter, cs.n AS cur_n, ps.n AS prev_n,
                   o.inter / (cs.n + ps.n - o.inter) AS jaccard
            FROM overlap o JOIN cur_size cs USING (cluster) JOIN prev_size ps USING (cluster_id)
        ),
        ranked AS (
            SELECT *,
                   -- ties broken by id so that the matching is deterministic
                   row_number() OVER (PARTITION BY cluster
                                      ORDER BY jaccard DESC, cluster_id) AS rank_cur,
                   row_number() OVER (PARTITION BY cluster_id
                                      ORDER BY jaccard DESC, cluster) AS rank_prev,
                   count(*) OVER (PARTITION BY cluster_id) AS prev_spread
            FROM scored
        ),
        kept AS (
            SELECT cluster, cluster_id, inter, jaccard,
                   CASE WHEN inter = cur_n AND inter = prev_n THEN 'continued'
                        WHEN cur_n >= prev_n THEN 'grown' ELSE 'shrunk' END AS kind
            FROM ranked
            WHERE rank_cur = 1 AND rank_prev = 1 AND jaccard >= {threshold}
        ),
        merged AS (
            SELECT r.cluster, r.cluster_id, r.inter, r.jaccard FROM ranked r
            ANTI JOIN kept k USING (cluster)
            WHERE r.inter * 2 >= r.prev_n
              AND r.cluster IN (SELECT cluster FROM ranked WHERE inter * 2 >= prev_n
                                GROUP BY cluster HAVING count(*) >= 2)
        ),
        split AS (
            SELECT r.cluster, r.cluster_id, r.inter, r.jaccard FROM ranked r
            ANTI JOIN kept k USING (cluster)
            ANTI JOIN merged m USING (cluster)
            WHERE r.inter * 2 >= r.cur_n AND r.prev_spread >= 2
        ),
        cur_rows AS (
            SELECT cluster, cluster_id, kind, inter, jaccard FROM kept
            UNION ALL SELECT cluster, cluster_id, 'merged', inter, jaccard FROM merged
            UNION ALL SELECT cluster, cluster_id, 'split', inter, jaccard FROM split
        ),
        gone AS (SELECT cluster_id FROM prev_size ANTI JOIN kept USING (cluster_id)),
        merged_into AS (
            SELECT m.cluster, m.cluster_id, m.inter, m.jaccard FROM merged m
            SEMI JOIN gone g USING (cluster_id)
            UNION ALL
            -- absorbed by a cluster that kept another id: more than half went into it
            SELECT r.cluster, r.cluster_id, r.inter, r.jaccard FROM ranked r
            SEMI JOIN gone g USING (cluster_id) SEMI JOIN kept k USING (cluster)
            WHERE r.inter * 2 > r.prev_n
        ),
        split_into AS (
            SELECT s.cluster, s.cluster_id, s.inter, s.jaccard FROM split s
            ANTI JOIN merged_into m USING (cluster_id)
        ),
        dissolved AS (
            SELECT cluster_id FROM gone
            ANTI JOIN merged_into USING (cluster_id) ANTI JOIN split_into USING (cluster_id)
        )
        SELECT 'cur' AS side, cluster AS cur, cluster_id AS prev, kind,
               inter AS overlap, jaccard FROM cur_rows
        UNION ALL
        SELECT 'cur', cluster, NULL, 'new', NULL, NULL FROM cur_size
        ANTI JOIN cur_rows USING (cluster)
        UNION ALL
        SELECT 'prev', cluster, cluster_id, 'merged_into', inter, jaccard FROM merged_into
        UNION ALL
        SELECT 'prev', cluster, cluster_id, 'split_into', inter, jaccard FROM split_into
        UNION ALL
        SELECT 'prev', NULL, cluster_id, 'dissolved', NULL, NULL FROM dissolved
        """
    )


def assign_identities(
    con: duckdb.DuckDBPyConnection,
    previous: pa.Table | None,
    *,
    min_jaccard: float,
) -> dict[str, int]:
    """Create ``cluster_ids`` and ``lineage`` in ``con``; return :func:`lineage_counts` of
    that lineage."""
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
        """
        CREATE OR REPLACE TEMP TABLE cur AS
        SELECT m.cluster, a.account_id FROM members m JOIN accounts a USING (idx)
        """
    )
    match_clusters(con, min_jaccard=min_jaccard)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE cluster_ids AS
        WITH first_seen AS (
            SELECT cluster_id, min(first_seen_run_id) AS first_seen FROM prev GROUP BY cluster_id
        ),
        own AS (
            SELECT cur AS cluster, any_value(kind) AS kind,
                   list(prev ORDER BY prev) FILTER (WHERE prev IS NOT NULL) AS parents,
                   any_value(prev) FILTER (WHERE kind IN {KEPT}) AS kept_id
            FROM matches WHERE side = 'cur' GROUP BY cur
        ),
        fresh AS (
            SELECT cluster,
                   'c' || left(sha256(string_agg(account_id, chr(10) ORDER BY account_id)), 12)
                       AS cluster_id
            FROM cur GROUP BY cluster
        )
        SELECT o.cluster::INTEGER AS cluster,
               coalesce(o.kept_id, f.cluster_id) AS cluster_id,
               o.kind AS origin,
               to_json(coalesce(o.parents, []::VARCHAR[]))::VARCHAR AS parents_json,
               fs.first_seen AS first_seen_run_id
        FROM own o
        JOIN fresh f USING (cluster)
        LEFT JOIN first_seen fs ON fs.cluster_id = o.kept_id
        ORDER BY o.cluster
        """
    )
    dup = con.execute(
        "SELECT cluster_id FROM cluster_ids GROUP BY cluster_id HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if dup:
        # Only possible if a new cluster has exactly the members of a previous cluster that
        # another cluster continues; keep ids unique by salting the newcomer's id.
        con.execute(
            f"""
            UPDATE cluster_ids SET cluster_id = cluster_id || '-' || cluster::VARCHAR
            WHERE origin NOT IN {KEPT} AND cluster_id IN (
                SELECT cluster_id FROM cluster_ids GROUP BY cluster_id HAVING count(*) > 1)
            """
        )
    # Rows about tonight's clusters name them by tonight's id; rows about previous clusters
    # by their old id, with the cluster of tonight they went into as the other.
    con.execute(
        """
        CREATE OR REPLACE TABLE lineage AS
        SELECT CASE WHEN m.side = 'cur' THEN i.cluster_id ELSE m.prev END AS cluster_id,
               m.kind,
               CASE WHEN m.side = 'cur' THEN m.prev ELSE i.cluster_id END AS other_cluster_id,
               m.overlap::BIGINT AS overlap, m.jaccard::DOUBLE AS jaccard
        FROM matches m LEFT JOIN cluster_ids i ON i.cluster = m.cur
        ORDER BY cluster_id, kind, other_cluster_id
        """
    )
    con.execute("DROP TABLE prev")
    con.execute("DROP TABLE cur")
    return lineage_counts(con.table("lineage").select("cluster_id", "kind").to_arrow_table())


def compare_runs(before: pa.Table, after: pa.Table, *, min_jaccard: float) -> pa.Table:
    """The lineage of ``after``'s clusters relative to ``before`` (what ``linkage diff`` shows).

    Both are stored memberships ``(account_id, cluster_id)`` of two runs; the matching is
    :func:`match_clusters`, exactly as the continuity stage used it. Returns the columns of
    the ``lineage`` table (``cluster_id, kind, other_cluster_id, overlap, jaccard``), where
    rows about ``after``'s clusters carry the ids stored with them.
    """
    con = duckdb.connect()
    try:
        con.register("before_in", before.select(["cluster_id", "account_id"]))
        con.register("after_in", after.select(["cluster_id", "account_id"]))
        con.execute("CREATE TEMP TABLE prev AS SELECT cluster_id, account_id FROM before_in")
        con.execute(
            "CREATE TEMP TABLE cur AS SELECT cluster_id AS cluster, account_id FROM after_in")
        match_clusters(con, min_jaccard=min_jaccard)
        return con.sql(
            """
            SELECT CASE WHEN side = 'cur' THEN cur ELSE prev END AS cluster_id, kind,
                   CASE WHEN side = 'cur' THEN prev ELSE cur END AS other_cluster_id,
                   overlap::BIGINT AS overlap, jaccard::DOUBLE AS jaccard
            FROM matches ORDER BY cluster_id, kind, other_cluster_id
            """
        ).to_arrow_table()
    finally:
        con.close()
