"""Signals: turn the normalised input tables into links between accounts and keys.

A *link* says "account ``idx`` carries key ``key`` of signal ``signal``". Two accounts that
carry the same key share evidence; how much depends on the signal's weight and on how many
accounts carry that key (see :func:`specificity_sql` and ``docs/algorithm.md``).

Input (tables left by :mod:`linkage.ingest` on the engine's connection): ``accounts``,
``payment_instruments``, ``ip_events``, ``devices``, ``observations``.

Output (tables on the same connection):

``links(idx INTEGER, signal VARCHAR, key VARCHAR)``
    distinct account-key links of every enabled signal, including keys carried by one account
    (they explain nothing but cost little and keep the table complete for analysts), except
    ``prompt_sync``, which keeps only keys of two or more accounts.
``signal_min_shared(signal VARCHAR, min_shared INTEGER)``
    signals whose pairs must share at least ``min_shared`` keys before any counts.
``keys(kid INTEGER, signal VARCHAR, key VARCHAR, n INTEGER, p_key DOUBLE, p DOUBLE)``
    every key carried by 2..cap accounts, its popularity ``n`` and the evidence ``p`` it gives
    each pair of its accounts, ``weight * specificity(n, cap)`` (``p_key``; the graph stage
    sets ``p`` from it and the key's background, :func:`linkage.graph.weigh_keys`). ``kid``
    is dense and ordered by (signal, key), so it is deterministic.
``key_members(kid INTEGER, idx INTEGER)``
    the links of those keys, by ``kid``.
``pool_templates(key VARCHAR, prompt_key VARCHAR)``
    the templates of each private template pool (:func:`template_pools`).

Signals
-------
======================  ==========================================================
``card``                ``payment_instruments.fingerprint``
``bin_postal``          card BIN + billing postal code (virtual cards of one issuer batch)
``device``              ``devices.device_id``
``email``               normalised ``accounts.email``
``phone``               ``accounts.phone`` digits
``ip``                  exact IP (``ip_events`` and ``accounts.signup_ip``)
``ip_net``              IPv4 /24 or IPv6 /64 of the same IPs
``ip_net48``            IPv6 /48
``obs:<kind>``          each ``observations`` kind
``cosignup``            same weak key (signup range, BIN or user agent) and signup time
                        within the same window
``coactivity``          same observation value (same kind) seen within the same window
``prompt``              a MinHash-LSH band of the account's set of prompt templates
                        (``interactions.prompt_fingerprint``; see :func:`prompt_bands`)
``prompt_sync``         the same prompt template used within the same window
``activity_sync``       a MinHash-LSH band of the account's set of active time buckets,
                        judged against chance (see :func:`activity_bands`)
``activity_group``      a group whose activity moves together beyond chance, found on
                        some days and judged on the others (see :func:`activity_groups`)
======================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import fields
from functools import partial

import numpy as np
import pyarrow as pa

from linkage._igraph import ig
from linkage.config import (
    ActivityGroupConfig,
    ActivitySyncConfig,
    CoactivityConfig,
    PromptConfig,
    SetBandsConfig,
    SignalConfig,
    SignalsConfig,
    TemplatePoolConfig,
)
from linkage.engines import SQLConnection, key_sets
from linkage.schedule_groups import schedule_groups

__all__ = [
    "ACTIVITY_GROUP",
    "ACTIVITY_SYNC",
    "BAND_TABLES",
    "COACTIVITY",
    "COSIGNUP",
    "PROMPT_SYNC",
    "SIGNAL_FAMILIES",
    "TIME_BUCKETED",
    "activity_bands",
    "activity_groups",
    "band_tables",
    "build_links",
    "coincidence_sql",
    "prompt_bands",
    "set_band_keys",
    "signal_weights",
    "specificity",
]

COSIGNUP = "cosignup"
COACTIVITY = "coactivity"
PROMPT_SYNC = "prompt_sync"
ACTIVITY_SYNC = "activity_sync"
ACTIVITY_GROUP = "activity_group"
# Signals whose keys carry a time bucket on two offset grids: a pair seen in both grids (or
# through several keys of one coincidence) counts once, at its strongest key.
TIME_BUCKETED = (COSIGNUP, COACTIVITY, PROMPT_SYNC)

# The set-similarity signals and the table of MinHash band keys each one links by.
BAND_TABLES = {"prompt": "prompt_bands", ACTIVITY_SYNC: "activity_bands"}

# Which scoring family each signal belongs to (``obs:*`` signals form the observation family).
SIGNAL_FAMILIES: dict[str, str] = {
    # identifiers one person owns: what binds an operator's accounts together
    "card": "identifier",
    "device": "identifier",
    "email": "identifier",
    "phone": "identifier",
    "bin_postal": "issuer",
    "ip": "network",
    "ip_net": "network",
    "ip_net48": "network",
    COSIGNUP: "timing",
    COACTIVITY: "observation",
    # what the accounts do: the same private prompt templates, used in the same minutes
    "prompt": "behaviour",
    "template": "behaviour",
    "template_pool": "behaviour",
    PROMPT_SYNC: "behaviour",
    # what the accounts' clocks say: the same moments of activity, whatever the templates
    ACTIVITY_SYNC: "schedule",
    ACTIVITY_GROUP: "schedule",
}

_HAS_MIN_SHARED = (SignalConfig, CoactivityConfig, SetBandsConfig)

# (signal, SQL selecting idx and key) for the exact-value and range signals.
_SOURCES: dict[str, list[str]] = {
    "card": ["SELECT idx, card_key AS key FROM payment_instruments"],
    "bin_postal": ["SELECT idx, bin_postal_key FROM payment_instruments"],
    "device": ["SELECT idx, device_key FROM devices"],
    "email": ["SELECT idx, email_key FROM accounts"],
    "phone": ["SELECT idx, phone_key FROM accounts"],
    "ip": ["SELECT idx, ip_key FROM ip_events", "SELECT idx, signup_ip_key FROM accounts"],
    "ip_net": ["SELECT idx, net_key FROM ip_events", "SELECT idx, signup_net_key FROM accounts"],
    "template": ["SELECT idx, prompt_key FROM interactions"],
    "ip_net48": [
        "SELECT idx, net48_key FROM ip_events",
        "SELECT idx, signup_net48_key FROM accounts",
    ],
}

# Weak keys that co-signup may pair with the signup time.
_WEAK_KEYS: dict[str, str] = {
    "signup_net": "SELECT idx, signup_net_key AS wk, created_at FROM accounts",
    "user_agent": "SELECT idx, user_agent_key AS wk, created_at FROM accounts",
    "bin": (
        "SELECT p.idx, p.bin_key AS wk, a.created_at "
        "FROM payment_instruments p JOIN accounts a USING (idx)"
    ),
}


def specificity(n: int, cap: int) -> float:
    """Share of a signal's weight that a key carried by ``n`` accounts gives each pair.

    Full at two accounts, falling linearly in ``log n``, zero at ``cap`` and above: a value
    shared by a whole campus is no evidence, one shared by two accounts is the signal's full
    weight.

    Examples
    --------
    >>> specificity(2, 200), specificity(20, 200), specificity(200, 200)
    (1.0, 0.5, 0.0)
    """
    if n < 2 or n >= cap:
        return 0.0
    return min(1.0, math.log(cap / n) / math.log(cap / 2))


def coincidence_sql(n: str) -> str:
    """SQL aggregate: the chance that two of everyone's values are the same one,
    ``q = sum n (n - 1) / (sum n)^2`` over values carried ``n`` times each (a pair of accounts
    carrying ``d_a`` and ``d_b`` values shares ``d_a d_b q`` of them by chance)."""
    return f"sum({n}::DOUBLE * ({n} - 1)) / (sum({n}::DOUBLE) * sum({n}::DOUBLE))"


def _specificity_sql(n: str, cap: str) -> str:
    # The same formula as :func:`specificity`, as SQL over columns.
    return f"least(1.0, greatest(0.0, ln({cap}::DOUBLE / {n}) / ln({cap}::DOUBLE / 2)))"


def signal_weights(
    cfg: SignalsConfig, observation_kinds: list[str]
) -> dict[str, tuple[float, int]]:
    """(weight, cap) of every enabled signal, observation kinds expanded to ``obs:<kind>``.

    A weight of 0 disables a signal like ``enabled = false`` does.
    """
    out: dict[str, tuple[float, int]] = {}
    for f in fields(cfg):
        name = f.name
        sig = getattr(cfg, name)
        if not sig.enabled:
            continue
        if name == "observation":
            for kind in observation_kinds:
                w = sig.kinds.get(kind, sig.weight)
                if w > 0:
                    out[f"obs:{kind}"] = (w, sig.cap)
        elif sig.weight > 0:
            out[name] = (sig.weight, sig.cap)
    return out


def _time_buckets(signal: str, key_sql: str, ts: str, source: str, minutes: int) -> list[str]:
    """SELECTs of (idx, signal, key + time bucket) on two grids offset by half a window, so
    that any two events less than half a window apart share a bucket in at least one grid."""
    window = minutes * 60
    return [
        f"SELECT DISTINCT idx, '{signal}', {key_sql} || ':{offset}:' || "
        f"floor((epoch({ts}) + {offset}) / {window})::BIGINT FROM {source}"
        for offset in (0, window // 2)
    ]


def build_links(con: SQLConnection, cfg: SignalsConfig) -> dict[str, tuple[float, int]]:
    """Create ``links``, ``keys`` and ``key_members`` in ``con``; return the signal weights.

    Co-signup keys combine a weak key with a time bucket of ``window_minutes``. Two bucket
    grids offset by half a window are used so that any two signups less than half a window
    apart share a bucket; a pair seen in both grids counts once, because the graph stage takes
    the strongest co-signup key of a pair rather than combining them.
    """
    kinds = [r[0] for r in con.execute(
        "SELECT DISTINCT kind FROM observations ORDER BY kind").fetchall()]
    weights = signal_weights(cfg, kinds)

    # Per-signal weight and cap as a small table, so the key weights are one set-based query.
    # Signals whose pairs must share several keys before any counts (read by the graph).
    con.execute("CREATE OR REPLACE TABLE signal_min_shared (signal VARCHAR, min_shared INTEGER)")
    # (template_pool's min_shared is about pairs of templates, not of accounts.)
    minimums = [(f.name, sig.min_shared) for f in fields(cfg)
                if isinstance(sig := getattr(cfg, f.name), _HAS_MIN_SHARED)
                and not isinstance(sig, TemplatePoolConfig)
                and sig.min_shared > 1 and f.name in weights]
    if minimums:
        con.executemany("INSERT INTO signal_min_shared VALUES (?, ?)", minimums)
    con.execute("CREATE OR REPLACE TEMP TABLE signal_params"
                "(signal VARCHAR, weight DOUBLE, cap INTEGER)")
    if weights:
        con.executemany(
            "INSERT INTO signal_params VALUES (?, ?, ?)",
            [(s, w, c) for s, (w, c) in sorted(weights.items())],
        )

    parts: list[str] = []
    for signal, selects in _SOURCES.items():
        if signal in weights:
            parts += [
                f"SELECT idx, '{signal}' AS signal, key FROM ({sql}) s(idx, key) "
                "WHERE key IS NOT NULL"
                for sql in selects
            ]
    if any(s.startswith("obs:") for s in weights):
        # Kinds are data: matched against the bound signal_params, never spliced into SQL.
        parts.append(
            "SELECT idx, 'obs:' || kind, value_key FROM observations "
            "WHERE value_key IS NOT NULL AND 'obs:' || kind IN (SELECT signal FROM signal_params)"
        )
    if COSIGNUP in weights:
        for weak in cfg.cosignup.weak_keys:
            parts += _time_buckets(COSIGNUP, f"'{weak}:' || wk", "created_at",
                                   f"({_WEAK_KEYS[weak]}) WHERE wk IS NOT NULL "
                                   "AND created_at IS NOT NULL",
                                   cfg.cosignup.window_minutes)
    if COACTIVITY in weights:
        parts += _time_buckets(
            COACTIVITY, "kind || ':' || value_key", "seen_at",
            "observations WHERE value_key IS NOT NULL AND seen_at IS NOT NULL",
            cfg.coactivity.window_minutes)
    if PROMPT_SYNC in weights:
        # Only templates used by fewer than signals.prompt.cap accounts: a popular public
        # template used in the same minutes is a trend, and at scale most of the requests.
        # Only keys of two or more accounts: a request alone with its template in its window
        # is most of the interactions (77% of the keys on seedscale) and explains nothing.
        sync = _time_buckets(
            PROMPT_SYNC, "prompt_key", "ts",
            "interactions WHERE prompt_key IS NOT NULL AND ts IS NOT NULL AND prompt_key IN "
            "(SELECT prompt_key FROM interactions WHERE prompt_key IS NOT NULL "
            f"GROUP BY prompt_key HAVING count(DISTINCT idx) < {int(cfg.prompt.cap)})",
            cfg.prompt_sync.window_minutes)
        # (A subquery, not QUALIFY, which not every engine's SQL has.)
        parts += [f"SELECT idx, signal, key FROM (SELECT idx, signal, key, count(*) OVER "
                  f"(PARTITION BY key) AS n_rows FROM ({q}) t(idx, signal, key)) w "
                  "WHERE n_rows >= 2" for q in sync]
    # Per-key factors of the evidence a signal's own rule sets (template pools' dedication).
    con.execute("CREATE OR REPLACE TEMP TABLE key_factors "
                "(signal VARCHAR, key VARCHAR, factor DOUBLE)")
    if "bin_postal" in weights:
        instrument_independence(con)
    # The templates of each private pool (scoring counts work on them as the members' own).
    con.execute("CREATE OR REPLACE TABLE pool_templates (key VARCHAR, prompt_key VARCHAR)")
    if ACTIVITY_SYNC not in weights:
        # No set-similarity signal judged against chance (activity_bands makes these).
        con.execute("CREATE OR REPLACE TABLE band_chance "
                    "(signal VARCHAR, idx INTEGER, d INTEGER, lo BIGINT, hi BIGINT)")
        con.execute("CREATE OR REPLACE TABLE band_background "
                    "(signal VARCHAR, q DOUBLE, span BIGINT, alpha DOUBLE, rounds INTEGER, "
                    "fanout INTEGER)")
        if ACTIVITY_GROUP in weights:
            activity_sets(con, cfg.activity_sync.window_minutes)
        else:
            con.execute("CREATE OR REPLACE TABLE activity_sets (idx INTEGER, e BIGINT)")
    band_tables(con, cfg, weights)
    parts += [f"SELECT idx, '{signal}', key FROM {table}"
              for signal, table in BAND_TABLES.items() if signal in weights]
    if ACTIVITY_GROUP in weights and activity_groups(con, cfg.activity_group,
                                                     cfg.activity_sync.window_minutes):
        parts.append(f"SELECT idx, '{ACTIVITY_GROUP}', key FROM activity_group_links")
    if "template_pool" in weights and template_pools(con, cfg.template_pool):
        parts.append("SELECT idx, 'template_pool', key FROM template_pool_links")
    if not parts:
        parts.append("SELECT NULL::INTEGER, NULL::VARCHAR, NULL::VARCHAR WHERE false")
    con.execute(
        "CREATE OR REPLACE TABLE links AS SELECT DISTINCT idx::INTEGER AS idx, "
        "signal::VARCHAR AS signal, key::VARCHAR AS key FROM ("
        + " UNION ALL ".join(parts) + ") u(idx, signal, key)"
    )

    con.execute(
        f"""
        CREATE OR REPLACE TABLE keys AS
        WITH counted AS (
            SELECT signal, key, count(*)::INTEGER AS n FROM links GROUP BY signal, key
        )
        SELECT (row_number() OVER (ORDER BY c.signal, c.key) - 1)::INTEGER AS kid,
               c.signal, c.key, c.n,
               sp.weight * {_specificity_sql('c.n', 'sp.cap')}
                   * coalesce(f.factor, 1::DOUBLE) AS p_key,
               sp.weight * {_specificity_sql('c.n', 'sp.cap')}
                   * coalesce(f.factor, 1::DOUBLE) AS p
        FROM counted c JOIN signal_params sp USING (signal)
        LEFT JOIN key_factors f USING (signal, key)
        WHERE c.n >= 2 AND c.n < sp.cap
        """
    )
    con.execute("DROP TABLE key_factors")
    con.execute("DROP TABLE IF EXISTS activity_group_links")
    con.execute(
        """
        CREATE OR REPLACE TABLE key_members AS
        SELECT k.kid, l.idx FROM links l JOIN keys k USING (signal, key)
        ORDER BY k.kid, l.idx
        """
    )
    return weights


# Seeds of the MinHash family: fixed, so that band keys are stable across runs and machines.
_MINHASH_KEY = np.uint64(0x5DEECE66D1CE4E5B)
# Key of the element hash (:func:`set_band_keys`): one 64-bit integer per element, the same
# on every engine (no engine's own ``hash()``).
_ELEMENT_KEY = np.uint64(0x2545F4914F6CDD1D)
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE_SHIFTS = np.arange(60, -1, -4, dtype=np.uint64)
# Hex digits of prompt_key (a keyed HMAC in hex, linkage.pseudonymise) read as an element id:
# 15 digits are 60 bits, a non-negative BIGINT on every engine (not all have unsigned types).
_PROMPT_ELEMENT_HEX = 15


def _mix64(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """Keyed SplitMix64 finaliser (a bijection of ``uint64``); wraps modulo 2**64."""
    z = x ^ key
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def band_tables(con: SQLConnection, cfg: SignalsConfig,
                weights: dict[str, tuple[float, int]]) -> list[str]:
    """Create the band-key tables of the enabled set-similarity signals (:func:`prompt_bands`,
    :func:`activity_bands`) in ``con``; returns their names. Every engine selects the same
    elements with the same SQL and keys them with the same numpy function
    (:func:`set_band_keys`, :func:`linkage.engines.key_sets`), so they link accounts by the
    very same band keys."""
    if "prompt" in weights:
        prompt_bands(con, cfg.prompt)
    if ACTIVITY_SYNC in weights:
        activity_bands(con, cfg.activity_sync)
    return [table for signal, table in BAND_TABLES.items() if signal in weights]


def prompt_bands(con: SQLConnection, cfg: PromptConfig) -> int:
    """Create ``prompt_bands(idx INTEGER, key VARCHAR)``: MinHash-LSH keys of template sets.

    Each account's *set* is the templates it used at least ``cfg.min_uses`` times among those
    used by fewer than ``cfg.cap`` accounts (the engine aggregates the interactions; Python
    sees only the resulting elements). A template's element id is the leading 15 hex digits
    of its ``prompt_key`` (a keyed HMAC, so already uniform) read as an integer, in SQL that
    both engines run alike. Accounts with at least ``cfg.min_templates`` of them get
    ``cfg.bands`` keys (:func:`_set_bands`). Returns the number of accounts with band keys.
    """
    sets = f"""
        WITH pairs AS (
            SELECT idx, prompt_key, count(*) AS uses FROM interactions
            WHERE prompt_key IS NOT NULL GROUP BY idx, prompt_key
        ),
        rare AS (
            SELECT idx, prompt_key, uses, count(*) OVER (PARTITION BY prompt_key) AS n
            FROM pairs
        )
        SELECT idx, ('0x' || left(prompt_key, {_PROMPT_ELEMENT_HEX}))::BIGINT AS e FROM rare
        WHERE n < {int(cfg.cap)} AND uses >= {int(cfg.min_uses)}
    """
    return _set_bands(con, sets, "prompt_bands", cfg.bands, cfg.rows, cfg.min_templates)


def instrument_independence(con: SQLConnection) -> None:
    """Add to ``key_factors`` each shared ``bin_postal`` key's independence: how many
    *different* cards stand behind it, ``(d - 1) / (n - 1)`` for ``n`` carriers and ``d``
    distinct cards (a row without a fingerprint counts as a card of its own), at most 1.

    A BIN and billing postal code is evidence of its own when different cards share it (one
    issuer's batch of virtual cards: ``d = n``, factor 1). When every carrier holds the same
    card (a family card, an operator's one card), the BIN and postal code are that card's and
    the card signal already says all there is: factor 0, so one card is not counted twice.
    """
    con.execute(
        """
        INSERT INTO key_factors
        SELECT 'bin_postal', bin_postal_key,
               least(1::DOUBLE, greatest(0::DOUBLE,
                   (count(DISTINCT card_key)
                    + sum(CASE WHEN card_key IS NULL THEN 1 ELSE 0 END) - 1)::DOUBLE
                   / (count(DISTINCT idx) - 1)))
        FROM payment_instruments WHERE bin_postal_key IS NOT NULL
        GROUP BY bin_postal_key HAVING count(DISTINCT idx) >= 2
        """
    )


def template_pools(con: SQLConnection, cfg: TemplatePoolConfig) -> int:
    """Create ``template_pool_links(idx INTEGER, key VARCHAR)``: the accounts that use a
    private template pool, and the pool's key; return the number of pools.

    The transpose of :func:`prompt_bands`: each template used by at least
    ``cfg.min_carriers`` accounts gets MinHash-LSH band keys of its *set of users*
    (:func:`set_band_keys`, with the template as the set and account numbers as elements).
    Two templates sharing ``cfg.min_shared`` band keys have nearly the same users; the
    connected groups of such templates (igraph, on the driver: one row per template pair)
    of at least ``cfg.min_templates`` templates are pools, keyed ``pool:`` and their smallest
    ``prompt_key``. An account that used at least ``cfg.min_used`` templates of a pool
    carries its key.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE template_users AS
        WITH used AS (
            SELECT DISTINCT prompt_key, idx FROM interactions WHERE prompt_key IS NOT NULL
        ),
        compared AS (
            SELECT prompt_key FROM used GROUP BY prompt_key
            HAVING count(*) >= {int(cfg.min_carriers)}
        )
        SELECT u.prompt_key, u.idx,
               (dense_rank() OVER (ORDER BY u.prompt_key) - 1)::INTEGER AS tid
        FROM used u SEMI JOIN compared c USING (prompt_key)
        """
    )
    _set_bands(con, "SELECT tid AS idx, idx::BIGINT AS e FROM template_users",
               "template_bands", cfg.bands, cfg.rows, int(cfg.min_carriers))
    # Candidates (shared band keys), then the background: two templates belong to one pool
    # when they share at least min_lift times the users chance predicts from who their users
    # are. Under independence account u uses a template of n users with probability
    # n d_u / D (d_u: the compared templates u used, D their sum), so the users of A meet B
    # (n_B users) n_B S_A / D times (S_A: the sum of d over A's users); taken both ways round,
    # E = (n_B S_A + n_A S_B) / 2D. A template of heavy users, who use every popular
    # template, meets any other on them by chance, and chained together such templates would
    # make one "pool" of everyone; a pipeline's templates share nearly all of their users,
    # who use little else, however many they are.
    pairs = con.execute(
        f"""
        WITH candidates AS (
            SELECT x.idx AS a, y.idx AS b FROM template_bands x
            JOIN template_bands y ON x.key = y.key AND x.idx < y.idx
            GROUP BY x.idx, y.idx HAVING count(*) >= {int(cfg.min_shared)}
        ),
        common AS (
            SELECT c.a, c.b, count(*) AS k FROM candidates c
            JOIN template_users ua ON ua.tid = c.a
            JOIN template_users ub ON ub.tid = c.b AND ub.idx = ua.idx
            GROUP BY c.a, c.b
        ),
        degrees AS (SELECT idx, count(*)::DOUBLE AS d FROM template_users GROUP BY idx),
        -- per template: its users (n) and the templates they use in all (s)
        sizes AS (
            SELECT u.tid, count(*) AS n, sum(g.d) AS s
            FROM template_users u JOIN degrees g USING (idx) GROUP BY u.tid
        ),
        total AS (SELECT sum(d) AS d FROM degrees)
        SELECT c.a, c.b FROM common c
        JOIN sizes sa ON sa.tid = c.a JOIN sizes sb ON sb.tid = c.b CROSS JOIN total t
        WHERE c.k >= {float(cfg.min_lift)} * (sb.n * sa.s + sa.n * sb.s) / (2 * t.d)
        ORDER BY c.a, c.b
        """
    ).fetchnumpy()
    con.execute("DROP TABLE template_bands")
    a = np.asarray(pairs["a"], dtype=np.int64)
    b = np.asarray(pairs["b"], dtype=np.int64)
    n_templates = int(max(a.max(), b.max()) + 1) if len(a) else 0
    pool_graph = ig.Graph(n=n_templates, directed=False)
    if len(a):
        pool_graph.add_edges(np.column_stack([a, b]))
    labels = np.asarray(pool_graph.connected_components().membership, dtype=np.int64)
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1 if len(labels) else 0)
    keep = np.flatnonzero(sizes[labels] >= int(cfg.min_templates))
    pools = pa.table({"tid": pa.array(keep, pa.int32()),
                      "pool": pa.array(labels[keep], pa.int32())})
    con.register("pools_in", pools)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE template_pool_links AS
            WITH named AS (
                SELECT p.pool, 'pool:' || min(u.prompt_key) AS key
                FROM pools_in p JOIN template_users u USING (tid) GROUP BY p.pool
            )
            SELECT u.idx, n.key FROM template_users u JOIN pools_in p USING (tid)
            JOIN named n USING (pool)
            GROUP BY u.idx, n.key HAVING count(DISTINCT u.tid) >= {int(cfg.min_used)}
            """
        )
        # How much of its users' work a pool is: a pipeline's accounts do little else
        # (about 0.9 of their requests), a team's internal templates are part of people's
        # work, a popular app's templates a small part of its users'.
        con.execute(
            """
            CREATE OR REPLACE TABLE pool_templates AS
            SELECT DISTINCT n.key, u.prompt_key FROM pools_in p
            JOIN template_users u USING (tid)
            JOIN (SELECT p2.pool, 'pool:' || min(u2.prompt_key) AS key FROM pools_in p2
                  JOIN template_users u2 USING (tid) GROUP BY p2.pool) n USING (pool)
            """
        )
        con.execute(
            """
            INSERT INTO key_factors
            WITH requests AS (
                SELECT l.key, i.prompt_key FROM template_pool_links l
                JOIN interactions i USING (idx)
            )
            SELECT 'template_pool' AS signal, r.key,
                   count(pt.prompt_key)::DOUBLE / count(*) AS factor
            FROM requests r LEFT JOIN pool_templates pt
                 ON pt.key = r.key AND pt.prompt_key = r.prompt_key
            GROUP BY r.key
            """
        )
    finally:
        con.unregister("pools_in")
    con.execute("DROP TABLE template_users")
    return len(np.unique(labels[keep]))


def activity_bands(con: SQLConnection, cfg: ActivitySyncConfig) -> int:
    """Create ``activity_bands(idx INTEGER, key VARCHAR)``: MinHash-LSH keys of the sets of
    ``cfg.window_minutes`` buckets in which each account sent any request, for accounts active
    in at least ``cfg.min_buckets`` of them (:func:`_set_bands`). A bucket's element id is its
    number (whole windows since the epoch). Two accounts driven on one schedule have nearly
    the same set whatever templates they use; people active at random moments do not.

    Also creates the signal's background, ``band_chance(signal, idx, d, lo, hi)`` (each
    keyed account's number of active buckets, its first and last), ``band_background(signal,
    q, span, alpha, rounds, fanout)`` (``q``: the chance that two of everyone's active buckets
    are the same one; ``span``: the buckets from everyone's first to last; ``alpha``,
    ``rounds`` and ``fanout``: ``cfg.alpha``, ``cfg.group_rounds``, ``cfg.group_fanout``) and
    keeps ``activity_sets(idx, e)``, every account's active buckets, from
    which :func:`linkage.graph.build_edges` judges each pair the bands propose by the
    buckets it really shares against the overlap their volumes alone predict: two heavy
    users active at every hour share many buckets by chance, two scripts of one schedule far
    more than chance. Returns the number of accounts with band keys."""
    activity_sets(con, cfg.window_minutes)
    # The background (graph.build_edges): how many buckets each account is active in, and
    # how often two of everyone's active buckets coincide.
    con.execute(
        f"""
        CREATE OR REPLACE TABLE band_chance AS
        SELECT '{ACTIVITY_SYNC}' AS signal, idx, count(*)::INTEGER AS d, min(e) AS lo,
               max(e) AS hi
        FROM activity_sets GROUP BY idx HAVING count(*) >= {int(cfg.min_buckets)}
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE band_background AS
        SELECT '{ACTIVITY_SYNC}' AS signal, {coincidence_sql("n")} AS q,
               max(e) - min(e) + 1 AS span, {float(cfg.alpha)}::DOUBLE AS alpha,
               {int(cfg.group_rounds)} AS rounds, {int(cfg.group_fanout)} AS fanout
        FROM (SELECT e, count(*) AS n FROM activity_sets GROUP BY e) t
        """
    )
    return _set_bands(con, "SELECT idx, e FROM activity_sets", "activity_bands", cfg.bands,
                      cfg.rows, cfg.min_buckets)


def activity_sets(con: SQLConnection, window_minutes: int) -> None:
    """Create ``activity_sets(idx, e)``: the distinct ``window_minutes`` buckets (whole
    windows since the epoch) in which each account sent any request."""
    window = int(window_minutes) * 60
    con.execute(
        f"""
        CREATE OR REPLACE TABLE activity_sets AS
        SELECT DISTINCT idx, floor(epoch(ts) / {window})::BIGINT AS e
        FROM interactions WHERE ts IS NOT NULL
        """
    )


def activity_groups(con: SQLConnection, cfg: ActivityGroupConfig, window_minutes: int) -> int:
    """Create ``activity_group_links(idx INTEGER, key VARCHAR)``: the accounts of each
    schedule group (:func:`linkage.schedule_groups.schedule_groups`, from ``activity_sets``
    of ``window_minutes`` buckets) and the group's key, ``group:`` and its smallest
    ``account_id``; return the number of groups. The groups are found on the driver, from
    the active buckets of the accounts active in at least ``cfg.min_buckets``."""
    rows = con.execute(
        f"""
        SELECT idx, e FROM activity_sets WHERE idx IN (
            SELECT idx FROM activity_sets GROUP BY idx HAVING count(*) >= {int(cfg.min_buckets)})
        """
    ).fetchnumpy()
    members, group = schedule_groups(np.asarray(rows["idx"]), np.asarray(rows["e"]),
                                     int(window_minutes) * 60, cfg)
    found = pa.table({"idx": pa.array(members, pa.int32()), "grp": pa.array(group, pa.int32())})
    con.register("groups_in", found)
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE activity_group_links AS
            SELECT g.idx, 'group:' || min(a.account_id) OVER (PARTITION BY g.grp) AS key
            FROM groups_in g JOIN accounts a USING (idx)
            """
        )
    finally:
        con.unregister("groups_in")
    return int(group.max()) + 1 if len(group) else 0


def _set_bands(con: SQLConnection, sets_sql: str, table: str, bands: int, rows: int,
               min_size: int) -> int:
    """Create ``table(idx INTEGER, key VARCHAR)`` from the sets ``sets_sql`` selects as
    distinct ``(idx, e BIGINT)`` elements: :func:`set_band_keys` of the accounts with at least
    ``min_size`` distinct elements, computed where the rows are
    (:func:`linkage.engines.key_sets`). Returns the number of accounts with keys.
    """
    sized = f"""
        SELECT idx, e FROM (
            SELECT idx, e, count(*) OVER (PARTITION BY idx) AS size FROM ({sets_sql}) s
        ) z WHERE size >= {int(min_size)}
    """
    return key_sets(con, sized, table, partial(set_band_keys, bands=bands, rows=rows)) // bands


BAND_SCHEMA = pa.schema([("idx", pa.int32()), ("key", pa.string())])


def set_band_keys(idx: np.ndarray, element: np.ndarray, bands: int, rows: int) -> pa.Table:
    """MinHash-LSH band keys ``(idx INTEGER, key VARCHAR)`` of the sets given as rows
    ``(idx, element)`` (integers; rows in any order, duplicates harmless); every account
    present gets ``bands`` keys ``"BAND:HEX"``.

    Each element id is first mixed into a uniform 64-bit hash (:func:`_mix64` with a fixed
    key); then ``bands * rows`` MinHash values per account are computed with numpy (one
    vectorised pass per hash function over all the rows, ``np.minimum.reduceat`` per
    account), and every band of ``rows`` values becomes one key. Two accounts with Jaccard
    similarity ``J`` share each band key with probability ``J ** rows``, independently per
    band. An account's keys depend on its set alone, so a batch of whole accounts gives the
    same keys as the whole table, whether an engine calls it on every account at once or per
    partition. Cost: linear in the rows times ``bands * rows``; no pair of accounts is
    enumerated.
    """
    idx = np.asarray(idx, dtype=np.int64)
    h = _mix64(np.asarray(element, dtype=np.int64).view(np.uint64), _ELEMENT_KEY)
    if len(idx) == 0:
        return BAND_SCHEMA.empty_table()
    if np.any(idx[1:] < idx[:-1]):
        order = np.argsort(idx, kind="stable")
        idx, h = idx[order], h[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    accounts = idx[starts].astype(np.int32)
    seeds = _mix64(np.arange(bands * rows, dtype=np.uint64), _MINHASH_KEY)
    keys = []
    for band in range(bands):  # one vectorised pass per band (and per row within it)
        code = np.full(len(starts), np.uint64(band))
        for row in range(rows):
            low = np.minimum.reduceat(_mix64(h, seeds[band * rows + row]), starts)
            code = _mix64(code ^ low, _MINHASH_KEY)
        keys.append(_band_key(band, code))
    return pa.table([pa.array(np.tile(accounts, bands)), pa.chunked_array(keys)],
                    schema=BAND_SCHEMA)


def _band_key(band: int, code: np.ndarray) -> pa.Array:
    """``"BAND:HEX"`` for each code (16 lower-case hex digits), as one Arrow string array
    built from a byte matrix (no Python string per key)."""
    prefix = np.frombuffer(f"{band}:".encode(), dtype=np.uint8)
    digits = _HEX_DIGITS[((code[:, None] >> _NIBBLE_SHIFTS) & np.uint64(15)).astype(np.intp)]
    text = np.hstack([np.broadcast_to(prefix, (len(code), len(prefix))), digits])
    width = text.shape[1]
    return pa.array(np.ascontiguousarray(text).view(f"S{width}").ravel()).cast(pa.string())
