"""Voila and Notebook 7 servers for browser tests, started like lab.py starts JupyterLab.

Both come from this interpreter's environment, listen on 127.0.0.1 (a free port,
``port_retries=0``, retried on a port lost to a race), use lab.py's isolated JUPYTER_* / IPYTHONDIR
environment and a temp copy of notebooks/ as their root, and are stopped with their kernels on
exit (`tests.browser.lab.stop_lab`).

``running_voila()``: ``voila ROOT`` (no token: Voila's default identity provider lets anyone on
127.0.0.1 in; it serves only the temp copy), tracebacks shown; a notebook renders (and its kernel
runs) at `Voila.render_url`. ``running_notebook7()``: ``jupyter notebook`` (Notebook 7) with a
random token and ``expose_app_in_browser`` (``window.jupyterapp``), Lab's windowing setting
(every cell in the DOM); it is a `Lab`, so lab_notebook.py's helpers drive it, with
`Notebook7.notebook_url` opening ``/notebooks/NAME``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.browser.lab import (
    NOTEBOOKS,
    START_TIMEOUT,
    USER_SETTINGS,
    Lab,
    LabStartError,
    free_port,
    isolated_env,
    log_tail,
    stop_lab,
    write_user_settings,
)

#: Lab's user settings that Notebook 7 also has (every cell in the DOM); Lab's notification
#: plugin is not in Notebook 7
NOTEBOOK7_SETTINGS = {k: v for k, v in USER_SETTINGS.items() if k.endswith(":tracker")}
ROOT_FLAG = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


@dataclass
class Voila:
    """A running Voila server."""

    url: str  # http://127.0.0.1:PORT
    root: Path
    home: Path
    log_path: Path
    process: subprocess.Popen

    def render_url(self, name: str) -> str:
        return f"{self.url}/voila/render/{name}"

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)


class Notebook7(Lab):
    """A running Notebook 7 server (a jupyter_server app like Lab: same API, same token)."""

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/notebooks/{name}?token={self.token}"


def voila_command(port: int, root: Path) -> list[str]:
    return [sys.executable, "-m", "voila", str(root), "--no-browser", "--Voila.ip=127.0.0.1",
            f"--Voila.port={port}", "--Voila.port_retries=0", "--Voila.auto_token=False",
            "--VoilaConfiguration.show_tracebacks=True"]


def notebook7_command(port: int, token: str, root: Path, home: Path) -> list[str]:
    return [sys.executable, "-m", "notebook", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            f"--JupyterNotebookApp.user_settings_dir={home / 'settings'}",
            f"--JupyterNotebookApp.workspaces_dir={home / 'workspaces'}", *ROOT_FLAG]


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(server: Any, probe: str, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LabStartError(f"{what} exited with code {server.process.returncode} before "
                                f"answering {probe}. Log tail:\n{server.log_tail()}")
        if _get_ok(server.url + probe):
            return
        time.sleep(0.2)  # polling interval, not a wait for a condition
    raise LabStartError(f"{what} did not answer {probe} within {timeout:.0f} s. Log tail:\n"
                        f"{server.log_tail()}")


@contextlib.contextmanager
def _running(what: str, probe: Callable[[Any], str],
             start: Callable[[Path, Path, Path], Any], notebooks: Path = NOTEBOOKS,
             settings: dict[str, dict[str, Any]] | None = None, attempts: int = 3) -> Iterator[Any]:
    """Copy ``notebooks``, then ``start(root, home, log_path)`` until one comes up on its port."""
    with tempfile.TemporaryDirectory(prefix=f"mechscope-{what.split()[0]}-") as tmp:
        home = Path(tmp)
        root = home / "notebooks"
        shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        write_user_settings(home / "settings", settings or {})
        error: LabStartError | None = None
        for attempt in range(attempts):
            server = start(root, home, home / f"server-{attempt}.log")
            try:
                _wait(server, probe(server), what)
            except LabStartError as exc:
                stop_lab(server)
                error = exc
                if "address already in use" in server.log_tail().lower():
                    continue  # the free port was taken before the server bound it: retry
                raise
            try:
                yield server
            finally:
                stop_lab(server)
            return
        assert error is not None
        raise error


def _popen(cmd: list[str], root: Path, home: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=root, env=isolated_env(home), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def running_voila(notebooks: Path = NOTEBOOKS) -> Iterator[Voila]:
    """Voila on a copy of ``notebooks`` (its tree at ``/``); stopped with its kernels on exit."""
    def start(root: Path, home: Path, log_path: Path) -> Voila:
        port = free_port()
        return Voila(f"http://127.0.0.1:{port}", root, home, log_path,
                     _popen(voila_command(port, root), root, home, log_path))

    with _running("voila", lambda s: "/", start, notebooks) as server:
        yield server


@contextlib.contextmanager
def running_notebook7(notebooks: Path = NOTEBOOKS) -> Iterator[Notebook7]:
    """Notebook 7 on a copy of ``notebooks``; stopped with its kernels on exit."""
    def start(root: Path, home: Path, log_path: Path) -> Notebook7:
        port, token = free_port(), secrets.token_hex(24)
        proc = _popen(notebook7_command(port, token, root, home), root, home, log_path)
        return Notebook7(f"http://127.0.0.1:{port}", token, root, home, log_path, proc)

    with _running("jupyter notebook", lambda s: f"/api/status?token={s.token}", start,
                  notebooks, NOTEBOOK7_SETTINGS) as server:
        yield server


# ---- what the Voila and Notebook 7 tests check on each mechscope widget --------------------

MODEL_NOT_FOUND = ("model not found", "Error displaying widget")


def page_text_errors(page: Any) -> list[str]:
    """The widget-error phrases found in the page's text (every frame's body)."""
    text = page.evaluate("() => document.body.innerText")
    return [phrase for phrase in MODEL_NOT_FOUND if phrase.lower() in text.lower()]


def drawn_canvas(root: Any) -> dict[str, int]:
    """The widget's main canvas, once visible: its size, distinct colours, transparent pixels."""
    from tests.browser.test_lab_tour import CANVAS_STATS

    canvas = root.locator("canvas.ms-canvas").first
    canvas.wait_for(state="visible", timeout=30_000)
    canvas.scroll_into_view_if_needed()
    return canvas.evaluate(CANVAS_STATS)


