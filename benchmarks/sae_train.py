"""SAE training throughput on CPU: tokens/s of TopK steps (d_in=576 like SmolLM2-135M, k=32,
batch 4096) at d_sae 4096 and 16384, dense (``f @ W_dec`` and a dense encoder gradient) and
sparse (``embedding_bag`` decoding and the encoder gradient over the k kept latents only), plus one whole `mechscope.sae.train` run on a
synthetic in-memory store (the store pass, scale and NaN check included).

Not a test: numbers depend on the machine (and on what else runs on it). Synthetic Gaussian
activations are fine for throughput: the work per step does not depend on the values.

Usage: ``python benchmarks/sae_train.py [--steps N] [--widths 4096 16384]``; writes
build/bench/sae_train.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mechscope.analysis.store import ActivationStore  # noqa: E402
from mechscope.sae.dictionary import SAE  # noqa: E402
from mechscope.sae.train import train  # noqa: E402
from mechscope.sae.train_state import SeedRun  # noqa: E402

D_IN, K, BATCH = 576, 32, 4096


def step_rate(d_sae: int, sparse: bool, steps: int) -> dict[str, float]:
    """Median tokens/s of `SeedRun.step_on` (objective, backward, Adam, decoder renorm)."""
    base = SAE.random(D_IN, d_sae, seed=0)
    run = SeedRun.fresh({"W_enc": base.W_enc.detach(), "b_enc": torch.zeros(d_sae), "W_dec": base.W_dec.detach(),
                         "b_dec": torch.zeros(D_IN)}, seed=0)
    x = torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(0))
    options = {"k": K, "k_aux": D_IN // 2, "sparse": sparse}
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        run.step_on(x, x, architecture="topk", lr=2e-4 / math.sqrt(d_sae / 16384), dead_after=10**9,
                    options=options)
        if i:  # the first step warms up allocations
            times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    return {"d_sae": d_sae, "sparse": sparse, "seconds_per_step": sec, "tokens_per_s": BATCH / sec}


def whole_run(d_sae: int, rows: int) -> dict[str, float]:
    x = np.random.default_rng(0).normal(size=(rows, D_IN)).astype(np.float16)
    manifest = {"sites": ["resid"], "layers": [0], "reduce": "all", "model": "synthetic", "dtype": "float16",
                "n_rows": rows, "done_examples": 1, "n_examples": 1, "settings": {}, "widths": {"resid": D_IN},
                "shards": []}
    store = ActivationStore(manifest=manifest, memory={"resid.0": x, "example": np.zeros(rows, np.int64),
                                                        "position": np.ones(rows, np.int64),
                                                        "token": np.zeros(rows, np.int64)})
    t0 = time.perf_counter()
    res = train(store, layer=0, d_sae=d_sae, k=K, batch_size=BATCH, progress=False)
    sec = time.perf_counter() - t0
    tokens = float(res.history["tokens"][0, -1])
    return {"d_sae": d_sae, "rows": rows, "tokens": tokens, "seconds": sec, "tokens_per_s": tokens / sec}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--rows", type=int, default=8 * BATCH)
    args = parser.parse_args()
    out = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
           "d_in": D_IN, "k": K, "batch": BATCH, "steps": []}
    for d_sae in args.widths:
        for sparse in (False, True):
            row = step_rate(d_sae, sparse, args.steps)
            out["steps"].append(row)
            print(f"topk d_sae={d_sae:6d} {'sparse' if sparse else 'dense '}: "
                  f"{row['tokens_per_s']:8.0f} tok/s ({row['seconds_per_step']:.2f} s/step)", flush=True)
    out["train"] = whole_run(args.widths[0], args.rows)
    print(f"train() d_sae={args.widths[0]} on {args.rows} rows: {out['train']['tokens_per_s']:.0f} tok/s", flush=True)
    path = REPO / "build" / "bench" / "sae_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
