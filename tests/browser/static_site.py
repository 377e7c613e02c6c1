"""Pages other tools render from a notebook (Sphinx + myst-nb, stock nbconvert), opened offline.

``open_static(context, path, widgets)`` (``context``: the ``chromium`` fixture) opens a page
from file:// with every request that is not file:, data: or blob: aborted and recorded
(`offline_page.cut_network`) and waits until that many mechscope snapshots have drawn;
``drawn_widgets(opened)`` checks each snapshot: not collapsed, its largest canvas painted, and
what a hover on that canvas does to the widget's hover readout (its ``.ms-tooltip``).
``remote_scripts`` lists the remote scripts a page's HTML refers to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.browser.offline_page import OfflinePage, cut_network

#: Snapshots that have drawn (the offline runtime sets data-ready once the widget rendered).
DRAWN = ".mechscope-snapshot[data-ready='1']"
# Share of non-transparent pixels of the widget's largest canvas (None without a sized canvas).
PAINTED = """(root) => {
  const c = [...root.querySelectorAll('canvas')].sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) painted++;
  return painted / (d.length / 4);
}"""
READOUT = """(root) => { const t = root.querySelector('.ms-tooltip');
  return t && getComputedStyle(t).display !== 'none' ? t.textContent : ''; }"""
#: <script src=...> of a page's HTML.
SCRIPT_SRCS = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"']", flags=re.I)


@dataclass
class DrawnWidget:
    kind: str  #: data-mechscope-widget (the bundle: heatmap, patching_map, ...)
    painted: float  #: share of painted pixels of its largest canvas
    before: str  #: hover readout before the pointer moved onto the canvas
    after: str  #: hover readout with the pointer on the canvas centre


def remote_scripts(page_html: str) -> list[str]:
    """The script URLs of ``page_html`` that are not local files."""
    return [s for s in SCRIPT_SRCS.findall(page_html) if re.match(r"^[a-z][a-z0-9+.-]*:|^//", s, re.I)]


def open_static(context: Any, path: Path, widgets: int, timeout_ms: int = 30_000) -> OfflinePage:
    """Open ``path`` offline; return once ``widgets`` mechscope snapshots have drawn."""
    opened = OfflinePage(context.new_page())
    cut_network(opened.page, opened)
    opened.page.goto(path.as_uri(), wait_until="load")
    if widgets:
        opened.page.wait_for_selector(f":nth-match({DRAWN}, {widgets})", timeout=timeout_ms)
    opened.page.wait_for_timeout(300)  # let a late request or error surface
    return opened


def drawn_widgets(opened: OfflinePage) -> list[DrawnWidget]:
    """Every mechscope snapshot on the page: checked drawn (height > 40 px, canvas > 2 %
    painted) and hovered at its largest canvas's centre."""
    found = []
    for number, widget in enumerate(opened.page.locator(".mechscope-snapshot").all(), 1):
        kind = widget.get_attribute("data-mechscope-widget") or "?"
        assert widget.get_attribute("data-ready") == "1", f"widget {number} ({kind}) never drew"
        widget.scroll_into_view_if_needed()
        box = widget.bounding_box()
        assert box is not None and box["height"] > 40, f"widget {number} ({kind}) collapsed"
        painted = widget.evaluate(PAINTED)
        assert painted is not None and painted > 0.02, f"widget {number} ({kind}) canvas blank: {painted}"
        opened.page.mouse.move(0, 0)
        before = widget.evaluate(READOUT)
        canvas = widget.evaluate_handle(
            "(root) => [...root.querySelectorAll('canvas')]"
            ".sort((a, b) => b.width * b.height - a.width * a.height)[0]").as_element()
        assert canvas is not None
        canvas.hover()
        opened.page.wait_for_timeout(150)
        after = widget.evaluate(READOUT)
        found.append(DrawnWidget(kind, painted, before, after))
    opened.page.mouse.move(0, 0)
    return found
