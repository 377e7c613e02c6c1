"""LogitLens and Selectivity driven live in JupyterLab, checked against the kernel's results.

Each class writes its own notebook (nbformat) into the Lab fixture's root dir, opens it in
headless Chromium, runs every cell and drives the live anywidget view like a user, reading the
kernel's side back through silent executions (helpers from test_lab_widgets.py):

- `LogitLens` (js/widgets/logit_lens.ts) on the tiny llama with a target token: the live view
  (not the text/html fallback), every cell's colour on the canvas against a copy of
  js/lib/colors.ts's viridis table, every cell's top-1 token drawn as canvas text (fillText is
  recorded by an init script), hover and keyboard tooltips equal to the kernel's top-k tokens
  and probabilities as printed, the colour-mode select switched by keyboard reaching the
  kernel's ``color_mode`` (and back from the kernel), a hostile prompt staying literal text.
- `Selectivity` (js/widgets/selectivity.ts) on the tiny llama's layer 1 with a real zero-
  ablation effect for its 8 most selective neurons: histogram bars (pixels) equal to the
  kernel's counts per bin, a bar click / list keyboard / scatter click selecting a neuron whose
  facts, per-class mean bars and top examples equal the kernel's, ``selected`` both ways.

Printed numbers are compared as strings with Python mirrors of the front end's formatting
(Number.prototype.toFixed / toPrecision / toExponential: exact binary value, ties away from 0).
Screenshots go to build/screenshots/lab-lens*.png and lab-selectivity*.png.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser import lab_notebook
from tests.browser.lab import Lab
from tests.browser.lab_notebook import (
    ACTIVE_CELL,
    PIXEL,
    RENDER_TIMEOUT_MS,
    RENDERERS,
    ROUND_TRIP_MS,
    Notebook,
    save,
)
from tests.browser.offline_page import visible_token as visible

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

UI_TIMEOUT_MS = 10_000
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

# ---- JavaScript run in the page --------------------------------------------------------------

# records every fillText on a `canvas.ms-canvas` (the lens grid): [canvas id, text, x, y]
FILL_RECORDER = """(() => {
  const orig = CanvasRenderingContext2D.prototype.fillText;
  let next = 0;
  window.__fills = [];
  CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
    const c = this.canvas;
    if (c && c.classList && c.classList.contains('ms-canvas')) {
      if (c.__fillId === undefined) c.__fillId = ++next;
      window.__fills.push([c.__fillId, String(text), x, y]);
    }
    return orig.call(this, text, x, y, ...rest);
  };
})();"""

CANVAS_HASH = """(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0; for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) | 0; return h; }"""


# ---- Python mirrors of the front end's text ---------------------------------------------------

def _digits(x: float, sig: int) -> tuple[str, int]:
    """``sig`` significant digits of |x| (exact binary value, ties away from 0) and its exponent."""
    d = Decimal(abs(x))
    e = d.adjusted()
    n = int(d.scaleb(sig - 1 - e).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if n >= 10 ** sig:
        n //= 10
        e += 1
    return str(n), e


def to_exponential(x: float, f: int) -> str:
    """Number.prototype.toExponential(f)."""
    if x == 0:
        return "0" + ("." + "0" * f if f else "") + "e+0"
    m, e = _digits(x, f + 1)
    return ("-" if x < 0 else "") + m[0] + ("." + m[1:] if f else "") + f"e{'+' if e >= 0 else '-'}{abs(e)}"


def to_precision(x: float, p: int) -> str:
    """Number.prototype.toPrecision(p)."""
    if x == 0:
        return "0" + ("." + "0" * (p - 1) if p > 1 else "")
    sign = "-" if x < 0 else ""
    m, e = _digits(x, p)
    if e < -6 or e >= p:
        return sign + m[0] + ("." + m[1:] if p > 1 else "") + f"e{'+' if e >= 0 else '-'}{abs(e)}"
    if e == p - 1:
        return sign + m
    if e >= 0:
        return sign + m[:e + 1] + "." + m[e + 1:]
    return sign + "0." + "0" * (-(e + 1)) + m


def to_fixed(x: float, f: int) -> str:
    """Number.prototype.toFixed(f) (|x| < 1e21)."""
    n = str(int(Decimal(abs(x)).scaleb(f).quantize(Decimal(1), rounding=ROUND_HALF_UP))).rjust(f + 1, "0")
    return ("-" if x < 0 else "") + n[:-f] + "." + n[-f:]


def format_value(v: float) -> str:
    """js/lib/colors.ts formatValue."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    a = abs(v)
    return to_exponential(v, 3) if a != 0 and (a < 1e-3 or a >= 1e5) else to_precision(v, 4)


def fmt_prob(p: float) -> str:
    """js/widgets/logit_lens.ts fmtProb."""
    if math.isnan(p):
        return "NaN"
    if math.isinf(p):
        return "+inf" if p > 0 else "-inf"
    return to_exponential(p, 2) if p != 0 and p < 1e-3 else to_fixed(p, 3)


#: what String.prototype.trim strips (WhiteSpace + LineTerminator)


