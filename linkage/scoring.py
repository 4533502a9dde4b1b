"""Scoring: per-cluster features, a score in [0, 1], the flag, and reasons in words.

Input: the partition of :mod:`linkage.communities` and the tables ``accounts``, ``links``,
``keys``, ``key_members``, ``edges``, ``edge_signals`` (and ``interactions``) on the engine's
connection (:class:`linkage.engines.SQLConnection`).

The per-cluster aggregates are SQL written once, in DuckDB's dialect, and run on that
connection: the driver's DuckDB with the default engine, Spark with the Spark engine
(:mod:`linkage.engines.spark_sql`). The driver receives one row per cluster (or per cluster
and signal), and each kind of evidence's intra-cluster pairs as numpy columns; features,
score and reasons are numpy and Python on the driver.

Output, keyed by the run-local cluster number ``cluster``:

``members(idx INTEGER, cluster INTEGER)``
    every clustered account (on the engine's connection and in the driver's DuckDB).
``cluster_keys(cluster, signal, key, n_members, n_global)``
    every key shared by two or more members: how many members carry it, and how many
    accounts carry it in the whole input (on the engine's connection).
``intra_edges(cluster, a, b, weight)``
    the edges inside clusters: the evidence that put the accounts together (on the engine's
    connection).
``cluster_scores(cluster, size, score, flagged, features, contributions, reasons)``
    ``features``/``contributions`` are JSON objects, ``reasons`` a JSON list of sentences
    (in the driver's DuckDB).

With the Spark engine the pipeline copies back only the evidence the store keeps
(:meth:`linkage.engines.spark.SparkEngine.collect`).

The score
---------
Every feature ``f`` lies in [0, 1] and has a weight ``w_f`` (``scoring.weights``). The linked
shares below are squared (``e_f = f**2``; ``e_burst = burst``): evidence that runs through
the whole cluster counts fully, evidence that covers a corner of it (a family of four inside
a neighbourhood of sixteen: 0.25) counts little (0.06). The contribution of a feature is
``c_f = w_f * e_f``, read as "how sure this feature alone makes us". Contributions combine by
noisy-OR, in two groups damped by size differently: what households share too (cards,
devices, emails, phones, BIN and postal codes, networks, observed values: the
:data:`HOUSEHOLD` features) reaches full weight only at ``household_full_size`` members (a
family's card shared by eight is what families do), everything else at ``full_size``::

    raw_h = 1 - prod_{f in HOUSEHOLD} (1 - c_f)      raw_o = 1 - prod_{other f} (1 - c_f)
    size(s, full) = clamp(log(s / 2) / log(full / 2), 0, 1)
    score = 1 - (1 - size(s, household_full_size) * raw_h) * (1 - size(s, full_size) * raw_o)

The features (a *linked share* is the largest group of members connected to each other
through one kind of evidence alone, as a share of the cluster):

``burst``                   largest share of members that signed up within
                            ``burst_window_minutes`` of each other
``identifier_reuse``        linked share through shared cards, devices, emails and phones
                            (and strong edges, which several weaker signals can make
                            together): identifiers one person owns, so one feature however
                            an operator mixes them (a chain linked card-device-card-device)
``issuer_reuse``            linked share through shared card BIN + billing postal code
``network_concentration``   linked share through shared IPs, /24, /64 or /48 ranges
``observation_reuse``       linked share through shared ``observations`` values, times how
                            much those values are the members' own (:func:`_privacy`)
``behaviour_reuse``         linked share through shared templates, private template pools,
                            near-identical template sets and their synchronised use
                            (``interactions``); its contribution is multiplied by the larger
                            of the members' ``own_work`` (the share of their requests on their
                            own templates) and ``category_departure`` (the share of members
                            whose mix of request categories departs from the average
                            account's beyond chance: :func:`_category_departure`)
``schedule_sync``           share of members synchronised with another member whatever the
                            templates (``activity_sync``, judged against the overlap chance
                            predicts): a scheduler's shifts each count
``usage_campaign``          how campaign-like the members' usage is (see :func:`usage_campaign`);
                            counted as it is, like ``burst``
``known_bad``               share of members that analysts confirmed as operators
                            (``linkage label``); counted as it is and not damped by size::

                                score = 1 - (1 - size * raw) * (1 - w_known_bad * known_bad)

A cluster whose members overlap a membership an analyst marked ``false_positive`` with
Jaccard at least ``scoring.suppress_min_jaccard`` (0.8) keeps its score but is not flagged,
and its reasons say so; once it changes more than that it is judged afresh.

Only keys carried by fewer accounts than their signal's cap link anyone: sharing a campus NAT
with the whole campus is not concentration.

When the input has ``interactions``, each cluster's usage is reported with its features
(``requests``, ``usage_accounts``, ``input_tokens``, ``output_tokens``,
``coding_agentic_share``, ``usage_days``, ``requests_per_account_day``,
``timing_regularity``, ``model_concentration``, ``private_templates``, ``template_sharers``,
``own_work``, ``category_departure``, ``usage_campaign``) and as a reason; ``usage_campaign``
is scored.
"""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pyarrow as pa

