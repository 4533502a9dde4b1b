"""The analyst's views of the reports on a store built by hand (SQLite and PostgreSQL):
related clusters, verdicts first, campaign pages, plain names and the glossary, and the
grouped drawing of large clusters."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from linkage.errors import NotFoundError
from linkage.labels import add_label
from linkage.reports import html, queries
from linkage.reports.glossary import (
    FEATURE_NAMES,
    SIGNAL_NAMES,
    feature_name,
    glossary_markdown,
    signal_name,
)
from linkage.reports.svg import groups_svg, member_groups
from linkage.scoring import FEATURES
from linkage.signals import SIGNAL_FAMILIES, specificity
from linkage.store import RunRecord, Store
from linkage.store.record import RECORD_SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_NOTE = '<img src=x onerror=alert(1)> "cleared"'

# Four clusters: cA and cB (flagged, one campaign) share a device; cB and cC (not flagged)
# share a BIN + postal code; cD shares nothing with anyone.
CLUSTERS = {
    "cA": (0.9, ["a1", "a2", "a3", "a4"], "cA"),
    "cB": (0.8, ["b1", "b2", "b3"], "cA"),
    "cC": (0.45, ["c1", "c2"], None),
    "cD": (0.42, ["d1", "d2"], None),
}
# (cluster, signal, key, members carrying it, carriers in the whole night: unknown here)
KEYS = [("cA", "device", "k-dev", 3, None), ("cA", "card", "k-card", 4, None),
        ("cB", "device", "k-dev", 2, None), ("cB", "bin_postal", "k-bp", 3, None),
        ("cC", "bin_postal", "k-bp", 2, None), ("cD", "card", "k-other", 2, None)]


def _table(name: str, rows: list[tuple]) -> pa.Table:
    schema = RECORD_SCHEMAS[name]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema.names]
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)],
                    schema=schema)


def _record() -> RunRecord:
    clusters, members, evidence, signals = [], [], [], []
    for cid, (score, accounts, campaign) in CLUSTERS.items():
        clusters.append((cid, len(accounts), score, score >= 0.5, "new", "[]",
                         json.dumps({"identifier_reuse": 1.0, "size_factor": 1.0}),
                         json.dumps({"identifier_reuse": 0.75, "issuer_reuse": 0.0}),
                         json.dumps([f"{len(accounts)} of {len(accounts)} accounts share "
                                     "one card"]), None, campaign))
        members += [(a, cid, datetime(2025, 6, 1, 10, 7 * i % 60, tzinfo=UTC))
                    for i, a in enumerate(accounts)]
        for a, b in itertools.pairwise(accounts):
            evidence.append((cid, a, b, 0.9))
            signals.append((a, b, "device", 0.9, 1))
    return RunRecord(
        input_fingerprint="sha256:0", rows_read={"accounts": 11}, rows_quarantined={},
        n_accounts=11, n_edges=len(evidence), n_clusters=len(CLUSTERS), n_flagged=2,
        timings={}, clusters=_table("clusters", clusters),
        memberships=_table("memberships", members), evidence=_table("evidence", evidence),
        evidence_signals=_table("evidence_signals", signals),
        cluster_keys=_table("cluster_keys", KEYS), quarantine=_table("quarantine", []),
    )


@pytest.fixture
def run(store: Store) -> int:
    # The run's configuration lowers the device weight: strengths must follow it.
    run_id = store.begin_run(config_json=json.dumps({"signals": {"device": {"weight": 0.5}}}),
                             config_hash="0", seed=1, code_version="test", input_path="in/")
    store.publish_run(run_id, _record())
    return run_id


def test_related_clusters_share_keys_across_the_run(store: Store, run: int) -> None:
    related = queries.related_clusters(store, run, ["cA", "cB", "cD"])
    assert related["cD"] == []
    (b,) = related["cA"]
    assert (b["cluster_id"], b["flagged"], b["same_campaign"], b["n_keys"]) == (
        "cB", True, True, 1)
    assert b["signals"] == [{"signal": "device", "n_keys": 1, "here": 3, "there": 2}]
    # The run's device weight (0.5), lowered for the five accounts on the key.
    assert b["strength"] == pytest.approx(0.5 * specificity(5, 1000))
    a, c = related["cB"]  # strongest first: the device, then the BIN + postal code
    assert (a["cluster_id"], c["cluster_id"]) == ("cA", "cC")
    assert not c["flagged"] and not c["same_campaign"] and c["campaign_id"] is None
    assert c["strength"] == pytest.approx(0.3 * specificity(5, 1000))
    assert queries.related_clusters(store, run, ["cB"], limit=1)["cB"] == [a]
    assert queries.related_clusters(store, run, []) == {}


def test_the_cluster_page_leads_with_verdicts_and_shows_related_clusters(
    store: Store, run: int
) -> None:
    add_label(store, "account", "a2", "watch", note="chargeback", by="ann")
    add_label(store, "cluster", "cA", "confirmed", note="first look", by="bob")
    add_label(store, "cluster", "cA", "false_positive", note=HOSTILE_NOTE, by="bob")
    labels = queries.cluster_labels(store, "cA", CLUSTERS["cA"][1])
    assert [(x["label"], x["current"]) for x in labels] == [
        ("false_positive", True), ("confirmed", False), ("watch", True)]

    page = html.render_cluster(store, run, "cA", cluster_href=lambda i: f"/x/{i}.html",
                               campaign_href=lambda i: f"/camp/{i}.html",
                               glossary_href="/g.html")
    order = [page.index(h) for h in ("Verdicts and labels", "Reasons", "Related clusters",
                                     "Evidence graph", "Score breakdown")]
    assert order == sorted(order)
    assert HOSTILE_NOTE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert '<a href="/x/cB.html">cB</a>' in page and "same campaign" in page
    assert 'href="/camp/cA.html"' in page and 'href="/g.html">glossary</a>' in page
    # Plain names, with the stored key beside them for SQL.
    assert "shared identifiers" in page and "identifier_reuse" in page
    assert "one device fingerprint (3 / 2)" in page

    case = html.render_case(store, run, "cA")
    assert case.index("Verdicts and labels") < case.index("Reasons")
    assert "first look" in case and "(superseded)" in case and "chargeback" in case
    assert 'id="glossary"' in case and 'href="#glossary"' in case
    assert "<a " not in case.split('id="glossary"')[0].split("</header>")[1].replace(
        '<a href="#glossary">', "")  # the packet stands alone: no links to other pages


def test_campaign_page(store: Store, run: int) -> None:
    page = html.render_campaign(store, run, "cA", cluster_href=lambda i: f"{i}.html")
    assert '<a href="cB.html">cB</a>' in page and '<a href="cA.html">cA</a>' in page
    assert "What its clusters share (1 pairs)" in page
    assert re.search(r"<b>7</b>\s*accounts", page)
    with pytest.raises(NotFoundError):
        html.render_campaign(store, run, "cD")


def test_every_report_page_links_the_glossary(store: Store, run: int, tmp_path: Path) -> None:
    index = html.write_report(store, run, tmp_path / "r", min_score=0.4)
    pages = sorted((tmp_path / "r").rglob("*.html"))
    names = {p.relative_to(tmp_path / "r").as_posix() for p in pages}
    assert {"index.html", "glossary.html", "campaigns/cA.html", "clusters/cC.html"} <= names
    for page in pages:
        if page.name != "glossary.html":
            href = "glossary.html" if page == index else "../glossary.html"
            assert f'href="{href}">glossary</a>' in page.read_text(), page
    # A cluster page links the campaign page, and the campaign page its clusters.
    assert 'href="../campaigns/cA.html"' in (tmp_path / "r/clusters/cB.html").read_text()
    assert 'href="../clusters/cB.html"' in (tmp_path / "r/campaigns/cA.html").read_text()


def test_plain_names_cover_every_feature_and_signal() -> None:
    assert set(FEATURES) <= set(FEATURE_NAMES)
    assert set(SIGNAL_FAMILIES) <= set(SIGNAL_NAMES)
    assert feature_name("a_new_one") == "a new one" and signal_name("obs:ua") == "observed ua"
    assert (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8") == glossary_markdown()


def _ring_of_cliques(n_cliques: int, size: int, prefix: str = "") -> tuple[list[str], list]:
    accounts = [f"{prefix}{k:02d}-{i:02d}" for k in range(n_cliques) for i in range(size)]
    edges = []
    for k in range(n_cliques):
        group = accounts[k * size:(k + 1) * size]
        edges += [{"account_a": a, "account_b": b, "weight": 0.9,
                   "signals": [{"signal": "device", "contribution": 0.9, "shared_keys": 1}]}
                  for i, a in enumerate(group) for b in group[i + 1:]]
        nxt = accounts[((k + 1) % n_cliques) * size]
        edges.append({"account_a": group[0], "account_b": nxt, "weight": 0.3,
                      "signals": [{"signal": "ip_net", "contribution": 0.3,
                                   "shared_keys": 1}]})
    return accounts, edges


def test_large_clusters_are_drawn_by_groups() -> None:
    accounts, edges = _ring_of_cliques(25, 20, prefix='<b x="')
    groups = member_groups(accounts, edges)
    # Each device clique is one group, whatever the order of the accounts.
    by_clique: dict[str, set[int]] = {}
    for name, g in zip(sorted(accounts), groups, strict=True):
        by_clique.setdefault(name.split("-")[0], set()).add(g)
    assert all(len(g) == 1 for g in by_clique.values()) and len(set(groups)) == 25
    svg, counts = groups_svg(accounts, edges)
    assert counts == {"accounts": 500, "groups": 25, "drawn": 25}
    assert svg.count("<circle") == 25 and svg.count("<line") == 25
    assert '<b x="' not in svg and "&lt;b x=&#34;" in svg  # ids in tooltips stay text
    assert "linked mostly by device fingerprints" in svg
    # Past max_groups, the smallest groups share one circle.
    svg, counts = groups_svg(accounts, edges, max_groups=10)
    assert counts["drawn"] == 10 and svg.count("<circle") == 10
    assert member_groups(["x"], []) == [0]
