"""`TrainingMonitor`'s offline snapshot in headless Chromium, network cut: the four charts draw
one line per seed in the seed's colour where the Python numbers put it, hover shows the nearest
point's values (equal to the history), and a hostile title stays text. Screenshot:
build/screenshots/sae_training.png."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mechscope.widgets.sae_training import TrainingMonitor
from tests.browser.offline_page import assert_clean, canvas_pixel, offline_browser
from tests.hostile import CATALOGUE
from tests.hostile_sae_training import make

pytestmark = pytest.mark.browser

LEFT, TOP, PW, PH = 48, 8, 280 - 58, 150 - 40  # the plot box of every chart (sae_training.ts)
COLOURS = [(0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18)]  # scatter.ts CATEGORY_PALETTE[0], [1]


def synthetic() -> TrainingMonitor:
    steps = np.arange(1, 41, dtype=np.float64)
    hist = {"tokens": np.stack([steps * 100, steps * 100]),
            "loss": np.stack([10 / steps, 20 / steps]),
            "l0": np.stack([np.full(40, 4.0), np.full(40, 8.0)]),
            "fvu": np.stack([1 / np.sqrt(steps), 0.5 / np.sqrt(steps)]),
            "dead_fraction": np.stack([np.linspace(0, 0.5, 40), np.zeros(40)])}
    return TrainingMonitor.from_history((0, 5), hist, title="curves")


def to_px(x, y, xlo, xhi, ylo, yhi):
    return LEFT + (x - xlo) / (xhi - xlo) * PW, TOP + (yhi - y) / (yhi - ylo) * PH


def near(rgba, rgb, tol=40):
    return all(abs(int(a) - b) <= tol for a, b in zip(rgba[:3], rgb, strict=False)) and rgba[3] > 150


def test_curves_drawn_and_hover_reads_the_history():
    w = synthetic()
    with offline_browser() as open_page:
        pg = open_page(w, "sae_training")
        # L0: seed 0 flat at 4, seed 1 flat at 8; y range [4 - 0.2, 8 + 0.2] (5% pad), x [100, 4000]
        sel = "canvas[data-curve='l0']"
        for value, colour in ((4.0, COLOURS[0]), (8.0, COLOURS[1])):
            px, py = to_px(2000, value, 100, 4000, 3.8, 8.2)
            assert near(canvas_pixel(pg, sel, px, py), colour), (value, canvas_pixel(pg, sel, px, py))
        px, py = to_px(2000, 6.0, 100, 4000, 3.8, 8.2)
        assert canvas_pixel(pg, sel, px, py)[3] < 50  # nothing between the lines
        # hover seed 1's loss at step 10 (tokens 1000, loss 2.0)
        sel = "canvas[data-curve='loss']"
        box = pg.page.locator(sel).bounding_box()
        px, py = to_px(1000, 2.0, 100, 4000, 0.25 - 0.05 * 19.75, 20 + 0.05 * 19.75)
        pg.page.mouse.move(box["x"] + px, box["y"] + py)
        text = pg.page.locator(".ms-tooltip").inner_text()
        assert "seed 5" in text and "tokens 1000" in text
        assert float(re.search(r"loss ([-0-9.e+]+)", text).group(1)) == pytest.approx(2.0, rel=1e-3)
        pg.screenshot("sae_training_synthetic")
        assert_clean(pg)


def test_real_run_with_hostile_title_stays_text():
    title = "".join(CATALOGUE[:4])
    w = make(title)
    with offline_browser() as open_page:
        pg = open_page(w, "sae_training")
        assert pg.page.locator(".ms-saetrain .ms-title").inner_text() == title
        assert pg.page.locator("canvas[data-curve]").count() == 4
        drawn = pg.page.evaluate("""() => Array.from(document.querySelectorAll('canvas[data-curve]')).map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2])) n++;
            return n; })""")
        assert all(n > 20 for n in drawn), drawn  # coloured line pixels in every chart
        pg.screenshot("sae_training")
        assert_clean(pg)
