"""The read layer of the reports: what the store says about runs, clusters and accounts.

Every function takes a :class:`~linkage.store.Store` and returns plain data (dicts, lists of
dicts, Arrow tables) read with SQLAlchemy Core statements whose values are all bound. Nothing
is recomputed: scores, reasons and lineage are the ones the run stored. The one computation
here is :func:`explain_path`, a shortest path over the stored evidence edges: it chooses
among edges the run kept, it does not weigh anything anew.

Results are sorted in Python, by code point, like the store's own readers: an ``ORDER BY``
on PostgreSQL follows the database's collation and reports must not depend on it.

Examples
--------
>>> from linkage.store import RunRecord, Store
>>> store = Store("sqlite://")
>>> store.ensure_schema()
>>> run_id = store.begin_run(config_json="{}", config_hash="0", seed=1, code_version="dev",
...                          input_path="in/")
>>> store.publish_run(run_id, RunRecord.empty(input_fingerprint="sha256:0"))
>>> run_summary(store, run_id)["n_clusters"]
0
>>> store.close()
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from linkage.errors import NotFoundError, StoreError, shorten
from linkage.store import Store
from linkage.store.models import Base

__all__ = [
    "STRONG_LINK",
    "account_history",
    "account_links",
    "banlist",
    "campaign_detail",
    "campaign_siblings",
    "campaigns",
    "cluster_detail",
    "cluster_history",
    "cluster_labels",
    "cluster_summary",
    "clusters_table",
    "evidence_edges",
    "explain_path",
    "members",
    "memberships_table",
    "new_since_previous",
    "previous_run_id",
    "related_clusters",
    "run_summary",
    "shared_keys",
    "signup_times",
]

# The "strong link" of the scoring reasons ("60 of 62 have at least one strong link"): the
# same cut-off marks the core members in drawings and tables.
STRONG_LINK = 0.6

_T = Base.metadata.tables
_RUNS, _CLUSTERS, _MEMBERS = _T["runs"], _T["clusters"], _T["memberships"]
_EVIDENCE, _SIGNALS, _KEYS = _T["evidence"], _T["evidence_signals"], _T["cluster_keys"]


@contextmanager
def _connect(store: Store, doing: str) -> Iterator[Connection]:
    """A connection; database errors become :class:`StoreError` naming what was being read."""
    try:
        with store.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StoreError(f"{doing} failed on {store.display_url}: {detail[:500]}") from exc


def _cluster_row(row: Any) -> dict[str, Any]:
    """A ``clusters`` row with its JSON columns parsed."""
    d = dict(row._mapping)
    for name in ("parents", "features", "contributions", "reasons"):
        d[name] = json.loads(d.pop(f"{name}_json"))
    d["top_reason"] = d["reasons"][0] if d["reasons"] else ""
    return d


def run_summary(store: Store, run_id: int) -> dict[str, Any]:
    """The ``runs`` row of a run, JSON columns parsed, plus the score threshold it used."""
    run = store.run(run_id)
    for name in ("rows_read", "rows_quarantined", "timings", "config"):
        raw = run.get(f"{name}_json")
        run[name] = json.loads(raw) if raw else {}
    run["threshold"] = run["config"].get("scoring", {}).get("threshold")
    return run


def previous_run_id(store: Store, run_id: int) -> int | None:
    """The succeeded run before ``run_id`` (what continuity compared it with), or ``None``."""
    query = select(func.max(_RUNS.c.run_id)).where(
        _RUNS.c.status == "succeeded", _RUNS.c.run_id < run_id
    )
    with _connect(store, "finding the previous run") as conn:
        return conn.execute(query).scalar()


def cluster_summary(store: Store, run_id: int, cluster_id: str) -> dict[str, Any]:
    """One cluster of a run: the ``clusters`` columns, JSON parsed, plus ``top_reason``.

    Raises :class:`NotFoundError` (exit 2) when the run has no such cluster.
    """
    query = select(_CLUSTERS).where(
        _CLUSTERS.c.run_id == run_id, _CLUSTERS.c.cluster_id == cluster_id
    )
    with _connect(store, f"reading cluster {shorten(cluster_id)}") as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"no such cluster: {shorten(cluster_id)} in run {run_id}")
    return _cluster_row(row)


def members(store: Store, run_id: int, cluster_id: str) -> list[str]:
    """The account ids of a cluster, in code-point order."""
    query = select(_MEMBERS.c.account_id).where(
        _MEMBERS.c.run_id == run_id, _MEMBERS.c.cluster_id == cluster_id
    )
    with _connect(store, "reading members") as conn:
        return sorted(conn.execute(query).scalars())


def signup_times(store: Store, run_id: int, cluster_id: str) -> list[datetime]:
    """When the members were created, oldest first (empty for runs stored before the
    store kept it, migration 0005)."""
    query = select(_MEMBERS.c.created_at).where(
        _MEMBERS.c.run_id == run_id, _MEMBERS.c.cluster_id == cluster_id,
        _MEMBERS.c.created_at.is_not(None),
    )
    with _connect(store, "reading signup times") as conn:
        return sorted(conn.execute(query).scalars())


def shared_keys(store: Store, run_id: int, cluster_id: str) -> list[dict[str, Any]]:
    """Per signal: how many keys the members share and the most members one key links.

    Empty when the run did not keep this cluster's evidence (``store.evidence_min_score``).
    """
    k = _KEYS
    query = (
        select(
            k.c.signal,
            func.count().label("n_keys"),
            func.max(k.c.n_members).label("max_members"),
        )
        .where(k.c.run_id == run_id, k.c.cluster_id == cluster_id)
        .group_by(k.c.signal)
    )
    with _connect(store, "reading shared keys") as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    return sorted(rows, key=lambda r: (-r["max_members"], -r["n_keys"], r["signal"]))


def evidence_edges(
    store: Store, run_id: int, cluster_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The stored evidence edges of some clusters, each with its per-signal contributions.

    Each edge is ``{account_a, account_b, cluster_id, weight, signals}``, ``signals`` a list
    of ``{signal, contribution, shared_keys}``, strongest first; edges by weight desc.
    """
    e, s = _EVIDENCE, _SIGNALS
    ids = list(cluster_ids)
    query = (
        select(e.c.account_a, e.c.account_b, e.c.cluster_id, e.c.weight,
               s.c.signal, s.c.contribution, s.c.shared_keys)
        .join(s, (s.c.run_id == e.c.run_id) & (s.c.account_a == e.c.account_a)
              & (s.c.account_b == e.c.account_b))
        .where(e.c.run_id == run_id, e.c.cluster_id.in_(ids))
    )
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    with _connect(store, "reading evidence") as conn:
        for r in conn.execute(query):
            edge = edges.setdefault((r.account_a, r.account_b), {
                "account_a": r.account_a, "account_b": r.account_b,
                "cluster_id": r.cluster_id, "weight": r.weight, "signals": [],
            })
            edge["signals"].append({"signal": r.signal, "contribution": r.contribution,
                                    "shared_keys": r.shared_keys})
    for edge in edges.values():
        edge["signals"].sort(key=lambda x: (-x["contribution"], x["signal"]))
    return sorted(edges.values(),
                  key=lambda x: (-x["weight"], x["account_a"], x["account_b"]))


