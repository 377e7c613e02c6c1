"""Publish ONE notebook as a self-contained HTML page whose widgets render offline (see `mechscope.publish`)."""

from __future__ import annotations

import html
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import MechscopeError
from .stored import StoredReport, publish_widgets

#: Output mimetypes in the order the export prefers them: a widget's offline ``text/html``
#: snapshot wins, and the live widget view (blank without a kernel) is never chosen.
DISPLAY_PRIORITY = [
    "text/html", "application/javascript", "text/markdown", "image/svg+xml", "text/vnd.mermaid",
    "text/latex", "image/png", "image/jpeg", "text/plain",
]

#: The stock lab template minus every block that loads a script from a CDN.
_TEMPLATE_NAME = "mechscope_offline.html.j2"
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_KIND = re.compile(r'data-mechscope-widget="([^"]*)"')
_REMOTE = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Kernel environment defaults (the caller's own settings win): offline hub, quiet OpenMP.
_KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class PublishedWidget:
    """One widget output found in the notebook (see `find_widgets`).

    >>> PublishedWidget(number=1, cell=3, kind="heatmap", summary="Heatmap(2 x 3)", snapshot=True).line()
    'widget 1: Heatmap(2 x 3) (cell 3)'
    >>> PublishedWidget(2, 5, "", "Output()", snapshot=False).line()
    'widget 2: Output() (cell 5)  [no offline snapshot: shown as text]'
    """

    number: int  #: 1-based, in page order
    cell: int  #: index of the notebook cell that displayed it
    kind: str  #: the snapshot's ``data-mechscope-widget`` (bundle name), "" without a snapshot
    summary: str  #: first line of the widget's text/plain
    snapshot: bool  #: False when the widget has no offline HTML (it then shows as text)

    def line(self) -> str:
        text = self.summary if len(self.summary) <= 160 else self.summary[:157] + "..."
        tail = "" if self.snapshot else "  [no offline snapshot: shown as text]"
        return f"widget {self.number}: {text} (cell {self.cell}){tail}"


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish` wrote; ``lines()`` is the summary the command line prints.

    >>> from pathlib import Path
    >>> widget = PublishedWidget(1, 3, "heatmap", "Heatmap(2 x 3)", True)
    >>> report = PublishReport(Path("build/tour.html"), 1_500_000, 12.0, (widget,), 1, ())
    >>> for line in report.lines():
    ...     print(line)
    wrote build/tour.html (1.50 MB, 1 widget(s), 12.0 s)
    widget 1: Heatmap(2 x 3) (cell 3)
    left out 1 ipywidgets output(s) (progress bars, controls): they only draw with a kernel
    """

    output: Path
    size_bytes: int
    seconds: float
    widgets: tuple[PublishedWidget, ...]
    #: ipywidgets outputs left out (progress bars, controls): they need a kernel to draw
    dropped_kernel_widgets: int
    #: remote URLs still referenced by the page (from outputs, not the template); normally empty
    remote_refs: tuple[str, ...]

    def lines(self) -> list[str]:
        out = [f"wrote {self.output} ({self.size_bytes / 1e6:.2f} MB, {len(self.widgets)} "
               f"widget(s), {self.seconds:.1f} s)"]
        out += [w.line() for w in self.widgets]
        if self.dropped_kernel_widgets:
            out.append(f"left out {self.dropped_kernel_widgets} ipywidgets output(s) (progress "
                       "bars, controls): they only draw with a kernel")
        out += [f"warning: the page references {url}: it needs the network there"
                for url in self.remote_refs]
        return out


def _progress(stream: TextIO | None, total: int) -> dict[str, Any]:
    """nbclient hooks that print one line per executed code cell."""
    if stream is None:
        return {}
    started: dict[int, float] = {}
    count = [0]

    def start(cell: Any, cell_index: int, **_: Any) -> None:
        started[cell_index] = time.perf_counter()

    def done(cell: Any, cell_index: int, **_: Any) -> None:
        took = time.perf_counter() - started.get(cell_index, time.perf_counter())
        first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:60]
        count[0] += 1
        print(f"  [{count[0]}/{total}] cell {cell_index} ({took:.1f} s): {first}", file=stream,
              flush=True)

    return {"on_cell_start": start, "on_cell_executed": done}


def execute_notebook(nb: Any, cwd: Path, timeout: int = 900,
                     progress: TextIO | None = None) -> None:
    """Run every code cell of ``nb`` (in place) in a fresh ``python3`` kernel started in ``cwd``.

    Raises :class:`MechscopeError` naming the failing cell's index and exception; the cells
    before it keep their outputs.

    >>> import tempfile
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> nb = new_notebook(cells=[new_code_cell("print(6 * 7)"), new_code_cell("1 / 0")])
    >>> try:
    ...     execute_notebook(nb, Path(tempfile.mkdtemp()), timeout=60)
    ... except MechscopeError as err:
    ...     print(str(err).splitlines()[0])
    cell 1 failed with ZeroDivisionError: division by zero
    >>> nb.cells[0].outputs[0].text.strip()
    '42'
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    current = {"index": -1}
    hooks = _progress(progress, sum(c.cell_type == "code" for c in nb.cells))
    start_hook = hooks.get("on_cell_start")

    def on_start(cell: Any, cell_index: int, **kw: Any) -> None:
        current["index"] = cell_index
        if start_hook is not None:
            start_hook(cell=cell, cell_index=cell_index, **kw)

    hooks["on_cell_start"] = on_start
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=False, store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}}, **hooks,
    )
    env = {**_KERNEL_ENV, **os.environ}
    try:
        client.execute(env=env)
    except (CellControlSignal, DeadKernelError, TimeoutError) as exc:
        index = current["index"]
        ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
        source = nb.cells[index].source if 0 <= index < len(nb.cells) else ""
        first = next((ln for ln in source.splitlines() if ln.strip()), "")
        trace = _ANSI.sub("", str(exc)).strip()
        raise MechscopeError(
            f"cell {index} failed with {ename}: {str(evalue).strip()}\n"
            f"  cell {index} starts: {first}\n{trace}"
        ) from exc


def find_widgets(nb: Any) -> tuple[tuple[PublishedWidget, ...], int]:
    """Every mechscope widget output of ``nb`` (snapshot kind, summary line); drop kernel-only ones.

    Outputs of ipywidgets controls (``@jupyter-widgets/*`` models, e.g. tqdm progress bars) can
    only draw with a kernel and their text/plain is a stale first frame: they are removed from
    ``nb`` (classified through the widget state nbclient stored) and counted in the second value.

    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> snap = new_output("display_data", data={"text/plain": "Heatmap(2 x 3)",
    ...                   "text/html": '<div data-mechscope-widget="heatmap"></div>'})
    >>> bar = new_output("display_data", data={_WIDGET_VIEW: {"model_id": "m1"}, "text/plain": "0%"})
    >>> nb = new_notebook(cells=[new_code_cell("w", outputs=[snap, bar])])
    >>> nb.metadata["widgets"] = {_WIDGET_STATE: {"state": {"m1": {"model_module": "@jupyter-widgets/controls"}}}}
    >>> widgets, dropped = find_widgets(nb)
    >>> [(w.kind, w.summary, w.cell) for w in widgets], dropped, len(nb.cells[0].outputs)
    ([('heatmap', 'Heatmap(2 x 3)', 0)], 1, 1)
    """
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    found: list[PublishedWidget] = []
    dropped = 0
    for index, cell in enumerate(nb.cells):
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text_html = str(data.get("text/html", ""))
            kind = _KIND.search(text_html)
            if _WIDGET_VIEW not in data and kind is None:
                kept.append(output)
                continue
            model_id = data.get(_WIDGET_VIEW, {}).get("model_id", "")
            if kind is None and state.get(model_id, {}).get("model_module", "").startswith(
                    "@jupyter-widgets/"):
                dropped += 1
                continue
            kept.append(output)
            plain = str(data.get("text/plain", "")).strip()
            found.append(PublishedWidget(
                number=len(found) + 1, cell=index, kind=html.unescape(kind.group(1)) if kind else "",
                summary=plain.splitlines()[0] if plain else "(no text/plain)",
                snapshot='class="mechscope-snapshot"' in text_html,
            ))
        if "outputs" in cell:
            cell.outputs = kept
    return tuple(found), dropped


def render_html(nb: Any) -> str:
    """``nb`` as one HTML page (nbconvert lab template) with no script loaded from the network.

    >>> from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    >>> page = render_html(new_notebook(cells=[new_markdown_cell("# Tour"), new_code_cell("1 + 1")]))
    >>> page.lstrip().lower().startswith("<!doctype html>"), remote_refs(page)
    (True, ())
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb.metadata.pop("widgets", None)  # stored widget state would only add CDN-backed views
    config = Config()
    config.NbConvertBase.display_data_priority = list(DISPLAY_PRIORITY)
    exporter = HTMLExporter(
        config=config, template_name="lab", template_file=_TEMPLATE_NAME,
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
    )
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def notebook_title(nb: Any, default: str) -> str:
    """The notebook's title: ``metadata.title``, else its first markdown ``# heading``, else ``default``.

    >>> from nbformat.v4 import new_markdown_cell, new_notebook
    >>> nb = new_notebook(cells=[new_markdown_cell("Some text"), new_markdown_cell("# The tour")])
    >>> notebook_title(nb, "01_tour"), notebook_title(new_notebook(), "01_tour")
    ('The tour', '01_tour')
    """
    title = str(nb.metadata.get("title", "")).strip()
    if title:
        return title
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# ") and line[2:].strip():
                return line[2:].strip()
    return default


def remote_refs(page: str) -> tuple[str, ...]:
    """URLs that a browser would fetch while loading ``page`` (scripts, styles, images, imports).

    >>> remote_refs('<script src="https://cdn.example.org/x.js"></script><img src="local.png">'
    ...             '<style>@import url("//fonts.example.org/f.css");</style>')
    ('https://cdn.example.org/x.js', '//fonts.example.org/f.css')
    """
    return tuple(dict.fromkeys(a or b for a, b in _REMOTE.findall(page)))


def publish(notebook: str | os.PathLike[str], output: str | os.PathLike[str],
            execute: bool = True, *, timeout: int = 900,
            progress: TextIO | bool = True) -> PublishReport:
    """Execute ``notebook`` headless and write it to ``output`` as one offline HTML page.

    Each mechscope widget in the page draws itself from its inlined snapshot: no kernel, no
    network (open the file from disk). With ``execute=False`` the outputs already saved in the
    notebook are exported as they are. ``timeout`` bounds each cell (seconds); ``progress``
    (a stream, True for stderr, False for silence) gets one line per executed cell.
    The page's ``<title>`` is the notebook's (`notebook_title`: its first ``# heading``).

    Returns a :class:`PublishReport` (path, size, time, one entry per widget). Raises
    :class:`MechscopeError` when the notebook is missing or unreadable, or a cell fails (the
    message names the cell index and the exception).

    Example (the same as ``python -m mechscope.publish notebooks/01_tour.ipynb build/tour.html``)::

        report = publish("notebooks/01_tour.ipynb", "build/tour.html")
        print("\\n".join(report.lines()))

    Without executing (a notebook written here), and a missing notebook:

    >>> import nbformat, tempfile
    >>> from nbformat.v4 import new_markdown_cell, new_notebook
    >>> folder = Path(tempfile.mkdtemp())
    >>> nbformat.write(new_notebook(cells=[new_markdown_cell("# Hello")]), folder / "hello.ipynb")
    >>> report = publish(folder / "hello.ipynb", folder / "hello.html", execute=False, progress=False)
    >>> report.output.name, report.widgets, "<title>Hello</title>" in report.output.read_text()
    ('hello.html', (), True)
    >>> publish(folder / "missing.ipynb", folder / "missing.html")
    Traceback (most recent call last):
        ...
    mechscope.errors.MechscopeError: notebook not found: .../missing.ipynb (looked in ...)
    """
    began = time.perf_counter()
    stream = sys.stderr if progress is True else progress or None
    src, dest = Path(notebook), Path(output)
    nb = _read(src)
    if execute:
        if stream is not None:
            print(f"executing {src} ({len(nb.cells)} cells)", file=stream, flush=True)
        execute_notebook(nb, src.resolve().parent, timeout=timeout, progress=stream)
    stored = publish_widgets(nb)
    widgets, dropped = find_widgets(nb)
    dropped += stored.dropped_controls
    nb.metadata["title"] = notebook_title(nb, src.stem)  # the page's <title>
    page = render_html(nb)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(page, encoding="utf-8")
    return PublishReport(
        output=dest, size_bytes=dest.stat().st_size, seconds=time.perf_counter() - began,
        widgets=widgets, dropped_kernel_widgets=dropped, remote_refs=remote_refs(page),
    )


def export_html(notebook: str | os.PathLike[str], output: str | os.PathLike[str], *,
                progress: TextIO | bool = False) -> PublishReport:
    """Export an already executed notebook (e.g. saved from JupyterLab) to one offline HTML page.

    Executes nothing: the outputs saved in ``notebook`` are what the page shows, and every
    mechscope widget in them draws from its inlined snapshot with no kernel and no CDN
    (``make html NB=notebook.ipynb``). Same report and errors as :func:`publish`.

    >>> import nbformat, tempfile
    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> folder = Path(tempfile.mkdtemp())
    >>> saved = new_code_cell("print('hi')", outputs=[new_output("stream", name="stdout", text="hi there")])
    >>> nbformat.write(new_notebook(cells=[saved]), folder / "saved.ipynb")
    >>> report = export_html(folder / "saved.ipynb", folder / "saved.html")
    >>> "hi there" in report.output.read_text(), report.remote_refs
    (True, ())
    """
    return publish(notebook, output, execute=False, progress=progress)


# ---- a site: several notebooks and an index page ------------------------------------------------
#: Link back to the index, added at the top of every page of a site.


def strip_widget_state(notebook: str | os.PathLike[str]) -> int:
    """Make ``notebook`` (in place) the copy static renderers draw; return the characters of
    stored widget state removed (0 when it held none).

    Each mechscope widget's placeholder becomes its offline snapshot, made from the stored
    widget state (`mechscope.publish.stored.publish_widgets`), the widget-view mime of those
    outputs and every progress-bar output are dropped, and the stored state is removed: stock
    ``jupyter nbconvert``, nbviewer, myst-nb and mkdocs-jupyter then show the snapshots
    (``python -m mechscope.publish --strip-widget-state NOTEBOOK``). Nothing is executed; a
    notebook without stored state is left as it is. To write the copy elsewhere (and execute
    it first), use `publish_notebook`.

    >>> import nbformat, tempfile
    >>> nb = nbformat.v4.new_notebook()
    >>> nb.metadata["widgets"] = {_WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {}}}
    >>> path = Path(tempfile.mkdtemp()) / "shared.ipynb"
    >>> nbformat.write(nb, path)
    >>> strip_widget_state(path) > 0, strip_widget_state(path)      # the second call: nothing left
    (True, 0)
    """
    import nbformat

    path = Path(notebook)
    nb = _read(path)
    if "widgets" not in nb.metadata:
        return 0
    report = publish_widgets(nb)
    nbformat.write(nb, path)
    return report.state_bytes


def publish_notebook(notebook: str | os.PathLike[str], output: str | os.PathLike[str],
                     execute: bool = True, *, timeout: int = 900,
                     progress: TextIO | bool = True) -> StoredReport:
    """Write the published copy of ``notebook`` to ``output`` (an .ipynb): executed headless
    first (unless ``execute=False``), then every mechscope widget given its offline snapshot
    from the stored widget state, no widget views, no progress bars, no stored state
    (`mechscope.publish.stored.publish_widgets`). Every static renderer draws this copy:
    nbconvert, nbviewer, Sphinx + myst-nb, mkdocs-jupyter (``python -m mechscope.publish
    --notebook NOTEBOOK OUT.ipynb``).

    >>> import nbformat, tempfile
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> folder = Path(tempfile.mkdtemp())
    >>> nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), folder / "a.ipynb")
    >>> publish_notebook(folder / "a.ipynb", folder / "out" / "a.ipynb", execute=False).line()
    '0 snapshot(s) made from stored widget state'
    """
    import nbformat

    src, dest = Path(notebook), Path(output)
    nb = _read(src)
    if execute:
        stream = sys.stderr if progress is True else progress or None
        execute_notebook(nb, src.resolve().parent, timeout=timeout, progress=stream)
    report = publish_widgets(nb)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return report


def _read(path: Path) -> Any:
    """The notebook at ``path`` (version 4), or a `MechscopeError` saying what is wrong."""
    try:
        import nbformat
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MechscopeError("publishing needs the lab extras: pip install 'mechscope[lab]'") from exc
    if not path.is_file():
        raise MechscopeError(f"notebook not found: {path} (looked in {path.resolve().parent})")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several unrelated types for bad files
        raise MechscopeError(f"cannot read notebook {path}: {type(exc).__name__}: {exc}") from None
