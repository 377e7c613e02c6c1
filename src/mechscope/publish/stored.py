"""Offline snapshots made from the widget state stored in a notebook: each array stored once.

A live mechscope display carries the widget view and a ``text/html`` *placeholder* (summary and
model id, no data; `mechscope.widgets._base.placeholder_html`). The notebook stores the widget's
state once, in its metadata (nbclient's ``store_widget_state``, or JupyterLab with ipywidgets'
"save widget state", which ``make setup`` turns on). `publish_widgets` turns such a notebook
into the copy every static renderer draws (nbconvert, nbviewer, Sphinx + myst-nb,
mkdocs-jupyter): each mechscope output's placeholder becomes its offline snapshot, made from the
stored state (`stored_snapshot`) with the installed front end, and its widget-view mime is
dropped, so renderers fall back to ``text/html`` (``text/plain`` is kept); ipywidgets controls
(tqdm progress bars) are dropped, so no dangling widget view is left; the stored state is
removed unless ``keep_state``.

Only state is read from the notebook, never code: the front end inlined is the installed
mechscope bundle of the widget class the state names (``_anywidget_id``), not the ``_esm``
source saved beside it.
"""

from __future__ import annotations

import html
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_PLACEHOLDER_MODEL = re.compile(r'class="mechscope-placeholder"[^>]*data-mechscope-model="([^"]*)"')


@dataclass(frozen=True)
class StoredReport:
    """What `publish_widgets` did to a notebook.

    >>> StoredReport(snapshots=2, missing_state=1, dropped_controls=3, state_bytes=10).line()
    '2 snapshot(s) made from stored widget state; 1 widget(s) without stored state shown as text; 3 progress bar/control output(s) dropped'
    """

    snapshots: int  #: mechscope outputs given their offline snapshot
    missing_state: int  #: mechscope widget outputs whose state the notebook does not hold
    dropped_controls: int  #: ipywidgets outputs removed (progress bars, controls)
    state_bytes: int  #: bytes of stored widget state (JSON) removed (0 when kept)

    def line(self) -> str:
        parts = [f"{self.snapshots} snapshot(s) made from stored widget state"]
        if self.missing_state:
            parts.append(f"{self.missing_state} widget(s) without stored state shown as text")
        if self.dropped_controls:
            parts.append(f"{self.dropped_controls} progress bar/control output(s) dropped")
        return "; ".join(parts)


def widget_states(nb: Any) -> dict[str, dict[str, Any]]:
    """The stored widget models of ``nb`` by model id ({} when none is stored)."""
    stored = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
    state = stored.get("state", {}) if isinstance(stored, dict) else {}
    return state if isinstance(state, dict) else {}


def widget_classes() -> dict[str, type]:
    """Every mechscope widget class by its anywidget id (``module.Name``), from every module of
    `mechscope.widgets` (imported here, so a widget the package does not re-export counts too)."""
    import importlib
    import pkgutil

    from .. import widgets as package
    from ..widgets._base import MechscopeWidget

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")

    found: dict[str, type] = {}
    todo: list[type] = [MechscopeWidget]
    while todo:
        subclasses: list[type] = todo.pop().__subclasses__()
        for sub in subclasses:
            found[f"{sub.__module__}.{sub.__name__}"] = sub
            todo.append(sub)
    return found


def _put(state: dict[str, Any], path: list[Any], value: Any) -> None:
    """Set ``state[path[0]][path[1]]... = value`` (ipywidgets' buffer paths)."""
    node: Any = state
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def stored_snapshot(entry: dict[str, Any], classes: dict[str, type] | None = None) -> str | None:
    """The offline snapshot (HTML) of one stored widget model, or None when it is not a
    mechscope widget (or its state is over the snapshot size limit).

    ``entry``: ``{"model_name", "model_module", "state", "buffers": [{"path", "data"}]}`` as
    ipywidgets stores it; the buffers (base64) go back into the state at their paths.

    >>> import numpy as np
    >>> from mechscope.widgets import Heatmap
    >>> w = Heatmap(np.zeros((2, 3), dtype="float32"), title="t")
    >>> entry = {"state": {**w.get_state(), "values": {"dtype": "float32", "shape": [2, 3]}},
    ...          "buffers": [{"path": ["values", "data"], "data": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ...                       "encoding": "base64"}]}
    >>> page = stored_snapshot(entry)
    >>> 'data-mechscope-widget="heatmap"' in page, '"data":"AAAA' in page
    (True, True)
    >>> stored_snapshot({"state": {"_model_name": "FloatProgressModel"}}) is None
    True
    """
    from ..widgets._base import snapshot_html
    from ..widgets.traits import array_traits

    state = dict(entry.get("state", {}))
    cls = (classes if classes is not None else widget_classes()).get(str(state.get("_anywidget_id", "")))
    cls = _current(cls)
    if cls is None:
        return None
    for buffer in entry.get("buffers", []):
        path = list(buffer.get("path", []))
        if path and path[0] in state:
            state[path[0]] = dict(state[path[0]]) if isinstance(state[path[0]], dict) else state[path[0]]
            _put(state, path, buffer.get("data", ""))
    shown = {k: v for k, v in state.items() if not k.startswith("_")}
    bundle = next(k._bundle_file.stem for k in cls.__mro__  # type: ignore[attr-defined]
                  if getattr(k, "_bundle_file", None) is not None)
    return snapshot_html(bundle, cls.offline_state(shown), f"<{cls.__name__}>",  # type: ignore[attr-defined]
                         array_traits(cls))


