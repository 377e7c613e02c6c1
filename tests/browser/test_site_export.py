"""`make html`'s site: notebooks published to one folder of offline pages plus index.html.

``mechscope.publish.publish_site`` executes a fast subset of notebooks/ (the tour and the NDIF
notebook, which must publish without a network) into a temp folder; headless Debian Chromium
then opens index.html and every page from file:// with every request that is not file:, data:
or blob: aborted and recorded. The index must link every page relatively; each page must load
with no request, no page error and no dialog, draw every widget from its snapshot (as many as
the index says), and link back to the index.

To check a full site built by ``make html`` instead (every notebook, a few minutes to build):
``MECHSCOPE_SITE=build/site .venv/bin/pytest tests/browser/test_site_export.py``.
Screenshots: build/screenshots/site-<page>.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from mechscope.publish import SiteReport, publish_site
from tests.browser.offline_page import ARGS, CHROMIUM, SCREENSHOTS, OfflinePage, cut_network
from tests.browser.static_site import PAINTED

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.timeout(900)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SUBSET = ["01_tour", "07_remote_ndif"]
PREBUILT = os.environ.get("MECHSCOPE_SITE")
PAGES = (sorted(p.stem for p in Path(PREBUILT).glob("*.html") if p.name != "index.html")
         if PREBUILT else SUBSET)

READY = ("() => [...document.querySelectorAll('[data-mechscope-widget]')]"
         ".every(e => e.dataset.ready === '1')")


@dataclass
class Site:
    folder: Path
    report: SiteReport | None
    context: Any

    def open(self, name: str) -> OfflinePage:
        """Open ``name`` from the site folder with the network cut; wait for its widgets."""
        page = self.context.new_page()
        opened = OfflinePage(page)
        cut_network(page, opened)
        page.goto((self.folder / name).as_uri(), wait_until="load")
        page.wait_for_function(READY, timeout=30_000)
        page.wait_for_timeout(300)  # let any late request or error surface
        return opened


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The subset published once (or the prebuilt site), and one Chromium for the module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian chromium: make chromium")
    from playwright.sync_api import sync_playwright

    if PREBUILT:
        folder, report = Path(PREBUILT).resolve(), None
        assert (folder / "index.html").is_file(), f"{folder} has no index.html: run make html"
    else:
        folder = tmp_path_factory.mktemp("site")
        report = publish_site([NOTEBOOKS / f"{name}.ipynb" for name in SUBSET], folder,
                              progress=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield Site(folder, report, browser.new_context(viewport={"width": 1200, "height": 900}))
        finally:
            browser.close()


@pytest.fixture(scope="module")
def index(site: Site) -> dict[str, Any]:
    """index.html opened offline: its links and widget counts, per page."""
    opened = site.open("index.html")
    rows = opened.page.eval_on_selector_all(
        "tbody tr", "rs => rs.map(r => ({href: r.querySelector('a').getAttribute('href'),"
        " title: r.querySelector('a').textContent, widgets: r.children[2].textContent}))")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    opened.page.screenshot(path=str(SCREENSHOTS / "site-index.png"), full_page=True)
    return {"opened": opened, "rows": rows,
            "scripts": opened.page.evaluate("document.scripts.length")}


def test_report_matches_the_folder(site: Site):
    if site.report is None:
        pytest.skip("prebuilt site: no report to compare")
    report = site.report
    assert report.index == site.folder / "index.html" and report.index.is_file()
    assert [p.report.output.name for p in report.pages] == [f"{n}.html" for n in SUBSET]
    assert [p.title for p in report.pages] == [
        "A tour of mechscope", "07 · Remote models on NDIF: the same code on a large model"]
    for page in report.pages:
        assert page.report.output.stat().st_size == page.report.size_bytes
        assert page.report.remote_refs == ()
        assert all(w.snapshot for w in page.report.widgets), page.report.lines()
    assert report.n_widgets >= 5
    assert report.lines()[0].startswith(f"wrote {report.index} and 2 page(s)")


def test_index_links_every_page_relatively(site: Site, index: dict[str, Any]):
    opened = index["opened"]
    assert opened.blocked == [] and opened.errors == [] and opened.dialogs == []
    assert index["scripts"] == 0, "the index needs no script"
    hrefs = [row["href"] for row in index["rows"]]
    assert [unquote(h) for h in hrefs] == [f"{name}.html" for name in PAGES]
    for href in hrefs:
        assert not urlparse(href).scheme and not href.startswith("/"), href
        assert (site.folder / unquote(href)).is_file(), href
    assert all(row["title"].strip() for row in index["rows"])


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_offline(site: Site, index: dict[str, Any], name: str):
    row = next(r for r in index["rows"] if unquote(r["href"]) == f"{name}.html")
    expected = int(re.match(r"\s*(\d+)", row["widgets"]).group(1))
    opened = site.open(f"{name}.html")
    page = opened.page
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"site-{name}.png"), full_page=True)
        assert opened.blocked == [], f"{name}: the page tried the network: {opened.blocked}"
        assert opened.errors == [], f"{name}: page errors: {opened.errors}"
        assert opened.dialogs == []
        assert not re.search(r"<script[^>]*\bsrc=", page.content())
        widgets = page.query_selector_all("[data-mechscope-widget]")
        assert len(widgets) == expected, f"{name}: {len(widgets)} widgets, the index says {expected}"
        assert not page.evaluate("document.body.innerText.includes('mechscope snapshot failed')")
        for number, widget in enumerate(widgets, 1):
            assert widget.bounding_box()["height"] > 40, f"{name}: widget {number} collapsed"
            painted = widget.evaluate(PAINTED)
            if painted is not None:  # the steering playground draws text, not a canvas
                assert painted > 0.02, f"{name}: widget {number} canvas blank ({painted:.3f})"
        assert page.title() == row["title"]
        nav = page.query_selector("nav.mechscope-site-nav a")
        assert nav is not None and nav.get_attribute("href") == "index.html"
        nav.click()
        page.wait_for_load_state("load")
        assert page.url.endswith("/index.html")
    finally:
        page.close()
