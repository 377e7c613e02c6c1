"""Interactive widgets driven live in JupyterLab, through their Python round trip.

Each class writes its own notebook (nbformat) into the Lab fixture's root dir, opens it in
headless Chromium, runs every cell and then drives the live anywidget view like a user, reading
the kernel's side back through silent executions (``user_expressions``):

- `PatchingMap` (js/widgets/patching_map.ts) on the tiny llama: diverging colours on the canvas
  against a copy of js/lib/colors.ts's table, a click re-running that one patch in the kernel
  (empty -> pending -> rerun, equal to the sweep to 1e-5, top tokens before / after / clean),
  keyboard cursor and Enter, the normalised/raw control, hover reaching the kernel.
- `PatchingMap` over a 12-example dataset: the mean's colours, the hover's interval equal to the
  kernel's, the example picker reaching the kernel (``w.example``) and redrawing that example, a
  click re-running the cell over the whole dataset with its spread drawn.
- `SteeringPlayground` (js/widgets/steering_playground.ts) on the tiny llama: fast slider key
  presses debounced into one generation request, both panes equal to `mechscope.generate` in
  the kernel, a new prompt regenerating, a hostile prompt staying literal text.

Screenshots go to build/screenshots/lab-patching-map*.png and lab-steering*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.lab import Lab
from tests.browser.lab_notebook import (
    ACTIVE_CELL,
    GENERATE_TIMEOUT_MS,
    PIXEL,
    ROUND_TRIP_MS,
    WATCH_STATE,
    Notebook,
    colour_table,
    open_widget,
    save,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def close(shown: float, want: float, rel: float = 6e-4) -> bool:
    """``shown`` (4 significant digits, formatValue) is ``want``."""
    return abs(shown - want) <= rel * max(abs(want), 1e-3)


# ==== PatchingMap ================================================================================

PMAP_NB = "lab-widgets-patching.ipynb"
CLEAN, CORRUPT = "The cat sat on the", "The dog sat on the"
PMAP_CELLS = [
    "import numpy as np\nimport mechscope\nfrom mechscope.metrics import logit_diff\n"
    "model = mechscope.tiny_model(\"llama\", n_layers=4)",
    f"clean, corrupt = {CLEAN!r}, {CORRUPT!r}\n"
    "r = mechscope.patch(model, clean, corrupt, logit_diff(\" the\", \" of\"), progress=False)\n"
    "w = r.show(model=model)\nw",
]
PMAP_CELL = 2  # the cell displaying the map (0 is the markdown title)
PMAP = '.jp-OutputArea-output [data-ms-ready="1"] .ms-pmap'

#: js/lib/colors.ts, the diverging scale (blue below 0, white at 0, red above)
DIVERGING = [
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
    (247, 247, 247), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43),
    (103, 0, 31),
]


TABLE = colour_table(DIVERGING)


@dataclass
class MapView:
    nb: Notebook
    root: Any  # .ms-pmap
    canvas: Any
    detail: Any  # .ms-pmap-detail

    def cell_size(self) -> tuple[float, float]:
        return float(self.canvas.get_attribute("data-cell-w")), float(self.canvas.get_attribute("data-cell-h"))

    def centre(self, r: int, c: int) -> tuple[float, float]:
        """Page coordinates of cell (r, c): row 0 is the first layer, on top."""
        box = self.canvas.bounding_box()
        cw, ch = self.cell_size()
        return box["x"] + (c + 0.5) * cw, box["y"] + (r + 0.5) * ch

    def corner_rgb(self, r: int, c: int) -> tuple[int, int, int]:
        """A cell's colour near its top-left corner (away from the number drawn in it)."""
        cw, ch = self.cell_size()
        rgba = self.canvas.evaluate(PIXEL, [c * cw + 3, r * ch + 3])
        assert rgba[3] == 255, rgba
        return tuple(rgba[:3])

    def kernel(self) -> dict:
        return self.nb.json("{'shown': w.array.tolist(), 'values': r.values.tolist(), "
                            "'corrupt': float(r.corrupt_metric), 'clean': float(r.clean_metric), "
                            "'metric': w.metric_name, 'rows': w.row_labels, 'columns': w.columns, "
                            "'col_clean': w.col_clean, 'col_corrupt': w.col_corrupt, "
                            "'normalized': w.normalized}")

    def wait_rerun(self, r: int, c: int) -> None:
        self.root.locator(f'.ms-pmap-detail[data-state="rerun"][data-cell="{r},{c}"]').wait_for(
            state="attached", timeout=ROUND_TRIP_MS)


