"""ProjectionScatter's offline snapshot in headless Chromium, network shut off: each class's
points drawn in its palette colour where Python puts them, hover shows the point's class and text
(hostile text literal), click / shift-click / drag select and the token panel shows the selected
texts (coloured by their values), arrow keys move to the nearest point that way, and a 5,000-point
plot answers hovers through its bucket grid. Live in JupyterLab: a click reaches the kernel's
``w.selected`` and the kernel's selection redraws the panel. Screenshots go to build/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mechscope.analysis.directions import concept_directions
from mechscope.datasets.labelled import labelled_texts
from mechscope.widgets import decode_array
from mechscope.widgets.projection import ProjectionScatter
from tests.browser.lab import Lab
from tests.browser.lab_notebook import ROUND_TRIP_MS, Notebook, open_widget
from tests.browser.offline_page import (
    HOSTILE,
    SCREENSHOTS,
    assert_clean,
    canvas_pixel,
    one_browser_fixtures,
    visible_token,
)
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS
from tests.hostile_projection import make

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

#: js/lib/scatter.ts's CATEGORY_PALETTE, first three.
PALETTE = [(0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18), (0x54, 0xA2, 0x4B)]
CANVAS = "canvas.ms-ps-canvas"


browser, chromium, open_page = one_browser_fixtures()


def pixel_positions(pg, w: ProjectionScatter) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each point's CSS pixel inside the canvas, from its plot box (the same mapping as scatter.ts)."""
    plot = pg.page.evaluate(f"JSON.parse(document.querySelector({CANVAS!r}).dataset.plot)")
    x = decode_array(w.x).astype(np.float64)
    y = decode_array(w.y).astype(np.float64)
    px = plot["left"] + (x - plot["xlo"]) / (plot["xhi"] - plot["xlo"]) * plot["width"]
    py = plot["top"] + (plot["yhi"] - y) / (plot["yhi"] - plot["ylo"]) * plot["height"]
    return px, py, plot


def canvas_box(pg) -> dict:
    return pg.page.locator(CANVAS).bounding_box()


def move_to(pg, px: float, py: float) -> None:
    box = canvas_box(pg)
    pg.page.mouse.move(box["x"] + px, box["y"] + py)


def click_at(pg, px: float, py: float, shift: bool = False) -> None:
    box = canvas_box(pg)
    if shift:
        pg.page.keyboard.down("Shift")
    pg.page.mouse.click(box["x"] + px, box["y"] + py)
    if shift:
        pg.page.keyboard.up("Shift")


def isolated(px: np.ndarray, py: np.ndarray, radius: float = 7.0) -> list[int]:
    """Points with no other point within ``radius`` px (a hover there can only find them)."""
    d = (px[:, None] - px[None]) ** 2 + (py[:, None] - py[None]) ** 2
    np.fill_diagonal(d, np.inf)
    return [int(i) for i in np.flatnonzero(d.min(1) > radius ** 2)]


def class_pixels(pg) -> list[int]:
    """How many canvas pixels carry each of the first three palette colours (alpha 0.8)."""
    return pg.page.evaluate("""(pal) => { const c = document.querySelector('canvas.ms-ps-canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const n = pal.map(() => 0);
      for (let k = 0; k < d.length; k += 4) pal.forEach((p, j) => { if (Math.abs(d[k] - p[0]) <= 2 &&
        Math.abs(d[k + 1] - p[1]) <= 2 && Math.abs(d[k + 2] - p[2]) <= 2 && Math.abs(d[k + 3] - 204) <= 2) n[j]++; });
      return n; }""", [list(p) for p in PALETTE])


