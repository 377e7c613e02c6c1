"""mkdocs + mkdocs-jupyter with the ``mechscope`` plugin: every widget draws offline.

A temp mkdocs project: ``docs/index.md``, ``docs/tour.ipynb`` (the executed tour, widget state
stored: `tests.browser.published.executed_tour`) and ``docs/small.ipynb`` (not executed: a
Heatmap, a tqdm bar and the hostile catalogue's LogitLens), with the one line a user adds,
plus mkdocs-jupyter's usual ``execute: true`` (the tour excepted)::

    plugins: [mechscope, mkdocs-jupyter: {execute: true, execute_ignore: [tour.ipynb]}]

``mkdocs build --strict`` runs as a subprocess, once per theme (mkdocs' own and Material; the
second build reuses the plugin's cached copies). Headless Debian Chromium opens each built page
from file:// with every request that is not file:, data: or blob: aborted and recorded: every
widget draws (painted canvas pixels), hovering its canvas changes its hover readout, no
hostile string runs or makes an element, and the only aborted requests are the theme's own
(listed in ``THEME_CDN``), none from mechscope. Build times: build/mkdocs-jupyter/
timings.json; screenshots: build/screenshots/mkdocs-jupyter-*.png.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.browser.offline_page import ARGS, CHROMIUM, SCREENSHOTS, OfflinePage, cut_network
from tests.browser.published import TOUR_WIDGETS, executed_tour
from tests.browser.static_site import PAINTED
from tests.browser.test_site_export import READY
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PLUGINS = "[mechscope, mkdocs-jupyter: {execute: true, execute_ignore: [tour.ipynb]}]"
THEMES = ["mkdocs", "material"]
#: page -> mechscope widgets it shows
PAGES = {"tour": TOUR_WIDGETS, "small": 2}
#: What each theme itself may ask the network for (aborted offline; nothing else may be asked).
#: mkdocs' theme links a light and a dark highlight.js style and enables one from the
#: browser's colour scheme, so which of the two Chromium fetches depends on the machine.
THEME_CDN = {
    "mkdocs": {"https://cdnjs.cloudflare.com/ajax/libs/highlight.js/11.8.0/styles/github.min.css",
               "https://cdnjs.cloudflare.com/ajax/libs/highlight.js/11.8.0/styles/github-dark.min.css",
               "https://cdnjs.cloudflare.com/ajax/libs/highlight.js/11.8.0/highlight.min.js"},
    "material": {"https://fonts.googleapis.com/css?family=Roboto:300,300i,400,400i,700,700i"
                 "%7CRoboto+Mono:400,400i,700,700i&display=fallback"},
}
#: Page errors of mkdocs' own theme offline: highlight.js never loaded, and its Bootstrap
#: scrollspy choking on heading ids that start with a digit. None come from mechscope.
THEME_ERRORS = {"mkdocs": (r"hljs is not defined", r"Failed to execute 'querySelector' on 'Element': '#\d",
                           r"Cannot read properties of undefined \(reading 'backdrop'\)"),
                "material": ()}
SMALL_CELLS = [
    "import numpy as np\nfrom mechscope.widgets import Heatmap\n"
    "Heatmap(np.arange(12, dtype='float32').reshape(3, 4), title='small heatmap')",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass",
    f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom tests.hostile import widgets\nwidgets()['LogitLens']",
]
# Per widget: its text, elements a hostile string spells out, and its hover readout's text.
WIDGET_TEXT = """([forbidden]) => [...document.querySelectorAll('[data-mechscope-widget]')].map((w) => ({
  text: w.textContent,
  forbidden: forbidden.flatMap((t) => [...w.querySelectorAll(t)].map((e) => e.outerHTML.slice(0, 120))),
}))"""
READOUT = ("(w) => [...w.querySelectorAll('.ms-tooltip')]"
           ".map((t) => t.checkVisibility() ? t.textContent : '').join('|')")


@dataclass
class Built:
    root: Path
    logs: dict[str, str]
    seconds: dict[str, float]
    sources: dict[str, str]
    browser: Any = None
    opened: dict[tuple[str, str], OfflinePage] = field(default_factory=dict)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def _project(root: Path) -> None:
    docs = root / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# mechscope on mkdocs\n\nThe [tour](tour.ipynb) and a "
                                   "[small notebook](small.ipynb).\n", encoding="utf-8")
    shutil.copy(executed_tour(), docs / "tour.ipynb")
    nb = new_notebook(cells=[new_markdown_cell("# Small\n\nA heatmap, a progress bar, a hostile widget."),
                             *map(new_code_cell, SMALL_CELLS)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, docs / "small.ipynb")
    for theme in THEMES:
        (root / f"{theme}.yml").write_text(
            f"site_name: mechscope on mkdocs-jupyter\ntheme: {theme}\nsite_dir: site-{theme}\n"
            f"docs_dir: docs\nplugins: {PLUGINS}\n", encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[Built]:
    """The project built once per theme, and one Chromium for the module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian chromium: make chromium")
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("mkdocs")
    _project(root)
    sources = _digests(root / "docs")
    logs, seconds = {}, {}
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    for theme in THEMES:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", f"{theme}.yml"],
                              cwd=root, env=env, capture_output=True, text=True, timeout=600)
        seconds[theme] = round(time.perf_counter() - start, 1)
        assert proc.returncode == 0, f"mkdocs build ({theme}) failed:\n{proc.stdout}\n{proc.stderr}"
        logs[theme] = proc.stdout + proc.stderr
    out = REPO / "build" / "mkdocs-jupyter"
    out.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(json.dumps({"mkdocs_build_seconds": seconds}, indent=1))
    print(f"mkdocs build seconds: {seconds}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield Built(root, logs, seconds, sources, browser.new_context(viewport={"width": 1200, "height": 900}))
        finally:
            browser.close()


def _open(built: Built, theme: str, name: str) -> OfflinePage:
    """The built page ``name`` opened offline (once), every widget ready."""
    if (theme, name) not in built.opened:
        page = built.browser.new_page()
        opened = OfflinePage(page)
        cut_network(page, opened)
        page.goto((built.root / f"site-{theme}" / name / "index.html").as_uri(), wait_until="load")
        page.wait_for_function(READY, timeout=30_000)
        page.wait_for_timeout(500)  # let any late request or error surface
        built.opened[theme, name] = opened
    return built.opened[theme, name]


def test_the_build_publishes_each_notebook_and_never_touches_a_source(built: Built):
    for log in built.logs.values():
        # the tour's bars are mechscope.progress bars: they end as a text line, nothing to drop
        assert re.search(r"mechscope: tour\.ipynb: 4 snapshot\(s\) made from stored widget state$", log,
                         flags=re.M), log
        assert "mechscope: small.ipynb: 2 snapshot(s) made from stored widget state; 1 progress bar" in log
        assert not re.search(r"^WARNING\s+-", log, flags=re.M), log  # mkdocs' own warnings (also --strict)
        # mkdocs-jupyter converts (or takes from its own cache) the copies, never re-running one
        rendered = re.findall(r"(?:Converting notebook \(execute=(\w+)\)|Cache hit): (\S+)", log)
        assert sorted(Path(path).name for _, path in rendered) == ["small.ipynb", "tour.ipynb"], rendered
        assert all(flag in ("", "False") and "/.cache/mechscope/" in path for flag, path in rendered)
    assert "mechscope: executing small.ipynb" in built.logs["mkdocs"]
    assert "executing" not in built.logs["material"]  # the second build reuses the cached copies
    assert _digests(built.root / "docs") == built.sources


@pytest.mark.parametrize("name", list(PAGES))
@pytest.mark.parametrize("theme", THEMES)
def test_every_widget_draws_offline_and_answers_hover(built: Built, theme: str, name: str):
    opened = _open(built, theme, name)
    page = opened.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if theme == "mkdocs" else f"-{theme}"
    page.screenshot(path=str(SCREENSHOTS / f"mkdocs-jupyter-{name}{suffix}.png"), full_page=True)
    assert set(opened.blocked) <= THEME_CDN[theme], f"{theme}/{name}: requests {opened.blocked}"
    stray = [e for e in opened.errors if not any(re.search(p, e) for p in THEME_ERRORS[theme])]
    assert stray == [], f"{theme}/{name}: page errors {opened.errors}"
    widgets = page.query_selector_all("[data-mechscope-widget]")
    assert len(widgets) == PAGES[name]
    assert page.query_selector_all(".mechscope-placeholder") == []
    assert "mechscope snapshot failed" not in page.inner_text("body")
    for number, widget in enumerate(widgets, 1):
        assert widget.bounding_box()["height"] > 40, f"{name}: widget {number} collapsed"
        assert widget.evaluate(PAINTED) > 0.02, f"{name}: widget {number} canvas blank"
        canvas = max(widget.query_selector_all("canvas"),
                     key=lambda c: c.bounding_box()["width"] * c.bounding_box()["height"])
        canvas.scroll_into_view_if_needed()
        page.mouse.move(1, 1)
        page.wait_for_timeout(100)
        before = widget.evaluate(READOUT)
        readouts = []
        for fx, fy in ((0.2, 0.2), (0.8, 0.8)):
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            page.wait_for_timeout(150)
            readouts.append(widget.evaluate(READOUT))
        assert readouts[0].strip("|") and readouts[0] != before, f"{name}: widget {number} no hover readout"
        assert readouts[1] != readouts[0], f"{name}: widget {number} readout did not follow the pointer"
    page.mouse.move(1, 1)


@pytest.mark.parametrize("theme", THEMES)
def test_hostile_text_stays_text(built: Built, theme: str):
    opened = _open(built, theme, "small")
    page = opened.page
    assert opened.dialogs == []
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    states = page.evaluate(WIDGET_TEXT, [list(FORBIDDEN_ELEMENTS)])
    assert [s["forbidden"] for s in states] == [[], []], "elements made from text"
    assert CATALOGUE[1] in states[1]["text"], "the hostile title is not shown as text"
    html = (built.root / f"site-{theme}" / "small" / "index.html").read_text(encoding="utf-8")
    for entry in CATALOGUE:  # markup never reaches the page raw (the theme's own comments aside)
        if "<" in entry and entry != "<!--":
            assert entry not in html, f"{entry!r} is inlined unescaped"