def assert_colours_match_scale(m: MapView, shown: list[list[float]], where: str) -> None:
    """Every cell's colour is its kernel value on colors.ts's diverging table, range +-max|v|."""
    flat = [abs(v) for row in shown for v in row]
    hi = max(flat) or 1.0
    assert float(m.canvas.get_attribute("data-hi")) == pytest.approx(hi, rel=1e-5), where
    assert float(m.canvas.get_attribute("data-lo")) == pytest.approx(-hi, rel=1e-5), where
    bad = []
    for r, row in enumerate(shown):
        for c, v in enumerate(row):
            got = m.corner_rgb(r, c)
            k = round((v + hi) / (2 * hi) * 255)
            near = [TABLE[j] for j in (k - 1, k, k + 1) if 0 <= j < 256]  # float32 rounding
            if min(max(abs(g - e) for g, e in zip(got, want, strict=True)) for want in near) > 2:
                bad.append(((r, c), v, got, [round(x) for x in TABLE[min(max(k, 0), 255)]]))
    assert not bad, f"{where}: cells off the diverging scale ((r, c), value, rgb, expected): {bad[:4]}"


def map_view(lab: Lab, chromium: Any, name: str, cells: list[str]) -> Iterator[MapView]:
    """The PatchingMap that notebook ``name`` (``cells``) shows in cell PMAP_CELL."""
    with open_widget(lab, chromium, name, cells, PMAP_CELL, PMAP, "canvas.ms-canvas") as (nb, root, canvas):
        yield MapView(nb, root, canvas, root.locator(".ms-pmap-detail"))


@pytest.fixture(scope="class")
def pmap(jupyter_lab: Lab, chromium: Any) -> Iterator[MapView]:
    yield from map_view(jupyter_lab, chromium, PMAP_NB, PMAP_CELLS)


