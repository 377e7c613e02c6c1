"""Drive a notebook in the `jupyter_lab` fixture's JupyterLab from headless Chromium.

``open_notebook(lab, chromium, name, cells)`` writes the cells as a notebook in Lab's root,
opens it, waits for an idle kernel, runs every cell (failing with the server log when the
kernel or the run never finishes, and on any cell error) and yields a `Notebook`: its page,
the dialogs and page errors seen, and ``eval`` / ``json`` / ``wait_value`` to read the kernel's
side through silent executions (``user_expressions``). The JavaScript snippets here (current
notebook panel, kernel idle, run-all state, canvas pixel, ...) are what every Lab test uses.
"""

from __future__ import annotations

import ast
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.lab import SCREENSHOTS, Lab

KERNEL_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 300_000
RENDER_TIMEOUT_MS = 60_000
ROUND_TRIP_MS = 60_000  # a click -> kernel -> reply on a slow shared CPU
GENERATE_TIMEOUT_MS = 120_000

# ---- JavaScript run in the page (one notebook per page) ------------------------------------

PANEL = ("(() => { const w = window.jupyterapp?.shell?.currentWidget; "
         "return w && w.content && w.sessionContext ? w : null; })()")

KERNEL_IDLE = f"""() => {{
  const panel = {PANEL};
  const kernel = panel?.sessionContext?.session?.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle'
    && panel.content.widgets.length > 0;
}}"""

RUN_ALL = """() => {
  window.__runAll = undefined;
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    (r) => { window.__runAll = {ok: r !== false}; },
    (e) => { window.__runAll = {ok: false, error: String(e)}; });
}"""

# null while cells run; then {runAll, errors, counts} once the kernel is idle and every code
# cell has run (or one raised: run-all stops there)
RUN_STATE = f"""() => {{
  if (window.__runAll === undefined) return null;
  const panel = {PANEL};
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel || kernel.status !== 'idle') return null;
  const code = panel.content.widgets.filter((c) => c.model.type === 'code');
  if (code.some((c) => c.model.executionState === 'running')) return null;
  const errors = [];
  for (const c of code) for (const o of c.model.outputs.toJSON())
    if (o.output_type === 'error') errors.push({{ename: o.ename, evalue: o.evalue, tb: (o.traceback || []).join('\\n').slice(-2000)}});
  if (!errors.length && code.some((c) => c.model.executionCount === null)) return null;
  return {{runAll: window.__runAll, errors, counts: code.map((c) => c.model.executionCount)}};
}}"""

KERNEL_EVAL = f"""async (expr) => {{
  const kernel = {PANEL}.sessionContext.session.kernel;
  const future = kernel.requestExecute({{code: '', silent: true, store_history: false,
                                          user_expressions: {{v: expr}}}});
  const reply = await future.done;
  const v = reply.content.user_expressions.v;
  return v.status === 'ok' ? v.data['text/plain'] : 'ERROR ' + v.ename + ': ' + v.evalue;
}}"""

# the renderers JupyterLab chose for cell i's outputs (Lumino widget tree): mime type, and
# whether the rendered node holds a mechscope widget
RENDERERS = f"""(i) => {{
  const found = [];
  const walk = (w) => {{
    if (typeof w.mimeType === 'string') found.push([w.mimeType, !!w.node.querySelector('.ms-root')]);
    for (const c of (w.widgets || [])) walk(c);
  }};
  walk({PANEL}.content.widgets[i].outputArea);
  return found;
}}"""

ACTIVE_CELL = f"() => {PANEL}.content.activeCellIndex"

# RGBA of a canvas at CSS pixel (x, y), whatever its device-pixel scale
PIXEL = """(c, [x, y]) => {
  const s = c.width / c.clientWidth;
  return Array.from(c.getContext('2d').getImageData(Math.floor(x * s), Math.floor(y * s), 1, 1).data);
}"""

# the data-state values a node goes through (MutationObserver), from now on
WATCH_STATE = """(n) => {
  window.__states = [n.dataset.state];
  if (window.__stateObs) window.__stateObs.disconnect();
  window.__stateObs = new MutationObserver(() => {
    const s = n.dataset.state;
    if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
  });
  window.__stateObs.observe(n, {attributes: true, attributeFilter: ['data-state']});
}"""


# ---- an open, executed notebook --------------------------------------------------------------