from linkage.communities import Partition, components_of
from linkage.config import ScoringConfig
from linkage.engines import SQLConnection
from linkage.signals import SIGNAL_FAMILIES

__all__ = ["FEATURES", "HOUSEHOLD", "combine", "score_clusters", "size_factor",
           "usage_campaign"]

FEATURES = (
    "burst",
    "identifier_reuse",
    "issuer_reuse",
    "network_concentration",
    "observation_reuse",
    "behaviour_reuse",
    "schedule_sync",
    "usage_campaign",
    "known_bad",
)
_UNSQUARED = ("burst", "usage_campaign", "known_bad")
# Evidence that a household or a family shares too: damped up to ``household_full_size``.
HOUSEHOLD = ("identifier_reuse", "issuer_reuse", "network_concentration", "observation_reuse")
_FAMILY_FEATURE = {
    "identifier": "identifier_reuse",
    "issuer": "issuer_reuse",
    "network": "network_concentration",
    "observation": "observation_reuse",
    "behaviour": "behaviour_reuse",
    "schedule": "schedule_sync",
}
_NOUNS = {
    "card": ("card", "cards"),
    "bin_postal": ("BIN and billing postal code", "BIN and billing postal codes"),
    "device": ("device fingerprint", "device fingerprints"),
    "email": ("email address", "email addresses"),
    "phone": ("phone number", "phone numbers"),
    "ip": ("IP address", "IP addresses"),
    "ip_net": ("IP range (/24 or /64)", "IP ranges (/24 or /64)"),
    "ip_net48": ("IPv6 /48 range", "IPv6 /48 ranges"),
    "prompt": ("MinHash band of near-identical prompt-template sets",
               "MinHash bands of near-identical prompt-template sets"),
    "activity_sync": ("MinHash band of near-identical activity schedules",
                      "MinHash bands of near-identical activity schedules"),
    "prompt_sync": ("minute of synchronised use of one prompt template",
                    "minutes of synchronised use of one prompt template"),
    "coactivity": ("moment of activity on one observed value",
                   "moments of activity on one observed value"),
}


def combine(contrib: dict[str, np.ndarray], damp: np.ndarray,
            damp_household: np.ndarray) -> np.ndarray:
    """The score from the contributions ``c_f`` (arrays, one entry per cluster) and the two
    size factors (module docstring): household evidence and the rest by noisy-OR, each
    damped by its own factor, then the analysts' ``known_bad``."""
    def noisy_or(features: list[str]) -> np.ndarray:
        return 1.0 - np.prod([1.0 - contrib[f] for f in features], axis=0)

    household = noisy_or([f for f in FEATURES if f in HOUSEHOLD])
    other = noisy_or([f for f in FEATURES if f not in HOUSEHOLD and f != "known_bad"])
    evidence = 1.0 - (1.0 - damp_household * household) * (1.0 - damp * other)
    return np.clip(1.0 - (1.0 - evidence) * (1.0 - contrib["known_bad"]), 0.0, 1.0)


def size_factor(size: np.ndarray, full_size: int) -> np.ndarray:
    """Damping of small clusters, per cluster size: 0 for pairs, 1 from ``full_size``
    members on, ``log(s / 2) / log(full_size / 2)`` between.

    Examples
    --------
    >>> size_factor(np.array([2, 4, 5, 10, 50]), 10).round(2).tolist()
    [0.0, 0.43, 0.57, 1.0, 1.0]
    """
    s = np.maximum(np.asarray(size, dtype=np.float64), 2.0)
    return np.clip(np.log(s / 2) / math.log(full_size / 2), 0.0, 1.0)


