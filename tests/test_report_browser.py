"""The HTML report and ``linkage browse`` in a real browser: headless Chromium (Debian's
``chromium``) through Playwright. Every page loads without a console error or a failed
request, every figure renders with a nonzero size, hostile account ids and notes stay text,
and a screenshot is not blank. With ``LINKAGE_UPDATE_SCREENSHOT=1`` the screenshots are kept
in docs/img/ (report.png, report-campaign.png, report-related.png, report-groups.png,
datasette.png) for docs/reports.md.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from linkage.config import RunConfig
from linkage.labels import add_label
from linkage.pipeline import run_pipeline
from linkage.reports import html
from linkage.reports.html import page_name, write_case, write_report
from linkage.reports.queries import account_history
from linkage.store import Store
from tests.report_data import HOSTILE, SECRET, two_nights
from tests.test_report_views import HOSTILE_NOTE, _record

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SCREENSHOT = IMG / "report.png"
UPDATE = os.environ.get("LINKAGE_UPDATE_SCREENSHOT") == "1"

playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs it")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (.ci/run installs it)"),
]

# Counts distinct colours of a PNG in the browser itself (no imaging library needed).
_COLOURS_JS = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) { seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); }
  return seen.size;
}"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{base / 'linkage.db'}"
    with Store(url) as store:
        for night in two_nights(base / "input"):
            run_pipeline(night, store, RunConfig(), SECRET.encode())
        run_id = store.resolve_run("latest")
        ring = account_history(store, HOSTILE[0])[-1]["cluster_id"]
        write_report(store, run_id, base / "report")
        write_case(store, run_id, ring, base / "report" / "case.html")
    return base / "report", ring


@pytest.fixture(scope="module")
def store_path(report) -> Path:
    return report[0].parent / "linkage.db"


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    return problems


def _figures_drawn(page, name: str) -> None:
    figures = page.locator("svg")
    assert figures.count() >= 1, name
    for i in range(figures.count()):
        box = figures.nth(i).bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, (name, i)
        assert figures.nth(i).locator("rect, line, circle").count() > 0
    # Hostile text is text on the page, never elements or handlers.
    assert page.locator("script").count() == 0
    assert page.locator("[onmouseover], [onerror], img").count() == 0


def _not_blank(browser, png: bytes, name: str) -> None:
    blank = browser.new_page()
    try:
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        assert blank.evaluate(_COLOURS_JS, src) > 20, f"{name} looks blank"
    finally:
        blank.close()


def test_report_renders_in_chromium(report):
    folder, ring = report
    pages = [folder / "index.html", folder / "clusters" / page_name(ring), folder / "case.html"]
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems = _watch(page)
            shots = {}
            for path in pages:
                page.goto(path.as_uri(), wait_until="load")
                _figures_drawn(page, path.name)
                if path.name != "index.html":
                    assert HOSTILE[0] in page.inner_text("body")
                shots[path.name] = page.screenshot(full_page=False)
                if path.name == page_name(ring):
                    full_page = page.screenshot(full_page=True)
            # Every page links the glossary, and the glossary explains the plain names.
            page.goto((folder / "index.html").as_uri())
            page.click("text=glossary")
            assert page.url.endswith("/glossary.html")
            assert page.locator("dl.glossary dt").count() >= 20
            assert "shared identifiers" in page.inner_text("body")
            for name, png in shots.items():
                _not_blank(browser, png, name)
            assert not problems, problems
        finally:
            browser.close()
    if UPDATE:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(full_page)


def test_related_clusters_campaign_and_verdicts_in_chromium(tmp_path):
    url = f"sqlite:///{tmp_path / 'linkage.db'}"
    with Store(url) as store:
        store.upgrade()
        run_id = store.begin_run(config_json="{}", config_hash="0", seed=1,
                                 code_version="test", input_path="in/")
        store.publish_run(run_id, _record())
        add_label(store, "cluster", "cA", "false_positive", note=HOSTILE_NOTE, by="bob")
        add_label(store, "account", "a2", "watch", note="chargeback on 2025-06-02", by="ann")
        write_report(store, run_id, tmp_path / "report", min_score=0.4)
    folder = tmp_path / "report"
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems = _watch(page)
            page.goto((folder / "clusters" / "cB.html").as_uri(), wait_until="load")
            _figures_drawn(page, "cB")
            related = page.locator("section", has_text="Related clusters")
            assert related.locator("tr").count() == 3  # header, cA, cC
            # From a piece of the campaign to the other piece, then to the campaign page.
            related.locator("a", has_text="cA").click()
            page.wait_for_load_state()
            assert page.url.endswith("/clusters/cA.html")
            first = page.locator("section").first
            assert "Verdicts and labels" in first.inner_text()
            assert HOSTILE_NOTE in first.inner_text()  # the note is text, not an element
            related_shot = page.screenshot(full_page=False)
            page.locator("a", has_text="cA").first.click()
            page.wait_for_load_state()
            assert page.url.endswith("/campaigns/cA.html")
            _figures_drawn(page, "campaign")
            assert "What its clusters share (1 pairs)" in page.inner_text("body")
            campaign_shot = page.screenshot(full_page=True)
            for name, png in (("related", related_shot), ("campaign", campaign_shot)):
                _not_blank(browser, png, name)
            assert not problems, problems
        finally:
            browser.close()
    if UPDATE:
        (IMG / "report-related.png").write_bytes(related_shot)
        (IMG / "report-campaign.png").write_bytes(campaign_shot)


def test_large_cluster_drawn_by_groups_in_chromium(report, store_path, tmp_path, monkeypatch):
    # Drawn by groups above 10 accounts here, so that the test run's clusters are "large".
    monkeypatch.setattr(html, "MAX_DRAWN_ACCOUNTS", 10)
    with Store(f"sqlite:///{store_path}") as store:
        run_id = store.resolve_run("latest")
        biggest = max((c for c in store.clusters(run_id).to_pylist() if c["flagged"]),
                      key=lambda c: c["size"])
        out = tmp_path / "groups.html"
        out.write_text(html.render_cluster(store, run_id, biggest["cluster_id"]),
                       encoding="utf-8")
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems = _watch(page)
            page.goto(out.as_uri(), wait_until="load")
            _figures_drawn(page, "groups")
            figure = page.locator("section", has_text="Evidence graph")
            caption = figure.locator("figcaption").inner_text()
            assert "too many to draw one by one" in caption and "drawn as" in caption
            circles = figure.locator("svg circle")
            assert 2 <= circles.count() < biggest["size"]
            shot = figure.screenshot()
            _not_blank(browser, shot, "groups")
            assert not problems, problems
        finally:
            browser.close()
    if UPDATE:
        (IMG / "report-groups.png").write_bytes(shot)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_datasette_in_chromium(store_path):
    pytest.importorskip("datasette", reason="the browse extra installs it")
    import uvicorn

    from linkage.browse import app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app(store_path).app(), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "Datasette did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with playwright.sync_playwright() as p:
            browser = _launch(p)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(f"{base}/linkage/latest_clusters?flagged=1", wait_until="load")
                # The project's description of the view, and its cluster ids as links.
                assert "the clusters of the latest run" in page.inner_text("body")
                links = page.locator('td.col-cluster_id a[href*="/-/linkage/linkage/runs/"]')
                assert links.count() >= 1
                table_shot = page.screenshot(full_page=False)
                queries = json.loads(page.evaluate(
                    "fetch('/linkage.json').then(r => r.text())"))["queries"]
                assert len(queries) >= 10
                problems = _watch(page)
                links.first.click()
                page.wait_for_load_state()
                assert "/-/linkage/linkage/runs/" in page.url
                _figures_drawn(page, "datasette cluster page")
                assert page.locator("h2", has_text="Reasons").count() == 1
                page.click("text=overview")  # back to the database page
                page.wait_for_load_state()
                assert page.url.rstrip("/").endswith("/linkage")
                _not_blank(browser, table_shot, "datasette")
                assert not problems, problems
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    if UPDATE:
        (IMG / "datasette.png").write_bytes(table_shot)
