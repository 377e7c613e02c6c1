"""A real JupyterLab server for browser tests, isolated from the user's Jupyter set-up.

``running_lab(notebooks)`` starts ``jupyter lab`` from this interpreter's environment on
127.0.0.1 (a free port, a random token, ``port_retries=0``), with JUPYTER_CONFIG_DIR,
JUPYTER_DATA_DIR, JUPYTER_RUNTIME_DIR and IPYTHONDIR in a temp dir and a temp copy of the
notebooks as its root. The environment's own ``share/jupyter`` (``sys.prefix``) stays on the
Jupyter path, so the venv's ``python3`` kernel spec and the widget extensions still resolve.
The notebook's windowing mode is set to ``none`` in the isolated user settings so every cell
and output is in the DOM, however far down the notebook it is.

``chromium_context()`` opens headless Debian Chromium (Playwright, sync API) with a fresh
profile; it fails, never skips, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MISSING_CHROMIUM = f"{CHROMIUM} not found: install Debian chromium: make chromium"

#: User settings written into the isolated settings dir (plugin id -> settings).
USER_SETTINGS: dict[str, dict[str, Any]] = {
    # every cell attached to the DOM, off-screen ones included
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    # no "news / update" toast over the notebook
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class LabStartError(RuntimeError):
    pass


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str  # http://127.0.0.1:PORT (no trailing slash)
    token: str
    root: Path  # the server's root_dir (a temp copy of notebooks/)
    home: Path  # the isolated Jupyter dirs live under here
    log_path: Path
    process: subprocess.Popen

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> Any:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)


def log_tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_user_settings(settings_dir: Path, settings: dict[str, dict[str, Any]]) -> None:
    """Write ``{plugin id: settings}`` as JupyterLab user-settings files."""
    for plugin_id, values in settings.items():
        package, plugin = plugin_id.split(":")
        path = settings_dir / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2), encoding="utf-8")


def isolated_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PLATFORM_DIRS", "JUPYTERLAB_DIR",
                "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_TOKEN"):
        env.pop(var, None)
    env["JUPYTER_PREFER_ENV_PATH"] = "1"  # this venv's share/jupyter first (its kernel spec)
    env["PYTHONUNBUFFERED"] = "1"
    # the kernel inherits these: offline hub, and passive OpenMP threads on a shared 2-core box
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # the server's own venv bin first, so nothing resolves to another Python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def lab_command(port: int, token: str, root: Path, home: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def _wait_ready(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise LabStartError(f"jupyter lab exited with code {lab.process.returncode} before "
                                f"answering /api/status. Log tail:\n{lab.log_tail()}")
        try:
            status = lab.api("/api/status", timeout=2.0)
            if isinstance(status, dict) and "started" in status:
                return
            last = f"unexpected /api/status answer: {status!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.2)  # polling interval, not a wait for a condition
    raise LabStartError(f"jupyter lab did not answer /api/status within {timeout:.0f} s "
                        f"(last: {last}). Log tail:\n{lab.log_tail()}")


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_lab(lab: Lab, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the server (it shuts its kernels down itself), then kill what is left."""
    proc = lab.process
    children = _descendants(proc.pid)  # kernels run in their own process groups
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for child in children:  # only processes this server started
        with contextlib.suppress(Exception):
            if child.is_running():
                child.kill()


@contextlib.contextmanager
def running_lab(notebooks: Path = NOTEBOOKS, attempts: int = 3) -> Iterator[Lab]:
    """Start JupyterLab on a copy of ``notebooks``; stop it (and its kernels) on exit."""
    with tempfile.TemporaryDirectory(prefix="mechscope-lab-") as tmp:
        home = Path(tmp)
        root = home / "notebooks"
        shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        write_user_settings(home / "settings", USER_SETTINGS)
        env = isolated_env(home)
        lab: Lab | None = None
        error: LabStartError | None = None
        for attempt in range(attempts):
            port, token = free_port(), secrets.token_hex(24)
            log_path = home / f"lab-{attempt}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(lab_command(port, token, root, home), cwd=root, env=env,
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            candidate = Lab(f"http://127.0.0.1:{port}", token, root, home, log_path, proc)
            try:
                _wait_ready(candidate, START_TIMEOUT)
                lab = candidate
                break
            except LabStartError as exc:
                stop_lab(candidate)
                error = exc
                # another process may have taken the port between free_port() and bind: retry
                if "address already in use" not in candidate.log_tail().lower():
                    break
        if lab is None:
            assert error is not None
            raise error
        try:
            yield lab
        finally:
            stop_lab(lab)


@contextlib.contextmanager
def chromium_context(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A Playwright persistent Chromium context on a fresh profile (headless Debian chromium)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(MISSING_CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError("playwright is missing: pip install -e '.[dev]'") from exc

    with tempfile.TemporaryDirectory(prefix="mechscope-chromium-") as tmp, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport=viewport or {"width": 1400, "height": 1300},
        )
        try:
            yield context
        finally:
            context.close()
