"""Graph: combine the evidence of shared keys into weighted account-account edges.

Input: the ``keys`` and ``key_members`` tables of :mod:`linkage.signals`, its background of
the set-similarity signals judged against chance (``band_chance``, ``band_background``,
``activity_sets``), and ``accounts``.

Output (DuckDB tables, and arrays for community detection):

``edge_signals(a INTEGER, b INTEGER, signal VARCHAR, p DOUBLE, n_keys INTEGER)``
    per pair (``a < b``) and signal: the signal's combined evidence ``p`` and how many keys
    of that signal the pair shares.
``edges(a INTEGER, b INTEGER, weight DOUBLE)``
    one row per pair, ordered by ``(a, b)``: ``weight = 1 - prod_s (1 - p_s)``.

Combining evidence
------------------
Every shared key is treated as an independent, imperfect witness that the two accounts have
one operator: a key of popularity ``n`` says so with probability
``p = weight * specificity(n, cap)``. Witnesses are combined by *noisy-OR*,
``1 - prod (1 - p)``: two cards shared are stronger than one, many weak signals add up to
strong evidence (camouflage never removes all of them), and the result stays in [0, 1] so
that CPM's resolution reads as "minimum average evidence between members". Within the
time-bucketed signals (co-signup, co-activity) the strongest key counts alone, since their
two bucket grids (and several weak keys of one burst) see the same coincidence more than once.

Hubs
----
A key carried by more than ``cap`` accounts gives nothing (its specificity is 0). A key
carried by at most ``clique_max`` accounts links every pair of its accounts. Between the two,
the accounts are put in a fixed pseudo-random order and each is linked to its
``ring_degree`` successors (a circulant graph): the group stays connected and dense enough to
be one community, while the edges grow linearly, not quadratically, with its size.
"""

from __future__ import annotations

import numpy as np

from linkage.config import GraphConfig
from linkage.edge_arrays import EdgeArrays
from linkage.engines import SQLConnection
from linkage.signals import ACTIVITY_SYNC, TIME_BUCKETED

# Multi-valued signals (an account carries many of their values: the templates it uses, the
# products it reviews; every ``obs:<kind>`` too) whose pair evidence is judged against the
# overlap chance predicts (see :func:`build_edges`).
SET_SIGNALS = ("template",)

__all__ = [
    "COHESION_TESTED",
    "SET_SIGNALS",
    "build_edges",
    "edge_arrays",
    "key_cohesion",
    "org_resources",
    "significant_sql",
    "weigh_keys",
]


