"""LogitLens and Selectivity offline snapshots in headless Chromium, network shut off.

Each test writes ``widget.offline_html()`` into a bare HTML page, opens it from file:// with
every non-file/blob/data request aborted and recorded, then drives the widget like a user:
pixels on the canvas, hover/keyboard tooltips, the colour-mode switch, clicks that select a
neuron, and hostile tokens that must stay literal text. Screenshots go to build/screenshots/.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import mechscope
from mechscope.analysis.logit_lens import LogitLensResult
from mechscope.analysis.selectivity import SelectivityResult, selectivity_index
from mechscope.datasets import labelled_texts
from mechscope.widgets import LogitLens, Selectivity, decode_array
from tests.browser.offline_page import HOSTILE, HOSTILE2, assert_clean, canvas_pixel, visible_token

pytestmark = pytest.mark.browser

def canvas_hash(pg, selector: str) -> int:
    return pg.page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let h = 0; for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) | 0; return h; }""",
        selector,
    )


def tooltip(pg) -> str:
    return pg.page.locator(".ms-tooltip").inner_text()


# ---- LogitLens -----------------------------------------------------------------------------

def synthetic_lens() -> LogitLensResult:
    """3 layers x 4 positions, k=3, exact float16 probabilities, hostile tokens, one NaN cell."""
    vocab = {10: " Paris", 11: " the", 12: HOSTILE, 13: "\n", 14: HOSTILE2}
    ids = np.array([[[10, 11, 12], [11, 10, 13], [12, 13, 14], [13, 14, 10]],
                    [[11, 12, 13], [14, 10, 11], [10, 11, 12], [11, 12, 13]],
                    [[10, 12, 14], [10, 11, 12], [13, 10, 11], [14, 13, 12]]])
    probs = np.array([[0.5, 0.25, 0.125]] * 12, dtype=np.float32).reshape(3, 4, 3)
    probs[2, 0] = [0.875, 0.0625, 0.03125]
    probs[0, 3, 0] = np.nan
    return LogitLensResult(
        top_ids=ids, top_probs=probs, top_tokens=np.vectorize(vocab.get, otypes=[object])(ids),
        tokens=["The", HOSTILE, " of", HOSTILE2], layers=[0, 1, 2], prompt="...", model_name="toy",
        target=" Paris", target_id=10,
        target_prob=np.array([[0.5, 0.25, 0.0, 0.0], [0.0, 0.25, 0.5, 0.0], [0.875, 0.5, 0.0625, 0.0]],
                             dtype=np.float32),
        target_rank=np.array([[0, 1, 50, 2000], [30, 1, 0, 7], [0, 0, 1, 1]]),
    )


def cell_center(pg, layer: int, pos: int, n_layers: int) -> tuple[float, float]:
    box = pg.page.locator(".ms-lens canvas.ms-canvas").bounding_box()
    cw = float(pg.page.get_attribute(".ms-lens canvas.ms-canvas", "data-cell-w"))
    ch = float(pg.page.get_attribute(".ms-lens canvas.ms-canvas", "data-cell-h"))
    return box["x"] + (pos + 0.5) * cw, box["y"] + (n_layers - 1 - layer + 0.5) * ch


