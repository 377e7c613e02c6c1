"""PatchingMap offline snapshot in headless Chromium, network shut off.

``widget.offline_html()`` goes into a bare page opened from file:// with every request other
than file:/blob:/data: aborted and recorded. The tests drive it like a user: diverging colours
on the canvas (red above 0, blue below, white at 0, grey NaN, symmetric range), the hover
tooltip's numbers, the normalised/raw control (keyboard too), click and Enter selecting a cell
with the "needs a kernel" note, a re-run saved with the notebook, and hostile tokens that stay
literal text. Screenshots (light and dark) go to build/screenshots/patching_map_*.png.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import mechscope
from mechscope.interventions.patching import PatchingResult
from mechscope.metrics import logit_diff
from mechscope.widgets.patching_map import PatchingMap
from tests.browser.offline_page import HOSTILE, HOSTILE2, assert_clean, canvas_pixel

pytestmark = pytest.mark.browser

MAP = ".ms-pmap canvas.ms-canvas"


def canvas_hash(pg, selector: str = MAP) -> int:
    return pg.page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let h = 0; for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) | 0; return h; }""",
        selector,
    )


def cell_size(pg) -> tuple[float, float]:
    return (float(pg.page.get_attribute(MAP, "data-cell-w")),
            float(pg.page.get_attribute(MAP, "data-cell-h")))


def corner(pg, r: int, c: int) -> list[int]:
    """A cell's colour, sampled near its top-left corner (away from the number drawn in it)."""
    cw, ch = cell_size(pg)
    return canvas_pixel(pg, MAP, c * cw + 3, r * ch + 3)


def center(pg, r: int, c: int) -> tuple[float, float]:
    """Page coordinates of cell (r, c)'s centre (row 0 = first layer, on top)."""
    box = pg.page.locator(MAP).bounding_box()
    cw, ch = cell_size(pg)
    return box["x"] + (c + 0.5) * cw, box["y"] + (r + 0.5) * ch


def tooltip(pg) -> str:
    return pg.page.locator(".ms-pmap .ms-tooltip").inner_text()


def js_format(v: float) -> str:
    """js/lib/colors.ts formatValue for 1e-3 <= |v| < 1e5: toPrecision(4)."""
    assert 1e-3 <= abs(v) < 1e5
    return f"{v:#.4g}".rstrip(".")


def synthetic() -> PatchingResult:
    """3 layers x 4 positions; clean 2, corrupt 0 (normalised = values / 2); one NaN cell."""
    values = np.array([[0.0, 0.5, -1.0, 2.0],
                       [1.0, np.nan, 0.25, 1.5],
                       [2.0, -0.5, 0.0, 1.0]], dtype=np.float32)
    return PatchingResult(
        values=values, clean_metric=2.0, corrupt_metric=0.0,
        clean_tokens=["The", HOSTILE, " of", " the"], corrupt_tokens=["The", " cat", " of", HOSTILE2],
        layers=[0, 1, 2], columns=[0, 1, 2, 3], positions=[0, 1, 2, 3], site="resid",
        method="exact", metric_name="logit_diff(' Paris', ' Rome')",
        clean_prompt="The" + HOSTILE + " of the", corrupt_prompt="The cat of" + HOSTILE2,
        model_name="toy",
    )


