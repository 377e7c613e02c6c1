"""The mkdocs plugin ``mechscope`` (`mechscope.mkdocs`): which files it hands mkdocs-jupyter, and
what it says about a notebook that cannot draw. No browser, no kernel: mkdocs' own config
loader and plugin collection run ``on_files`` as ``mkdocs build`` does (the browser tier builds
and opens a whole site: tests/browser/test_mkdocs_jupyter.py).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import nbformat
import numpy as np
import pytest
from mkdocs.config import load_config
from mkdocs.structure.files import get_files
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mechscope.mkdocs import MechscopePlugin
from mechscope.publish.stored import WIDGET_STATE, WIDGET_VIEW
from mechscope.widgets import Heatmap
from tests.unit.test_stored_snapshots import stored_entry

ORDERS = ["[mechscope, mkdocs-jupyter: {ignore: [drafts/*]}]",
          "[mkdocs-jupyter: {ignore: [drafts/*]}, mechscope]"]


def _notebook(widget: Heatmap, with_state: bool) -> nbformat.NotebookNode:
    data, _ = widget._repr_mimebundle_()
    nb = new_notebook(cells=[new_markdown_cell("# A heatmap"),
                             new_code_cell("Heatmap(...)", outputs=[new_output("display_data", data=data)])])
    if with_state:
        nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0,
                                                 "state": {widget.model_id: stored_entry(widget)}}}
    return nb


def _project(root: Path, plugins: str) -> Path:
    docs = root / "docs"
    (docs / "drafts").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n", encoding="utf-8")
    widget = Heatmap(np.arange(6, dtype=np.float32).reshape(2, 3), title="stored")
    nbformat.write(_notebook(widget, with_state=True), docs / "stored.ipynb")
    nbformat.write(_notebook(widget, with_state=False), docs / "no_state.ipynb")
    nbformat.write(_notebook(widget, with_state=True), docs / "drafts" / "draft.ipynb")
    yml = root / "mkdocs.yml"
    yml.write_text(f"site_name: t\nplugins: {plugins}\n", encoding="utf-8")
    return yml


def _run_on_files(yml: Path):
    config = load_config(str(yml))
    config.plugins.on_pre_build(config=config)
    files = config.plugins.on_files(get_files(config), config=config)
    return config, {f.src_uri: f for f in files}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("plugins", ORDERS, ids=["mechscope-first", "mechscope-last"])
def test_mkdocs_jupyter_gets_the_published_copy_in_either_order(tmp_path, caplog, plugins):
    yml = _project(tmp_path, plugins)
    docs = tmp_path / "docs"
    before = {p.name: _digest(p) for p in docs.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO, logger="mkdocs"):
        config, files = _run_on_files(yml)
    cache = tmp_path / ".cache" / "mechscope"

    stored = Path(files["stored.ipynb"].abs_src_path)
    assert stored.parent.parent == cache and stored.name == "stored.ipynb"
    assert type(files["stored.ipynb"]).__name__ == "NotebookFile"  # mkdocs-jupyter renders it
    nb = nbformat.read(stored, as_version=4)
    (output,) = nb.cells[1].outputs
    assert WIDGET_VIEW not in output.data and "widgets" not in nb.metadata
    assert 'class="mechscope-snapshot"' in output.data["text/html"]
    assert '<script type="module">' in output.data["text/html"]

    # untouched: the user's sources, the markdown page, what mkdocs-jupyter ignores
    assert {p.name: _digest(p) for p in docs.rglob("*") if p.is_file()} == before
    assert files["index.md"].abs_src_path == str(docs / "index.md")
    assert files["drafts/draft.ipynb"].abs_src_path == str(docs / "drafts" / "draft.ipynb")

    # mkdocs-jupyter never re-executes a copy (it would render widget views again)
    jupyter = config.plugins["mkdocs-jupyter"]
    assert str(stored) in jupyter.config["execute_ignore"]
    assert jupyter.should_include(files["stored.ipynb"])

    plugin = config.plugins["mechscope"]
    assert plugin.reports["stored.ipynb"]["snapshots"] == 1
    assert plugin.reports["no_state.ipynb"] == {
        "snapshots": 0, "missing_state": 1, "dropped_controls": 0, "state_bytes": 0,
        "line": "0 snapshot(s) made from stored widget state; 1 widget(s) without stored state shown as text"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("mechscope: no_state.ipynb: 1 mechscope widget(s) have no stored widget state")
    assert "Save Widget State" in warnings[0] and "plugins: [mechscope: {execute: true}, mkdocs-jupyter]" in warnings[0]


def test_copies_are_cached_and_follow_the_source(tmp_path, caplog):
    yml = _project(tmp_path, ORDERS[0])
    _, files = _run_on_files(yml)
    first = Path(files["stored.ipynb"].abs_src_path)
    made = first.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        _, files = _run_on_files(yml)
    assert Path(files["stored.ipynb"].abs_src_path) == first and first.stat().st_mtime_ns == made
    assert any("no_state.ipynb" in r.getMessage() for r in caplog.records)  # said again on a cache hit

    source = tmp_path / "docs" / "stored.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[0].source = "# Changed"
    nbformat.write(nb, source)
    config, files = _run_on_files(yml)
    second = Path(files["stored.ipynb"].abs_src_path)
    assert second != first and nbformat.read(second, as_version=4).cells[0].source == "# Changed"
    config.plugins.on_post_build(config=config)
    assert not first.exists() and second.exists()  # the stale copy is evicted


def test_options_and_a_missing_mkdocs_jupyter(tmp_path, caplog):
    yml = _project(tmp_path, "[mechscope: {execute: true, timeout: 60}, mkdocs-jupyter]")
    config = load_config(str(yml))
    plugin = config.plugins["mechscope"]
    assert isinstance(plugin, MechscopePlugin)
    assert (plugin.config.execute, plugin.config.timeout) == (True, 60)
    jupyter = config.plugins["mkdocs-jupyter"]
    assert plugin._executes(jupyter, str(tmp_path / "docs" / "stored.ipynb"))
    jupyter.config["execute_ignore"] = ["stored.ipynb"]
    assert not plugin._executes(jupyter, str(tmp_path / "docs" / "stored.ipynb"))

    yml.write_text("site_name: t\nplugins: [mechscope]\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        _, files = _run_on_files(yml)
    assert files["stored.ipynb"].abs_src_path == str(tmp_path / "docs" / "stored.ipynb")
    assert [r.getMessage() for r in caplog.records] == [
        "mechscope: mkdocs-jupyter is not in `plugins`: no notebook is rendered; add it: "
        "plugins: [mechscope, mkdocs-jupyter]"]
