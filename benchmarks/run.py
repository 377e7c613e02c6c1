"""mechscope benchmarks on the embedded SmolLM2-135M-Instruct: prints a markdown table.

Not tests: numbers depend on the machine. Every ratio is measured side by side in one run
(same process, same threads, interleaved where it matters), so the ratios are what hold.

1. A full residual patching sweep (30 layers x 9 positions = 270 patched runs) of
   "The Eiffel Tower is in the city of" -> "The Colosseum is in the city of",
   logit_diff(" Paris", " Rome"):
   - naive: one nnsight trace per patch, as one would write it by hand;
   - batched, no prefix sharing: one trace of all 270 copies, each run from layer 0;
   - ``mechscope.patch(method="exact")``;
   - ``mechscope.patch(method="attribution")``, with its Pearson / Spearman agreement to exact;
   max |exact - naive| proves the values are the same.
2. nnsight trace overhead: a trace saving all 30 residual outputs + the logits vs the raw HF
   forward pass (interleaved pairs).

Usage: ``python benchmarks/run.py [--quick]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nnsight  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import mechscope  # noqa: E402
from mechscope.metrics import logit_diff  # noqa: E402

CLEAN = "The Eiffel Tower is in the city of"
CORRUPT = "The Colosseum is in the city of"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (after one warm-up call), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def naive_sweep(model, ids_clean, ids_corrupt, good: int, bad: int) -> np.ndarray:
    """One nnsight trace per patched cell (plus one clean trace), written the obvious way."""
    layers = [model.at("resid", layer) for layer in range(model.n_layers)]
    lm_head = model.logits()
    with model.trace(ids_clean):
        clean = nnsight.save([layer.read() for layer in layers])
    n = ids_clean.shape[1]
    out = np.zeros((model.n_layers, n))
    for i, layer in enumerate(layers):
        for p in range(n):
            with model.trace(ids_corrupt):
                layer.read()[:, p] = clean[i][:, p]
                logits = nnsight.save(lm_head.all()[:, -1])
            out[i, p] = float(logits[0, good] - logits[0, bad])
    return out


def batched_full_sweep(model, ids_clean, ids_corrupt, good: int, bad: int) -> np.ndarray:
    """All copies in one trace, every copy run from layer 0 (no prefix sharing), last-position logits."""
    layers = [model.at("resid", layer) for layer in range(model.n_layers)]
    lm_head = model.logits()
    with model.trace(ids_clean):
        clean = nnsight.save([layer.read() for layer in layers])
    n, n_layers = ids_clean.shape[1], model.n_layers
    batch = ids_corrupt.expand(n_layers * n, -1)
    rows = torch.arange(n)
    with model.trace(batch, use_cache=False):
        for i, layer in enumerate(layers):
            out = layer.read()
            out[i * n + rows, rows] = clean[i][0]
        logits = nnsight.save(lm_head.last())
    return (logits[:, good] - logits[:, bad]).view(n_layers, n).numpy()


def ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.size)
    r[np.argsort(x.ravel(), kind="stable")] = np.arange(x.size)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 1 minute)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rep_naive, rep_fast, rep_attr, rep_fwd = (1, 3, 5, 15) if args.quick else (3, 7, 21, 41)

    model = mechscope.load()
    metric = logit_diff(" Paris", " Rome")
    good, bad = model.to_single_token(" Paris"), model.to_single_token(" Rome")
    ids_clean, ids_corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    n_cells = model.n_layers * ids_clean.shape[1]
    print(f"# mechscope benchmarks: {model.name}, {model.n_layers} layers, "
          f"{ids_clean.shape[1]} tokens, torch {torch.__version__}, nnsight {nnsight.__version__}, "
          f"{torch.get_num_threads()} threads{' (--quick)' if args.quick else ''}\n", flush=True)

    def exact():
        return mechscope.patch(model, CLEAN, CORRUPT, metric, progress=False)

    def attribution():
        return mechscope.patch(model, CLEAN, CORRUPT, metric, method="attribution", progress=False)

    t_naive, naive = timed(lambda: naive_sweep(model, ids_clean, ids_corrupt, good, bad), rep_naive)
    t_full, full = timed(lambda: batched_full_sweep(model, ids_clean, ids_corrupt, good, bad), rep_fast)
    t_exact, ex = timed(exact, rep_fast)
    t_attr, at = timed(attribution, rep_attr)

    diff_naive = float(np.abs(ex.values - naive).max())
    diff_full = float(np.abs(ex.values - full).max())
    pearson = float(np.corrcoef(ex.values.ravel(), at.values.ravel())[0, 1])
    spearman = float(np.corrcoef(ranks(ex.values), ranks(at.values))[0, 1])
    late = slice(21, None)
    pearson_late = float(np.corrcoef(ex.values[late].ravel(), at.values[late].ravel())[0, 1])

    # nnsight trace overhead: interleaved pairs so drift hits both sides alike
    resid = [model.at("resid", layer) for layer in range(model.n_layers)]
    lm_head = model.logits()

    def raw():
        with torch.no_grad():
            return model.hf(input_ids=ids_corrupt).logits

    def traced():
        with model.trace(ids_corrupt):
            saved = nnsight.save([layer.read() for layer in resid] + [lm_head.all()])
        return saved

    raw(), traced()
    t_raw, t_trace = [], []
    for _ in range(rep_fwd):
        for fn, sink in ((raw, t_raw), (traced, t_trace)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    m_raw, m_trace = statistics.median(t_raw), statistics.median(t_trace)

    ok = lambda good_enough: "yes" if good_enough else "NO"  # noqa: E731
    rows = [
        ("naive: one nnsight trace per patch", t_naive, 1.0, "baseline", "",
         f"{n_cells} traces + 1 clean"),
        ("batched, no prefix sharing", t_full, t_naive / t_full, "", "",
         f"1 trace of {n_cells} copies; max abs diff to exact {diff_full:.1e}"),
        ("mechscope exact", t_exact, t_naive / t_exact, ">= 6x (aim 10x)", ok(t_naive / t_exact >= 6),
         f"{ex.n_forward_passes} forward passes; max abs diff to naive {diff_naive:.1e}"),
        ("mechscope attribution", t_attr, t_naive / t_attr, ">= 100x", ok(t_naive / t_attr >= 100),
         f"agreement with exact: Pearson {pearson:.3f}, Spearman {spearman:.3f} "
         f"(layers 21-29: Pearson {pearson_late:.3f})"),
    ]
    print(f"## Residual patching sweep, {model.n_layers} layers x {ids_clean.shape[1]} positions "
          f"= {n_cells} patches (median of {rep_naive} naive / {rep_fast} exact / {rep_attr} "
          "attribution runs)\n")
    print("| method | median time | speed-up vs naive | target | met | notes |")
    print("|---|---:|---:|---|---|---|")
    for name, t, speed, target, met, note in rows:
        print(f"| {name} | {t * 1000:,.0f} ms | {speed:.1f}x | {target} | {met} | {note} |")
    print(f"\n## nnsight trace overhead ({rep_fwd} interleaved pairs, {ids_corrupt.shape[1]} tokens)\n")
    print("| run | median time | ratio | target | met |")
    print("|---|---:|---:|---|---|")
    print(f"| raw HF forward | {m_raw * 1000:.1f} ms | 1.00x | | |")
    print(f"| nnsight trace saving 30 residuals + logits | {m_trace * 1000:.1f} ms | "
          f"{m_trace / m_raw:.3f}x | <= 1.05x | {ok(m_trace / m_raw <= 1.05)} |")


if __name__ == "__main__":
    main()