def cluster_history(store: Store, cluster_id: str) -> list[dict[str, Any]]:
    """The same ``cluster_id`` in every succeeded run: run, size, score, flag, origin."""
    c, r = _CLUSTERS, _RUNS
    query = (
        select(c.c.run_id, c.c.size, c.c.score, c.c.flagged, c.c.origin, r.c.finished_at)
        .join(r, r.c.run_id == c.c.run_id)
        .where(c.c.cluster_id == cluster_id, r.c.status == "succeeded")
    )
    with _connect(store, "reading cluster history") as conn:
        return sorted((dict(x._mapping) for x in conn.execute(query)),
                      key=lambda x: x["run_id"])


def cluster_detail(store: Store, run_id: int, cluster_id: str) -> dict[str, Any]:
    """Everything the store knows about one cluster of a run, for ``show`` and the reports.

    The summary of :func:`cluster_summary` plus ``members``, ``shared_keys``, ``edges``
    (:func:`evidence_edges`), ``evidence_kept``, ``history`` (the cluster across runs) and
    ``siblings`` (the other clusters of its campaign, :func:`campaign_siblings`).
    """
    detail = cluster_summary(store, run_id, cluster_id)
    detail["run_id"] = run_id
    detail["members"] = members(store, run_id, cluster_id)
    detail["shared_keys"] = shared_keys(store, run_id, cluster_id)
    detail["edges"] = evidence_edges(store, run_id, [cluster_id])
    detail["evidence_kept"] = bool(detail["edges"])
    detail["history"] = cluster_history(store, cluster_id)
    detail["siblings"] = campaign_siblings(store, run_id, cluster_id, detail["campaign_id"])
    return detail


