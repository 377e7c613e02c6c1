"""Open a built docs page in headless Chromium with every non-file request blocked; screenshot it.

    .venv/bin/python docs/screenshot.py [build/docs/index.html] [build/screenshots/docs-index.png]

Prints each request that was blocked (none expected: the reference is offline) and each console
error, and exits 1 if there was any. Uses Debian's /usr/bin/chromium (``make chromium``), never a
downloaded browser.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(argv: list[str]) -> int:
    page_path = Path(argv[0] if argv else "build/docs/index.html").resolve()
    shot = Path(argv[1] if len(argv) > 1 else "build/screenshots/docs-index.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    blocked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})

        def route(r):  # noqa: ANN001
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    for url in blocked:
        print("blocked request:", url)
    for text in errors:
        print("console error:", text)
    print(f"{shot}: {len(blocked)} blocked request(s), {len(errors)} console error(s)")
    return 1 if blocked or errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
