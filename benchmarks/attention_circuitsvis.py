"""Attention view of the embedded SmolLM2-135M (30 layers x 9 heads, ~256 tokens): mechscope's
`AttentionPatterns` against CircuitsVis ``attention_patterns`` in the same headless Chromium.

Not a test: numbers depend on the machine. CircuitsVis lives in its own venv (``build/cvenv``,
made by ``--setup`` with pinned versions: torch 2.13.0 CPU first, from the local wheel, then
circuitsvis 1.43.3 from PyPI) and runs in a subprocess of it, so mechscope's env stays clean.

How CircuitsVis renders offline: its wheel ships its React bundle
(``circuitsvis/dist/cdn/iife.js``, 1.3 MB). ``attention_patterns(...)`` returns a
``RenderedHTML`` holding two sources: ``cdn_src`` (``import ... from https://unpkg.com/...``)
and ``local_src`` (the bundle inlined in a ``<script type=module>``, followed by
``CircuitsVis.render(id, CircuitsVis.AttentionPatterns, props)`` where the props are
``json.dumps(tensor.tolist())``). Its ``_repr_html_`` picks ``local_src`` when
``urlopen("http://google.com")`` fails; this script takes ``local_src`` directly, so the page
needs no network (every non-file request is aborted and recorded, as for mechscope).

"Drawn" for CircuitsVis: its AttentionPatterns view has one big canvas and one 80 px canvas per
head, each painted by ``tf.browser.toPixels`` (which sets ``canvas.width`` to the token count
and calls ``putImageData`` in the same task), and one ``<button>`` per token: the clock stops
at the first animation frame where all ``heads + 1`` canvases are n x n and all n token buttons
exist; after the clock, each canvas is checked to hold non-white pixels. For mechscope: the
widget's ``data-ready`` with its map canvas present (all 270 thumbnails painted by then), as in
benchmarks/attention.py. Rows:

- ``cv_all``: one ``attention_patterns`` call with all 270 heads (the asked-for view).
- ``cv_per_layer``: 30 calls of 9 heads, as a notebook loop over layers displays them (each
  output inlines its own copy of the bundle), concatenated into one page.
- mechscope's default snapshot (pooled to blocks of 2 so it fits ``FALLBACK_MAX_BYTES``) and an
  unpooled snapshot made here with that limit lifted (same token resolution as CircuitsVis).

Usage: ``python benchmarks/attention_circuitsvis.py --setup`` once, then
``python benchmarks/attention_circuitsvis.py [--repeats N]``; writes
build/bench/attention_circuitsvis.json, screenshots into build/screenshots/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from attention import REPO, browser_times, prompt, timed  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

import mechscope  # noqa: E402
from mechscope.analysis.attention import attention  # noqa: E402
from mechscope.widgets import _base  # noqa: E402
from mechscope.widgets.attention import AttentionPatterns  # noqa: E402
from tests.browser.offline_page import SCREENSHOTS, cut_network, offline_context, page_html  # noqa: E402

CVENV = REPO / "build" / "cvenv"
CVPY = CVENV / "bin" / "python"
#: What ``--setup`` installs, in this order (torch first: an exact pin takes the local CPU
#: wheel; a bare ``torch`` requirement from circuitsvis would pull a multi-GB CUDA build).
PINS = (["torch==2.13.0"],
        ["circuitsvis==1.43.3", "numpy==2.4.6", "importlib-metadata==10.2.0", "lazy-importer==0.1.0"])
#: Run by the cvenv's Python: argv = tokens.json, patterns.npy (layers, heads, n, n), out dir.
CV_SCRIPT = r"""
import json, sys, time
import numpy as np
import circuitsvis
from circuitsvis.attention import attention_patterns
tokens = json.load(open(sys.argv[1], encoding="utf-8"))
p = np.load(sys.argv[2])
out = sys.argv[3]
t0 = time.perf_counter()
html_all = attention_patterns(tokens, p.reshape(-1, *p.shape[2:])).local_src
t_all = time.perf_counter() - t0
t0 = time.perf_counter()
# each in its own output div, as a notebook shows them (its "<div id=.../>" never closes)
per_layer = "\n".join("<div>" + attention_patterns(tokens, p[layer]).local_src + "</div></div>"
                      for layer in range(p.shape[0]))