def js_json(s: str) -> str:
    """JSON.stringify of a string (no surrogates here)."""
    return json.dumps(s, ensure_ascii=False)


#: js/lib/colors.ts viridis stops
VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
           (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)]


VIRIDIS_TABLE = lab_notebook.colour_table(VIRIDIS, rounded=True)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def near(rgba: list[int], want: tuple[int, int, int], tol: int = 2) -> bool:
    return max(abs(got - exp) for got, exp in zip(rgba[:3], want, strict=True)) <= tol


# ---- an open, executed notebook (with the fillText recorder) ---------------------------------

def assert_live_view(nb: Notebook, cell: int) -> None:
    """Lab shows the live widget view, not the text/html snapshot carried in the same bundle."""
    renderers = nb.page.evaluate(RENDERERS, cell)
    assert [m for m, has_view in renderers if has_view] == [WIDGET_MIME], renderers
    assert "text/html" not in [m for m, _ in renderers], renderers
    assert nb.cell(cell).locator(".mechscope-snapshot").count() == 0


def wait_attached(locator: Any, what: str, timeout_ms: int = UI_TIMEOUT_MS) -> None:
    try:
        locator.wait_for(state="attached", timeout=timeout_ms)
    except PlaywrightTimeout as exc:
        raise AssertionError(f"never appeared: {what}") from exc


# ==== LogitLens ====================================================================================

LENS_NB = "lab-lens.ipynb"
PROMPT, TARGET = "The cat sat on the mat", " mo"
HOSTILE, HOSTILE_TARGET = "<img src=x onerror=alert(1)>", ")>"
LENS_CELLS = [
    "import mechscope\nfrom mechscope.widgets import decode_array\n"
    "model = mechscope.tiny_model(\"llama\")",
    f"prompt = {PROMPT!r}\n"
    f"lens = mechscope.logit_lens(model, prompt, top_k=3, target={TARGET!r})\nw = lens.show()\nw",
    f"lens2 = mechscope.logit_lens(model, {HOSTILE!r}, top_k=3, target={HOSTILE_TARGET!r})\n"
    "w2 = lens2.show()\nw2",
]
LENS_CELL, HOSTILE_CELL = 2, 3
LENS = '.jp-OutputArea-output [data-ms-ready="1"] .ms-lens'

LENS_KERNEL = ("{{'probs': decode_array({w}.top_probs).astype(float).tolist(), "
               "'probs32': {lens}.top_probs.astype(float).tolist(), 'top': {lens}.top_tokens.tolist(), "
               "'ids': {lens}.top_ids.tolist(), 'tokens': {lens}.tokens, 'layers': {w}.layer_labels, "
               "'tprob': decode_array({w}.target_prob).astype(float).tolist(), "
               "'trank': decode_array({w}.target_rank).tolist(), "
               "'tprob32': {lens}.target_prob.astype(float).tolist(), 'trank0': {lens}.target_rank.tolist(), "
               "'target': {w}.target, 'mode': {w}.color_mode, 'k': {w}.k}}")


@dataclass
class LensView:
    nb: Notebook
    cell: int
    root: Any  # .ms-lens
    canvas: Any

    def kernel(self, w: str = "w", lens: str = "lens") -> dict:
        return self.nb.json(LENS_KERNEL.format(w=w, lens=lens))

    def cell_size(self) -> tuple[float, float]:
        return float(self.canvas.get_attribute("data-cell-w")), float(self.canvas.get_attribute("data-cell-h"))

    def centre(self, layer: int, pos: int, n_layers: int) -> tuple[float, float]:
        """Page coordinates of a cell: the last layer is the top row."""
        self.canvas.scroll_into_view_if_needed()
        box = self.canvas.bounding_box()
        cw, ch = self.cell_size()
        return box["x"] + (pos + 0.5) * cw, box["y"] + (n_layers - 1 - layer + 0.5) * ch

    def corner_rgb(self, layer: int, pos: int, n_layers: int) -> tuple[int, int, int]:
        """A cell's colour near its top-left corner, away from the token drawn in it."""
        cw, ch = self.cell_size()
        rgba = self.canvas.evaluate(PIXEL, [pos * cw + 3, (n_layers - 1 - layer) * ch + 3])
        assert rgba[3] == 255, rgba
        return tuple(rgba[:3])

    def tooltip(self) -> str:
        tip = self.root.locator(".ms-tooltip")
        tip.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        return tip.text_content()

    def fills(self) -> list[list]:
        """The texts drawn on this canvas by its latest draw(): [text, x, y] per cell."""
        fid = self.canvas.evaluate("(c) => c.__fillId ?? null")
        assert fid is not None, "nothing drawn as text on the lens canvas"
        return [f[1:] for f in self.nb.page.evaluate("window.__fills") if f[0] == fid]


