"""Inline SVG figures for the HTML reports: score histogram, score breakdown, cluster graph.

Each function returns :class:`markupsafe.Markup` ready to drop into a Jinja2 template. Every
piece of text that reaches the SVG (account ids, signal names, labels) goes through
:func:`markupsafe.escape`, so a hostile account id cannot open a tag or an attribute; numbers
are formatted by us. No scripts, no external fonts or stylesheets: a report opens offline.

The graph drawing places the stored evidence edges with igraph's Fruchterman-Reingold layout,
started from a circle so that the same cluster is drawn the same way every time. That is
layout only: which accounts are linked, and how strongly, is what the run stored.

Examples
--------
>>> svg = bars_svg([("payment_reuse", 0.42), ("<b>", 0.1)])
>>> "&lt;b&gt;" in svg and "<b>" not in svg
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from linkage.reports.glossary import signal_name

__all__ = [
    "SIGNAL_COLOURS", "bars_svg", "graph_svg", "groups_svg", "histogram_svg", "member_groups",
    "signal_colour",
    "timeline_svg",
]

# Fixed colours for the built-in signals (a colour-blind-safe palette); observation kinds get
# one of the spare colours, chosen by a hash of the kind so it is stable across reports.
SIGNAL_COLOURS = {
    "card": "#d62728", "bin_postal": "#ff9896", "device": "#9467bd", "email": "#1f77b4",
    "phone": "#17becf", "ip": "#2ca02c", "ip_net": "#98df8a", "ip_net48": "#c5e8b7",
    "cosignup": "#ff7f0e",
}
_SPARE = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#c49c94", "#f7b6d2", "#dbdb8d")
CORE_COLOUR, OTHER_COLOUR = "#1f3a5f", "#9fb3c8"


def signal_colour(signal: str) -> str:
    """The colour of a signal in every drawing and legend."""
    if signal in SIGNAL_COLOURS:
        return SIGNAL_COLOURS[signal]
    digest = hashlib.sha256(signal.encode("utf-8")).digest()
    return _SPARE[digest[0] % len(_SPARE)]


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    # Markup is safe here: every text in ``body`` was escaped where it was formatted, and
    # the rest is numbers and our own constants.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        + "".join(body) + "</svg>"
    )


def histogram_svg(
    scores: Sequence[float], *, threshold: float | None = None, bins: int = 20,
    width: int = 640, height: int = 220,
) -> Markup:
    """Clusters by score: a bar per score bin of width ``1 / bins``, flagged bins darker."""
    counts = [0] * bins
    for s in scores:
        counts[min(int(s * bins), bins - 1)] += 1
    left, bottom, top = 40, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts) or 1
    # Counts span orders of magnitude (thousands of low-scoring neighbourhoods, a handful of
    # rings), so bar heights use log(1 + count).
    scale = plot_h / math.log1p(peak)
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    bar_w = plot_w / bins
    for i, n in enumerate(counts):
        h = math.log1p(n) * scale
        lo = i / bins
        flagged = threshold is not None and lo >= threshold - 1e-9
        colour = "#b22222" if flagged else "#4a78a8"
        x, y = left + i * bar_w, top + plot_h - h
        body.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{lo:.2f}-{lo + 1 / bins:.2f}: {n} clusters</title></rect>'
        )
        if n:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 2:.1f}" font-size="9" '
                        f'text-anchor="middle">{n}</text>')
    axis_y = top + plot_h
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" '
                'stroke="#333"/>')
    for tick in range(0, 11, 2):
        x = left + plot_w * tick / 10
        body.append(f'<text x="{x:.1f}" y="{axis_y + 14}" font-size="10" '
                    f'text-anchor="middle">{tick / 10:.1f}</text>')
    if threshold is not None:
        x = left + plot_w * threshold
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" '
                    'stroke="#b22222" stroke-dasharray="4 3"/>')
        body.append(f'<text x="{x + 3:.1f}" y="{top + 10}" font-size="10" fill="#b22222">'
                    f'threshold {threshold:.2f}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" font-size="10" '
                'text-anchor="middle">cluster score (bar height: log of the count)</text>')
    return _svg(width, height, body, "clusters by score")


def timeline_svg(
    times: Sequence[datetime], *, bins: int = 40, width: int = 640, height: int = 160,
) -> Markup:
    """Signups over time: a bar per equal slice of the span from the first to the last."""
    start, end = times[0], times[-1]
    span = max((end - start).total_seconds(), 1.0)
    counts = [0] * bins
    for t in times:
        counts[min(int((t - start).total_seconds() / span * bins), bins - 1)] += 1
    left, bottom, top = 40, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts)
    bar_w = plot_w / bins
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for i, n in enumerate(counts):
        if not n:
            continue
        h = plot_h * n / peak
        x, y = left + i * bar_w, top + plot_h - h
        body.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="#4a78a8"><title>{n} signups</title></rect>')
    axis_y = top + plot_h
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" '
                'stroke="#333"/>')
    fmt = "%Y-%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
    body.append(f'<text x="{left}" y="{axis_y + 14}" font-size="10">'
                f'{escape(start.strftime(fmt))}</text>')
    body.append(f'<text x="{left + plot_w}" y="{axis_y + 14}" font-size="10" '
                f'text-anchor="end">{escape(end.strftime(fmt))}</text>')
    body.append(f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">'
                f'{peak}</text>')
    return _svg(width, height, body, "signup timeline")


def bars_svg(
    items: Sequence[tuple[str, float]], *, width: int = 560, bar_h: int = 18,
    max_value: float = 1.0,
) -> Markup:
    """Horizontal bars, one per ``(label, value)``, value on a 0..``max_value`` scale."""
    label_w, gap = 230, 4
    height = max(1, len(items)) * (bar_h + gap) + 8
    plot_w = width - label_w - 60
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for i, (label, value) in enumerate(items):
        y = 4 + i * (bar_h + gap)
        w = max(0.0, min(value / max_value, 1.0)) * plot_w
        body.append(f'<text x="{label_w - 6}" y="{y + bar_h - 5}" font-size="12" '
                    f'text-anchor="end">{escape(label)}</text>')
        body.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                    f'fill="#4a78a8"><title>{escape(label)}: {value:.3f}</title></rect>')
        body.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 5}" '
                    f'font-size="11">{value:.3f}</text>')
    return _svg(width, height, body, "score breakdown")


def graph_svg(
    accounts: Sequence[str], edges: Sequence[dict[str, Any]], *, size: int = 560,
    strong: float = 0.6,
) -> Markup:
    """The cluster as a graph: accounts as nodes, stored evidence edges as lines.

    Nodes are dark when the account has a strong link (weight >= ``strong``: the "core" of
    the reasons), light otherwise. Edges are coloured by their strongest signal and drawn
    thicker the heavier they are. Every node and edge has a ``<title>`` tooltip.
    """
    import igraph as ig


    names = sorted(set(accounts))
    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[e["account_a"]], index[e["account_b"]]) for e in edges
             if e["account_a"] in index and e["account_b"] in index]
    kept = [e for e in edges if e["account_a"] in index and e["account_b"] in index]
    graph = ig.Graph(n=len(names), edges=pairs)
    if len(names) > 1:
        start = [[math.cos(2 * math.pi * i / len(names)), math.sin(2 * math.pi * i / len(names))]
                 for i in range(len(names))]
        layout = graph.layout_fruchterman_reingold(
            weights=[e["weight"] for e in kept] or None, seed=start, niter=300)
        coords = layout.coords
    else:
        coords = [[0.0, 0.0] for _ in names]
    xs, ys = [c[0] for c in coords] or [0.0], [c[1] for c in coords] or [0.0]
    pad, radius = 18, 5 if len(names) > 60 else 7
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0

    def pos(i: int) -> tuple[float, float]:
        return (pad + (coords[i][0] - min(xs)) / span_x * (size - 2 * pad),
                pad + (coords[i][1] - min(ys)) / span_y * (size - 2 * pad))

    core = {i for e, (a, b) in zip(kept, pairs, strict=True) if e["weight"] >= strong
            for i in (a, b)}
    body = [f'<rect x="0" y="0" width="{size}" height="{size}" fill="#ffffff"/>']
    # Lightest edges first, so the strong evidence is drawn on top.
    for e, (a, b) in sorted(zip(kept, pairs, strict=True), key=lambda t: t[0]["weight"]):
        (x1, y1), (x2, y2) = pos(a), pos(b)
        top = e["signals"][0]["signal"] if e["signals"] else ""
        tip = f"{e['account_a']} - {e['account_b']}: {e['weight']:.3f} (" + ", ".join(
            f"{signal_name(s['signal'])} {s['contribution']:.2f}" for s in e["signals"]) + ")"
        body.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{signal_colour(top)}" stroke-opacity="0.75" '
            f'stroke-width="{0.5 + 2.5 * e["weight"]:.2f}"><title>{escape(tip)}</title></line>'
        )
    for i, name in enumerate(names):
        x, y = pos(i)
        fill = CORE_COLOUR if i in core else OTHER_COLOUR
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" stroke="#fff">'
            f'<title>{escape(name)} (degree {graph.degree(i)})</title></circle>'
        )
    return _svg(size, size, body, "evidence graph of the cluster")


def member_groups(
    accounts: Sequence[str], edges: Sequence[dict[str, Any]],
) -> list[int]:
    """Group a cluster's accounts for the aggregated drawing: the tightly knit parts of its
    evidence graph (igraph's greedy modularity, on the edge weights: deterministic), so
    that accounts sharing one device or one card fall into one group.

    Returns the group of each account of ``sorted(set(accounts))``, groups numbered by
    size desc, then by their first account. An account without an edge is a group alone.

    >>> e = [{"account_a": a, "account_b": b, "weight": 0.9}
    ...      for a, b in ("ab", "ac", "bc", "de", "df", "ef", "dg", "eg", "fg")]
    >>> e.append({"account_a": "c", "account_b": "d", "weight": 0.2})
    >>> member_groups(list("abcdefgh"), e)
    [1, 1, 1, 0, 0, 0, 0, 2]
    """
    import igraph as ig
    import numpy as np

    names = sorted(set(accounts))
    index = {name: i for i, name in enumerate(names)}
    kept = [e for e in edges if e["account_a"] in index and e["account_b"] in index]
    graph = ig.Graph(n=len(names), edges=[(index[e["account_a"]], index[e["account_b"]])
                                          for e in kept])
    if not kept:
        return list(range(len(names)))
    weights = [e["weight"] for e in kept]
    comp = np.asarray(graph.community_fastgreedy(weights=weights).as_clustering().membership,
                      dtype=np.int64)
    ids, first, counts = np.unique(comp, return_index=True, return_counts=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.lexsort((first, -counts))] = np.arange(len(ids))
    return rank[np.searchsorted(ids, comp)].tolist()


def groups_svg(
    accounts: Sequence[str], edges: Sequence[dict[str, Any]], *, size: int = 560,
    strong: float = 0.6, max_groups: int = 60,
) -> tuple[Markup, dict[str, int]]:
    """A large cluster drawn by groups: one circle per group of :func:`member_groups`
    (area = accounts; dark when a strong link joins accounts inside it), one line per pair
    of groups with evidence between them (width = summed weight, colour = the signal that
    carries most of it). Groups beyond the ``max_groups`` largest are drawn as one circle.
    Returns the figure and its counts (``accounts, groups, drawn``).
    """
    import igraph as ig
    import numpy as np

    names = sorted(set(accounts))
    index = {name: i for i, name in enumerate(names)}
    g = np.asarray(member_groups(names, edges), dtype=np.int64)
    n_groups = int(g.max(initial=-1)) + 1
    rest = -1
    if n_groups > max_groups:  # the smallest groups share one circle
        rest = max_groups - 1
        g = np.minimum(g, rest)
    n_nodes = int(g.max(initial=-1)) + 1
    sizes = np.bincount(g, minlength=n_nodes)
    sample: dict[int, list[str]] = {}
    for i in np.argsort(g, kind="stable").tolist():
        if len(sample.setdefault(int(g[i]), [])) < 5:
            sample[int(g[i])].append(names[i])
    # Evidence per pair of groups and inside each group, by the edges' strongest signal.
    between: dict[tuple[int, int], dict[str, float]] = {}
    inside: dict[int, dict[str, float]] = {}
    has_strong: set[int] = set()
    for e in edges:
        if e["account_a"] not in index or e["account_b"] not in index:
            continue
        ga, gb = sorted((int(g[index[e["account_a"]]]), int(g[index[e["account_b"]]])))
        if ga == gb and e["weight"] >= strong:
            has_strong.add(ga)
        bucket = inside.setdefault(ga, {}) if ga == gb else between.setdefault((ga, gb), {})
        top = e["signals"][0]["signal"] if e.get("signals") else ""
        bucket[top] = bucket.get(top, 0.0) + e["weight"]
    graph = ig.Graph(n=n_nodes, edges=list(between))
    totals = [sum(v.values()) for v in between.values()]
    if n_nodes > 1:
        start = [[math.cos(2 * math.pi * i / n_nodes), math.sin(2 * math.pi * i / n_nodes)]
                 for i in range(n_nodes)]
        coords = graph.layout_fruchterman_reingold(
            weights=[math.log1p(t) for t in totals] or None, seed=start, niter=500).coords
    else:
        coords = [[0.0, 0.0]]
    biggest = max(int(sizes.max(initial=1)), 1)
    max_r = min(60.0, size / (3.5 * math.sqrt(n_nodes)))
    radius = [max(4.0, max_r * math.sqrt(int(s) / biggest)) for s in sizes]
    pad = max_r + 6
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)

    def pos(i: int) -> tuple[float, float]:
        # A single group (or a degenerate layout) sits in the middle.
        return (size / 2 if not span_x else
                pad + (coords[i][0] - min(xs)) / span_x * (size - 2 * pad),
                size / 2 if not span_y else
                pad + (coords[i][1] - min(ys)) / span_y * (size - 2 * pad))

    body = [f'<rect x="0" y="0" width="{size}" height="{size}" fill="#ffffff"/>']
    heaviest = max(totals, default=1.0) or 1.0
    for ((a, b), per), total in sorted(zip(between.items(), totals, strict=True),
                                       key=lambda t: t[1]):
        (x1, y1), (x2, y2) = pos(a), pos(b)
        top = max(per, key=lambda s: (per[s], s))
        tip = (f"evidence {total:.1f} between a group of {int(sizes[a])} and one of "
               f"{int(sizes[b])} (" + ", ".join(
                   f"{signal_name(s)} {w:.1f}" for s, w in
                   sorted(per.items(), key=lambda t: -t[1])) + ")")
        body.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{signal_colour(top)}" stroke-opacity="0.7" '
            f'stroke-width="{1 + 7 * total / heaviest:.2f}"><title>{escape(tip)}</title></line>')
    for i in range(n_nodes):
        x, y = pos(i)
        per = inside.get(i, {})
        top = max(per, key=lambda s: (per[s], s)) if per else ""
        kind = ("accounts of the smaller groups" if i == rest else
                f"accounts linked mostly by {signal_name(top, plural=True)}" if top else
                "account without an edge")
        tip = f"{int(sizes[i])} {kind}; e.g. " + ", ".join(sample.get(i, []))
        fill = CORE_COLOUR if i in has_strong and i != rest else OTHER_COLOUR
        ring = signal_colour(top) if top and i != rest else "#ffffff"
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius[i]:.1f}" fill="{fill}" '
            f'stroke="{ring}" stroke-width="3"><title>{escape(tip)}</title></circle>')
        if radius[i] >= 10:
            body.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="11" fill="#fff" '
                        f'text-anchor="middle">{int(sizes[i])}</text>')
    counts = {"accounts": len(names), "groups": n_groups, "drawn": n_nodes}
    return _svg(size, size, body, "evidence graph of the cluster, by groups"), counts
