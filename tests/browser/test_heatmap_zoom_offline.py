"""A 1000 x 1000 Heatmap's offline snapshot in headless Chromium, network shut off: pooling and zoom.

The map is a gradient plus one hot cell, sent quantised (uint8). Every canvas pixel is checked
against an independent numpy painter (block means of the dequantised array -> js/lib/colors.ts's
viridis table), so a pooled pixel must be the mean of its block (one hot cell in a 2x2 block
moves it by a quarter of the contrast: it neither vanishes nor dominates). Zooming with the
keyboard gives the hot cell its own pixels, hover names the exact cell, drag and wheel zoom too.
Screenshots: build/screenshots/heatmap_zoom_*.png.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from mechscope.widgets import Heatmap
from mechscope.widgets.codec import decode_array

pytestmark = pytest.mark.browser

N = 1000
HOT = (500, 702)  # even indices: at full view (2 cells per pixel) a whole-pixel pointer reaches it
HOT_VALUE = 4.0
HOSTILE = "<b>hot</b>"
CANVAS = ".ms-heatmap canvas.ms-canvas"

#: js/lib/colors.ts STOPS.viridis
VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
           (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)]


def colour_table(stops: list[tuple[int, int, int]]) -> np.ndarray:
    """colors.ts colorTable: 256 linear interpolations, stored as Uint8Clamped (round half even)."""
    s = np.array(stops, dtype=np.float64)
    x = np.arange(256) / 255 * (len(s) - 1)
    k = np.minimum(np.floor(x).astype(int), len(s) - 2)
    f = (x - k)[:, None]
    return np.clip(np.rint(s[k] * (1 - f) + s[k + 1] * f), 0, 255).astype(np.uint8)


TABLE = colour_table(VIRIDIS)


def expected_canvas(arr: np.ndarray, view: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """What heatmap.ts should draw, computed independently: each pixel shows the NaN-aware mean of
    the fr x fc block (aligned to the array's origin) holding the cell at the pixel's centre."""
    r0, r1, c0, c1 = view
    span_r, span_c = r1 - r0, c1 - c0
    fr, fc = math.ceil(span_r / height), math.ceil(span_c / width)
    rows, cols = arr.shape
    pr, pc = math.ceil(rows / fr) * fr, math.ceil(cols / fc) * fc
    padded = np.full((pr, pc), np.nan)
    padded[:rows, :cols] = arr
    ok = np.isfinite(padded)
    sums = np.where(ok, padded, 0.0).reshape(pr // fr, fr, pc // fc, fc).sum(axis=(1, 3))
    counts = ok.reshape(pr // fr, fr, pc // fc, fc).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan).astype(np.float32)
    by = (r0 + np.floor((np.arange(height) + 0.5) * span_r / height).astype(int)) // fr
    bx = (c0 + np.floor((np.arange(width) + 0.5) * span_c / width).astype(int)) // fc
    vals = means[by][:, bx].astype(np.float64)
    finite = arr[np.isfinite(arr)].astype(np.float64)
    lo, hi = finite.min(), finite.max()
    idx = np.clip(np.floor((vals - lo) / (hi - lo) * 255 + 0.5), 0, 255)
    rgb = TABLE[np.nan_to_num(idx).astype(int)]
    rgb[~np.isfinite(vals)] = 128
    return rgb


def colour_of(arr: np.ndarray, value: float) -> np.ndarray:
    finite = arr[np.isfinite(arr)].astype(np.float64)
    lo, hi = finite.min(), finite.max()
    return TABLE[int(np.clip(math.floor((float(value) - lo) / (hi - lo) * 255 + 0.5), 0, 255))].astype(int)


def canvas_rgb(pg) -> np.ndarray:
    """The whole canvas as an (H, W, 3) array (base64 across the page boundary)."""
    b64, w, h = pg.page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let s = ''; for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
             return [btoa(s), c.width, c.height]; }""", CANVAS)
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)[..., :3].astype(int)


