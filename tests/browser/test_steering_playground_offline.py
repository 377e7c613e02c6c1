"""SteeringPlayground in headless Chromium with the network cut.

1. The offline snapshot (``offline_html()``, no kernel): the slider snaps to the precomputed
   coefficients and moves with the keyboard, both panes show those generations token by token
   with differing tokens highlighted, the hostile prompt stays text, nothing is requested.
2. The live front end against the real Python side without a kernel: a page renders the
   same bundle with ``live`` on and a model whose ``send`` records messages; the test feeds
   them to the widget's message handler (real `generate` on the tiny llama) and copies
   ``results``/``status`` back, as a kernel's comm would. Checks the debounce (one request
   per settled position), request ids, "generating…", the cache (moving back is instant),
   and errors.

Screenshots: build/screenshots/steering_playground_*.png (light and dark).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import mechscope
from mechscope.interventions.steering import Generation, SteeringSweep, steering_playground
from mechscope.widgets._base import _script_json, bundle_path
from mechscope.widgets.steering_playground import SteeringPlayground
from tests.browser.offline_page import (
    HOSTILE,
    HOSTILE2,
    OfflinePage,
    assert_clean,
    offline_context,
    open_offline,
    page_html,
)

pytestmark = pytest.mark.browser

N = 8
ROOT = ".ms-steer"
SLIDER = ".ms-steer input.ms-steer-slider"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with offline_context() as opened:
        yield opened


def _open(browser, body: str, name: str, dark: bool) -> OfflinePage:
    """offline_page's recipe (file://, every other request aborted and recorded); it waits for
    the playground instead of a canvas."""
    context, tmp = browser
    return open_offline(context, tmp / f"{name}{'-dark' if dark else ''}.html", page_html(body, dark),
                        ready=f"[data-ready='1'] {ROOT}[data-state]")


def open_snapshot(browser, widget: SteeringPlayground, name: str, dark: bool = False) -> OfflinePage:
    snapshot = widget.offline_html()
    assert snapshot is not None
    return _open(browser, snapshot, name, dark)


def open_live(browser, widget: SteeringPlayground, name: str, dark: bool = False) -> OfflinePage:
    """The bundle rendered with the widget's live state; ``send`` records into window.__sent."""
    state = {k: v for k, v in widget.get_state().items() if not k.startswith("_")}
    body = (
        '<div id="w"></div>\n<script type="module">\n'
        f"const state = {_script_json(state)};\n"
        f"const src = {_script_json(bundle_path('steering_playground').read_text(encoding='utf-8'))};\n"
        "const listeners = {}; window.__sent = [];\n"
        "const model = { get: (k) => state[k], set: (k, v) => { state[k] = v; (listeners['change:' + k] || []).forEach((f) => f()); },\n"
        "  on: (e, f) => { (listeners[e] = listeners[e] || []).push(f); }, off: () => {}, save_changes: () => {},\n"
        "  send: (m) => { window.__sent.push(JSON.parse(JSON.stringify(m))); } };\n"
        "window.__model = model;\n"
        "const el = document.getElementById('w');\n"
        "import(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })))\n"
        "  .then((mod) => { mod.default.render({ model, el }); el.dataset.ready = '1'; });\n"
        "</script>"
    )
    return _open(browser, body, name, dark)


def pump(pg: OfflinePage, widget: SteeringPlayground) -> list[dict]:
    """Deliver the page's new messages to the widget, let it finish, copy its state back."""
    sent = pg.page.evaluate("window.__sent.splice(0)")
    for msg in sent:
        widget._on_msg(widget, msg, [])
    assert widget.wait(timeout=60)
    set_state(pg, "results", widget.results)
    set_state(pg, "status", widget.status)
    return sent


def set_state(pg: OfflinePage, key: str, value: Any) -> None:
    pg.page.evaluate("([k, v]) => window.__model.set(k, v)", [key, value])


def shown(toks) -> list[str]:
    """What the front end writes for each token: control characters as their pictures
    (U+2400 + code, DEL as U+2421) and a visible "↵" before each newline."""
    def one(tok: str) -> str:
        out = "".join("\u2421" if ch == "\x7f" else chr(0x2400 + ord(ch)) if ord(ch) < 0x20 and ch not in "\n\t"
                      else ch for ch in tok)
        return out.replace("\n", "↵\n")
    return [one(t) for t in toks]


def tokens(pg: OfflinePage, pane: str) -> list[str]:
    return pg.page.locator(f"{ROOT} .ms-steer-{pane} .ms-tok").all_text_contents()


