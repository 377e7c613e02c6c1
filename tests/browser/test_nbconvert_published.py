"""Stock ``jupyter nbconvert --to html`` (what nbviewer runs) of the *published* tour, offline.

`publish_notebook` writes the executed tour's published copy (each mechscope output's offline
snapshot made from the stored widget state, no widget views, no progress bar, no stored
state); the real ``jupyter nbconvert --to html`` command (a subprocess, stock lab template, no
options) converts it; headless Debian Chromium opens the page from file:// with every request
that is not file:, data: or blob: aborted and recorded. All four widgets draw and answer a
hover; the only remote references are the template's own (require.js and MathJax as scripts,
mermaid imported only when a diagram is on the page), and nothing mechscope makes asks for the
network. The raw executed tour (state stored, not published) converts to widget views that
need the CDN html-manager and carry no snapshot: blank offline.
Screenshot: build/screenshots/nbconvert-published-tour.png.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mechscope.publish import publish_notebook
from tests.browser.offline_page import SCREENSHOTS
from tests.browser.published import TOUR_WIDGETS, executed_tour
from tests.browser.static_site import drawn_widgets, open_static, remote_scripts

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

#: The remote scripts nbconvert 7.17's lab template itself puts on every page.
TEMPLATE_SCRIPTS = (
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe",
)
#: ... and the modules its inline script imports only when the page holds a mermaid diagram.
TEMPLATE_IMPORTS = (
    "https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs",
    "https://cdnjs.cloudflare.com/ajax/libs/mermaid-layout-elk/0.1.9/mermaid-layout-elk.esm.min.mjs",
)
HTML_MANAGER = "@jupyter-widgets/html-manager"


def nbconvert(notebook: Path, out: Path) -> tuple[Path, float]:
    """``jupyter nbconvert --to html NOTEBOOK --output-dir OUT``: the page and the seconds taken."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "nbconvert", "--to", "html", str(notebook),
         "--output-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / f"{notebook.stem}.html", time.perf_counter() - start


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("nbconvert")
    report = publish_notebook(executed_tour(), tmp / "tour.ipynb", execute=False)
    assert (report.snapshots, report.missing_state) == (TOUR_WIDGETS, 0), report.line()
    html, seconds = nbconvert(tmp / "tour.ipynb", tmp / "html")
    print(f"nbconvert: {seconds:.1f} s, {html.stat().st_size} bytes")
    return html


def test_only_the_templates_own_remote_references(page: Path):
    text = page.read_text(encoding="utf-8")
    assert sorted(remote_scripts(text)) == sorted(TEMPLATE_SCRIPTS)
    assert HTML_MANAGER not in text and "widget-state+json" not in text and "widget-view+json" not in text
    modules = re.findall(r"import\(\s*['\"](https?://[^'\"]+)['\"]|from\s+['\"](https?://[^'\"]+)['\"]", text)
    assert {url for pair in modules for url in pair if url} <= set(TEMPLATE_IMPORTS)
    assert text.count('class="mechscope-snapshot"') == TOUR_WIDGETS


def test_published_tour_draws_and_hovers_offline(page: Path, chromium: Any):
    opened = open_static(chromium, page, TOUR_WIDGETS)
    try:
        found = drawn_widgets(opened)
        assert [w.kind for w in found] == ["heatmap", "heatmap", "patching_map", "heatmap"]
        for number, widget in enumerate(found, 1):
            assert widget.after and widget.after != widget.before, \
                f"widget {number} ({widget.kind}): the hover readout did not change"
        opened.page.locator(".mechscope-snapshot").first.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        opened.page.screenshot(path=str(SCREENSHOTS / "nbconvert-published-tour.png"), full_page=True)
        # aborted: the template's require.js and MathJax, nothing else (nothing of mechscope's)
        assert set(opened.blocked) <= {url.split("?")[0] for url in TEMPLATE_SCRIPTS} | set(TEMPLATE_SCRIPTS), \
            opened.blocked
        assert opened.errors == [] and opened.dialogs == [], (opened.errors, opened.dialogs)
        print(f"aborted (the template's): {opened.blocked}")
    finally:
        opened.page.close()


def test_raw_executed_tour_is_blank_for_mechscope_in_stock_nbconvert(tmp_path: Path):
    """Without publishing, nbconvert picks the widget views (they need the CDN html-manager,
    which cannot draw an anywidget offline) and the placeholders carry no data."""
    html, _ = nbconvert(executed_tour(), tmp_path)
    text = html.read_text(encoding="utf-8")
    assert text.count("application/vnd.jupyter.widget-view+json") >= TOUR_WIDGETS
    assert f"https://unpkg.com/{HTML_MANAGER}@" in text  # loaded by an inline script
    assert 'class="mechscope-snapshot"' not in text
