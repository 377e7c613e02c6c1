"""Time the full default superposition sweep on CPU and print what it shows.

``.venv/bin/python benchmarks/superposition.py [--steps N] [--batch B] [--json PATH]``: trains
n = 20 features in m = 5 dims (importance 0.7^i) at every default sparsity x 3 seeds, then
prints per sparsity the features represented (norm > 0.5) and their mean dimensionality, with
the spread over seeds, and the two geometry cases (antipodal pair, pentagon) with the fraction
of ``--geometry-seeds`` seeds that find them. Measured on the 2-core machine (shared): the
sweep (10 sparsities x 3 seeds, 10,000 steps of 1024) 200 s; the geometry runs 130 s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mechscope.toys import superposition


def _r(values) -> list:  # noqa: ANN001
    """Nested lists of values rounded to 2 decimals, for printing."""
    return np.round(np.asarray(values, dtype=np.float64), 2).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--json", default=None)
    parser.add_argument("--geometry-seeds", type=int, default=3,
                        help="seeds for the antipodal-pair and pentagon runs (how many find them)")
    args = parser.parse_args()
    report: dict = {"threads": torch.get_num_threads(), "steps": args.steps, "batch": args.batch}
    t0 = time.perf_counter()
    res = superposition(steps=args.steps, batch=args.batch)
    report["sweep_s"] = time.perf_counter() - t0
    rows = []
    for i, s in enumerate(res.sparsities):
        rep = (res.norms[i] > 0.5).sum(axis=1)                      # per seed
        dims = [float(np.nanmean(res.dimensionality[i, k][res.norms[i, k] > 0.5]))
                for k in range(len(res.seeds))]
        rows.append({"sparsity": float(s), "represented": rep.tolist(),
                     "mean_dim_of_represented": dims, "dims_per_feature": res.dims_per_feature[i].tolist(),
                     "loss": res.loss[i].tolist()})
        print(f"S={s:<6} represented {rep.tolist()}  mean D {_r(dims)}  "
              f"m/||W||^2 {_r(res.dims_per_feature[i])}")
    report["sweep"] = rows
    t0 = time.perf_counter()
    seeds = tuple(range(args.geometry_seeds))
    pair = superposition(n_features=2, n_hidden=1, importance_decay=1.0, sparsities=(0.0, 0.5, 0.9, 0.99),
                         seeds=seeds, steps=args.steps, batch=args.batch, progress_bar=False)
    pent = superposition(n_features=5, n_hidden=2, importance_decay=1.0,
                         sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99), seeds=seeds,
                         steps=args.steps, batch=args.batch, progress_bar=False)
    w = pair.W[:, :, 0, :]
    anti = (np.abs(w[..., 0] + w[..., 1]) < 0.05) & (np.abs(np.abs(w[..., 0]) - 1) < 0.1)
    pentagon = (np.abs(pent.dimensionality - 0.4) < 0.02).all(axis=-1)
    report["antipodal_fraction"] = dict(zip(map(float, pair.sparsities), anti.mean(1).tolist(), strict=True))
    report["pentagon_fraction"] = dict(zip(map(float, pent.sparsities), pentagon.mean(1).tolist(), strict=True))
    print(f"seeds with an antipodal pair (of {len(seeds)}): {report['antipodal_fraction']}")
    print(f"seeds with a pentagon (of {len(seeds)}): {report['pentagon_fraction']}")
    report["geometry_s"] = time.perf_counter() - t0
    for name, r in (("pair n=2 m=1", pair), ("n=5 m=2", pent)):
        for i, s in enumerate(r.sparsities):
            print(f"{name} S={s}: norms {_r(r.norms[i])} D {_r(r.dimensionality[i])}")
        report[name] = {"sparsities": r.sparsities.tolist(), "norms": r.norms.tolist(),
                        "dimensionality": r.dimensionality.tolist()}
    print(f"sweep {report['sweep_s']:.1f} s, geometry {report['geometry_s']:.1f} s "
          f"on {report['threads']} threads")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