def expected_t(k: dict, mode: str) -> list[list[float]]:
    """logit_lens.ts scaled(): each cell's position on the colour scale, in [0, 1]."""
    if mode == "target_rank":
        max_rank = max(1, *(r for row in k["trank"] for r in row))
        denom = math.log10(max_rank + 1)
        return [[1 - math.log10(r + 1) / denom for r in row] for row in k["trank"]]
    src = k["tprob"] if mode == "target_prob" else [[cell[0] for cell in row] for row in k["probs"]]
    return [[min(1.0, max(0.0, v)) for v in row] for row in src]


def assert_cell_colours(view: LensView, k: dict, mode: str) -> set[tuple[int, int, int]]:
    """Every cell's colour is its value on viridis (index +-1 for log10/float rounding)."""
    t = expected_t(k, mode)
    n_layers = len(t)
    bad, seen = [], set()
    for layer, row in enumerate(t):
        for pos, v in enumerate(row):
            got = view.corner_rgb(layer, pos, n_layers)
            seen.add(got)
            i = math.floor(v * 255 + 0.5)
            near = [VIRIDIS_TABLE[j] for j in (i - 1, i, i + 1) if 0 <= j < 256]
            if min(max(abs(g - e) for g, e in zip(got, want, strict=True)) for want in near) > 1:
                bad.append(((layer, pos), v, got, VIRIDIS_TABLE[i]))
    assert not bad, f"{mode}: cells off the viridis scale ((layer, pos), t, rgb, expected): {bad[:4]}"
    return seen


def assert_cell_texts(view: LensView, k: dict) -> None:
    """The latest draw wrote each cell's top-1 token (made visible, maybe cut with '…') in it."""
    n_layers, n_pos = len(k["top"]), len(k["tokens"])
    cw, ch = view.cell_size()
    drawn = view.fills()[-n_layers * n_pos:]
    assert len(drawn) == n_layers * n_pos, drawn
    got = {}
    for text, x, y in drawn:
        pos, row = math.floor(x / cw), math.floor(y / ch)
        assert x == pytest.approx((pos + 0.5) * cw) and y == pytest.approx((row + 0.5) * ch + 0.5), (text, x, y)
        got[(n_layers - 1 - row, pos)] = text
    bad = []
    for layer in range(n_layers):
        for pos in range(n_pos):
            want, text = visible(k["top"][layer][pos][0]), got.get((layer, pos))
            if not (text == want or (text and text.endswith("…") and want.startswith(text[:-1]))):
                bad.append(((layer, pos), text, want))
    assert not bad, f"cell texts ((layer, pos), drawn, top-1): {bad}"


def expected_tooltip(k: dict, layer: int, pos: int) -> str:
    lines = [f"{k['layers'][layer]}  |  position {pos} {js_json(k['tokens'][pos])}"]
    for r in range(k["k"]):
        lines.append(f"{r + 1:>2}. {js_json(k['top'][layer][pos][r])}  {fmt_prob(k['probs'][layer][pos][r])}")
    if k["target"] is not None:
        lines.append(f"target {js_json(k['target'])}: p {fmt_prob(k['tprob'][layer][pos])}, "
                     f"rank {k['trank'][layer][pos]}")
    return "\n".join(lines)


def assert_tooltip_is_the_kernels(text: str, k: dict, layer: int, pos: int) -> None:
    assert text == expected_tooltip(k, layer, pos), (text, expected_tooltip(k, layer, pos))
    # the printed probabilities are the lens's own (float32) values, to float16 + print precision
    for r, line in enumerate(text.split("\n")[1:1 + k["k"]]):
        shown, want = float(line.rsplit("  ", 1)[1]), k["probs32"][layer][pos][r]
        # toFixed(3) above 1e-3, else 3 significant digits; float16 adds 2**-11 relative
        tol = 5e-4 + 5e-4 * want if shown >= 1e-3 else 5.5e-3 * want
        assert abs(shown - want) <= tol, (line, want)
    assert k["tprob"][layer][pos] == k["tprob32"][layer][pos] and k["trank"][layer][pos] == k["trank0"][layer][pos]


@pytest.fixture(scope="class")
def lens(jupyter_lab: Lab, chromium: Any) -> Iterator[LensView]:
    with lab_notebook.open_widget(jupyter_lab, chromium, LENS_NB, LENS_CELLS, LENS_CELL, LENS, "canvas.ms-canvas",
                     FILL_RECORDER) as (nb, root, canvas):
        yield LensView(nb, LENS_CELL, root, canvas)


