"""Feature dashboards on CPU: (1) the streaming pass alone (`StreamState.update`: counts,
histograms, top-k merges, quantile-band samples) for 4,096 features over synthetic activations of
a TopK (k=32) and a ReLU dictionary, in batches of 512 tokens; (2) one whole
`mechscope.sae.dashboard.dashboards` run on the embedded SmolLM2-135M (a random 4,096-wide
dictionary on the residual at ``--layer``, corpus texts), where the model's forward pass (stopped
after the layer) is the cost.

Not a test: numbers depend on the machine and on what else runs on it.

Usage: ``python benchmarks/sae_dashboard.py [--tokens 100000] [--model-tokens 4000] [--layer 3]``;
writes build/bench/sae_dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mechscope.sae.dashboard_stream import StreamState  # noqa: E402
from mechscope.sae.dictionary import SAE  # noqa: E402

D_IN, D_SAE, BATCH = 576, 4096, 512


def stream_only(tokens: int, architecture: str) -> dict[str, float]:
    """Seconds of the streaming state over ``tokens`` synthetic tokens (the encoder included)."""
    sae = SAE.random(D_IN, D_SAE, architecture=architecture, k=32 if architecture == "topk" else None, seed=0)
    if architecture == "relu":
        sae.b_enc.data.fill_(-0.08)  # a few percent density, like a trained ReLU dictionary
    state = StreamState(D_SAE, 20, 10, 5, 5)
    g = torch.Generator().manual_seed(0)
    enc = upd = 0.0
    fired = 0
    for start in range(0, tokens, BATCH):
        n = min(BATCH, tokens - start)
        x = torch.randn(n, D_IN, generator=g) / D_IN ** 0.5
        t0 = time.perf_counter()
        with torch.no_grad():
            acts = sae.encode(x).numpy()
        t1 = time.perf_counter()
        state.update(acts, np.repeat(np.arange(start // 64, start // 64 + (n + 63) // 64), 64)[:n], start)
        upd += time.perf_counter() - t1
        enc += t1 - t0
        fired += int((acts > 0).sum())
    return {"architecture": architecture, "tokens": tokens, "features": D_SAE, "encode_s": enc, "stream_s": upd,
            "density": fired / tokens / D_SAE, "tokens_per_s": tokens / (enc + upd)}


def whole(model_tokens: int, layer: int) -> dict[str, float]:
    import mechscope
    from mechscope.sae.dashboard import dashboards

    model = mechscope.load()
    texts, n = [], 0
    for text in mechscope.corpus.load("train").texts(max(50, model_tokens // 20)):
        texts.append(text)
        n += min(64, len(model.tokenizer(text)["input_ids"]))
        if n >= model_tokens:
            break
    sae = SAE.random(model.d_model, D_SAE, architecture="topk", k=32, layer=layer, model=model.name)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        d = dashboards(sae, model, texts, out_dir=out, progress=False)
    sec = time.perf_counter() - t0
    return {"layer": layer, "tokens": d.n_tokens, "features": D_SAE, "seconds": sec, "tokens_per_s": d.n_tokens / sec,
            "minutes_per_100k_tokens": 100_000 / (d.n_tokens / sec) / 60}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--model-tokens", type=int, default=4_000)
    ap.add_argument("--layer", type=int, default=3)
    args = ap.parse_args()
    out: dict = {"threads": torch.get_num_threads(), "stream": []}
    for a in ("topk", "relu"):
        out["stream"].append(stream_only(args.tokens, a))
        print(json.dumps(out["stream"][-1]), flush=True)
    if args.model_tokens:
        out["whole"] = whole(args.model_tokens, args.layer)
        print(json.dumps(out["whole"]))
    path = REPO / "build" / "bench" / "sae_dashboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
