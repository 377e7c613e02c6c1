"""Every widget with hostile text in JupyterLab, saved, reopened without its kernel, and exported.

One notebook shows every widget built by ``tests/hostile.py`` (tiny-model results with the
catalogue of hostile strings in every token, label, prompt, run name and title). In a real
JupyterLab + headless Chromium:

1. live: every widget renders; no dialog, no ``window.__pwned``, no element a hostile string
   spells out (script, img, svg, a, ...) inside any widget, the title shown literally in each;
   hovering every canvas changes none of that. Everything the Lab server and its kernel listen
   on is 127.0.0.1.
2. saved and reopened: the notebook is saved from Lab (``make setup`` / Binder turn on
   ipywidgets' ``saveState`` through ``mechscope.lab_settings``), the kernel is deleted, and the
   notebook is opened again in a fresh page whose fresh kernel never ran a cell: every widget
   shows the same pixels (each canvas, byte for byte) and the same text as when it was saved.
3. exported: the Lab-saved file goes through ``mechscope.export_html`` and opens from file://
   with every other request aborted: every snapshot drawn, the same no-script checks.

Screenshots: build/screenshots/lab-hostile-all.png, lab-reopened.png, export-hostile-all.png.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import mechscope
from tests.browser.lab import SCREENSHOTS, Lab
from tests.browser.lab_notebook import (
    KERNEL_IDLE,
    KERNEL_TIMEOUT_MS,
    PANEL,
    Notebook,
    open_notebook,
)
from tests.browser.offline_page import open_offline
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NAME = "lab-hostile-all.ipynb"
KINDS = ["Heatmap", "LogitLens", "PatchingMap", "PatchingMapDataset", "Selectivity", "SteeringPlayground", "Dynamics",
         "AttentionPatterns", "TokenText", "Superposition", "ProjectionScatter", "TrainingMonitor", "FeatureDashboard",
         "CircuitGraph"]
CELLS = [f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom tests.hostile import widgets\nws = widgets()"]
CELLS += [f"ws[{kind!r}]" for kind in KINDS]
TITLE = CATALOGUE[1]
READY = '[data-ms-ready="1"]'

# per widget (in notebook order): its text, canvases (size + full pixel hash), forbidden elements
SNAPSHOT = """([root, forbidden]) => [...document.querySelectorAll(root)].map((w) => ({
  text: w.textContent,
  forbidden: forbidden.flatMap((t) => [...w.querySelectorAll(t)].map((e) => e.outerHTML.slice(0, 120))),
  // elements holding a bidi control in their own text whose direction can leak to what follows
  bidiLeaks: [w, ...w.querySelectorAll('*')].filter((e) => !['TEXTAREA', 'INPUT', 'STYLE', 'SCRIPT'].includes(e.tagName)
      && [...e.childNodes].some((n) => n.nodeType === 3 && /[\u202a-\u202e\u2066-\u2069]/.test(n.data))
      && !['isolate', 'isolate-override', 'plaintext'].includes(getComputedStyle(e).unicodeBidi))
    .map((e) => e.tagName + '.' + e.className),
  canvases: [...w.querySelectorAll('canvas')].map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 0; for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) | 0;
    return [c.width, c.height, h];
  }),
}))"""


def widgets_state(page: Any, root: str) -> list[dict[str, Any]]:
    """SNAPSHOT once two reads 300 ms apart agree (drawing is done)."""
    last = None
    for _ in range(50):
        now = page.evaluate(SNAPSHOT, [root, list(FORBIDDEN_ELEMENTS)])
        if now == last and len(now) == len(KINDS):
            return now
        last = now
        page.wait_for_timeout(300)
    raise AssertionError(f"widgets never settled: {len(last or [])} of {len(KINDS)} rendered")


def assert_no_script_ran(page: Any, dialogs: list[str], states: list[dict[str, Any]]) -> None:
    assert dialogs == []
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    for kind, state in zip(KINDS, states, strict=True):
        assert state["forbidden"] == [], f"{kind}: elements made from text: {state['forbidden']}"
        assert state["bidiLeaks"] == [], f"{kind}: bidi controls not isolated in {state['bidiLeaks']}"
        assert TITLE in state["text"], f"{kind}: the hostile title is not shown as text"


def shoot_each(page: Any, root: str, prefix: str) -> None:
    for kind, widget in zip(KINDS, page.locator(root).all(), strict=True):
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(SCREENSHOTS / f"{prefix}-{kind}.png"))


def hover_every_canvas(page: Any, root: str) -> None:
    for canvas in page.locator(f"{root} canvas").all():
        box = canvas.bounding_box()
        if box and box["width"] > 20 and box["height"] > 20:
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
            page.wait_for_timeout(50)


def listeners(pid: int) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of ``pid`` and its descendants."""
    procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    out = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        out += [(proc.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


@pytest.fixture(scope="module")
def saved(jupyter_lab: Lab, chromium: Any) -> dict[str, Any]:
    """Run the notebook live in Lab, check it, save it from Lab; return what was seen."""
    root = f".jp-OutputArea-output {READY}"
    with open_notebook(jupyter_lab, chromium, NAME, CELLS) as nb:
        page = nb.page
        page.wait_for_selector(f":nth-match({root}, {len(KINDS)})", timeout=60_000)
        live = widgets_state(page, root)
        assert_no_script_ran(page, nb.dialogs, live)
        page.screenshot(path=str(SCREENSHOTS / "lab-hostile-all.png"), full_page=True)
        shoot_each(page, root, "lab-hostile")
        hover_every_canvas(page, root)
        assert page.locator(".ms-tooltip").count() >= 1
        after_hover = page.evaluate(SNAPSHOT, [root, list(FORBIDDEN_ELEMENTS)])
        for kind, state in zip(KINDS, after_hover, strict=True):
            assert state["forbidden"] == [], f"{kind} after hover: {state['forbidden']}"
        assert page.evaluate("() => window.__pwned") is None and nb.dialogs == []
        sockets = listeners(jupyter_lab.process.pid)
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        path = jupyter_lab.root / NAME
        deadline = time.monotonic() + 30
        while "widgets" not in json.loads(path.read_text(encoding="utf-8"))["metadata"]:
            assert time.monotonic() < deadline, "Lab did not save the widget state into the notebook"
            time.sleep(0.2)  # polling for the save to land on disk
        page.wait_for_timeout(500)  # let Lab finish writing the checkpoint
        page_errors = list(nb.page_errors)
    # open_notebook has deleted the kernel: the widget models now live only in the file
    return {"live": live, "sockets": sockets, "path": path, "page_errors": page_errors}


def test_live_widgets_keep_hostile_text_as_text(saved: dict[str, Any]) -> None:
    assert len(saved["live"]) == len(KINDS)
    for kind, state in zip(KINDS, saved["live"], strict=True):
        # SteeringPlayground is DOM text only: its prompt and tokens must read literally
        assert state["canvases"] or kind == "SteeringPlayground", f"{kind} drew no canvas"
    steering = saved["live"][KINDS.index("SteeringPlayground")]["text"]
    assert CATALOGUE[0] in steering and "".join(CATALOGUE[:2]) in steering
    assert saved["page_errors"] == []


def test_server_and_kernel_listen_on_loopback_only(saved: dict[str, Any]) -> None:
    sockets = saved["sockets"]
    assert sockets, "no listening sockets found for the Lab server"
    assert len({pid for pid, _, _ in sockets}) >= 2, f"expected the server and its kernel: {sockets}"
    assert {ip for _, ip, _ in sockets} == {"127.0.0.1"}, sockets


def test_saved_notebook_reopens_without_its_kernel_showing_the_same_widgets(
        saved: dict[str, Any], jupyter_lab: Lab, chromium: Any) -> None:
    stored = json.loads(saved["path"].read_text(encoding="utf-8"))
    state = stored["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert sum(m["model_name"] == "AnyModel" for m in state.values()) == len(KINDS)
    page = chromium.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(jupyter_lab.notebook_url(NAME))
        page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_TIMEOUT_MS)
        nb = Notebook(jupyter_lab, page, NAME)
        assert nb.eval("'ws' in globals()") == "False"  # a fresh kernel: nothing re-ran
        root = f".jp-OutputArea-output {READY}"
        page.wait_for_selector(f":nth-match({root}, {len(KINDS)})", timeout=60_000)
        reopened = widgets_state(page, root)
        page.screenshot(path=str(SCREENSHOTS / "lab-reopened.png"), full_page=True)
        shoot_each(page, root, "lab-reopened")
        assert_no_script_ran(page, dialogs, reopened)
        total = 0
        for kind, before, after in zip(KINDS, saved["live"], reopened, strict=True):
            assert after["text"] == before["text"], f"{kind}: text differs after reopening"
            assert after["canvases"] == before["canvases"], f"{kind}: pixels differ after reopening"
            total += len(after["canvases"])
        print(f"\nreopened: all {total} canvases identical byte for byte")
        assert "model not found" not in page.locator(".jp-Notebook").inner_text()
    finally:
        kernel_id = page.evaluate(f"() => {PANEL}?.sessionContext?.session?.kernel?.id ?? null")
        page.close()
        if kernel_id:
            jupyter_lab.api(f"/api/kernels/{kernel_id}", method="DELETE", timeout=20.0)


def test_exported_page_keeps_hostile_text_as_text(saved: dict[str, Any], chromium: Any,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "hostile.html"
    report = mechscope.export_html(saved["path"], out)
    assert len(report.widgets) == len(KINDS) and all(w.snapshot for w in report.widgets)
    assert report.remote_refs == ()
    html = out.read_text(encoding="utf-8")
    for entry in CATALOGUE:  # markup never reaches the page raw
        if "<" in entry:
            assert entry not in html, f"{entry!r} is inlined unescaped"
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and not any(ch in body for body in scripts for ch in "\u2028\u2029"), \
        "a raw U+2028/U+2029 inside an inline script (a syntax error in older JS engines)"
    pg = open_offline(chromium, tmp_path / "page.html", html,
                      ready=f":nth-match(.mechscope-snapshot[data-ready='1'], {len(KINDS)})")
    root = f".mechscope-snapshot{READY}"
    states = widgets_state(pg.page, root)
    assert_no_script_ran(pg.page, pg.dialogs, states)
    hover_every_canvas(pg.page, root)
    assert pg.page.evaluate("() => window.__pwned") is None and pg.dialogs == []
    assert pg.blocked == [] and pg.errors == []
    pg.screenshot("export-hostile-all")
    pg.page.close()


def test_stock_nbconvert_shows_the_snapshots_once_the_widget_state_is_stripped(
        saved: dict[str, Any], chromium: Any, tmp_path: Path) -> None:
    """What nbviewer does (stock nbconvert, lab template): with the state Lab stored it picks the
    widget view (blank offline, and anywidget views do not draw from CDN managers); after
    ``python -m mechscope.publish --strip-widget-state`` it shows every offline snapshot."""
    import shutil

    from nbconvert import HTMLExporter

    from mechscope.publish import main, strip_widget_state

    copy = tmp_path / "shared.ipynb"
    shutil.copy(saved["path"], copy)
    stock = HTMLExporter(template_name="lab").from_filename(str(copy))[0]
    view = re.compile(r'<script type="application/vnd\.jupyter\.widget-view\+json">')
    assert len(view.findall(stock)) == len(KINDS)
    assert main(["--strip-widget-state", str(copy)]) == 0
    assert "widgets" not in json.loads(copy.read_text(encoding="utf-8"))["metadata"]
    assert strip_widget_state(copy) == 0  # idempotent
    page = HTMLExporter(template_name="lab").from_filename(str(copy))[0]
    assert view.findall(page) == []
    pg = open_offline(chromium, tmp_path / "stock.html", page,
                      ready=f":nth-match(.mechscope-snapshot[data-ready='1'], {len(KINDS)})")
    root = f".mechscope-snapshot{READY}"
    states = widgets_state(pg.page, root)
    assert_no_script_ran(pg.page, pg.dialogs, states)
    assert all(url.startswith("https://") for url in pg.blocked)  # the template's CDN scripts only
    pg.page.close()
