"""notebooks/01_tour.ipynb run for real in JupyterLab, driven by headless Chromium.

A real server (isolated Jupyter dirs, temp copy of notebooks/) and a real kernel on the
embedded model: every cell runs through `notebook:run-all-cells`, no cell errors, and the
mechscope widgets are the *live* anywidget views (not their text/html fallback). For each
`Heatmap` (js/widgets/heatmap.ts): labels equal the kernel's, every canvas cell is the kernel's
value read against the widget's own colour bar, a hover shows token, layer and value and
reaches the kernel; the hostile prompt of the last cell stays literal text with no markup or
script effect. Widgets are found by asking the kernel what each cell's `Out[n]` is, so the
test follows the notebook as it changes. Screenshots go to build/screenshots/lab-*.png.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.lab import SCREENSHOTS, Lab
from tests.browser.lab_notebook import KERNEL_EVAL, PANEL, RENDERERS, RUN_ALL, Notebook, open_in_lab

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(600)]

NOTEBOOK = "01_tour.ipynb"
HOSTILE_PROMPT = "<img src=x onerror=alert(1)> is just text"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
HEATMAP_CLASS = "mechscope.widgets.heatmap.Heatmap"
KERNEL_TIMEOUT_MS = 90_000
RUN_TIMEOUT_MS = 240_000  # first load() may convert the model cache (~20 s); patching on CPU
RENDER_TIMEOUT_MS = 30_000

# ---- JavaScript run in the page ------------------------------------------------------------

NOTEBOOK_CONFIG = f"() => {PANEL}.content.notebookConfig.windowingMode"

# null while cells still run; then {runAll, errors, stderr, counts, nCells} once the kernel is
# idle and every code cell has run (or one raised: run-all stops there)
RUN_STATE = f"""() => {{
  if (window.__runAll === undefined) return null;
  const panel = {PANEL};
  const kernel = panel.sessionContext.session?.kernel;
  const cells = panel.content.widgets;
  if (!kernel || kernel.status !== 'idle') return null;
  const code = cells.filter((c) => c.model.type === 'code');
  if (code.some((c) => c.model.executionState === 'running')) return null;
  const errors = [], stderr = [], counts = [];
  cells.forEach((c, i) => {{
    if (c.model.type !== 'code') return;
    counts.push([i, c.model.executionCount]);
    for (const o of c.model.outputs.toJSON()) {{
      if (o.output_type === 'error') errors.push({{cell: i, ename: o.ename, evalue: o.evalue}});
      if (o.output_type === 'stream' && o.name === 'stderr') stderr.push({{cell: i, text: String(o.text).slice(0, 300)}});
    }}
  }});
  // run-all stops at an error; otherwise every code cell must have run
  if (!errors.length && code.some((c) => c.model.executionCount === null)) return null;
  return {{runAll: window.__runAll, errors, stderr, counts, nCells: cells.length}};
}}"""

# colour at the centre of every heatmap cell (rows x cols), in canvas pixels
CELL_COLOURS = """(c, [rows, cols]) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const out = [];
  for (let r = 0; r < rows; r++) {
    const row = [];
    for (let k = 0; k < cols; k++) {
      const x = Math.floor((k + 0.5) * c.width / cols), y = Math.floor((r + 0.5) * c.height / rows);
      const i = (y * c.width + x) * 4;
      row.push([d[i], d[i + 1], d[i + 2]]);
    }
    out.push(row);
  }
  return out;
}"""

CANVAS_STATS = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let transparent = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i + 3] !== 255) transparent++;
  }
  return {width: c.width, height: c.height, colours: colours.size, transparent};
}"""

# ---- fixtures ------------------------------------------------------------------------------

@dataclass
class Tour(Notebook):
    sources: list[str] = field(default_factory=list)  # per cell; "" for markdown
    state: dict = field(default_factory=dict)
    widget_types: dict[int, str] = field(default_factory=dict)  # cell index -> class of Out[n]

    def execution_count(self, i: int) -> int:
        return dict(self.state["counts"])[i]

    def widget_cells(self) -> list[int]:
        return [i for i, cls in self.widget_types.items() if cls.startswith("mechscope.widgets.")]

    def heatmap_cells(self) -> list[int]:
        return [i for i, cls in self.widget_types.items() if cls == HEATMAP_CLASS]


