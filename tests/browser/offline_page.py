"""Render a widget's offline HTML snapshot in headless Chromium with the network shut off.

``offline_browser()`` yields a function ``open(widget, name, dark=False)`` that writes the
snapshot into a minimal HTML page under a temp dir, opens it from file://, aborts and records
every request that is not file:, blob: or data:, and waits until the widget has rendered.
``cut_network`` is that recording for any page (published pages use it too), ``assert_clean``
the check every offline test ends with, ``canvas_pixel`` reads a canvas.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_SCHEMES = ("file:", "blob:", "data:")
#: Labels that would run script or make elements if a widget ever parsed text as HTML.
HOSTILE = "</script><img src=x onerror=alert(1)>"
HOSTILE2 = "<img src=x onerror=window.__pwned=1>"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

#: JupyterLab's theme variables, dark flavour (the light page relies on the CSS fallbacks).
DARK_VARS = """:root { --jp-layout-color0: #111111; --jp-layout-color1: #1e1e1e; --jp-layout-color2: #2b2b2b;
  --jp-ui-font-color0: #ffffff; --jp-ui-font-color1: #e0e0e0; --jp-ui-font-color2: #b0b0b0;
  --jp-border-color1: #555555; --jp-border-color2: #444444; --jp-brand-color1: #64b5f6; }
body { background: #111111; }"""


JS_SPACE = "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"


def visible_token(tok: str) -> str:
    """js/lib/tokens.ts visibleToken: whitespace and control characters made visible."""
    if tok == "":
        return "∅"
    shown = tok.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    shown = "".join(chr(0x2421 if c == "\x7f" else 0x2400 + ord(c)) if ord(c) < 32 or c == "\x7f" else c
                    for c in shown)  # other controls: their Control Pictures
    return shown.replace(" ", "␣") if shown.strip(JS_SPACE) == "" else shown


def page_html(snapshot: str, dark: bool = False) -> str:
    style = f"<style>{DARK_VARS}</style>" if dark else ""
    return (f'<!doctype html><html><head><meta charset="utf-8">{style}</head>'
            f'<body style="margin:16px">{snapshot}</body></html>')


@dataclass
class OfflinePage:
    page: Any
    blocked: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def cut_network(page: Any, record: Any) -> None:
    """Abort every request of ``page`` that is not file:, blob: or data:, and record it (once)
    in ``record.blocked``; page errors go to ``record.errors``, dialogs (dismissed) to
    ``record.dialogs``."""

    def route(r: Any) -> None:
        if r.request.url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            record.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda req: None if req.url.startswith(LOCAL_SCHEMES) or req.url in record.blocked
            else record.blocked.append(req.url))
    page.on("dialog", lambda d: (record.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: record.errors.append(str(e)))


def assert_clean(pg: Any, markup: str = "img") -> None:
    """No request left the machine, no script ran from data, nothing errored, and no element
    matching ``markup`` was made from a label."""
    assert pg.blocked == []
    assert pg.dialogs == []
    assert pg.errors == []
    assert pg.page.evaluate("window.__pwned") is None
    assert pg.page.evaluate(f"document.querySelectorAll({markup!r}).length") == 0


def canvas_pixel(pg: Any, selector: str, x: float, y: float) -> list[int]:
    """RGBA at CSS pixel (x, y) of the canvas ``selector``."""
    return pg.page.evaluate(
        """([sel, x, y]) => { const c = document.querySelector(sel);
             const s = c.width / c.clientWidth;
             return Array.from(c.getContext('2d').getImageData(Math.floor(x * s), Math.floor(y * s), 1, 1).data); }""",
        [selector, x, y],
    )


def open_offline(context: Any, path: Path, page: str,
                 ready: str = ".mechscope-snapshot[data-ready='1'] canvas",
                 viewport: dict[str, int] | None = None) -> OfflinePage:
    """Write ``page`` to ``path`` and open it from file:// in ``context`` (a Playwright browser
    context) with the network cut (`cut_network`); returns once ``ready`` matches."""
    path.write_text(page, encoding="utf-8")
    result = OfflinePage(context.new_page())
    if viewport is not None:
        result.page.set_viewport_size(viewport)
    cut_network(result.page, result)
    result.page.goto(path.as_uri())
    result.page.wait_for_selector(ready, timeout=10_000)
    return result


@contextlib.contextmanager
def offline_context() -> Iterator[tuple[Any, Path]]:
    """A headless Chromium context on a fresh profile, and a temp dir for its pages."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian chromium with `make chromium`.")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1200, "height": 800},
        )
        try:
            yield context, Path(tmp)
        finally:
            context.close()


@contextlib.contextmanager
def offline_browser() -> Iterator[Any]:
    with offline_context() as (context, tmp):
        def open_page(widget: Any, name: str, dark: bool = False) -> OfflinePage:
            snapshot = widget.offline_html()
            assert snapshot is not None, "widget produced no offline snapshot"
            path = tmp / f"{name}{'-dark' if dark else ''}.html"
            return open_offline(context, path, page_html(snapshot, dark))

        yield open_page


def one_browser_fixtures() -> tuple[Any, Any, Any]:
    """Module fixtures ``browser`` (one headless Chromium context + temp dir), ``chromium`` (that
    context, for a live JupyterLab page too: Playwright's sync API runs one instance per thread)
    and ``open_page(widget, name, dark=False)`` (the widget's offline snapshot, network cut).

    In a test module: ``browser, chromium, open_page = one_browser_fixtures()``.
    """
    import pytest

    @pytest.fixture(scope="module")
    def browser() -> Iterator[tuple[Any, Path]]:
        with offline_context() as pair:
            yield pair

    @pytest.fixture(scope="module")
    def chromium(browser: tuple[Any, Path]) -> Any:
        return browser[0]

    @pytest.fixture(scope="module")
    def open_page(browser: tuple[Any, Path]) -> Any:
        context, tmp = browser
        return lambda widget, name, dark=False: open_offline(context, tmp / f"{name}{'-dark' * dark}.html",
                                                             page_html(widget.offline_html(), dark))

    return browser, chromium, open_page