@dataclass
class Notebook:
    lab: Lab
    page: Any
    name: str
    run_seconds: float = 0.0
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def cell(self, i: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i)

    def eval(self, expr: str) -> str:
        """repr() of a Python expression evaluated silently in the notebook's kernel."""
        return self.page.evaluate(KERNEL_EVAL, expr)

    def json(self, expr: str) -> Any:
        """A JSON-serialisable Python expression evaluated in the kernel."""
        text = self.eval(f"__import__('json').dumps({expr})")
        assert not text.startswith("ERROR"), f"{expr}: {text}"
        return json.loads(ast.literal_eval(text))

    def wait_value(self, expr: str, want: Any, timeout_ms: int = ROUND_TRIP_MS) -> None:
        """Poll the kernel until ``expr`` (JSON) equals ``want``.

        Polled from Python: Playwright's wait_for_function does not await a predicate that
        returns a Promise (an async predicate is always truthy), so it cannot ask the kernel.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            now = self.json(expr)
            if now == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} never became {want!r} in the kernel (now {now!r})")
            time.sleep(0.1)  # polling interval, not a wait for a condition


def write_notebook(lab: Lab, name: str, cells: list[str]) -> None:
    """Notebook ``name`` in Lab's root: a title cell, then one code cell per source."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name} (written by a browser test)")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(lab.root / name))


def open_in_lab(lab: Lab, page: Any, name: str, record: Any, timeout_ms: int = KERNEL_TIMEOUT_MS) -> None:
    """Open notebook ``name`` of Lab's root in ``page`` and wait for its idle kernel (failing
    with the server log); dialogs (dismissed) and page errors go to ``record.dialogs`` /
    ``record.page_errors``."""
    page.on("dialog", lambda d: (record.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: record.page_errors.append(str(e)))
    page.goto(lab.notebook_url(name))
    try:
        page.wait_for_function(KERNEL_IDLE, timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"{name}: no idle kernel after {timeout_ms / 1000:.0f} s. Server "
                    f"log:\n{lab.log_tail()}", pytrace=False)


@contextlib.contextmanager
def open_notebook(lab: Lab, chromium: Any, name: str, cells: list[str],
                  init_script: str | None = None) -> Iterator[Notebook]:
    """Write ``cells`` as notebook ``name`` in Lab's root, open it (``init_script`` runs in the
    page before Lab's own scripts), run all; shut its kernel down after."""
    write_notebook(lab, name, cells)
    page = chromium.new_page()
    if init_script is not None:
        page.add_init_script(init_script)
    nb = Notebook(lab, page, name)
    try:
        open_in_lab(lab, page, name, nb)
        start = time.monotonic()
        page.evaluate(RUN_ALL)
        try:
            state = page.wait_for_function(RUN_STATE, timeout=RUN_TIMEOUT_MS, polling=250).json_value()
        except PlaywrightTimeout:
            pytest.fail(f"{name}: run-all did not finish in {RUN_TIMEOUT_MS / 1000:.0f} s. Server "
                        f"log:\n{lab.log_tail()}", pytrace=False)
        nb.run_seconds = time.monotonic() - start
        assert state["runAll"]["ok"], state
        assert state["errors"] == [], f"{name}: cells raised: {state['errors']}"
        assert None not in state["counts"], state
        print(f"\n{name}: run-all took {nb.run_seconds:.1f} s")
        yield nb
    finally:
        kernel_id = page.evaluate(f"() => {PANEL}?.sessionContext?.session?.kernel?.id ?? null")
        page.close()
        if kernel_id:  # free the kernel (and the playground's thread) before the next notebook
            with contextlib.suppress(Exception):
                lab.api(f"/api/kernels/{kernel_id}", method="DELETE", timeout=20.0)


@contextlib.contextmanager
def open_widget(lab: Lab, chromium: Any, name: str, cells: list[str], cell: int, selector: str,
                shown: str | None = None, init_script: str | None = None) -> Iterator[tuple[Notebook, Any, Any]]:
    """`open_notebook`, then the one widget ``selector`` in cell ``cell`` once rendered, and its
    part ``shown`` once visible: yields (notebook, widget root, that part or None); at the end,
    asserts no dialog opened and no page error happened."""
    with open_notebook(lab, chromium, name, cells, init_script) as nb:
        root = nb.cell(cell).locator(selector)
        root.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
        assert root.count() == 1
        part = None
        if shown is not None:
            part = root.locator(shown)
            part.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
        yield nb, root, part
        assert nb.dialogs == [] and nb.page_errors == [], (nb.dialogs, nb.page_errors)


def colour_table(stops: list[tuple[int, int, int]], rounded: bool = False) -> list[tuple[float, ...]]:
    """js/lib/colors.ts colorTable: 256 entries interpolated between ``stops``; ``rounded`` as
    its Uint8ClampedArray stores them (round-half-even)."""
    n = len(stops) - 1
    out = []
    for i in range(256):
        x = i / 255 * n
        k = min(int(x), n - 1)
        f = x - k
        rgb = [stops[k][ch] * (1 - f) + stops[k + 1][ch] * f for ch in range(3)]
        out.append(tuple(round(v) for v in rgb) if rounded else tuple(rgb))
    return out


def save(page_or_locator: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page_or_locator.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
