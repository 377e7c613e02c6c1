"""`mechscope.sphinx` in a minimal Sphinx + myst-nb project (one real Sphinx build, in
this process; no browser, no kernel: the notebooks are written with their outputs,
``nb_execution_mode = "off"``).

- ``nostate``: two mechscope outputs as a live display saves them (placeholder + widget view),
  no stored state: ONE warning naming the notebook and the fix; the summaries show as text.
- ``stored``: the same Heatmap with its state stored as nbclient stores it, plus a tqdm bar:
  the page carries the offline snapshot, no progress bar, no stored state, no CDN script.
- ``mixed``: a mechscope widget beside a widget of another library: myst-nb's embedding (state
  script + CDN manager) stays for the other one; the mechscope model leaves the state.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from sphinx.cmd.build import build_main

from mechscope.publish.stored import WIDGET_STATE, WIDGET_VIEW
from mechscope.widgets import Heatmap

CONF = 'extensions = ["myst_nb", "mechscope.sphinx"]\nnb_execution_mode = "off"\n'
INDEX = "# Site\n\n```{toctree}\nnostate\nstored\nmixed\n```\n"
STATE_SCRIPT = re.compile(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)


def live_output(widget: Heatmap) -> nbformat.NotebookNode:
    data, _ = widget._repr_mimebundle_()
    return new_output("display_data", data=data)


def stored_entry(widget: Heatmap) -> dict:
    """The widget's model as nbclient stores it in notebook metadata."""
    state, paths, buffers = _remove_buffers(widget.get_state())
    return {"model_name": "AnyModel", "model_module": "anywidget", "model_module_version": "~0.11.*",
            "state": state, "buffers": [
                {"path": p, "data": base64.b64encode(bytes(b)).decode(), "encoding": "base64"}
                for p, b in zip(paths, buffers, strict=True)]}


def notebook(title: str, outputs: list, state: dict | None) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}"), new_code_cell("show()", outputs=outputs)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if state is not None:
        nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return nb


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str, Heatmap]:
    src = tmp_path_factory.mktemp("sphinx-ext")
    a = Heatmap(np.arange(6, dtype="float32").reshape(2, 3), title="first <map>")
    b = Heatmap(np.ones((2, 2), dtype="float32"), title="second")
    bar = new_output("display_data", data={WIDGET_VIEW: {"model_id": "bar", "version_major": 2,
                                                         "version_minor": 0}, "text/plain": "  0%|  | 0/3"})
    other = new_output("display_data", data={WIDGET_VIEW: {"model_id": "other", "version_major": 2,
                                                           "version_minor": 0}, "text/plain": "Other()"})
    other_state = {"model_name": "OtherModel", "model_module": "other-widgets", "model_module_version": "1",
                   "state": {"value": 1}}
    (src / "conf.py").write_text(CONF)
    (src / "index.md").write_text(INDEX)
    nbformat.write(notebook("No state", [live_output(a), live_output(b)], None), src / "nostate.ipynb")
    nbformat.write(notebook("Stored", [live_output(a), bar], {
        a.model_id: stored_entry(a),
        "bar": {"model_name": "FloatProgressModel", "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0", "state": {"value": 0}}}), src / "stored.ipynb")
    nbformat.write(notebook("Mixed", [live_output(a), other], {a.model_id: stored_entry(a), "other": other_state}),
                   src / "mixed.ipynb")
    out = src / "_build"
    # in this process (a subprocess would import Sphinx, myst-nb and mechscope again: +5 s)
    code = build_main(["-b", "html", "-E", "-q", "-d", str(out / "doctrees"), "-w", str(out / "warnings.txt"),
                       str(src), str(out / "html")])
    warnings = (out / "warnings.txt").read_text()
    assert code == 0, warnings
    return out / "html", warnings, a


def test_one_warning_names_the_notebook_without_state_and_the_fix(site):
    html, stderr, a = site
    warnings = [line for line in stderr.splitlines() if re.search(r"\bWARNING: ", line)]
    assert len(warnings) == 1, "\n".join(warnings)
    (line,) = warnings
    assert line.startswith(f"{html.parent.parent / 'nostate.ipynb'}: WARNING: nostate: 2 mechscope widget(s) "
                           "have no stored widget state, so they cannot draw"), line
    assert "save the notebook with its widget state" in line and 'nb_execution_mode = "force"' in line
    assert line.endswith("[mechscope.widget_state]"), line
    page = (html / "nostate.html").read_text()
    assert "first &lt;map&gt;" in page and "second" in page  # the summaries, as text
    assert "mechscope-snapshot" not in page and "widget-view+json" not in page
    assert "<script type=\"module\"" not in page and "cdn" not in page.lower()


def test_stored_state_becomes_the_snapshot_with_no_cdn_script(site):
    html, _, a = site
    page = (html / "stored.html").read_text()
    assert page.count('class="mechscope-snapshot"') == 1 and 'data-mechscope-widget="heatmap"' in page
    assert "first &lt;map&gt;" in page  # the snapshot shows the summary until it draws
    assert "widget-view+json" not in page and "widget-state+json" not in page
    assert "0/3" not in page, "the progress bar output was kept"
    assert not re.search(r"<script[^>]*src=\"https?:", page), "a CDN script is left"
    assert a.model_id not in page


def test_other_widgets_keep_myst_nb_embedding_without_the_mechscope_model(site):
    html, _, a = site
    page = (html / "mixed.html").read_text()
    assert page.count('class="mechscope-snapshot"') == 1
    assert page.count("widget-view+json") == 1  # the other library's view, as myst-nb renders it
    assert re.search(r"<script[^>]*src=\"https://[^\"]*require", page), "myst-nb's require.js"
    (state,) = STATE_SCRIPT.findall(page)
    assert list(json.loads(state)["state"]) == ["other"]
