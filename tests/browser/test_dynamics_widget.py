"""Dynamics widget in headless Chromium: the offline snapshot, and the live view in JupyterLab.

Offline: ``widget.offline_html()`` goes into a bare page opened from file:// with every request
other than file:/blob:/data: aborted and recorded (as tests/browser/offline_page.py does, on
this module's one Chromium: Playwright's sync API allows one instance per thread). Driven like
a user: each run's heatmap cells are the Python side's values at the slider's step read through
the viridis table; the slider moves by keyboard (arrows, Home, End) and every heatmap follows;
clicking or pressing ←/→ on a curve panel picks a step; tooltips on curves, cells and scatter
points carry the numbers; hostile run labels stay literal text; light and dark themes.

Live: a notebook written into the `jupyter_lab` fixture's root shows a Dynamics widget; the
slider moved by keyboard reaches the kernel (``w.step_index``) and the heatmaps show the
kernel's values at the new step; setting ``w.step`` in the kernel moves the slider.

Screenshots go to build/screenshots/dynamics_*.png.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mechscope import dynamics
from mechscope.dynamics import DynamicsResult
from mechscope.widgets.dynamics import Dynamics
from tests.browser import offline_page
from tests.browser.lab import SCREENSHOTS, Lab
from tests.browser.lab_notebook import open_notebook
from tests.browser.offline_page import OfflinePage, open_offline, page_html

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

HOSTILE = "</script><img src=x onerror=window.__pwned=1>"
ROOT = ".ms-dyn"
HEAT = ".ms-dyn canvas.ms-dyn-heat"
CURVE = ".ms-dyn canvas.ms-dyn-curve"
SLIDER = ".ms-dyn input.ms-dyn-range"

# js/lib/colors.ts viridis stops; the table interpolates them linearly over 256 entries
VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
           (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)]


def viridis(v: float, lo: float = 0.0, hi: float = 1.0) -> tuple[int, int, int]:
    """Colour the widget gives value ``v`` (colorIndex + colorTable of js/lib/colors.ts)."""
    i = max(0, min(255, round((v - lo) / (hi - lo) * 255)))
    x = i / 255 * (len(VIRIDIS) - 1)
    k = min(int(math.floor(x)), len(VIRIDIS) - 2)
    f = x - k
    return tuple(round(VIRIDIS[k][c] * (1 - f) + VIRIDIS[k + 1][c] * f) for c in range(3))  # type: ignore[return-value]


def sigmoid(steps, centre, lo, hi, width=0.2):
    x = np.log1p(steps)
    return lo + (hi - lo) / (1 + np.exp(-(x - np.log1p(centre)) / width))


def make_result() -> DynamicsResult:
    """Three runs; run r's head (1, r) becomes an induction head at step 100 * (r + 1) while its
    repeated-token loss falls; other heads keep distinct, readable values."""
    steps = np.array(dynamics.log_schedule(600, 30))
    n = len(steps)
    base = np.array([[0.05, 0.1, 0.15, 0.2], [0.25, 0.3, 0.35, 0.4]])
    ind = np.broadcast_to(base, (3, n, 2, 4)).copy()
    beh = np.zeros((3, n, 3))
    for r in range(3):
        ind[r, :, 1, r] = sigmoid(steps, 100 * (r + 1), 0.04, 0.95)
        beh[r, :, 0] = 4.2
        beh[r, :, 1] = sigmoid(steps, 100 * (r + 1), 4.1, 0.1)
        beh[r, :, 2] = beh[r, :, 1] - 4.2
    return DynamicsResult(runs=["seed0", "seed1", HOSTILE], seeds=[0, 1, 2], steps=steps,
                          induction=ind.astype(np.float32),
                          prev_token=np.full_like(ind, 0.2, dtype=np.float32),
                          behaviour=beh.astype(np.float32), metric_names=list(dynamics.BEHAVIOUR))


@pytest.fixture(scope="module")
def open_page(chromium, tmp_path_factory):
    """``open(widget, name, dark=False)``: the widget's offline snapshot in a page of this
    module's Chromium, from file://, every non-local request aborted and recorded."""
    folder = tmp_path_factory.mktemp("dynamics-offline")
    pages = []

    def opener(widget, name: str, dark: bool = False) -> OfflinePage:
        snapshot = widget.offline_html()
        assert snapshot is not None, "widget produced no offline snapshot"
        page = open_offline(chromium, folder / f"{name}{'-dark' if dark else ''}.html",
                            page_html(snapshot, dark), viewport={"width": 1200, "height": 800})
        pages.append(page.page)
        return page

    yield opener
    for page in pages:
        page.close()


