"""A mkdocs plugin that makes every mechscope widget draw offline in mkdocs-jupyter pages.

Add one line to ``mkdocs.yml``::

    plugins: [mechscope, mkdocs-jupyter]

(either order works: the plugin's ``on_files`` runs after mkdocs-jupyter's, whatever the list
order). mkdocs-jupyter renders a notebook by running nbconvert on the file at
``page.file.abs_src_path`` when the page is rendered. For each notebook mkdocs-jupyter renders,
this plugin writes the *published copy* (`mechscope.publish.publish_widgets`: each mechscope
output's offline snapshot made from the widget state stored in the notebook, no widget views,
no progress bars, no stored state) under ``.cache/mechscope/`` beside ``mkdocs.yml`` and points
the page's ``abs_src_path`` at it; the user's notebook is never modified. Without this, a
notebook with stored widget state renders blank offline (nbconvert picks the widget view and
loads a widget manager from a CDN).

Execution: mkdocs-jupyter's own ``execute: true`` stores widget state but renders the widget
views, so a published copy must never be re-executed by it. When mkdocs-jupyter's ``execute``
is on (or this plugin's ``execute: true``, e.g. ``plugins: [mechscope: {execute: true},
mkdocs-jupyter]``), this plugin executes the notebook itself (`mechscope.publish.execute_notebook`:
a fresh ``python3`` kernel in the notebook's folder, widget state stored), publishes the result,
and adds the copy to mkdocs-jupyter's ``execute_ignore``; mkdocs-jupyter's ``execute_ignore``
patterns are honoured. A failing cell fails the build, naming the notebook and the cell.

A notebook whose mechscope outputs carry no stored state (saved without "save widget state")
cannot draw them (their data is not in the file): the plugin logs one warning naming the
notebook and the fix. Copies are cached by the notebook's bytes, the execute flag and the
installed mechscope sources (``cache: false`` rebuilds them every time).

Options: ``execute`` (unset: follow mkdocs-jupyter), ``timeout`` (seconds per cell, 900),
``cache`` (true), ``cache_dir`` (``.cache/mechscope``, relative to ``mkdocs.yml``).

>>> from mechscope.mkdocs import MechscopePlugin
>>> MechscopePlugin().load_config({"execute": True})
([], [])
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePath
from typing import Any

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, event_priority, get_plugin_logger

log = get_plugin_logger("mechscope")

#: The fix the no-state warning names.
NO_STATE_FIX = ("save it from JupyterLab with widget state saved (Settings > Save Widget State "
                "Automatically; `make setup` turns it on), or let mechscope execute it at build "
                "time: plugins: [mechscope: {execute: true}, mkdocs-jupyter]")
_KEY = re.compile(r"^[0-9a-f]{16}$")


class MechscopeConfig(base.Config):
    """The plugin's options (``plugins: [mechscope: {execute: true, timeout: 600}]``).

    >>> config = MechscopeConfig()
    >>> config.load_dict({"timeout": 60})
    >>> config.validate()
    ([], [])
    >>> config.execute, config.timeout, config.cache, config.cache_dir
    (None, 60, True, '.cache/mechscope')
    """

    #: Execute each notebook before publishing it; unset: when mkdocs-jupyter's ``execute`` is on.
    execute = c.Optional(c.Type(bool))
    #: Seconds a cell may run when executing.
    timeout = c.Type(int, default=900)
    #: Reuse a published copy while the notebook, the flag and mechscope's sources are unchanged.
    cache = c.Type(bool, default=True)
    #: Where published copies live, relative to mkdocs.yml.
    cache_dir = c.Type(str, default=".cache/mechscope")


def _sources_digest() -> str:
    """A hash of the installed mechscope sources (Python and the JS bundles snapshots inline)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".js") and path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def publish_copy(source: Path, dest: Path, *, execute: bool = False,
                 timeout: int = 900) -> dict[str, Any]:
    """Write the published copy of the notebook ``source`` to ``dest`` (executed first when
    ``execute``, in a fresh kernel in ``source``'s folder) and return what
    `mechscope.publish.publish_widgets` did as a dict (``snapshots``, ``missing_state``,
    ``dropped_controls``, ``state_bytes``, ``line``). ``source`` is only read.

    >>> import tempfile
    >>> import nbformat
    >>> from nbformat.v4 import new_markdown_cell, new_notebook
    >>> folder = Path(tempfile.mkdtemp())
    >>> nbformat.write(new_notebook(cells=[new_markdown_cell("# Hi")]), folder / "a.ipynb")
    >>> publish_copy(folder / "a.ipynb", folder / "out" / "a.ipynb")["snapshots"]
    0
    >>> nbformat.read(folder / "out" / "a.ipynb", as_version=4).cells[0].source
    '# Hi'
    """
    import nbformat

    from .publish import execute_notebook, publish_widgets

    nb = nbformat.read(source, as_version=4)
    if execute:
        execute_notebook(nb, source.parent, timeout=timeout)
    report = publish_widgets(nb)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dest)
    return {"snapshots": report.snapshots, "missing_state": report.missing_state,
            "dropped_controls": report.dropped_controls, "state_bytes": report.state_bytes,
            "line": report.line()}