def hover_readouts(page: Any, root: Any) -> list[tuple[str, str, str]]:
    """Hover two cells of the widget's grid (first row and column, last row and column): for
    each, (row label, column label, tooltip text), read once the tooltip shows."""
    rows = root.locator(".ms-rowlabels > div").all_text_contents()
    cols = root.locator(".ms-collabels > div").all_text_contents()
    assert rows and cols, (rows, cols)
    canvas = root.locator("canvas.ms-canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tip = root.locator(".ms-tooltip")
    out = []
    for r, c in ((0, 0), (len(rows) - 1, len(cols) - 1)):
        page.mouse.move(box["x"] + (c + 0.5) * box["width"] / len(cols),
                        box["y"] + (r + 0.5) * box["height"] / len(rows))
        tip.wait_for(state="visible", timeout=5_000)
        out.append((rows[r], cols[c], tip.text_content()))
        page.mouse.move(0, 0)
        tip.wait_for(state="hidden", timeout=5_000)
    return out


def check_widget(page: Any, root: Any, where: str) -> str:
    """A drawn canvas (opaque, >= 8 colours) and a hover readout that follows the pointer (each
    tooltip names its cell's row and column); returns a one-line summary."""
    stats = drawn_canvas(root)
    assert stats["width"] > 0 and stats["height"] > 0, (where, stats)
    assert stats["colours"] >= 8, f"{where}: canvas blank or flat: {stats}"
    readouts = hover_readouts(page, root)
    for row, col, text in readouts:
        head = text.split("\n")[0]
        assert row in head and col.strip() in head, (where, row, col, text)
    assert readouts[0][2] != readouts[1][2], f"{where}: the hover readout did not change: {readouts}"
    return f"{where}: {stats['width']}x{stats['height']} px, {stats['colours']} colours; hover {readouts[1][2]!r}"