def assert_clean(pg) -> None:
    offline_page.assert_clean(pg, "img, b")


def heat_colours(pg, run: int) -> list[list[list[int]]]:
    """RGB at a point inside every cell of run ``run``'s heatmap, away from outlines."""
    return pg.page.evaluate(
        """(run) => { const c = document.querySelectorAll('canvas.ms-dyn-heat')[run];
             const cw = +c.dataset.cellW, ch = +c.dataset.cellH;
             const rows = c.height / ch, cols = c.width / cw, out = [];
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             for (let r = 0; r < rows; r++) { const row = [];
               for (let k = 0; k < cols; k++) {
                 const x = k * cw + Math.floor(cw / 2), y = r * ch + Math.floor(ch / 2);
                 const i = (y * c.width + x) * 4; row.push([d[i], d[i + 1], d[i + 2]]); }
               out.push(row); }
             return out; }""", run)


def assert_heatmaps_show(pg, w: Dynamics) -> None:
    values = w.heatmap  # (runs, rows, cols) at the widget's step, from the kernel side
    for r in range(values.shape[0]):
        got = heat_colours(pg, r)
        for i in range(values.shape[1]):
            for j in range(values.shape[2]):
                want = viridis(float(values[r, i, j]), w.vmin, w.vmax)
                assert all(abs(a - b) <= 1 for a, b in zip(got[i][j], want, strict=True)), \
                    (r, i, j, got[i][j], want, float(values[r, i, j]))


def step_text(pg) -> str:
    return pg.page.locator(".ms-dyn-steplabel").inner_text()


def tooltip(pg) -> str:
    return pg.page.locator(".ms-dyn .ms-tooltip").inner_text()


def test_slider_keyboard_drives_every_heatmap(open_page):
    result = make_result()
    w = Dynamics(result, step=200)
    pg = open_page(w, "dynamics_synthetic")
    page = pg.page
    steps = result.steps.tolist()
    k = steps.index(198)
    assert page.get_attribute(ROOT, "data-step-index") == str(k)
    assert step_text(pg) == f"step 198 (checkpoint {k + 1} of {len(steps)})"
    assert page.locator(CURVE).count() == 3 and page.locator(HEAT).count() == 3
    assert page.get_attribute(SLIDER, "aria-valuetext") == "step 198"
    assert_heatmaps_show(pg, w)
    pg.screenshot("dynamics_synthetic")

    # keyboard on the slider: each arrow moves one checkpoint, every heatmap follows
    page.focus(SLIDER)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute(ROOT, "data-step") == str(steps[k - 2])
    w.step_index = k - 2  # the same step on the Python side: the colours must match it
    assert_heatmaps_show(pg, w)
    page.keyboard.press("Home")
    assert step_text(pg) == f"step 0 (checkpoint 1 of {len(steps)})"
    w.step_index = 0
    assert_heatmaps_show(pg, w)
    page.keyboard.press("End")
    assert page.get_attribute(ROOT, "data-step") == "600"
    w.step_index = len(steps) - 1
    assert_heatmaps_show(pg, w)
    # the induction heads at the end: head (1, r) of run r is the bright one, outlined
    last = heat_colours(pg, 2)
    assert last[1][2] == list(viridis(float(result.induction[2, -1, 1, 2]), w.vmin, w.vmax))
    # every curve panel draws both curves in their colours and marks the step
    for r in range(3):
        assert page.locator(CURVE).nth(r).get_attribute("data-step") == "600"
    colours = page.evaluate(
        """() => { const c = document.querySelector('canvas.ms-dyn-curve');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             const seen = new Set(); for (let i = 0; i < d.length; i += 4) seen.add(d[i] + ',' + d[i+1] + ',' + d[i+2]);
             return [seen.has('78,121,167'), seen.has('242,142,43')]; }""")
    assert colours == [True, True]
    assert_clean(pg)


