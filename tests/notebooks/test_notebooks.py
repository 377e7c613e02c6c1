"""Every notebook in notebooks/ runs top to bottom in a real kernel (nbclient), headless.

The kernel is the venv's ``python3`` started in the notebook's folder; it inherits the offline
settings of tests/conftest.py (HF_HUB_OFFLINE, OMP_WAIT_POLICY). The first ``mechscope.load()``
of a machine converts the GGUF cache (~20 s), later ones take ~2 s. A failing cell is reported
with its index, source and traceback; each widget output must carry a placeholder naming its
model, and the published copy (`publish_widgets`) a snapshot for each.

Key results are asserted by the notebooks themselves: each tutorial ends with a "Checks" cell of
plain asserts about the numbers its prose states, so a claim that stops holding fails here as
that cell's error. (``--durations`` shows each notebook's run time.)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mechscope.publish import publish_widgets

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
#: The notebooks of 2-4.5 min each on 2 cores: in the slow tier (`make test-slow`, which CI
#: runs after `make test`), so the everyday tier stays under ~30 min.
SLOW = {"08_dataset_scale.ipynb", "11_features.ipynb", "12_circuits.ipynb",
        "13_attribution_graphs.ipynb"}    # 13 builds the 30 transcoders on first use (~15 min)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(900)]


def first_error(nb) -> str | None:
    """The first error output as 'cell N: Ename: evalue' + source + traceback, or None."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
                return (f"cell {index} failed: {output['ename']}: {output['evalue']}\n"
                        f"--- source ---\n{cell.source}\n--- traceback ---\n{trace}")
    return None


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                  for p in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook_executes(path: Path):
    nb = nbformat.read(path, as_version=4)
    # allow_errors: the run goes on, and the error is read back from the cell that raised it.
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()

    error = first_error(nb)
    assert error is None, f"{path.name}: {error}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), \
        f"{path.name}: some code cells did not run"
    # Every anywidget view (mechscope's widgets) carries a placeholder naming its model and a
    # text/plain summary (what untrusted viewers show), and the published copy
    # (`mechscope.publish.publish_widgets`) gives each one its offline snapshot from the state.
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    mechscope_outputs = 0
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            model_id = data.get(WIDGET_VIEW, {}).get("model_id")
            model = state.get(model_id, {})
            if model.get("model_module") == "anywidget":
                mechscope_outputs += 1
                where = f"{path.name}: cell {index}: {data.get('text/plain', '')[:80]!r}"
                assert f'data-mechscope-model="{model_id}"' in data.get("text/html", ""), \
                    f"{where}: widget output has no placeholder naming its model"
                assert "<script" not in data.get("text/html", ""), f"{where}: data carried twice"
                assert data.get("text/plain", "").strip(), f"{where}: no text/plain summary"
    report = publish_widgets(copy.deepcopy(nb))
    assert (report.snapshots, report.missing_state) == (mechscope_outputs, 0), f"{path.name}: {report}"
