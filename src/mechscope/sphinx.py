"""Sphinx + myst-nb: every mechscope widget of a notebook page draws offline.

A stock myst-nb project adds one line to its ``conf.py``::

    extensions = ["myst_nb", "mechscope.sphinx"]

Where it hooks in: myst-nb reads a notebook, executes it if its ``nb_execution_mode`` says
so (nbclient stores the widget state in the notebook's metadata: myst-nb's "force", "auto",
"cache" and "inline" modes all keep it), and renders *every* mime type of each output into
the page's doctree (a ``mime_bundle`` container; which mime type shows is picked later, per
builder, where a widget view would win over ``text/html``). Its render plugins are loaded
from entry points only, so this extension hooks the Sphinx event that follows all of that,
``doctree-read``: it gathers the page's widget outputs and the stored widget state myst-nb
recorded for the page, and lets `mechscope.publish.publish_widgets` decide what each output
becomes, exactly as for a published notebook: a mechscope output gets its offline snapshot
(made from the stored state with the installed front end) and loses its widget view, a
progress bar (an ipywidgets output) is dropped. The user's notebook file is never written.

The stored state then leaves the page with myst-nb's CDN scripts (require.js and the
html-manager) when no other widget view is left on it; when other widgets remain (not
mechscope, not ipywidgets controls), myst-nb's behaviour is kept for them and only the
mechscope models are taken out of the state it embeds.

A notebook saved without widget state has no data for its mechscope outputs: they show
their summary text, and the build warns once per such notebook, naming it and the fix (save
it with widget state, or let myst-nb execute it). The warning's type is ``mechscope`` and
subtype ``widget_state`` (``suppress_warnings = ["mechscope.widget_state"]`` silences it).
"""

from __future__ import annotations

import json
from typing import Any

from docutils import nodes

from .publish.stored import WIDGET_STATE, WIDGET_VIEW, publish_widgets, widget_classes

#: The ``type.subtype`` of the warning for a notebook whose mechscope outputs have no stored state.
WARNING_TYPE = "mechscope.widget_state"
_STATE_KEY = "ipywidgets_state"  # myst-nb's per-page js_files key of the embedded widget state
_TAG = "mechscope_bundle"  # output metadata key: which doctree bundle an output came from


def missing_state_message(docname: str, count: int) -> str:
    """The build warning for a notebook whose ``count`` mechscope outputs have no stored state.

    >>> print(missing_state_message("tour", 2))  # doctest: +ELLIPSIS
    tour: 2 mechscope widget(s) have no stored widget state, so they cannot draw ...
    """
    return (f"{docname}: {count} mechscope widget(s) have no stored widget state, so they cannot "
            "draw (their data is not in the notebook) and show their summary text instead. Fix: "
            "save the notebook with its widget state (JupyterLab: Settings > Save Widget State "
            "Automatically, then save) or let myst-nb execute it (nb_execution_mode = \"force\", "
            "or \"mystnb\": {\"execution_mode\": \"force\"} in its metadata).")


def _bundles(doctree: nodes.Node) -> list[nodes.container]:
    """myst-nb's mime bundles (one per display output) in ``doctree``."""
    return [n for n in doctree.findall(nodes.container) if n.get("nb_element") == "mime_bundle"]


def _mimes(bundle: nodes.container) -> dict[str, nodes.container]:
    return {c["mime_type"]: c for c in bundle.children
            if isinstance(c, nodes.container) and "mime_type" in c}


def _view(container: nodes.container | None) -> Any:
    """The widget-view JSON myst-nb rendered as ``<script type=...>JSON</script>`` (or None)."""
    if container is None:
        return None
    text = container.astext()
    start, end = text.find(">") + 1, text.rfind("</script>")
    try:
        return json.loads(text[start:end])  # myst-nb escapes "</script>" as "<\/script>": JSON
    except ValueError:
        return None


def bundle_output(bundle: nodes.container, index: int) -> dict[str, Any] | None:
    """The notebook output a myst-nb mime bundle was rendered from, as far as `publish_widgets`
    reads it (``text/html``, ``text/plain``, the widget view; other mime types by name only),
    or None when it is not a widget output.

    >>> from docutils import nodes
    >>> html = nodes.container(mime_type="text/html")
    >>> html += nodes.raw(text='<div class="mechscope-placeholder"></div>', format="html")
    >>> bundle = nodes.container(nb_element="mime_bundle")
    >>> bundle += html
    >>> bundle_output(bundle, 3)["data"], bundle_output(bundle, 3)["metadata"]
    ({'text/html': '<div class="mechscope-placeholder"></div>'}, {'mechscope_bundle': 3})
    >>> bundle_output(nodes.container(nb_element="mime_bundle"), 0) is None
    True
    """
    mimes = _mimes(bundle)
    html = mimes["text/html"].astext() if "text/html" in mimes else ""
    view = _view(mimes.get(WIDGET_VIEW))
    if view is None and "mechscope-placeholder" not in html and "mechscope-snapshot" not in html:
        return None
    data: dict[str, Any] = {mime: "" for mime in mimes}
    data.pop(WIDGET_VIEW, None)
    if view is not None:
        data[WIDGET_VIEW] = view
    if "text/html" in mimes:
        data["text/html"] = html
    if "text/plain" in mimes:
        data["text/plain"] = mimes["text/plain"].astext()
    return {"output_type": "display_data", "data": data, "metadata": {_TAG: index}}


