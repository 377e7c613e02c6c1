"""A stock Sphinx + myst-nb site with ``extensions = ["myst_nb", "mechscope.sphinx"]``, offline.

A tiny project is built in a temp dir by the real ``sphinx-build -b html`` (a subprocess):
``tour`` is the executed tour with its widget state stored (`executed_tour`; the project's
``nb_execution_mode = "off"``), ``executed`` a notebook myst-nb executes itself (its metadata
asks for ``"cache"``; a second build takes it from myst-nb's jupyter-cache): a Heatmap, a tqdm
progress bar and the hostile catalogue's Heatmap (`tests.hostile.widgets`). Headless Debian Chromium then opens each page from file:// with
every request that is not file:, data: or blob: aborted and recorded: every widget draws
(canvas painted), a hover on its canvas shows the hover readout, no request is made, no
script runs from a label. Screenshot: build/screenshots/sphinx-myst-tour.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.browser.offline_page import SCREENSHOTS
from tests.browser.published import TOUR_WIDGETS, executed_tour
from tests.browser.static_site import drawn_widgets, open_static, remote_scripts
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
CONF = 'extensions = ["myst_nb", "mechscope.sphinx"]\nnb_execution_mode = "off"\n'
INDEX = "# A myst-nb site\n\n```{toctree}\ntour\nexecuted\n```\n"
#: The hostile Heatmap's title (tests/hostile.py): it must show as text.
HOSTILE_TITLE = CATALOGUE[1]
PAGES = {"tour": TOUR_WIDGETS, "executed": 2}


def executed_notebook() -> nbformat.NotebookNode:
    """No outputs; myst-nb runs it ("cache" in its metadata: executed by the first build,
    taken from jupyter-cache by the next) in the project's folder."""
    nb = new_notebook(cells=[
        new_markdown_cell("# Executed by myst-nb"),
        new_code_cell(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nimport numpy as np\n"
                      "from mechscope.widgets import Heatmap\n"
                      "Heatmap(np.arange(12, dtype='float32').reshape(3, 4), title='made by myst-nb')"),
        new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass"),
        new_code_cell("from tests.hostile import widgets\nwidgets()['Heatmap']"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["mystnb"] = {"execution_mode": "cache"}
    return nb


@dataclass
class Built:
    html: Path  #: the HTML output folder
    root: Path  #: the build's folder (jupyter_execute/ holds myst-nb's executed notebooks)
    warnings: list[str]  #: WARNING / ERROR lines of the build
    seconds: float


def sphinx_build(root: Path, html: str) -> tuple[Built, str]:
    """``sphinx-build -b html -E`` of root/src into root/build/HTML (myst-nb keeps its
    jupyter-cache in root/build/.jupyter_cache): the result and the build's stdout."""
    src = root / "src"
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-d", str(root / f"doctrees-{html}"),
         str(src), str(root / "build" / html)],
        capture_output=True, text=True, timeout=600, cwd=root, env=env)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before, "the sources were modified"
    # Sphinx's own "WARNING: " lines (the kernel's "[IPKernelApp] WARNING | ..." is not one)
    warnings = [line for line in proc.stderr.splitlines() if re.search(r"\b(WARNING|ERROR): ", line)]
    print(f"sphinx-build: {seconds:.1f} s, warnings: {warnings}")
    return Built(root / "build" / html, root / "build", warnings, seconds), proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    tour = executed_tour()  # executed once and cached for every publishing route
    root = tmp_path_factory.mktemp("sphinx-myst")
    src = root / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF)
    (src / "index.md").write_text(INDEX)
    shutil.copy(tour, src / "tour.ipynb")
    nbformat.write(executed_notebook(), src / "executed.ipynb")
    result, stdout = sphinx_build(root, "html")
    assert "Executing notebook using local CWD" in stdout  # myst-nb ran "executed" itself
    return result


def page_checks(html: Path) -> None:
    """Each page: its snapshots, no placeholder, no widget view or state, no CDN script."""
    for name, count in PAGES.items():
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        assert remote_scripts(page) == [], f"{name}: CDN scripts left: {remote_scripts(page)}"
        assert "widget-state+json" not in page and "widget-view+json" not in page, name
        assert page.count('class="mechscope-snapshot"') == count, name
        assert "mechscope-placeholder" not in page, name
    assert "it/s]" not in (html / "executed.html").read_text(), "the progress bar was kept"


def test_build_stores_state_and_pages_carry_no_cdn_script(built: Built):
    assert not [w for w in built.warnings if "mechscope" in w], built.warnings
    assert built.warnings == [], "myst-nb / Sphinx warned: " + "\n".join(built.warnings)
    # myst-nb's own execution stored the widget state (nbclient's store_widget_state)
    executed = json.loads((built.root / "jupyter_execute" / "executed.ipynb").read_text())
    state = executed["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert sum(m["state"].get("_anywidget_id") == "mechscope.widgets.heatmap.Heatmap"
               for m in state.values()) == 2
    page_checks(built.html)


def test_a_rebuild_from_myst_nbs_cache_draws_the_same(built: Built):
    """"cache" mode: the second build takes the executed notebook from jupyter-cache, which
    keeps the widget state (its ``merge_match_into_notebook`` copies ``widgets`` metadata)."""
    again, stdout = sphinx_build(built.root.parent, "html-again")
    assert "Using cached notebook" in stdout and "Executing notebook" not in stdout
    assert again.warnings == [], again.warnings
    page_checks(again.html)


@pytest.mark.parametrize("name", list(PAGES))
def test_every_widget_draws_and_hovers_offline(built: Built, chromium: Any, name: str):
    opened = open_static(chromium, built.html / f"{name}.html", PAGES[name])
    page = opened.page
    try:
        found = drawn_widgets(opened)
        assert len(found) == PAGES[name], [w.kind for w in found]
        for number, widget in enumerate(found, 1):
            assert widget.after and widget.after != widget.before, \
                f"{name}: widget {number} ({widget.kind}): the hover readout did not change"
        if name == "tour":
            assert [w.kind for w in found] == ["heatmap", "heatmap", "patching_map", "heatmap"]
            page.locator(".mechscope-snapshot").first.scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "sphinx-myst-tour.png"), full_page=True)
        else:
            assert page.evaluate("() => typeof window.__pwned") == "undefined"
            forbidden = page.evaluate(
                "(tags) => tags.flatMap((t) => [...document.querySelectorAll("
                "'.mechscope-snapshot ' + t)].map((e) => e.outerHTML.slice(0, 120)))",
                list(FORBIDDEN_ELEMENTS))
            assert forbidden == [], f"elements made from text: {forbidden}"
            assert HOSTILE_TITLE in page.locator(".mechscope-snapshot").nth(1).text_content()
            page.screenshot(path=str(SCREENSHOTS / "sphinx-myst-executed.png"), full_page=True)
        assert opened.blocked == [], f"{name}: requests left the page: {opened.blocked}"
        assert opened.errors == [] and opened.dialogs == [], (opened.errors, opened.dialogs)
    finally:
        page.close()