def test_diverging_colours_tooltip_toggle_and_offline_click(open_page):
    w = PatchingMap(synthetic())
    pg = open_page(w, "patching_map_synthetic")
    page = pg.page
    # the colour range is symmetric around 0 (normalised: max |cell| = 1)
    assert float(page.get_attribute(MAP, "data-lo")) == -1.0
    assert float(page.get_attribute(MAP, "data-hi")) == 1.0
    # diverging colours: red above 0, blue below, white at 0, the distinct grey for NaN
    zero, pos, neg = corner(pg, 0, 0), corner(pg, 0, 3), corner(pg, 0, 2)
    assert all(v == 255 for v in (zero[3], pos[3], neg[3]))
    assert min(zero[:3]) >= 240  # 0 is the white centre
    assert pos[:3] == [103, 0, 31]  # +1: the red end of the scale
    assert neg[2] > neg[0] + 60 and neg[2] > neg[1]  # -0.5 (normalised): blue
    assert corner(pg, 1, 1)[:3] == [128, 128, 128]  # NaN
    half = corner(pg, 0, 1)  # +0.25: light red, between white and the +1 red
    assert 255 > half[0] >= pos[0] and half[2] < zero[2]

    # hover: layer, position with its clean -> corrupt tokens (JSON-quoted text), the values
    page.mouse.move(*center(pg, 0, 1))
    lines = tooltip(pg).split("\n")
    assert lines[0] == f"L0  |  position 1 {json.dumps(HOSTILE)} → \" cat\""
    assert lines[1] == "logit_diff(' Paris', ' Rome'): 0.5000 (patched)"
    assert lines[2] == "normalised: 0.2500   minus corrupt: 0.5000"
    page.mouse.move(*center(pg, 2, 3))
    assert tooltip(pg).split("\n")[0] == f"L2  |  position 3 \" the\" → {json.dumps(HOSTILE2)}"
    assert "normalised: 0.5000" in tooltip(pg)
    page.mouse.move(*center(pg, 1, 1))
    assert "(patched)" in tooltip(pg) and "NaN" in tooltip(pg)
    pg.screenshot("patching_map_synthetic_hover")

    # normalised / raw: a select control; raw cells are metric - corrupt, range +-2
    before = canvas_hash(pg)
    page.select_option(".ms-pmap select", "raw")
    assert page.get_attribute(".ms-pmap", "data-mode") == "raw"
    assert float(page.get_attribute(MAP, "data-hi")) == 2.0
    assert float(page.get_attribute(MAP, "data-lo")) == -2.0
    assert canvas_hash(pg) != before
    assert corner(pg, 0, 2)[2] > corner(pg, 0, 2)[0]  # -1 still blue
    # ... and with the keyboard: focus the select, ArrowUp goes back to normalised
    page.focus(".ms-pmap select")
    page.keyboard.press("ArrowUp")
    assert page.get_attribute(".ms-pmap", "data-mode") == "normalized"
    assert canvas_hash(pg) == before

    # click a cell: selected outline, detail pane with its value and the offline note
    detail = page.locator(".ms-pmap-detail")
    assert detail.get_attribute("data-state") == "empty"
    page.mouse.click(*center(pg, 2, 1))
    assert detail.get_attribute("data-cell") == "2,1"
    assert detail.get_attribute("data-state") == "offline"
    assert detail.locator(".ms-pmap-dhead").inner_text() == f"L2  |  position 1 {json.dumps(HOSTILE)} → \" cat\""
    assert "normalised: -0.2500" in detail.inner_text()
    assert "Live re-run needs a running kernel" in detail.inner_text()
    assert page.locator(".ms-pmap .ms-pmap-sel").is_visible()
    page.mouse.move(0, 0)
    pg.screenshot("patching_map_synthetic_selected")

    # keyboard: focus the map, arrows move the cursor from the clicked cell (the tooltip
    # follows), Enter selects
    page.mouse.move(0, 0)
    page.focus(MAP)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")
    assert tooltip(pg).split("\n")[0] == 'L1  |  position 2 " of"'
    assert page.locator(".ms-pmap .ms-cursor").is_visible()
    page.keyboard.press("Enter")
    assert detail.get_attribute("data-cell") == "1,2"
    assert "minus corrupt: 0.2500" in detail.inner_text()

    # hostile tokens: literal text in the axis labels, the prompts line and the tooltip
    labels = page.locator(".ms-pmap .ms-collabels div").all_text_contents()
    assert labels == ["The", f"{HOSTILE}/ cat", " of", f" the/{HOSTILE2}"]
    assert HOSTILE in page.locator(".ms-pmap-prompts").inner_text()
    assert page.locator(".ms-pmap .ms-rowlabels div").all_text_contents() == ["L0", "L1", "L2"]
    assert_clean(pg)


def test_dark_theme_heads(open_page):
    r = synthetic()
    heads = dataclasses.replace(r, site="heads", columns=[0, 1, 2, 3], positions=[3])
    w = PatchingMap(heads)
    pg = open_page(w, "patching_map_heads", dark=True)
    labels = pg.page.locator(".ms-pmap .ms-collabels div").all_text_contents()
    assert labels == ["H0", "H1", "H2", "H3"]
    pg.page.mouse.move(*center(pg, 0, 2))
    assert tooltip(pg).split("\n")[0] == "L0  |  head H2 (positions: [3])"
    # text stays readable on the dark page: the title is light, the background dark
    colour = pg.page.locator(".ms-pmap .ms-title").evaluate("(n) => getComputedStyle(n).color")
    assert colour == "rgb(224, 224, 224)"
    pg.page.mouse.click(*center(pg, 0, 2))
    pg.page.mouse.move(0, 0)
    pg.screenshot("patching_map_heads_dark")
    assert_clean(pg)