def test_lens_renders_hovers_switches_mode_and_keeps_tokens_literal(open_page):
    lens = synthetic_lens()
    pg = open_page(LogitLens(lens, color_mode="top1"), "lens_synthetic")
    sel = ".ms-lens canvas.ms-canvas"
    cw = float(pg.page.get_attribute(sel, "data-cell-w"))
    ch = float(pg.page.get_attribute(sel, "data-cell-h"))
    # canvas drawn: opaque cells; the 0.875 cell (top row, layer 2) differs from a 0.5 cell
    hi = canvas_pixel(pg, sel, 2, 2)  # layer 2 is the top row, position 0
    lo = canvas_pixel(pg, sel, cw + 2, 2)
    assert hi[3] == 255 and lo[3] == 255 and hi[:3] != lo[:3]
    # NaN cell (layer 0, position 3; bottom row) is the distinct grey
    assert canvas_pixel(pg, sel, 3 * cw + 3, 2 * ch + 3)[:3] == [128, 128, 128]

    # hover: the cell's top-k tokens JSON-quoted with their probabilities
    pg.page.mouse.move(*cell_center(pg, 2, 0, 3))
    text = tooltip(pg)
    assert text.splitlines()[0] == 'L2  |  position 0 "The"'
    assert ' 1. " Paris"  0.875' in text and f" 2. {json.dumps(HOSTILE)}  0.063" in text
    assert f" 3. {json.dumps(HOSTILE2)}  0.031" in text
    assert 'target " Paris": p 0.875, rank 0' in text
    pg.page.mouse.move(*cell_center(pg, 1, 1, 3))
    assert f" 1. {json.dumps(HOSTILE2)}  0.500" in tooltip(pg)
    pg.page.mouse.move(*cell_center(pg, 0, 1, 3))
    assert ' 3. "\\n"  0.125' in tooltip(pg)  # whitespace token visible, quoted
    pg.screenshot("lens_synthetic_hover")

    # keyboard: focus, then arrows move a cursor cell and show its tooltip
    pg.page.mouse.move(0, 0)
    pg.page.focus(sel)
    pg.page.keyboard.press("ArrowRight")
    assert tooltip(pg).splitlines()[0] == f"L0  |  position 1 {json.dumps(HOSTILE)}"
    pg.page.keyboard.press("ArrowUp")
    assert tooltip(pg).splitlines()[0].startswith("L1  |  position 1")
    assert pg.page.locator(".ms-lens .ms-cursor").is_visible()

    # the select control switches the colouring; pixels change, rank mode is log-scaled
    before = canvas_hash(pg, sel)
    pg.page.select_option(".ms-lens select", "target_rank")
    assert pg.page.get_attribute(".ms-lens", "data-mode") == "target_rank"
    after = canvas_hash(pg, sel)
    assert after != before
    rank0 = canvas_pixel(pg, sel, 2, 2)  # rank 0 -> top of the scale (viridis yellow)
    rank2000 = canvas_pixel(pg, sel, 3 * cw + 3, 2 * ch + 3)  # rank 2000 -> bottom (dark purple)
    assert rank0[0] > 200 and rank0[1] > 200 and rank2000[1] < 20
    pg.page.select_option(".ms-lens select", "target_prob")
    assert canvas_hash(pg, sel) not in (before, after)
    pg.screenshot("lens_synthetic_target_prob")

    # hostile tokens are text: in labels (textContent) and the tooltip, never markup
    labels = pg.page.locator(".ms-lens .ms-collabels div").all_text_contents()
    assert labels == ["The", HOSTILE, " of", HOSTILE2]
    assert_clean(pg)


def test_lens_select_is_keyboard_operable_and_target_modes_disabled_without_target(open_page):
    lens = dataclasses.replace(synthetic_lens(), target=None, target_id=None, target_prob=None,
                               target_rank=None)
    pg = open_page(LogitLens(lens), "lens_no_target")
    assert pg.page.locator(".ms-lens option[value=target_rank]").is_disabled()
    assert pg.page.locator(".ms-lens option[value=target_prob]").is_disabled()
    assert pg.page.locator(".ms-lens select").input_value() == "top1"
    assert_clean(pg)


def test_long_lens_from_tiny_model_scrolls_horizontally(open_page):
    model = mechscope.tiny_model("gpt2")
    prompt = "hello world " * 15  # 120 tokens with the tiny tokenizer (context 128)
    lens = mechscope.logit_lens(model, prompt, top_k=3)
    w = lens.show()
    pg = open_page(w, "lens_tiny_long", dark=True)
    scroll = pg.page.locator(".ms-lens .ms-scroll")
    dims = scroll.evaluate("(s) => [s.scrollWidth, s.clientWidth, s.scrollLeft]")
    assert dims[0] > dims[1] + 100 and dims[2] == 0  # wider than its box: scrolls
    assert pg.page.locator(".ms-lens .ms-collabels div").count() == len(lens.tokens)
    # End key jumps the cursor to the last position and scrolls it into view
    pg.page.focus(".ms-lens canvas.ms-canvas")
    pg.page.keyboard.press("End")
    assert scroll.evaluate("(s) => s.scrollLeft") > 0
    last = len(lens.tokens) - 1
    first_line = tooltip(pg).splitlines()[0]
    assert first_line == f"L0  |  position {last} {json.dumps(lens.tokens[last])}"
    assert f" 1. {json.dumps(lens.top_tokens[0, last, 0])}" in tooltip(pg)
    pg.screenshot("lens_tiny_long_dark")
    assert_clean(pg)