def _current(cls: type | None) -> type | None:
    """The class of that name its module defines now (a reloaded module defines a new one)."""
    if cls is None:
        return None
    module = sys.modules.get(cls.__module__)
    found = getattr(module, cls.__name__, None)
    return found if isinstance(found, type) else cls


def _output_snapshot(output: Any, states: dict[str, dict[str, Any]],
                     classes: dict[str, type]) -> tuple[str, str | None]:
    """(what the output is, its snapshot): "mechscope" (snapshot or None when the state is
    missing), "control" (an ipywidgets model), or "other"."""
    data = output.get("data", {})
    view = data.get(WIDGET_VIEW)
    placeholder = _PLACEHOLDER_MODEL.search(str(data.get("text/html", "")))
    model_id = str(view.get("model_id", "")) if isinstance(view, dict) else ""
    if not model_id and placeholder is not None:
        model_id = html.unescape(placeholder.group(1))
    if not model_id:
        return "other", None
    entry = states.get(model_id)
    if entry is None:
        return ("mechscope", None) if placeholder is not None else ("missing", None)
    module = str(entry.get("model_module", ""))
    if module.startswith("@jupyter-widgets/"):
        return "control", None
    snapshot = stored_snapshot(entry, classes)
    return ("mechscope", snapshot) if snapshot is not None or placeholder is not None else ("other", None)


def _fill(snapshot: str, plain: str) -> str:
    """The snapshot with the output's own text/plain summary shown until it draws."""
    first = snapshot.index('<pre class="mechscope-summary">') + len('<pre class="mechscope-summary">')
    end = snapshot.index("</pre>", first)
    return snapshot[:first] + html.escape(plain) + snapshot[end:]


def publish_widgets(nb: Any, *, keep_state: bool = False) -> StoredReport:
    """Make ``nb`` (in place) the copy static renderers draw: snapshots from the stored state,
    no widget views of mechscope outputs, no progress-bar outputs, no stored state (unless
    ``keep_state``). Outputs that are not widgets are untouched.

    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> bar = new_output("display_data", data={WIDGET_VIEW: {"model_id": "m1"}, "text/plain": "0%"})
    >>> nb = new_notebook(cells=[new_code_cell("for i in tqdm(...): ...", outputs=[bar])])
    >>> nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"m1": {"model_module": "@jupyter-widgets/controls"}}}}
    >>> report = publish_widgets(nb)
    >>> report.dropped_controls, report.state_bytes > 0, nb.cells[0].outputs, "widgets" in nb.metadata
    (1, True, [], False)
    """
    states = widget_states(nb)
    classes = widget_classes()
    made = missing = dropped = 0
    for cell in nb.get("cells", []):
        if "outputs" not in cell:
            continue
        kept = []
        for output in cell.outputs:
            kind, snapshot = _output_snapshot(output, states, classes)
            data = output.get("data", {})
            if kind == "control":
                dropped += 1
                continue
            if kind in ("mechscope", "missing"):
                data.pop(WIDGET_VIEW, None)
                if snapshot is not None:
                    data["text/html"] = _fill(snapshot, str(data.get("text/plain", "")).strip())
                    made += 1
                elif 'class="mechscope-snapshot"' in str(data.get("text/html", "")):
                    made += 1  # a snapshot carried in the output itself (saved by an older mechscope)
                elif kind == "mechscope":
                    missing += 1
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept
    removed = 0
    if not keep_state and "widgets" in nb.get("metadata", {}):
        removed = len(json.dumps(nb.metadata.pop("widgets")))
    return StoredReport(made, missing, dropped, removed)
