"""Static HTML: the run report (``linkage report``) and the case packet (``linkage export case``).

Everything is read from the store through :mod:`linkage.reports.queries` and rendered with
Jinja2 templates from ``linkage/reports/templates`` with autoescaping always on: account ids
are written by the people linkage hunts, so every value is escaped, in text and in attributes.
Pages are self-contained: CSS inline, figures inline SVG (:mod:`linkage.reports.svg`), no
scripts, nothing fetched from a network, so a report can be mailed or archived as it is.

Layout of a report folder::

    index.html                    overview: totals, clusters by score, new and grown,
                                  campaigns (flagged clusters of one operator), flagged
    clusters/<cluster_id>.html    one page per reported cluster
    campaigns/<campaign_id>.html  one page per campaign of two or more clusters
    glossary.html                 the words of the pages (:mod:`linkage.reports.glossary`)

Every page names features and signals by their plain names
(:mod:`linkage.reports.glossary`), and a cluster page leads with the analysts' verdicts on
the cluster and its members, then the reasons, then the clusters related to it.

Examples
--------
>>> page_name("c503c28b60cd5")
'c503c28b60cd5.html'
>>> page_name("../etc/passwd")[:8]
'cluster-'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from linkage import __version__
from linkage.reports import queries as q
from linkage.reports.glossary import GLOSSARY, feature_name, signal_name, signal_phrase
from linkage.reports.svg import (
    bars_svg,
    graph_svg,
    groups_svg,
    histogram_svg,
    signal_colour,
    timeline_svg,
)
from linkage.store import Store

__all__ = [
    "campaign_context",
    "cluster_context",
    "page_name",
    "render_campaign",
    "render_case",
    "render_cluster",
    "render_glossary",
    "write_case",
    "write_report",
]

# Drawing thousands of nodes helps no one and makes a page slow: bigger clusters are drawn
# by groups of accounts joined by strong links (svg.groups_svg).
MAX_DRAWN_ACCOUNTS = 400
# A cluster page lists its strongest related clusters; the case packet lists them all.
MAX_RELATED_SHOWN = 20

_ENV = Environment(
    loader=PackageLoader("linkage.reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["feature_name"] = feature_name
_ENV.filters["signal_name"] = signal_name
_ENV.filters["signal_phrase"] = signal_phrase
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def page_name(cluster_id: str) -> str:
    """A cluster page's file name: the id itself when it is a plain word, else a hash.

    Cluster ids are linkage's own (``c`` + hex), but the file name must never depend on
    that: a path separator in an id would write outside the report folder.
    """
    if _SAFE_ID.fullmatch(cluster_id):
        return f"{cluster_id}.html"
    return f"cluster-{hashlib.sha256(cluster_id.encode('utf-8')).hexdigest()[:16]}.html"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a reader never sees a half-written page


def _span(times: list[datetime]) -> str:
    span = (times[-1] - times[0]).total_seconds()
    return (f"{span / 60:.0f} minutes" if span < 7200 else
            f"{span / 3600:.1f} hours" if span < 172800 else
            f"{span / 86400:.1f} days")


def cluster_context(
    store: Store, run_id: int, cluster_id: str,
    related: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What a cluster page shows: the stored detail plus its figures, per-member facts, the
    analysts' labels and the related clusters (``related``: from a batched
    :func:`queries.related_clusters`, read here when not given)."""
    detail = q.cluster_detail(store, run_id, cluster_id)
    edges = detail["edges"]
    degree: dict[str, int] = {}
    best: dict[str, float] = {}
    for e in edges:
        for acc in (e["account_a"], e["account_b"]):
            degree[acc] = degree.get(acc, 0) + 1
            best[acc] = max(best.get(acc, 0.0), e["weight"])
    detail["member_rows"] = [
        {"account_id": m, "degree": degree.get(m, 0), "strongest": best.get(m)}
        for m in detail["members"]
    ]
    contributions = sorted(detail["contributions"].items(), key=lambda kv: (-kv[1], kv[0]))
    detail["feature_rows"] = [
        {"key": k, "name": feature_name(k), "value": detail["features"].get(k, 0.0),
         "contribution": v} for k, v in contributions]
    detail["breakdown_svg"] = bars_svg([(feature_name(k), v) for k, v in contributions]) \
        if contributions else None
    detail["graph_svg"] = detail["groups_svg"] = detail["groups"] = None
    if edges and len(detail["members"]) <= MAX_DRAWN_ACCOUNTS:
        detail["graph_svg"] = graph_svg(detail["members"], edges, strong=q.STRONG_LINK)
    elif edges:
        detail["groups_svg"], detail["groups"] = groups_svg(
            detail["members"], edges, strong=q.STRONG_LINK)
    used = sorted({e["signals"][0]["signal"] for e in edges if e["signals"]})
    detail["legend"] = [{"signal": s, "name": signal_name(s), "colour": signal_colour(s)}
                        for s in used]
    times = q.signup_times(store, run_id, cluster_id)
    detail["timeline_svg"] = timeline_svg(times) if times else None
    if times:
        detail["signup_span"] = _span(times)
    detail["labels"] = q.cluster_labels(store, cluster_id, detail["members"])
    detail["related"] = (related if related is not None else
                         q.related_clusters(store, run_id, [cluster_id])[cluster_id])
    detail["max_related"] = MAX_RELATED_SHOWN
    detail["strong_link"] = q.STRONG_LINK
    detail["max_drawn"] = MAX_DRAWN_ACCOUNTS
    return detail


