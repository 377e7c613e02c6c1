"""PatchingMap over a dataset, offline snapshot in headless Chromium with the network cut.

A tiny-model head patching over 8 examples (hostile clean texts in the picker): the hover shows
each cell's mean with its interval, equal to the Python numbers; picking example i redraws the
map with that example's own values (pixels against the colour bar's scale); clicking a cell
draws its spread over the examples (one tick per example, the mean line, the interval band),
whose ticks name their example on hover and draw it on click. Screenshots:
build/screenshots/patching_map_dataset*.png.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import mechscope
from mechscope.widgets import decode_array
from tests.browser.lab_notebook import colour_table
from tests.browser.offline_page import HOSTILE, HOSTILE2, assert_clean, canvas_pixel, visible_token
from tests.browser.test_lab_widgets import DIVERGING
from tests.browser.test_patching_map_offline import MAP, center, corner, js_format

pytestmark = pytest.mark.browser

TABLE = colour_table(DIVERGING)
TIP = ".ms-pmap > .ms-tooltip"
STRIP = ".ms-pmap canvas.ms-spread-canvas"
ROWS = [
    {"clean": "The cat sat on the", "corrupt": "The dog sat on the", "answer": " the", "wrong": " of"},
    {"clean": "A cat sat on the mat", "corrupt": "A dog sat on the mat", "answer": " of", "wrong": " the"},
    {"clean": "The dog ran to the", "corrupt": "The cat ran to the", "answer": " the", "wrong": " of"},
    {"clean": "The cat ran to the", "corrupt": "The dog ran to the", "answer": " of", "wrong": " the"},
]
TEXTS = [f"example {i} " + ("x" * 70 if i == 5 else "") for i in range(8)]
TEXTS[1], TEXTS[3] = HOSTILE, "\u202e" + HOSTILE2


@pytest.fixture(scope="module")
def result():
    model = mechscope.tiny_model("llama", n_layers=3)
    rows = [dict(ROWS[i % 4]) for i in range(8)]
    r = mechscope.patch(model, mechscope.datasets.pairs(rows), site="heads", progress=False)
    shown = mechscope.datasets.pairs([dict(row, clean=t) for row, t in zip(rows, TEXTS, strict=True)])
    return dataclasses.replace(r, dataset=shown)


def tooltip(pg) -> list[str]:
    return pg.page.locator(TIP).inner_text().split("\n")


def interval(v: float, lo: float, hi: float) -> str:
    return f"{js_format(v)} [{js_format(lo)}, {js_format(hi)}]"


def assert_pixels(pg, want: np.ndarray) -> None:
    """Every cell's colour is its value on the diverging table over the canvas's data-lo/hi."""
    hi = float(pg.page.get_attribute(MAP, "data-hi"))
    assert hi == pytest.approx(float(np.nanmax(np.abs(want))), rel=1e-5)
    for (r, c), v in np.ndenumerate(want):
        k = round((v + hi) / (2 * hi) * 255)
        got = corner(pg, r, c)[:3]
        near = [TABLE[j] for j in (k - 1, k, k + 1) if 0 <= j < 256]
        assert min(max(abs(g - e) for g, e in zip(got, w, strict=True)) for w in near) <= 2, ((r, c), v, got)


def test_mean_interval_picker_and_spread(open_page, result):
    w = result.show()
    norm_low, norm_high = decode_array(w.norm_low), decode_array(w.norm_high)
    pg = open_page(w, "patching_map_dataset")
    page = pg.page
    assert page.get_attribute(".ms-pmap", "data-example") == "-1"
    assert_pixels(pg, result.normalized())

    # hover: the cell's mean with its interval, equal to the Python numbers
    r, c = 1, 2
    page.mouse.move(*center(pg, r, c))
    lines = tooltip(pg)
    assert lines[0] == "L1  |  head H2 (positions: all)"
    metric = interval(float(result.values[r, c]), float(result.ci_low[r, c]), float(result.ci_high[r, c]))
    assert lines[1] == f"logit_diff(answer, wrong): {metric}, 95% CI, n=8 (patched, mean)"
    norm = interval(float(result.normalized()[r, c]), float(norm_low[r, c]), float(norm_high[r, c]))
    raw = js_format(float(result.values[r, c] - result.corrupt_metric))
    assert lines[2] == f"normalised: {norm}   minus corrupt: {raw}"
    pg.screenshot("patching_map_dataset_hover")

    # the picker: the mean, then every example with its clean text as text (truncated)
    picker = page.locator(".ms-pmap select.ms-pmap-example")
    assert picker.get_attribute("aria-label") == "example"
    options = picker.locator("option").all_text_contents()
    assert options[0] == "mean of 8 examples"
    assert options[1:] == [f"{i}: {visible_token(t if len(t) <= 60 else t[:59] + '…')}" for i, t in enumerate(TEXTS)]
    assert picker.get_attribute("data-lm-suppress-shortcuts") == "true"

    # picking example 2 draws its own values; the hover shows that example's value
    page.select_option(".ms-pmap select.ms-pmap-example", "2")
    assert page.get_attribute(".ms-pmap", "data-example") == "2"
    own = result.normalized_per_example()[2]
    assert_pixels(pg, own)
    page.mouse.move(*center(pg, r, c))
    lines = tooltip(pg)
    assert lines[1] == f"logit_diff(answer, wrong): {js_format(float(result.per_example[2, r, c]))} (patched, example 2)"
    assert lines[2].startswith(f"normalised: {js_format(float(own[r, c]))}   minus corrupt: ")
    assert lines[3].startswith("example 2: clean ")
    raw_own = result.per_example[2] - result.corrupt_per_example[2]
    page.select_option(".ms-pmap select:not(.ms-pmap-example)", "raw")
    assert_pixels(pg, raw_own)
    page.select_option(".ms-pmap select:not(.ms-pmap-example)", "normalized")
    page.select_option(".ms-pmap select.ms-pmap-example", "-1")
    assert_pixels(pg, result.normalized())

    # a click: the spread of the cell over the examples beside the map
    page.mouse.click(*center(pg, r, c))
    strip = page.locator(STRIP)
    assert strip.get_attribute("data-n") == "8"
    head = page.locator(".ms-pmap .ms-spread-head").inner_text()
    assert head == "spread over 8 examples (normalised effect per example)"
    x0, x1 = float(strip.get_attribute("data-x0")), float(strip.get_attribute("data-x1"))
    per = result.normalized_per_example()[:, r, c]
    assert x0 <= per.min() and per.max() <= x1

    def x_of(v: float) -> float:
        return 8 + (v - x0) / (x1 - x0) * (320 - 16)

    tick = canvas_pixel(pg, STRIP, round(x_of(float(per[0]))) + 0.5, 50)
    assert tick[:3] == [25, 118, 210] or tick[:3] == [230, 120, 0], tick  # a tick per example
    mean = canvas_pixel(pg, STRIP, round(x_of(float(result.normalized()[r, c]))) - 0.5, 20)
    assert mean[3] == 255 and max(mean[:3]) < 60, mean  # the mean line, in the text's ink
    band = canvas_pixel(pg, STRIP, (x_of(float(norm_low[r, c])) + x_of(float(norm_high[r, c]))) / 2 + 3, 2)
    assert 0 < band[3] < 255 and band[2] > band[0], band  # the interval band, translucent blue
    key = page.locator(".ms-pmap .ms-spread-key").inner_text()
    assert key.startswith(f"mean {norm} (line, band)")
    # hover a tick: which example it is (text only); click it: that example is drawn
    box = strip.bounding_box()
    i = int(np.argmax(per))
    page.mouse.move(box["x"] + round(x_of(float(per[i]))) + 0.5, box["y"] + 50)
    tip = page.locator(".ms-pmap .ms-spread-tip").inner_text()
    assert f"example {i}: {js_format(float(per[i]))}" in tip
    same = [j for j in range(8) if abs(per[j] - per[i]) < 1e-9]
    page.mouse.click(box["x"] + round(x_of(float(per[i]))) + 0.5, box["y"] + 50)
    assert page.get_attribute(".ms-pmap", "data-example") == str(min(same))
    page.mouse.move(0, 0)
    pg.screenshot("patching_map_dataset_spread")
    assert HOSTILE in page.locator(".ms-pmap").inner_text() or json.dumps(HOSTILE) in page.locator(".ms-pmap").inner_text()
    assert_clean(pg)


def test_single_prompt_map_has_no_picker_and_fallback_says_so(open_page, result, monkeypatch):
    from mechscope.widgets import patching_examples

    monkeypatch.setattr(patching_examples, "MAX_PER_EXAMPLE", 10)
    w = result.show()
    pg = open_page(w, "patching_map_dataset_fallback", dark=True)
    page = pg.page
    assert page.locator(".ms-pmap select.ms-pmap-example").count() == 0
    assert "per-example values not sent" in page.locator(".ms-pmap > .ms-note").inner_text()
    page.mouse.move(*center(pg, 0, 1))
    assert ", 95% CI, n=8 (patched, mean)" in tooltip(pg)[1]
    page.mouse.click(*center(pg, 0, 1))
    assert page.locator(STRIP).count() == 0
    page.mouse.move(0, 0)
    pg.screenshot("patching_map_dataset_fallback_dark")
    assert_clean(pg)
