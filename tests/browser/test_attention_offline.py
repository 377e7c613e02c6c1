"""AttentionPatterns in headless Chromium.

1. The offline snapshot with the network cut: every thumbnail painted, a click opens that
   head's full map (pixels against the colour bar for the Python values), hovering a cell
   reads out query token, key token and the exact value, the text is coloured by the hovered
   query, a long prompt is pooled to the screen (keyboard reaches every exact cell), and
   hostile tokens stay text.
2. Live in JupyterLab (the `jupyter_lab` fixture): the widget view drawn, a thumbnail click
   and a hover reach the kernel's ``selected`` / ``hovered``, the readout is the kernel's
   value, and ``score`` / ``selected`` set from the kernel redraw the view.

Screenshots: build/screenshots/attention_*.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mechscope.analysis.attention import attention
from mechscope.models.tiny import tiny_model
from mechscope.widgets.attention import AttentionPatterns
from tests.browser import lab_notebook
from tests.browser.offline_page import (
    assert_clean,
    canvas_pixel,
    open_offline,
    page_html,
    visible_token,
)
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS
from tests.hostile_attention import make

pytestmark = pytest.mark.browser

BIG = ".ms-attn canvas.ms-attn-big"
INSIDE = ", ".join(f".ms-attn {tag}" for tag in FORBIDDEN_ELEMENTS)


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory) -> Iterator[Any]:
    """The module's one Chromium (Playwright's sync API allows one per thread) and a page dir."""
    yield chromium, tmp_path_factory.mktemp("attention-pages")


def _open(browser, widget: AttentionPatterns, name: str, dark: bool = False):
    context, tmp = browser
    snapshot = widget.offline_html()
    assert snapshot is not None
    return open_offline(context, tmp / f"{name}{'-dark' if dark else ''}.html", page_html(snapshot, dark),
                        ready=".mechscope-snapshot[data-ready='1'] canvas.ms-attn-big")


def _bar_colour(pg, value: float) -> list[int]:
    """The colour bar's RGB for ``value`` (0..1, high at the top)."""
    height = pg.page.evaluate("document.querySelector('.ms-attn .ms-colorbar canvas').clientHeight")
    k = round(value * 255)
    return canvas_pixel(pg, ".ms-attn .ms-colorbar canvas", 6, (1 - k / 255) * (height - 1))[:3]


def _map_pixel(pg, q: int, k: int, n: int) -> list[int]:
    side = pg.page.evaluate(f"document.querySelector({BIG!r}).clientWidth")
    cell = side / n
    return canvas_pixel(pg, BIG, (k + 0.5) * cell, (q + 0.5) * cell)[:3]