def campaign_context(store: Store, run_id: int, campaign_id: str) -> dict[str, Any]:
    """What a campaign page shows: :func:`queries.campaign_detail` plus its signup timeline
    and the keys its clusters share with each other."""
    g = q.campaign_detail(store, run_id, campaign_id)
    times = g.pop("signup_times")
    g["timeline_svg"] = timeline_svg(times) if times else None
    g["signup_span"] = _span(times) if times else None
    g["n_flagged"] = sum(1 for c in g["clusters"] if c["flagged"])
    ids = [c["cluster_id"] for c in g["clusters"]]
    related = q.related_clusters(store, run_id, ids)
    g["links"] = [
        {"a": a, "b": r["cluster_id"], "strength": r["strength"], "signals": r["signals"]}
        for a in ids for r in related[a] if r["cluster_id"] in ids and a < r["cluster_id"]
    ]
    g["links"].sort(key=lambda x: (-x["strength"], x["a"], x["b"]))
    return g


def _common(store: Store, run_id: int) -> dict[str, Any]:
    run = q.run_summary(store, run_id)
    return {
        "run": run,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
    }


Link = Callable[[str], "str | None"]


def _no_link(_: str) -> str | None:
    return None


def render_cluster(
    store: Store, run_id: int, cluster_id: str, *,
    cluster_href: Link = _no_link, campaign_href: Link = _no_link,
    glossary_href: str | None = None, home: str | None = None,
    related: list[dict[str, Any]] | None = None, case: bool = False,
) -> str:
    """One cluster's page. ``cluster_href`` and ``campaign_href`` give the address of another
    cluster's or a campaign's page (``None``: no page, shown as plain text); the report,
    the case packet and the Datasette plugin each address pages their own way."""
    ctx = cluster_context(store, run_id, cluster_id, related)
    for sib in ctx["siblings"]:
        sib["page"] = cluster_href(sib["cluster_id"])
    for rel in ctx["related"]:
        rel["page"] = cluster_href(rel["cluster_id"])
    ctx["campaign_page"] = campaign_href(ctx["campaign_id"]) if ctx["siblings"] else None
    extra: dict[str, Any] = {}
    if case:
        histories = {m: q.account_history(store, m) for m in ctx["members"]}
        for row in ctx["member_rows"]:
            row["history"] = [h for h in histories[row["account_id"]] if h["run_id"] != run_id]
        extra["glossary"] = GLOSSARY
    return _ENV.get_template("cluster.html").render(
        **_common(store, run_id), c=ctx, case=case, home=home,
        glossary_href="#glossary" if case else glossary_href, **extra)


