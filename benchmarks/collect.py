"""`mechscope.collect` throughput and memory on the embedded SmolLM2-135M-Instruct.

Not a test: numbers depend on the machine; the ratio, measured side by side, is what holds.

1. Throughput: the residual stream after layer 15 (of 30) over a corpus of >= 200k tokens
   (``--quick``: 20k), written to disk as shards, against a raw Hugging Face forward pass
   truncated at that layer (a forward hook on block 15 that keeps the non-pad rows and raises
   to stop the pass), over the same batches (same texts, batch size and token cap). The corpus
   is cut into slices and the two run interleaved, slice by slice, so load from other jobs on
   the machine hits both alike. Reported: real (non-pad) tokens per second, the ratio
   collect / raw (target >= 0.9), and max |difference| of the rows.
2. Memory: RSS of a fresh process (model loaded, corpus built) before collect and its peak
   during collect to disk, at two corpus sizes (25k and 100k tokens; ``--quick``: 10k, 40k),
   shards of `SHARD_ROWS` rows: it should be flat (rows go to shards; one shard and one batch
   are in memory at a time).

Usage: ``python benchmarks/collect.py [--quick]`` (a full run takes ~30 min on 2 busy cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import mechscope  # noqa: E402
from mechscope.analysis.collect import collect  # noqa: E402

try:  # mechscope.datasets is becoming a package
    from mechscope.datasets import labelled_texts
except ImportError:
    from mechscope.datasets.labelled import labelled_texts  # type: ignore[no-redef]

LAYER = 15
BATCH_SIZE = 16
MAX_TOKENS = 4096
#: Rows per shard in the memory runs (~19 MB of float32 at d_model 576): several shards at both sizes.
SHARD_ROWS = 8192


def corpus(model, n_tokens: int, seed: int = 0) -> list[str]:
    """Paragraphs of 4-8 template sentences (mechscope.datasets.labelled_texts) until
    ``n_tokens`` tokens in all."""
    pool = [t for texts in labelled_texts(n_per_class=90, seed=seed).values() for t in texts]
    rng = random.Random(seed)
    texts, total = [], 0
    while total < n_tokens:
        text = " ".join(rng.sample(pool, rng.randint(4, 8)))
        texts.append(text)
        total += len(model.tokenizer(text)["input_ids"])
    return texts


def raw_batches(model, texts: list[str]) -> list[list[str]]:
    """The same consecutive batches collect forms (<= BATCH_SIZE texts, <= MAX_TOKENS padded)."""
    from mechscope.analysis.collect import _batches

    lengths = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    return [texts[a:b] for a, b in _batches(lengths, BATCH_SIZE, MAX_TOKENS)]


class _Stop(Exception):
    pass


def raw_forward(model, batches: list[list[str]]) -> tuple[np.ndarray, int]:
    """Raw HF: tokenise, forward with a hook on block LAYER that keeps the non-pad rows and stops."""
    block = model.hf.model.layers[LAYER]
    kept: list[np.ndarray] = []
    mask_box: dict[str, torch.Tensor] = {}

    def hook(_m, _a, out):
        hidden = out[0] if isinstance(out, tuple) else out
        kept.append(hidden[mask_box["m"]].float().numpy())
        raise _Stop

    handle = block.register_forward_hook(hook)
    n = 0
    try:
        for batch in batches:
            enc = model.tokenizer(batch, return_tensors="pt", padding=True)
            mask = enc["attention_mask"]
            mask_box["m"] = mask.bool()
            position_ids = (mask.cumsum(1) - 1).clamp(min=0)
            try:
                with torch.no_grad():
                    model.hf(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids)
            except _Stop:
                pass
            n += int(mask.sum())
    finally:
        handle.remove()
    return np.concatenate(kept), n


def throughput(model, n_tokens: int, slices: int) -> dict[str, float]:
    texts = corpus(model, n_tokens)
    n_real = sum(len(model.tokenizer(t)["input_ids"]) for t in texts)
    per = -(-len(texts) // slices)
    t_raw = t_collect = 0.0
    max_diff = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        collect(model, texts[:BATCH_SIZE], layers=LAYER, progress=False)  # warm-up
        for k in range(slices):
            part = texts[k * per:(k + 1) * per]
            if not part:
                continue
            batches = raw_batches(model, part)
            start = time.perf_counter()
            raw_rows, _ = raw_forward(model, batches)
            t_raw += time.perf_counter() - start
            start = time.perf_counter()
            store = collect(model, part, layers=LAYER, out_dir=Path(tmp) / f"s{k}",
                            batch_size=BATCH_SIZE, max_tokens_per_batch=MAX_TOKENS, progress=False)
            t_collect += time.perf_counter() - start
            max_diff = max(max_diff, float(np.abs(store.get("resid", LAYER) - raw_rows).max()))
    padded = sum(len(b) * max(len(model.tokenizer(t)["input_ids"]) for t in b)
                 for b in raw_batches(model, texts))
    return {"texts": len(texts), "tokens": n_real, "pad_fraction": 1 - n_real / padded,
            "raw_tok_s": n_real / t_raw, "collect_tok_s": n_real / t_collect,
            "ratio": t_raw / t_collect, "max_abs_diff": max_diff}


def rss_child(n_tokens: int) -> None:
    """In a fresh process: load, build the corpus, collect to disk (shards of SHARD_ROWS rows)
    while a thread samples the RSS; print RSS before and at peak during collect (MB) as JSON."""
    import threading

    import psutil

    torch.set_num_threads(2)
    model = mechscope.load()
    texts = corpus(model, n_tokens)
    collect(model, texts[:BATCH_SIZE], layers=LAYER, progress=False)  # touch the (mmapped) weights
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        store = collect(model, texts, layers=LAYER, out_dir=tmp, shard_rows=SHARD_ROWS, progress=False)
        done.set()
        thread.join()
        rows, shards = store.n_rows, len(store.manifest["shards"])
    print(json.dumps({"tokens": rows, "shards": shards, "rss_before_mb": before / 2**20,
                      "peak_rss_mb": peak[0] / 2**20,
                      "max_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k tokens instead of 200k")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    torch.set_num_threads(2)
    n = 20_000 if args.quick else 200_000
    model = mechscope.load()
    r = throughput(model, n, slices=4 if args.quick else 8)
    print(f"## collect: resid after layer {LAYER} of {model.name}, {r['texts']} texts, "
          f"{r['tokens']} tokens (padding {r['pad_fraction']:.1%} of the batches)\n")
    print("| method | tokens/s |\n|---|---|")
    print(f"| raw HF forward, hook on block {LAYER} stops it | {r['raw_tok_s']:.0f} |")
    print(f"| mechscope collect (to disk shards) | {r['collect_tok_s']:.0f} |")
    print(f"\nratio collect / raw: **{r['ratio']:.2f}x** (target >= 0.9); max |diff| {r['max_abs_diff']:.2e}\n",
          flush=True)
    sizes = (10_000, 40_000) if args.quick else (25_000, 100_000)
    print(f"memory: a fresh process per size, shards of {SHARD_ROWS} rows; RSS sampled every 20 ms\n")
    print("| corpus tokens | shards | RSS before collect (MB) | peak RSS during collect (MB) |"
          "\n|---|---|---|---|")
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(size)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        print(f"| {m['tokens']} | {m['shards']} | {m['rss_before_mb']:.0f} | {m['peak_rss_mb']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
