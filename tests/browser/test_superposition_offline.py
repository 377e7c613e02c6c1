"""`Superposition`'s offline snapshot in headless Chromium, network cut: all three canvases
painted, the sparsity selector and a phase-diagram click redraw, hover readouts equal the
Python values, hostile feature labels stay text; and live in JupyterLab (select -> kernel,
hover -> ``hovered``, kernel -> page). Screenshots: build/screenshots/superposition*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mechscope.toys import superposition
from mechscope.widgets.superposition import Superposition
from tests.browser import lab_notebook
from tests.browser.offline_page import (
    assert_clean,
    canvas_pixel,
    open_offline,
    page_html,
    visible_token,
)
from tests.hostile import CATALOGUE
from tests.hostile_superposition import make

pytestmark = pytest.mark.browser

CELL = 22  # px per feature row for n <= 14 (MAX_PANEL 320 / n, at most 22)


@pytest.fixture(scope="module")
def open_page(chromium, tmp_path_factory) -> Iterator[Any]:
    """``open(widget, name)``: its offline snapshot in the module's one Chromium (Playwright's
    sync API allows one per thread, and the live test needs the ``chromium`` fixture too)."""
    tmp = tmp_path_factory.mktemp("superposition-pages")

    def open_(widget: Superposition, name: str):
        snapshot = widget.offline_html()
        assert snapshot is not None
        return open_offline(chromium, tmp / f"{name}.html", page_html(snapshot))

    yield open_


def canvas_hash(pg, selector: str) -> int:
    return pg.page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let h = 0; for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) | 0; return h; }""",
        selector,
    )


def hover(pg, selector: str, x: float, y: float) -> str:
    box = pg.page.locator(selector).bounding_box()
    pg.page.mouse.move(box["x"] + x, box["y"] + y)
    return pg.page.locator(".ms-tooltip").inner_text()


def number(text: str, after: str) -> float:
    match = re.search(re.escape(after) + r"\s*([-+0-9.e]+)", text)
    assert match, f"{after!r} not in {text!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def res():
    return superposition(n_features=8, n_hidden=3, sparsities=(0.0, 0.9, 0.99), seeds=(0, 1),
                         steps=1500, batch=256, progress_bar=False)


GRAM, BARS, PHASE = ("canvas[data-panel='gram']", "canvas[data-panel='bars']",
                     "canvas[data-panel='phase']")


def test_paints_switches_sparsity_and_reads_out_on_hover(open_page, res):
    w = Superposition(res, seed_index=1)
    pg = open_page(w, "superposition")
    gram = res.gram()[0, 1]
    # W^T W: the largest diagonal entry is red (positive, diverging scale); a ~0 entry ~white
    top = int(np.argmax(np.diag(gram)))
    r, g, b, _ = canvas_pixel(pg, GRAM, top * CELL + CELL / 2, top * CELL + CELL / 2)
    assert r > b + 40 and g < 100
    small = np.argwhere(np.abs(gram) < 0.02 * np.abs(res.gram()).max())
    if len(small):
        i, j = small[0]
        assert min(canvas_pixel(pg, GRAM, j * CELL + CELL / 2, i * CELL + CELL / 2)[:3]) > 215
    # bars: each feature's bar ends at its norm (160 px for a norm of 1.25)
    for f in (0, int(np.argmin(res.norms[0, 1]))):
        end = float(res.norms[0, 1, f]) / 1.25 * 160
        y = f * CELL + CELL / 2
        assert canvas_pixel(pg, BARS, end - 3, y)[3] == 255
        assert canvas_pixel(pg, BARS, end + 3, y)[3] == 0 or abs(end + 3 - 128) < 2  # norm-1 line
    # phase diagram: painted, opaque everywhere
    assert canvas_pixel(pg, PHASE, 5, 5)[3] == 255
    # hover readouts equal the Python values
    tip = hover(pg, GRAM, 1 * CELL + 5, 0 * CELL + 5)
    assert number(tip, "] =") == pytest.approx(gram[0, 1], abs=2e-3)
    tip = hover(pg, BARS, 5, 2 * CELL + 5)
    assert number(tip, "norm") == pytest.approx(res.norms[0, 1, 2], abs=2e-3)
    assert number(tip, "superposition") == pytest.approx(res.superposition[0, 1, 2], abs=2e-3)
    tip = hover(pg, PHASE, 2 * 40 + 5, 1 * CELL + 5)  # 3 sparsities: 40 px columns
    dim = res.summary("dimensionality")
    assert number(tip, "dimensionality") == pytest.approx(dim.mean[2, 1], abs=2e-3)
    assert "S = 0.99" in tip
    pg.screenshot("superposition")
    # the select control switches sparsity and redraws W^T W and the bars
    before = (canvas_hash(pg, GRAM), canvas_hash(pg, BARS))
    pg.page.select_option(".ms-sup select[aria-label='sparsity']", "2")
    pg.page.wait_for_selector(".ms-sup[data-sparsity-index='2']")
    assert canvas_hash(pg, GRAM) != before[0] and canvas_hash(pg, BARS) != before[1]
    tip = hover(pg, GRAM, 1 * CELL + 5, 0 * CELL + 5)
    assert number(tip, "] =") == pytest.approx(res.gram()[2, 1, 0, 1], abs=2e-3)
    pg.screenshot("superposition-sparse")
    # a click on a phase-diagram column selects that sparsity
    box = pg.page.locator(PHASE).bounding_box()
    pg.page.mouse.click(box["x"] + 45, box["y"] + 5)
    pg.page.wait_for_selector(".ms-sup[data-sparsity-index='1']")
    assert pg.page.locator(".ms-sup select[aria-label='sparsity']").input_value() == "1"
    # the keyboard steps through the sparsities (the focused phase diagram owns its arrows)
    pg.page.focus(PHASE)
    pg.page.keyboard.press("ArrowRight")
    pg.page.wait_for_selector(".ms-sup[data-sparsity-index='2']")
    pg.page.keyboard.press("ArrowRight")  # stays at the last
    pg.page.keyboard.press("ArrowLeft")
    pg.page.wait_for_selector(".ms-sup[data-sparsity-index='1']")
    assert_clean(pg)


