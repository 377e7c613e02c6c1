"""TopK SAE training tokens/s: mechscope's `train` vs sae-lens's `SAETrainer`, same activations.

The activations: ``--rows`` synthetic rows x 576 (SmolLM2-135M's width) drawn from a planted
dictionary (4 x d_in random unit directions, 32 active per row with exponential magnitudes,
plus 5% Gaussian noise), scaled so ``E||x||^2 = d_in`` (the scale mechscope trains at, so its
own rescale is ~1 and both libraries see the same numbers), plus 8192 held-out rows. They are
written once as float32 .npy files under build/bench/sae_train_vs_saelens/.

- mechscope: `mechscope.sae.train` (architecture ``topk``, ``sparse=True``: embedding_bag
  decoding and the encoder gradient over kept latents only) on an in-memory `ActivationStore`
  of those rows; timed between consecutive ``callback`` calls, i.e. one whole trainer step
  (batch from the store, objective, backward, Adam, decoder projection + renorm, counters).
- sae-lens: its own trainer, ``sae_lens.training.sae_trainer.SAETrainer.fit`` with a
  ``TopKTrainingSAE`` (defaults: ``rescale_acts_by_decoder_norm=True``, AuxK, grad-norm clip,
  torch Adam), fed by an iterator over the same rows (sae-lens's ``DataProvider`` protocol);
  timed between consecutive batch requests, i.e. one whole ``fit`` loop iteration. Run in a
  subprocess of build/saelens-venv (``make saelens-env``) by this same file. Both its dense
  (default) and ``use_sparse_activations=True`` (COO sparse decode) modes are tried; with
  torch 2.13 on CPU the sparse one fails in backward ("Could not run 'aten::view' with
  arguments from the 'SparseCPU' backend"), so the dense mode is the baseline.
  Not used: ``LanguageModelSAETrainingRunner(use_cached_activations=True)``: its cache is a
  HF ``datasets`` folder written by ``CacheActivationsRunner``, which needs a TransformerLens
  model to produce it and a model to build the runner (nothing of that is timed here anyway:
  the runner ends in the same ``SAETrainer.fit``).

Same for both: d_in 576, k 32, batch 4096, Adam (0.9, 0.999), lr ``2e-4 / sqrt(d_sae/16384)``,
fp32, ``torch.set_num_threads(--threads)``; dead latents counted after 1000 steps in both (so
AuxK does no work in a short run in either; it is the same code path in both). The first
``--warmup`` steps are left out; the median of the next ``--steps`` is reported. Final MSE
(squared error summed over dims, mean over rows) and FVU on the held-out rows show that both
trained the same problem for the same number of tokens.

Not a test: numbers depend on the machine and what else runs on it.

Usage: ``python benchmarks/sae_train_vs_saelens.py [--widths 4096 16384] [--steps 8]``; writes
build/bench/sae_train_vs_saelens.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
VENV_PY = REPO / "build" / "saelens-venv" / "bin" / "python"
WORK = REPO / "build" / "bench" / "sae_train_vs_saelens"
D_IN, K, BATCH, EVAL_ROWS, DEAD_STEPS = 576, 32, 4096, 8192, 1000

import numpy as np  # noqa: E402
import torch  # noqa: E402


def lr_for(d_sae: int) -> float:
    return 2e-4 / math.sqrt(d_sae / 16384)


def make_data(rows: int, seed: int = 0) -> None:
    """Planted-dictionary rows, E||x||^2 = d_in, train + held-out, as float32 .npy (once)."""
    WORK.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = WORK / "x_train.npy", WORK / "x_eval.npy"
    if train_path.exists() and np.load(train_path, mmap_mode="r").shape == (rows, D_IN) and eval_path.exists():
        return
    g = torch.Generator().manual_seed(seed)
    n_feat = 4 * D_IN
    dirs = torch.nn.functional.normalize(torch.randn(n_feat, D_IN, generator=g), dim=1)
    total = rows + EVAL_ROWS
    idx = torch.stack([torch.randperm(n_feat, generator=g)[:K] for _ in range(total)])
    mags = -torch.log(torch.rand(total, K, generator=g).clamp_min(1e-6))
    x = torch.nn.functional.embedding_bag(idx, dirs, per_sample_weights=mags, mode="sum")
    x = x + 0.05 * x.norm(dim=1, keepdim=True) / math.sqrt(D_IN) * torch.randn(total, D_IN, generator=g)
    x = x * math.sqrt(D_IN / float(x.pow(2).sum(dim=1).mean()))
    np.save(train_path, x[:rows].numpy().astype(np.float32))
    np.save(eval_path, x[rows:].numpy().astype(np.float32))


def metrics(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    err = ((x - x_hat) ** 2).sum(axis=1)
    total = ((x - x.mean(axis=0)) ** 2).sum()
    return {"mse": float(err.mean()), "fvu": float(err.sum() / total)}


def summarise(durations: list[float]) -> dict[str, float]:
    gaps = np.asarray(durations)
    sec = float(np.median(gaps))
    return {"timed_steps": len(gaps), "seconds_per_step": sec, "tokens_per_s": BATCH / sec,
            "mean_seconds_per_step": float(gaps.mean())}


# ---- sae-lens side (runs in build/saelens-venv: imports only sae_lens, torch, numpy) -------------
def saelens_worker(d_sae: int, total_steps: int, warmup: int, threads: int, sparse: bool) -> None:
    """One `SAETrainer.fit` over the rows in file order; prints one RESULT json line."""
    torch.set_num_threads(threads)
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(0)
    x = torch.from_numpy(np.load(WORK / "x_train.npy"))
    n_batches = len(x) // BATCH
    stamps: list[float] = []

    def provider():  # sae-lens's DataProvider: an iterator of (batch, d_in) tensors
        i = 0
        while True:
            stamps.append(time.perf_counter())
            yield x[(i % n_batches) * BATCH:(i % n_batches + 1) * BATCH]
            i += 1

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=d_sae, k=K, use_sparse_activations=sparse,
                                                device="cpu", dtype="float32"))
    cfg = SAETrainerConfig(total_training_samples=total_steps * BATCH, train_batch_size_samples=BATCH,
                           lr=lr_for(d_sae), lr_end=lr_for(d_sae), device="cpu", dead_feature_window=DEAD_STEPS,
                           feature_sampling_window=10**9)
    trainer = SAETrainer(cfg, sae, provider())
    t0 = time.perf_counter()
    sae = trainer.fit()
    stamps.append(time.perf_counter())  # the end of the last step
    wall = time.perf_counter() - t0
    xe = np.load(WORK / "x_eval.npy")
    with torch.no_grad():
        x_hat = sae(torch.from_numpy(xe)).numpy()
    out = {"library": "sae-lens", "mode": "sparse COO" if sparse else "dense", "d_sae": d_sae,
           "tokens": trainer.n_training_samples, "fit_seconds": wall,
           **summarise(list(np.diff(stamps[:total_steps + 1])[warmup:])), **metrics(xe, x_hat),
           "threads": torch.get_num_threads()}
    print("RESULT " + json.dumps(out), flush=True)


def run_saelens(d_sae: int, total_steps: int, args: argparse.Namespace, sparse: bool) -> dict:
    """`saelens_worker` in build/saelens-venv's python."""
    cmd = [str(VENV_PY), __file__, "--worker", str(d_sae), "--warmup", str(args.warmup), "--steps",
           str(args.steps), "--threads", str(args.threads)] + (["--sparse"] if sparse else [])
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = [ln for ln in (done.stderr or done.stdout).splitlines() if "Error" in ln and ":" in ln]
    return {"library": "sae-lens", "mode": "sparse COO" if sparse else "dense", "d_sae": d_sae,
            "error": lines[-1][:300] if lines else (done.stderr or done.stdout)[-300:]}


