"""The usage features: what a cluster's members did, from the ``interactions`` table.

Aggregated by SQL on the engine's connection, one row per cluster to the driver, and how
campaign-like that usage is (:func:`usage_campaign`, a scored feature).
"""

from __future__ import annotations

import math

from linkage.engines import SQLConnection
from linkage.scoring.departure import category_departure

__all__ = ["cluster_usage", "has_interactions", "usage_campaign"]


def has_interactions(con: SQLConnection) -> bool:
    """Whether the ``interactions`` table has a row."""
    rows = con.execute("SELECT EXISTS (SELECT 1 FROM interactions)").fetchall()
    return bool(rows[0][0])


def cluster_usage(con: SQLConnection, prompt_cap: int) -> dict[int, dict[str, float]]:
    """Per cluster, what its members did (the ``interactions`` table); empty without it.

    All aggregation is SQL over the members' interactions (one pass to per-account rows,
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
    departure = category_departure(con)
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