def score_clusters(
    con: duckdb.DuckDBPyConnection,
    partition: Partition,
    cfg: ScoringConfig,
    caps: dict[str, int],
    *,
    confirmed: pa.Table | None = None,
    false_positive: pa.Table | None = None,
    engine_con: SQLConnection | None = None,
) -> int:
    """Create ``members``, ``cluster_keys``, ``intra_edges`` and ``cluster_scores``.

    ``caps`` maps each signal to its cap (keys at or above it are not counted as reuse).
    ``confirmed`` (``account_id, by, created_at``) and ``false_positive`` (``label_id,
    account_id, by, created_at, note``) are analysts' labels as plain data
    (:class:`linkage.labels.LabelFacts`): scoring never reads the store itself.
    ``engine_con`` is the connection holding the stage tables, where every aggregate runs,
    when that is not ``con`` (the Spark engine's): ``members`` is created on both,
    ``cluster_keys`` and ``intra_edges`` stay on ``engine_con``, ``cluster_scores`` goes to
    ``con``. Returns the number of flagged clusters.
    """
    sql: SQLConnection = con if engine_con is None else engine_con
    idx, cluster = partition.members()
    members = pa.table({"idx": pa.array(idx, pa.int32()), "cluster": pa.array(cluster, pa.int32())})
    for target in (con,) if sql is con else (con, sql):
        target.register("members_in", members)
        target.execute("CREATE OR REPLACE TABLE members AS SELECT * FROM members_in ORDER BY idx")
        target.unregister("members_in")

    fam = pa.table({
        "signal": list(caps),
        "family": [_family(s) for s in caps],
        "cap": [caps[s] for s in caps],
    })
    sql.register("families_in", fam)
    sql.execute("CREATE OR REPLACE TEMP TABLE families AS SELECT * FROM families_in")
    sql.unregister("families_in")

    # Keys shared by two or more members. Most links are keys of one account (an email, an
    # IP): only keys of 2 <= n < cap accounts (signals' `keys`, members in `key_members`,
    # integers) and the hub keys above their cap can be shared, so the strings of the
    # 12 M links of a million accounts are grouped once, for the hubs, and never joined.
    # The hubs are first found by the keys' 64-bit hashes (a collision only adds a candidate,
    # counted exactly below): the group-by then holds integers, not 12 M strings (at 1M
    # accounts 1.0 GB instead of 1.5 GB, no slower). Spark's hash() is another function
    # (32-bit Murmur3): more collisions, so a few more candidates, and the same hubs.
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
    window = int(cfg.burst_window_minutes)
    base = sql.execute(
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
                SELECT cluster, a AS v FROM intra_edges WHERE weight >= {float(cfg.strong_edge)}
                UNION ALL
                SELECT cluster, b FROM intra_edges WHERE weight >= {float(cfg.strong_edge)}
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
            -- counts), not always the same one, and not the same on Spark
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
    # Per signal: how many shared keys and how many members carry one (for the reasons);
    # keys at or above their cap are not reuse.
    by_signal = sql.execute(
        """
        SELECT sm.cluster, k.signal, count(DISTINCT sm.kid) AS n_keys,
               count(DISTINCT sm.idx) AS covered
        FROM shared_members sm JOIN keys k USING (kid)
        GROUP BY sm.cluster, k.signal ORDER BY sm.cluster, k.signal
        """
    ).fetchall()
    sql.execute("DROP TABLE shared_members")
    net_ranges = dict(sql.execute(
        """
        SELECT m.cluster, count(DISTINCT l.key) FROM links l JOIN members m USING (idx)
        WHERE l.signal = 'ip_net' GROUP BY m.cluster
        """
    ).fetchall())

    n = len(base["cluster"])
    size = base["size"].astype(np.int64)
    n_vertices = int(partition.cluster.shape[0])
    feats: dict[str, np.ndarray] = {
        "burst": np.nan_to_num(base["burst_n"].astype(float)) / np.maximum(size, 1),
    }
    # The intra-cluster pairs of each family, in one pass over edge_signals.
    sql.execute(
        """
        CREATE OR REPLACE TEMP TABLE intra_families AS
        SELECT DISTINCT es.a, es.b, f.family FROM edge_signals es
        JOIN families f ON f.signal = es.signal
        SEMI JOIN intra_edges ie ON ie.a = es.a AND ie.b = es.b
        """
    )
    for family, name in _FAMILY_FEATURE.items():
        # Identifier links also run through strong edges that weaker signals make together
        # (an exact IP and a BIN+postal code and a co-signup): a camouflage ring chained by
        # such edges is still one linked group. A strong edge made by multi-valued evidence
        # alone (many shared observed values or templates, each weak, which noisy-OR adds up)
        # is that family's evidence only.
        multi = ", ".join(f"'{f}'" for f in _MULTI_VALUED)
        strong = (f"""UNION SELECT f.a, f.b FROM intra_families f JOIN intra_edges ie
                      USING (a, b) WHERE ie.weight >= {float(cfg.strong_edge)}
                      GROUP BY f.a, f.b
                      HAVING count(DISTINCT f.family) >= 2
                          OR max(CASE WHEN f.family IN ({multi}) THEN 0 ELSE 1 END) = 1"""
                  if family == "identifier" else "")
        pairs = sql.execute(
            f"SELECT DISTINCT a, b FROM intra_families WHERE family = ? {strong}", [family],
        ).fetchnumpy()
        # A scheduler runs its accounts in shifts: each shift's accounts share buckets, two
        # shifts none, so synchronised activity counts every member synchronised with
        # another (each such link is beyond chance), not the largest shift alone.
        count = _with_partner if family == "schedule" else _largest_linked
        feats[name] = count(pairs, idx, cluster, n_vertices, n) / np.maximum(size, 1)
    # Observed values count as far as they are the cluster's own: a crowd that shares
    # popular values (the same news links) meets on values many others have too.
    privacy = _privacy(sql, n)
    for family in _PRIVATE_FAMILIES:
        feats[_FAMILY_FEATURE[family]] *= privacy.get(family, np.ones(n))
    sql.execute("DROP TABLE intra_families")
    known, known_text = _known_bad(sql, confirmed, n)
    feats["known_bad"] = known / np.maximum(size, 1)
    signals: dict[int, list[tuple[str, int, int]]] = {}
    for c, sig, n_keys, cov in by_signal:
        signals.setdefault(c, []).append((sig, n_keys, cov))

    usage = _usage(sql, caps.get("prompt", 200)) if _has_interactions(sql) else {}
    feats["usage_campaign"] = np.array([usage[c]["usage_campaign"] if c in usage else 0.0
                                        for c in range(n)])  # one entry per cluster
    weights = {f: cfg.weights.get(f, 0.0) for f in FEATURES}
    # Shares are squared: evidence that covers part of a cluster (a family of four inside a
    # neighbourhood of sixteen: 0.25) counts little (0.06); evidence that runs through the
    # whole cluster counts fully. The signup burst is already a share of the whole cluster.
    # known_bad is an analyst's verdict, not a share of evidence: counted as it is, and not
    # damped by size (two confirmed operators are a finding however small their cluster).
    # usage_campaign describes what the cluster does, not how far shared evidence runs
    # through it: counted as it is, like the burst.
    contrib = {f: weights[f] * (feats[f] if f in _UNSQUARED else feats[f] ** 2)
               for f in FEATURES}
    # Shared templates count as far as they are the members' work: a pipeline's accounts
    # spend most of their requests on their own templates, a team a part of its day; or as
    # far as the members ask for other things than people do (a harvest from a data set of
    # prompts, each sent once or twice, is little of anyone's "own" templates, but its
    # scripts ask for code all day, one by one).
    contrib["behaviour_reuse"] = contrib["behaviour_reuse"] * np.array(
        [max(usage[c]["own_work"], usage[c]["category_departure"]) if c in usage else 1.0
         for c in range(n)])
    damp = size_factor(size, cfg.full_size)
    damp_h = size_factor(size, cfg.household_full_size)
    score = combine(contrib, damp, damp_h) if n else np.zeros(0)
    flagged = score >= cfg.threshold
    suppressed = _false_positives(sql, false_positive, n, cfg.suppress_min_jaccard)
    density = 2 * base["w"] / np.maximum(size * (size - 1), 1)

    # Columns as lists of Python floats, rounded once: indexing numpy arrays per cluster
    # and value cost more than the JSON itself.
    def rounded(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in np.asarray(values, dtype=np.float64).tolist()]

    feature_rows = zip(*(rounded(feats[f]) for f in FEATURES), rounded(density), rounded(damp),
                       rounded(damp_h),
                       strict=True)
    contrib_rows = zip(*(rounded(contrib[f]) for f in FEATURES), strict=True)
    feature_names = (*FEATURES, "density", "size_factor", "household_factor")
    damps = np.asarray(damp, dtype=np.float64).tolist()
    damps_h = np.asarray(damp_h, dtype=np.float64).tolist()
    sizes = size.tolist()
    features_json, contrib_json, reasons_json = [], [], []
    for c, (frow, crow) in enumerate(zip(feature_rows, contrib_rows, strict=True)):
        fv = dict(zip(feature_names, frow, strict=True))
        if c in usage:
            fv.update(usage[c])
        features_json.append(json.dumps(fv, sort_keys=True))
        contrib_json.append(json.dumps(dict(zip(FEATURES, crow, strict=True)), sort_keys=True))
        reasons = _reasons(c, sizes[c], base, signals.get(c, []), net_ranges.get(c, 0),
                           damps[c], damps_h[c], cfg)
        if known[c]:
            reasons.insert(0, f"{int(known[c])} of {int(size[c])} accounts were confirmed "
                              f"operators {known_text[c]}")
        if c in usage:
            reasons.append(_usage_reason(usage[c]))
        if c in suppressed:
            text, keep_quiet = suppressed[c]
            reasons.insert(0, text)  # an analyst's verdict leads, before any evidence
            flagged[c] &= not keep_quiet
        reasons_json.append(json.dumps(reasons))
    table = pa.table({
        "cluster": pa.array(base["cluster"], pa.int32()),
        "size": pa.array(size, pa.int32()),
        "score": pa.array(score, pa.float64()),
        "flagged": pa.array(flagged, pa.bool_()),
        "features": features_json,
        "contributions": contrib_json,
        "reasons": reasons_json,
    })
    con.register("scores_in", table)
    con.execute("CREATE OR REPLACE TABLE cluster_scores AS SELECT * FROM scores_in")
    con.unregister("scores_in")
    return int(flagged.sum())