def render_campaign(
    store: Store, run_id: int, campaign_id: str, *, cluster_href: Link = _no_link,
    glossary_href: str | None = None, home: str | None = None,
) -> str:
    """One campaign's page: its clusters, totals, signup timeline and the keys its clusters
    share with each other."""
    g = campaign_context(store, run_id, campaign_id)
    for c in g["clusters"]:
        c["page"] = cluster_href(c["cluster_id"])
    return _ENV.get_template("campaign.html").render(
        **_common(store, run_id), g=g, home=home, glossary_href=glossary_href)


def render_glossary(store: Store, run_id: int, *, home: str | None = None) -> str:
    """The glossary page (:data:`linkage.reports.glossary.GLOSSARY`)."""
    return _ENV.get_template("glossary.html").render(
        **_common(store, run_id), glossary=GLOSSARY, home=home, glossary_href=None)


def write_report(
    store: Store, run_id: int, out_dir: Path, *, min_score: float | None = None
) -> Path:
    """Write the HTML report of a run into ``out_dir``; returns the path of ``index.html``.

    One page per flagged cluster, or with ``min_score`` per cluster whose score reaches it;
    one per campaign of two or more clusters; the glossary.
    """
    out_dir = Path(out_dir)
    common = _common(store, run_id)
    clusters = q.clusters_table(store, run_id).to_pylist()
    if min_score is None:
        reported = [c for c in clusters if c["flagged"]]
    else:
        reported = [c for c in clusters if c["score"] >= min_score]
    for c in reported:
        c["page"] = f"clusters/{page_name(c['cluster_id'])}"
    paged = {c["cluster_id"]: c["page"] for c in reported}
    changes = q.new_since_previous(store, run_id)
    for c in changes:
        c["page"] = paged.get(c["cluster_id"])
    campaigns = q.campaigns(store, run_id)
    for g in campaigns:
        g["page"] = f"campaigns/{page_name(g['campaign_id'])}"
        for c in g["clusters"]:
            c["page"] = paged.get(c["cluster_id"])
    with_page = {g["campaign_id"] for g in campaigns}
    index = _ENV.get_template("overview.html").render(
        **common,
        n_clusters=len(clusters),
        n_flagged=sum(1 for c in clusters if c["flagged"]),
        histogram=histogram_svg([c["score"] for c in clusters],
                                threshold=common["run"]["threshold"]),
        reported=reported,
        min_score=min_score,
        previous_run_id=q.previous_run_id(store, run_id),
        changes=changes[:50],
        n_changes=len(changes),
        campaigns=campaigns,
        glossary_href="glossary.html",
    )
    _write(out_dir / "index.html", index)
    _write(out_dir / "glossary.html", render_glossary(store, run_id, home="index.html"))

    # Pages one folder down link to each other through the parent.
    def cluster_href(cluster_id: str) -> str | None:
        return f"../{paged[cluster_id]}" if cluster_id in paged else None

    def campaign_href(campaign_id: str) -> str | None:
        return (f"../campaigns/{page_name(campaign_id)}" if campaign_id in with_page
                else None)

    related = q.related_clusters(store, run_id, [c["cluster_id"] for c in reported])
    for c in reported:
        _write(out_dir / c["page"], render_cluster(
            store, run_id, c["cluster_id"], cluster_href=cluster_href,
            campaign_href=campaign_href, glossary_href="../glossary.html",
            home="../index.html", related=related[c["cluster_id"]]))
    for g in campaigns:
        _write(out_dir / g["page"], render_campaign(
            store, run_id, g["campaign_id"], cluster_href=cluster_href,
            glossary_href="../glossary.html", home="../index.html"))
    return out_dir / "index.html"


def render_case(store: Store, run_id: int, cluster_id: str) -> str:
    """The case packet of one cluster as one self-contained HTML document.

    Everything of a cluster page (the analysts' labels and notes first), plus every
    evidence edge with its signals, each member's cluster in earlier runs and the glossary:
    what an investigator hands on.
    """
    return render_cluster(store, run_id, cluster_id, case=True)


def write_case(store: Store, run_id: int, cluster_id: str, out: Path) -> Path:
    """Write :func:`render_case` to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    _write(out, render_case(store, run_id, cluster_id))
    return out