def campaign_siblings(
    store: Store, run_id: int, cluster_id: str, campaign_id: str | None
) -> list[dict[str, Any]]:
    """The other clusters of a cluster's campaign in a run (``cluster_id, size, score``),
    by score desc, id; empty when the cluster is in no campaign or is its only cluster."""
    if campaign_id is None:
        return []
    c = _CLUSTERS
    query = select(c.c.cluster_id, c.c.size, c.c.score).where(
        c.c.run_id == run_id, c.c.campaign_id == campaign_id, c.c.cluster_id != cluster_id)
    with _connect(store, "reading the clusters of a campaign") as conn:
        rows = [dict(x._mapping) for x in conn.execute(query)]
    return sorted(rows, key=lambda x: (-x["score"], x["cluster_id"]))


def account_history(store: Store, account_id: str) -> list[dict[str, Any]]:
    """An account's cluster in every succeeded run (what the ``cluster_history`` view shows).

    Each row: ``run_id, cluster_id, size, cluster_score, flagged, origin, finished_at``,
    oldest run first. Empty when the account was never in a cluster of two or more.
    """
    m, c, r = _MEMBERS, _CLUSTERS, _RUNS
    query = (
        select(m.c.run_id, m.c.cluster_id, c.c.size, c.c.score.label("cluster_score"),
               c.c.flagged, c.c.origin, r.c.finished_at)
        .join(c, (c.c.run_id == m.c.run_id) & (c.c.cluster_id == m.c.cluster_id))
        .join(r, r.c.run_id == m.c.run_id)
        .where(m.c.account_id == account_id, r.c.status == "succeeded")
    )
    with _connect(store, f"reading the history of account {shorten(account_id)}") as conn:
        return sorted((dict(x._mapping) for x in conn.execute(query)),
                      key=lambda x: x["run_id"])


def account_links(
    store: Store, run_id: int, account_id: str, *, limit: int = 10
) -> list[dict[str, Any]]:
    """An account's strongest stored evidence edges in a run, strongest first.

    Each is ``{other, weight, signals}`` (see :func:`evidence_edges`).
    """
    e = _EVIDENCE
    query = select(e.c.cluster_id).where(
        e.c.run_id == run_id, (e.c.account_a == account_id) | (e.c.account_b == account_id)
    ).limit(1)
    with _connect(store, "reading evidence") as conn:
        cluster_id = conn.execute(query).scalar()
    if cluster_id is None:
        return []
    links = []
    for edge in evidence_edges(store, run_id, [cluster_id]):
        if account_id in (edge["account_a"], edge["account_b"]):
            other = edge["account_b"] if edge["account_a"] == account_id else edge["account_a"]
            links.append({"other": other, "weight": edge["weight"], "signals": edge["signals"]})
    return links[:limit]


def _membership(store: Store, run_id: int, account_id: str) -> str:
    query = select(_MEMBERS.c.cluster_id).where(
        _MEMBERS.c.run_id == run_id, _MEMBERS.c.account_id == account_id
    )
    with _connect(store, "reading memberships") as conn:
        cluster_id = conn.execute(query).scalar()
    if cluster_id is None:
        raise NotFoundError(
            f"no such account in a cluster of run {run_id}: {shorten(account_id)} "
            "(accounts that share nothing with anyone are not stored)"
        )
    return str(cluster_id)


