"""`train`: sparse dictionaries (SAEs, transcoders, skip transcoders) from a `collect` store.

Collect activations once (``mechscope.collect``), then train several epochs and seeds from the
cache on CPU. Architectures: ``topk`` (sparse decoding), ``batchtopk`` (saved as ``jumprelu``
with the running estimate of the smallest kept activation as its threshold), ``jumprelu``
(straight-through rectangle kernel, L0 penalty) and ``relu`` (L1 weighted by decoder norms);
see `mechscope.sae.objectives`. Decoder rows stay unit norm (the parallel gradient component is
removed, rows renormalised after each step). Inputs and targets are divided by a constant so
``E||x||^2 = d_in`` (measured over the store in a first pass that also refuses NaNs), folded
back in at the end (`SAE.fold_scale`), so the saved dictionaries take raw activations. Dead
latents (no firing for ``dead_after`` tokens) are revived by AuxK in topk / batchtopk. Each
text's first token is left out unless ``keep_first=True``. Data order: `mechscope.sae.train_data`.

With ``out_dir`` a checkpoint (`mechscope.sae.checkpoints`) is written every
``checkpoint_every`` steps and when the run is interrupted; calling `train` again with the same
settings continues it, and the result equals an uninterrupted run's exactly.

>>> import mechscope
>>> from mechscope.analysis.collect import collect
>>> store = collect(mechscope.tiny_model("llama"), ["the cat sat on the mat", "a b c d e f"],
...                 layers=[0], progress=False)
>>> res = train(store, layer=0, d_sae=16, k=4, batch_size=4, epochs=2, progress=False)
>>> res.sae.cfg.architecture, res.history["l0"].shape[0], float(res.history["l0"][0, -1])
('topk', 1, 4.0)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.store import ActivationStore, array_key
from ..errors import InputError
from ..models.sites import site as get_site
from . import checkpoints as ck
from .dictionary import KINDS, SAE
from .objectives import TRAIN_ARCHITECTURES, geometric_median
from .train_data import Rows
from .train_state import METRICS, SeedRun

#: JumpReLU kernel width (SAELens default) and initial threshold, in normalised units (pre-activations
#: are O(1) there; 0.1 rather than 0.001 so a short CPU run moves the log-threshold far enough).
BANDWIDTH = 0.05
INIT_THRESHOLD = 0.1


@dataclass(frozen=True)
class TrainResult:
    """Dictionaries trained by `train`, one per seed, and their training curves.

    ``saes``: one `SAE` per seed (raw-activation units); ``seeds``; ``history``: ``tokens`` and
    each of ``loss``, ``mse``, ``fvu``, ``l0``, ``dead_fraction``, ``aux_loss`` as
    (n_seeds, n_steps) float arrays (normalised units for the losses); ``settings``.

    >>> import mechscope
    >>> from mechscope.analysis.collect import collect
    >>> store = collect(mechscope.tiny_model("llama"), ["one two three four five"], layers=[1],
    ...                 progress=False)
    >>> res = train(store, layer=1, d_sae=8, k=2, batch_size=2, seeds=(0, 1), progress=False)
    >>> steps = int((store.position != 0).sum()) // 2   # rows per epoch // batch_size
    >>> len(res.saes), res.history["fvu"].shape == (2, steps), list(res.to_pandas().columns)[:3]
    (2, True, ['seed', 'step', 'tokens'])
    """

    saes: list[SAE]
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def sae(self) -> SAE:
        """The first seed's dictionary."""
        return self.saes[0]

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (seed, step): tokens seen and every metric."""
        import pandas as pd

        n_seeds, n_steps = self.history["tokens"].shape
        frame = {"seed": np.repeat(np.asarray(self.seeds), n_steps), "step": np.tile(np.arange(1, n_steps + 1), n_seeds)}
        frame.update({k: self.history[k].reshape(-1) for k in ("tokens", *METRICS)})
        return pd.DataFrame(frame)

    def show(self, title: str | None = None) -> Any:
        """The training monitor (`mechscope.widgets.sae_training.TrainingMonitor`) with the final curves."""
        from ..widgets.sae_training import TrainingMonitor

        return TrainingMonitor.from_history(self.seeds, self.history, title=title or _title(self.settings))

    def __repr__(self) -> str:
        s = self.settings
        last = {k: float(self.history[k][0, -1]) if self.history[k].size else float("nan") for k in ("fvu", "l0")}
        return (f"TrainResult({s.get('kind')} {s.get('architecture')} d_sae={s.get('d_sae')}, seeds={list(self.seeds)}, "
                f"steps={self.history['tokens'].shape[1]}, fvu={last['fvu']:.3g}, l0={last['l0']:.3g})")


def _title(s: dict[str, Any]) -> str:
    where = f"{s.get('site')}.{s.get('layer')}" + ("" if s.get("kind") == "sae" else f" -> {s.get('site_out')}")
    return f"{s.get('architecture')} {s.get('kind')} d_sae={s.get('d_sae')} at {where}"


def train(store: ActivationStore, *, layer: int, site: str | None = None, site_out: str | None = None,
          kind: str = "sae", architecture: str = "topk", d_sae: int = 4096, k: int = 32, epochs: int = 1,
          seeds: Sequence[int] = (0,), lr: float | None = None, batch_size: int = 4096,
          sparsity: float | None = None, bandwidth: float = BANDWIDTH, k_aux: int | None = None,
          dead_after: int | None = None, keep_first: bool = False, sparse: bool = True,
          out_dir: str | Path | None = None, checkpoint_every: int = 500, progress: bool = True,
          monitor: bool = False, callback: Callable[[int, dict[str, float]], Any] | None = None) -> TrainResult:
    """Train a sparse dictionary per seed on ``store``'s rows at ``site``/``layer``.

    ``kind``: ``"sae"`` (reconstruct ``site``, default ``resid``), ``"transcoder"`` or
    ``"skip_transcoder"`` (read ``site``, default ``mlp_in``, predict ``site_out``, default
    ``mlp``, same layer). ``architecture``: ``topk`` | ``batchtopk`` | ``jumprelu`` | ``relu``;
    ``k``: latents per row (topk, batchtopk). ``lr``: Adam's rate (default ``2e-4 /
    sqrt(d_sae / 16384)``, sparsify's rule). ``sparsity``: the L0 (jumprelu) or L1 (relu)
    coefficient (default ``d_in / (10 k)``, aiming near ``k`` latents per row). ``k_aux``:
    AuxK latents (default ``d_in // 2``; 0: no AuxK); ``dead_after``: tokens without firing that make a
    latent dead (default ``min(10M, rows per epoch // 2)``). ``sparse``: topk decodes with
    ``embedding_bag`` instead of a dense matmul. ``out_dir``: checkpoints and resume;
    ``progress``: a tqdm bar; ``monitor``: display a live `TrainingMonitor` (at most every 0.5 s);
    ``callback(step, row)``: called after each step (raise in it to stop; the run is checkpointed).

    Returns a `TrainResult`: ``saes`` (one per seed), ``history`` (n_seeds, n_steps) arrays.

    >>> import mechscope
    >>> from mechscope.analysis.collect import collect
    >>> store = collect(mechscope.tiny_model("llama"), ["a b c d e f g"], sites=["mlp_in", "mlp"],
    ...                 layers=[0], progress=False)
    >>> tc = train(store, layer=0, kind="transcoder", architecture="relu", d_sae=8, batch_size=3,
    ...            progress=False).sae
    >>> tc.cfg.site, tc.cfg.site_out, tc.cfg.architecture
    ('mlp_in', 'mlp', 'relu')
    """
    plan = _plan(store, layer=layer, site=site, site_out=site_out, kind=kind, architecture=architecture,
                 d_sae=d_sae, k=k, epochs=epochs, seeds=seeds, lr=lr, batch_size=batch_size, sparsity=sparsity,
                 bandwidth=bandwidth, k_aux=k_aux, dead_after=dead_after, keep_first=keep_first, sparse=sparse,
                 checkpoint_every=checkpoint_every)
    return _Trainer(plan, out_dir, progress, monitor, callback).run()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InputError(f"{name} must be a non-negative integer (0: off), got {value!r}.")
    return int(value)


def _plan(store: ActivationStore, **o: Any) -> dict[str, Any]:
    """Every check before training; the settings (what a resumed run must match) and the rows."""
    if not isinstance(store, ActivationStore):
        raise InputError(f"train takes an ActivationStore (from mechscope.collect), got {type(store).__name__}.")
    if o["kind"] not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {o['kind']!r}.")
    if o["architecture"] not in TRAIN_ARCHITECTURES:
        raise InputError(f"architecture must be one of {TRAIN_ARCHITECTURES}, got {o['architecture']!r}.")
    d_sae = _positive_int("d_sae", o["d_sae"])
    for name in ("epochs", "batch_size", "checkpoint_every"):
        _positive_int(name, o[name])
    transcoder = o["kind"] != "sae"
    site_in = o["site"] or ("mlp_in" if transcoder else "resid")
    site_out = o["site_out"] or ("mlp" if transcoder else site_in)
    if not transcoder and site_out != site_in:
        raise InputError(f"a sparse autoencoder reconstructs its input site {site_in!r}; got site_out="
                         f"{site_out!r}: use kind='transcoder' to predict another site.")
    for name in {site_in, site_out}:
        if get_site(name).name not in store.sites:
            raise InputError(f"the store has no {name!r} activations (it holds sites {store.sites}); "
                             + ("a transcoder needs both its input and output sites: collect "
                                f"sites=[{site_in!r}, {site_out!r}]." if transcoder else
                                f"collect sites=[{name!r}] or pick one of those."))
    layer = o["layer"]
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or int(layer) not in store.layers:
        raise InputError(f"layer must be one of the store's layers {store.layers}, got {layer!r}.")
    k = _positive_int("k", o["k"])
    if o["architecture"] in ("topk", "batchtopk") and k > d_sae:
        raise InputError(f"k={k} latents per row is more than d_sae={d_sae}; use k <= d_sae.")
    seeds = tuple(int(s) for s in o["seeds"]) if not isinstance(o["seeds"], int) else (int(o["seeds"]),)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be a non-empty sequence of distinct ints, got {o['seeds']!r}.")
    if store.n_rows == 0:
        raise InputError("the store is empty (0 rows): collect some texts first.")
    key_in, key_out = array_key(get_site(site_in).name, int(layer)), array_key(get_site(site_out).name, int(layer))
    rows = Rows(store, key_in, key_out, keep_first=bool(o["keep_first"]))
    if rows.n_rows < o["batch_size"]:
        raise InputError(f"the store has {rows.n_rows} usable rows (first tokens left out: "
                         f"{not o['keep_first']}), fewer than batch_size={o['batch_size']}; use a smaller "
                         "batch_size or collect more texts.")
    d_in, d_out = store.width(site_in), store.width(site_out)
    settings = {"store": {"model": store.model_name, "n_rows": store.n_rows,
                          "texts_sha256": store.manifest.get("texts_sha256", "")},
                "layer": int(layer), "site": get_site(site_in).name, "site_out": get_site(site_out).name,
                "kind": o["kind"], "architecture": o["architecture"], "d_in": d_in, "d_out": d_out, "d_sae": d_sae,
                "k": k, "epochs": int(o["epochs"]), "seeds": list(seeds), "batch_size": int(o["batch_size"]),
                "lr": float(o["lr"]) if o["lr"] is not None else 2e-4 / math.sqrt(d_sae / 16384),
                "sparsity": float(o["sparsity"]) if o["sparsity"] is not None else d_in / (10 * k),
                "bandwidth": float(o["bandwidth"]), "k_aux": max(d_in // 2, 1) if o["k_aux"] is None else _count("k_aux", o["k_aux"]),
                "dead_after": int(o["dead_after"] or min(10_000_000, max(rows.n_rows // 2, 1))),
                "keep_first": bool(o["keep_first"]), "sparse": bool(o["sparse"])}
    return {"settings": settings, "rows": rows, "checkpoint_every": int(o["checkpoint_every"])}


class _Trainer:
    """Runs the seeds one after another, checkpointing and reporting."""

    def __init__(self, plan: dict[str, Any], out_dir: Any, progress: bool, monitor: bool,
                 callback: Callable[[int, dict[str, float]], Any] | None) -> None:
        self.s = plan["settings"]
        self.rows: Rows = plan["rows"]
        self.every = plan["checkpoint_every"]
        self.dir = None if out_dir is None else Path(out_dir)
        self.progress, self.callback = bool(progress), callback
        self.bpe = self.rows.batches_per_epoch(self.s["batch_size"])
        self.steps = self.bpe * self.s["epochs"]
        self.monitor: Any = None
        self.last_update = 0.0
        if monitor:
            from ..widgets.sae_training import TrainingMonitor

            self.monitor = TrainingMonitor.from_history(tuple(self.s["seeds"]), None, title=_title(self.s))
            from IPython.display import display

            display(self.monitor)

    def run(self) -> TrainResult:
        self.scale_in, self.scale_out = self.rows.check_and_scale()
        manifest = ck.prepare(self.dir, self.s) if self.dir is not None else None
        done: dict[int, SeedRun] = {}
        if manifest is not None:
            for seed in manifest["finished"]:
                done[seed] = SeedRun.from_arrays(ck.load_arrays(self.dir / ck.seed_name(seed)), seed)  # type: ignore[operator]
        from ..progress import progress as bar_of

        initial = len(done) * self.steps
        resume = None
        if manifest is not None and manifest["checkpoint"]:
            resume = SeedRun.from_arrays(ck.load_arrays(self.dir / manifest["checkpoint"]), -1)  # type: ignore[operator]
            resume.seed = int(ck.load_arrays(self.dir / manifest["checkpoint"])["state"][0])  # type: ignore[operator]
            initial += resume.step
        bar = bar_of(total=self.steps * len(self.s["seeds"]), desc=f"train {self.s['architecture']}",
                     unit="step", initial=initial, enabled=self.progress)
        self.finished = done
        try:
            for seed in self.s["seeds"]:
                if seed in done:
                    continue
                run = resume if resume is not None and resume.seed == seed else self._fresh(seed)
                manifest = self._train_seed(run, manifest, bar)
                done[seed] = run
        finally:
            bar.close()
        self._update_monitor(force=True)
        runs = [done[s] for s in self.s["seeds"]]
        history = {k: np.array([r.history[k] for r in runs], dtype=np.float64) for k in ("tokens", *METRICS)}
        settings = {**self.s, "scale_in": self.scale_in, "scale_out": self.scale_out}
        return TrainResult([self._export(r) for r in runs], tuple(self.s["seeds"]), history, settings)

    def _train_seed(self, run: SeedRun, manifest: dict[str, Any] | None, bar: Any) -> dict[str, Any] | None:
        s = self.s
        options = {"k": s["k"], "k_aux": s["k_aux"], "sparse": s["sparse"], "sparsity": s["sparsity"],
                   "bandwidth": s["bandwidth"]}
        self.current = run
        consistent = True
        try:
            while run.step < self.steps:
                epoch, skip = divmod(run.step, self.bpe)
                batches = itertools.islice(self.rows.epoch(s["batch_size"], seed=run.seed, epoch=epoch), skip, None)
                for xb, yb in batches:
                    x = torch.from_numpy(xb) / self.scale_in
                    y = x if yb is xb else torch.from_numpy(yb) / self.scale_out
                    consistent = False
                    row = run.step_on(x, y, architecture=s["architecture"], lr=s["lr"],
                                      dead_after=s["dead_after"], options=options)
                    consistent = True
                    bar.update(1)
                    if self.progress and hasattr(bar, "set_postfix_str"):
                        bar.set_postfix_str(f"loss {row['loss']:.3g} L0 {row['l0']:.3g} FVU {row['fvu']:.3g}",
                                            refresh=False)
                    self._update_monitor()
                    if manifest is not None and run.step % self.every == 0 and run.step < self.steps:
                        manifest = ck.commit(self.dir, manifest, ck.checkpoint_name(self._global(run)),  # type: ignore[arg-type]
                                             run.to_arrays())
                    if self.callback is not None:
                        self.callback(run.step, row)
        except BaseException:
            if manifest is not None and consistent and run.step > 0:
                ck.commit(self.dir, manifest, ck.checkpoint_name(self._global(run)), run.to_arrays())  # type: ignore[arg-type]
            raise
        if manifest is not None:
            manifest = ck.commit(self.dir, manifest, ck.seed_name(run.seed), run.to_arrays(),  # type: ignore[arg-type]
                                 finished_seed=run.seed)
        return manifest

    def _global(self, run: SeedRun) -> int:
        return self.s["seeds"].index(run.seed) * self.steps + run.step

    def _fresh(self, seed: int) -> SeedRun:
        s = self.s
        base = SAE.random(s["d_in"], s["d_sae"], kind=s["kind"], d_out=s["d_out"], seed=seed)
        first = next(iter(self.rows.epoch(s["batch_size"], seed=seed, epoch=0)))
        x = torch.from_numpy(first[0]) / self.scale_in
        y = torch.from_numpy(first[1]) / self.scale_out
        b_dec = geometric_median(y)
        w_enc = base.W_enc.detach().clone()
        params = {"W_enc": w_enc, "b_enc": torch.zeros(s["d_sae"]), "W_dec": base.W_dec.detach().clone(),
                  "b_dec": b_dec}
        if s["kind"] == "sae":  # start as if the input were centred on b_dec
            params["b_enc"] = -(b_dec @ w_enc)
        else:
            params["b_enc"] = -(x.mean(dim=0) @ w_enc)
        if s["kind"] == "skip_transcoder":
            params["W_skip"] = torch.zeros(s["d_in"], s["d_out"])
        if s["architecture"] == "jumprelu":
            params["log_threshold"] = torch.full((s["d_sae"],), math.log(INIT_THRESHOLD))
        return SeedRun.fresh(params, seed)

    def _export(self, run: SeedRun) -> SAE:
        """The dictionary on raw activations (scales folded in)."""
        s, p = self.s, {k: v.detach().clone() for k, v in run.params.items()}
        arch = {"batchtopk": "jumprelu"}.get(s["architecture"], s["architecture"])
        if s["architecture"] == "batchtopk":
            threshold = torch.full((s["d_sae"],), max(run.threshold, 0.0))
        elif s["architecture"] == "jumprelu":
            threshold = p.pop("log_threshold").exp()
        else:
            threshold = torch.zeros(s["d_sae"])
        ratio = self.scale_out / self.scale_in
        weights = {"W_enc": p["W_enc"] * ratio, "b_enc": p["b_enc"], "W_dec": p["W_dec"], "b_dec": p["b_dec"],
                   "threshold": threshold}
        if "W_skip" in p:
            weights["W_skip"] = p["W_skip"] * ratio
        meta = {"trained_as": s["architecture"], "seed": run.seed, "steps": run.step,
                "tokens": int(run.history["tokens"][-1]) if run.history["tokens"] else 0,
                "scale_in": self.scale_in, "scale_out": self.scale_out,
                **{k: s[k] for k in ("lr", "batch_size", "epochs", "k_aux", "dead_after", "keep_first")}}
        if s["architecture"] in ("relu", "jumprelu"):
            meta["sparsity"] = s["sparsity"]
        from .dictionary import SAEConfig

        cfg = SAEConfig(d_in=s["d_in"], d_sae=s["d_sae"], architecture=arch, kind=s["kind"], d_out=s["d_out"],
                        k=s["k"] if arch == "topk" else None, site=s["site"], layer=s["layer"],
                        site_out=s["site_out"], layer_out=s["layer"], model=s["store"]["model"], metadata=meta)
        return SAE(cfg, weights).fold_scale(self.scale_out)

    def _update_monitor(self, force: bool = False) -> None:
        if self.monitor is None:
            return
        now = time.monotonic()
        if not force and now - self.last_update < 0.5:
            return
        self.last_update = now
        runs = [self.finished.get(seed) for seed in self.s["seeds"]]
        current = getattr(self, "current", None)
        histories = [r.history if r is not None else (current.history if current is not None and
                                                      current.seed == seed else None)
                     for seed, r in zip(self.s["seeds"], runs, strict=True)]
        self.monitor.set_histories(histories)


__all__ = ["train", "TrainResult"]