@pytest.fixture(scope="module")
def tour(jupyter_lab: Lab, chromium) -> Iterator[Tour]:
    """The tour opened in Lab and run top to bottom (once per module)."""
    nb = json.loads((jupyter_lab.root / NOTEBOOK).read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) if c["cell_type"] == "code" else "" for c in nb["cells"]]
    page = chromium.new_page()
    t = Tour(jupyter_lab, page, NOTEBOOK, sources=sources)
    open_in_lab(jupyter_lab, page, NOTEBOOK, t, KERNEL_TIMEOUT_MS)
    assert page.evaluate(NOTEBOOK_CONFIG) == "none", "windowing mode override not applied"
    start = time.monotonic()
    page.evaluate(RUN_ALL)
    try:
        t.state = page.wait_for_function(RUN_STATE, timeout=RUN_TIMEOUT_MS, polling=250).json_value()
    except PlaywrightTimeout:
        now = page.evaluate(f"() => {PANEL}.content.widgets.map((c, i) => [i, c.model.type, "
                            "c.model.executionCount ?? null, c.model.executionState ?? null])")
        pytest.fail(f"run-all did not finish in {RUN_TIMEOUT_MS / 1000:.0f} s; cells "
                    f"[index, type, count, state]: {now}. Server log:\n{jupyter_lab.log_tail()}",
                    pytrace=False)
    t.run_seconds = time.monotonic() - start
    assert t.state["nCells"] == len(sources)
    assert page.locator(".jp-Notebook .jp-Cell").count() == len(sources)
    # what each cell displayed as its result, asked of the kernel
    types = kernel_json(t, "{k: type(v).__module__ + '.' + type(v).__name__ for k, v in Out.items()}")
    t.widget_types = {i: types[str(n)] for i, n in t.state["counts"] if n is not None and str(n) in types}
    yield t
    page.close()


# ---- helpers -------------------------------------------------------------------------------