def explain_path(store: Store, run_id: int, a: str, b: str) -> dict[str, Any]:
    """The strongest chain of stored evidence between accounts ``a`` and ``b`` in a run.

    The strength of a path is the product of its edge weights, so the strongest path is the
    shortest one under edge length ``-log(weight)`` (Dijkstra in igraph). Stored evidence
    joins only accounts of one cluster, so accounts of two different clusters have no path;
    the answer then says so rather than searching the whole run.

    Returns ``{run_id, a, b, cluster_a, cluster_b, found, note, strength, path, hops}``;
    each hop is ``{from, to, weight, signals}``. Raises :class:`NotFoundError` when either
    account is not in a cluster of that run.
    """
    import igraph as ig

    cluster_a, cluster_b = _membership(store, run_id, a), _membership(store, run_id, b)
    result: dict[str, Any] = {
        "run_id": run_id, "a": a, "b": b, "cluster_a": cluster_a, "cluster_b": cluster_b,
        "found": False, "note": "", "strength": 0.0, "path": [], "hops": [],
    }
    if a == b:
        result.update(found=True, strength=1.0, path=[a], note="the same account")
        return result
    if cluster_a != cluster_b:
        result["note"] = ("the accounts are in different clusters; stored evidence only "
                          "links accounts of one cluster")
        return result
    edges = evidence_edges(store, run_id, [cluster_a])
    if not edges:
        result["note"] = ("the run did not keep this cluster's evidence (its score is below "
                          "store.evidence_min_score)")
        return result
    names = sorted({x for e in edges for x in (e["account_a"], e["account_b"])})
    index = {name: i for i, name in enumerate(names)}
    graph = ig.Graph(n=len(names),
                     edges=[(index[e["account_a"]], index[e["account_b"]]) for e in edges])
    # A weight of 0 would be an infinite length; such an edge is never stored, but clamp.
    lengths = [-math.log(min(max(e["weight"], 1e-12), 1.0)) for e in edges]
    if a not in index or b not in index:
        result["note"] = "one of the accounts has no stored evidence edge"
        return result
    epath = graph.get_shortest_paths(index[a], index[b], weights=lengths, output="epath")[0]
    if not epath:
        result["note"] = "no chain of stored evidence joins the two accounts"
        return result
    node, strength, hops, path = a, 1.0, [], [a]
    for eid in epath:
        edge = edges[eid]
        nxt = edge["account_b"] if edge["account_a"] == node else edge["account_a"]
        hops.append({"from": node, "to": nxt, "weight": edge["weight"],
                     "signals": edge["signals"]})
        strength *= edge["weight"]
        path.append(nxt)
        node = nxt
    result.update(found=True, strength=strength, path=path, hops=hops)
    return result


def clusters_table(store: Store, run_id: int, *, min_score: float | None = None) -> pa.Table:
    """A run's clusters for export: the stored columns plus ``top_reason``; score desc, id.

    ``min_score`` keeps clusters whose score reaches it.
    """
    table = store.clusters(run_id)
    reasons = [json.loads(r) for r in table.column("reasons_json").to_pylist()]
    table = table.append_column(
        "top_reason", pa.array([r[0] if r else "" for r in reasons], pa.string())
    )
    if min_score is not None:
        table = table.filter(pc.greater_equal(table.column("score"), min_score))
    table = table.add_column(0, "run_id", pa.array([run_id] * table.num_rows, pa.int64()))
    return table


def banlist(store: Store, run_id: int, *, min_score: float | None = None) -> pa.Table:
    """``account_id, cluster_id, score, top_reason`` of the accounts to act on.

    By default the members of the run's flagged clusters; with ``min_score`` the members of
    every cluster whose score reaches it. Sorted by score desc, cluster, account.
    """
    clusters = clusters_table(store, run_id, min_score=min_score)
    if min_score is None:
        clusters = clusters.filter(clusters.column("flagged"))
    info = {c["cluster_id"]: c for c in clusters.select(
        ["cluster_id", "score", "top_reason"]).to_pylist()}
    rows = [m for m in store.memberships(run_id).to_pylist() if m["cluster_id"] in info]
    rows.sort(key=lambda m: (-info[m["cluster_id"]]["score"], m["cluster_id"], m["account_id"]))
    return pa.table({
        "account_id": pa.array([m["account_id"] for m in rows], pa.string()),
        "cluster_id": pa.array([m["cluster_id"] for m in rows], pa.string()),
        "score": pa.array([info[m["cluster_id"]]["score"] for m in rows], pa.float64()),
        "top_reason": pa.array([info[m["cluster_id"]]["top_reason"] for m in rows], pa.string()),
    })