def build_edges(con: SQLConnection, cfg: GraphConfig) -> int:
    """Weigh every key against its background (:func:`weigh_keys`), then create
    ``edge_signals`` and ``edges`` in ``con``; return the number of edges."""
    orgs = con.execute("SELECT count(*) FROM accounts WHERE org_key IS NOT NULL").fetchone()
    has_org = cfg.suppress_org and bool(orgs and orgs[0])
    weigh_keys(con, cfg, has_org)
    d = cfg.ring_degree
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pair_keys AS
        WITH small AS (
            SELECT km.kid, km.idx FROM key_members km JOIN keys k USING (kid)
            WHERE k.n <= {cfg.clique_max} AND k.p > 0
        ),
        big AS (
            -- rank members in a fixed pseudo-random order within their key, from content
            -- (key and account id, not the run-local idx and kid): the ring of a key then
            -- depends on its own members only, whatever was added elsewhere
            SELECT km.kid, km.idx, k.n,
                   (row_number() OVER (PARTITION BY km.kid
                                       ORDER BY {_ring_order('k', 'a')}, km.idx)
                    - 1)::INTEGER AS r
            FROM key_members km JOIN keys k USING (kid) JOIN accounts a USING (idx)
            WHERE k.n > {cfg.clique_max} AND k.p > 0
        ),
        clique_pairs AS (
            SELECT x.idx AS a, y.idx AS b, x.kid
            FROM small x JOIN small y ON x.kid = y.kid AND x.idx < y.idx
        ),
        ring_pairs AS (
            SELECT DISTINCT least(x.idx, y.idx) AS a, greatest(x.idx, y.idx) AS b, x.kid
            FROM big x
            CROSS JOIN range(1, {d} + 1) o(step)
            JOIN big y ON y.kid = x.kid AND y.r = (x.r + o.step) % x.n
            WHERE x.idx <> y.idx
        )
        SELECT a, b, kid FROM clique_pairs
        UNION ALL
        SELECT a, b, kid FROM ring_pairs
        """
    )
    # The background of the multi-valued signals: what share of a pair's shared evidence
    # chance explains, from the values each account carries (how many, how popular), each
    # value weighed by the evidence it gives (its ``p``), in the chance as in the pair's sum.
    sets = ", ".join(f"'{s}'" for s in SET_SIGNALS)
    is_set = f"(k.signal IN ({sets}) OR k.signal LIKE 'obs:%')"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE carried AS
        SELECT k.signal, km.idx, count(*) AS d, sum(k.p * (k.n - 1)) AS s
        FROM key_members km JOIN keys k USING (kid)
        WHERE {is_set} AND k.p > 0 GROUP BY k.signal, km.idx
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE chance AS
        SELECT k.signal, sum(k.n)::DOUBLE AS total
        FROM keys k WHERE {is_set} AND k.p > 0 GROUP BY k.signal
        """
    )
    _band_overlap(con)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE edge_signals AS
        SELECT a, b, signal, p, n_keys FROM (
            SELECT r.a, r.b, r.signal, r.n_keys,
                   CASE WHEN bg.q IS NOT NULL THEN (
                            CASE WHEN {significant_sql('o.k', _ACTIVITY_CHANCE,
                                                    'bg.alpha / o.tested')}
                                 THEN r.p * round({_sync_lift('o.k')}, 9)
                                 ELSE 0::DOUBLE END)
                        WHEN c.total IS NULL THEN r.p
                        ELSE r.p * round(greatest(0::DOUBLE, 1 - {_SET_CHANCE} / r.mass), 9)
                   END AS p
            FROM (
                SELECT pk.a, pk.b, k.signal,
                       CASE WHEN k.signal IN {TIME_BUCKETED} THEN max(k.p)
                            ELSE 1 - {product_sql("1 - k.p")} END AS p,
                       count(*)::INTEGER AS n_keys, sum(k.p) AS mass
                FROM pair_keys pk JOIN keys k USING (kid)
                GROUP BY pk.a, pk.b, k.signal
                UNION ALL
                SELECT o.a, o.b, o.signal, 1 - pow(1 - sp.p, coalesce(m.min_shared, 1)),
                       coalesce(m.min_shared, 1), sp.p
                FROM band_overlap o
                JOIN (SELECT signal, max(p) AS p FROM keys WHERE signal = '{ACTIVITY_SYNC}'
                      GROUP BY signal) sp USING (signal)
                LEFT JOIN signal_min_shared m USING (signal)
                WHERE o.expanded
            ) r
            LEFT JOIN chance c USING (signal)
            LEFT JOIN carried x ON x.signal = r.signal AND x.idx = r.a
            LEFT JOIN carried y ON y.signal = r.signal AND y.idx = r.b
            LEFT JOIN band_background bg ON bg.signal = r.signal
            LEFT JOIN band_chance ca ON ca.signal = r.signal AND ca.idx = r.a
            LEFT JOIN band_chance cb ON cb.signal = r.signal AND cb.idx = r.b
            LEFT JOIN band_overlap o ON o.a = r.a AND o.b = r.b AND o.signal = r.signal
        ) w WHERE p > 0
        """
    )
    con.execute("DROP TABLE pair_keys")
    con.execute("DROP TABLE band_overlap")
    con.execute("DROP TABLE carried")
    con.execute("DROP TABLE chance")
    # One shared prompt template is a coincidence; several are a pipeline (min_shared).
    con.execute(
        """
        DELETE FROM edge_signals e USING signal_min_shared m
        WHERE e.signal = m.signal AND e.n_keys < m.min_shared
        """
    )
    if has_org:
        # Colleagues share a corporate card and an office range by design: evidence between
        # two accounts of one organisation says nothing about an operator.
        con.execute(
            """
            DELETE FROM edge_signals e
            USING accounts x, accounts y
            WHERE x.idx = e.a AND y.idx = e.b AND x.org_key = y.org_key
            """
        )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE edges AS
        SELECT a, b, 1 - {product_sql("1 - p")} AS weight
        FROM edge_signals
        GROUP BY a, b
        HAVING 1 - {product_sql("1 - p")} > {float(cfg.min_edge_weight)}
        ORDER BY a, b
        """
    )
    row = con.execute("SELECT count(*) FROM edges").fetchone()
    return int(row[0]) if row else 0