t_layer = time.perf_counter() - t0
open(out + "/cv_all.html", "w", encoding="utf-8").write(html_all)
open(out + "/cv_per_layer.html", "w", encoding="utf-8").write(per_layer)
print(json.dumps({"version": circuitsvis.__version__, "cv_all_python_s": t_all, "cv_per_layer_python_s": t_layer}))
"""
#: True at the first frame where every canvas CircuitsVis made is painted (n x n) and every
#: token button exists.
CV_DRAWN = """([canvases, n, buttons]) => {
  const cs = Array.from(document.querySelectorAll('canvas'));
  return cs.length === canvases && cs.every(c => c.width === n && c.height === n)
    && document.querySelectorAll('div.tokens button').length === buttons; }"""
#: Canvases with no pixel darker than white-ish (the check that "drawn" meant painted).
CV_BLANK = """() => Array.from(document.querySelectorAll('canvas')).filter(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255 && d[i] + d[i + 1] + d[i + 2] < 600) return false;
  return true; }).length"""


def setup() -> None:
    """Build build/cvenv with the pinned CircuitsVis stack (about a minute; reuses the venv)."""
    if not CVPY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CVENV)], check=True)
    for pins in PINS:
        subprocess.run([str(CVPY), "-m", "pip", "install", *pins], check=True)
    subprocess.run([str(CVPY), "-c", "import circuitsvis.attention; print(circuitsvis.__version__)"], check=True)


def circuitsvis_html(tokens: list[str], patterns: np.ndarray, out: Path) -> dict[str, Any]:
    """Write cv_all.html and cv_per_layer.html under ``out`` from the cvenv; their timings."""
    if not CVPY.exists():
        raise SystemExit(f"{CVPY} is missing: run `python {Path(__file__).name} --setup` first.")
    (out / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
    np.save(out / "patterns.npy", patterns)
    done = subprocess.run([str(CVPY), "-c", CV_SCRIPT, str(out / "tokens.json"), str(out / "patterns.npy"),
                           str(out)], check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cv_browser_times(context: Any, path: Path, name: str, canvases: int, n: int, buttons: int,
                     repeats: int, timeout_s: float) -> dict[str, Any]:
    """Open the CircuitsVis page ``path`` ``repeats`` times; open-to-drawn medians, checks."""
    draw: list[float] = []
    blank = -1
    for r in range(repeats):
        page = context.new_page()
        rec = argparse.Namespace(blocked=[], errors=[], dialogs=[])
        cut_network(page, rec)
        console: list[str] = []
        page.on("console", lambda msg, console=console: console.append(msg.text))
        t0 = time.perf_counter()
        try:
            page.goto(path.as_uri(), timeout=timeout_s * 1000)
            page.wait_for_function(CV_DRAWN, arg=[canvases, n, buttons], polling=50, timeout=timeout_s * 1000)
        except PlaywrightTimeout:  # recorded, not hidden: how much was drawn by then
            painted = page.evaluate(f"Array.from(document.querySelectorAll('canvas')).filter(c => c.width === {n}).length")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"bench_attention_{name}.png"))
            page.close()
            return {f"{name}_open_to_drawn_s": None, f"{name}_not_drawn_after_s": timeout_s,
                    f"{name}_painted_canvases": painted, f"{name}_expected_canvases": canvases,
                    f"{name}_errors": rec.errors[:5],
                    f"{name}_webgl_warnings": sum("WebGL" in m for m in console)}
        draw.append(time.perf_counter() - t0)
        print(f"{name} open {r}: {draw[-1]:.2f} s", file=sys.stderr, flush=True)
        assert rec.blocked == [] and rec.errors == [], (rec.blocked, rec.errors)
        if r == 0:
            blank = page.evaluate(CV_BLANK)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"bench_attention_{name}.png"))
        page.close()
    return {f"{name}_open_to_drawn_s": statistics.median(draw), f"{name}_open_to_drawn_first_s": draw[0],
            f"{name}_open_to_drawn_all_s": draw, f"{name}_blank_canvases": blank}


def mechscope_side(att: Any, repeats: int) -> dict[str, Any]:
    """mechscope's payload bytes and open-to-drawn, default (pooled) and unpooled snapshots."""
    t_widget, widget = timed(lambda: AttentionPatterns(att), repeats)
    html = widget.offline_html()
    assert html is not None
    unpooled = AttentionPatterns(att, max_cells=10**9)
    with mock.patch.object(_base, "FALLBACK_MAX_BYTES", 10**9):  # lifted here only, to compare
        html_unpooled = unpooled.offline_html()
    assert html_unpooled is not None and unpooled.pooled == 1
    out = {"ms_widget_s": t_widget, "ms_default_pooled_block": widget.pooled,
           "ms_default_payload_bytes": int(widget.patterns["data"].nbytes),
           "ms_live_unpooled_payload_bytes": int(unpooled.patterns["data"].nbytes),
           "ms_snapshot_bytes": len(html.encode("utf-8")),
           "ms_unpooled_snapshot_bytes": len(html_unpooled.encode("utf-8"))}
    for key, page, shot in (("ms", html, "bench_attention"), ("ms_unpooled", html_unpooled, "bench_attention_unpooled")):
        times = browser_times(page, repeats, screenshot=shot)
        out[f"{key}_open_to_drawn_s"] = times["open_to_drawn_s"]
        out[f"{key}_open_to_drawn_first_s"] = times["open_to_drawn_first_s"]
        out[f"{key}_click_to_map_s"] = times["click_to_map_s"]
    return out