def test_hostile_labels_stay_text(open_page):
    w = make(CATALOGUE[1])
    pg = open_page(w, "superposition-hostile")
    assert pg.page.locator(".ms-sup .ms-title").inner_text() == CATALOGUE[1]
    rows = pg.page.evaluate(
        "Array.from(document.querySelectorAll('.ms-sup .ms-rowlabels')[0].children).map(d => d.textContent)")
    assert rows == [visible_token(s) for s in w.feature_labels]
    tip = hover(pg, BARS, 5, CELL / 2)
    assert CATALOGUE[0] in tip  # JSON-quoted label, as text
    assert_clean(pg, "script:not([type]), img, svg, a")


LIVE_CELLS = [
    "from mechscope.toys import superposition\n"
    "res = superposition(n_features=6, n_hidden=2, sparsities=(0.0, 0.95), seeds=(0, 1),\n"
    "                    steps=300, batch=64, progress_bar=False)\n"
    "w = res.show()\n"
    "w",
]


@pytest.mark.timeout(600)
def test_live_in_jupyterlab(jupyter_lab, chromium):
    with lab_notebook.open_widget(jupyter_lab, chromium, "superposition_live.ipynb", LIVE_CELLS, 1,
                                  ".ms-sup", "canvas[data-panel='gram']") as (nb, root, gram):
        assert nb.cell(1).locator(".mechscope-placeholder .ms-sup").count() == 0  # the live view
        # the select sets the kernel's sparsity_index; the kernel's change redraws the page
        root.locator("select[aria-label='sparsity']").select_option("1")
        nb.wait_value("w.sparsity_index", 1)
        box = gram.bounding_box()
        nb.page.mouse.move(box["x"] + 2 * CELL + 5, box["y"] + 1 * CELL + 5)
        nb.wait_value("w.hovered", ["gram", "1", "2"])
        want = nb.json("float(res.gram()[1, 0, 1, 2])")
        tip = root.locator(".ms-tooltip").inner_text()
        assert number(tip, "] =") == pytest.approx(want, abs=2e-3)
        nb.eval("setattr(w, 'seed_index', 1) or setattr(w, 'sparsity_index', 0)")
        nb.page.wait_for_function("(el) => el.dataset.seedIndex === '1' && el.dataset.sparsityIndex === '0'",
                                  arg=root.element_handle(), timeout=lab_notebook.ROUND_TRIP_MS)
        assert root.locator("select[aria-label='seed']").input_value() == "1"
        lab_notebook.save(root, "superposition_lab")