def new_since_previous(store: Store, run_id: int) -> list[dict[str, Any]]:
    """Clusters of a run that are new (new, merged, split) or grew since the previous run.

    Each is the cluster's summary plus ``change`` (``new``, ``merged``, ``split``,
    ``grown``) and ``previous_size``; score desc, id.
    """
    prev = previous_run_id(store, run_id)
    c = _CLUSTERS
    with _connect(store, "comparing with the previous run") as conn:
        rows = [_cluster_row(r) for r in conn.execute(select(c).where(c.c.run_id == run_id))]
        before: dict[str, int] = {}
        if prev is not None:
            query = select(c.c.cluster_id, c.c.size).where(c.c.run_id == prev)
            before = {r.cluster_id: r.size for r in conn.execute(query)}
    out = []
    for row in rows:
        previous_size = before.get(row["cluster_id"])
        if row["origin"] != "continued":
            change = row["origin"]
        elif previous_size is not None and row["size"] > previous_size:
            change = "grown"
        else:
            continue
        out.append({**row, "change": change, "previous_size": previous_size})
    return sorted(out, key=lambda x: (-x["score"], x["cluster_id"]))


def memberships_table(store: Store, run_id: int) -> pa.Table:
    """The memberships export: :meth:`Store.memberships` plus ``campaign_id``.

    ``campaign_id`` names the campaign of a cluster that shares it with other clusters, and
    is empty (null) for a cluster that stands alone: not flagged, or flagged and the only
    cluster of its campaign. Rows keep :meth:`Store.memberships`' order.
    """
    table = store.memberships(run_id)
    clusters = store.clusters(run_id).select(["cluster_id", "campaign_id"])
    ids = clusters.column("campaign_id")
    sizes = pc.value_counts(ids.drop_null()) if len(ids) else None
    shared = (pc.filter(sizes.field("values"), pc.greater_equal(sizes.field("counts"), 2))
              if sizes is not None and len(sizes) else pa.array([], pa.string()))
    named = pc.if_else(pc.is_in(ids, value_set=shared), ids, pa.scalar(None, pa.string()))
    at = pc.index_in(table.column("cluster_id"), value_set=clusters.column("cluster_id"))
    return table.append_column("campaign_id", pc.take(named, at))


def campaigns(store: Store, run_id: int) -> list[dict[str, Any]]:
    """The campaigns of a run that group two or more flagged clusters, largest first.

    Each is ``{campaign_id, clusters, n_clusters, n_accounts, max_score, first_seen_run_id,
    first_seen, first_signup, last_signup}``: ``clusters`` are the member clusters' summaries
    (``cluster_id, size, score, origin, first_seen_run_id``) by score desc, id;
    ``first_seen`` is when the run that first saw its oldest cluster finished; the signups
    span its accounts' creation times (``None`` for runs stored without them).
    """
    c, m, r = _CLUSTERS, _MEMBERS, _RUNS
    query = select(c.c.cluster_id, c.c.campaign_id, c.c.size, c.c.score, c.c.origin,
                   c.c.first_seen_run_id).where(
        c.c.run_id == run_id, c.c.campaign_id.is_not(None))
    spans = (
        select(c.c.campaign_id, func.min(m.c.created_at).label("first_signup"),
               func.max(m.c.created_at).label("last_signup"))
        .join(c, (c.c.run_id == m.c.run_id) & (c.c.cluster_id == m.c.cluster_id))
        .where(m.c.run_id == run_id, c.c.campaign_id.is_not(None))
        .group_by(c.c.campaign_id)
    )
    with _connect(store, f"reading the campaigns of run {run_id}") as conn:
        rows = [dict(x._mapping) for x in conn.execute(query)]
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(row.pop("campaign_id"), []).append(row)
        groups = {k: v for k, v in groups.items() if len(v) >= 2}
        span = {x.campaign_id: x for x in conn.execute(spans) if x.campaign_id in groups}
        oldest = {k: min(x["first_seen_run_id"] for x in v) for k, v in groups.items()}
        finished = dict(conn.execute(
            select(r.c.run_id, r.c.finished_at).where(r.c.run_id.in_(set(oldest.values())))
        ).all()) if oldest else {}
    out = []
    for campaign_id, members in groups.items():
        members.sort(key=lambda x: (-x["score"], x["cluster_id"]))
        s = span.get(campaign_id)
        out.append({
            "campaign_id": campaign_id, "clusters": members, "n_clusters": len(members),
            "n_accounts": sum(x["size"] for x in members),
            "max_score": max(x["score"] for x in members),
            "first_seen_run_id": oldest[campaign_id],
            "first_seen": finished.get(oldest[campaign_id]),
            # SQLite returns the aggregates as text; the model's type gives them back aware.
            "first_signup": _utc(s.first_signup) if s else None,
            "last_signup": _utc(s.last_signup) if s else None,
        })
    return sorted(out, key=lambda x: (-x["n_accounts"], x["campaign_id"]))