def _band_overlap(con: SQLConnection) -> None:
    """Create ``band_overlap(a, b, signal, k, tested, expanded)``: for every pair whose
    shared ``activity_sync`` band keys propose it (at least the signal's ``min_shared``), the
    number ``k`` of active buckets (``activity_sets``) the two accounts really share, and
    the number of pairs tested in all (``tested``, among which the significance is divided).
    Pairs that share no bucket have no row. Bands only find candidates cheaply; the
    similarity they estimate is noisy (two bands of 30 read as a Jaccard of 0.26 whatever
    the sets), the count itself is not.

    Then the group step (``rounds`` and ``fanout`` of ``band_background``): two accounts
    that are each synchronised beyond chance with a third are tested too (``expanded``).
    Bands propose a pair of Jaccard 0.1 rarely, so a scripted group's members are each
    found with a few of their fellows only; its fellows' fellows are the candidates a group
    has, and the count judges them like any other pair, among all pairs tested.

    The count joins every tested pair with the first account's buckets, then looks each
    of them up among the second account's: the rows that flow through the join and its
    grouping carry only integers (the pair and the bucket)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sync_tested AS
        SELECT pk.a, pk.b, false AS expanded FROM pair_keys pk JOIN keys k USING (kid)
        LEFT JOIN signal_min_shared m USING (signal)
        WHERE k.signal = '{ACTIVITY_SYNC}'
        GROUP BY pk.a, pk.b, m.min_shared
        HAVING count(*) >= coalesce(m.min_shared, 1)
        """
    )
    con.execute("CREATE OR REPLACE TEMP TABLE sync_shared (a INTEGER, b INTEGER, k BIGINT)")
    _count_shared(con, "sync_tested")
    row = con.execute(
        f"SELECT rounds, fanout FROM band_background WHERE signal = '{ACTIVITY_SYNC}'"
    ).fetchone()
    rounds, fanout = (int(row[0]), int(row[1])) if row else (0, 0)
    for _ in range(rounds):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE sync_links AS
            SELECT s.a, s.b, s.k FROM sync_shared s
            JOIN band_chance ca ON ca.signal = '{ACTIVITY_SYNC}' AND ca.idx = s.a
            JOIN band_chance cb ON cb.signal = '{ACTIVITY_SYNC}' AND cb.idx = s.b
            CROSS JOIN (SELECT * FROM band_background
                        WHERE signal = '{ACTIVITY_SYNC}') bg
            CROSS JOIN (SELECT count(*) AS n FROM sync_tested) t
            WHERE {significant_sql('s.k', _ACTIVITY_CHANCE, 'bg.alpha / t.n')}
              AND {_sync_lift('s.k')} > 0
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE sync_next AS
            WITH l AS (SELECT a AS x, b AS y, k FROM sync_links
                       UNION ALL SELECT b AS x, a AS y, k FROM sync_links),
            top AS (
                SELECT x, y FROM (
                    SELECT l.x, l.y, row_number() OVER (
                        PARTITION BY l.x ORDER BY l.k DESC, {_pair_order('ax', 'ay')}) AS r
                    FROM l JOIN accounts ax ON ax.idx = l.x JOIN accounts ay ON ay.idx = l.y
                ) z
                WHERE r <= {fanout}
            ),
            cand AS (
                SELECT t1.y AS a, t2.y AS b, count(*) AS common
                FROM top t1 JOIN top t2 ON t1.x = t2.x AND t1.y < t2.y
                GROUP BY t1.y, t2.y
            ),
            new AS (
                SELECT c.a, c.b, c.common, {_pair_order('aa', 'ab')} AS o FROM cand c
                JOIN accounts aa ON aa.idx = c.a JOIN accounts ab ON ab.idx = c.b
                LEFT JOIN sync_tested t ON t.a = c.a AND t.b = c.b
                WHERE t.a IS NULL
            ),
            ranked AS (
                SELECT a, b,
                       row_number() OVER (PARTITION BY a ORDER BY common DESC, o) AS ra,
                       row_number() OVER (PARTITION BY b ORDER BY common DESC, o) AS rb
                FROM new
            )
            SELECT a, b, true AS expanded FROM ranked
            WHERE ra <= {fanout} OR rb <= {fanout}
            """
        )
        row = con.execute("SELECT count(*) FROM sync_next").fetchone()
        if not row or not row[0]:
            con.execute("DROP TABLE sync_next")
            break
        con.execute("INSERT INTO sync_tested SELECT a, b, expanded FROM sync_next")
        _count_shared(con, "sync_next")
        con.execute("DROP TABLE sync_next")
    con.execute("DROP TABLE IF EXISTS sync_links")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE band_overlap AS
        SELECT s.a, s.b, '{ACTIVITY_SYNC}' AS signal, s.k, t.n AS tested, p.expanded
        FROM sync_shared s JOIN sync_tested p USING (a, b)
        CROSS JOIN (SELECT count(*) AS n FROM sync_tested) t
        """
    )
    con.execute("DROP TABLE sync_shared")
    con.execute("DROP TABLE sync_tested")


