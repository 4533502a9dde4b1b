"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) through
Playwright. Every page loads from file:// without a console error or a failed request, every
figure renders with a nonzero size, hostile account ids stay text, and a screenshot is not
blank. The hostile ring's page screenshot is kept as docs/img/report.png when
``LINKAGE_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from linkage.config import RunConfig
from linkage.pipeline import run_pipeline
from linkage.reports.html import page_name, write_case, write_report
from linkage.reports.queries import account_history
from linkage.store import Store
from tests.report_data import HOSTILE, SECRET, two_nights

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "report.png"

playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs it")
pytestmark = [
    pytest.mark.slow,
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


def test_report_renders_in_chromium(report):
    folder, ring = report
    pages = [folder / "index.html", folder / "clusters" / page_name(ring), folder / "case.html"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
            shots = {}
            for path in pages:
                page.goto(path.as_uri(), wait_until="load")
                figures = page.locator("svg")
                assert figures.count() >= 1, path.name
                for i in range(figures.count()):
                    box = figures.nth(i).bounding_box()
                    assert box and box["width"] > 0 and box["height"] > 0, (path.name, i)
                    assert figures.nth(i).locator("rect, line, circle").count() > 0
                # Hostile ids are text on the page, never elements or handlers.
                assert page.locator("script").count() == 0
                assert page.locator("[onmouseover], [onerror], img").count() == 0
                if path.name != "index.html":
                    assert HOSTILE[0] in page.inner_text("body")
                shots[path.name] = page.screenshot(full_page=False)
                if path.name == page_name(ring):
                    full_page = page.screenshot(full_page=True)
            for name, png in shots.items():
                blank = browser.new_page()
                try:
                    src = "data:image/png;base64," + base64.b64encode(png).decode()
                    assert blank.evaluate(_COLOURS_JS, src) > 20, f"{name} looks blank"
                finally:
                    blank.close()
            assert not problems, problems
        finally:
            browser.close()
    if os.environ.get("LINKAGE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(full_page)