def circuitsvis_side(tokens: list[str], patterns: np.ndarray, repeats: int,
                     timeouts: dict[str, float]) -> dict[str, Any]:
    """CircuitsVis's HTML bytes (made in the cvenv) and open-to-drawn in the same Chromium."""
    layers, heads, n = patterns.shape[:3]
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, Any] = circuitsvis_html(tokens, patterns, Path(tmp))
        pages = {"cv_all": (layers * heads + 1, n), "cv_per_layer": (layers * (heads + 1), layers * n)}
        with offline_context() as (context, _):
            for name, (canvases, buttons) in pages.items():
                path = Path(tmp) / f"{name}.html"
                out[f"{name}_html_bytes"] = path.stat().st_size
                path.write_text(page_html(path.read_text(encoding="utf-8")), encoding="utf-8")
                out.update(cv_browser_times(context, path, name, canvases, n, buttons, repeats, timeouts[name]))
    return out


def table(r: dict[str, Any]) -> str:
    """The comparison as text: bytes and open-to-drawn, with ratios to mechscope's default."""
    rows = [(f"mechscope snapshot (default, pooled x{r['ms_default_pooled_block']})", "ms_snapshot_bytes", "ms"),
            ("mechscope snapshot (unpooled, limit lifted)", "ms_unpooled_snapshot_bytes", "ms_unpooled"),
            ("CircuitsVis attention_patterns, 270 heads", "cv_all_html_bytes", "cv_all"),
            ("CircuitsVis, 30 x attention_patterns(9 heads)", "cv_per_layer_html_bytes", "cv_per_layer")]
    base_b, base_t = r["ms_snapshot_bytes"], r["ms_open_to_drawn_s"]
    lines = [f"{'page':48} {'HTML MB':>9} {'x':>6} {'open->drawn s':>14} {'x':>6}"]
    for label, b, t in rows:
        secs = r[f"{t}_open_to_drawn_s"]
        shown = (f"{secs:14.2f} {secs / base_t:6.1f}" if secs is not None
                 else f"{'not drawn in ' + str(r[f'{t}_not_drawn_after_s']):>14} {'-':>6}")
        lines.append(f"{label:48} {r[b] / 1e6:9.1f} {r[b] / base_b:6.1f} {shown}")
    lines.append(f"mechscope live payload: {r['ms_default_payload_bytes'] / 1e6:.1f} MB default, "
                 f"{r['ms_live_unpooled_payload_bytes'] / 1e6:.1f} MB unpooled (binary uint8)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cv-repeats", type=int, default=None,
                        help="opens of each CircuitsVis page (default: --repeats; each takes minutes)")
    parser.add_argument("--timeout", type=float, default=900, help="longest wait for a CircuitsVis page (s)")
    parser.add_argument("--per-layer-timeout", type=float, default=900,
                        help="longest wait for the 30-output CircuitsVis page (s)")
    parser.add_argument("--setup", action="store_true", help="build build/cvenv (pinned) and exit")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    model = mechscope.load()
    text = prompt(model)
    att = attention(model, text)
    n = len(att.tokens)
    assert att.patterns.shape == (30, 9, n, n), att.patterns.shape
    out: dict[str, Any] = {"model": model.name, "layers": 30, "heads": 9, "tokens": n,
                           "float32_bytes": int(att.patterns.size * 4)}
    out.update(mechscope_side(att, args.repeats))
    cv_repeats = args.repeats if args.cv_repeats is None else args.cv_repeats
    out.update(circuitsvis_side(list(att.tokens), att.patterns.astype(np.float32), cv_repeats,
                                    {"cv_all": args.timeout, "cv_per_layer": args.per_layer_timeout}))
    dest = REPO / "build" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "attention_circuitsvis.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    print(table(out))


if __name__ == "__main__":
    main()