def save(page_or_locator: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page_or_locator.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def kernel_eval(tour: Tour, expr: str) -> str:
    """repr() of a Python expression evaluated silently in the notebook's kernel."""
    return tour.page.evaluate(KERNEL_EVAL, expr)


def kernel_json(tour: Tour, expr: str) -> Any:
    """A JSON-serialisable Python expression evaluated in the notebook's kernel."""
    text = kernel_eval(tour, f"__import__('json').dumps({expr})")
    assert not text.startswith("ERROR"), text
    return json.loads(ast.literal_eval(text))


def wait_kernel_value(tour: Tour, expr: str, want: str, timeout_ms: int = 15_000) -> None:
    """Poll the kernel until ``repr(expr) == want``.

    Polled from Python: Playwright's wait_for_function does not await a predicate that returns
    a Promise (an async predicate is always truthy), so it cannot ask the kernel.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        now = kernel_eval(tour, expr)
        if now == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} never became {want} in the kernel (now {now})")
        time.sleep(0.1)  # polling interval, not a wait for a condition


def heatmap_in(tour: Tour, i: int) -> Any:
    """The live Heatmap view of cell ``i``, once drawn."""
    hm = tour.cell(i).locator('.jp-OutputArea-output [data-ms-ready="1"] > .ms-heatmap')
    hm.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
    assert hm.count() == 1
    return hm


def kernel_heatmap(tour: Tour, i: int) -> dict:
    """Cell ``i``'s Heatmap as the kernel holds it."""
    return kernel_json(tour, "(lambda w: {'values': w.array.tolist(), 'scale': w.colorscale, "
                             "'vmin': w.vmin, 'vmax': w.vmax, 'rows': w.row_labels, "
                             "'cols': w.col_labels, 'value_label': w.value_label})"
                             f"(Out[{tour.execution_count(i)}])")


def hover_cell(tour: Tour, hm: Any, r: int, c: int, shape: tuple[int, int]) -> str:
    """Move the mouse over cell (r, c) of a heatmap; return the visible tooltip's text."""
    canvas = hm.locator("canvas.ms-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tour.page.mouse.move(box["x"] + (c + 0.5) * box["width"] / shape[1],
                         box["y"] + (r + 0.5) * box["height"] / shape[0])
    tip = hm.locator(".ms-tooltip")
    tip.wait_for(state="visible", timeout=5_000)
    return tip.text_content()


def value_range(values: np.ndarray, scale: str, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """The colour range heatmap.ts documents: data min..max, symmetric for diverging, bounds win."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if scale == "diverging":
        m = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -m, m
    lo = lo if vmin is None else vmin
    hi = hi if vmax is None else vmax
    return lo, (hi if hi != lo else lo + 1)


def assert_cells_match_colour_bar(hm: Any, w: dict, where: str) -> None:
    """Every canvas cell shows its kernel-side value read against the widget's own colour bar."""
    values = np.array(w["values"], dtype=np.float64)
    cells = np.array(hm.locator("canvas.ms-canvas").evaluate(CELL_COLOURS, list(values.shape)))
    bar = np.array(hm.locator(".ms-colorbar canvas").evaluate(
        "(c) => { const d = c.getContext('2d').getImageData(6, 0, 1, c.height).data; const o = [];"
        " for (let i = 0; i < d.length; i += 4) o.push([d[i], d[i + 1], d[i + 2]]); return o; }"))
    lo, hi = value_range(values, w["scale"], w["vmin"], w["vmax"])
    t = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    expected = bar[np.rint((1.0 - t) * (len(bar) - 1)).astype(int)]
    expected[~np.isfinite(values)] = 128  # NaN/inf: the distinct grey
    # the bar samples the 256-entry table at ~200 rows: neighbouring entries differ by a few units
    diff = np.abs(cells - expected).max(axis=-1)
    bad = [tuple(int(x) for x in b) for b in np.argwhere(diff > 8)]
    assert not bad, (f"{where}: {len(bad)} canvas cells do not match the colour bar, e.g. "
                     f"{[(b, cells[b].tolist(), expected[b].tolist()) for b in bad[:3]]}")


# ---- tests ---------------------------------------------------------------------------------

def test_every_cell_runs_without_error(tour: Tour) -> None:
    state = tour.state
    assert state["runAll"]["ok"], state["runAll"]
    assert state["errors"] == [], f"cells raised: {state['errors']}"
    missing = [i for i, n in state["counts"] if n is None]
    assert missing == [], f"cells never ran: {missing} (stderr: {state['stderr']})"
    print(f"\nrun-all took {tour.run_seconds:.1f} s; widgets: {tour.widget_types}; "
          f"stderr outputs: {state['stderr']}")
    tour.page.evaluate(f"{PANEL}.content.scrollToItem(0, 'start')")
    save(tour.page, "lab-tour")


def test_server_is_isolated_and_runs_the_venv_kernel(tour: Tour) -> None:
    lab = tour.lab
    specs = lab.api("/api/kernelspecs")
    assert "python3" in specs["kernelspecs"], specs
    # Jupyter's runtime files land in the temp dirs, and the kernel is this venv's Python
    assert list((lab.home / "runtime").glob("jpserver-*.json")), "server runtime dir not isolated"
    assert list((lab.home / "runtime").glob("kernel-*.json")), "kernel connection file not isolated"
    assert ast.literal_eval(kernel_eval(tour, "__import__('sys').executable")) == sys.executable
    assert ast.literal_eval(kernel_eval(tour, "__import__('os').environ['JUPYTER_DATA_DIR']")) == str(lab.home / "data")


def test_widgets_are_live_views_with_drawn_canvases(tour: Tour) -> None:
    cells = tour.widget_cells()
    assert len(tour.heatmap_cells()) >= 2, tour.widget_types  # the tour's first map, hostile prompt
    for i in cells:
        root = tour.cell(i).locator(".jp-OutputArea-output .ms-root").first
        root.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
        # Lab shows the live widget view, not the text/html fallback carried in the same bundle
        renderers = tour.page.evaluate(RENDERERS, i)
        assert [m for m, has_widget in renderers if has_widget] == [WIDGET_MIME], (i, renderers)
        assert "text/html" not in [m for m, _ in renderers], (i, renderers)
        assert tour.cell(i).locator(".mechscope-snapshot").count() == 0
        canvas = root.locator("canvas.ms-canvas").first
        canvas.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
        stats = canvas.evaluate(CANVAS_STATS)
        assert stats["width"] > 0 and stats["height"] > 0, (i, stats)
        assert stats["colours"] >= 8, f"cell {i} ({tour.widget_types[i]}): canvas blank or flat: {stats}"
        root.scroll_into_view_if_needed()
        save(tour.cell(i).locator(".jp-Cell-outputArea"), f"lab-cell{i}")
    assert tour.page.locator(".mechscope-snapshot").count() == 0


def test_heatmaps_show_the_kernels_labels_and_values(tour: Tour) -> None:
    for i in tour.heatmap_cells():
        hm = heatmap_in(tour, i)
        w = kernel_heatmap(tour, i)
        rows, cols = len(w["rows"]), len(w["cols"])
        assert np.shape(w["values"]) == (rows, cols)
        # labels are the kernel's strings exactly, as text (big maps may drop them; these are small)
        assert hm.locator(".ms-rowlabels > div").all_text_contents() == w["rows"]
        assert hm.locator(".ms-collabels > div").all_text_contents() == w["cols"]
        stats = hm.locator("canvas.ms-canvas").evaluate(CANVAS_STATS)
        assert stats["transparent"] == 0 and stats["width"] >= cols and stats["height"] >= rows, stats
        assert_cells_match_colour_bar(hm, w, f"cell {i}")
        assert hm.locator(".ms-title").text_content().strip()


def test_hover_shows_token_layer_and_value_and_reaches_the_kernel(tour: Tour) -> None:
    i = tour.heatmap_cells()[0]
    hm = heatmap_in(tour, i)
    w = kernel_heatmap(tour, i)
    values = np.array(w["values"])
    r, c = min(12, values.shape[0] - 1), min(2, values.shape[1] - 1)
    text = hover_cell(tour, hm, r, c, values.shape)
    first, second = text.split("\n")
    assert first == f"{w['rows'][r]}  |  {json.dumps(w['cols'][c])}", text
    label, _, shown = second.rpartition(": ")
    assert label == w["value_label"], text
    assert re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", shown), text
    assert abs(float(shown) - values[r, c]) <= 1e-3 * max(1.0, abs(values[r, c])), (shown, values[r, c])
    save(tour.page, "lab-tooltip")
    # the live view's hover goes back to the kernel (the static fallback could not do this)
    wait_kernel_value(tour, f"Out[{tour.execution_count(i)}].hovered", f"[{r}, {c}]")
    tour.page.mouse.move(0, 0)
    hm.locator(".ms-tooltip").wait_for(state="hidden", timeout=5_000)


def test_hostile_prompt_stays_literal_text(tour: Tour) -> None:
    last = len(tour.sources) - 1
    assert HOSTILE_PROMPT in tour.sources[last], "the tour's last cell no longer shows the hostile prompt"
    assert tour.widget_types.get(last) == HEATMAP_CLASS, tour.widget_types
    hm = heatmap_in(tour, last)
    cols = hm.locator(".ms-collabels > div").all_text_contents()
    assert "".join(cols) == HOSTILE_PROMPT, cols  # every token literally, as textContent
    assert hm.locator(".ms-collabels *").evaluate_all("(ns) => ns.filter((n) => n.children.length).length") == 0
    tag = next(k for k, tok in enumerate(cols) if "<" in tok)
    rows = hm.locator(".ms-rowlabels > div").all_text_contents()
    text = hover_cell(tour, hm, 0, tag, (len(rows), len(cols)))
    assert text.split("\n")[0] == f"{rows[0]}  |  {json.dumps(cols[tag])}", text
    assert "<" in text and "&lt;" not in text
    save(tour.page, "lab-hostile-tooltip")
    tour.page.mouse.move(0, 0)
    out = tour.cell(last).locator(".jp-Cell-outputArea")
    assert out.locator("img").count() == 0
    assert tour.page.locator(".jp-Notebook img, .jp-Notebook [onerror]").count() == 0
    assert tour.dialogs == []
    assert tour.page.evaluate("window.__pwned") is None
    assert tour.page_errors == [], tour.page_errors
    out.scroll_into_view_if_needed()
    save(out, "lab-hostile")