def test_real_directions_drawn_clicked_dragged_and_keys(open_page, tiny_llama):
    data = labelled_texts(["animals", "code"], n_per_class=8, seed=3)
    cd = concept_directions(tiny_llama, data, layer=1, k=2)
    w = cd.show(title="concept directions")
    pg = open_page(w, "projection")
    px, py, plot = pixel_positions(pg, w)
    counts = class_pixels(pg)
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0, counts  # both classes drawn, no third colour
    assert pg.page.locator(".ms-ps .ms-legend .ms-ps-name").all_text_contents() == ["animals", "code"]
    assert pg.page.locator(".ms-ps-info").inner_text() == "click a point or drag a rectangle to select"

    # hover and click an isolated point: its tooltip, the selection and the token panel
    free = isolated(px, py)
    assert len(free) >= 3, free
    i, j = free[0], free[1]
    move_to(pg, px[i], py[i])
    tip = pg.page.locator(".ms-tooltip").inner_text()
    assert tip.startswith(f"#{i} · {cd.classes[cd.labels[i]]} · ") and tip.endswith(cd.texts[i]), tip
    click_at(pg, px[i], py[i])
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == str(i)
    assert pg.page.locator(".ms-ps-text").count() == 1
    assert "".join(pg.page.locator(".ms-ps-text .ms-tok").all_text_contents()) == cd.texts[i]
    assert pg.page.evaluate("document.activeElement.classList.contains('ms-ps-canvas')")  # a click focuses the plot
    click_at(pg, px[j], py[j], shift=True)
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == f"{i},{j}"
    assert pg.page.locator(".ms-ps-info").inner_text() == "2 selected"
    pg.screenshot("projection")

    # a drag selects exactly the points inside its rectangle (computed here from the data)
    x0, x1 = plot["left"] + plot["width"] * 0.5, plot["left"] + plot["width"] - 2
    y0, y1 = plot["top"] + 2, plot["top"] + plot["height"] * 0.9
    box = canvas_box(pg)
    pg.page.mouse.move(box["x"] + x0, box["y"] + y0)
    pg.page.mouse.down()
    pg.page.mouse.move(box["x"] + x1, box["y"] + y1, steps=4)
    pg.page.mouse.up()
    inside = [k for k in range(len(px)) if x0 <= px[k] <= x1 and y0 <= py[k] <= y1]
    assert inside, "the rectangle should hold some points"
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == ",".join(map(str, inside))
    assert pg.page.locator(".ms-ps-text").count() == len(inside)

    # a click on empty space clears; arrow keys walk to the nearest point that way
    click_at(pg, 2, 2)
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == ""
    pg.page.focus(CANVAS)
    pg.page.keyboard.press("ArrowRight")
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == "0"
    rightmost = int(np.argmax(px))
    for _ in range(len(px)):
        pg.page.keyboard.press("ArrowRight")
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == str(rightmost)
    pg.page.keyboard.press("ArrowLeft")
    k = int(pg.page.locator(".ms-ps").get_attribute("data-selected"))
    assert px[k] < px[rightmost]
    assert pg.page.locator(".ms-tooltip").inner_text().startswith(f"#{k} · ")
    assert_clean(pg)


def test_hostile_text_stays_literal(open_page):
    w = make(HOSTILE)
    pg = open_page(w, "projection_hostile")
    assert pg.page.locator(".ms-ps .ms-title").inner_text() == HOSTILE
    assert pg.page.locator(".ms-ps .ms-legend .ms-ps-name").all_text_contents() == [CATALOGUE[2], CATALOGUE[9]]
    # the selected texts (0 and 5, set from Python) token by token, coloured by their values, isolated
    spans = pg.page.locator(".ms-ps-text .ms-tok").evaluate_all("""(s) => s.map((x) => ({text: x.textContent,
      nan: x.classList.contains('ms-tok-nan'), bg: getComputedStyle(x).backgroundColor,
      bidi: getComputedStyle(x).unicodeBidi}))""")
    assert [s["text"] for s in spans] == [visible_token(t) for i in (0, 5) for t in w.text_tokens(i)]
    assert all(s["bidi"] == "isolate" for s in spans)
    assert [s["nan"] for s in spans] == [False, True, False, False, False, False]
    assert all(s["bg"].startswith("rgb(") for k, s in enumerate(spans) if k != 1)
    lab = decode_array(w.labels)
    assert pg.page.locator(".ms-ps-label .ms-ps-name").all_text_contents() == [w.classes[lab[i]] for i in (0, 5)]
    # hover: the tooltip shows the hostile class and text literally
    px, py, _ = pixel_positions(pg, w)
    for i in isolated(px, py)[:3]:
        move_to(pg, px[i], py[i])
        tip = pg.page.locator(".ms-tooltip")
        assert tip.locator(".ms-ps-tiptext").inner_text() == "".join(visible_token(t) for t in w.text_tokens(i))
        assert tip.locator(".ms-ps-name").inner_text() == w.classes[lab[i]]
    pg.page.locator(".ms-ps-text .ms-tok").nth(2).hover()  # value 2.0
    tok = visible_token(w.text_tokens(0)[2])
    assert pg.page.locator(".ms-tooltip").inner_text() == f"\"{tok}\" · {CATALOGUE[0]} = 2.000"
    for tag in FORBIDDEN_ELEMENTS:
        assert pg.page.evaluate(f"document.querySelectorAll('.mechscope-snapshot {tag}').length") == 0, tag
    pg.screenshot("projection_hostile")
    assert_clean(pg)