class MechscopePlugin(BasePlugin[MechscopeConfig]):
    """mkdocs plugin ``mechscope``: mkdocs-jupyter renders the published copy of each notebook,
    so every mechscope widget draws offline from the widget state the notebook stores.

    ``mkdocs.yml``: ``plugins: [mechscope, mkdocs-jupyter]``. See `mechscope.mkdocs`.

    >>> plugin = MechscopePlugin()
    >>> plugin.load_config({})
    ([], [])
    >>> plugin.config.execute is None, plugin.config.cache_dir
    (True, '.cache/mechscope')
    """

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._digest: str | None = None
        #: src_uri -> the publish report of its copy (for tests and hooks)
        self.reports: dict[str, dict[str, Any]] = {}

    def _jupyter(self, config: Any) -> Any:
        """The mkdocs-jupyter plugin instance of this build, or None."""
        plugins = config["plugins"]
        for name in ("mkdocs-jupyter", "mkdocs_jupyter"):
            if name in plugins:
                return plugins[name]
        return None

    def _cache_root(self, config: Any) -> Path:
        folder = Path(config.config_file_path or ".").resolve()
        folder = folder.parent if folder.suffix in (".yml", ".yaml") or folder.is_file() else folder
        return folder / self.config.cache_dir

    def _executes(self, jupyter: Any, source: str) -> bool:
        """Whether this build executes ``source`` (mkdocs-jupyter's ``execute_ignore`` honoured)."""
        wanted = self.config.execute
        if wanted is None:
            wanted = bool(jupyter.config.get("execute", False))
        if not wanted:
            return False
        return not any(PurePath(source).match(p) for p in jupyter.config.get("execute_ignore") or [])

    def _key(self, source: Path, execute: bool) -> str:
        if self._digest is None:
            self._digest = _sources_digest()
        digest = hashlib.sha256(source.read_bytes())
        digest.update(f"execute={execute};mechscope={self._digest}".encode())
        return digest.hexdigest()[:16]

    def _published(self, file: Any, execute: bool, root: Path) -> tuple[Path, dict[str, Any]]:
        """The published copy of ``file`` (made, or reused from the cache) and its report."""
        source = Path(file.abs_src_path)
        key = self._key(source, execute)
        dest = root / key / file.src_uri
        sidecar = dest.with_name(dest.name + ".mechscope.json")
        self._used.add(key)
        if self.config.cache and dest.is_file() and sidecar.is_file():
            return dest, json.loads(sidecar.read_text(encoding="utf-8"))
        if execute:
            log.info(f"executing {file.src_uri} (widget state stored)")
        try:
            report = publish_copy(source, dest, execute=execute, timeout=self.config.timeout)
        except Exception as err:  # a failing cell, a dead kernel, an unreadable notebook
            raise PluginError(f"mechscope: could not publish {file.src_uri}: {err}") from err
        sidecar.write_text(json.dumps(report), encoding="utf-8")
        return dest, report

    @event_priority(-50)  # after mkdocs-jupyter's on_files (default priority 0) in any list order
    def on_files(self, files: Any, *, config: Any) -> Any:
        """Point every notebook mkdocs-jupyter renders at its published copy."""
        jupyter = self._jupyter(config)
        if jupyter is None:
            log.warning("mkdocs-jupyter is not in `plugins`: no notebook is rendered; add it: "
                        "plugins: [mechscope, mkdocs-jupyter]")
            return files
        root = self._cache_root(config)
        ignore = list(jupyter.config.get("execute_ignore") or [])
        for file in files:
            source = file.abs_src_path
            if source is None or not jupyter.should_include(file):
                continue
            execute = self._executes(jupyter, source)
            if not source.endswith(".ipynb"):
                if execute:
                    log.warning(f"{file.src_uri}: mechscope publishes .ipynb notebooks only; the "
                                "widgets mkdocs-jupyter executes here will not draw offline "
                                "(pair it with an .ipynb: jupytext --to ipynb)")
                continue
            dest, report = self._published(file, execute, root)
            self.reports[file.src_uri] = report
            if report["missing_state"]:
                log.warning(f"{file.src_uri}: {report['missing_state']} mechscope widget(s) have "
                            "no stored widget state, so they show as text only (their data is "
                            f"not in the notebook). To draw them, {NO_STATE_FIX}")
            elif report["snapshots"]:
                log.info(f"{file.src_uri}: {report['line']}")
            for wrapped in (file, getattr(file, "file", None)):
                if wrapped is not None:
                    wrapped.abs_src_path = os.fspath(dest)
            if glob.escape(os.fspath(dest)) not in ignore:
                ignore.append(glob.escape(os.fspath(dest)))  # never re-executed by mkdocs-jupyter
        jupyter.config["execute_ignore"] = ignore
        return files

    def on_post_build(self, *, config: Any) -> None:
        """Remove cached copies this build did not use."""
        root = self._cache_root(config)
        if not self.config.cache or not root.is_dir():
            return
        for entry in root.iterdir():
            if entry.is_dir() and _KEY.match(entry.name) and entry.name not in self._used:
                shutil.rmtree(entry, ignore_errors=True)

    def on_pre_build(self, *, config: Any) -> None:
        """Start a build: no cache entry used yet, sources hashed afresh."""
        self._used = set()
        self._digest = None
        self.reports = {}