# ---- mechscope side ------------------------------------------------------------------------
def run_mechscope(d_sae: int, args: argparse.Namespace) -> dict[str, float]:
    """One epoch of `train` over the rows (= the same number of steps as sae-lens's run)."""
    sys.path.insert(0, str(REPO / "src"))
    from mechscope.analysis.store import ActivationStore
    from mechscope.sae.train import train

    torch.set_num_threads(args.threads)
    x = np.load(WORK / "x_train.npy")
    n = len(x)
    manifest = {"sites": ["resid"], "layers": [0], "reduce": "all", "model": "synthetic", "dtype": "float32",
                "n_rows": n, "done_examples": 1, "n_examples": 1, "settings": {}, "widths": {"resid": D_IN},
                "shards": []}
    store = ActivationStore(manifest=manifest, memory={"resid.0": x, "example": np.zeros(n, np.int64),
                                                        "position": np.ones(n, np.int64), "token": np.zeros(n, np.int64)})
    ends: list[float] = []  # the end of each step
    t0 = time.perf_counter()
    res = train(store, layer=0, d_sae=d_sae, k=K, batch_size=BATCH, epochs=1, lr=lr_for(d_sae),
                dead_after=DEAD_STEPS * BATCH, sparse=True, progress=False,
                callback=lambda step, row: ends.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    xe = np.load(WORK / "x_eval.npy")
    # ends[i+1] - ends[i] is step i+2: leave out steps 1..warmup
    return {"library": "mechscope", "mode": "sparse (embedding_bag)", "d_sae": d_sae,
            "tokens": int(res.history["tokens"][0, -1]), "fit_seconds": wall,
            **summarise(list(np.diff(ends)[args.warmup - 1:])), **metrics(xe, res.sae(xe)),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-saelens-sparse", action="store_true", help="skip sae-lens's sparse mode")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sparse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = args.warmup + args.steps
    if args.worker:
        saelens_worker(args.worker, total, args.warmup, args.threads, args.sparse)
        return
    if not VENV_PY.exists():
        sys.exit(f"no sae-lens venv at {VENV_PY}: run `make saelens-env` first.")
    make_data(total * BATCH)
    out: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
                              "d_in": D_IN, "k": K, "batch": BATCH, "threads": args.threads,
                              "warmup_steps": args.warmup, "timed_steps": args.steps, "rows": total * BATCH,
                              "runs": []}
    runs: list[dict] = out["runs"]  # type: ignore[assignment]
    print(f"{'library':10s} {'mode':24s} {'d_sae':>6s} {'tok/s':>8s} {'s/step':>7s} {'MSE':>8s} {'FVU':>6s}")
    for d_sae in args.widths:
        rows = [run_mechscope(d_sae, args), run_saelens(d_sae, total, args, False)]
        if not args.no_saelens_sparse:
            rows.append(run_saelens(d_sae, total, args, True))
        for r in rows:
            if "error" in r:
                print(f"{r['library']:10s} {r['mode']:24s} {d_sae:6d} failed: {r['error'][:110]}")
                continue
            print(f"{r['library']:10s} {r['mode']:24s} {d_sae:6d} {r['tokens_per_s']:8.0f} "
                  f"{r['seconds_per_step']:7.2f} {r['mse']:8.2f} {r['fvu']:6.3f}", flush=True)
        ok = [r for r in rows[1:] if "error" not in r]
        if ok:
            best = max(ok, key=lambda r: r["tokens_per_s"])
            ratio = rows[0]["tokens_per_s"] / best["tokens_per_s"]
            rows[0]["ratio_vs_best_saelens"] = ratio
            print(f"  d_sae={d_sae}: mechscope / sae-lens ({best['mode']}) = {ratio:.2f}x", flush=True)
        runs.extend(rows)
    path = WORK.parent / "sae_train_vs_saelens.json"
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
