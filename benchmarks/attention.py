"""Attention patterns benchmark: every head of the embedded SmolLM2-135M-Instruct (30 layers x
9 heads) on a ~256-token prompt, from `attention()` to the offline snapshot drawn in Chromium.

Not a test: numbers depend on the machine. CircuitsVis (the usual tool for this view) is not
installed here and is not installed by this script, so nothing is compared with it: only
mechscope's own costs are measured, one after the other, in one process:

1. ``attention()``: the patterns of all 270 heads read in one eager trace, plus the four scores;
   its patterns against Hugging Face's own ``output_attentions=True`` (eager) as a check.
2. Payload: float32 bytes of all patterns, the widget's one binary array as it would travel
   live unpooled (``max_cells`` large: uint8 codes), and the default widget's (pooled so its
   offline snapshot fits under `FALLBACK_MAX_BYTES`), plus the snapshot's HTML size.
3. Snapshot drawn: ``offline_html()`` written into a page, opened from file:// in headless
   Debian Chromium with every other request aborted, timed from navigation to the widget's
   ``data-ready`` with its full map canvas present (all 270 thumbnails painted by then), and
   one thumbnail click -> map redrawn. Screenshot: build/screenshots/bench_attention.png.

Usage: ``python benchmarks/attention.py [--repeats N]``; writes build/bench/attention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mechscope  # noqa: E402
from mechscope.analysis.attention import attention  # noqa: E402
from mechscope.widgets._base import FALLBACK_MAX_BYTES  # noqa: E402
from mechscope.widgets.attention import AttentionPatterns  # noqa: E402
from tests.browser.offline_page import SCREENSHOTS, offline_context, open_offline, page_html  # noqa: E402

WORDS = ("river stone music paper garden window silver engine forest candle market letter "
         "winter orange bridge planet doctor camera pencil castle rocket island mirror basket "
         "lemon tiger violin jacket ladder meadow anchor cotton harbor velvet").split()
TARGET_TOKENS = 256
READY = ".mechscope-snapshot[data-ready='1'] canvas.ms-attn-big"


def prompt(model: mechscope.Model, n_tokens: int = TARGET_TOKENS) -> str:
    """Random words, the second half repeating the first (so induction heads have work), cut
    to at most ``n_tokens`` tokens."""
    rng = random.Random(0)
    half: list[str] = [rng.choice(WORDS)]
    while len(model.str_tokens(" ".join(half * 2))) < n_tokens:
        half.append(rng.choice(WORDS))
    while len(model.str_tokens(" ".join(half * 2))) > n_tokens:
        half.pop()
    return " ".join(half * 2)


def hf_max_diff(model: mechscope.Model, text: str, patterns: np.ndarray) -> float:
    hf = model.hf
    before = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = hf(model.to_tokens(text), output_attentions=True)
    finally:
        hf.set_attn_implementation(before)
    ref = torch.stack([a[0] for a in out.attentions]).float().numpy()
    return float(np.abs(ref - patterns).max())


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def browser_times(html: str, repeats: int, screenshot: str = "bench_attention") -> dict[str, float]:
    """Open the snapshot ``html`` ``repeats`` times: open-to-drawn and click-to-map medians;
    the first page's screenshot goes to build/screenshots/``screenshot``.png."""
    draw, click = [], []
    with offline_context() as (context, tmp):
        for r in range(repeats):
            t0 = time.perf_counter()
            pg = open_offline(context, tmp / f"bench{r}.html", page_html(html), ready=READY)
            draw.append(time.perf_counter() - t0)
            assert pg.blocked == [] and pg.errors == [], (pg.blocked, pg.errors)
            painted = pg.page.evaluate("document.querySelectorAll('.ms-attn canvas.ms-attn-thumb').length")
            assert painted == 270, painted
            t0 = time.perf_counter()
            pg.page.locator(".ms-attn canvas.ms-attn-thumb[data-layer='3'][data-head='4']").click()
            pg.page.wait_for_selector(".ms-attn canvas.ms-attn-big[data-layer='3'][data-head='4']")
            click.append(time.perf_counter() - t0)
            if r == 0:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                pg.page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"), full_page=True)
            pg.page.close()
    return {"open_to_drawn_s": statistics.median(draw), "open_to_drawn_first_s": draw[0],
            "click_to_map_s": statistics.median(click)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = mechscope.load()
    text = prompt(model)
    n = len(model.str_tokens(text))
    t_att, att = timed(lambda: attention(model, text), args.repeats)
    assert att.patterns.shape == (30, 9, n, n), att.patterns.shape
    t_widget, widget = timed(lambda: AttentionPatterns(att), args.repeats)
    t_snap, html = timed(widget.offline_html, args.repeats)
    assert html is not None, "the snapshot was left out (over FALLBACK_MAX_BYTES)"
    unpooled = AttentionPatterns(att, max_cells=10**9)
    out = {
        "model": model.name, "layers": 30, "heads": 9, "tokens": n,
        "induction_top": att.top_heads("induction", 3),
        "max_abs_diff_vs_hf_output_attentions": hf_max_diff(model, text, att.patterns),
        "attention_s": t_att, "widget_s": t_widget, "offline_html_s": t_snap,
        "float32_bytes": int(att.patterns.size * 4),
        "live_unpooled_uint8_bytes": int(unpooled.patterns["data"].nbytes),
        "default_pooled_block": widget.pooled,
        "default_payload_bytes": int(widget.patterns["data"].nbytes),
        "default_payload_dtype": widget.patterns["dtype"],
        "snapshot_html_bytes": len(html.encode("utf-8")),
        "snapshot_limit_bytes": FALLBACK_MAX_BYTES,
        "unpooled_snapshot": unpooled.offline_html() is not None,
        **browser_times(html, args.repeats),
    }
    out["attention_to_drawn_s"] = t_att + t_widget + t_snap + out["open_to_drawn_s"]
    dest = REPO / "build" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "attention.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
