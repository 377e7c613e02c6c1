"""Snapshots made at publish time from stored widget state (`mechscope.publish.stored`).

The state is stored the way ipywidgets stores it (``_remove_buffers``: binary buffers out of
the state, base64 with their paths), for every widget of the hostile catalogue; the snapshot
made from it must carry exactly the state a live widget's `offline_html` inlines.
"""

from __future__ import annotations

import base64
import json
import re

import nbformat
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from nbformat.v4 import new_code_cell, new_notebook, new_output

from mechscope.publish import publish_widgets, strip_widget_state
from mechscope.publish.stored import WIDGET_STATE, WIDGET_VIEW, stored_snapshot, widget_classes
from tests.hostile import FORBIDDEN_ELEMENTS, widgets

STATE = re.compile(r"^  const state = (.*);$", flags=re.M)


@pytest.fixture(scope="module")
def made() -> dict:
    return widgets()


def stored_entry(widget) -> dict:  # noqa: ANN001
    """The widget's model as nbclient / JupyterLab store it in notebook metadata."""
    state, paths, buffers = _remove_buffers(widget.get_state())
    return {"model_name": "AnyModel", "model_module": "anywidget", "model_module_version": "~0.11.*",
            "state": state, "buffers": [
                {"path": p, "data": base64.b64encode(bytes(b)).decode(), "encoding": "base64"}
                for p, b in zip(paths, buffers, strict=True)]}


def inlined(page: str) -> dict:
    match = STATE.search(page)
    assert match, "the snapshot inlines its state"
    return json.loads(match.group(1))


def test_every_widget_class_is_known_by_its_anywidget_id(made):
    classes = widget_classes()
    for widget in made.values():
        assert classes[widget.get_state()["_anywidget_id"]].__qualname__ == type(widget).__qualname__


def test_a_snapshot_from_stored_state_equals_the_live_widgets_own(made):
    for kind, widget in made.items():
        page = stored_snapshot(stored_entry(widget))
        assert page is not None, kind
        assert inlined(page) == inlined(widget.offline_html()), kind
        assert f'data-mechscope-widget="{widget.bundle}"' in page
        lower = page.lower()
        assert lower.count("<script") == 1 and lower.count("</script") == 1, kind
        assert not any(f"<{tag}" in lower.replace("<script", "") for tag in FORBIDDEN_ELEMENTS if tag != "script")


def test_the_saved_esm_source_is_never_inlined(made):
    widget = made["Heatmap"]
    entry = stored_entry(widget)
    entry["state"]["_esm"] = "globalThis.__savedEsmRan = 1; export default {render() {}};"
    page = stored_snapshot(entry)
    assert page is not None and "__savedEsmRan" not in page
    entry["state"]["_anywidget_id"] = "evil.Widget"
    assert stored_snapshot(entry) is None  # not a mechscope widget: no snapshot, no code


def notebook_of(made: dict, with_state: bool) -> nbformat.NotebookNode:
    cells = []
    for widget in made.values():
        data, _ = widget._repr_mimebundle_()
        cells.append(new_code_cell("w", outputs=[new_output("display_data", data=data)]))
    bar = new_output("display_data", data={WIDGET_VIEW: {"model_id": "bar"}, "text/plain": "  0%|"})
    cells.append(new_code_cell("tqdm", outputs=[bar, new_output("stream", name="stdout", text="hi")]))
    nb = new_notebook(cells=cells)
    if with_state:
        state = {w.model_id: stored_entry(w) for w in made.values()}
        state["bar"] = {"model_module": "@jupyter-widgets/controls", "model_name": "HBoxModel", "state": {}}
        nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}
    return nb


def test_publish_widgets_makes_the_copy_static_renderers_draw(made):
    nb = notebook_of(made, with_state=True)
    report = publish_widgets(nb)
    assert (report.snapshots, report.missing_state, report.dropped_controls) == (len(made), 0, 1)
    assert "widgets" not in nb.metadata and report.state_bytes > 0
    for cell, widget in zip(nb.cells, made.values(), strict=False):
        (output,) = cell.outputs
        assert WIDGET_VIEW not in output.data  # renderers fall back to text/html
        assert output.data["text/plain"] == widget.summary()
        assert inlined(output.data["text/html"]) == inlined(widget.offline_html())
    assert [o.output_type for o in nb.cells[-1].outputs] == ["stream"]  # no dangling bar


def test_without_stored_state_the_summary_is_shown_and_nothing_breaks(made):
    nb = notebook_of(made, with_state=False)
    report = publish_widgets(nb)
    assert (report.snapshots, report.missing_state) == (0, len(made))
    for cell, widget in zip(nb.cells, made.values(), strict=False):
        (output,) = cell.outputs
        assert WIDGET_VIEW not in output.data and "<script" not in output.data["text/html"]
        assert output.data["text/plain"] == widget.summary()


def test_strip_widget_state_makes_snapshots_in_place_once(made, tmp_path):
    path = tmp_path / "shared.ipynb"
    nbformat.write(notebook_of(made, with_state=True), path)
    assert strip_widget_state(path) > 0
    assert strip_widget_state(path) == 0  # idempotent: nothing stored any more
    nb = nbformat.read(path, as_version=4)
    assert sum('class="mechscope-snapshot"' in str(o.get("data", {}).get("text/html", ""))
               for c in nb.cells for o in c.outputs) == len(made)