class TestLogitLens:
    def test_live_view_draws_the_kernels_grid(self, lens: LensView) -> None:
        assert_live_view(lens.nb, LENS_CELL)
        k = lens.kernel()
        n_layers, n_pos = len(k["top"]), len(k["tokens"])
        assert (n_layers, n_pos, k["k"]) == (2, 10, 3) and k["target"] == TARGET
        assert k["mode"] == "target_prob"  # the default with a target
        assert lens.root.get_attribute("data-mode") == "target_prob"
        assert lens.root.locator("select").input_value() == "target_prob"
        assert lens.root.locator(".ms-lens-head .ms-note").text_content() == f"target {js_json(TARGET)}"
        assert lens.root.locator(".ms-title").text_content() == lens.nb.json("w.title")
        assert lens.root.locator(".ms-rowlabels > div").all_text_contents() == ["L1", "L0"]
        assert lens.root.locator(".ms-collabels > div").all_text_contents() == [visible(t) for t in k["tokens"]]
        cw, ch = lens.cell_size()
        box = lens.canvas.bounding_box()
        assert (box["width"], box["height"]) == (pytest.approx(n_pos * cw, abs=1), pytest.approx(n_layers * ch, abs=1))
        # every cell's colour is its target probability on viridis (all near 0 on this random
        # model) and the token drawn in it is the kernel's top-1
        assert_cell_colours(lens, k, "target_prob")
        assert_cell_texts(lens, k)
        assert lens.nb.json("w.hovered") == []
        lens.root.scroll_into_view_if_needed()
        save(lens.nb.cell(LENS_CELL).locator(".jp-Cell-outputArea"), "lab-lens")

    def test_hover_shows_the_kernels_top_k_and_reaches_the_kernel(self, lens: LensView) -> None:
        k = lens.kernel()
        n_layers = len(k["top"])
        page = lens.nb.page
        for layer, pos in ((0, 3), (1, 9), (1, 6)):
            page.mouse.move(*lens.centre(layer, pos, n_layers))
            assert_tooltip_is_the_kernels(lens.tooltip(), k, layer, pos)
            lens.nb.wait_value("w.hovered", [layer, pos])
        # the last position's top-1 is the target at both layers here (rank 0)
        assert k["trank"][1][9] == 0 and k["top"][1][9][0] == TARGET
        page.mouse.move(*lens.centre(1, 9, n_layers))
        lens.tooltip()
        save(lens.nb.cell(LENS_CELL).locator(".jp-Cell-outputArea"), "lab-lens-hover")
        page.mouse.move(0, 0)
        lens.root.locator(".ms-tooltip").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)

    def test_keyboard_cursor_shows_the_cell(self, lens: LensView) -> None:
        k = lens.kernel()
        page = lens.nb.page
        lens.canvas.focus()
        active = page.evaluate(ACTIVE_CELL)
        for key in ("ArrowRight", "ArrowRight", "ArrowUp"):  # from (0, 0) to layer 1, position 2
            page.keyboard.press(key)
        cursor = lens.root.locator(".ms-cursor")
        cursor.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        cw, ch = lens.cell_size()
        ub, cb = cursor.bounding_box(), lens.canvas.bounding_box()
        assert (ub["x"] - cb["x"], ub["y"] - cb["y"]) == (pytest.approx(2 * cw, abs=1.5), pytest.approx(0, abs=1.5))
        assert_tooltip_is_the_kernels(lens.tooltip(), k, 1, 2)
        lens.nb.wait_value("w.hovered", [1, 2])
        page.keyboard.press("End")
        assert_tooltip_is_the_kernels(lens.tooltip(), k, 1, len(k["tokens"]) - 1)
        lens.nb.wait_value("w.hovered", [1, len(k["tokens"]) - 1])
        # the keys moved the lens's cursor, not JupyterLab's cell selection
        assert lens.canvas.evaluate("(c) => document.activeElement === c")
        assert page.evaluate(ACTIVE_CELL) == active
        page.keyboard.press("Escape")
        lens.root.locator(".ms-tooltip").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)

    def test_colour_mode_select_by_keyboard_reaches_the_kernel(self, lens: LensView) -> None:
        page = lens.nb.page
        k = lens.kernel()
        select = lens.root.locator("select")
        before = lens.canvas.evaluate(CANVAS_HASH)
        select.focus()
        active = page.evaluate(ACTIVE_CELL)
        page.keyboard.press("ArrowDown")  # target probability -> target rank (log)
        wait_attached(lens.nb.cell(LENS_CELL).locator(f'{LENS}[data-mode="target_rank"]'), "data-mode target_rank")
        lens.nb.wait_value("w.color_mode", "target_rank")
        assert select.input_value() == "target_rank"
        assert lens.canvas.evaluate(CANVAS_HASH) != before
        colours = assert_cell_colours(lens, k, "target_rank")
        assert len(colours) >= 10, colours  # ranks 0..~400 spread over the log scale
        # rank 0 (the target is top-1 at the last position) is viridis's yellow end
        assert lens.corner_rgb(1, 9, 2) == VIRIDIS_TABLE[255]
        max_rank = max(r for row in k["trank"] for r in row)
        assert lens.root.locator(".ms-colorbar > div").all_text_contents() == [
            "rank 0", f"rank {max_rank}", f"rank of {js_json(TARGET)} (log scale)", "grey / = NaN"]
        assert_cell_texts(lens, k)  # redrawn: same tokens
        lens.root.scroll_into_view_if_needed()
        save(lens.nb.cell(LENS_CELL).locator(".jp-Cell-outputArea"), "lab-lens-rank")
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")  # -> top-1 probability
        wait_attached(lens.nb.cell(LENS_CELL).locator(f'{LENS}[data-mode="top1"]'), "data-mode top1")
        lens.nb.wait_value("w.color_mode", "top1")
        assert_cell_colours(lens, k, "top1")
        assert select.evaluate("(s) => document.activeElement === s")
        assert page.evaluate(ACTIVE_CELL) == active  # the keys changed the select, not the cell
        # and from the kernel back to the view
        assert lens.nb.eval("setattr(w, 'color_mode', 'target_prob')") == "None"
        wait_attached(lens.nb.cell(LENS_CELL).locator(f'{LENS}[data-mode="target_prob"]'), "data-mode target_prob",
                      ROUND_TRIP_MS)
        assert select.input_value() == "target_prob"
        assert_cell_colours(lens, k, "target_prob")
        assert lens.canvas.evaluate(CANVAS_HASH) == before

    def test_hostile_prompt_stays_text(self, lens: LensView) -> None:
        nb = lens.nb
        assert_live_view(nb, HOSTILE_CELL)
        root = nb.cell(HOSTILE_CELL).locator(LENS)
        root.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
        view = LensView(nb, HOSTILE_CELL, root, root.locator("canvas.ms-canvas"))
        k = view.kernel("w2", "lens2")
        assert "".join(k["tokens"]) == HOSTILE
        assert root.locator(".ms-collabels > div").all_text_contents() == [visible(t) for t in k["tokens"]]
        assert root.locator(".ms-collabels > div").evaluate_all("(ns) => ns.map((n) => n.title)") == [
            js_json(t) for t in k["tokens"]]
        assert root.locator(".ms-lens-head .ms-note").text_content() == f"target {js_json(HOSTILE_TARGET)}"
        assert_cell_colours(view, k, "target_prob")
        assert_cell_texts(view, k)
        pos = k["tokens"].index("<")
        nb.page.mouse.move(*view.centre(1, pos, 2))
        text = view.tooltip()
        assert text.split("\n")[0] == f'L1  |  position {pos} "<"'
        assert_tooltip_is_the_kernels(text, k, 1, pos)
        nb.wait_value("w2.hovered", [1, pos])
        out = nb.cell(HOSTILE_CELL).locator(".jp-Cell-outputArea")
        assert root.locator(".ms-collabels div *, .ms-tooltip *, .ms-title *").count() == 0
        assert out.locator("img").count() == 0
        assert nb.page.locator(".jp-Notebook img, .jp-Notebook [onerror]").count() == 0
        assert nb.dialogs == []
        save(out, "lab-lens-hostile")
        nb.page.mouse.move(0, 0)