def _count_shared(con: SQLConnection, pairs: str) -> None:
    """Add to ``sync_shared(a, b, k)`` the active buckets each pair of ``pairs`` shares."""
    con.execute(
        f"""
        INSERT INTO sync_shared
        SELECT p.a, p.b, count(*) AS k FROM {pairs} p
        JOIN activity_sets x ON x.idx = p.a
        JOIN activity_sets y ON y.idx = p.b AND y.e = x.e
        GROUP BY p.a, p.b
        """
    )


# The evidence two accounts (carried ``x``, ``y``) share by chance on a multi-valued signal
# (chance ``c``): each value ``t`` that ``a`` carries (``n_t`` carriers) is also carried by
# ``b`` with probability ``d_b (n_t - 1) / total`` (``b``'s share of the values everyone
# carries), and would give ``p_t``; summed over ``a``'s values, ``d_b s_a / total`` with
# ``s_a = sum p_t (n_t - 1)``, and taken both ways round: ``(d_b s_a + d_a s_b) / (2 total)``.
# Conditioned on the values each account really carries: a group's accounts that draw from
# a private pool and use few popular values are not expected to meet on the popular ones.
_SET_CHANCE = "((y.d * x.s + x.d * y.s) / (2 * c.total))"


def _chance_jaccard(d_a: str, d_b: str, chance: str) -> str:
    """SQL: the Jaccard similarity two sets of ``d_a`` and ``d_b`` elements have when they
    share the ``E`` (``chance``) elements chance predicts: ``E / (d_a + d_b - E)``."""
    return f"({chance} / greatest({d_a} + {d_b} - {chance}, 1::DOUBLE))"