def diff_positions(pg: OfflinePage, pane: str) -> list[int]:
    return [int(i) for i in pg.page.locator(f"{ROOT} .ms-steer-{pane} .ms-tok.ms-diff").evaluate_all(
        "(s) => s.map((x) => x.dataset.i)")]


def expected_diff(a: Generation, b: Generation) -> list[int]:
    return [j for j, t in enumerate(a.new_ids) if j >= len(b.new_ids) or b.new_ids[j] != t]


@pytest.fixture(scope="module")
def tiny():
    model = mechscope.tiny_model("llama")
    vec = mechscope.steering_vector(model, ["good great fine day", "happy joy"],
                                    ["bad awful sad", "The dog is terrible"], layer=1)
    return model, vec


# ---- offline snapshot -------------------------------------------------------------------------
def test_snapshot_snaps_to_precomputed_and_moves_with_the_keyboard(browser, tiny):
    model, vec = tiny
    w = steering_playground(model, HOSTILE, vec, max_new_tokens=N)  # -4, -2, 0, 2, 4
    gens = dict(zip(w.coefficients, w._sweep.generations, strict=True))
    pg = open_snapshot(browser, w, "steering_playground_tiny")
    root, slider = pg.page.locator(ROOT), pg.page.locator(SLIDER)
    assert root.get_attribute("data-live") == "0" and root.get_attribute("data-state") == "ready"
    assert (slider.get_attribute("min"), slider.get_attribute("max"), slider.get_attribute("step")) == ("0", "4", "1")
    assert "live regeneration needs a kernel" in pg.page.locator(f"{ROOT} .ms-steer-note").inner_text()
    assert "-4, -2, 0, +2, +4" in pg.page.locator(f"{ROOT} .ms-steer-note").inner_text()
    # the hostile prompt: in the read-only box and at the start of each pane, as text
    box = pg.page.locator(f"{ROOT} textarea")
    assert box.input_value() == HOSTILE and box.get_attribute("readonly") is not None
    assert pg.page.locator(f"{ROOT} .ms-steer-go").is_disabled()
    assert pg.page.locator(f"{ROOT} .ms-steer-ptext").all_text_contents() == [HOSTILE, HOSTILE]

    def check(c: float, readout: str) -> None:
        assert pg.page.locator(f"{ROOT} output").inner_text() == readout
        assert root.get_attribute("data-coefficient") == str(int(c))
        assert root.get_attribute("data-state") == "ready"
        assert tokens(pg, "base") == shown(gens[0.0].new_tokens)
        assert tokens(pg, "steered") == shown(gens[c].new_tokens)
        assert diff_positions(pg, "steered") == expected_diff(gens[c], gens[0.0])
        assert diff_positions(pg, "base") == expected_diff(gens[0.0], gens[c])
        assert pg.page.locator(f"{ROOT} .ms-steer-steered .ms-steer-head").inner_text() == f"steered (coefficient {readout})"
        assert slider.get_attribute("aria-valuetext") == f"coefficient {readout}"

    check(4.0, "+4")  # starts at the largest precomputed coefficient
    slider.focus()
    pg.page.keyboard.press("ArrowLeft")
    check(2.0, "+2")
    pg.page.keyboard.press("Home")
    check(-4.0, "-4")
    pg.page.keyboard.press("ArrowRight")
    check(-2.0, "-2")
    pg.page.keyboard.press("ArrowUp")
    check(0.0, "0")
    assert diff_positions(pg, "steered") == []
    assert "coefficient 0 is the unsteered text" in pg.page.locator(f"{ROOT} .ms-steer-legend").inner_text()
    pg.page.keyboard.press("End")
    check(4.0, "+4")
    time.sleep(0.4)  # longer than the debounce: still nothing sent anywhere
    pg.page.keyboard.press("ArrowLeft")
    pg.screenshot("steering_playground_tiny_light")
    assert_clean(pg)


