"""Render a widget's offline HTML snapshot in headless Chromium with the network shut off.

``offline_browser()`` yields a function ``open(widget, name, dark=False)`` that writes the
snapshot into a minimal HTML page under a temp dir, opens it from file://, aborts and records
every request that is not file:, blob: or data:, and waits until the widget has rendered.
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


def open_offline(context: Any, path: Path, page: str,
                 ready: str = ".mechscope-snapshot[data-ready='1'] canvas",
                 viewport: dict[str, int] | None = None) -> OfflinePage:
    """Write ``page`` to ``path`` and open it from file:// in ``context`` (a Playwright browser
    context): every request that is not file:, blob: or data: is aborted and recorded, dialogs
    and page errors are recorded; returns once ``ready`` matches."""
    path.write_text(page, encoding="utf-8")
    result = OfflinePage(context.new_page())
    if viewport is not None:
        result.page.set_viewport_size(viewport)

    def route(r: Any) -> None:
        if r.request.url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            result.blocked.append(r.request.url)
            r.abort()

    result.page.route("**/*", route)
    result.page.on("request", lambda req: None if req.url.startswith(LOCAL_SCHEMES)
                   else result.blocked.append(req.url))
    result.page.on("dialog", lambda d: (result.dialogs.append(d.message), d.dismiss()))
    result.page.on("pageerror", lambda e: result.errors.append(str(e)))
    result.page.goto(path.as_uri())
    result.page.wait_for_selector(ready, timeout=10_000)
    return result


@contextlib.contextmanager
def offline_browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian chromium with `make chromium`.")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1200, "height": 800},
        )
        try:
            def open_page(widget: Any, name: str, dark: bool = False) -> OfflinePage:
                snapshot = widget.offline_html()
                assert snapshot is not None, "widget produced no offline snapshot"
                path = Path(tmp) / f"{name}{'-dark' if dark else ''}.html"
                return open_offline(context, path, page_html(snapshot, dark))

            yield open_page
        finally:
            context.close()