# ==== Selectivity ==================================================================================

SEL_NB = "lab-selectivity.ipynb"
N_TOP = 8  # neurons whose ablation effect is measured
SEL_METRIC = "logit diff change (zero ablation)"
SEL_CELLS = [
    "import dataclasses\nimport numpy as np\nimport mechscope\n"
    "from mechscope.datasets import labelled_texts\nfrom mechscope.metrics import logit_diff\n"
    "from mechscope.widgets import decode_array\nmodel = mechscope.tiny_model(\"llama\")",
    "examples = labelled_texts(n_per_class=4)\n"
    "sel0 = mechscope.selectivity(model, examples, layer=1)\n"
    f"effect = np.full(sel0.n_neurons, np.nan, dtype=np.float32)\nfor n in sel0.ranked({N_TOP}):\n"
    "    r = mechscope.ablate(model, \"The cat sat on the\", mechscope.neurons(1, [int(n)]),\n"
    "                         metric=logit_diff(\" the\", \" of\"))\n"
    "    effect[n] = r.metric_change\n"
    f"sel = dataclasses.replace(sel0, ablation_effect=effect, ablation_metric={SEL_METRIC!r})\n"
    "w = sel.show()\nw",
]
SEL_CELL = 2
SEL = '.jp-OutputArea-output [data-ms-ready="1"] .ms-sel'
BINS = 40
BAR, ACCENT = rgb("#4c78a8"), rgb("#f58518")
PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"]

SEL_KERNEL = ("{'classes': w.classes, 'index16': decode_array(w.index).astype(float).tolist(), "
              "'ranked': decode_array(w.ex_neurons).tolist(), 'preferred': sel.preferred.tolist(), "
              "'effect': sel.ablation_effect.astype(float).tolist(), 'metric': w.ablation_metric, "
              "'selected': w.selected, 'top8': sel0.ranked(8).tolist(), 'title': w.title}")

NEURON_KERNEL = ("(lambda n: {{'means': sel.class_means[:, n].astype(float).tolist(), "
                 "'index': float(sel.index[n]), 'floor': float(sel.floor[n]), 'preferred': int(sel.preferred[n]), "
                 "'effect': float(sel.ablation_effect[n]), 'examples': [{{'label': e.label, 'tokens': e.tokens, "
                 "'acts': e.activations.astype(float).tolist()}} for e in sel.top_examples(n, 5)]}})({n})")