def test_five_thousand_points_hover_round_trip(open_page):
    rng = np.random.default_rng(1)
    n = 5000
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=n) + 2.0 * labels
    y = rng.normal(size=n) - labels
    texts = [f"point {i}: {CATALOGUE[i % len(CATALOGUE)]}" for i in range(n)]
    w = ProjectionScatter(x, y, labels, ["left", "middle", "right"], texts, x_name="x", y_name="y", title="5,000")
    pg = open_page(w, "projection_5000")
    counts = class_pixels(pg)
    assert all(c > 100 for c in counts), counts
    px, py, _ = pixel_positions(pg, w)
    free = isolated(px, py)
    assert len(free) >= 10, len(free)
    times = []
    for i in free[:10]:
        t0 = time.perf_counter()
        move_to(pg, px[i], py[i])
        text = pg.page.locator(".ms-tooltip .ms-ps-tiptext").inner_text()
        times.append(time.perf_counter() - t0)
        assert text == visible_token(texts[i]), (i, text)
        assert pg.page.locator(CANVAS).get_attribute("data-hover") == str(i)
    # 1,000 mousemoves dispatched in the page over the dense middle: the bucket grid answers each
    # one (tooltip included) in well under a frame, not a scan of the 5,000 points per move
    per_move = pg.page.evaluate("""() => { const c = document.querySelector('canvas.ms-ps-canvas');
      const r = c.getBoundingClientRect(); const t0 = performance.now();
      for (let k = 0; k < 1000; k++) c.dispatchEvent(new MouseEvent('mousemove', {bubbles: true,
        clientX: r.left + 60 + (k % 480), clientY: r.top + 150 + (k % 7) * 20}));
      return (performance.now() - t0) / 1000; }""")  # ms per move
    print(f"hover round trip (Playwright move -> tooltip read) median {np.median(times) * 1e3:.1f} ms; "
          f"in-page handler {per_move:.3f} ms per mousemove")
    assert np.median(times) < 0.5 and per_move < 4.0
    # a drag over most of the plot selects thousands: exactly the points inside, the first 200 listed
    plot = pg.page.evaluate(f"JSON.parse(document.querySelector({CANVAS!r}).dataset.plot)")
    x0, y0, x1, y1 = plot["left"] + 20, plot["top"] + 20, plot["left"] + 400, plot["top"] + 350
    box = canvas_box(pg)
    pg.page.mouse.move(box["x"] + x0, box["y"] + y0)
    pg.page.mouse.down()
    pg.page.mouse.move(box["x"] + x1, box["y"] + y1, steps=3)
    pg.page.mouse.up()
    inside = np.flatnonzero((px >= x0) & (px <= x1) & (py >= y0) & (py <= y1))
    assert len(inside) > 1000
    assert pg.page.locator(".ms-ps").get_attribute("data-selected") == ",".join(map(str, inside))
    assert pg.page.locator(".ms-ps-text").count() == 200
    assert pg.page.locator(".ms-ps-info").inner_text() == f"{len(inside)} selected (the first 200 shown)"
    chosen = set(inside.tolist())
    a = next(i for i in free if i in chosen)
    b = next(i for i in free if i not in chosen)
    # selected drawn at alpha 0.95, the rest faded to 0.15, each in its class's colour
    for i, alpha in ((a, 242), (b, 38)):
        rgba = canvas_pixel(pg, CANVAS, px[i], py[i])
        assert abs(rgba[3] - alpha) <= 2 and max(abs(g - e) for g, e in zip(rgba[:3], PALETTE[labels[i]], strict=True)) <= 4, (i, rgba)
    pg.screenshot("projection_5000")
    assert_clean(pg)