# How many active buckets two accounts (band_chance ``ca``, ``cb``) share by chance, from
# their volumes and active periods (band_background ``bg``): within the periods, each of
# ``d_a`` buckets meets each of ``d_b`` with probability ``q``, made ``span / L_a`` and
# ``span / L_b`` times likelier by the accounts' own periods (``L``: first to last active
# bucket) and kept only for the part of each period the other's overlaps:
# ``E = d_a d_b q span L_ab / (L_a L_b)``. Two accounts active all along share
# ``d_a d_b q``; two that signed up in the same week and used the API for three weeks share
# twice that by chance, not by a scheduler.
_ACTIVITY_CHANCE = (
    "(ca.d::DOUBLE * cb.d * bg.q * bg.span"
    " * greatest(least(ca.hi, cb.hi) - greatest(ca.lo, cb.lo) + 1, 0)"
    " / ((ca.hi - ca.lo + 1) * (cb.hi - cb.lo + 1)))"
)


def significant_sql(k: str, chance: str, alpha: str) -> str:
    """SQL: whether ``k`` shared elements, where chance predicts ``chance`` (a Poisson mean
    ``E``), are less likely than ``alpha`` under independence. The tail is bounded by
    Chernoff, ``P(X >= k) <= exp(-E) (e E / k)^k`` for ``k > E``: in logarithms,
    ``-E + k (1 + ln E - ln k) < ln alpha``. A bound, so the test errs towards no evidence;
    NULL (no overlap counted) is not significant."""
    e = f"greatest({chance}, 1e-300::DOUBLE)"
    return (f"coalesce({k} > {e} AND -{e} + {k} * (1 + ln({e}) - ln({k})) < ln({alpha}), "
            "false)")


def _lift_factor(chance: str, observed: str) -> str:
    """SQL: the share of an observed similarity that chance does not explain,
    ``1 - chance / observed``, and 0 below twice chance (a lift under 2 is no evidence)."""
    return (f"CASE WHEN {observed} >= 2 * {chance} THEN 1 - {chance} / {observed} "
            "ELSE 0::DOUBLE END")


def _sync_lift(k: str) -> str:
    """SQL: :func:`_lift_factor` of a pair's ``k`` shared active buckets (``band_chance``
    ``ca``, ``cb``, ``band_background`` ``bg``) against the overlap chance predicts."""
    return _lift_factor(_chance_jaccard("ca.d", "cb.d", _ACTIVITY_CHANCE),
                        f"({k}::DOUBLE / (ca.d + cb.d - {k}))")


def weigh_keys(con: SQLConnection, cfg: GraphConfig, has_org: bool) -> None:
    """Set every key's evidence ``p`` from ``p_key`` (its signal's weight times its
    specificity) and its background: 0 for an organisation's own keys
    (:func:`org_resources`), times its cohesion (:func:`key_cohesion`, stored as
    ``keys.cohesion``). Recomputed from ``p_key`` each time, so building edges twice (other
    graph settings on the same keys) gives the same weights."""
    owned = "SELECT kid FROM owned_keys" if has_org else "SELECT NULL::INTEGER WHERE false"
    if has_org:
        org_resources(con)
    key_cohesion(con, cfg.clique_max, cfg.cohesion_min)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE keys AS
        SELECT k.kid, k.signal, k.key, k.n, k.p_key,
               CASE WHEN k.kid IN ({owned}) THEN 0::DOUBLE
                    ELSE k.p_key * coalesce(c.cohesion, 1::DOUBLE) END AS p,
               coalesce(c.cohesion, 1::DOUBLE) AS cohesion
        FROM keys k LEFT JOIN key_cohesion c USING (kid)
        ORDER BY k.kid
        """
    )
    con.execute("DROP TABLE key_cohesion")
    if has_org:
        con.execute("DROP TABLE owned_keys")


def org_resources(con: SQLConnection) -> None:
    """Create ``owned_keys(kid)``: the keys that are an organisation's own (the corporate
    card, the office range, the onboarding days, internal templates): more than half of
    their carriers share one ``org_id``, or more of them share it than chance allows. Under
    independence a key of ``n`` carriers holds ``n m / N`` members of an organisation of
    ``m`` among ``N`` accounts; a key holding ``h`` of them is the organisation's when ``h``
    is less likely than ``_ORG_ALPHA`` (divided among the keys and organisations tested)
    under a Poisson law of that mean (:func:`significant_sql`): a card that 21 members
    and 24 contractors carry is the organisation's, however many contractors it has. Its
    other carriers (contractors, visitors on the office network, the card's other holders)
    are tied to the organisation, not to each other: such a key explains nothing about an
    operator, and gives no evidence."""
    beyond = significant_sql("o.held", "k.n::DOUBLE * g.m / t.n_accounts",
                             f"{_ORG_ALPHA} / t.tested")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE owned_keys AS
        WITH held AS (
            SELECT km.kid, a.org_key, count(*) AS held
            FROM key_members km JOIN accounts a USING (idx)
            WHERE a.org_key IS NOT NULL GROUP BY km.kid, a.org_key
        ),
        orgs AS (
            SELECT org_key, count(*) AS m FROM accounts WHERE org_key IS NOT NULL
            GROUP BY org_key
        ),
        totals AS (
            SELECT (SELECT count(*) FROM accounts) AS n_accounts,
                   (SELECT count(*) FROM held) AS tested
        )
        SELECT DISTINCT o.kid FROM held o JOIN keys k USING (kid) JOIN orgs g USING (org_key)
        CROSS JOIN totals t
        WHERE 2 * o.held > k.n OR {beyond}
        """
    )


