"""Analysts' labels in scoring: confirmed operators and cleared false positives.

Labels arrive as plain Arrow tables (:class:`linkage.labels.LabelFacts`); they are matched to
the run's ``members`` by SQL on the engine's connection. Confirmed operators give the
``known_bad`` feature and its reason; a cluster that is still the group an analyst marked
false positive is not flagged (:func:`cleared`), and its reasons say so.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from linkage.engines import SQLConnection

__all__ = ["cleared", "false_positives", "known_bad"]


def known_bad(
    con: SQLConnection, confirmed: pa.Table | None, n_clusters: int
) -> tuple[np.ndarray, list[str]]:
    """Per cluster: how many members analysts confirmed as operators, and by whom, when."""
    count = np.zeros(n_clusters)
    text = [""] * n_clusters
    if confirmed is None or confirmed.num_rows == 0:
        return count, text
    con.register("confirmed_in", confirmed.select(["account_id", "by", "created_at"]))
    try:
        rows = con.execute(
            """
            SELECT m.cluster, count(*) AS n,
                   string_agg(DISTINCT k."by", ' and ' ORDER BY k."by") AS bys,
                   min(k.created_at) AS first, max(k.created_at) AS last
            FROM members m JOIN accounts a USING (idx) JOIN confirmed_in k USING (account_id)
            GROUP BY m.cluster ORDER BY m.cluster
            """
        ).fetchall()
    finally:
        con.unregister("confirmed_in")
    for c, k, bys, first, last in rows:  # one row per cluster holding a confirmed account
        count[c] = k
        text[c] = f"by {bys} on {last}" if first == last else f"by {bys}, latest on {last}"
    return count, text


def false_positives(
    con: SQLConnection, labelled: pa.Table | None, n_clusters: int,
    min_jaccard: float,
) -> dict[int, tuple[str, bool]]:
    """Clusters that overlap a membership an analyst marked false positive.

    Per such cluster, the best-matching label: a reason sentence, and whether the flag is
    suppressed (Jaccard with the labelled members at least ``min_jaccard``: the same group
    the analyst cleared) or not (it changed materially since, so it is judged afresh).
    Of labels with the same Jaccard, the latest (the largest ``label_id``) is the match.
    """
    if labelled is None or labelled.num_rows == 0 or n_clusters == 0:
        return {}
    con.register("fp_in", labelled.select(["label_id", "account_id", "by", "created_at",
                                           "note"]))
    try:
        rows = con.execute(
            """
            WITH lab AS (
                SELECT label_id, count(*) AS n, any_value("by") AS "by",
                       any_value(created_at) AS day, any_value(note) AS note
                FROM fp_in GROUP BY label_id
            ),
            sizes AS (SELECT cluster, count(*) AS n FROM members GROUP BY cluster),
            inter AS (
                SELECT m.cluster, f.label_id, count(*) AS i
                FROM members m JOIN accounts a USING (idx) JOIN fp_in f USING (account_id)
                GROUP BY m.cluster, f.label_id
            ),
            ranked AS (
                -- one label per cluster, all its columns from that label (three arg_max
                -- could each pick another of two labels with the same Jaccard)
                SELECT i.cluster, l."by", l.day, l.note, i.i / (s.n + l.n - i.i) AS jaccard,
                       row_number() OVER (PARTITION BY i.cluster
                                          ORDER BY i.i / (s.n + l.n - i.i) DESC,
                                                   l.label_id DESC) AS r
                FROM inter i JOIN sizes s USING (cluster) JOIN lab l USING (label_id)
            )
            SELECT cluster, "by", day, note, jaccard FROM ranked WHERE r = 1 ORDER BY cluster
            """
        ).fetchall()
    finally:
        con.unregister("fp_in")
    out: dict[int, tuple[str, bool]] = {}
    for c, by, day, note, jaccard in rows:  # one row per cluster near a cleared one
        said = f"marked false positive by {by} on {day} ({note})"
        if jaccard >= min_jaccard:
            out[c] = (f"{said}: not flagged while its members stay the same (Jaccard "
                      f"{jaccard:.2f} with the labelled members, at least {min_jaccard:g})",
                      True)
        else:
            out[c] = (f"{said}, but its members changed materially since (Jaccard "
                      f"{jaccard:.2f}, below {min_jaccard:g}): judged afresh", False)
    return out


def cleared(suppressed: dict[int, tuple[str, bool]], n_clusters: int) -> np.ndarray:
    """Per cluster, whether an analyst's false-positive label keeps it from being flagged
    (``suppressed`` as :func:`false_positives` gives it).

    Examples
    --------
    >>> cleared({1: ("same group", True), 2: ("changed since", False)}, 4).tolist()
    [False, True, False, False]
    """
    out = np.zeros(n_clusters, dtype=bool)
    for c, (_, keep_quiet) in suppressed.items():
        out[c] = keep_quiet
    return out