def test_curves_tooltips_scatter_and_hostile_labels(open_page):
    result = make_result()
    w = Dynamics(result)
    pg = open_page(w, "dynamics_interact")
    page = pg.page
    steps = result.steps.tolist()

    # hostile run labels are literal text (panel labels and the stats lines)
    labels = page.locator(".ms-dyn-curves .ms-dyn-label").all_text_contents()
    assert labels == ["seed0", "seed1", HOSTILE]
    assert page.locator(".ms-dyn-heats .ms-dyn-label").all_text_contents() == labels
    assert HOSTILE in page.locator(".ms-dyn-stats").inner_text()
    assert page.locator(".ms-dyn-heats .ms-rowlabels").first.all_text_contents()[0].startswith("L0")

    # a click on a curve panel picks the nearest checkpoint; ←/→ on the panel step through them
    curve = page.locator(CURVE).nth(1)
    box = curve.bounding_box()
    x0, x1 = 38, 260 - 40  # the plot's left and right edges (MARGIN in dynamics.ts)
    target = steps.index(102)
    frac = math.log1p(102) / math.log1p(600)
    page.mouse.click(box["x"] + x0 + frac * (x1 - x0), box["y"] + 60)
    assert page.get_attribute(ROOT, "data-step") == "102"
    lines = tooltip(pg).split("\n")
    assert lines[0] == "seed1  |  step 102"
    s_val = float(result.curve("induction")[1, target])
    b_val = float(result.curve("repeated_loss")[1, target])
    assert lines[1] == f"induction (best unit): {s_val:#.4g}"
    assert lines[2] == f"repeated_loss: {b_val:#.4g}"
    page.focus(CURVE + ":nth-of-type(1)")
    curve.focus()
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(ROOT, "data-step") == str(steps[target + 1])
    assert page.locator(SLIDER).input_value() == str(target + 1)
    w.step_index = target + 1
    assert_heatmaps_show(pg, w)

    # hover a heatmap cell of the hostile run: run label, step, cell and value
    heat = page.locator(HEAT).nth(2)
    hb = heat.bounding_box()
    cw, ch = float(heat.get_attribute("data-cell-w")), float(heat.get_attribute("data-cell-h"))
    page.mouse.move(hb["x"] + 2.5 * cw, hb["y"] + 1.5 * ch)
    v = float(w.heatmap[2, 1, 2])
    assert tooltip(pg) == f"{HOSTILE}  |  step {steps[target + 1]}  |  L1 H2\ninduction: {v:#.4g}"
    # keyboard on a heatmap: a cursor cell, its value in the tooltip
    heat.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    assert tooltip(pg).endswith(f"L1 H1\ninduction: {float(w.heatmap[2, 1, 1]):#.4g}")

    # scatter: one point per run; arrows cycle through them with their emergence steps
    em = w.emergence
    page.focus(".ms-dyn-scatter")
    page.keyboard.press("ArrowRight")
    tip = tooltip(pg).split("\n")
    assert tip[0] == "seed0"
    assert tip[1].startswith(f"induction emerges at step {em.structure_steps[0]:.0f} (window ")
    assert tip[2].startswith(f"repeated_loss emerges at step {em.behaviour_steps[0]:.0f}")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert tooltip(pg).split("\n")[0] == HOSTILE
    page.mouse.move(0, 0)
    pg.screenshot("dynamics_interact")
    assert_clean(pg)


def test_dark_theme_and_selectivity_heatmaps(open_page):
    result = make_result()
    rng = np.random.default_rng(0)
    sel = dataclasses.replace(
        result, selectivity=rng.random((3, len(result.steps), 2, 64)).astype(np.float32),
        selectivity_layers=[0, 1], selectivity_classes=["repeated", "fresh"])
    w = sel.show("selectivity", "repeated_loss", step=300)
    pg = open_page(w, "dynamics_selectivity", dark=True)
    page = pg.page
    colour = page.locator(".ms-dyn .ms-title").evaluate("(n) => getComputedStyle(n).color")
    assert colour == "rgb(224, 224, 224)"  # light text on the dark page
    heat = page.locator(HEAT).first
    assert heat.get_attribute("data-cell-w") == "3"  # 64 neurons squeezed into the panel
    assert_heatmaps_show(pg, w)
    pg.screenshot("dynamics_selectivity_dark")
    w2 = Dynamics(result)
    pg2 = open_page(w2, "dynamics_dark", dark=True)
    pg2.screenshot("dynamics_dark")
    assert_clean(pg)
    assert_clean(pg2)