# The chance that a key is called an organisation's own although its carriers were drawn
# independently of their organisations (divided among the keys and organisations tested).
_ORG_ALPHA = 0.01


# Signals whose keys are tested against the background (:func:`key_cohesion`): exact values
# an account carries. Time-bucketed and set-similarity keys are coincidences already judged
# against chance by their own rules (a time window, ``min_shared``, MinHash bands).
COHESION_TESTED = ("card", "bin_postal", "device", "email", "phone", "ip", "ip_net", "ip_net48")
# Of those, the values that unrelated people share (a stock device fingerprint, an address
# behind a NAT, a range): tested from more carriers than a household on (``cohesion_min``).
# A card, email or phone of a dozen accounts is no such coincidence.
SHARED_VALUES = ("device", "ip", "ip_net", "ip_net48")
# Signals that one value implies (a card implies its BIN and billing postal code, an IP its
# ranges, an observed value its co-activity keys): a tie between two carriers of a key counts
# as corroboration only when it comes from another root.
_ROOT = ("CASE WHEN {s} IN ('card', 'bin_postal') THEN 'payment' "
         "WHEN {s} IN ('ip', 'ip_net', 'ip_net48') THEN 'network' "
         "WHEN {s} LIKE 'obs:%' OR {s} = 'coactivity' THEN 'observation' ELSE {s} END")