def view_of(pg) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = (int(v) for v in pg.page.get_attribute(".ms-heatmap", "data-view").split(","))
    return r0, r1, c0, c1


def assert_canvas_matches(pg, arr: np.ndarray, where: str) -> np.ndarray:
    got = canvas_rgb(pg)
    want = expected_canvas(arr, view_of(pg), got.shape[1], got.shape[0])
    diff = np.abs(got - want).max(axis=-1)
    # float32 block means summed in another order may land one colour-table step away (<= 4 units)
    bad = np.argwhere(diff > 4)
    assert bad.size == 0, (f"{where}: {len(bad)} of {diff.size} pixels differ from the pooled reference, "
                           f"e.g. {[(tuple(b), got[tuple(b)].tolist(), want[tuple(b)].tolist()) for b in bad[:3]]}")
    return got


def tooltip(pg) -> list[str]:
    return pg.page.locator(".ms-heatmap .ms-tooltip").inner_text().split("\n")


def num(v: float) -> str:
    """colors.ts formatValue for the plain range: toPrecision(4)."""
    return f"{v:#.4g}"


def canvas_point(pg, x: float, y: float) -> tuple[float, float]:
    box = pg.page.locator(CANVAS).bounding_box()
    return box["x"] + x, box["y"] + y


def cell_centre(pg, r: int, c: int) -> tuple[float, float]:
    r0, r1, c0, c1 = view_of(pg)
    box = pg.page.locator(CANVAS).bounding_box()
    return (box["x"] + (c - c0 + 0.5) * box["width"] / (c1 - c0),
            box["y"] + (r - r0 + 0.5) * box["height"] / (r1 - r0))


def press(pg, key: str) -> None:
    before = pg.page.get_attribute(".ms-heatmap", "data-draws")
    pg.page.keyboard.press(key)
    pg.page.wait_for_function(
        "([sel, n]) => document.querySelector(sel).dataset.draws !== n", arg=[".ms-heatmap", before],
        timeout=5_000)


def make_map() -> tuple[np.ndarray, Heatmap]:
    r = np.arange(N)[:, None] / (N - 1)
    c = np.arange(N)[None, :] / (N - 1)
    x = (0.3 * r + 0.7 * c).astype(np.float32)  # 0..1, mostly across columns
    x[HOT] = HOT_VALUE
    cols = [f"t{i}" for i in range(N)]
    cols[HOT[1]] = HOSTILE
    w = Heatmap(x, row_labels=[f"L{i}" for i in range(N)], col_labels=cols, title="gradient + hot cell",
                value_label="activation")
    return x, w


@pytest.fixture(scope="module")
def hot_map(open_page):
    x, w = make_map()
    assert w.values["dtype"] == "uint8" and w.values["shape"] == [N, N]
    return x, w, open_page(w, "heatmap_zoom")


def assert_clean(pg) -> None:
    assert pg.blocked == [] and pg.dialogs == [] and pg.errors == []
    assert pg.page.locator(".ms-heatmap b, .ms-heatmap img").count() == 0