# ---- Selectivity ---------------------------------------------------------------------------

def tiny_selectivity() -> SelectivityResult:
    model = mechscope.tiny_model("llama")
    sel = mechscope.selectivity(model, labelled_texts(n_per_class=4), layer=1)
    effect = np.random.default_rng(0).normal(size=sel.n_neurons).astype(np.float32)
    return dataclasses.replace(sel, ablation_effect=effect, ablation_metric="loss change")


def hist_bin_best(w: Selectivity, neuron: int, geo: dict) -> int:
    """What the front end selects on a click on ``neuron``'s histogram bar (40 bins)."""
    index = decode_array(w.index).astype(np.float64)
    bins = np.clip(np.floor((index - geo["xlo"]) / (geo["xhi"] - geo["xlo"]) * 40), 0, 39)
    members = np.flatnonzero((bins == bins[neuron]) & np.isfinite(index))
    return int(members[np.argmax(index[members])])


def test_selectivity_list_histogram_and_scatter_select_neurons(open_page):
    sel = tiny_selectivity()
    w = Selectivity(sel, top_n=20, n_examples=3)
    pg = open_page(w, "selectivity_tiny")
    ranked = decode_array(w.ex_neurons).tolist()
    detail = pg.page.locator(".ms-sel-detail")
    assert detail.get_attribute("data-neuron") == str(ranked[0])

    # histogram drawn: some opaque bar pixel near the axis
    geo = json.loads(pg.page.get_attribute("canvas.ms-sel-hist", "data-plot"))
    row = [canvas_pixel(pg, "canvas.ms-sel-hist", geo["left"] + x, geo["top"] + geo["height"] - 1)
           for x in range(0, int(geo["width"]), 3)]
    assert any(p[3] == 255 for p in row)

    # clicking a list entry updates the detail pane: heading, class means, top examples
    pg.page.locator(".ms-sel-list button").nth(4).click()
    n4 = ranked[4]
    assert detail.get_attribute("data-neuron") == str(n4)
    assert detail.locator(".ms-sel-head").inner_text() == f"neuron {n4}"
    assert pg.page.locator(".ms-sel-list button").nth(4).get_attribute("aria-pressed") == "true"
    assert detail.locator(".ms-sel-means .ms-cls").all_text_contents() == sel.classes
    examples = sel.top_examples(n4, n=3)
    rows = detail.locator(".ms-sel-ex")
    assert rows.count() == 3
    first = rows.nth(0).locator(".ms-tok").all_text_contents()
    assert first == [visible_token(t) for t in examples[0].tokens]
    assert rows.nth(0).locator(".ms-badge").inner_text() == examples[0].label
    acts = [float(a) for a in rows.nth(0).locator(".ms-tok").evaluate_all("(s) => s.map((x) => x.dataset.act)")]
    np.testing.assert_allclose(acts, examples[0].activations, rtol=2e-3, atol=1e-3)

    # keyboard: ArrowDown in the list moves to and selects the next neuron
    pg.page.locator(".ms-sel-list button").nth(4).focus()
    pg.page.keyboard.press("ArrowDown")
    assert detail.get_attribute("data-neuron") == str(ranked[5])

    # keyboard on the histogram: ArrowRight selects the best neuron of the first non-empty bar
    index = decode_array(w.index).astype(np.float64)
    bins = np.clip(np.floor((index - geo["xlo"]) / (geo["xhi"] - geo["xlo"]) * 40), 0, 39)
    pg.page.focus("canvas.ms-sel-hist")
    pg.page.keyboard.press("ArrowRight")
    assert detail.get_attribute("data-neuron") == str(hist_bin_best(w, int(np.nanargmin(bins)), geo))

    # clicking a histogram bar selects that bar's most selective neuron
    target = ranked[-1]
    box = pg.page.locator("canvas.ms-sel-hist").bounding_box()
    b = int(np.clip(np.floor((index[target] - geo["xlo"]) / (geo["xhi"] - geo["xlo"]) * 40), 0, 39))
    x = box["x"] + geo["left"] + (b + 0.5) * geo["width"] / 40
    y = box["y"] + geo["top"] + geo["height"] - 1
    pg.page.mouse.move(x, y)
    assert "neuron" in tooltip(pg) and f"click selects n{hist_bin_best(w, target, geo)}" in tooltip(pg)
    pg.page.mouse.click(x, y)
    assert detail.get_attribute("data-neuron") == str(hist_bin_best(w, target, geo))

    # clicking a scatter point selects the nearest neuron (may be outside the top list)
    sgeo = json.loads(pg.page.get_attribute("canvas.ms-sel-scatter", "data-plot"))
    effect = sel.ablation_effect.astype(np.float64)
    px = sgeo["left"] + (index - sgeo["xlo"]) / (sgeo["xhi"] - sgeo["xlo"]) * sgeo["width"]
    py = sgeo["top"] + (sgeo["yhi"] - effect) / (sgeo["yhi"] - sgeo["ylo"]) * sgeo["height"]
    pick = int(np.argmax(effect))
    nearest = int(np.argmin((px - px[pick]) ** 2 + (py - py[pick]) ** 2))
    sbox = pg.page.locator("canvas.ms-sel-scatter").bounding_box()
    before = canvas_hash(pg, "canvas.ms-sel-scatter")
    pg.page.mouse.click(sbox["x"] + px[pick], sbox["y"] + py[pick])
    assert detail.get_attribute("data-neuron") == str(nearest)
    assert canvas_hash(pg, "canvas.ms-sel-scatter") != before  # selection ring moved
    if nearest not in ranked:
        assert "top examples are kept for the 20 most selective" in detail.inner_text()
    pg.screenshot("selectivity_tiny")
    assert_clean(pg)