class TestPatchingMap:
    def test_live_view_colours_follow_the_kernels_values(self, pmap: MapView) -> None:
        k = pmap.kernel()
        rows, cols = len(k["shown"]), len(k["shown"][0])
        assert (rows, cols) == (4, 7) and k["normalized"] is True
        assert pmap.root.locator(".ms-rowlabels > div").all_text_contents() == k["rows"] == [
            "L0", "L1", "L2", "L3"]
        # the canvas is R x C cells of data-cell-w x data-cell-h CSS pixels
        cw, ch = pmap.cell_size()
        box = pmap.canvas.bounding_box()
        assert box["width"] == pytest.approx(cols * cw, abs=1) and box["height"] == pytest.approx(rows * ch, abs=1)
        assert_colours_match_scale(pmap, k["shown"], "normalised")
        # the strongest cell (patching the last layer's residual at the last position restores
        # the clean run: 1.0) is the red end; an exactly-zero cell (position 0) is white
        assert k["shown"][3][6] == pytest.approx(1.0, abs=1e-5)
        red, zero = pmap.corner_rgb(3, 6), pmap.corner_rgb(0, 0)
        assert red == (103, 0, 31), red
        assert min(zero) >= 240, zero
        assert pmap.detail.get_attribute("data-state") == "empty"
        save(pmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map")

    def test_click_reruns_the_cell_in_the_kernel(self, pmap: MapView) -> None:
        r, c = 2, 6
        pmap.detail.evaluate(WATCH_STATE)
        pmap.root.scroll_into_view_if_needed()
        pmap.nb.page.mouse.click(*pmap.centre(r, c))
        pmap.wait_rerun(r, c)
        assert pmap.nb.page.evaluate("window.__states") == ["empty", "pending", "rerun"]
        pmap.nb.wait_value("w.selected", [r, c])
        d = pmap.nb.json("{k: w.detail[k] for k in ('kind', 'cell', 'value', 'normalized', 'before', "
                         "'after', 'clean')}")
        want = pmap.nb.json(f"float(r.values[{r}, {c}])")
        assert d["kind"] == "rerun" and d["cell"] == [r, c], d
        assert abs(d["value"] - want) <= 1e-5, (d["value"], want)
        # the pane: the re-run's value and its normalised value, and the top tokens as text
        rerun = pmap.detail.locator(".ms-pmap-rerun").inner_text()
        assert rerun.startswith("re-run through the model: ") and ", normalised " in rerun, rerun
        shown_value, shown_norm = numbers(rerun)
        assert close(shown_value, d["value"]) and close(shown_norm, d["normalized"]), (rerun, d)
        for col in ("before", "after", "clean"):
            toks = pmap.detail.locator(f"td[data-col={col}] .ms-pmap-tok").all_text_contents()
            assert [json.loads(t) for t in toks] == d[col]["tokens"], (col, toks, d[col])
        assert len(d["after"]["tokens"]) == 5
        # the selection outline sits on the clicked cell
        sel = pmap.root.locator(".ms-pmap-sel")
        assert sel.is_visible()
        cw, ch = pmap.cell_size()
        sb, cb = sel.bounding_box(), pmap.canvas.bounding_box()
        assert (sb["x"] - cb["x"], sb["y"] - cb["y"]) == (pytest.approx(c * cw, abs=1.5), pytest.approx(r * ch, abs=1.5))
        assert (sb["width"], sb["height"]) == (pytest.approx(cw, abs=1.5), pytest.approx(ch, abs=1.5))
        pmap.nb.page.mouse.move(0, 0)
        save(pmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-rerun")

    def test_keyboard_cursor_and_enter_select(self, pmap: MapView) -> None:
        page = pmap.nb.page
        page.mouse.move(0, 0)
        pmap.canvas.focus()
        active = page.evaluate(ACTIVE_CELL)
        for key in ("Home", "PageUp", "ArrowDown", "ArrowRight", "ArrowRight"):
            page.keyboard.press(key)
        cursor = pmap.root.locator(".ms-cursor")
        cursor.wait_for(state="visible", timeout=5_000)
        cw, ch = pmap.cell_size()
        ub, cb = cursor.bounding_box(), pmap.canvas.bounding_box()
        assert (ub["x"] - cb["x"], ub["y"] - cb["y"]) == (pytest.approx(2 * cw, abs=1.5), pytest.approx(ch, abs=1.5))
        tip = pmap.root.locator(".ms-tooltip")
        assert tip.is_visible() and tip.inner_text().startswith("L1  |  position 2 "), tip.inner_text()
        pmap.nb.wait_value("w.hovered", [1, 2])
        # the keys moved the map's cursor, not JupyterLab's cell selection
        assert pmap.canvas.evaluate("(c) => document.activeElement === c")
        assert page.evaluate(ACTIVE_CELL) == active
        save(pmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-keyboard")
        page.keyboard.press("Enter")
        pmap.wait_rerun(1, 2)
        pmap.nb.wait_value("w.selected", [1, 2])
        # End + PageDown: the last layer at the last position; its patch restores the clean run
        page.keyboard.press("End")
        page.keyboard.press("PageDown")
        page.keyboard.press("Enter")
        pmap.wait_rerun(3, 6)
        pmap.nb.wait_value("w.selected", [3, 6])
        d = pmap.nb.json("{k: w.detail[k] for k in ('value', 'normalized', 'after', 'clean')}")
        assert d["normalized"] == pytest.approx(1.0, abs=1e-5)
        assert d["after"]["tokens"] == d["clean"]["tokens"], d
        sb, cb = pmap.root.locator(".ms-pmap-sel").bounding_box(), pmap.canvas.bounding_box()
        assert (sb["x"] - cb["x"], sb["y"] - cb["y"]) == (pytest.approx(6 * cw, abs=1.5), pytest.approx(3 * ch, abs=1.5))

    def test_hover_shows_the_cell_and_reaches_the_kernel(self, pmap: MapView) -> None:
        k = pmap.kernel()
        page = pmap.nb.page
        for r, c in ((1, 1), (2, 4)):
            page.mouse.move(*pmap.centre(r, c))
            tip = pmap.root.locator(".ms-tooltip")
            tip.wait_for(state="visible", timeout=5_000)
            lines = tip.inner_text().split("\n")
            clean, corrupt = k["col_clean"][c], k["col_corrupt"][c]
            toks = json.dumps(clean) if clean == corrupt else f"{json.dumps(clean)} → {json.dumps(corrupt)}"
            assert lines[0] == f"{k['rows'][r]}  |  position {k['columns'][c]} {toks}", lines
            label, _, rest = lines[1].rpartition(": ")
            assert label == k["metric"] and rest.endswith(" (patched)"), lines
            assert close(numbers(rest)[0], k["values"][r][c]), (lines, k["values"][r][c])
            norm, raw = numbers(lines[2])
            assert lines[2].startswith("normalised: ") and "   minus corrupt: " in lines[2], lines
            assert close(norm, k["shown"][r][c]) and close(raw, k["values"][r][c] - k["corrupt"]), lines
            pmap.nb.wait_value("w.hovered", [r, c])
        assert lines[0] == 'L2  |  position 4 " o"', lines
        save(pmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-tooltip")
        page.mouse.move(0, 0)
        pmap.root.locator(".ms-tooltip").wait_for(state="hidden", timeout=5_000)

    def test_raw_toggle_reaches_the_kernel_and_recolours(self, pmap: MapView) -> None:
        page = pmap.nb.page
        pmap.root.locator("select").select_option("raw")
        pmap.nb.cell(PMAP_CELL).locator(f'{PMAP}[data-mode="raw"]').wait_for(state="attached", timeout=5_000)
        pmap.nb.wait_value("w.normalized", False)
        k = pmap.kernel()
        assert k["normalized"] is False
        raw = [[v - k["corrupt"] for v in row] for row in k["values"]]
        assert all(abs(a - b) <= 1e-5 for ra, rb in zip(raw, k["shown"], strict=True) for a, b in zip(ra, rb, strict=True))
        assert_colours_match_scale(pmap, k["shown"], "raw")
        # clean < corrupt on this random model: raw cells are mostly below 0, so the cell that
        # was the red end when normalised is now the blue end
        assert min(min(row) for row in k["shown"]) == pytest.approx(k["shown"][3][6])
        assert pmap.corner_rgb(3, 6) == (5, 48, 97)
        blue = [pmap.corner_rgb(r, 6) for r in range(4)]
        assert all(b > rr for rr, _, b in blue), blue
        page.mouse.move(0, 0)
        save(pmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-raw")
        pmap.root.locator("select").select_option("normalized")
        pmap.nb.cell(PMAP_CELL).locator(f'{PMAP}[data-mode="normalized"]').wait_for(state="attached", timeout=5_000)
        pmap.nb.wait_value("w.normalized", True)
        assert pmap.corner_rgb(3, 6) == (103, 0, 31)


# ==== PatchingMap over a dataset ==================================================================

DATASET_NB = "lab-widgets-patching-dataset.ipynb"
DATASET_CELLS = [
    "import numpy as np\nimport mechscope\nmodel = mechscope.tiny_model(\"llama\", n_layers=3)",
    "rows = [{'clean': c, 'corrupt': k, 'answer': a, 'wrong': b} for c, k, a, b in [\n"
    "    ('The cat sat on the', 'The dog sat on the', ' the', ' of'),\n"
    "    ('A cat sat on the mat', 'A dog sat on the mat', ' of', ' the'),\n"
    "    ('The dog ran to the', 'The cat ran to the', ' the', ' of'),\n"
    "    ('The cat ran to the', 'The dog ran to the', ' of', ' the')]] * 3\n"
    "r = mechscope.patch(model, mechscope.datasets.pairs(rows), site='heads', progress=False)\n"
    "w = r.show(model=model)\nw",
]


@pytest.fixture(scope="class")
def dmap(jupyter_lab: Lab, chromium: Any) -> Iterator[MapView]:
    yield from map_view(jupyter_lab, chromium, DATASET_NB, DATASET_CELLS)


class TestDatasetPatchingMap:
    def test_mean_with_interval_picker_and_rerun_over_the_dataset(self, dmap: MapView) -> None:
        page = dmap.nb.page
        k = dmap.nb.json("{'shown': w.array.tolist(), 'values': r.values.tolist(), 'lo': r.ci_low.tolist(), "
                         "'hi': r.ci_high.tolist(), 'n': r.n}")
        assert k["n"] == 12 and len(k["shown"]) == 3
        assert_colours_match_scale(dmap, k["shown"], "dataset mean")
        # hover: the mean metric and its interval, as the kernel has them
        page.mouse.move(*dmap.centre(1, 2))
        tip = dmap.root.locator(":scope > .ms-tooltip")
        tip.wait_for(state="visible", timeout=5_000)
        line = tip.inner_text().split("\n")[1]
        assert line.endswith(", 95% CI, n=12 (patched, mean)"), line
        mean, lo, hi = numbers(line.split(": ", 1)[1])[:3]
        assert close(mean, k["values"][1][2]) and close(lo, k["lo"][1][2]) and close(hi, k["hi"][1][2]), line
        save(dmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-dataset")
        # the picker: example 3 drawn, and the kernel knows it
        picker = dmap.root.locator("select.ms-pmap-example")
        assert picker.locator("option").count() == 13
        picker.select_option("3")
        dmap.nb.wait_value("w.example", 3)
        dmap.nb.cell(PMAP_CELL).locator(f'{PMAP}[data-example="3"]').wait_for(state="attached", timeout=5_000)
        own = dmap.nb.json("w.array.tolist()")
        assert own == dmap.nb.json("r.normalized_per_example()[3].astype('float32').tolist()")
        assert_colours_match_scale(dmap, own, "example 3")
        picker.select_option("-1")
        dmap.nb.wait_value("w.example", -1)
        # a click re-runs the cell over every example in the kernel; its spread is drawn
        page.mouse.click(*dmap.centre(2, 1))
        dmap.wait_rerun(2, 1)
        d = dmap.nb.json("{k: w.detail[k] for k in ('n', 'value', 'example')}")
        assert d["n"] == 12 and abs(d["value"] - dmap.nb.json("float(r.values[2, 1])")) <= 1e-5, d
        rerun = dmap.detail.locator(".ms-pmap-rerun").inner_text()
        assert rerun.startswith("re-run through the model over 12 examples (mean): "), rerun
        assert dmap.detail.locator("canvas.ms-spread-canvas").get_attribute("data-n") == "12"
        page.mouse.move(0, 0)
        save(dmap.nb.cell(PMAP_CELL).locator(".jp-Cell-outputArea"), "lab-patching-map-dataset-rerun")


# ==== SteeringPlayground =========================================================================

STEER_NB = "lab-widgets-steering.ipynb"
PROMPT, PROMPT2 = "The cat sat on the", "A dog ran to the"
HOSTILE = '<img src=x onerror="window.__pwned=1"><b>bold</b> & </textarea>'
N_TOKENS = 10
STEER_CELLS = [
    "import mechscope\nmodel = mechscope.tiny_model(\"llama\")\n"
    "vec = mechscope.steering_vector(model, [\"good great fine happy\"], [\"bad awful sad angry\"], layer=0)",
    f"PROMPT, N = {PROMPT!r}, {N_TOKENS}\n"
    "pg = vec.playground(model, PROMPT, coefficients=[-1, 0], max_new_tokens=N,\n"
    "                    min_coefficient=-4, max_coefficient=4, step=0.5)\npg",
]
STEER_CELL = 2
STEER = '.jp-OutputArea-output [data-ms-ready="1"] .ms-steer'
DEBOUNCE_MS = 250  # js/widgets/steering_playground.ts DEBOUNCE_MS

# the view shows (prompt, coefficient), both panes generated (state "ready")
SHOWS = """([root, prompt, coef]) => root.dataset.state === 'ready' && root.dataset.coefficient === coef
  && [...root.querySelectorAll('.ms-steer-ptext')].map((n) => n.textContent).join('|') === prompt + '|' + prompt"""


def shown_token(tok: str) -> str:
    """steering_playground.ts shownToken: control characters as their U+24xx pictures."""
    out = "".join("\u2421" if ch == "\x7f" else chr(0x2400 + ord(ch)) if ord(ch) < 0x20 and ch not in "\t\n"
                  else ch for ch in tok)
    return out.replace("\n", "↵\n")


@dataclass
class Playground:
    nb: Notebook
    root: Any  # .ms-steer

    def pane_tokens(self, which: str) -> list[str]:
        return self.root.locator(f".ms-steer-{which} .ms-steer-text .ms-tok").all_text_contents()

    def diff_indices(self) -> list[int]:
        return [int(i) for i in self.root.locator(".ms-steer-steered .ms-tok.ms-diff").evaluate_all(
            "(ns) => ns.map((n) => n.dataset.i)")]

    def wait_shows(self, prompt: str, coef: str) -> None:
        try:
            self.nb.page.wait_for_function(SHOWS, arg=[self.root.element_handle(), prompt, coef],
                                           polling=100, timeout=GENERATE_TIMEOUT_MS)
        except PlaywrightTimeout as exc:
            raise AssertionError(
                f"the playground never showed {prompt!r} at {coef}: state "
                f"{self.root.get_attribute('data-state')!r}, coefficient "
                f"{self.root.get_attribute('data-coefficient')!r}, status "
                f"{self.root.locator('.ms-steer-status').text_content()!r}, kernel status "
                f"{self.nb.eval('pg.status')}") from exc

    def generate(self, prompt: str, coef: float) -> dict:
        """mechscope.generate in the kernel, with the playground's vector and length."""
        return self.nb.json(
            "(lambda g: {'text': g.text, 'tokens': list(g.new_tokens), 'ids': list(g.new_ids)})"
            f"(mechscope.generate(model, {prompt!r}, steer=vec, coefficient={coef!r}, max_new_tokens=N))")

    def assert_panes_match_the_kernel(self, prompt: str, coef: float) -> None:
        base, steered = self.generate(prompt, 0.0), self.generate(prompt, coef)
        assert len(steered["ids"]) == N_TOKENS
        assert self.pane_tokens("base") == [shown_token(t) for t in base["tokens"]], base
        assert self.pane_tokens("steered") == [shown_token(t) for t in steered["tokens"]], steered
        assert steered["ids"] != base["ids"], "steering at this coefficient changed nothing"
        want_diff = [j for j, tok in enumerate(steered["ids"]) if j >= len(base["ids"]) or tok != base["ids"][j]]
        assert self.diff_indices() == want_diff
        # what the widget cached (and sent) is generate()'s output, text included
        got = self.nb.json(f"(lambda a, b: [a.text, list(a.new_ids), b.text, list(b.new_ids)])"
                           f"(pg.result({prompt!r}, {coef!r}), pg.result({prompt!r}, 0))")
        assert got == [steered["text"], steered["ids"], base["text"], base["ids"]]
        head = self.root.locator(".ms-steer-steered .ms-steer-head").text_content()
        assert head == f"steered (coefficient {coef:+g})", head
        assert self.root.locator(".ms-steer-status").text_content() == ""

    def kernel_requests(self) -> dict:
        return self.nb.json("{'seq': pg._seq, 'status': pg.status, 'outcome': pg.outcome(pg._seq), "
                            "'prompt': pg.prompt, 'coefficient': pg.coefficient}")


@pytest.fixture(scope="class")
def steer(jupyter_lab: Lab, chromium: Any) -> Iterator[Playground]:
    with open_widget(jupyter_lab, chromium, STEER_NB, STEER_CELLS, STEER_CELL, STEER) as (nb, root, _):
        yield Playground(nb, root)


class TestSteeringPlayground:
    def test_live_view_starts_unsteered(self, steer: Playground) -> None:
        assert steer.root.get_attribute("data-live") == "1"
        steer.wait_shows(PROMPT, "0")
        base = steer.generate(PROMPT, 0.0)
        assert steer.pane_tokens("base") == steer.pane_tokens("steered") == [shown_token(t) for t in base["tokens"]]
        assert steer.root.locator("textarea.ms-steer-prompt").input_value() == PROMPT
        assert steer.root.locator(".ms-steer-readout").text_content() == "0"
        # nothing asked of the kernel yet: the starting point was precomputed
        assert steer.kernel_requests()["seq"] == 0

    def test_fast_slider_keys_make_one_request(self, steer: Playground) -> None:
        page = steer.nb.page
        slider = steer.root.locator("input.ms-steer-slider")
        slider.evaluate("(s) => { window.__inputs = [];"
                        " s.addEventListener('input', () => window.__inputs.push(performance.now())); }")
        seq0 = steer.kernel_requests()["seq"]
        slider.focus()
        active = page.evaluate(ACTIVE_CELL)
        for _ in range(3):  # 0 -> 0.5 -> 1.0 -> 1.5, faster than the debounce
            page.keyboard.press("ArrowRight")
        inputs = page.evaluate("window.__inputs")
        gaps = [b - a for a, b in zip(inputs, inputs[1:], strict=False)]
        assert len(inputs) == 3 and max(gaps) < DEBOUNCE_MS - 50, f"key presses too slow to test the debounce: {gaps}"
        assert steer.root.locator(".ms-steer-readout").text_content() == "+1.5"
        steer.wait_shows(PROMPT, "1.5")
        # one request reached the kernel: its sequence number and the front end's id both
        # moved by one (three requests would have left seq0 + 3 and client id 3)
        k = steer.kernel_requests()
        assert k["seq"] == seq0 + 1, k
        assert {key: k["status"][key] for key in ("seq", "client_id", "prompt", "coefficient", "state")} == {
            "seq": seq0 + 1, "client_id": 1, "prompt": PROMPT, "coefficient": 1.5, "state": "done"}, k
        assert k["outcome"] == "done" and k["coefficient"] == 1.5, k
        # the keys moved the slider, not JupyterLab's cell selection
        assert slider.evaluate("(s) => document.activeElement === s")
        assert page.evaluate(ACTIVE_CELL) == active
        steer.assert_panes_match_the_kernel(PROMPT, 1.5)
        page.mouse.move(0, 0)
        save(steer.nb.cell(STEER_CELL).locator(".jp-Cell-outputArea"), "lab-steering")
        # back to 0 and up again: both answered from the cache, one request per settled position
        for n, (key, coef) in enumerate((("ArrowLeft", 0.0), ("ArrowRight", 1.5)), start=2):
            for _ in range(3):
                page.keyboard.press(key)
            steer.wait_shows(PROMPT, f"{coef:g}")  # at once, from the front end's copy
            steer.nb.wait_value("[pg._seq, pg.outcome(pg._seq), pg.status['client_id'], pg.coefficient]",
                                [seq0 + n, "cached", n, coef])

    def test_new_prompt_regenerates(self, steer: Playground) -> None:
        seq0 = steer.kernel_requests()["seq"]
        box = steer.root.locator("textarea.ms-steer-prompt")
        box.fill(PROMPT2)
        box.press("Enter")
        steer.wait_shows(PROMPT2, "1.5")
        k = steer.kernel_requests()
        assert k["seq"] == seq0 + 1 and k["prompt"] == PROMPT2 and k["outcome"] == "done", k
        assert k["status"]["prompt"] == PROMPT2 and k["status"]["state"] == "done", k
        assert box.input_value() == PROMPT2  # Enter submitted, it added no newline
        steer.assert_panes_match_the_kernel(PROMPT2, 1.5)
        save(steer.nb.cell(STEER_CELL).locator(".jp-Cell-outputArea"), "lab-steering-prompt")

    def test_hostile_prompt_stays_text(self, steer: Playground) -> None:
        page = steer.nb.page
        box = steer.root.locator("textarea.ms-steer-prompt")
        box.fill(HOSTILE)
        steer.root.locator("button.ms-steer-go").click()
        steer.wait_shows(HOSTILE, "1.5")
        assert steer.kernel_requests()["prompt"] == HOSTILE
        assert box.input_value() == HOSTILE
        steer.assert_panes_match_the_kernel(HOSTILE, 1.5)
        out = steer.nb.cell(STEER_CELL).locator(".jp-Cell-outputArea")
        assert out.locator("img, b").count() == 0
        assert steer.root.locator(".ms-steer-ptext *").count() == 0
        assert page.locator(".jp-Notebook img, .jp-Notebook [onerror]").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert steer.nb.dialogs == []
        save(out, "lab-steering-hostile")
