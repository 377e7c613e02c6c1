"""FeatureDashboard's offline snapshot in headless Chromium, network shut off: the histogram's
bars are drawn where the counts say, logit bars and example tokens carry the Python numbers,
a click on a neighbour switches the feature, hovering a token reads out its activation, the
prompt mode lists a clicked token's features and a clicked feature's card, and hostile strings
stay text. Screenshots: build/screenshots/feature_dashboard.png, prompt_features.png."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import mechscope
from mechscope.sae import SAE
from mechscope.sae.dashboard import dashboards, features_on
from mechscope.widgets.feature_dashboard import FeatureDashboard
from tests.browser.lab import Lab
from tests.browser.lab_notebook import ROUND_TRIP_MS, Notebook, open_widget
from tests.browser.offline_page import (
    SCREENSHOTS,
    assert_clean,
    canvas_pixel,
    one_browser_fixtures,
    visible_token,
)
from tests.hostile import CATALOGUE, FORBIDDEN_ELEMENTS
from tests.hostile_feature_dashboard import make

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

TEXTS = ["the cat sat on the mat", "one two three four five", "a dog ran far away from home",
         "hello world again and again", "cats and dogs", "sat on a mat", "four five six seven"]
HIST_W, HIST_H = 320, 90


browser, chromium, open_page = one_browser_fixtures()


@pytest.fixture(scope="module")
def built():
    model = mechscope.tiny_model("llama")
    sae = SAE.random(model.d_model, 32, layer=1, model=model.name, seed=2)
    d = dashboards(sae, model, TEXTS, n_top=6, progress=False)
    return model, sae, d


def card_feature(pg) -> int:
    return int(pg.page.locator(".ms-fd-card").get_attribute("data-feature"))


def test_histogram_neighbours_hover(open_page, built):
    _, _, d = built
    f = int(np.argmax(d.density))
    w = FeatureDashboard(d, selected=f, title="feature dashboard")
    pg = open_page(w, "feature_dashboard")
    assert card_feature(pg) == f
    assert pg.page.locator(".ms-fd-item").count() == 32
    # histogram: the shown bin range, the peak bin's bar drawn blue, the empty top corner not
    counts = d.histogram[f]
    nz = np.nonzero(counts)[0]
    lo, hi = max(0, nz[0] - 2), min(49, nz[-1] + 2)
    canvas = pg.page.locator("canvas.ms-fd-hist")
    assert (int(canvas.get_attribute("data-lo")), int(canvas.get_attribute("data-hi"))) == (lo, hi)
    assert int(canvas.get_attribute("data-peak")) == counts.max()
    bw = HIST_W / (hi - lo + 1)
    peak_bin = int(np.argmax(counts))
    x = (peak_bin - lo) * bw + bw / 2
    assert canvas_pixel(pg, "canvas.ms-fd-hist", x, HIST_H - 14)[:3] == [76, 120, 168]
    empty = next(b for b in range(lo, hi + 1) if counts[b] == 0)
    assert canvas_pixel(pg, "canvas.ms-fd-hist", (empty - lo) * bw + bw / 2, HIST_H - 14)[3] == 0
    # logit effects: ten bars each side, the top token's text and value
    assert pg.page.locator(".ms-fd-pos .ms-fd-lrow").count() == 10
    first = pg.page.locator(".ms-fd-pos .ms-fd-ltok").first.inner_text()
    assert first == visible_token(d.vocab[d.logit_top_ids[f, 0]])
    assert float(pg.page.locator(".ms-fd-pos .ms-fd-lval").first.inner_text()) == pytest.approx(d.logit_top[f, 0], rel=1e-3)
    # top examples: one line per firing example, its value first; hover the peak token
    n_top = int((d.top_value[f] > 0).sum())
    assert pg.page.locator(".ms-fd-top .ms-fd-ex").count() == n_top
    vals = [float(v) for v in pg.page.locator(".ms-fd-top .ms-fd-val").all_inner_texts()]
    np.testing.assert_allclose(vals, d.top_value[f][:n_top], rtol=1e-3)
    peak = pg.page.locator(".ms-fd-top .ms-fd-ex").first.locator(".ms-fd-peak")
    assert peak.inner_text() == visible_token(d.vocab[d.top_tokens[f, 0, 5]])
    peak.hover()
    readout = pg.page.locator(".ms-fd-readout").inner_text()
    assert readout.startswith('"') and "activation" in readout
    assert float(readout.rsplit(" ", 1)[1]) == pytest.approx(float(np.float16(d.top_acts[f, 0, 5])), rel=1e-3)
    pg.screenshot("feature_dashboard")
    # a neighbour click switches the feature; the list follows
    nb = int(d.neighbours[f, 0])
    pg.page.locator(".ms-fd-nb").first.click()
    assert card_feature(pg) == nb
    assert pg.page.locator('.ms-fd-item[aria-current="true"]').get_attribute("data-feature") == str(nb)
    # search and sort
    pg.page.fill(".ms-fd input", "3")
    assert [int(x) for x in pg.page.locator(".ms-fd-item").evaluate_all("s => s.map(x => x.dataset.feature)")] == [3] + list(range(30, 32))
    pg.page.fill(".ms-fd input", "")
    pg.page.select_option(".ms-fd select", "density")
    order = [int(x) for x in pg.page.locator(".ms-fd-item").evaluate_all("s => s.map(x => x.dataset.feature)")]
    assert order[0] == f and list(d.density[order]) == sorted(d.density, reverse=True)
    assert_clean(pg)


def test_prompt_view(open_page, built):
    model, sae, d = built
    p = features_on(sae, model, "the cat sat on", top=4)
    w = p.show(d)
    pg = open_page(w, "prompt_features")
    toks = pg.page.locator(".ms-fd-prompt .ms-tok")
    assert toks.all_inner_texts() == [visible_token(t) for t in p.tokens]
    t = 3
    toks.nth(t).click()
    buttons = pg.page.locator(".ms-fd-pf")
    fired = [int(x) for x in p.features[t] if x >= 0]
    assert [int(b) for b in buttons.evaluate_all("s => s.map(x => x.dataset.feature)")] == fired
    vals = [float(s.split()[-1]) for s in buttons.all_inner_texts()]
    np.testing.assert_allclose(vals, p.values[t][:len(fired)], rtol=1e-3)
    buttons.nth(1).click()
    assert card_feature(pg) == fired[1]
    assert pg.page.locator(".ms-fd-hist").count() == 1
    pg.screenshot("prompt_features")
    assert_clean(pg)


def test_hostile_strings_stay_text(open_page):
    w = make(CATALOGUE[1])
    pg = open_page(w, "feature_dashboard_hostile", dark=True)
    assert pg.page.locator(".ms-title").inner_text() == CATALOGUE[1]
    pg.page.locator(".ms-fd-prompt .ms-tok").first.click()
    pg.page.locator(".ms-fd-pf").first.click()
    pg.page.locator(".ms-fd-top .ms-tok").first.hover()
    for tag in FORBIDDEN_ELEMENTS:
        assert pg.page.locator(f".ms-fd {tag}").count() == 0, tag
    bidi = pg.page.locator(".ms-fd .ms-tok").evaluate_all("s => s.map(x => getComputedStyle(x).unicodeBidi)")
    assert set(bidi) == {"isolate"}
    assert_clean(pg)


# ==== live in JupyterLab: clicks reach the kernel, the kernel's choice reaches the view ==========

LAB_CELLS = [
    "import mechscope\nfrom mechscope.sae import SAE\nfrom mechscope.sae.dashboard import dashboards, features_on\n"
    "model = mechscope.tiny_model(\"llama\")\n"
    "sae = SAE.random(model.d_model, 32, layer=1, model=model.name, seed=2)\n"
    f"d = dashboards(sae, model, {TEXTS!r}, n_top=6, progress=False)",
    "w = d.show(selected=4)\nw",
]


@pytest.fixture(scope="module")
def live(jupyter_lab: Lab, chromium: Any) -> Iterator[tuple[Notebook, Any]]:
    with open_widget(jupyter_lab, chromium, "lab-feature-dashboard.ipynb", LAB_CELLS, 2,
                     '.jp-OutputArea-output [data-ms-ready="1"] .ms-fd', "canvas.ms-fd-hist") as (nb, root, _):
        yield nb, root


def test_live_neighbour_click_and_kernel_select(live):
    nb, root = live
    assert root.locator(".ms-fd-card").get_attribute("data-feature") == "4"
    nb_feature = nb.json("int(d.neighbours[4, 0])")
    root.locator(".ms-fd-nb").first.click()
    nb.wait_value("w.selected", nb_feature)
    nb.eval("setattr(w, 'selected', 7)")
    nb.page.wait_for_selector('.jp-Notebook .ms-fd-card[data-feature="7"]', state="attached", timeout=ROUND_TRIP_MS)
    first = root.locator(".ms-fd-top .ms-fd-val").first.inner_text()
    assert float(first) == pytest.approx(nb.json("float(d.top_value[7, 0])"), rel=1e-3)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(SCREENSHOTS / "lab-feature-dashboard.png"))