def _close(a: list[int], b: list[int], tol: int = 3) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_thumbnails_click_hover_offline(browser):
    att = attention(tiny_model("llama", n_layers=3), "the cat sat on the mat, the cat sat")
    w = AttentionPatterns(att, score="previous_token")
    values = w.array
    nl, nh, n, _ = values.shape
    pg = _open(browser, w, "attention")
    # every thumbnail painted (not the page background)
    painted = pg.page.evaluate("""() => Array.from(document.querySelectorAll('.ms-attn canvas.ms-attn-thumb'))
        .map((c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let k = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255) k++; return k / (d.length / 4); })""")
    assert len(painted) == nl * nh and min(painted) == 1.0
    # the top-heads list is the Python ranking
    first = pg.page.locator(".ms-attn .ms-attn-side button").first.text_content()
    layer, head, score = att.top_heads("previous_token", 1)[0]
    assert first.startswith(f"L{layer} H{head}  {score:.3f}")
    # click the thumbnail of layer 2 head 1: the big map shows that head
    pg.page.locator(".ms-attn canvas.ms-attn-thumb[data-layer='2'][data-head='1']").click()
    assert pg.page.evaluate(f"document.querySelector({BIG!r}).dataset.layer + '/' + "
                            f"document.querySelector({BIG!r}).dataset.head") == "2/1"
    assert "layer 2 head 1" in pg.page.locator(".ms-attn .ms-attn-body .ms-title").last.text_content()
    for q, k in ((0, 0), (n - 1, 0), (n - 1, n - 2), (5, 3), (3, 5)):
        assert _close(_map_pixel(pg, q, k, n), _bar_colour(pg, float(values[2, 1, q, k]))), (q, k)
    # hover one cell: the readout names the query token, the key token and the value
    side = pg.page.evaluate(f"document.querySelector({BIG!r}).clientWidth")
    q, k = n - 1, 4
    box = pg.page.locator(BIG).bounding_box()
    pg.page.mouse.move(box["x"] + (k + 0.5) * side / n, box["y"] + (q + 0.5) * side / n)
    readout = pg.page.locator(".ms-attn .ms-attn-readout").text_content()
    prefix = f"query {q} {visible_token(w.tokens[q])} → key {k} {visible_token(w.tokens[k])}: "
    assert readout.startswith(prefix)
    assert float(readout[len(prefix):]) == pytest.approx(float(values[2, 1, q, k]), rel=1e-3, abs=1e-6)
    assert pg.page.locator(".ms-attn .ms-tooltip").text_content() == readout
    # the text is coloured by that query's attention; the query token is outlined
    spans = pg.page.locator(".ms-attn .ms-attn-text span")
    assert spans.count() == n
    assert "ms-q" in spans.nth(q).get_attribute("class")
    shades = pg.page.evaluate("""() => Array.from(document.querySelectorAll('.ms-attn .ms-attn-text span'))
        .map((s) => s.style.background !== '')""")
    assert all(shades)  # the last query sees every key
    pg.screenshot("attention_offline")
    dark = _open(browser, w, "attention_dark", dark=True)
    assert dark.page.evaluate("getComputedStyle(document.querySelector('.ms-attn .ms-title')).color") == "rgb(224, 224, 224)"
    dark.screenshot("attention_offline_dark")
    assert_clean(dark, INSIDE)
    # a score change from the select updates the list
    pg.page.select_option(".ms-attn select", "first_token")
    layer, head, score = att.top_heads("first_token", 1)[0]
    assert pg.page.locator(".ms-attn .ms-attn-side button").first.text_content().startswith(
        f"L{layer} H{head}  {score:.3f}")
    assert_clean(pg, INSIDE)


def test_long_prompt_pooled_to_screen(browser):
    text = " ".join(["the cat sat on the mat"] * 48)
    model = tiny_model("gpt2", max_positions=600)
    att = attention(model, text, layers=[1])
    w = AttentionPatterns(att, max_positions=512)
    n = w.array.shape[-1]
    assert n > 440 and w.pooled == 1
    pg = _open(browser, w, "attention_long")
    side = pg.page.evaluate(f"document.querySelector({BIG!r}).clientWidth")
    assert side <= 440
    # the cell under the pointer (cells are under a pixel: pooled to the screen), its exact value
    box = pg.page.locator(BIG).bounding_box()
    pg.page.mouse.move(box["x"] + 0.5 * side / n, box["y"] + (n - 0.5) * side / n)
    readout = pg.page.locator(".ms-attn .ms-attn-readout").text_content()
    q, k = int(readout.split()[1]), int(readout.split(" key ")[1].split()[0])
    assert abs(q - (n - 1)) <= 1 and k <= 1
    h = w.selected[1]
    assert float(readout.rsplit(": ", 1)[1]) == pytest.approx(float(w.array[0, h, q, k]), rel=1e-3, abs=1e-6)
    # the keyboard reaches every exact cell: Page Down to the last query, End to its last key
    pg.page.locator(BIG).focus()
    pg.page.keyboard.press("PageDown")
    pg.page.keyboard.press("End")
    readout = pg.page.locator(".ms-attn .ms-attn-readout").text_content()
    assert readout.startswith(f"query {n - 1} ") and f"→ key {n - 1} " in readout
    assert float(readout.rsplit(": ", 1)[1]) == pytest.approx(float(w.array[0, h, n - 1, n - 1]),
                                                                rel=1e-3, abs=1e-6)
    pg.screenshot("attention_long")
    assert_clean(pg, INSIDE)