def hostile_selectivity() -> SelectivityResult:
    classes = ["animals", HOSTILE]
    texts = [(["The", " cat", HOSTILE], "animals"), ([HOSTILE2, " x", "\n"], HOSTILE), (["dog"], "animals")]
    acts = [np.array([[0.1, 0.0, 0.2, 0.0, 0.0], [2.0, 0.1, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]]),
            np.array([[0.0, 1.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0, 0.0], [0.3, np.nan, 0.0, 0.0, 0.0]]),
            np.array([[1.2, 0.0, 0.1, 0.0, 0.0]])]
    means = np.stack([np.concatenate([acts[0], acts[2]]).mean(0), np.nanmean(acts[1], 0)])
    index, preferred = selectivity_index(means)
    index = index.copy()
    index[4] = np.nan  # a NaN index is drawn in its own grey bar
    return SelectivityResult(
        classes=classes, class_means=means.astype(np.float32), index=index, preferred=preferred,
        texts=["".join(t) for t, _ in texts], text_labels=[lab for _, lab in texts],
        text_tokens=[t for t, _ in texts], token_acts=[a.astype(np.float32) for a in acts],
        layer=3, site="mlp", model_name="toy",
    )


def test_selectivity_hostile_tokens_stay_text_and_nan_is_distinct(open_page):
    w = Selectivity(hostile_selectivity(), n_examples=3)
    pg = open_page(w, "selectivity_hostile", dark=True)
    detail = pg.page.locator(".ms-sel-detail")
    # select neuron 1 (prefers the hostile class) through its list entry
    pg.page.locator(".ms-sel-list button[data-neuron='1']").click()
    assert detail.get_attribute("data-neuron") == "1"
    assert detail.locator(".ms-sel-means .ms-cls").all_text_contents() == ["animals", HOSTILE]
    first = detail.locator(".ms-sel-ex").nth(0)
    assert first.locator(".ms-badge").inner_text() == HOSTILE
    assert first.locator(".ms-tok").all_text_contents() == [HOSTILE2, " x", "↵"]
    assert "ms-tok-nan" in (first.locator(".ms-tok").nth(2).get_attribute("class") or "")
    # the NaN bar: grey, right of the histogram's axis
    geo = json.loads(pg.page.get_attribute("canvas.ms-sel-hist", "data-plot"))
    grey = canvas_pixel(pg, "canvas.ms-sel-hist", geo["left"] + geo["width"] + 13, geo["top"] + geo["height"] - 2)
    assert grey[3] == 255 and grey[0] == grey[1] == grey[2] >= 100  # grey (or its white hatch)
    # the list labels classes as text too, and a scatter is absent without ablation data
    assert HOSTILE in pg.page.locator(".ms-sel-list").inner_text()
    assert not pg.page.locator("canvas.ms-sel-scatter").is_visible()
    pg.screenshot("selectivity_hostile_dark")
    assert_clean(pg)
