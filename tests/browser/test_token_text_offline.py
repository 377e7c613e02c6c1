"""TokenText's offline snapshot in headless Chromium, network shut off: every token's background
equals the colour computed here from the scale's stops (diverging for signed values, sequential
otherwise), the colour bar's ends, switching the value row recolours, hover shows the token, its
value and where it is, and hostile tokens, labels, row names and title stay literal text.
Screenshots go to build/screenshots/."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mechscope.widgets.token_text import TokenText
from tests.browser.offline_page import HOSTILE, HOSTILE2, assert_clean, canvas_pixel, visible_token
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS
from tests.hostile_token_text import make

pytestmark = pytest.mark.browser

#: js/lib/colors.ts's diverging stops, blue - white - red (the reference for every colour here).
DIVERGING = [(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
             (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)]


def js_round(x: float) -> int:
    return math.floor(x + 0.5)


def diverging_table() -> list[tuple[int, ...]]:
    out = []
    for i in range(256):
        x = i / 255 * (len(DIVERGING) - 1)
        k = min(int(x), len(DIVERGING) - 2)
        f = x - k
        out.append(tuple(round(DIVERGING[k][c] * (1 - f) + DIVERGING[k + 1][c] * f) for c in range(3)))
    return out


def expected_rgb(v: float, values: np.ndarray) -> tuple[int, ...] | None:
    """The background of value v under the scale of ``values`` (None: NaN, hatched)."""
    if not np.isfinite(v):
        return None
    fin = values[np.isfinite(values)].astype(np.float64)
    lo, hi = float(fin.min()), float(fin.max())
    div = diverging_table()
    if lo < 0 < hi:
        m = max(-lo, hi)
        lo, hi, table = -m, m, div
    else:
        hi = hi if hi > lo else lo + 1
        base = 128 if lo >= 0 else 0
        table = [div[base + js_round(i * 127 / 255)] for i in range(256)]
    return table[max(0, min(255, js_round((float(v) - lo) / (hi - lo) * 255)))]


TOKENS = [["The", " cat", " sat"], ["A", "\n", HOSTILE, " dog", HOSTILE2]]
SIGNED = [np.array([-2.0, -1.0, 0.0], np.float32), np.array([1.0, 2.0, np.nan, 0.5, -0.5], np.float32)]
LOSS = [np.array([1.0, 3.0, 5.0], np.float32), np.array([2.0, 4.0, 1.5, 6.0, np.nan], np.float32)]


def spans(pg) -> list[dict]:
    return pg.page.locator(".ms-tt .ms-tok").evaluate_all("""(s) => s.map((x) => ({text: x.textContent,
      bg: getComputedStyle(x).backgroundColor, ink: getComputedStyle(x).color, nan: x.classList.contains('ms-tok-nan'),
      bidi: getComputedStyle(x).unicodeBidi, t: x.dataset.text, p: x.dataset.pos}))""")


def assert_colours(pg, rows: list[np.ndarray]) -> None:
    flat = np.concatenate(rows)
    for k, s in enumerate(spans(pg)):
        rgb = expected_rgb(flat[k], flat)
        if rgb is None:
            assert s["nan"] and s["bg"] == "rgba(0, 0, 0, 0)", (k, s)
        else:
            assert not s["nan"] and s["bg"] == "rgb({}, {}, {})".format(*rgb), (k, s, rgb)
            light = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 140
            assert s["ink"] == ("rgb(0, 0, 0)" if light else "rgb(255, 255, 255)"), (k, s)


def test_tokens_coloured_switched_and_hovered(open_page):
    w = TokenText(TOKENS, {"neuron 14:377": SIGNED, "loss": LOSS}, labels=["first", "second"],
                  scores=[0.0, 2.0], score_label="peak", title="token text")
    pg = open_page(w, "token_text")
    got = spans(pg)
    assert [s["text"] for s in got] == [visible_token(t) for toks in TOKENS for t in toks]
    assert [(s["t"], s["p"]) for s in got] == [(str(i), str(p)) for i, toks in enumerate(TOKENS) for p in range(len(toks))]
    assert all(s["bidi"] == "isolate" for s in got)
    assert pg.page.locator(".ms-tt-label").all_text_contents() == ["first", "second"]
    assert pg.page.locator(".ms-tt-score").all_text_contents() == ["peak 0.000", "peak 2.000"]
    assert_colours(pg, SIGNED)
    bar = pg.page.locator("canvas.ms-scalebar")
    assert bar.get_attribute("data-kind") == "diverging"
    assert pg.page.locator(".ms-tt-lo").inner_text() == "-2.000" and pg.page.locator(".ms-tt-hi").inner_text() == "2.000"
    div = diverging_table()
    assert canvas_pixel(pg, "canvas.ms-scalebar", 0, 5)[:3] == list(div[0])
    assert canvas_pixel(pg, "canvas.ms-scalebar", 199, 5)[:3] == list(div[255])

    # hover: the readout and the tooltip name the token, its value and where it is
    pg.page.locator(".ms-tt .ms-tok").nth(4).hover()
    readout = pg.page.locator(".ms-tt-readout").inner_text()
    assert readout == "text 1 · position 1 · \"↵\" · neuron 14:377 = 2.000"
    assert pg.page.locator(".ms-tooltip").inner_text() == "text 1 · position 1 · \"↵\"\nneuron 14:377 = 2.000"
    pg.page.locator(".ms-tt .ms-tok").nth(5).hover()
    assert pg.page.locator(".ms-tt-readout").inner_text() == f"text 1 · position 2 · \"{HOSTILE}\" · neuron 14:377 = NaN"
    pg.screenshot("token_text")

    # switching the value row recolours every token with the sequential scale of the losses
    pg.page.select_option(".ms-tt select", "1")
    assert pg.page.locator(".ms-tt").get_attribute("data-row") == "1"
    assert bar.get_attribute("data-kind") == "sequential"
    assert pg.page.locator(".ms-tt-lo").inner_text() == "1.000" and pg.page.locator(".ms-tt-hi").inner_text() == "6.000"
    assert_colours(pg, LOSS)
    assert canvas_pixel(pg, "canvas.ms-scalebar", 0, 5)[:3] == list(div[128])
    pg.page.locator(".ms-tt .ms-tok").nth(1).hover()
    assert pg.page.locator(".ms-tt-readout").inner_text() == "text 0 · position 1 · \" cat\" · loss = 3.000"
    pg.screenshot("token_text_loss")

    # keyboard: the first arrow puts the cursor on the first token, then right / down / up move it
    readout = pg.page.locator(".ms-tt-readout")
    pg.page.focus(".ms-tt-texts")
    pg.page.keyboard.press("ArrowRight")
    assert readout.inner_text() == "text 0 · position 0 · \"The\" · loss = 1.000"
    pg.page.keyboard.press("ArrowRight")
    pg.page.keyboard.press("ArrowRight")
    pg.page.keyboard.press("ArrowDown")  # text 1, position 2
    assert readout.inner_text() == f"text 1 · position 2 · \"{HOSTILE}\" · loss = 1.500"
    assert pg.page.locator(".ms-tok-cursor").get_attribute("data-k") == "5"
    pg.page.keyboard.press("ArrowUp")
    assert readout.inner_text() == "text 0 · position 2 · \" sat\" · loss = 5.000"
    pg.page.select_option(".ms-tt select", "0")  # the readout follows the row
    assert readout.inner_text() == "text 0 · position 2 · \" sat\" · neuron 14:377 = 0.000"
    assert_clean(pg)


def test_hostile_tokens_stay_literal_text(open_page):
    w = make(CATALOGUE[1])
    pg = open_page(w, "token_text_hostile", dark=True)
    root = pg.page.locator(".ms-tt")
    got = spans(pg)
    assert [s["text"] for s in got] == [visible_token(t) for i in range(w.n_texts) for t in w.text_tokens(i)]
    assert all(s["bidi"] == "isolate" for s in got)
    assert pg.page.locator(".ms-tt .ms-title").inner_text() == CATALOGUE[1]
    assert pg.page.locator(".ms-tt-label").all_text_contents() == w.labels
    assert pg.page.locator(".ms-tt select option").all_text_contents() == w.rows
    assert all(s.startswith(CATALOGUE[0]) for s in pg.page.locator(".ms-tt-score").all_text_contents())
    flat = np.concatenate([w.text_values(i, 0) for i in range(w.n_texts)])
    assert_colours(pg, [flat])
    for tag in FORBIDDEN_ELEMENTS:
        assert root.locator(tag).count() == 0, tag
    # hover a hostile token: shown as text in the readout
    pg.page.locator(".ms-tt .ms-tok").nth(2).hover()
    assert visible_token(w.text_tokens(0)[2]) in pg.page.locator(".ms-tt-readout").inner_text()
    # an unterminated override (a token, a row name) stays inside its own isolated element
    last = w.n_texts - 1, len(w.text_tokens(w.n_texts - 1)) - 1
    assert w.text_tokens(last[0])[last[1]] == CATALOGUE[11]
    pg.page.locator(f".ms-tt .ms-tok[data-text='{last[0]}'][data-pos='{last[1]}']").hover()
    pieces = pg.page.locator(".ms-tt-readout span").evaluate_all(
        "(s) => s.map((x) => [x.textContent, getComputedStyle(x).unicodeBidi])")
    assert pieces == [[CATALOGUE[11], "isolate"], [CATALOGUE[2], "isolate"]]
    assert pg.page.locator(".ms-tooltip span").evaluate_all("(s) => s.map((x) => x.textContent)") == [
        CATALOGUE[11], CATALOGUE[2]]
    pg.page.select_option(".ms-tt select", "1")
    assert pg.page.locator("canvas.ms-scalebar").get_attribute("data-kind") == "diverging"
    assert pg.page.locator(".ms-tt-readout .ms-tt-row").inner_text() == CATALOGUE[9]  # follows the row
    pg.screenshot("token_text_hostile_dark")
    assert_clean(pg, "img, svg, iframe, object, embed, .ms-tt script, .ms-tt a")
