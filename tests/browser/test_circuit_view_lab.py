"""`Circuit.show(model, pairs)` live in JupyterLab: the tiny Llama's EAP-IG circuit drawn, a click
on a node runs the kernel's circuit ablator (an exact faithfulness rerun) and the readout shows
its value, equal to a separate ablator's answer and to the precomputed effect. Fixtures and the
Chromium setup are those of test_circuit_graph.py. Screenshot: build/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser.lab import Lab
from tests.browser.lab_notebook import ROUND_TRIP_MS, Notebook, open_widget
from tests.browser.offline_page import SCREENSHOTS, one_browser_fixtures
from tests.browser.test_circuit_graph import CANVAS, at, positions

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

browser, chromium, open_page = one_browser_fixtures()

LAB_CELLS = [
    f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
    "import mechscope\nfrom mechscope.circuits import edge_attribution\n"
    "from mechscope.circuits.view import circuit_ablator\nfrom mechscope.datasets import pairs\n"
    "model = mechscope.tiny_model('llama')\n"
    "data = pairs([{'clean': c, 'corrupt': k, 'answer': ' the', 'wrong': ' of'} for c, k in "
    "[('the cat sat on the', 'the dog sat on the'), ('a cat ran to', 'a dog ran to')]])\n"
    "scores = edge_attribution(model, data, steps=2, progress=False)\ncircuit = scores.circuit(n_edges=14)\n"
    "_ab = circuit_ablator(model, data, circuit)",
    "w = circuit.show(model, data, scores=scores, progress=False)\nw",
]


@pytest.fixture(scope="module")
def live(jupyter_lab: Lab, chromium: Any) -> Iterator[tuple[Notebook, Any]]:
    with open_widget(jupyter_lab, chromium, "lab-circuit-view.ipynb", LAB_CELLS, 2,
                     '.jp-OutputArea-output [data-ms-ready="1"] .ms-cg', CANVAS) as (nb, root, canvas):
        yield nb, root


def test_live_click_on_circuit_show_runs_the_circuit_ablator(live):
    nb, root = live
    assert nb.json("w.live") is True
    ids = nb.json("list(w.node_ids)")
    effects = np.array(nb.json("[float(x) for x in w.data.node_effect]"))
    heads = [k for k, n in enumerate(ids) if n.startswith("L") and "KV" not in n and "MLP" not in n]
    i = max(heads, key=lambda k: abs(effects[k]))
    at(nb.page, root.locator(CANVAS), positions(root)[i], click=True)
    nb.page.wait_for_selector(f'.jp-Notebook .ms-cg[data-state="done"][data-target="{i}"]', state="attached",
                              timeout=ROUND_TRIP_MS)
    value = float(root.get_attribute("data-value"))
    assert value == pytest.approx(nb.json(f"_ab([{ids[i]!r}])"), abs=1e-5)
    assert value == pytest.approx(effects[i], abs=1e-5)
    assert nb.json("w.answer['state']") == "done"
    assert "(live)" in root.locator(".ms-cg-detail").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(SCREENSHOTS / "lab-circuit-view.png"))