# ==== live in JupyterLab: the selection round trip with the kernel ===============================

LAB_CELLS = [
    "import mechscope\nfrom mechscope.analysis.directions import concept_directions\n"
    "from mechscope.datasets.labelled import labelled_texts\nfrom mechscope.widgets import decode_array\n"
    "model = mechscope.tiny_model(\"llama\")\n"
    "cd = concept_directions(model, labelled_texts([\"animals\", \"code\"], n_per_class=8, seed=3), layer=1, k=2)",
    "w = cd.show(title=\"live\")\nw",
]


@pytest.fixture(scope="module")
def live(jupyter_lab: Lab, chromium: Any) -> Iterator[tuple[Notebook, Any]]:
    with open_widget(jupyter_lab, chromium, "lab-projection.ipynb", LAB_CELLS, 2,
                     '.jp-OutputArea-output [data-ms-ready="1"] .ms-ps', CANVAS) as (nb, root, canvas):
        yield nb, root


def test_live_click_reaches_the_kernel_and_the_kernel_selects(live):
    nb, root = live
    canvas = root.locator(CANVAS)
    plot = canvas.evaluate("(c) => JSON.parse(c.dataset.plot)")
    xy = nb.json("[decode_array(w.x).tolist(), decode_array(w.y).tolist()]")
    x, y = np.array(xy[0]), np.array(xy[1])
    px = plot["left"] + (x - plot["xlo"]) / (plot["xhi"] - plot["xlo"]) * plot["width"]
    py = plot["top"] + (plot["yhi"] - y) / (plot["yhi"] - plot["ylo"]) * plot["height"]
    i = isolated(px, py)[0]
    box = canvas.bounding_box()
    page = nb.page
    page.mouse.move(box["x"] + px[i], box["y"] + py[i])
    assert root.locator(".ms-tooltip .ms-ps-tiptext").inner_text() == visible_token(nb.json(f"w.text({i})"))
    page.mouse.click(box["x"] + px[i], box["y"] + py[i])
    nb.wait_value("w.selected", [i])
    assert "".join(root.locator(".ms-ps-text .ms-tok").all_text_contents()) == visible_token(nb.json(f"w.text({i})"))
    nb.eval("setattr(w, 'selected', [3, 12])")
    nb.page.wait_for_selector('.jp-Notebook .ms-ps[data-selected="3,12"]', state="attached", timeout=ROUND_TRIP_MS)
    texts = [("".join(line.locator(".ms-tok").all_text_contents())) for line in root.locator(".ms-ps-text").all()]
    assert texts == [visible_token(t) for t in nb.json("w.selected_texts()")]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(SCREENSHOTS / "lab-projection.png"))


def test_dark_theme_axes_follow_the_ink(open_page):
    w = ProjectionScatter([0.0, 1.0, 2.0], [0.0, 2.0, 1.0], [0, 1, 1], ["a", "b"], ["p", "q", "r"])
    for dark, light_ink in ((False, False), (True, True)):
        pg = open_page(w, "projection_theme", dark)
        plot = pg.page.evaluate(f"JSON.parse(document.querySelector({CANVAS!r}).dataset.plot)")
        rgba = canvas_pixel(pg, CANVAS, plot["left"] + plot["width"] * 0.3, plot["top"] - 0.5)  # the frame's top
        assert rgba[3] > 100 and (min(rgba[:3]) > 180) == light_ink, (dark, rgba)
        assert_clean(pg)
    pg.screenshot("projection_dark")
