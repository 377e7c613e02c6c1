"""`make demo`'s page: notebooks/01_tour.ipynb published to one HTML file, opened offline.

``mechscope.publish.publish`` executes the tour (real kernel, embedded model) and exports it;
headless Debian Chromium opens the file from file:// with every request that is not file:,
data: or blob: aborted and recorded. Every widget must draw from its inlined snapshot with no
request, no page error and no dialog, and the hostile prompt of the last cell must stay text.
The full-page screenshot goes to build/screenshots/demo-tour.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mechscope.publish import PublishReport, publish
from tests.browser.offline_page import ARGS, CHROMIUM, SCREENSHOTS, cut_network

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(600)]

TOUR = Path(__file__).resolve().parents[2] / "notebooks" / "01_tour.ipynb"
HOSTILE = "<img src=x onerror=alert(1)>"
N_WIDGETS = 4  # activations, the same clipped, exact patching, the hostile-prompt activations

# Distinct colours and non-background pixels on each widget's largest canvas (the map).
CANVAS_STATS = """(root) => {
  const c = [...root.querySelectorAll('canvas')].sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const bg = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
  const colours = new Set(); let painted = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i + 3] > 0 && (d[i] !== bg[0] || d[i + 1] !== bg[1] || d[i + 2] !== bg[2])) painted++;
  }
  return {w: c.width, h: c.height, colours: colours.size, painted, total: d.length / 4};
}"""


@dataclass
class Demo:
    report: PublishReport
    html: str
    page: Any
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    """The tour published once, opened once in headless Chromium with the network cut."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian chromium: make chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'")

    out = tmp_path_factory.mktemp("demo") / "tour.html"
    report = publish(TOUR, out, progress=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            demo = Demo(report, out.read_text(encoding="utf-8"), page)
            cut_network(page, demo)
            page.goto(out.as_uri(), wait_until="load")
            page.wait_for_function(
                "n => { const w = document.querySelectorAll('[data-mechscope-widget]');"
                " return w.length >= n && [...w].every(e => e.dataset.ready === '1'); }",
                arg=N_WIDGETS, timeout=20_000)
            page.wait_for_timeout(300)  # let any late request or error surface
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "demo-tour.png"), full_page=True)
            yield demo
        finally:
            browser.close()


def test_report_lists_every_widget(demo: Demo):
    report = demo.report
    assert report.output.is_file() and report.size_bytes == report.output.stat().st_size
    assert len(report.widgets) == N_WIDGETS, report.lines()
    assert all(w.snapshot and w.kind for w in report.widgets), report.lines()
    assert [w.kind for w in report.widgets] == ["heatmap", "heatmap", "patching_map", "heatmap"]
    assert [w.cell for w in report.widgets] == [3, 6, 8, 12]
    assert "exact patching" in report.widgets[2].summary
    assert report.remote_refs == ()
    lines = report.lines()
    assert lines[0].startswith(f"wrote {report.output}")
    assert lines[1].startswith("widget 1: Heatmap ")


def test_html_needs_no_network(demo: Demo):
    assert not re.search(r"<script[^>]*\bsrc=", demo.html), "a <script src> is left in the page"
    assert not re.search(r"<link[^>]*\bhref=[\"']?(https?:)?//", demo.html)
    assert "application/vnd.jupyter.widget-state+json" not in demo.html
    assert "require.js" not in demo.html and "mathjax" not in demo.html.lower()


def test_page_loads_offline_without_errors(demo: Demo):
    assert demo.blocked == [], f"the page tried the network: {demo.blocked}"
    assert demo.errors == [], f"page errors: {demo.errors}"
    assert demo.dialogs == []


def test_every_widget_is_ready(demo: Demo):
    states = demo.page.eval_on_selector_all(
        "[data-mechscope-widget]", "els => els.map(e => [e.dataset.mechscopeWidget, e.dataset.ready])")
    assert states == [[w.kind, "1"] for w in demo.report.widgets]
    failed = demo.page.evaluate("document.body.innerText.includes('mechscope snapshot failed')")
    assert not failed


def test_every_canvas_is_drawn(demo: Demo):
    widgets = demo.page.query_selector_all("[data-mechscope-widget]")
    assert len(widgets) == N_WIDGETS
    for number, widget in enumerate(widgets, 1):
        stats = widget.evaluate(CANVAS_STATS)
        assert stats is not None, f"widget {number}: no sized canvas"
        assert stats["colours"] >= 10, f"widget {number}: only {stats['colours']} colours: {stats}"
        assert stats["painted"] > 0.9 * stats["total"], f"widget {number}: mostly blank: {stats}"
        assert widget.bounding_box()["height"] > 100, f"widget {number}: collapsed"


def test_hostile_prompt_stays_text(demo: Demo):
    page = demo.page
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert demo.dialogs == []
    # The last widget's column labels are the prompt's tokens, shown as text.
    last = page.query_selector_all("[data-mechscope-widget]")[-1]
    labels = last.eval_on_selector_all(".ms-collabels > div", "ds => ds.map(d => d.textContent)")
    assert HOSTILE in "".join(labels), labels
    assert last.evaluate("el => el.querySelectorAll('*:not(div):not(canvas):not(pre):not(span):not(button)')"
                         ".length") == 0
    assert HOSTILE in page.evaluate("document.body.textContent")
