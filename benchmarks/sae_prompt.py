"""Features of a prompt on the embedded SmolLM2-135M-Instruct with the shipped resid-15 dictionary
(2,048 TopK latents, k = 64): (1) the forward pass that reads the residual after block 15
(stopped there, as `mechscope.sae.features_on` runs it) and, for comparison, the whole forward
pass; (2) from those residual activations to the full per-token feature table (encode, the
``--top`` features of each token, the `PromptFeatures` that ``features_on`` returns, tokens
decoded; target < 200 ms), and its ``.to_pandas()``; (3) ``features_on`` end to end;
(4) with ``--widget``, the prompt-mode `FeatureDashboard` over the cached corpus dashboards
(`mechscope.sae.corpus_dashboards`, built first if not cached: ~10 min on 2 cores).

Medians over ``--repeats`` calls after one warm-up, for a short and a 128-token prompt. Step
(2)'s table is checked equal to what ``features_on`` returns. Not a test: numbers depend on the
machine and on what else runs on it.

Usage: ``python benchmarks/sae_prompt.py [--repeats 21] [--top 5] [--widget]``; writes
build/bench/sae_prompt.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mechscope  # noqa: E402
from mechscope.models.trace import save  # noqa: E402
from mechscope.sae import PromptFeatures, features_on  # noqa: E402

SHORT = "The Eiffel Tower is in the city of"
LONG = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
        "And God said, Let there be light: and there was light. And God saw the light, that it was good: and "
        "God divided the light from the darkness. And God called the light Day, and the darkness he called "
        "Night. And the evening and the morning were the first day. And God said, Let there be a firmament in "
        "the midst of the waters, and let it divide the waters from the waters.")


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(sae, model, prompt: str, ids: torch.Tensor, x: torch.Tensor, top: int) -> PromptFeatures:
    """What `features_on` does after its forward pass, from the residual ``x`` (1, tokens, d_model)."""
    with torch.no_grad():
        f = sae.encode(x[0].float())
    vals, idx = torch.topk(f, top, dim=1)
    fired = vals > 0
    return PromptFeatures(prompt=prompt, tokens=model.decode_tokens(ids),
                          features=torch.where(fired, idx, -1).numpy().astype(np.int32),
                          values=torch.where(fired, vals, 0).numpy().astype(np.float32),
                          d_sae=sae.cfg.d_sae, site=sae.cfg.site, layer=sae.cfg.layer)


def one_prompt(model, sae, prompt: str, top: int, repeats: int, dash) -> dict[str, float]:
    ids = model.to_tokens(prompt)
    ref = model.at(sae.cfg.site, sae.cfg.layer)

    def forward() -> torch.Tensor:
        with model.trace(ids) as tracer:
            x = save(ref.read().clone())
            tracer.stop()
        return x

    def full() -> torch.Tensor:
        with torch.no_grad():
            return model.hf(input_ids=ids).logits

    x = forward()
    got, want = table(sae, model, prompt, ids, x, top), features_on(sae, model, prompt, top=top)
    assert got.tokens == want.tokens and np.array_equal(got.features, want.features)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6)
    row = {"tokens": int(ids.shape[1]), "top": top,
           "forward_to_layer_ms": 1e3 * median_s(forward, repeats),
           "full_forward_ms": 1e3 * median_s(full, repeats),
           "table_from_acts_ms": 1e3 * median_s(lambda: table(sae, model, prompt, ids, x, top), repeats),
           "encode_only_ms": 1e3 * median_s(lambda: sae.encode(x[0].float()), repeats),
           "to_pandas_ms": 1e3 * median_s(got.to_pandas, repeats),
           "features_on_ms": 1e3 * median_s(lambda: features_on(sae, model, prompt, top=top), repeats),
           "fired_per_token": float((got.features >= 0).sum(1).mean())}
    if dash is not None:
        row["widget_ms"] = 1e3 * median_s(lambda: got.show(dash), max(3, repeats // 4))
    row["met"] = row["table_from_acts_ms"] < 200
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--widget", action="store_true", help="also the prompt widget over the corpus dashboards")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = mechscope.load()
    sae = mechscope.sae.embedded(model, 15)
    dash = None
    if args.widget:
        from mechscope.sae.dashboard_corpus import corpus_dashboards

        dash = corpus_dashboards(model, "resid-15")
    long_ids = model.to_tokens(LONG)[0, :128]
    long = model.tokenizer.decode(long_ids)
    out = {"threads": torch.get_num_threads(), "dictionary": "resid-15", "d_sae": sae.cfg.d_sae,
           "repeats": args.repeats, "prompts": []}
    for prompt in (SHORT, long):
        out["prompts"].append(one_prompt(model, sae, prompt, args.top, args.repeats, dash))
        print(json.dumps(out["prompts"][-1]), flush=True)
    path = REPO / "build" / "bench" / "sae_prompt.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("\n| prompt tokens | forward to layer 15 | whole forward | acts -> feature table (target < 200 ms) | "
          "features_on | widget |\n|---:|---:|---:|---:|---:|---:|")
    for r in out["prompts"]:
        w = f"{r['widget_ms']:.0f} ms" if "widget_ms" in r else "-"
        print(f"| {r['tokens']} | {r['forward_to_layer_ms']:.1f} ms | {r['full_forward_ms']:.1f} ms | "
              f"{r['table_from_acts_ms']:.1f} ms ({'met' if r['met'] else 'NOT met'}) | "
              f"{r['features_on_ms']:.1f} ms | {w} |")


if __name__ == "__main__":
    main()
