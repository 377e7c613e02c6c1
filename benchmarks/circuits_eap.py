"""Circuit discovery cost on the embedded SmolLM2-135M-Instruct: EAP-IG vs exact edge patching.

Over N IOI pairs (`mechscope.datasets.ioi`, ABC corruption, logit_diff(IO, S)):
- EAP-IG (`mechscope.circuits.edge_attribution(method="eap-ig", steps=5)`): a score for every
  one of the component graph's 70,651 edges from 5 forward + backward passes per batch
  (plus the clean and corrupt runs);
- exact single-edge patching (`mechscope.circuits.edge_patching`, the ACDC-style reference):
  one forward pass per edge and pair (many copies batched into one pass). Running it on all
  70,651 edges is out of reach on CPU, so a uniform random sample of ``--edges`` edges is
  timed and the time extrapolated linearly to every edge (cost per edge x 70,651: every
  edge costs one full forward pass per pair, whatever its position, so the cost is linear
  in the number of edges).

Both are timed in the same process, one after the other; the table shows the two side by
side and their ratio, and the Spearman agreement of the EAP-IG scores with the exact effects
on the sampled edges (uniform sample: most effects are tiny, so this is a harsher test than
the notebook's half-top sample).

Usage: ``python benchmarks/circuits_eap.py [--n N] [--edges E] [--quick]``.
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
from mechscope.circuits import edge_attribution, edge_patching  # noqa: E402
from mechscope.datasets.generators import ioi  # noqa: E402
from mechscope.dynamics.emergence_steps import correlation  # noqa: E402


def seconds(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="number of IOI pairs (default 64)")
    parser.add_argument("--edges", type=int, default=None, help="edges patched exactly (default 50)")
    parser.add_argument("--quick", action="store_true", help="16 pairs, 20 edges")
    args = parser.parse_args()
    n = args.n or (16 if args.quick else 64)
    n_sample = args.edges or (20 if args.quick else 50)
    torch.set_num_threads(2)
    model = mechscope.load()
    data = ioi(n, seed=0, model=model)
    lengths = sorted({len(model.str_tokens(t)) for t in data.clean})

    t_ig, scores = seconds(lambda: edge_attribution(model, data, method="eap-ig", steps=5, progress=False))
    total = scores.graph.n_edges
    sample = np.sort(np.random.default_rng(0).choice(total, n_sample, replace=False))
    t_exact, effects = seconds(lambda: edge_patching(model, data, sample, progress=False))
    per_edge = t_exact / n_sample
    t_all = per_edge * total
    agree = correlation(scores.scores[sample], effects.mean(0))

    print(f"## Circuit discovery: {n} IOI pairs on {model.name} ({len(lengths)} token lengths: "
          f"{lengths}), {total:,} edges, {torch.get_num_threads()} threads\n")
    print("| method | what it runs | time | per edge | vs EAP-IG |")
    print("|---|---|---|---|---|")
    print(f"| EAP-IG, 5 steps | every edge scored at once | {t_ig:.1f} s | {t_ig / total * 1e3:.2f} ms | 1x |")
    print(f"| exact single-edge patching, {n_sample} sampled edges (measured) | one forward pass per edge "
          f"and pair | {t_exact:.1f} s | {per_edge:.2f} s | - |")
    print(f"| exact single-edge patching, all {total:,} edges (extrapolated: {per_edge:.2f} s x {total:,}) "
          f"| one forward pass per edge and pair | {t_all:,.0f} s ({t_all / 3600:.1f} h) | {per_edge:.2f} s | "
          f"{t_all / t_ig:,.0f}x |")
    print(f"\nEAP-IG scores vs exact effects on the {n_sample} uniformly sampled edges: Spearman "
          f"{agree['spearman']:.3f}, Pearson {agree['pearson']:.3f}; mean absolute exact effect "
          f"{np.abs(effects.mean(0)).mean():.4f} (clean logit_diff {scores.m_clean.mean():.2f}, "
          f"corrupt {scores.m_corrupt.mean():.2f}).")


if __name__ == "__main__":
    main()