def synthetic_sweep() -> SteeringSweep:
    """Readable tokens (a few hostile), one generation hitting end of text, for the screenshots."""
    vocab: dict[str, int] = {}

    def gen(c: float, toks: list[str], eos: bool = False) -> Generation:
        return Generation(prompt=HOSTILE2 + " The weather today is", text="".join(toks),
                          new_ids=tuple(vocab.setdefault(t, len(vocab)) for t in toks), new_tokens=tuple(toks),
                          coefficient=c, layer=3, stopped_at_eos=eos)

    base = [" mild", " with", " light", " rain", " in", " the", " north", ".", "\n", "Tomorrow", " will", " be", " dry", "."]
    return SteeringSweep(
        prompt=HOSTILE2 + " The weather today is", coefficients=(-4.0, 0.0, 4.0),
        generations=(
            gen(-4.0, [" awful", ",", " cold", " and", " grey", " in", " the", " north", ".", "\n", HOSTILE, " will", " be", " wet", "."]),
            gen(0.0, base),
            gen(4.0, [" wonderful", " with", " bright", " sun", " in", " the", " north", "!", "\n", "Tomorrow", " will", " be", " glorious"], eos=True),
        ),
        layer=3, vector_norm=12.5, model_name="toy",
    )


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_snapshot_highlights_differences_readably(browser, dark):
    sweep = synthetic_sweep()
    pg = open_snapshot(browser, SteeringPlayground(sweep), "steering_playground_synthetic", dark=dark)
    g = dict(zip(sweep.coefficients, sweep.generations, strict=True))
    assert tokens(pg, "steered") == shown(g[4.0].new_tokens)
    assert tokens(pg, "steered")[8] == "↵\n"  # a newline token is visible, and still breaks the line
    assert diff_positions(pg, "steered") == expected_diff(g[4.0], g[0.0]) == [0, 2, 3, 7, 12]
    assert pg.page.locator(f"{ROOT} .ms-steer-steered .ms-eos").inner_text() == "end of text"
    legend = pg.page.locator(f"{ROOT} .ms-steer-legend").inner_text()
    assert legend == "highlighted tokens differ from the other side: 5 of 14 new tokens"
    pg.page.focus(SLIDER)
    pg.page.keyboard.press("Home")
    assert tokens(pg, "steered")[10] == HOSTILE  # a hostile token is a span of text
    assert pg.page.locator(f"{ROOT} .ms-steer-ptext").first.inner_text() == sweep.prompt
    # readable in both themes: pane text contrasts with the pane, highlight is visible
    colors = pg.page.evaluate("""() => {
        const t = getComputedStyle(document.querySelector('.ms-steer-steered .ms-steer-text'));
        const p = getComputedStyle(document.querySelector('.ms-steer-steered'));
        const d = getComputedStyle(document.querySelector('.ms-steer-steered .ms-tok.ms-diff'));
        return [t.color, p.backgroundColor, d.backgroundColor]; }""")
    text_rgb = [int(x) for x in colors[0][4:-1].split(",")[:3]]
    pane_rgb = [int(x) for x in colors[1][colors[1].index("(") + 1:-1].split(",")[:3]]
    assert abs(sum(text_rgb) - sum(pane_rgb)) > 3 * 140, colors  # light on dark or dark on light
    assert colors[2] != "rgba(0, 0, 0, 0)"
    pg.page.keyboard.press("End")
    pg.screenshot(f"steering_playground_{'dark' if dark else 'light'}")
    assert_clean(pg)