@dataclass
class SelView:
    nb: Notebook
    root: Any  # .ms-sel
    hist: Any
    scatter: Any
    detail: Any
    k: dict  # SEL_KERNEL, read once (the data do not change)

    def geo(self, canvas: Any) -> dict:
        return json.loads(canvas.get_attribute("data-plot"))

    def bins(self) -> list[list[int]]:
        """selectivity.ts drawHist's bins (neuron ids per bin), from the kernel's index."""
        g = self.geo(self.hist)
        out: list[list[int]] = [[] for _ in range(BINS)]
        for i, v in enumerate(self.k["index16"]):
            if math.isfinite(v):
                out[self.bin_of(v, g)].append(i)
        return out

    @staticmethod
    def bin_of(v: float, g: dict) -> int:
        return min(BINS - 1, max(0, math.floor(((v - g["xlo"]) / (g["xhi"] - g["xlo"])) * BINS)))

    def best(self, members: list[int]) -> int:
        best = -1
        for i in members:
            if best < 0 or self.k["index16"][i] > self.k["index16"][best]:
                best = i
        return best

    def bar_point(self, b: int) -> tuple[float, float]:
        """Canvas (CSS px) point inside bin b's bar, on its bottom row."""
        g = self.geo(self.hist)
        bw = g["width"] / BINS
        return g["left"] + b * bw + 0.5 + max(1, bw - 1) / 2, g["top"] + g["height"] - 0.5

    def page_point(self, canvas: Any, x: float, y: float) -> tuple[float, float]:
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        return box["x"] + x, box["y"] + y

    def pixel(self, canvas: Any, x: float, y: float) -> list[int]:
        return canvas.evaluate(PIXEL, [x, y])

    def neuron(self, n: int) -> dict:
        return self.nb.json(NEURON_KERNEL.format(n=n))

    def wait_detail(self, n: int, timeout_ms: int = UI_TIMEOUT_MS) -> None:
        wait_attached(self.root.locator(f'.ms-sel-detail[data-neuron="{n}"]'), f"detail of neuron {n}", timeout_ms)

    def rank(self, n: int) -> int:
        v = self.k["index16"][n]
        return 1 + sum(1 for x in self.k["index16"] if x > v)


def assert_detail_is_the_kernels(s: SelView, n: int) -> dict:
    """The detail pane shows neuron n: facts, per-class mean bars and top examples as computed."""
    s.wait_detail(n)
    kn, k = s.neuron(n), s.k
    d = s.detail
    assert d.locator(".ms-sel-head").text_content() == f"neuron {n}"
    # the index travels as float16: what is printed is the float16 value, within 1e-3 of the kernel's
    assert abs(k["index16"][n] - kn["index"]) <= 1e-3 * max(abs(kn["index"]), 1e-3) + 1e-7
    facts = [f"selectivity {format_value(k['index16'][n])} (rank {s.rank(n)} of {len(k['index16'])})",
             f"prefers {k['classes'][kn['preferred']]}", f"floor {format_value(kn['floor'])}",
             f"{k['metric']} {format_value(kn['effect'])}"]
    assert d.locator(".ms-sel-facts").text_content() == " · ".join(facts)
    # per-class means: names, numbers as printed, the preferred class bold, bars to scale
    assert d.locator(".ms-sel-means .ms-cls").all_text_contents() == k["classes"]
    assert d.locator(".ms-sel-means .ms-sel-num").all_text_contents() == [format_value(v) for v in kn["means"]]
    assert d.locator(".ms-sel-means .ms-pref").all_text_contents() == [k["classes"][kn["preferred"]]]
    means = kn["means"]
    lo, hi = min(0.0, *means), max(0.0, *means)
    bars = d.locator(".ms-sel-track").evaluate_all("""(ts) => ts.map((t) => {
      const f = t.querySelector('.ms-fill'), a = t.getBoundingClientRect(), b = f.getBoundingClientRect();
      return [b.left - a.left, b.width, a.width, getComputedStyle(f).backgroundColor]; })""")
    for c, (left, width, track, colour) in enumerate(bars):
        v = means[c]
        assert left == pytest.approx((min(0.0, v) - lo) / (hi - lo) * track, abs=1), (c, v, left)
        assert width == pytest.approx(abs(v) / (hi - lo) * track, abs=1), (c, v, width)
        assert colour == "rgb({}, {}, {})".format(*rgb(PALETTE[c % len(PALETTE)])), (c, colour)
    # top examples: the kernel's top_examples, tokens literal, activations to float16 precision
    rows = d.locator(".ms-sel-ex")
    if n not in k["ranked"]:
        assert rows.count() == 0
        assert d.locator(".ms-note").text_content() == (
            f"top examples are kept for the {len(k['ranked'])} most selective neurons only; build the "
            "widget with a larger top_n to see this one's.")
        return kn
    assert rows.count() == len(kn["examples"]) == 5
    for e, ex in enumerate(kn["examples"]):
        row = rows.nth(e)
        assert row.locator(".ms-badge").text_content() == ex["label"]
        toks = row.locator(".ms-tok")
        assert toks.all_text_contents() == [visible(t) for t in ex["tokens"]]
        acts = [float(a) for a in toks.evaluate_all("(s) => s.map((x) => x.dataset.act)")]
        assert acts == pytest.approx(ex["acts"], rel=1e-3, abs=1e-4), (e, acts, ex["acts"])
        assert row.locator(".ms-note").all_text_contents()[-1].startswith("   peak ")
    return kn


