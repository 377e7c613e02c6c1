"""notebooks/01_tour.ipynb served by a real Voila (0.5) and driven by headless Chromium.

`tests.browser.servers.running_voila`: ``voila`` on 127.0.0.1 (free port, isolated Jupyter dirs,
a temp copy of notebooks/). Every request that is not to 127.0.0.1 (or file:, data:, blob:) is
aborted and recorded. Checked: every mechscope widget the tour shows is a live view with a
painted canvas, and hovering two cells changes its hover readout (each naming its cell); the
page never says "model not found" / "Error displaying widget"; the patching cell's progress
bar is gone or reads 100% (`mechscope.progress`); the only aborted requests are the two Font
Awesome stylesheets that Voila's ``lab`` template links from a CDN (no Voila option removes
them; a local template overriding its ``notebook_css`` block would). A second, small notebook
runs `mechscope.progress` bars (a loop, a hand-updated bar, `mechscope.collect`) and checks that
none leaves a widget behind. Screenshots: build/screenshots/voila-*.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import nbformat
import pytest

from tests.browser.lab_notebook import save
from tests.browser.servers import Voila, check_widget, page_text_errors, running_voila

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

NOTEBOOK = "01_tour.ipynb"
PROBE = "progress_probe.ipynb"
LOCAL = ("http://127.0.0.1:", "file:", "data:", "blob:")
#: what Voila's lab template links from the network (voila/templates/lab/index.html.j2)
TEMPLATE_CDN = {
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@%5E5/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@%5E5/css/v4-shims.min.css",
}
LOAD_TIMEOUT_MS = 420_000  # the page streams while the kernel runs every cell (patching on CPU)
RENDER_TIMEOUT_MS = 60_000
PROGRESS_WIDGET = ".widget-hprogress, .jupyter-widgets.widget-hbox"

PROBE_CELLS = [
    "import mechscope\nfrom mechscope.progress import progress",
    "for i in progress(range(40), desc='probe loop', unit='x'):\n    pass",
    "bar = progress(total=3, desc='probe by hand')\nbar.update(3)\nbar.close()",
    "store = mechscope.collect(mechscope.tiny_model('llama'), ['a b c', 'd e f'], sites=['resid'],"
    " layers=[0])\nstore.n_rows",
]


@dataclass
class Page:
    page: Any
    seconds: float
    aborted: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def cell(self, i: int) -> Any:
        """The rendered cell ``i`` (0-based, as in the .ipynb; Voila numbers them from 1)."""
        return self.page.locator(f'[cell-index="{i + 1}"]')


def widget_cells(sources: list[str]) -> list[int]:
    """Code cells whose last line shows a result (``.show(...)``): one mechscope widget each."""
    return [i for i, src in enumerate(sources)
            if src.strip() and ".show(" in src.strip().splitlines()[-1]]


@pytest.fixture(scope="module")
def voila() -> Iterator[Voila]:
    with running_voila() as server:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in PROBE_CELLS]
        nbformat.write(nb, str(server.root / PROBE))
        yield server


def open_page(voila: Voila, chromium: Any, name: str, n_widgets: int) -> Page:
    """Render ``name`` (Voila runs it as the page streams), then wait for ``n_widgets`` drawn
    mechscope widgets and every widget output settled."""
    page = chromium.new_page()
    record = Page(page, 0.0)

    def route(r: Any) -> None:
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            record.aborted.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: record.page_errors.append(str(e)))
    page.on("dialog", lambda d: (record.dialogs.append(d.message), d.dismiss()))
    start = time.monotonic()
    page.goto(voila.render_url(name), timeout=LOAD_TIMEOUT_MS, wait_until="load")
    page.locator("#rendered_cells").wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_function(f"() => document.querySelectorAll('.ms-root[data-ms-ready=\"1\"], "
                           f"[data-ms-ready=\"1\"] > .ms-root').length >= {n_widgets}",
                           timeout=RENDER_TIMEOUT_MS)
    # every widget output settled: drawn, or failed ("Loading widget..." turns into the error)
    page.wait_for_function("() => !document.body.innerText.includes('Loading widget')",
                           timeout=RENDER_TIMEOUT_MS)
    record.seconds = time.monotonic() - start
    return record


@pytest.fixture(scope="module")
def tour(voila: Voila, chromium: Any) -> Iterator[tuple[Page, list[str]]]:
    nb = json.loads((voila.root / NOTEBOOK).read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) if c["cell_type"] == "code" else "" for c in nb["cells"]]
    page = open_page(voila, chromium, NOTEBOOK, len(widget_cells(sources)))
    print(f"\nvoila: tour rendered and drawn in {page.seconds:.1f} s")
    yield page, sources
    page.page.close()


def test_every_widget_draws_and_hovers(tour: tuple[Page, list[str]]) -> None:
    page, sources = tour
    cells = widget_cells(sources)
    assert len(cells) >= 4, cells  # two activation maps, the patching map, the hostile prompt
    assert page.page.locator(".ms-root").count() == len(cells)
    for i in cells:
        root = page.cell(i).locator(".jp-OutputArea-output .ms-root")
        assert root.count() == 1, f"cell {i}: {root.count()} mechscope widgets"
        print(check_widget(page.page, root, f"cell {i}"))
    assert page.page.locator(".mechscope-snapshot").count() == 0  # live views, not snapshots
    page.cell(0).scroll_into_view_if_needed()  # Voila scrolls an inner element, not the window
    save(page.page, "voila-tour")


def test_no_widget_error_and_the_patching_bar_is_finished(tour: tuple[Page, list[str]]) -> None:
    page, sources = tour
    assert page_text_errors(page.page) == []
    patching = next(i for i, src in enumerate(sources) if "mechscope.patch(" in src and "exact" in src)
    out = page.cell(patching).locator(".jp-OutputArea-output")
    texts = out.all_inner_texts()
    assert not any("Error" in t for t in texts), texts
    assert page.cell(patching).locator(PROGRESS_WIDGET).count() == 0, texts
    bars = [t for t in texts if "patching resid" in t]
    assert all("100%" in t for t in bars), bars  # finished (mechscope.progress) or no bar at all
    print(f"patching cell outputs: {[t[:80] for t in texts]}")
    page.cell(patching).scroll_into_view_if_needed()
    save(page.cell(patching), "voila-patching")
    assert page.dialogs == [] and page.page_errors == [], (page.dialogs, page.page_errors)


def test_only_the_templates_own_cdn_requests_are_aborted(tour: tuple[Page, list[str]]) -> None:
    page, _ = tour
    print(f"aborted: {sorted(set(page.aborted))}")
    assert set(page.aborted) == TEMPLATE_CDN, sorted(set(page.aborted))


def test_progress_bars_leave_no_widget_behind(voila: Voila, chromium: Any) -> None:
    page = open_page(voila, chromium, PROBE, 0)
    try:
        assert page_text_errors(page.page) == []
        assert page.page.locator(PROGRESS_WIDGET).count() == 0
        text = page.page.locator("#rendered_cells").inner_text()
        for line in ("probe loop: 100%", "probe by hand: 100%", "collect: 100%"):
            assert line in text.replace("\u2007", " "), text
        assert "40/40" in text and "3/3" in text and "2/2" in text, text
        assert set(page.aborted) == TEMPLATE_CDN, page.aborted
        assert page.page_errors == [], page.page_errors
    finally:
        page.page.close()