def test_full_view_is_mean_pooled_not_subsampled(hot_map):
    x, w, pg = hot_map
    arr = w.array  # what the page decodes: the dequantised uint8 codes
    assert np.abs(arr - x).max() <= w.quantization_step / 2 + 1e-6
    assert pg.page.get_attribute(".ms-heatmap", "data-pool") == "2,2"
    assert view_of(pg) == (0, N, 0, N)
    assert pg.page.locator(".ms-hm-view").inner_text() == "rows 0-999 of 1000, cols 0-999 of 1000, mean-pooled 2x2"
    assert not pg.page.locator(".ms-hm-reset").is_visible()
    note = pg.page.locator(".ms-heatmap > .ms-note").inner_text()
    assert note.startswith(f"values quantised to uint8 (step {num(w.quantization_step)}: shown values "
                           f"within \u00b1{num(w.quantization_step / 2)}); exact range 0.000..4.000"), note
    got = assert_canvas_matches(pg, arr, "full view")
    assert got.shape == (500, 500, 3)

    # the pixel holding the hot cell: the mean of its 2x2 block, a quarter of the way to the hot value
    by, bx = HOT[0] // 2, HOT[1] // 2
    block = arr[2 * by:2 * by + 2, 2 * bx:2 * bx + 2].astype(np.float64)
    mean = block.mean()
    cool = np.delete(block.ravel(), 0).mean()  # the three gradient cells
    assert mean - cool == pytest.approx((arr[HOT] - cool) / 4, rel=1e-6)
    pixel = got[by, bx]
    assert np.abs(pixel - colour_of(arr, mean)).max() <= 4
    assert np.abs(pixel - colour_of(arr, arr[HOT])).max() > 40, "the hot cell dominates its pixel"
    assert np.abs(pixel - colour_of(arr, cool)).max() > 40, "the hot cell vanished from its pixel"
    assert np.abs(pixel - got[by, bx + 1]).max() > 40  # and the pixel stands out from its neighbour
    pg.screenshot("heatmap_zoom_full")
    assert_clean(pg)