def assert_selected(s: SelView, n: int) -> None:
    """n is selected in the view (list entry pressed, if listed) and in the kernel."""
    s.wait_detail(n)
    pressed = s.root.locator('.ms-sel-list button[aria-pressed="true"]')
    if n in s.k["ranked"]:
        assert pressed.count() == 1 and pressed.get_attribute("data-neuron") == str(n)
    else:
        assert pressed.count() == 0
    s.nb.wait_value("w.selected", n)


@pytest.fixture(scope="class")
def selv(jupyter_lab: Lab, chromium: Any) -> Iterator[SelView]:
    with lab_notebook.open_widget(jupyter_lab, chromium, SEL_NB, SEL_CELLS, SEL_CELL, SEL, "canvas.ms-sel-hist",
                     FILL_RECORDER) as (nb, root, hist):
        k = nb.json(SEL_KERNEL)
        yield SelView(nb, root, hist, root.locator("canvas.ms-sel-scatter"), root.locator(".ms-sel-detail"), k)


class TestSelectivity:
    def test_live_view_draws_the_kernels_histogram_and_list(self, selv: SelView) -> None:
        s, k = selv, selv.k
        assert_live_view(s.nb, SEL_CELL)
        n_neurons = len(k["index16"])
        assert n_neurons == 128 and k["classes"] == ["animals", "cities", "code", "french", "numbers"]
        assert s.root.locator(".ms-title").text_content() == k["title"]
        assert s.root.locator(".ms-sel-caption span").first.text_content() == f"selectivity of {n_neurons} neurons (click a bar)"
        # ranked list: the kernel's 50 most selective neurons, in order, with their index
        buttons = s.root.locator(".ms-sel-list button")
        assert len(k["ranked"]) == 50
        assert buttons.evaluate_all("(bs) => bs.map((b) => Number(b.dataset.neuron))") == k["ranked"]
        for j in (0, 1, 49):
            n = k["ranked"][j]
            nums = buttons.nth(j).locator(".ms-sel-num").all_text_contents()
            assert nums == [f"n{n}", format_value(k["index16"][n])], (j, nums)
            assert buttons.nth(j).locator(".ms-cls").text_content() == k["classes"][k["preferred"][n]]
        # the first is selected, in the view and the kernel
        assert k["selected"] == k["ranked"][0]
        assert_selected(s, k["ranked"][0])
        assert_detail_is_the_kernels(s, k["ranked"][0])
        # histogram: a bar exactly where the kernel's indices put neurons, as tall as their
        # count, the selected neuron's bar in the accent colour
        g = s.geo(s.hist)
        bins = s.bins()
        sel_bin = s.bin_of(k["index16"][k["selected"]], g)
        max_count = max(len(b) for b in bins)
        wrong = []
        for b, members in enumerate(bins):
            x, y = s.bar_point(b)
            bottom = s.pixel(s.hist, x, y)
            if not members:
                if bottom[3] != 0:
                    wrong.append((b, 0, bottom))
                continue
            want = ACCENT if b == sel_bin else BAR
            # (+-2: the selection line, antialiased, is drawn over the accent bar)
            if not near(bottom, want) or bottom[3] != 255:
                wrong.append((b, len(members), bottom))
            top_y = g["top"] + g["height"] - max(2, len(members) / max_count * g["height"])
            inside = s.pixel(s.hist, x, math.ceil(top_y) + 0.5)
            above = s.pixel(s.hist, x, math.floor(top_y) - 1.5) if top_y - 2 >= 0 else [0, 0, 0, 0]
            if inside[3] != 255 or (b != sel_bin and above[3] != 0):
                wrong.append((b, len(members), "height", inside, above))
        assert not wrong, f"histogram bars off the kernel's counts (bin, count, rgba): {wrong[:5]}"
        assert sum(1 for b in bins if b) >= 8, bins  # a spread, not one bar
        # the scatter: drawn, the 8 measured neurons in their preferred class's colour
        assert s.scatter.is_visible()
        assert s.root.locator(".ms-legend span").all_text_contents()[:5] == k["classes"]
        s.root.scroll_into_view_if_needed()
        s.nb.page.mouse.move(0, 0)
        save(s.nb.cell(SEL_CELL).locator(".jp-Cell-outputArea"), "lab-selectivity")

    def test_bar_click_selects_its_best_neuron(self, selv: SelView) -> None:
        s, k = selv, selv.k
        page = s.nb.page
        bins = s.bins()
        full = [b for b, m in enumerate(bins) if m]
        # the second-highest bar: its most selective neuron is listed (has top examples)
        b = full[-2]
        want = s.best(bins[b])
        assert want in k["ranked"] and want != k["selected"]
        page.mouse.move(*s.page_point(s.hist, *s.bar_point(b)))
        tip = s.root.locator(".ms-tooltip")
        tip.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        g = s.geo(s.hist)
        lo = g["xlo"] + ((g["xhi"] - g["xlo"]) * b) / BINS
        hi = g["xlo"] + ((g["xhi"] - g["xlo"]) * (b + 1)) / BINS
        count = len(bins[b])
        assert tip.text_content() == (f"{format_value(lo)}–{format_value(hi)}: {count} neuron{'' if count == 1 else 's'}"
                                      f"\nclick selects n{want}")
        page.mouse.click(*s.page_point(s.hist, *s.bar_point(b)))
        assert_selected(s, want)
        assert_detail_is_the_kernels(s, want)
        assert near(s.pixel(s.hist, *s.bar_point(b)), ACCENT)  # the clicked bar is highlighted
        page.mouse.move(0, 0)
        save(s.nb.cell(SEL_CELL).locator(".jp-Cell-outputArea"), "lab-selectivity-bar")
        # ArrowLeft on the histogram: the next non-empty bar down
        s.hist.focus()
        active = page.evaluate(ACTIVE_CELL)
        page.keyboard.press("ArrowLeft")
        below = s.best(bins[full[-3]])
        assert_selected(s, below)
        assert_detail_is_the_kernels(s, below)
        assert page.evaluate(ACTIVE_CELL) == active
        # a low bar: its best neuron is not among the 50 listed, so no examples, a note instead
        low = next(b for b in full if s.best(bins[b]) not in k["ranked"])
        page.mouse.click(*s.page_point(s.hist, *s.bar_point(low)))
        assert_selected(s, s.best(bins[low]))
        assert_detail_is_the_kernels(s, s.best(bins[low]))

    def test_ranked_list_keyboard_selection(self, selv: SelView) -> None:
        s, k = selv, selv.k
        page = s.nb.page
        buttons = s.root.locator(".ms-sel-list button")
        buttons.nth(2).click()
        assert_selected(s, k["ranked"][2])
        active = page.evaluate(ACTIVE_CELL)
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert_selected(s, k["ranked"][4])
        assert buttons.nth(4).evaluate("(b) => document.activeElement === b")
        page.keyboard.press("ArrowUp")
        assert_selected(s, k["ranked"][3])
        assert_detail_is_the_kernels(s, k["ranked"][3])
        # the keys moved through the list, not through JupyterLab's cells
        assert page.evaluate(ACTIVE_CELL) == active
        # the histogram follows: the selected neuron's bar is the accent one
        g = s.geo(s.hist)
        b = s.bin_of(k["index16"][k["ranked"][3]], g)
        assert near(s.pixel(s.hist, *s.bar_point(b)), ACCENT)
        page.mouse.move(0, 0)
        save(s.nb.cell(SEL_CELL).locator(".jp-Cell-outputArea"), "lab-selectivity-keyboard")

    def test_scatter_click_and_selection_from_the_kernel(self, selv: SelView) -> None:
        s, k = selv, selv.k
        page = s.nb.page
        g = s.geo(s.scatter)

        def point(i: int) -> tuple[float, float]:
            x = g["left"] + (k["index16"][i] - g["xlo"]) / (g["xhi"] - g["xlo"]) * g["width"]
            y = g["top"] + (g["yhi"] - k["effect"][i]) / (g["yhi"] - g["ylo"]) * g["height"]
            return x, y

        measured = [i for i, e in enumerate(k["effect"]) if math.isfinite(e)]
        assert sorted(measured) == sorted(k["top8"])
        current = int(s.detail.get_attribute("data-neuron"))
        # the measured neuron furthest from every other point, so the click is unambiguous
        pts = {i: point(i) for i in measured}

        def clearance(i: int) -> float:
            return min(math.dist(pts[i], pts[j]) for j in measured if j != i)

        pick = max((i for i in measured if i != current), key=clearance)
        assert clearance(pick) > 3, {i: clearance(i) for i in measured}
        before = s.scatter.evaluate(CANVAS_HASH)
        page.mouse.click(*s.page_point(s.scatter, *pts[pick]))
        assert_selected(s, pick)
        kn = assert_detail_is_the_kernels(s, pick)
        assert math.isfinite(kn["effect"]) and f"{SEL_METRIC} {format_value(kn['effect'])}" in s.detail.text_content()
        assert s.scatter.evaluate(CANVAS_HASH) != before  # the selection ring moved
        # the point is drawn in its preferred class's colour (the ring is 6 px away)
        px = s.pixel(s.scatter, *pts[pick])
        assert px[3] > 0 and near(px, rgb(PALETTE[k["preferred"][pick]]), tol=40), px
        page.mouse.move(0, 0)
        save(s.nb.cell(SEL_CELL).locator(".jp-Cell-outputArea"), "lab-selectivity-scatter")
        # Python sets `selected`: the view follows
        n = k["ranked"][10]
        assert s.nb.eval(f"setattr(w, 'selected', {n})") == "None"
        s.wait_detail(n, ROUND_TRIP_MS)
        assert_selected(s, n)
        assert_detail_is_the_kernels(s, n)