def _apply(bundle: nodes.container, output: dict[str, Any] | None) -> None:
    """Make ``bundle`` show the published ``output`` (None: the output was dropped)."""
    if output is None:
        bundle.parent.remove(bundle)
        return
    for mime, container in _mimes(bundle).items():
        if mime not in output["data"]:
            bundle.remove(container)
        elif mime == "text/html" and output["data"][mime] != container.astext():
            container.children = []
            container += nodes.raw(text=output["data"][mime], format="html",
                                   classes=["output", "text_html"])


def _page_state(js_files: dict[str, Any]) -> dict[str, Any] | None:
    """The widget state myst-nb embeds in this page (``{"state": {...}, ...}``), or None."""
    entry = js_files.get(_STATE_KEY)
    if entry is None:
        return None
    try:
        stored = json.loads(entry[1].get("body", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return None
    return stored if isinstance(stored, dict) else None


def _keep_other_widgets(js_files: dict[str, Any], stored: dict[str, Any] | None,
                        doctree: nodes.Node) -> None:
    """Drop the embedded state and the CDN scripts unless a widget view is left on the page;
    if one is, keep them, less the mechscope models."""
    left = any(WIDGET_VIEW in _mimes(b) for b in _bundles(doctree))
    if not left:
        for key in [k for k in js_files if k.startswith("ipywidgets_")]:
            del js_files[key]
        return
    if stored is None or not isinstance(stored.get("state"), dict):
        return
    ours = set(widget_classes())
    stored["state"] = {k: v for k, v in stored["state"].items()
                       if v.get("state", {}).get("_anywidget_id") not in ours}
    uri, kwargs = js_files[_STATE_KEY]
    js_files[_STATE_KEY] = (uri, {**kwargs, "body": json.dumps(stored).replace("</", "<\\/")})


def publish_doctree(app: Any, doctree: nodes.document) -> None:
    """``doctree-read`` handler: the page's mechscope outputs become their offline snapshots
    (made by `publish_widgets` from the widget state myst-nb recorded for the page), progress
    bars are dropped, and the stored state and CDN scripts leave when no widget needs them;
    warns (`missing_state_message`) when mechscope outputs have no stored state.

    A page without notebook outputs is left as it is:

    >>> from types import SimpleNamespace
    >>> from docutils.utils import new_document
    >>> page = new_document("index.md")
    >>> publish_doctree(SimpleNamespace(env=SimpleNamespace(docname="index")), page)
    >>> page.children
    []
    """
    import nbformat

    bundles = _bundles(doctree)
    outputs = [bundle_output(b, i) for i, b in enumerate(bundles)]
    if not any(outputs):
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    env, docname = app.env, app.env.docname
    js_files = NbMetadataCollector.get_js_files(env, docname)
    stored = _page_state(js_files)
    nb = nbformat.v4.new_notebook(metadata={"widgets": {WIDGET_STATE: stored}} if stored else {})
    cell = nbformat.v4.new_code_cell()
    cell.outputs = [nbformat.from_dict(o) for o in outputs if o is not None]
    nb.cells.append(cell)
    report = publish_widgets(nb, keep_state=True)
    published = {o.metadata[_TAG]: o for o in cell.outputs}
    for index, (bundle, output) in enumerate(zip(bundles, outputs, strict=True)):
        if output is not None:
            _apply(bundle, published.get(index))
    if js_files:
        _keep_other_widgets(js_files, stored, doctree)
    if report.missing_state:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            missing_state_message(docname, report.missing_state), location=docname,
            type="mechscope", subtype="widget_state")


def setup(app: Any) -> dict[str, Any]:
    """Register the extension (loads myst-nb first if ``conf.py`` did not list it before).

    >>> from types import SimpleNamespace
    >>> calls = []
    >>> app = SimpleNamespace(setup_extension=calls.append,
    ...                       connect=lambda event, fn: calls.append(event))
    >>> sorted(setup(app)), calls
    (['parallel_read_safe', 'parallel_write_safe', 'version'], ['myst_nb', 'doctree-read'])
    """
    from importlib.metadata import version

    app.setup_extension("myst_nb")
    app.connect("doctree-read", publish_doctree)
    return {"version": version("mechscope"), "parallel_read_safe": True,
            "parallel_write_safe": True}