# ---- live front end, Python answering in place of a kernel --------------------------------------
def test_live_debounces_requests_caches_and_reports_progress(browser, tiny):
    model, vec = tiny
    w = steering_playground(model, "The cat", vec, coefficients=[-2, 2], max_new_tokens=N)
    pg = open_live(browser, w, "steering_playground_live")
    root, slider = pg.page.locator(ROOT), pg.page.locator(SLIDER)
    assert root.get_attribute("data-live") == "1" and root.get_attribute("data-state") == "ready"
    assert (slider.get_attribute("min"), slider.get_attribute("max"), slider.get_attribute("step")) == ("-8", "8", "0.5")
    assert pg.page.evaluate("window.__sent") == []  # the starting position is precomputed: no request
    # JupyterLab must not take the controls' keys (arrows move cells, Shift+Enter runs one)
    for control in ("textarea", "input.ms-steer-slider", "button.ms-steer-go"):
        assert pg.page.get_attribute(f"{ROOT} {control}", "data-lm-suppress-shortcuts") == "true"

    # three quick key presses: the readout follows at once, one request after the debounce
    slider.focus()
    for _ in range(3):
        pg.page.keyboard.press("ArrowRight")
    assert pg.page.locator(f"{ROOT} output").inner_text() == "+3.5"
    assert root.get_attribute("data-state") == "pending"
    assert pg.page.locator(f"{ROOT} .ms-steer-steered .ms-steer-text.ms-stale").count() == 1
    pg.page.wait_for_function("window.__sent.length > 0", timeout=5000)
    time.sleep(0.3)
    assert root.get_attribute("data-state") == "generating"
    assert pg.page.locator(f"{ROOT} .ms-steer-status").inner_text() == "generating…"
    sent = pump(pg, w)
    assert sent == [{"kind": "generate", "id": 1, "prompt": "The cat", "coefficient": 3.5}]
    assert root.get_attribute("data-state") == "ready"
    ref = mechscope.generate(model, "The cat", steer=vec, coefficient=3.5, max_new_tokens=N)
    assert tokens(pg, "steered") == shown(ref.new_tokens)
    assert w.status["client_id"] == 1

    # moving back to a cached value is instant (before the debounce), and still tells Python
    pg.page.keyboard.press("ArrowLeft")
    pg.page.keyboard.press("ArrowLeft")
    pg.page.keyboard.press("ArrowLeft")  # +2: precomputed
    assert root.get_attribute("data-state") == "ready"
    assert tokens(pg, "steered") == shown(w.result("The cat", 2.0).new_tokens)
    pg.page.wait_for_function("window.__sent.length > 0", timeout=5000)
    assert pump(pg, w) == [{"kind": "generate", "id": 2, "prompt": "The cat", "coefficient": 2}]

    # a new prompt (Enter in the box; Shift+Enter is a newline): both panes regenerate
    box = pg.page.locator(f"{ROOT} textarea")
    box.fill(HOSTILE)
    box.press("Shift+Enter")
    assert box.input_value() == HOSTILE + "\n"
    box.fill(HOSTILE)
    box.press("Enter")
    pg.page.wait_for_function("window.__sent.length > 0", timeout=5000)
    assert root.get_attribute("data-state") == "generating"
    assert pump(pg, w) == [{"kind": "generate", "id": 3, "prompt": HOSTILE, "coefficient": 2}]
    assert root.get_attribute("data-state") == "ready"
    assert tokens(pg, "base") == shown(w.result(HOSTILE, 0).new_tokens)
    assert tokens(pg, "steered") == shown(w.result(HOSTILE, 2).new_tokens)
    assert pg.page.locator(f"{ROOT} .ms-steer-ptext").all_text_contents() == [HOSTILE, HOSTILE]

    # an error (prompt longer than the tiny model's context) is shown for that request
    box.fill("hello world " * 80)
    pg.page.locator(f"{ROOT} .ms-steer-go").click()
    pg.page.wait_for_function("window.__sent.length > 0", timeout=5000)
    pump(pg, w)
    assert root.get_attribute("data-state") == "error"
    assert pg.page.locator(f"{ROOT} .ms-steer-status").inner_text().startswith("error: ")
    # Python moving the widget (w.request) moves the slider and the prompt box
    w.request("The cat", -1.5)
    assert w.wait(timeout=60)
    for key in ("prompt", "coefficient", "results", "status"):
        set_state(pg, key, getattr(w, key))
    assert slider.input_value() == "-1.5" and box.input_value() == "The cat"
    assert root.get_attribute("data-state") == "ready"
    pg.screenshot("steering_playground_live_light")
    assert_clean(pg)
    w.close()


def test_live_requests_supersede_in_order(browser, tiny):
    model, vec = tiny
    w = steering_playground(model, "The cat", vec, coefficients=[2], max_new_tokens=N)
    pg = open_live(browser, w, "steering_playground_live_order", dark=True)
    slider = pg.page.locator(SLIDER)
    slider.focus()
    pg.page.keyboard.press("ArrowRight")  # 2.5
    pg.page.wait_for_function("window.__sent.length > 0", timeout=5000)
    pg.page.keyboard.press("ArrowRight")  # 3.0, after the first request went out
    pg.page.wait_for_function("window.__sent.length > 1", timeout=5000)
    sent = pg.page.evaluate("window.__sent")
    assert [(m["id"], m["coefficient"]) for m in sent] == [(1, 2.5), (2, 3)]
    # a reply for the older request arrives last: the view still shows the newer position
    pump(pg, w)
    older = {**w.status, "client_id": 1, "coefficient": 2.5, "seq": 1}
    set_state(pg, "status", older)
    assert pg.page.locator(f"{ROOT} output").inner_text() == "+3"
    steered = w.result("The cat", 3.0)
    assert tokens(pg, "steered") == shown(steered.new_tokens)
    assert pg.page.locator(ROOT).get_attribute("data-state") == "ready"
    pg.screenshot("steering_playground_live_dark")
    assert_clean(pg)
    w.close()
