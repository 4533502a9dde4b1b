"""Signals: turn the normalised input tables into links between accounts and keys.

A *link* says "account ``idx`` carries key ``key`` of signal ``signal``". Two accounts that
carry the same key share evidence; how much depends on the signal's weight and on how many
accounts carry that key (see :func:`specificity_sql` and ``docs/algorithm.md``).

Input (DuckDB tables left by :mod:`linkage.ingest`): ``accounts``, ``payment_instruments``,
``ip_events``, ``devices``, ``observations``.

Output (DuckDB tables in the same connection):

``links(idx INTEGER, signal VARCHAR, key VARCHAR)``
    distinct account-key links of every enabled signal, including keys carried by one account
    (they explain nothing but cost little and keep the table complete for analysts).
``signal_min_shared(signal VARCHAR, min_shared INTEGER)``
    signals whose pairs must share at least ``min_shared`` keys before any counts.
``keys(kid INTEGER, signal VARCHAR, key VARCHAR, n INTEGER, p DOUBLE)``
    every key carried by 2..cap accounts, its popularity ``n`` and the evidence ``p`` it gives
    each pair of its accounts. ``kid`` is dense and ordered by (signal, key), so it is
    deterministic.
``key_members(kid INTEGER, idx INTEGER)``
    the links of those keys, by ``kid``.

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
``prompt``              ``interactions.prompt_fingerprint``: the same prompt template
``prompt_sync``         the same prompt template used within the same window
======================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import fields

from linkage.config import SignalConfig, SignalsConfig
from linkage.engines import SQLConnection

__all__ = [
    "COACTIVITY",
    "COSIGNUP",
    "PROMPT_SYNC",
    "SIGNAL_FAMILIES",
    "TIME_BUCKETED",
    "build_links",
    "signal_weights",
    "specificity",
]

COSIGNUP = "cosignup"
COACTIVITY = "coactivity"
PROMPT_SYNC = "prompt_sync"
# Signals whose keys carry a time bucket on two offset grids: a pair seen in both grids (or
# through several keys of one coincidence) counts once, at its strongest key.
TIME_BUCKETED = (COSIGNUP, COACTIVITY, PROMPT_SYNC)

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
    PROMPT_SYNC: "behaviour",
}

# (signal, SQL selecting idx and key) for the exact-value and range signals.
_SOURCES: dict[str, list[str]] = {
    "card": ["SELECT idx, card_key AS key FROM payment_instruments"],
    "bin_postal": ["SELECT idx, bin_postal_key FROM payment_instruments"],
    "device": ["SELECT idx, device_key FROM devices"],
    "email": ["SELECT idx, email_key FROM accounts"],
    "phone": ["SELECT idx, phone_key FROM accounts"],
    "ip": ["SELECT idx, ip_key FROM ip_events", "SELECT idx, signup_ip_key FROM accounts"],
    "ip_net": ["SELECT idx, net_key FROM ip_events", "SELECT idx, signup_net_key FROM accounts"],
    "ip_net48": [
        "SELECT idx, net48_key FROM ip_events",
        "SELECT idx, signup_net48_key FROM accounts",
    ],
    # the templates an account's requests used (interactions can be tens of millions of
    # rows: the DISTINCT of build_links keeps one link per account and template)
    "prompt": ["SELECT idx, prompt_key FROM interactions"],
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
    minimums = [(f.name, sig.min_shared) for f in fields(cfg)
                if isinstance(sig := getattr(cfg, f.name), SignalConfig)
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
                                   f"({_WEAK_KEYS[weak]}) WHERE wk IS NOT NULL",
                                   cfg.cosignup.window_minutes)
    if COACTIVITY in weights:
        parts += _time_buckets(
            COACTIVITY, "kind || ':' || value_key", "seen_at",
            "observations WHERE value_key IS NOT NULL AND seen_at IS NOT NULL",
            cfg.coactivity.window_minutes)
    if PROMPT_SYNC in weights:
        parts += _time_buckets(PROMPT_SYNC, "prompt_key", "ts",
                               "interactions WHERE prompt_key IS NOT NULL AND ts IS NOT NULL",
                               cfg.prompt_sync.window_minutes)
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
               sp.weight * {_specificity_sql('c.n', 'sp.cap')} AS p
        FROM counted c JOIN signal_params sp USING (signal)
        WHERE c.n >= 2 AND c.n < sp.cap
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE key_members AS
        SELECT k.kid, l.idx FROM links l JOIN keys k USING (signal, key)
        ORDER BY k.kid, l.idx
        """
    )
    return weights
