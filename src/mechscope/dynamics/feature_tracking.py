"""Sparse dictionary features across training checkpoints and across dictionary seeds.

`dictionaries_over_training` trains a small TopK dictionary (`mechscope.sae.train`) on the
activations of each chosen checkpoint of each run, on one fixed set of task samples, and caches
each checkpoint's decoders on disk so a rerun trains nothing twice. `feature_timeline` matches
consecutive checkpoints of each run (`mechscope.dynamics.matching.match_features`) and counts
features matched, born, dying, splitting and merging; `cross_seed_share` gives the share of one
dictionary's features found in every other (different dictionary seeds on the same
checkpoint: Paulo & Belrose 2025 report ~30% at 131k latents on Llama-3-8B), against random
dictionaries of the same shape.

Different *model* seeds have unrelated residual bases (each starts from its own random
embedding), so decoder cosines only mean something within one run: the dictionary seeds are
what `cross_seed_share` compares. Each checkpoint's dictionaries start from their own random
initialisation (`dictionary_seed` of the run, the dictionary seed and the step), so a feature
kept across checkpoints or runs is learned again, not left over from a shared initialisation;
``init_cosine`` tells which latents barely moved from theirs (often dead latents).

Definitions for two consecutive checkpoints (cosines of decoder rows, ``threshold`` default
0.7): *matched*: pairs of the optimal one-to-one assignment at or above threshold; *born*: later
features with no earlier feature at threshold; *died*: earlier features with no later one at
threshold; *split*: earlier features with two or more later ones at threshold (not exclusive);
*merged*: later features with two or more earlier ones.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(8, 32))
>>> tl = feature_timeline([[a, a[::-1], rng.normal(size=(8, 32))]], steps=[0, 10, 20])
>>> tl.counts["matched"].tolist(), tl.counts["born"].tolist()
([[8, 0]], [[0, 8]])
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sae.train import train as train_sae
from .matching import (
    THRESHOLD,
    CrossSeedShare,
    check_threshold,
    cosine_matrix,
    cross_seed_share,
    match_features,
)

EVENTS = ("matched", "born", "died", "split", "merged")
CACHE = "dictionaries"

__all__ = ["FeatureTimeline", "TrainingDictionaries", "dictionaries_over_training", "dictionary_seed",
           "feature_timeline"]
_REEXPORTED = (CrossSeedShare, cross_seed_share)  # importable from here too (they live in matching)


@dataclass(frozen=True)
class TrainingDictionaries:
    """Decoders of the dictionaries trained at each checkpoint of each run.

    ``decoders``: (n_runs, n_checkpoints, n_sae_seeds, d_sae, d_in) float32; ``fvu``: (n_runs,
    n_checkpoints, n_sae_seeds) the final training FVU; ``runs`` (labels), ``steps`` (the
    checkpoints' training steps, one list per run), ``sae_seeds``, ``settings``;
    ``init_cosine``: like ``fvu`` with a last axis d_sae, each decoder row's cosine with its
    initial value (near 1: a latent that hardly trained).

    >>> d = TrainingDictionaries(np.zeros((1, 2, 1, 4, 3), np.float32), np.zeros((1, 2, 1)),
    ...                          ["seed0"], [[0, 5]], (0,))
    >>> d.final(0).shape
    (1, 4, 3)
    """

    decoders: np.ndarray
    fvu: np.ndarray
    runs: list[str]
    steps: list[list[int]]
    sae_seeds: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    init_cosine: np.ndarray | None = None

    def final(self, run: int = 0) -> np.ndarray:
        """(n_sae_seeds, d_sae, d_in): the decoders of ``run``'s last checkpoint."""
        return self.decoders[run, -1]

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (run, step, sae_seed) with its FVU."""
        import pandas as pd

        rows = [{"run": r, "step": s, "sae_seed": seed, "fvu": float(self.fvu[i, j, k])}
                for i, r in enumerate(self.runs) for j, s in enumerate(self.steps[i])
                for k, seed in enumerate(self.sae_seeds)]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        n_runs, n_ck, n_seeds, d_sae, d_in = self.decoders.shape
        return (f"TrainingDictionaries({n_runs} runs x {n_ck} checkpoints x {n_seeds} seeds, d_sae={d_sae}, "
                f"d_in={d_in}, mean fvu {float(self.fvu.mean()):.3g})")


def _runs(run_dirs: Any) -> list[Path]:
    run_dirs = getattr(run_dirs, "run_dirs", run_dirs)
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise InputError("run_dirs is empty: pass the run directories of dynamics.train "
                         "(runs.run_dirs) or the TrainingRuns itself.")
    return dirs


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _plan(run_dirs: Any, layer: Any, every: int) -> list[tuple[Path, Any, list[Any]]]:
    """(run_dir, task, chosen checkpoints) per run, every check done before any training."""
    from .checkpoints import list_checkpoints, read_meta
    from .tasks import InductionTask

    plan = []
    for run in _runs(run_dirs):
        checkpoints = list_checkpoints(run)
        if not checkpoints:
            raise InputError(f"{run} has no checkpoints yet; train it first (dynamics.train).")
        meta = read_meta(run)
        task = meta.get("task", {})
        if task.get("name") != "induction":
            raise InputError(f"{run} was not trained on an InductionTask (task {task.get('name')!r}); "
                             "dictionaries_over_training samples induction sequences.")
        n_layers = int(meta.get("n_layers", json.loads((run / "config.json").read_text())["num_hidden_layers"]))
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or not 0 <= layer < n_layers:
            raise InputError(f"layer must be an int in [0, {n_layers}) for {run} ({n_layers} layers), got {layer!r}.")
        chosen = checkpoints[::every]
        if chosen[-1] is not checkpoints[-1]:
            chosen.append(checkpoints[-1])
        plan.append((run, InductionTask.from_dict(task), chosen))
    return plan


def _texts(task: Any, n_tokens: int, seed: int) -> list[str]:
    """Task samples (``<bos>`` left to the tokenizer) holding at least ``n_tokens`` tokens."""
    import torch

    n = math.ceil(n_tokens / task.seq_len)
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    return [" ".join(f"t{int(t)}" for t in row[1:]) for row in batch]


def _settings(layer: int, site: str, o: dict[str, Any]) -> dict[str, Any]:
    return {"layer": int(layer), "site": site, **o}


def _cache_dir(run: Path, cache_dir: Any, settings: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(cache_dir) / run.name if cache_dir is not None else run / CACHE
    folder = base / f"{settings['site']}{settings['layer']}_{key}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    return folder


def dictionary_seed(run: str, sae_seed: int, step: int) -> int:
    """The training seed of dictionary ``sae_seed`` at ``step`` of the run named ``run``.

    Distinct for every (run, seed, step), so no two dictionaries share an initialisation.

    >>> dictionary_seed("seed0", 0, 600) != dictionary_seed("seed1", 0, 600)
    True
    """
    digest = hashlib.sha256(f"{run}/{int(sae_seed)}/{int(step)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _one_checkpoint(checkpoint: Any, texts: list[str], s: dict[str, Any]) -> dict[str, np.ndarray]:
    """(n_sae_seeds, d_sae, d_in) decoders, (n_sae_seeds,) FVUs, (n_sae_seeds, d_sae) init cosines."""
    from ..analysis.collect import collect
    from ..sae.dictionary import SAE

    model = checkpoint.load()
    store = collect(model, texts, sites=[s["site"]], layers=[s["layer"]], progress=False)
    decs, fvus, moved = [], [], []
    for sae_seed in s["sae_seeds"]:
        seed = dictionary_seed(checkpoint.run_dir.name, sae_seed, checkpoint.step)
        res = train_sae(store, layer=s["layer"], site=s["site"], d_sae=s["d_sae"], k=s["k"], epochs=s["epochs"],
                        batch_size=s["batch_size"], seeds=(seed,), progress=False)
        dec = res.sae.W_dec.detach().numpy().astype(np.float32)
        init = SAE.random(dec.shape[1], dec.shape[0], seed=seed).W_dec.detach().numpy()
        decs.append(dec)
        fvus.append(float(res.history["fvu"][0, -1]))
        moved.append(np.diag(cosine_matrix(dec, init)))
    return {"decoders": np.stack(decs), "fvu": np.asarray(fvus), "init_cosine": np.stack(moved)}


def dictionaries_over_training(run_dirs: Any, *, layer: int, site: str = "resid", d_sae: int = 64, k: int = 4,
                               every: int = 1, n_tokens: int = 8192, epochs: int = 5, batch_size: int = 256,
                               sae_seeds: Sequence[int] = (0, 1), data_seed: int = 0, cache_dir: Any = None,
                               progress: bool = True) -> TrainingDictionaries:
    """Train a TopK dictionary per (run, checkpoint, dictionary seed), cached on disk.

    ``run_dirs``: a `TrainingRuns` or run directories of `mechscope.dynamics.train` on an
    `InductionTask`; ``layer``/``site``: where activations are read; ``every``: keep every n-th
    checkpoint (the last always); ``n_tokens``: task tokens collected per checkpoint (the same
    samples, seed ``data_seed``, for every checkpoint and run); ``d_sae``, ``k``, ``epochs``,
    ``batch_size``: `mechscope.sae.train` settings; ``sae_seeds``: dictionaries per checkpoint
    (for `cross_seed_share`). Decoders are cached under ``run_dir/dictionaries/`` (or
    ``cache_dir/<run name>/``), one file per checkpoint and settings, so a second call trains
    nothing. Returns a `TrainingDictionaries` ((n_runs, n_checkpoints, n_sae_seeds, d_sae,
    d_in) decoders); runs must share their checkpoint count.

    >>> import tempfile
    >>> from mechscope import dynamics
    >>> runs = dynamics.train(dynamics.InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
    ...                       seeds=(0,), n_layers=1, d_model=16, n_heads=2, steps=4, checkpoints=[0, 4],
    ...                       out_dir=tempfile.mkdtemp(), progress=False)
    >>> d = dictionaries_over_training(runs, layer=0, d_sae=8, k=2, n_tokens=120, epochs=1, batch_size=32,
    ...                                progress=False)
    >>> d.decoders.shape, d.steps
    ((1, 2, 2, 8, 16), [[0, 4]])
    """
    every = _positive("every", every)
    seeds = tuple(int(x) for x in sae_seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"sae_seeds must be a non-empty sequence of distinct ints, got {sae_seeds!r}.")
    o: dict[str, Any] = {"d_sae": _positive("d_sae", d_sae), "k": _positive("k", k), "n_tokens": _positive("n_tokens", n_tokens),
         "epochs": _positive("epochs", epochs), "batch_size": _positive("batch_size", batch_size),
         "sae_seeds": list(seeds), "data_seed": int(data_seed), "seeding": "dictionary_seed"}
    if o["k"] > o["d_sae"]:
        raise InputError(f"k={k} latents per row is more than d_sae={d_sae}; use k <= d_sae.")
    plan = _plan(run_dirs, layer, every)
    if len({len(c) for _, _, c in plan}) != 1:
        raise InputError(f"the runs have different numbers of chosen checkpoints {[len(c) for _, _, c in plan]}; "
                         "pass runs saved on one schedule.")
    from ..progress import progress as bar_of

    s = _settings(int(layer), site, o)
    bar = bar_of(total=sum(len(c) for _, _, c in plan), desc="dictionaries", unit="checkpoint", enabled=progress)
    found: list[dict[str, np.ndarray]] = []
    try:
        for run, task, chosen in plan:
            folder, texts = _cache_dir(run, cache_dir, s), _texts(task, o["n_tokens"], o["data_seed"])
            per_run = []
            for checkpoint in chosen:
                per_run.append(_cached(folder, checkpoint, texts, s))
                bar.update(1)
            found.append({key: np.stack([c[key] for c in per_run]) for key in per_run[0]})
    finally:
        bar.close()
    return TrainingDictionaries(np.stack([f["decoders"] for f in found]), np.stack([f["fvu"] for f in found]),
                                [r.name for r, _, _ in plan], [[c.step for c in chosen] for _, _, chosen in plan],
                                seeds, s, np.stack([f["init_cosine"] for f in found]))


def _cached(folder: Path, checkpoint: Any, texts: list[str], s: dict[str, Any]) -> dict[str, np.ndarray]:
    path = folder / f"step_{checkpoint.step:06d}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return {key: saved[key] for key in ("decoders", "fvu", "init_cosine")}
    arrays = _one_checkpoint(checkpoint, texts, s)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return arrays


@dataclass(frozen=True)
class FeatureTimeline:
    """Features matched, born, dying, splitting and merging between consecutive checkpoints.

    ``counts``: event name (``EVENTS``) -> (n_runs, n_checkpoints - 1) int, column t for the
    step from checkpoint t to t + 1; ``mean_cosine``: (n_runs, n_checkpoints - 1) mean cosine of
    the optimal assignment; ``steps``: (n_runs, n_checkpoints) training steps; ``runs``;
    ``d_sae``; ``threshold``. (Definitions: the module docstring.)

    >>> import numpy as np
    >>> a = np.eye(4)
    >>> tl = feature_timeline([[a, a[[1, 0, 2]]]], steps=[0, 9])
    >>> {e: int(v[0, 0]) for e, v in tl.counts.items()}
    {'matched': 3, 'born': 0, 'died': 1, 'split': 0, 'merged': 0}
    """

    counts: dict[str, np.ndarray]
    mean_cosine: np.ndarray
    steps: np.ndarray
    runs: list[str]
    d_sae: int
    threshold: float

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (run, transition): ``run``, ``step_from``, ``step_to``, each event, ``mean_cosine``."""
        import pandas as pd

        rows = []
        for i, run in enumerate(self.runs):
            for t in range(self.mean_cosine.shape[1]):
                rows.append({"run": run, "step_from": int(self.steps[i, t]), "step_to": int(self.steps[i, t + 1]),
                             **{e: int(self.counts[e][i, t]) for e in EVENTS},
                             "mean_cosine": float(self.mean_cosine[i, t])})
        return pd.DataFrame(rows)

    def show(self, title: str | None = None) -> Any:
        """A `mechscope.widgets.Heatmap`: rows (run, event), columns the transitions of run 0's steps."""
        from ..widgets.heatmap import Heatmap

        values = np.concatenate([np.stack([self.counts[e][i] for e in EVENTS]) for i in range(len(self.runs))])
        rows = [f"{run} {e}" for run in self.runs for e in EVENTS]
        cols = [f"{a}->{b}" for a, b in zip(self.steps[0, :-1], self.steps[0, 1:], strict=True)]
        return Heatmap(values.astype(np.float64), row_labels=rows, col_labels=cols,
                       title=title or f"features between checkpoints (d_sae={self.d_sae}, cos >= {self.threshold})")

    def __repr__(self) -> str:
        totals = ", ".join(f"{e} {int(self.counts[e].sum())}" for e in EVENTS)
        return f"FeatureTimeline({len(self.runs)} runs x {self.mean_cosine.shape[1]} transitions: {totals})"


def _transition(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[dict[str, int], float]:
    cos = cosine_matrix(a, b)
    m = match_features(a, b, threshold)
    above = cos >= threshold
    counts = {"matched": m.n_matched, "born": int((~above.any(axis=0)).sum()), "died": int((~above.any(axis=1)).sum()),
              "split": int((above.sum(axis=1) >= 2).sum()), "merged": int((above.sum(axis=0) >= 2).sum())}
    return counts, float(m.cosine.mean())


def feature_timeline(dicts: Any, *, threshold: float = THRESHOLD, sae_seed: int = 0,
                     steps: Sequence[int] | None = None) -> FeatureTimeline:
    """Match each run's consecutive checkpoint dictionaries and count what appears and goes.

    ``dicts``: a `TrainingDictionaries` (its ``sae_seed``-th dictionary seed) or a list, one
    per run, of lists of (d_sae, d_in) decoders, one per checkpoint (``steps``: their steps,
    default 0, 1, ...). Returns a `FeatureTimeline` ((n_runs, n_checkpoints - 1) counts).

    >>> import numpy as np
    >>> p, q = np.eye(8)[0], np.eye(8)[1]
    >>> before, after = np.eye(8)[:3], np.stack([p + 0.6 * q, p - 0.6 * q, np.eye(8)[2]])
    >>> feature_timeline([[before, after]]).counts["split"].tolist()
    [[1]]
    """
    threshold = check_threshold(threshold)
    if isinstance(dicts, TrainingDictionaries):
        if sae_seed not in range(len(dicts.sae_seeds)):
            raise InputError(f"sae_seed is an index into the {len(dicts.sae_seeds)} dictionary seeds, got {sae_seed!r}.")
        runs, labels = [list(dicts.decoders[i, :, sae_seed]) for i in range(len(dicts.runs))], dicts.runs
        step_rows = np.asarray(dicts.steps)
    else:
        runs = [list(r) for r in dicts]
        labels = [f"run{i}" for i in range(len(runs))]
        if not runs or len({len(r) for r in runs}) != 1 or len(runs[0]) < 2:
            raise InputError("dicts must hold one list of two or more checkpoint decoders per run, all runs "
                             f"the same length; got lengths {[len(r) for r in runs]}.")
        n = len(runs[0])
        step_list = list(range(n)) if steps is None else [int(s) for s in steps]
        if len(step_list) != n:
            raise InputError(f"steps has {len(step_list)} entries for {n} checkpoints per run.")
        step_rows = np.tile(np.asarray(step_list), (len(runs), 1))
    if step_rows.shape[1] < 2:
        raise InputError("a timeline needs two or more checkpoints per run.")
    counts = {e: np.zeros((len(runs), step_rows.shape[1] - 1), dtype=np.int64) for e in EVENTS}
    mean_cos = np.zeros((len(runs), step_rows.shape[1] - 1))
    for i, run in enumerate(runs):
        for t in range(len(run) - 1):
            c, mean_cos[i, t] = _transition(run[t], run[t + 1], threshold)
            for e in EVENTS:
                counts[e][i, t] = c[e]
    return FeatureTimeline(counts, mean_cos, step_rows, list(labels), int(np.asarray(runs[0][0]).shape[0]), threshold)

