"""Static HTML: the run report (``linkage report``) and the case packet (``linkage export case``).

Everything is read from the store through :mod:`linkage.reports.queries` and rendered with
Jinja2 templates from ``linkage/reports/templates`` with autoescaping always on: account ids
are written by the people linkage hunts, so every value is escaped, in text and in attributes.
Pages are self-contained: CSS inline, figures inline SVG (:mod:`linkage.reports.svg`), no
scripts, nothing fetched from a network, so a report can be mailed or archived as it is.

Layout of a report folder::

    index.html                  overview: totals, clusters by score, new and grown,
                                campaigns (flagged clusters of one operator), flagged
    clusters/<cluster_id>.html  one page per reported cluster

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from linkage import __version__
from linkage.reports import queries as q
from linkage.reports.svg import (
    bars_svg,
    graph_svg,
    histogram_svg,
    signal_colour,
    timeline_svg,
)
from linkage.store import Store

__all__ = ["cluster_context", "page_name", "render_case", "write_case", "write_report"]

# Drawing thousands of nodes helps no one and makes a page slow: bigger clusters get the
# tables but no drawing.
MAX_DRAWN_ACCOUNTS = 400

_ENV = Environment(
    loader=PackageLoader("linkage.reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
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


def cluster_context(store: Store, run_id: int, cluster_id: str) -> dict[str, Any]:
    """What a cluster page shows: the stored detail plus its figures and per-member facts."""
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
    detail["breakdown_svg"] = bars_svg(contributions) if contributions else None
    drawn = edges and len(detail["members"]) <= MAX_DRAWN_ACCOUNTS
    detail["graph_svg"] = graph_svg(detail["members"], edges, strong=q.STRONG_LINK) \
        if drawn else None
    used = sorted({e["signals"][0]["signal"] for e in edges if e["signals"]})
    detail["legend"] = [{"signal": s, "colour": signal_colour(s)} for s in used]
    times = q.signup_times(store, run_id, cluster_id)
    detail["timeline_svg"] = timeline_svg(times) if times else None
    if times:
        span = (times[-1] - times[0]).total_seconds()
        detail["signup_span"] = (f"{span / 60:.0f} minutes" if span < 7200 else
                                 f"{span / 3600:.1f} hours" if span < 172800 else
                                 f"{span / 86400:.1f} days")
    detail["strong_link"] = q.STRONG_LINK
    detail["max_drawn"] = MAX_DRAWN_ACCOUNTS
    return detail


def _common(store: Store, run_id: int) -> dict[str, Any]:
    run = q.run_summary(store, run_id)
    return {
        "run": run,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
    }


def write_report(
    store: Store, run_id: int, out_dir: Path, *, min_score: float | None = None
) -> Path:
    """Write the HTML report of a run into ``out_dir``; returns the path of ``index.html``.

    One page per flagged cluster, or with ``min_score`` per cluster whose score reaches it.
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
        for c in g["clusters"]:
            c["page"] = paged.get(c["cluster_id"])
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
    )
    _write(out_dir / "index.html", index)
    page = _ENV.get_template("cluster.html")
    for c in reported:
        ctx = cluster_context(store, run_id, c["cluster_id"])
        # Sibling clusters link to their pages (in the same folder) when they have one.
        for sib in ctx["siblings"]:
            sib["page"] = page_name(sib["cluster_id"]) if sib["cluster_id"] in paged else None
        _write(out_dir / c["page"], page.render(**common, c=ctx, case=False, home="../index.html"))
    return out_dir / "index.html"


def render_case(store: Store, run_id: int, cluster_id: str) -> str:
    """The case packet of one cluster as one self-contained HTML document.

    Everything of a cluster page, plus every evidence edge with its signals and each
    member's cluster in earlier runs: what an investigator hands on.
    """
    ctx = cluster_context(store, run_id, cluster_id)
    histories = {m: q.account_history(store, m) for m in ctx["members"]}
    for row in ctx["member_rows"]:
        row["history"] = [h for h in histories[row["account_id"]] if h["run_id"] != run_id]
    return _ENV.get_template("cluster.html").render(
        **_common(store, run_id), c=ctx, case=True, home=None
    )


def write_case(store: Store, run_id: int, cluster_id: str, out: Path) -> Path:
    """Write :func:`render_case` to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    _write(out, render_case(store, run_id, cluster_id))
    return out