def test_rerun_saved_with_the_notebook_shows_top_tokens(open_page):
    model = mechscope.tiny_model("llama")
    r = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
                        logit_diff(" the", " of"), progress=False)
    w = r.show(model=model, top_k=4)
    cell = w.select(0, 1)  # what a click does in a live kernel, then the notebook is exported
    assert cell is not None
    for dark in (False, True):
        pg = open_page(w, "patching_map_tiny_rerun", dark=dark)
        detail = pg.page.locator(".ms-pmap-detail")
        assert detail.get_attribute("data-state") == "rerun"
        assert detail.get_attribute("data-cell") == "0,1"
        assert pg.page.locator(".ms-pmap .ms-pmap-sel").is_visible()
        rows = detail.locator("table.ms-pmap-top tbody tr")
        assert rows.count() == 4
        for col, top in (("before", cell.before), ("after", cell.after), ("clean", cell.clean)):
            toks = detail.locator(f"td[data-col={col}] .ms-pmap-tok").all_text_contents()
            assert toks == [json.dumps(t, ensure_ascii=False) for t in top.tokens]
        assert f"re-run through the model: {js_format(cell.value)}" in detail.inner_text()
        # another cell: no kernel, so the note instead of a stale table
        pg.page.mouse.click(*center(pg, 1, 6))
        assert detail.get_attribute("data-state") == "offline"
        pg.page.mouse.click(*center(pg, 0, 1))
        assert detail.get_attribute("data-state") == "rerun"
        pg.page.mouse.move(0, 0)
        pg.screenshot(f"patching_map_tiny_rerun{'_dark' if dark else ''}")
        assert_clean(pg)


def test_wide_float16_map_scrolls_and_keeps_every_cell(open_page):
    """24 layers x 700 positions (float16 on the wire): narrow cells, scrolls, End reaches the last."""
    rows, cols = 24, 700
    values = (np.sin(np.arange(rows * cols) / 37.0) * np.linspace(0.2, 3, rows)[:, None].repeat(cols, 1).ravel()
              ).reshape(rows, cols).astype(np.float32)
    tokens = [f" w{i}" for i in range(cols)]
    r = dataclasses.replace(synthetic(), values=values, clean_tokens=tokens, corrupt_tokens=tokens,
                            layers=list(range(rows)), columns=list(range(cols)), positions=list(range(cols)),
                            clean_metric=3.0, corrupt_metric=0.0)
    w = PatchingMap(r)
    assert w.effect["dtype"] == "float16"
    pg = open_page(w, "patching_map_wide")
    page = pg.page
    cw, ch = cell_size(pg)
    assert cw == 18 and ch == 26  # MAX_GRID_H 640 / 24 rows
    stats = page.locator(MAP).evaluate(
        "(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let t = 0; const s = new Set(); for (let i = 0; i < d.length; i += 4) { if (d[i + 3] !== 255) t++;"
        " s.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); } return [t, s.size]; }")
    assert stats[0] == 0 and stats[1] > 100  # every pixel opaque, many colours
    assert page.locator(".ms-pmap .ms-collabels").get_attribute("class").endswith("ms-vertical")
    scroll = page.locator(".ms-pmap .ms-scroll")
    assert scroll.evaluate("(s) => s.scrollWidth > s.clientWidth + 1000 && s.scrollLeft === 0")
    page.focus(MAP)
    page.keyboard.press("End")
    page.keyboard.press("PageDown")
    assert scroll.evaluate("(s) => s.scrollLeft") > 0
    lines = tooltip(pg).split("\n")
    assert lines[0] == f'L{rows - 1}  |  position {cols - 1} " w{cols - 1}"'
    sent = float(np.float16(values[-1, -1]))
    assert lines[2].startswith(f"normalised: {js_format(sent / 3)}")
    page.keyboard.press("Enter")
    assert page.locator(".ms-pmap-detail").get_attribute("data-cell") == f"{rows - 1},{cols - 1}"
    page.keyboard.press("Escape")
    pg.screenshot("patching_map_wide")
    assert_clean(pg)
