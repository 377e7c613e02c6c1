"""Time the full default superposition sweep on CPU and print what it shows.

``.venv/bin/python benchmarks/superposition.py [--steps N] [--batch B] [--json PATH]``: trains
n = 20 features in m = 5 dims (importance 0.7^i) at every default sparsity x 3 seeds, then
prints per sparsity the features represented (norm > 0.5) and their mean dimensionality, with
the spread over seeds, and the two geometry cases (antipodal pair, pentagon).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mechscope.toys import superposition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--json", default=None)
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
        print(f"S={s:<6} represented {rep.tolist()}  mean D {np.round(dims, 2).tolist()}  "
              f"m/||W||^2 {np.round(res.dims_per_feature[i], 2).tolist()}")
    report["sweep"] = rows
    t0 = time.perf_counter()
    pair = superposition(n_features=2, n_hidden=1, importance_decay=1.0, sparsities=(0.0, 0.5, 0.9, 0.99),
                         steps=args.steps, batch=args.batch, progress_bar=False)
    pent = superposition(n_features=5, n_hidden=2, importance_decay=1.0,
                         sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99), steps=args.steps,
                         batch=args.batch, progress_bar=False)
    report["geometry_s"] = time.perf_counter() - t0
    for name, r in (("pair n=2 m=1", pair), ("n=5 m=2", pent)):
        for i, s in enumerate(r.sparsities):
            print(f"{name} S={s}: norms {np.round(r.norms[i], 2).tolist()} "
                  f"D {np.round(r.dimensionality[i], 2).tolist()}")
        report[name] = {"sparsities": r.sparsities.tolist(), "norms": r.norms.tolist(),
                        "dimensionality": r.dimensionality.tolist()}
    print(f"sweep {report['sweep_s']:.1f} s, geometry {report['geometry_s']:.1f} s "
          f"on {report['threads']} threads")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
