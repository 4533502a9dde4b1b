"""Category departure: which members ask for other kinds of request than people do.

The share of a cluster's members whose mix of request categories (``interactions``)
departs from the average account's beyond chance: SQL for the counts on the engine's
connection, the chi-square test in numpy on the driver (:func:`departure_z`,
:func:`overdispersion`).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from linkage.engines import SQLConnection

__all__ = ["DEPART_Z", "MIN_JUDGED", "category_departure", "departure_z", "overdispersion"]

# An account is judged from this many requests with a category on, and departs when its
# chi-square z exceeds that of a one-sided 0.1% test.
MIN_JUDGED = 20
DEPART_Z = 3.09


def category_departure(con: SQLConnection) -> dict[int, float]:
    """Per cluster, the share of its members whose requests ask for other things than
    people's do, over the members with a category on their requests (an account is judged
    from :data:`MIN_JUDGED` requests on: one that sent fewer cannot be shown to depart).

    The background is the mix of request categories ``p`` of the average account (every
    account weighs the same, so a fleet's volume does not make the norm). An account's ``r``
    requests with counts ``n_k`` give ``X² = Σ_k n_k² / (r p_k) - r``, which follows a
    chi-square law with ``K - 1`` degrees of freedom if its requests were drawn from ``p``;
    people differ more than that, so ``X²`` is divided by the overdispersion ``φ`` that the
    median account shows (at least 1). An account *departs* when the Wilson-Hilferty ``z``
    of ``X² / φ`` exceeds :data:`DEPART_Z` (a one-sided test at 0.1%). ``p`` is estimated
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


def departure_z(x2: np.ndarray, phi: float, nu: float) -> np.ndarray:
    """The Wilson-Hilferty ``z`` of ``X² / phi`` for a chi-square law of ``nu`` degrees of
    freedom: ``(X² / phi / nu)^(1/3)`` is about normal, with mean ``1 - 2 / (9 nu)`` and
    variance ``2 / (9 nu)``; a negative ``X²`` counts as 0.

    Examples
    --------
    >>> z = departure_z(np.array([3.0 * (1 - 2 / 27) ** 3, 30.0]), 1.0, 3.0)
    >>> [bool(abs(z[0]) < 1e-9), round(float(z[1]), 2)]
    [True, 4.51]
    """
    centre = 1.0 - 2.0 / (9.0 * nu)
    ratio = np.maximum(np.asarray(x2, dtype=np.float64), 0.0) / phi / nu
    return (np.cbrt(ratio) - centre) / math.sqrt(2.0 / (9.0 * nu))


def overdispersion(x2: np.ndarray, nu: float) -> float:
    """How much more the accounts' ``X²`` spread than a chi-square law of ``nu`` degrees of
    freedom: their median over that law's (Wilson-Hilferty) median, at least 1.

    Examples
    --------
    >>> overdispersion(np.array([0.5, 1.0, 1.5]), 2.0)
    1.0
    >>> round(overdispersion(np.array([4.0, 6.0, 20.0]), 2.0), 3)
    4.271
    """
    centre = 1.0 - 2.0 / (9.0 * nu)
    return max(1.0, float(np.median(x2)) / (nu * centre ** 3))


def _departing_shares(con: SQLConnection, x2_sql: str) -> dict[int, float]:
    """The two passes of :func:`category_departure` over its ``account_mix``."""
    k = len(con.execute("SELECT DISTINCT category FROM account_mix").fetchall())
    first = con.execute(x2_sql.format(only="")).fetchnumpy()
    if k < 2 or len(first["idx"]) < 2:
        return {}
    nu = k - 1.0
    z = departure_z(first["x2"], overdispersion(first["x2"], nu), nu)
    typical = np.asarray(first["idx"])[z <= DEPART_Z]
    con.register("typical", pa.table({"idx": pa.array(typical, pa.int32())}))
    try:
        second = con.execute(x2_sql.format(only="SEMI JOIN typical USING (idx)")).fetchnumpy()
    finally:
        con.unregister("typical")
    x2 = np.asarray(second["x2"], dtype=np.float64)
    phi = overdispersion(x2[np.isin(second["idx"], typical)], nu)
    judged = np.asarray(second["r"]) >= MIN_JUDGED
    departs = pa.table({"idx": pa.array(np.asarray(second["idx"])[judged], pa.int32())})
    departs = departs.filter(pa.array(departure_z(x2[judged], phi, nu) > DEPART_Z))
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
