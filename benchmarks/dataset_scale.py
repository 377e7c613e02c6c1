"""Dataset-scale benchmark on the embedded SmolLM2-135M-Instruct: prints a markdown table.

Heads patching over N IOI pairs (`mechscope.datasets.ioi`, ABC corruption, per-example
logit_diff(IO, S)):
- batched: ``mechscope.patch(model, dataset, site="heads")`` (examples grouped by token length,
  every group's copies batched, a copy never recomputing the layers before its patch);
- loop: one single-pair ``mechscope.patch(model, clean, corrupt, logit_diff(IO, S),
  site="heads")`` per example, as a user would write it without dataset support.
Both are timed in the same process, one after the other, and max |batched - loop| shows the
values are the same (target: >= 3x faster, equal to 1e-4). Both reuse the prefix every patched
copy shares with its corrupt run (positions before S2, `mechscope.interventions.patch_prefix`);
``--old`` also times both without it (every position of every copy run) and reports the
speed-up of prefix reuse and max |new - old|.

Also ablation of one head over the same prompts: batched (left-padded) vs a loop of single
`ablate` calls.

Usage: ``python benchmarks/dataset_scale.py [--quick] [--n N] [--old]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import mechscope  # noqa: E402
from mechscope.datasets.generators import ioi  # noqa: E402
from mechscope.interventions import patch_prefix  # noqa: E402
from mechscope.metrics import logit_diff  # noqa: E402


def seconds(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 pairs instead of 100")
    parser.add_argument("--n", type=int, default=None, help="number of IOI pairs")
    parser.add_argument("--old", action="store_true",
                        help="also time both paths without prefix reuse (every position run)")
    args = parser.parse_args()
    n = args.n or (20 if args.quick else 100)
    torch.set_num_threads(2)
    model = mechscope.load()
    data = ioi(n, seed=0, model=model)
    lengths = sorted({len(model.str_tokens(t)) for t in data.clean})

    def batch():
        return mechscope.patch(model, data, site="heads", progress=False)

    def loop():
        return np.stack([
            mechscope.patch(model, c, k, logit_diff(a, w), site="heads", progress=False).values
            for c, k, a, w in zip(data.clean, data.corrupt, data.answer, data.wrong, strict=True)])

    t_batched, batched = seconds(batch)
    t_loop, looped = seconds(loop)
    diff = float(np.abs(batched.per_example - looped).max())
    old_rows = []
    if args.old:
        with patch_prefix.disabled():
            t_batched_old, batched_old = seconds(batch)
            t_loop_old, looped_old = seconds(loop)
        old_rows = [
            ("batched", t_batched, t_batched_old,
             float(np.abs(batched.per_example - batched_old.per_example).max())),
            ("loop of single calls", t_loop, t_loop_old, float(np.abs(looped - looped_old).max())),
        ]

    head = mechscope.heads(9, [5])
    t_ab, effect = seconds(lambda: mechscope.ablate(model, data, head, progress=False))

    def ablate_loop():
        return np.array([mechscope.ablate(model, c, head, metric=logit_diff(a, w)).metric_change
                         for c, a, w in zip(data.clean, data.answer, data.wrong, strict=True)])

    t_ab_loop, ab_looped = seconds(ablate_loop)
    ab_diff = float(np.abs(effect.per_example - ab_looped).max())

    print(f"## Dataset scale: {n} IOI pairs on {model.name} ({len(lengths)} token lengths: "
          f"{lengths}), {torch.get_num_threads()} threads\n")
    print("| work | batched | loop of single calls | speed-up | max abs diff | target |")
    print("|---|---|---|---|---|---|")
    print(f"| heads patching, {model.n_layers} layers x {model.n_heads} heads x {n} pairs "
          f"({batched.n_forward_passes} forward passes batched) | {t_batched:.1f} s | {t_loop:.1f} s | "
          f"{t_loop / t_batched:.1f}x | {diff:.1e} | >= 3x, <= 1e-4 |")
    print(f"| zero ablation of L9H5 over {n} prompts | {t_ab:.2f} s | {t_ab_loop:.2f} s | "
          f"{t_ab_loop / t_ab:.1f}x | {ab_diff:.1e} | equal to 1e-4 |")
    if old_rows:
        print(f"\nPrefix reuse vs every position run (heads patching, {n} pairs; batched old: "
              f"{t_loop_old / t_batched_old:.1f}x over its loop):\n")
        print("| path | with prefix reuse | without | speed-up | max abs diff |")
        print("|---|---|---|---|---|")
        for name, new_t, old_t, d in old_rows:
            print(f"| {name} | {new_t:.1f} s | {old_t:.1f} s | {old_t / new_t:.1f}x | {d:.1e} |")
    mean = batched.values
    top = np.dstack(np.unravel_index(np.argsort(mean.ravel())[:3], mean.shape))[0]
    print("\nHeads whose patching moves logit_diff(IO, S) most (mean over pairs, 95% bootstrap CI):")
    for layer, h in top:
        print(f"- L{batched.layers[layer]}H{h}: {mean[layer, h]:.3f} "
              f"[{batched.ci_low[layer, h]:.3f}, {batched.ci_high[layer, h]:.3f}] "
              f"(clean {batched.clean_metric:.2f}, corrupt {batched.corrupt_metric:.2f})")


if __name__ == "__main__":
    main()