# ---- live, in JupyterLab ---------------------------------------------------------------------

LIVE_NB = "lab-dynamics.ipynb"
LIVE_CELLS = [
    "import numpy as np\nfrom mechscope import dynamics\n"
    "steps = np.array(dynamics.log_schedule(600, 30))\n"
    "sig = lambda c, lo, hi: lo + (hi - lo) / (1 + np.exp(-(np.log1p(steps) - np.log1p(c)) / 0.2))\n"
    "ind = np.broadcast_to(np.array([[0.05, 0.1, 0.15, 0.2], [0.25, 0.3, 0.35, 0.4]]), "
    "(3, len(steps), 2, 4)).copy()\n"
    "beh = np.zeros((3, len(steps), 3))\n"
    "for r in range(3):\n"
    "    ind[:, :, 1, r][r] = sig(100 * (r + 1), 0.04, 0.95)\n"
    "    beh[r, :, 0], beh[r, :, 1] = 4.2, sig(100 * (r + 1), 4.1, 0.1)\n"
    "result = dynamics.DynamicsResult(runs=['seed0', 'seed1', " + repr(HOSTILE) + "], "
    "seeds=[0, 1, 2], steps=steps, induction=ind, prev_token=ind * 0 + 0.2, behaviour=beh, "
    "metric_names=list(dynamics.BEHAVIOUR))",
    "w = result.show(step=100)\nw",
]
class LivePage:
    """The live view's page with the helpers the offline assertions use."""

    def __init__(self, page):
        self.page = page


def test_live_slider_round_trip_in_jupyterlab(jupyter_lab: Lab, chromium):
    with open_notebook(jupyter_lab, chromium, LIVE_NB, LIVE_CELLS) as nb:
        page = nb.page
        root = page.locator('.jp-Notebook .jp-Cell').nth(2).locator(
            '.jp-OutputArea-output [data-ms-ready="1"] > .ms-dyn')
        root.wait_for(state="attached", timeout=60_000)
        assert root.count() == 1  # the live anywidget view, not the text/html snapshot
        assert page.locator(".mechscope-snapshot").count() == 0
        live = LivePage(page)
        steps = nb.json("w.step_values.tolist()")
        k = nb.json("w.step_index")
        assert steps[k] == 102 and root.get_attribute("data-step") == "102"

        lo, hi = nb.json("[w.vmin, w.vmax]")

        def heatmaps_match_kernel() -> None:
            values = np.array(nb.json("w.heatmap.tolist()"))
            for r in range(values.shape[0]):
                got = heat_colours(live, r)
                for i in range(values.shape[1]):
                    for j in range(values.shape[2]):
                        want = viridis(float(values[r, i, j]), lo, hi)
                        assert all(abs(a - b) <= 1 for a, b in zip(got[i][j], want, strict=True))

        heatmaps_match_kernel()
        # keyboard on the slider -> the kernel's step_index -> the heatmaps
        slider = root.locator("input.ms-dyn-range")
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        nb.wait_value("w.step_index", k + 2)
        assert root.get_attribute("data-step") == str(steps[k + 2])
        heatmaps_match_kernel()
        page.keyboard.press("Home")
        nb.wait_value("w.step", 0)
        heatmaps_match_kernel()
        # the kernel moves the slider
        nb.eval("setattr(w, 'step', 600)")
        page.wait_for_function("(n) => n.dataset.step === '600'", arg=root.element_handle(),
                               timeout=30_000)
        assert slider.input_value() == str(len(steps) - 1)
        heatmaps_match_kernel()
        assert root.locator(".ms-dyn-curves .ms-dyn-label").all_text_contents()[2] == HOSTILE
        assert page.evaluate("window.__pwned") is None
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(SCREENSHOTS / "dynamics_lab.png"))
        assert nb.page_errors == [] and nb.dialogs == []
