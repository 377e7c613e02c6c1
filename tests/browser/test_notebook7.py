"""notebooks/01_tour.ipynb run in a real Notebook 7 (``jupyter notebook`` 7.6) from headless Chromium.

`tests.browser.servers.running_notebook7`: 127.0.0.1, random token, isolated Jupyter dirs, a
temp copy of notebooks/, ``expose_app_in_browser`` so ``window.jupyterapp`` is the Notebook 7
application (built on JupyterLab: same shell API, same ``notebook:run-all-cells`` command), and
lab_notebook.py's helpers drive it at ``/notebooks/01_tour.ipynb``. Checked: every cell runs;
every mechscope widget (found by asking the kernel what each ``Out[n]`` is) is a live view with
a painted canvas whose hover readout follows the pointer, and a heatmap hover reaches the
kernel; no "model not found" / "Error displaying widget" text; no cell output refers to a
widget model the kernel no longer holds (progress bars included); no page error once the page
has loaded (Notebook 7.6.5 throws one of its own while loading its settings: tolerated, named). Screenshot:
build/screenshots/notebook7-tour.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.lab import LabStartError
from tests.browser.lab_notebook import PANEL, RUN_ALL, RUN_STATE, Notebook, open_in_lab, save
from tests.browser.servers import Notebook7, check_widget, page_text_errors, running_notebook7

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

NOTEBOOK = "01_tour.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT_MS = 420_000
NOTEBOOK7_LOAD_ERROR = "Cannot read properties of undefined (reading 'schema')"

# every widget-view output of every cell: [cell index, model id]
WIDGET_OUTPUTS = f"""() => {{
  const out = [];
  {PANEL}.content.widgets.forEach((c, i) => {{
    if (c.model.type !== 'code') return;
    for (const o of c.model.outputs.toJSON()) {{
      const v = o.data && o.data['{WIDGET_MIME}'];
      if (v) out.push([i, v.model_id]);
    }}
  }});
  return out;
}}"""


@pytest.fixture(scope="module")
def notebook7() -> Iterator[Notebook7]:
    try:
        with running_notebook7() as server:
            yield server
    except LabStartError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def tour(notebook7: Notebook7, chromium: Any) -> Iterator[tuple[Notebook, dict[int, str], dict[int, int]]]:
    """The tour opened in Notebook 7 and run top to bottom: (notebook, cell -> class of its
    Out[n], cell -> n)."""
    page = chromium.new_page()
    nb = Notebook(notebook7, page, NOTEBOOK)
    open_in_lab(notebook7, page, NOTEBOOK, nb)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    # Notebook 7.6.5's own settings loader throws this once at page load, before any cell runs
    # and with no user settings at all (seen with and without them); anything else fails
    load_errors = [e for e in nb.page_errors if e != NOTEBOOK7_LOAD_ERROR]
    assert load_errors == [], load_errors
    nb.page_errors.clear()
    start = time.monotonic()
    page.evaluate(RUN_ALL)
    try:
        state = page.wait_for_function(RUN_STATE, timeout=RUN_TIMEOUT_MS, polling=250).json_value()
    except PlaywrightTimeout:
        pytest.fail(f"run-all did not finish. Server log:\n{notebook7.log_tail()}", pytrace=False)
    nb.run_seconds = time.monotonic() - start
    assert state["runAll"]["ok"] and state["errors"] == [], state
    counts = page.evaluate(f"() => {PANEL}.content.widgets.map((c) => c.model.type === 'code' "
                           "? c.model.executionCount : null)")
    types = nb.json("{k: type(v).__module__ + '.' + type(v).__name__ for k, v in Out.items()}")
    cells = {i: n for i, n in enumerate(counts) if n is not None and str(n) in types}
    widgets = {i: types[str(n)] for i, n in cells.items()}
    print(f"\nnotebook 7: run-all took {nb.run_seconds:.1f} s; widgets {widgets}")
    yield nb, widgets, cells
    page.close()


def test_every_widget_draws_and_hovers(tour: tuple[Notebook, dict[int, str], dict[int, int]]) -> None:
    nb, widgets, counts = tour
    mechscope = [i for i, cls in widgets.items() if cls.startswith("mechscope.widgets.")]
    assert len(mechscope) >= 4, widgets
    for i in mechscope:
        root = nb.cell(i).locator(".jp-OutputArea-output .ms-root")
        root.wait_for(state="attached", timeout=60_000)
        assert root.count() == 1, (i, root.count())
        print(check_widget(nb.page, root, f"cell {i} ({widgets[i].rsplit('.', 1)[-1]})"))
    # a heatmap hover reaches the kernel: the live view, not a static fallback
    i = next(i for i in mechscope if widgets[i].endswith(".Heatmap"))
    root = nb.cell(i).locator(".jp-OutputArea-output .ms-root")
    canvas = root.locator("canvas.ms-canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    rows = root.locator(".ms-rowlabels > div").count()
    cols = root.locator(".ms-collabels > div").count()
    nb.page.mouse.move(box["x"] + 1.5 * box["width"] / cols, box["y"] + 2.5 * box["height"] / rows)
    nb.wait_value(f"list(Out[{counts[i]}].hovered)", [2, 1])
    nb.page.mouse.move(0, 0)
    assert nb.page.locator(".mechscope-snapshot").count() == 0
    nb.page.evaluate(f"{PANEL}.content.scrollToItem(0, 'start')")
    save(nb.page, "notebook7-tour")


def test_no_output_refers_to_a_closed_widget_model(tour: tuple[Notebook, dict[int, str], dict[int, int]]) -> None:
    nb, _, _ = tour
    assert page_text_errors(nb.page) == []
    live = set(nb.json("list(__import__('ipywidgets').Widget.widgets)"))
    outputs = nb.page.evaluate(WIDGET_OUTPUTS)
    dangling = [(i, m) for i, m in outputs if m not in live]
    assert dangling == [], f"outputs showing closed widget models (cell, model id): {dangling}"
    texts = "\n".join(nb.page.locator(".jp-OutputArea-output").all_inner_texts())
    bars = [line for line in texts.splitlines() if "patching resid" in line]
    assert all("100%" in line for line in bars), bars
    print(f"widget outputs {len(outputs)}, all live; patching bar lines: {bars}")
    assert nb.dialogs == [] and nb.page_errors == [], (nb.dialogs, nb.page_errors)