def _utc(value: Any) -> datetime | None:
    """A timestamp read by an aggregate, as an aware UTC datetime (SQLite gives text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _key_strength(config: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """(weight, cap) per signal from a run's stored configuration, the defaults where the
    configuration does not say (an older run); observation kinds as ``obs:<kind>`` and the
    observation default under ``obs:``."""
    from linkage.config import SignalsConfig

    signals = config.get("signals", {})
    out: dict[str, tuple[float, int]] = {}
    defaults = SignalsConfig()
    for name in defaults.__dataclass_fields__:
        base = getattr(defaults, name)
        given = signals.get(name) if isinstance(signals.get(name), dict) else {}
        weight, cap = float(given.get("weight", base.weight)), int(given.get("cap", base.cap))
        if name == "observation":
            kinds = {**base.kinds, **given.get("kinds", {})}
            out.update({f"obs:{k}": (float(w), cap) for k, w in kinds.items()})
            name = "obs:"
        out[name] = (weight, cap)
    return out


def related_clusters(
    store: Store, run_id: int, cluster_ids: Sequence[str], *, limit: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per cluster of ``cluster_ids``, the other clusters of the run that share a stored key
    with it, strongest first (the ``limit`` strongest when given).

    Keys come from ``cluster_keys``: values carried by two or more members of a cluster,
    kept for clusters scoring at least ``store.evidence_min_score``, so a relation is seen
    when both clusters kept their keys. Each related cluster is ``{cluster_id, size, score,
    flagged, campaign_id, same_campaign, n_keys, signals, strength}``: ``signals`` lists
    ``{signal, n_keys, here, there}`` (keys of that signal shared, and the most members on
    one of them in each cluster); ``strength`` is what the strongest shared key gives a pair
    of accounts: the signal's weight times :func:`linkage.signals.specificity` over the
    accounts of both clusters that carry it (an upper bound: accounts outside the two
    clusters may carry it too). One query for all of ``cluster_ids``.
    """
    from linkage.signals import specificity

    ids = list(dict.fromkeys(cluster_ids))
    if not ids:
        return {}
    a, b, c = _KEYS.alias("a"), _KEYS.alias("b"), _CLUSTERS
    shared = (
        select(a.c.cluster_id.label("here_id"), b.c.cluster_id.label("other"), b.c.signal,
               func.count().label("n_keys"), func.max(a.c.n_members).label("here"),
               func.max(b.c.n_members).label("there"),
               func.min(a.c.n_members + b.c.n_members).label("fewest"))
        .join(b, (b.c.run_id == a.c.run_id) & (b.c.signal == a.c.signal)
              & (b.c.key_hash == a.c.key_hash) & (b.c.cluster_id != a.c.cluster_id))
        .where(a.c.run_id == run_id, a.c.cluster_id.in_(ids))
        .group_by(a.c.cluster_id, b.c.cluster_id, b.c.signal)
    )
    caps = _key_strength(run_summary(store, run_id)["config"])
    with _connect(store, "reading related clusters") as conn:
        rows = [dict(r._mapping) for r in conn.execute(shared)]
        others = {r["other"] for r in rows}
        info = {r.cluster_id: dict(r._mapping) for r in conn.execute(
            select(c.c.cluster_id, c.c.size, c.c.score, c.c.flagged, c.c.campaign_id)
            .where(c.c.run_id == run_id, c.c.cluster_id.in_(others | set(ids))))
        } if others else {}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        other = info[r["other"]]
        rel = found.setdefault((r["here_id"], r["other"]), {
            **other, "n_keys": 0, "signals": [], "strength": 0.0,
            "same_campaign": other["campaign_id"] is not None
            and other["campaign_id"] == info[r["here_id"]]["campaign_id"],
        })
        weight, cap = caps.get(r["signal"], caps.get(r["signal"].split(":")[0] + ":", (0, 2)))
        rel["n_keys"] += r["n_keys"]
        rel["strength"] = max(rel["strength"], weight * specificity(int(r["fewest"]), cap))
        rel["signals"].append({"signal": r["signal"], "n_keys": r["n_keys"],
                               "here": r["here"], "there": r["there"]})
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for (here, _), rel in found.items():
        rel["signals"].sort(key=lambda s: (-s["n_keys"], s["signal"]))
        out[here].append(rel)
    for here, rels in out.items():
        rels.sort(key=lambda x: (-x["strength"], -x["n_keys"], x["cluster_id"]))
        out[here] = rels if limit is None else rels[:limit]
    return out