def key_cohesion(con: SQLConnection, min_carriers: int, min_shared_values: int) -> None:
    """Create ``key_cohesion(kid, c, e, cohesion)``: for each tested key, how much more its
    carriers are tied to each other by *independent* evidence than chance predicts (the
    background model; see ``docs/algorithm.md``).

    For a key ``k`` of ``n > min_carriers`` carriers among ``N`` accounts (the keys the graph
    links as a crowd rather than a clique, ``graph.clique_max``), and for a device or network
    key of ``n > min_shared_values`` carriers (more than a household shares,
    ``graph.cohesion_min``: values that unrelated people share, a stock fingerprint or an
    address behind a NAT, whatever the population's size):

    * ``c`` = share of its carriers that share a key of another root (:data:`_ROOT`) with at
      least one other carrier of ``k``;
    * ``e`` = the share chance predicts: a carrier ``i`` that reaches ``d_i`` accounts through
      keys of other roots meets one of the ``n - 1`` other carriers with probability
      ``1 - exp(-d_i (n - 1) / N)``; ``e`` is the carriers' mean;
    * ``cohesion = clamp((c - e) / (1 - e), 0, 1)``, the excess over chance.

    An operator's shared card links accounts that also share networks, devices and signup
    bursts (cohesion near 1); a stock device fingerprint or a popular range links accounts
    that are otherwise strangers (near 0), whatever the population's size. Smaller keys (a
    family's card, a camouflage chain's card shared by three accounts, whose carriers are
    tied through the chain rather than directly) and untested signals have no row
    (cohesion 1).
    """
    tested = ", ".join(f"'{s}'" for s in COHESION_TESTED)
    shared = ", ".join(f"'{s}'" for s in SHARED_VALUES)
    root = _ROOT.format(s="k.signal")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE key_cohesion AS
        WITH km AS (
            SELECT km.kid, km.idx, k.n, {root} AS root, k.signal
            FROM key_members km JOIN keys k USING (kid)
        ),
        reach AS (SELECT idx, root, sum(n - 1) AS d FROM km GROUP BY idx, root),
        total AS (SELECT idx, sum(d) AS d FROM reach GROUP BY idx),
        tested AS (SELECT kid, idx, n, root FROM km
                   WHERE (n > {int(min_carriers)} AND signal IN ({tested}))
                      OR (n > {int(min_shared_values)} AND signal IN ({shared}))),
        co AS (
            SELECT t.kid, t.idx, count(*) OVER (PARTITION BY t.kid, o.kid) AS together
            FROM tested t JOIN km o ON o.idx = t.idx AND o.root <> t.root
        ),
        tied AS (SELECT kid, count(DISTINCT idx) AS tied FROM co WHERE together >= 2
                 GROUP BY kid),
        expected AS (
            SELECT t.kid, min(t.n) AS n,
                   avg(1 - exp(-greatest(tot.d - coalesce(r.d, 0), 0)::DOUBLE * (t.n - 1)
                               / (SELECT count(*) FROM accounts))) AS e
            FROM tested t JOIN total tot USING (idx)
            LEFT JOIN reach r ON r.idx = t.idx AND r.root = t.root
            GROUP BY t.kid
        )
        -- rounded: exp() of the JVM and of C may differ in the last bit, and both engines
        -- must give the same weights (the same partition)
        SELECT x.kid, coalesce(tied.tied, 0)::DOUBLE / x.n AS c, x.e,
               CASE WHEN x.e >= 1 THEN 0::DOUBLE ELSE round(greatest(0::DOUBLE, least(1::DOUBLE,
                    (coalesce(tied.tied, 0)::DOUBLE / x.n - x.e) / (1 - x.e))), 9) END
               AS cohesion
        FROM expected x LEFT JOIN tied USING (kid)
        """
    )


def _ring_order(key: str, account: str) -> str:
    # md5 of the key and the account id: content, not run-local numbers, and the same text in
    # every engine (an engine's own hash() is its own function).
    return f"md5({key}.signal || ':' || {key}.key || ':' || {account}.account_id)"


def _pair_order(a: str, b: str) -> str:
    """SQL: a fixed pseudo-random order of pairs of ``accounts`` rows ``a`` and ``b``, from
    their ids (content, not run-local numbers; md5: the same text in every engine)."""
    return f"md5({a}.account_id || ':' || {b}.account_id)"


def product_sql(expr: str) -> str:
    """SQL: the product of ``expr`` over a group, multiplied in sorted order."""
    # Floating-point products depend on the order of their factors, and a parallel GROUP BY
    # meets the rows of a group in any order: multiply in sorted order so that the same input
    # gives bit-identical weights (and so the same Leiden partition) on every run.
    return f"list_aggregate(list({expr} ORDER BY {expr}), 'product')"


def edge_arrays(con: SQLConnection) -> EdgeArrays:
    """Fetch ``edges`` as numpy arrays (columnar, no per-edge Python objects), straight
    from the engine's connection that built them."""
    n_row = con.execute("SELECT count(*) FROM accounts").fetchone()
    cols = con.execute("SELECT a, b, weight FROM edges ORDER BY a, b").fetchnumpy()
    return EdgeArrays(
        n_vertices=int(n_row[0]) if n_row else 0,
        src=np.asarray(cols["a"], dtype=np.int64),
        dst=np.asarray(cols["b"], dtype=np.int64),
        weight=np.asarray(cols["weight"], dtype=np.float64),
    )