def _known_bad(
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


def _false_positives(
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


# Families whose signals an account carries many values of (observed values, templates).
_MULTI_VALUED = ("observation", "behaviour", "schedule")
# Families of multi-valued signals whose linked share is weighted by :func:`_privacy`
# (templates are weighed by the members' own work instead, see score_clusters).
_PRIVATE_FAMILIES = ("observation",)


def _privacy(sql: SQLConnection, n: int) -> dict[str, np.ndarray]:
    """Per family of :data:`_PRIVATE_FAMILIES` and cluster: the members' share of all the
    carriers of the values two or more members share (the mean of ``n_members / n_global``
    over ``cluster_keys``, each value weighted by its specificity): 1 when no one outside has
    them, small when the members only met on values a crowd has."""
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
    for family in _PRIVATE_FAMILIES:
        mask = rows["family"] == family
        share = np.ones(n)
        share[rows["cluster"][mask].astype(np.int64)] = rows["share"][mask].astype(float)
        out[family] = share
    return out


def _largest_linked(
    pairs: dict[str, np.ndarray], idx: np.ndarray, cluster: np.ndarray, n_vertices: int,
    n_clusters: int,
) -> np.ndarray:
    """Per cluster, the size of the largest group of members linked to each other through
    ``pairs`` (intra-cluster pairs of one kind of evidence): connected components of that
    evidence alone, counted within each cluster."""
    out = np.zeros(n_clusters)
    if not len(pairs["a"]):
        return out
    comp = components_of(n_vertices, pairs["a"], pairs["b"])[idx]
    groups, counts = np.unique(cluster * n_vertices + comp, return_counts=True)
    np.maximum.at(out, groups // n_vertices, counts)
    out[out < 2] = 0.0  # a member alone shares nothing
    return out


def _with_partner(
    pairs: dict[str, np.ndarray], idx: np.ndarray, cluster: np.ndarray, n_vertices: int,
    n_clusters: int,
) -> np.ndarray:
    """Per cluster, how many members are in at least one of ``pairs`` (intra-cluster pairs
    of one kind of evidence)."""
    linked = np.zeros(n_vertices, dtype=bool)
    linked[pairs["a"]] = True
    linked[pairs["b"]] = True
    return np.bincount(cluster[linked[idx]], minlength=n_clusters).astype(np.float64)


def _family(signal: str) -> str:
    if signal.startswith("obs:"):
        return "observation"
    return SIGNAL_FAMILIES.get(signal, "other")


def _noun(signal: str, k: int) -> str:
    if signal.startswith("obs:"):
        kind = signal[4:].replace("_", " ")
        return f"{kind} value" if k == 1 else f"{kind} values"
    one, many = _NOUNS.get(signal, (signal, signal))
    return one if k == 1 else many


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def _has_interactions(con: SQLConnection) -> bool:
    rows = con.execute("SELECT EXISTS (SELECT 1 FROM interactions)").fetchall()
    return bool(rows[0][0])


def _usage(con: SQLConnection, prompt_cap: int) -> dict[int, dict[str, float]]:
    """Per cluster, what its members did (the ``interactions`` table); empty without it.

    All aggregation is DuckDB over the members' interactions (one pass to per-account rows,
    then per cluster); Python sees one row per cluster. Per account: requests, tokens,
    coding/agentic requests, the share of its requests in its two busiest hours of the day
    (``timing_regularity``: about 0.1 for uniform use, 0.2-0.35 for a person's day, near 1 for
    a scheduler) and the share on its most used model (``model_concentration``). Per cluster:
    their sums, request-weighted means, and the templates used by two or more members and by
    fewer than ``prompt_cap`` accounts in the whole input (``private_templates``, and
    ``template_sharers``: members using one).
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE member_usage AS
        WITH mi AS (
            SELECT m.cluster, i.idx, i.ts, i.model, i.prompt_key, i.category,
                   i.input_tokens, i.output_tokens
            FROM interactions i JOIN members m USING (idx)
        ),
        hours AS (
            SELECT idx, hour(ts) AS h, count(*) AS n FROM mi GROUP BY idx, hour(ts)
        ),
        top_hours AS (
            SELECT idx, sum(n) AS n_top FROM (
                SELECT idx, n, row_number() OVER (PARTITION BY idx ORDER BY n DESC, h) AS r
                FROM hours
            ) WHERE r <= 2 GROUP BY idx
        ),
        models AS (
            SELECT idx, max(n) AS n_model FROM (
                SELECT idx, model, count(*) AS n FROM mi GROUP BY idx, model
            ) GROUP BY idx
        ),
        acct AS (
            SELECT cluster, idx, count(*) AS requests,
                   coalesce(sum(input_tokens), 0) AS input_tokens,
                   coalesce(sum(output_tokens), 0) AS output_tokens,
                   count(*) FILTER (WHERE category IN ('coding', 'agentic')) AS coding,
                   min(ts) AS first, max(ts) AS last
            FROM mi GROUP BY cluster, idx
        )
        SELECT a.*, t.n_top, md.n_model
        FROM acct a JOIN top_hours t USING (idx) JOIN models md USING (idx)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE member_private AS
        WITH used AS (
            SELECT DISTINCT m.cluster, i.idx, i.prompt_key
            FROM interactions i JOIN members m USING (idx) WHERE i.prompt_key IS NOT NULL
        ),
        shared AS (
            SELECT cluster, prompt_key FROM used GROUP BY cluster, prompt_key
            HAVING count(*) >= 2
        ),
        popularity AS (
            SELECT i.prompt_key, count(DISTINCT i.idx) AS n FROM interactions i
            SEMI JOIN shared s ON s.prompt_key = i.prompt_key
            GROUP BY i.prompt_key
        ),
        private AS (
            SELECT s.cluster, s.prompt_key FROM shared s JOIN popularity p USING (prompt_key)
            WHERE p.n < {int(prompt_cap)}
        )
        SELECT p.cluster, count(DISTINCT p.prompt_key) AS private_templates,
               count(DISTINCT u.idx) AS template_sharers
        FROM private p JOIN used u USING (cluster, prompt_key)
        GROUP BY p.cluster
        """
    )
    # The members' own templates: used by two or more members, and by more members than
    # anyone else (whatever their popularity: a pipeline of 500 accounts on 100 templates),
    # or the templates of a private pool the members share (a piece of a larger pipeline).
    # own_work: the share of the members' requests on them.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE member_own AS
        WITH used AS (
            SELECT m.cluster, i.prompt_key, count(DISTINCT i.idx) AS k
            FROM interactions i JOIN members m USING (idx) WHERE i.prompt_key IS NOT NULL
            GROUP BY m.cluster, i.prompt_key HAVING count(DISTINCT i.idx) >= 2
        ),
        popularity AS (
            SELECT i.prompt_key, count(DISTINCT i.idx) AS n FROM interactions i
            SEMI JOIN used u ON u.prompt_key = i.prompt_key GROUP BY i.prompt_key
        ),
        pooled AS (
            -- templates of a private pool that two or more members carry
            SELECT DISTINCT ck.cluster, pt.prompt_key FROM cluster_keys ck
            JOIN pool_templates pt ON pt.key = ck.key WHERE ck.signal = 'template_pool'
        ),
        own AS (
            SELECT u.cluster, u.prompt_key FROM used u JOIN popularity p USING (prompt_key)
            WHERE 2 * u.k > p.n
            UNION
            SELECT cluster, prompt_key FROM pooled
        )
        SELECT m.cluster, count(o.prompt_key)::DOUBLE / count(*) AS own_work
        FROM interactions i JOIN members m USING (idx)
        LEFT JOIN own o ON o.cluster = m.cluster AND o.prompt_key = i.prompt_key
        GROUP BY m.cluster
        """
    )
    departure = _category_departure(con)
    rows = con.execute(
        """
        SELECT u.cluster, sum(requests), count(*), sum(input_tokens), sum(output_tokens),
               sum(coding) / sum(requests), (epoch(max(last)) - epoch(min(first))) / 86400,
               sum(n_top) / sum(requests), sum(n_model) / sum(requests),
               coalesce(any_value(p.private_templates), 0),
               coalesce(any_value(p.template_sharers), 0),
               coalesce(any_value(o.own_work), 0)
        FROM member_usage u LEFT JOIN member_private p USING (cluster)
        LEFT JOIN member_own o USING (cluster)
        GROUP BY u.cluster
        """
    ).fetchall()
    con.execute("DROP TABLE member_usage")
    con.execute("DROP TABLE member_private")
    con.execute("DROP TABLE member_own")
    out: dict[int, dict[str, float]] = {}
    for c, req, active, tin, tout, share, days, top, model, tpl, sharers, own in rows:
        out[int(c)] = {
            "requests": int(req), "usage_accounts": int(active),
            "input_tokens": int(tin), "output_tokens": int(tout),
            "coding_agentic_share": round(float(share), 4),
            "usage_days": round(float(days or 0.0), 2),
            "requests_per_account_day": round(float(req) / active / max(float(days or 0), 1.0),
                                              2),
            "timing_regularity": round(float(top), 4),
            "model_concentration": round(float(model), 4),
            "private_templates": int(tpl), "template_sharers": int(sharers),
            "own_work": round(float(own), 4),
            "category_departure": round(departure.get(int(c), 0.0), 4),
        }
        out[int(c)]["usage_campaign"] = round(usage_campaign(out[int(c)]), 4)
    return out


# Category departure: an account is judged from this many requests with a category on, and
# departs when its chi-square z exceeds that of a one-sided 0.1% test.
_MIN_JUDGED = 20
_DEPART_Z = 3.09


def _category_departure(con: SQLConnection) -> dict[int, float]:
    """Per cluster, the share of its members whose requests ask for other things than
    people's do, over the members with a category on their requests (an account is judged
    from ``_MIN_JUDGED`` requests on: one that sent fewer cannot be shown to depart).

    The background is the mix of request categories ``p`` of the average account (every
    account weighs the same, so a fleet's volume does not make the norm). An account's ``r``
    requests with counts ``n_k`` give ``X² = Σ_k n_k² / (r p_k) - r``, which follows a
    chi-square law with ``K - 1`` degrees of freedom if its requests were drawn from ``p``;
    people differ more than that, so ``X²`` is divided by the overdispersion ``φ`` that the
    median account shows (at least 1). An account *departs* when the Wilson-Hilferty ``z``
    of ``X² / φ`` exceeds ``_DEPART_Z`` (a one-sided test at 0.1%). ``p`` is estimated
    twice: once from everyone, then from the accounts that do not depart, so that a fleet
    of a few percent of the accounts does not pull the norm towards itself. A team of
    people shares templates but asks for what people ask for (a departing share near 0.1%);
    scripts that ask for code all day depart one by one."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE account_mix AS
        SELECT idx, category, count(*)::DOUBLE AS n, sum(count(*)) OVER (PARTITION BY idx) AS r
        FROM interactions WHERE category IS NOT NULL GROUP BY idx, category
        """
    )
    # X² of every account of two or more requests against the mix of the average account
    # of `base` (all accounts, then the typical ones), with half an account's pseudo-count
    # per category: a category only departing accounts use stays in the mix, rare, instead
    # of dropping out of their X²
    x2_sql = """
        WITH base AS (SELECT * FROM account_mix {only}),
        categories AS (SELECT DISTINCT category FROM account_mix),
        mix AS (
            SELECT c.category, (coalesce(sum(b.n / b.r), 0) + 0.5)
                   / ((SELECT count(DISTINCT idx) FROM base)
                      + 0.5 * (SELECT count(*) FROM categories)) AS p
            FROM categories c LEFT JOIN base b USING (category) GROUP BY c.category
        )
        SELECT a.idx, sum(a.n * a.n / (a.r * m.p)) - any_value(a.r) AS x2, any_value(a.r) AS r
        FROM account_mix a JOIN mix m USING (category) WHERE a.r >= 2
        GROUP BY a.idx ORDER BY a.idx
    """
    try:
        return _departing_shares(con, x2_sql)
    finally:
        con.execute("DROP TABLE account_mix")


def _departing_shares(con: SQLConnection, x2_sql: str) -> dict[int, float]:
    """The two passes of :func:`_category_departure` over its ``account_mix``."""
    k = len(con.execute("SELECT DISTINCT category FROM account_mix").fetchall())
    first = con.execute(x2_sql.format(only="")).fetchnumpy()
    if k < 2 or len(first["idx"]) < 2:
        return {}
    nu = k - 1.0
    centre = 1.0 - 2.0 / (9.0 * nu)  # Wilson-Hilferty: (X²/nu)^(1/3) ~ N(centre, 2/(9 nu))

    def z_of(x2: np.ndarray, phi: float) -> np.ndarray:
        ratio = np.maximum(np.asarray(x2, dtype=np.float64), 0.0) / phi / nu
        return (np.cbrt(ratio) - centre) / math.sqrt(2.0 / (9.0 * nu))

    def overdispersion(x2: np.ndarray) -> float:
        return max(1.0, float(np.median(x2)) / (nu * centre ** 3))

    z = z_of(first["x2"], overdispersion(first["x2"]))
    typical = np.asarray(first["idx"])[z <= _DEPART_Z]
    con.register("typical", pa.table({"idx": pa.array(typical, pa.int32())}))
    try:
        second = con.execute(x2_sql.format(only="SEMI JOIN typical USING (idx)")).fetchnumpy()
    finally:
        con.unregister("typical")
    x2 = np.asarray(second["x2"], dtype=np.float64)
    phi = overdispersion(x2[np.isin(second["idx"], typical)])
    judged = np.asarray(second["r"]) >= _MIN_JUDGED
    departs = pa.table({"idx": pa.array(np.asarray(second["idx"])[judged], pa.int32())})
    departs = departs.filter(pa.array(z_of(x2[judged], phi) > _DEPART_Z))
    con.register("departs_in", departs)
    # over every member with a category on its requests: one that sent too few cannot be
    # shown to depart
    rows = con.execute(
        """
        SELECT m.cluster, count(d.idx)::DOUBLE / count(*)
        FROM (SELECT DISTINCT idx FROM account_mix) a JOIN members m USING (idx)
        LEFT JOIN departs_in d USING (idx)
        GROUP BY m.cluster
        """
    ).fetchall()
    con.unregister("departs_in")
    return {int(c): float(share) for c, share in rows}


def usage_campaign(u: dict[str, float]) -> float:
    """How campaign-like a cluster's usage is, in [0, 1]: the product of its coding/agentic
    share, its timing regularity above a person's (0.3 -> 0, 0.8 and more -> 1) and its
    volume (1 request per account and day -> 0, 20 and more -> 1, linear in the log).

    Examples
    --------
    >>> usage_campaign({"coding_agentic_share": 0.9, "timing_regularity": 0.95,
    ...                 "requests_per_account_day": 19.0})
    0.8846
    >>> usage_campaign({"coding_agentic_share": 0.9, "timing_regularity": 0.25,
    ...                 "requests_per_account_day": 40.0})
    0.0
    """
    timing = min(1.0, max(0.0, (u["timing_regularity"] - 0.3) / 0.5))
    volume = min(1.0, max(0.0, math.log(max(u["requests_per_account_day"], 1.0)) / math.log(20)))
    return round(u["coding_agentic_share"] * timing * volume, 4)


def _usage_reason(u: dict[str, float]) -> str:
    """E.g. "31 accounts sent 1.2M requests (48M tokens) in 41.9 days, 88% coding/agentic,
    93% of each account's requests in its two busiest hours of the day, 95% on one model;
    24 of them share 140 private prompt templates"."""
    def big(x: float) -> str:
        return next((f"{x / d:.1f}{unit}" for d, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k"))
                     if x >= d), f"{x:.0f}")

    tokens = u["input_tokens"] + u["output_tokens"]
    text = (f"{u['usage_accounts']:.0f} accounts sent {big(u['requests'])} requests "
            f"({big(tokens)} tokens) in {u['usage_days']:.1f} days, "
            f"{u['coding_agentic_share']:.0%} coding/agentic, "
            f"{u['timing_regularity']:.0%} of each account's requests in its two busiest hours "
            f"of the day, {u['model_concentration']:.0%} on one model")
    if u["private_templates"]:
        n = int(u["private_templates"])
        text += (f"; {u['template_sharers']:.0f} of them share {n} private prompt "
                 f"template{'s' if n != 1 else ''}")
    if u.get("category_departure", 0.0) > 0:
        text += (f"; {u['category_departure']:.0%} of them ask for other kinds of request "
                 "than the average account does")
    return text


def _reasons(
    c: int,
    size: int,
    base: dict[str, np.ndarray],
    signals: list[tuple[str, int, int]],
    n_ranges: int,
    damp: float,
    damp_household: float,
    cfg: ScoringConfig,
) -> list[str]:
    """Plain sentences with numbers, strongest evidence first."""
    out: list[tuple[float, str]] = []
    for sig, n_keys, cov in signals:
        if sig == "cosignup":
            continue  # said better by the signup burst sentence below
        count = "one" if n_keys == 1 else str(n_keys)
        strength = 1.0 if _family(sig) in ("identifier", "behaviour") else 0.5
        out.append((strength * cov / size,
                    f"{cov} of {size} accounts share {count} {_noun(sig, n_keys)}"))
    burst_n = int(np.nan_to_num(base["burst_n"][c]))
    if burst_n >= 3 and burst_n / size >= 0.5:
        text = (f"{burst_n} of {size} signed up within "
                f"{_duration(float(base['burst_span'][c]))}")
        if n_ranges:
            # Every range its accounts used, shared or not: said so, so that it does not
            # read as a contradiction of "N of M accounts share K IP ranges".
            text += (f"; all its accounts together used {n_ranges} IP "
                     f"range{'s' if n_ranges != 1 else ''}")
        out.append((0.9 * burst_n / size, text))
    n_strong = int(base["n_strong"][c])
    if n_strong:
        out.append((0.1, f"{n_strong} of {size} have at least one strong link "
                         f"(evidence >= {cfg.strong_edge:g})"))
    out.sort(key=lambda t: -t[0])
    reasons = [t for _, t in out]
    if damp_household < 1.0:
        reasons.append(f"small cluster ({size} accounts): identifiers and networks, which "
                       f"households share too, count {damp_household:.0%}, other evidence "
                       f"{damp:.0%}")
    return reasons