def cluster_labels(store: Store, cluster_id: str, members: Sequence[str]) -> list[dict[str, Any]]:
    """Analysts' labels on a cluster and on any of its members, newest first.

    Each is the ``labels`` row (``label_id, target_kind, target_id, label, note, by,
    created_at, run_id``) plus ``current``: whether it is the latest label of its target
    (a later label on the same target supersedes it).
    """
    lab = _T["labels"]
    query = select(lab.c.label_id, lab.c.target_kind, lab.c.target_id, lab.c.label,
                   lab.c.note, lab.c["by"], lab.c.created_at, lab.c.run_id).where(
        ((lab.c.target_kind == "cluster") & (lab.c.target_id == cluster_id))
        | ((lab.c.target_kind == "account") & lab.c.target_id.in_(list(members))))
    with _connect(store, f"reading the labels of cluster {shorten(cluster_id)}") as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    rows.sort(key=lambda r: -r["label_id"])
    seen: set[tuple[str, str]] = set()
    for r in rows:  # newest first: the first of each target is its current label
        target = (r["target_kind"], r["target_id"])
        r["current"] = target not in seen
        seen.add(target)
    return rows


def campaign_detail(store: Store, run_id: int, campaign_id: str) -> dict[str, Any]:
    """One campaign of a run: :func:`campaigns`' entry plus ``signup_times`` (every member's
    creation time, oldest first) and each cluster's ``flagged`` and ``top_reason``.

    Raises :class:`NotFoundError` when the run has no campaign of that id with two or more
    clusters.
    """
    found = next((g for g in campaigns(store, run_id) if g["campaign_id"] == campaign_id),
                 None)
    if found is None:
        raise NotFoundError(f"no such campaign of two or more clusters: "
                            f"{shorten(campaign_id)} in run {run_id}")
    c, m = _CLUSTERS, _MEMBERS
    ids = [x["cluster_id"] for x in found["clusters"]]
    with _connect(store, f"reading campaign {shorten(campaign_id)}") as conn:
        read = (_utc(t) for t in conn.execute(
            select(m.c.created_at).where(m.c.run_id == run_id, m.c.cluster_id.in_(ids),
                                         m.c.created_at.is_not(None))).scalars())
        times = sorted(t for t in read if t is not None)
        extra = {r.cluster_id: r for r in conn.execute(
            select(c.c.cluster_id, c.c.flagged, c.c.reasons_json)
            .where(c.c.run_id == run_id, c.c.cluster_id.in_(ids)))}
    for x in found["clusters"]:
        reasons = json.loads(extra[x["cluster_id"]].reasons_json)
        x["flagged"] = bool(extra[x["cluster_id"]].flagged)
        x["top_reason"] = reasons[0] if reasons else ""
    found["signup_times"] = times
    return found