def test_hostile_tokens_stay_text(browser):
    w = make(CATALOGUE[1])
    pg = _open(browser, w, "attention_hostile")
    spans = pg.page.evaluate("Array.from(document.querySelectorAll('.ms-attn .ms-attn-text span'))"
                             ".map((s) => s.textContent)")
    assert spans == [visible_token(t) for t in w.tokens]
    assert pg.page.locator(".ms-attn .ms-title").first.text_content() == CATALOGUE[1]
    options = pg.page.evaluate("Array.from(document.querySelectorAll('.ms-attn select option')).map((o) => o.value)")
    assert options == w.score_names
    box = pg.page.locator(BIG).bounding_box()
    pg.page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)
    assert visible_token(w.tokens[-1]) in pg.page.locator(".ms-attn .ms-attn-readout").text_content()
    # bidi controls stay inside their own element (an unterminated RLO reverses nothing after it)
    isolated = pg.page.evaluate("""() => Array.from(document.querySelectorAll(
        '.ms-attn .ms-attn-text span, .ms-attn .ms-rowlabels div, .ms-attn .ms-note span, .ms-attn option'))
        .map((e) => getComputedStyle(e).unicodeBidi)""")
    assert isolated and set(isolated) == {"isolate"}, set(isolated)
    pg.screenshot("attention_hostile")
    assert_clean(pg, INSIDE)
    assert np.isfinite(w.array).all()


LIVE_CELLS = [
    "from mechscope.analysis.attention import attention\n"
    "from mechscope.models.tiny import tiny_model\n"
    "from mechscope.widgets.attention import AttentionPatterns\n"
    "att = attention(tiny_model('llama', n_layers=3), 'the cat sat on the mat, the cat sat')\n"
    "w = AttentionPatterns(att)\n"
    "w",
]


@pytest.mark.timeout(600)
def test_live_in_jupyterlab(jupyter_lab, chromium):
    with lab_notebook.open_widget(jupyter_lab, chromium, "attention_live.ipynb", LIVE_CELLS, 1, ".ms-attn",
                                  "canvas.ms-attn-big") as (nb, root, big):
        assert root.locator("canvas.ms-attn-thumb").count() == 12
        assert nb.cell(1).locator(".mechscope-placeholder .ms-attn").count() == 0  # the live view
        root.locator("canvas.ms-attn-thumb[data-layer='2'][data-head='1']").click()
        nb.wait_value("w.selected", [2, 1])
        n = nb.json("len(w.tokens)")
        box = big.bounding_box()
        q, k = n - 1, 3
        page_side = box["width"]
        nb.page.mouse.move(box["x"] + (k + 0.5) * page_side / n, box["y"] + (q + 0.5) * page_side / n)
        nb.wait_value("w.hovered", [q, k])
        want = nb.json(f"float(w.array[2, 1, {q}, {k}])")
        tokens = nb.json("w.tokens")
        readout = root.locator(".ms-attn-readout").text_content()
        prefix = f"query {q} {visible_token(tokens[q])} → key {k} {visible_token(tokens[k])}: "
        assert readout.startswith(prefix) and float(readout[len(prefix):]) == pytest.approx(want, rel=1e-3)
        nb.eval("setattr(w, 'score', 'first_token') or setattr(w, 'selected', [0, 3])")
        nb.page.wait_for_function("(el) => el.dataset.layer === '0' && el.dataset.head === '3'",
                                  arg=big.element_handle(), timeout=lab_notebook.ROUND_TRIP_MS)
        assert root.locator("select").input_value() == "first_token"
        top = json.loads(nb.eval("__import__('json').dumps(att.top_heads('first_token', 1)[0])").strip("'"))
        assert root.locator(".ms-attn-side button").first.text_content().startswith(
            f"L{top[0]} H{top[1]}  {top[2]:.3f}")
        lab_notebook.save(root, "attention_lab")