def test_keyboard_zoom_gives_the_hot_cell_its_own_pixels_and_hover_is_exact(hot_map):
    x, w, pg = hot_map
    arr = w.array
    pg.page.keyboard.press("Escape")
    pg.page.locator(CANVAS).focus()
    press(pg, "0")
    # hover the hot block at full view: the tooltip names a single cell of it and its block mean
    pg.page.mouse.move(*canvas_point(pg, HOT[1] // 2 + 0.25, HOT[0] // 2 + 0.25))
    lines = tooltip(pg)
    hit = tuple(int(v) for v in lines[2].split(";")[0].replace("row ", "").replace("col ", "").split(", "))
    assert hit[0] in (HOT[0], HOT[0] + 1) and hit[1] in (HOT[1], HOT[1] + 1), lines
    assert lines[1] == f"activation: {num(arr[hit])}", lines
    block_mean = arr[HOT[0]:HOT[0] + 2, HOT[1]:HOT[1] + 2].astype(np.float64).mean()
    assert lines[2].endswith(f"; pixel = mean of its 2x2 block: {num(np.float32(block_mean))}"), lines
    assert lines[3] == f"quantised: shown values within \u00b1{num(w.quantization_step / 2)}", lines

    # keyboard only from here: + zooms in about the cursor cell (the hovered one) three times
    pg.page.mouse.move(0, 0)
    pg.page.locator(CANVAS).focus()
    for _ in range(3):
        press(pg, "+")
    r0, r1, c0, c1 = view_of(pg)
    assert (r1 - r0, c1 - c0) == (125, 125) and r0 <= HOT[0] < r1 and c0 <= HOT[1] < c1
    assert pg.page.get_attribute(".ms-heatmap", "data-pool") == "1,1"
    assert pg.page.locator(".ms-hm-view").inner_text() == (
        f"rows {r0}-{r1 - 1} of 1000, cols {c0}-{c1 - 1} of 1000, not pooled")
    assert pg.page.locator(".ms-hm-reset").is_visible()
    got = assert_canvas_matches(pg, arr, "zoomed 8x")
    # 500 px / 125 cells: the hot cell is a 4 x 4 square of the hot colour, its neighbours are not
    y0, x0 = (HOT[0] - r0) * 4, (HOT[1] - c0) * 4
    hot_rgb = colour_of(arr, arr[HOT])
    assert (got[y0:y0 + 4, x0:x0 + 4] == hot_rgb).all()
    for y, xx in ((y0 - 1, x0), (y0 + 4, x0), (y0, x0 - 1), (y0, x0 + 4)):
        assert np.abs(got[y, xx] - hot_rgb).max() > 100, (y, xx, got[y, xx])
    pg.screenshot("heatmap_zoom_keyboard")

    # hover now reports exactly the cell under the pointer: labels (as text), value, indices
    pg.page.mouse.move(*cell_centre(pg, *HOT))
    lines = tooltip(pg)
    assert lines[0] == f"L{HOT[0]}  |  {json.dumps(HOSTILE)}", lines
    assert lines[1] == f"activation: {num(arr[HOT])}" == "activation: 4.000", lines
    assert lines[2] == f"row {HOT[0]}, col {HOT[1]}", lines  # no block: one cell per pixel square
    pg.screenshot("heatmap_zoom_hover")
    pg.page.mouse.move(*cell_centre(pg, HOT[0], HOT[1] + 1))
    assert tooltip(pg)[:3] == [f"L{HOT[0]}  |  \"t{HOT[1] + 1}\"", f"activation: {num(arr[HOT[0], HOT[1] + 1])}",
                               f"row {HOT[0]}, col {HOT[1] + 1}"]

    # arrows move the cursor cell by one; Shift+arrows pan a quarter of the view; - and 0 zoom out
    pg.page.mouse.move(0, 0)
    pg.page.locator(CANVAS).focus()
    pg.page.keyboard.press("ArrowRight")  # from the last hovered cell
    assert tooltip(pg)[2] == f"row {HOT[0]}, col {HOT[1] + 2}"
    assert pg.page.locator(".ms-heatmap .ms-cursor").is_visible()
    press(pg, "Shift+ArrowLeft")
    assert view_of(pg) == (r0, r1, c0 - 31, c1 - 31)
    assert tooltip(pg)[2] == f"row {HOT[0]}, col {HOT[1] + 2 - 31}"
    press(pg, "-")
    assert view_of(pg)[1] - view_of(pg)[0] == 250
    assert pg.page.get_attribute(CANVAS, "data-lm-suppress-shortcuts") == "true"
    press(pg, "0")
    assert view_of(pg) == (0, N, 0, N) and pg.page.get_attribute(".ms-heatmap", "data-pool") == "2,2"
    assert not pg.page.locator(".ms-hm-reset").is_visible()
    assert_clean(pg)


def test_deep_zoom_shows_labels_as_text(hot_map):
    x, w, pg = hot_map
    pg.page.mouse.move(*cell_centre(pg, *HOT))  # the anchor
    pg.page.mouse.move(0, 0)
    pg.page.locator(CANVAS).focus()
    for _ in range(8):  # 1000 -> ... -> 8 (the deepest zoom)
        pg.page.keyboard.press("+")
    pg.page.wait_for_function("() => document.querySelector('.ms-heatmap').dataset.view.split(',')"
                              ".map(Number).reduce((a, v, i) => i % 2 ? a + v : a - v, 0) === 16")
    r0, r1, c0, c1 = view_of(pg)
    assert (r1 - r0, c1 - c0) == (8, 8)
    assert pg.page.locator(".ms-heatmap .ms-collabels > div").all_text_contents() == \
        [HOSTILE if c == HOT[1] else f"t{c}" for c in range(c0, c1)]
    assert pg.page.locator(".ms-heatmap .ms-rowlabels > div").all_text_contents() == [f"L{r}" for r in range(r0, r1)]
    assert_canvas_matches(pg, w.array, "deepest zoom")
    pg.screenshot("heatmap_zoom_deepest")
    pg.page.locator(".ms-hm-reset").click()
    assert view_of(pg) == (0, N, 0, N)
    assert_clean(pg)


def test_drag_a_rectangle_and_wheel_zoom(hot_map):
    x, w, pg = hot_map
    page = pg.page
    page.mouse.move(*canvas_point(pg, 100, 100))
    page.mouse.down()
    page.mouse.move(*canvas_point(pg, 130, 160), steps=4)
    assert page.locator(".ms-heatmap .ms-zoombox").is_visible()
    pg.screenshot("heatmap_zoom_dragging")
    page.mouse.move(*canvas_point(pg, 150, 200), steps=4)
    page.mouse.up()
    # cells under the two corners: rows 200..400, cols 200..300 (both ends included)
    assert view_of(pg) == (200, 401, 200, 301)
    assert not page.locator(".ms-heatmap .ms-zoombox").is_visible()
    assert page.get_attribute(".ms-heatmap", "data-pool") == "1,1"
    assert_canvas_matches(pg, w.array, "after a drag")
    pg.screenshot("heatmap_zoom_drag")
    # the wheel zooms about the pointer once the map has focus (otherwise it scrolls the page)
    page.locator(CANVAS).focus()
    page.mouse.move(*canvas_point(pg, 250, 250))
    before = view_of(pg)
    page.mouse.wheel(0, -120)
    page.wait_for_function("(v) => document.querySelector('.ms-heatmap').dataset.view !== v",
                           arg=",".join(map(str, before)), timeout=5_000)
    r0, r1, c0, c1 = view_of(pg)
    assert (r1 - r0, c1 - c0) == (round(201 / 1.5), round(101 / 1.5))
    press(pg, "0")
    assert_clean(pg)


def test_small_maps_stay_unzoomable_float32_and_labelled(open_page):
    w = Heatmap(np.arange(12, dtype=float).reshape(3, 4), row_labels=["a", "b", "c"], col_labels=list("wxyz"))
    assert w.values["dtype"] == "float32"
    pg = open_page(w, "heatmap_small")
    assert pg.page.locator(".ms-heatmap .ms-rowlabels > div").all_text_contents() == ["a", "b", "c"]
    assert not pg.page.locator(".ms-heatmap .ms-hm-bar").is_visible()
    assert not pg.page.locator(".ms-heatmap > .ms-note").is_visible()
    pg.page.locator(CANVAS).focus()
    pg.page.keyboard.press("ArrowRight")
    assert tooltip(pg) == ['a  |  "x"', "value: 1.000"]  # exact, two lines as before
    pg.page.keyboard.press("+")
    assert view_of(pg) == (0, 3, 0, 4)
    assert_canvas_matches(pg, w.array, "small map")
    assert_clean(pg)


def test_hover_shows_the_cell_interval_only_when_given(open_page):
    x = np.array([[0.42, -1.5, 2.0], [0.125, 3.25, 0.0]])
    low, high = x - np.array([[0.11, 0.2, 0.3], [0.05, 1.0, 0.01]]), x + 0.13
    w = Heatmap(x, row_labels=["L0", "L1"], col_labels=["END", "<b>s</b>", "c"], value_label="norm",
                ci_low=low, ci_high=high, ci_label="95% CI, n=100")
    pg = open_page(w, "heatmap_interval")
    lo32, hi32, v32 = (decode_array(e) for e in (w.ci_low, w.ci_high, w.values))
    for r, c in ((0, 0), (1, 1), (0, 1)):
        pg.page.mouse.move(*cell_centre(pg, r, c))
        assert tooltip(pg) == [f"{w.row_labels[r]}  |  {json.dumps(w.col_labels[c])}",
                               f"norm: {num(v32[r, c])} [{num(lo32[r, c])}, {num(hi32[r, c])}] (95% CI, n=100)"]
    pg.page.mouse.move(*cell_centre(pg, 1, 1))
    assert tooltip(pg)[1] == "norm: 3.250 [2.250, 3.380] (95% CI, n=100)"
    pg.screenshot("heatmap_interval_hover")
    assert_clean(pg)

    plain = open_page(Heatmap(x, row_labels=["L0", "L1"], col_labels=["END", "s", "c"], value_label="norm"),
                      "heatmap_interval_none")
    plain.page.mouse.move(*cell_centre(plain, 1, 1))
    assert tooltip(plain) == ['L1  |  "s"', "norm: 3.250"]
    assert_clean(plain)
