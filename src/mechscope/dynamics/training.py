"""`train`: small transformers trained from scratch on CPU, checkpointed on a log-spaced schedule.

The default model is an attention-only 2-layer Llama (RoPE, RMSNorm, 4 heads of width 16,
``d_mlp=0`` so each MLP is an exact zero map) on the default `InductionTask`: AdamW at
``lr=2e-3`` after a 25-step linear warm-up, batches of 32 sequences, 600 steps. Induction heads
form between steps ~150 and ~300 for every seed we tried (0-4). One seed trains in ~15-25 s on
two CPU cores (up to ~60 s when other work shares them); three seeds took 57 s in
notebooks/06_training_dynamics.ipynb, well under 5 minutes.

>>> import tempfile
>>> from mechscope.dynamics import InductionTask, train
>>> runs = train(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5), seeds=(0,),
...              n_layers=1, d_model=16, n_heads=2, steps=8, n_checkpoints=4,
...              out_dir=tempfile.mkdtemp(), progress=False)
>>> runs.steps
[0, 1, 3, 8]
>>> runs.train_loss.shape
(1, 8)
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from .checkpoints import (
    CHECKPOINT_DIR,
    DTYPES,
    Checkpoint,
    list_checkpoints,
    read_meta,
    save_checkpoint,
    save_run,
    write_meta,
)
from .regularisers import SelectivityRegulariser, captured, check_regularisers, regularisation
from .tasks import InductionTask, task_tokenizer

if TYPE_CHECKING:
    from .classification import ClassificationTask
    from .measurement import DynamicsResult

FAMILIES = ("llama", "gpt2")
#: Optimizer, batch generator and weights at the latest checkpoint, to resume an interrupted run.
RESUME_FILE = "resume.safetensors"
#: run.json keys that record what training gave, not how it was set up.
_OUTCOME = ("train_loss", "train_seconds", "torch_threads")


def log_schedule(steps: int, n: int) -> list[int]:
    """About ``n`` distinct steps from 0 to ``steps``, spaced evenly in log(step + 1).

    Early steps that round to the same integer collapse into one, so fewer than ``n`` may
    come back (27 for the default 600 steps and 30 checkpoints); 0 and ``steps`` always do.

    >>> log_schedule(1000, 8)
    [0, 2, 6, 18, 51, 138, 372, 1000]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an int >= 1, got {steps!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"n (the number of checkpoints) must be an int >= 2, got {n!r}.")
    points = np.expm1(np.linspace(0.0, math.log1p(steps), n))
    return sorted({int(round(p)) for p in points} | {0, steps})


def schedule(steps: int, checkpoints: str | Sequence[int], n_checkpoints: int) -> list[int]:
    """The steps to save: ``"log"``, ``"linear"`` or an explicit list (0 = initialisation)."""
    if isinstance(checkpoints, str):
        if checkpoints == "log":
            return log_schedule(steps, n_checkpoints)
        if checkpoints == "linear":
            if n_checkpoints < 2:
                raise InputError(f"n_checkpoints must be >= 2, got {n_checkpoints}.")
            return sorted({int(round(s)) for s in np.linspace(0, steps, n_checkpoints)})
        raise InputError(f"checkpoints must be 'log', 'linear' or a list of steps, got {checkpoints!r}.")
    chosen = sorted({int(s) for s in checkpoints})
    if not chosen or chosen[0] < 0 or chosen[-1] > steps:
        raise InputError(f"checkpoint steps must lie in 0..{steps}, got {list(checkpoints)!r}.")
    return chosen


def build_model(task: InductionTask | ClassificationTask, *, seed: int = 0, n_layers: int = 2, d_model: int = 64,
                n_heads: int = 4, d_mlp: int = 0, family: str = "llama") -> torch.nn.Module:
    """A randomly initialised causal LM over the task's vocabulary (eager attention, no dropout).

    ``d_mlp=0`` (Llama only) makes the model attention-only: each MLP has zero neurons, so it
    adds exactly 0 to the residual stream.

    >>> import torch
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> hf = build_model(task, n_layers=1, d_model=16, n_heads=2)
    >>> hf(task.sample(2, torch.Generator().manual_seed(0))).logits.shape   # (batch, seq_len + 1, vocab)
    torch.Size([2, 13, 17])
    >>> hf.model.layers[0].mlp.up_proj.weight.shape                    # d_mlp=0: no neurons
    torch.Size([0, 16])
    >>> build_model(task, d_model=16, n_heads=3)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: d_model 16 is not divisible by n_heads 3.
    """
    import transformers as tf

    if family not in FAMILIES:
        raise InputError(f"family must be one of {FAMILIES}, got {family!r}.")
    for name, value, low in (("n_layers", n_layers, 1), ("d_model", d_model, 2),
                             ("n_heads", n_heads, 1), ("d_mlp", d_mlp, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}.")
    if d_model % n_heads:
        raise InputError(f"d_model {d_model} is not divisible by n_heads {n_heads}.")
    if family == "llama" and (d_model // n_heads) % 2:
        raise InputError(f"Llama's rotary embeddings need an even head width; d_model / n_heads "
                         f"= {d_model // n_heads}.")
    max_pos = task.seq_len + 1
    if family == "llama":
        config: Any = tf.LlamaConfig(
            vocab_size=task.n_tokens, hidden_size=d_model, intermediate_size=d_mlp,
            num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
            max_position_embeddings=max_pos, tie_word_embeddings=False,
            bos_token_id=task.bos_id, eos_token_id=task.bos_id,
        )  # no pad_token_id: it would freeze <bos>'s embedding at 0 (padding_idx)
        cls: Any = tf.LlamaForCausalLM
    else:
        if d_mlp <= 0:
            raise InputError("family='gpt2' needs d_mlp > 0 (attention-only is Llama's d_mlp=0).")
        config = tf.GPT2Config(
            vocab_size=task.n_tokens, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, n_positions=max_pos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=task.bos_id, eos_token_id=task.bos_id, tie_word_embeddings=False,
        )
        cls = tf.GPT2LMHeadModel
    config._attn_implementation = "eager"
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zero-element tensors.*")
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


@dataclass(frozen=True)
class TrainingRuns:
    """Where a `train` call saved its runs, and what it measured while training.

    ``train_loss[seed_index, step - 1]`` is the mean training loss of that step's batch, shape
    ``(n_seeds, steps)``; ``seconds[i]`` is the wall time of seed ``i``'s training (checkpoint
    writes included).

    >>> import tempfile
    >>> runs = train(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5), seeds=(0, 1),
    ...              n_layers=1, d_model=16, n_heads=2, steps=3, checkpoints=[0, 3],
    ...              out_dir=tempfile.mkdtemp(), progress=False)
    >>> runs.seeds, runs.steps, runs.train_loss.shape
    ([0, 1], [0, 3], (2, 3))
    >>> [c.step for c in runs.checkpoints(1)], [d.name for d in runs.run_dirs]
    ([0, 3], ['seed0', 'seed1'])
    """

    out_dir: Path
    run_dirs: list[Path]
    seeds: list[int]
    steps: list[int]
    train_loss: np.ndarray
    seconds: list[float]
    config: dict[str, Any]

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

    def checkpoints(self, seed_index: int = 0) -> list[Checkpoint]:
        return list_checkpoints(self.run_dirs[seed_index])

    def measure(self, **kwargs: Any) -> DynamicsResult:
        """`mechscope.dynamics.measure` of these runs (same keyword arguments)."""
        from .measurement import measure

        return measure(self, **kwargs)

    def __repr__(self) -> str:
        return (f"TrainingRuns({len(self.seeds)} seeds, {len(self.steps)} checkpoints to step "
                f"{self.steps[-1]}, {self.total_seconds:.1f} s, in {self.out_dir})")


def train(task: InductionTask | ClassificationTask | None = None, *,
          seeds: Sequence[int] = (0, 1, 2),
          n_layers: int = 2, d_model: int = 64, n_heads: int = 4, d_mlp: int = 0,
          family: str = "llama", steps: int = 600, batch_size: int = 32, lr: float = 2e-3,
          warmup: int = 25, weight_decay: float = 0.0, checkpoints: str | Sequence[int] = "log",
          n_checkpoints: int = 30, out_dir: str | Path | None = None, dtype: str = "float32",
          overwrite: bool = False, progress: bool = True, num_threads: int | None = None,
          regularisers: Sequence[SelectivityRegulariser] | None = None) -> TrainingRuns:
    """Train one small model per seed on ``task`` and checkpoint it on a schedule.

    Per seed: the weights are initialised with ``torch.manual_seed(seed)`` and the batches
    come from their own generator seeded with ``seed``, so a run is reproducible and seeds
    differ in both. AdamW, learning rate warmed up linearly over ``warmup`` steps then
    constant; loss on every next-token prediction. ``checkpoints="log"`` saves
    ``n_checkpoints`` steps spaced evenly in log(step + 1), step 0 (initialisation) and the
    last step included. Checkpoints are safetensors of the weights only, in ``dtype``
    ("float32" reloads bitwise; "float16" halves the size); the config, tokenizer and
    ``run.json`` are written once per run, into ``out_dir/seed{seed}/`` (a new temporary
    folder if no ``out_dir``). ``num_threads`` sets torch's thread count during training only.

    ``task`` is an `InductionTask` (loss on every next token) or a
    `mechscope.dynamics.classification.ClassificationTask` (loss on the class read at the last
    position). ``regularisers``: terms added to the loss that act on internals, e.g.
    ``[selectivity_regulariser(layer=0, alpha=-1.0)]`` (`mechscope.dynamics.regularisers`);
    ``train_loss`` records the task loss alone.

    A run folder that already holds checkpoints: an interrupted run with the same settings
    resumes from its last checkpoint (the optimizer, batch generator and float32 weights are
    kept beside it in ``resume.safetensors``, removed when the run ends), so its later
    checkpoints equal an uninterrupted run's bit for bit (seeds that had finished are kept, their
    ``train_loss`` read back from ``run.json``, rounded to 1e-5); a finished call, or a run
    with other settings, is an error unless ``overwrite=True``.

    A seed reproduces its run exactly; a folder holding a run is not overwritten by default:

    >>> import tempfile
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> def run(out_dir, **kw):
    ...     return train(task, seeds=(0,), n_layers=1, d_model=16, n_heads=2, steps=3,
    ...                  n_checkpoints=2, out_dir=out_dir, progress=False, **kw)
    >>> a, b = run(tempfile.mkdtemp()), run(tempfile.mkdtemp())
    >>> bool((a.train_loss == b.train_loss).all()), a.steps
    (True, [0, 3])
    >>> run(a.out_dir)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: .../seed0 already holds checkpoints; pass overwrite=True to replace them, or choose another out_dir.
    """
    from .classification import ClassificationTask

    task = task if task is not None else InductionTask()
    if not isinstance(task, InductionTask | ClassificationTask):
        raise InputError(f"task must be an InductionTask or a ClassificationTask, got "
                         f"{type(task).__name__}.")
    if isinstance(seeds, int):
        raise InputError(f"seeds is a list of ints, e.g. seeds=(0, 1, 2); got {seeds!r}.")
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise InputError(f"seeds must be distinct ints, got {seeds!r}.")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an int >= 1, got {value!r}.")
    if not (isinstance(lr, int | float) and lr > 0) or warmup < 0 or weight_decay < 0:
        raise InputError(f"need lr > 0, warmup >= 0, weight_decay >= 0; got {lr!r}, {warmup!r}, "
                         f"{weight_decay!r}.")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    saved_steps = schedule(steps, checkpoints, n_checkpoints)
    # builds one model to check the architecture arguments before anything is written
    probe = build_model(task, seed=seed_list[0], n_layers=n_layers, d_model=d_model,
                        n_heads=n_heads, d_mlp=d_mlp, family=family)
    regs = check_regularisers(regularisers, probe, task)
    out = (Path(out_dir).expanduser() if out_dir is not None
           else Path(tempfile.mkdtemp(prefix="mechscope-dynamics-")))
    run_dirs = [out / f"seed{seed}" for seed in seed_list]
    hyper = {"family": family, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
             "d_mlp": d_mlp, "steps": steps, "batch_size": batch_size, "lr": lr,
             "warmup": warmup, "weight_decay": weight_decay, "dtype": dtype}
    if regs:
        hyper["regularisers"] = [r.to_dict() for r in regs]
    metas = [json.loads(json.dumps({"label": f"seed{seed}", "seed": seed, "task": task.to_dict(),
                                    **hyper, "checkpoint_steps": saved_steps}))
             for seed in seed_list]
    states = [_prepare_run_dir(d, m, overwrite) for d, m in zip(run_dirs, metas, strict=True)]
    if "resume" not in states and "done" in states:  # nothing to resume: a finished run
        raise InputError(f"{run_dirs[states.index('done')]} already holds checkpoints; pass "
                         "overwrite=True to replace them, or choose another out_dir.")
    tokenizer = task_tokenizer(task.vocab_size)

    from ..progress import progress as progress_bar

    bar = progress_bar(total=steps * len(seed_list), desc="training", unit="step", enabled=progress)
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    losses, seconds = [], []
    try:
        for seed, run_dir, meta, state in zip(seed_list, run_dirs, metas, states, strict=True):
            if state == "done":  # finished before the interruption: kept as it is
                done = read_meta(run_dir)
                losses.append(np.asarray(done["train_loss"], dtype=np.float32))
                seconds.append(float(done.get("train_seconds", 0.0)))
                bar.update(steps)
                continue
            start = time.perf_counter()
            model = build_model(task, seed=seed, n_layers=n_layers, d_model=d_model,
                                n_heads=n_heads, d_mlp=d_mlp, family=family)
            save_run(run_dir, model, tokenizer, meta)
            loss_curve = _train_one(model, task, seed, hyper, saved_steps, run_dir, bar, regs,
                                    state == "resume")
            seconds.append(time.perf_counter() - start)
            meta.update(train_loss=[round(float(x), 5) for x in loss_curve],
                        train_seconds=round(seconds[-1], 3), torch_threads=torch.get_num_threads())
            write_meta(run_dir, meta)
            losses.append(loss_curve)
    finally:
        bar.close()
        if num_threads:
            torch.set_num_threads(old_threads)
    return TrainingRuns(out_dir=out, run_dirs=run_dirs, seeds=seed_list, steps=saved_steps,
                        train_loss=np.stack(losses).astype(np.float32), seconds=seconds,
                        config={"task": task.to_dict(), **hyper})


def _prepare_run_dir(run_dir: Path, meta: dict[str, Any], overwrite: bool) -> str:
    """"resume" (an interrupted run with these settings), "done" (finished, same settings) or
    "fresh" (empty, or cleared with ``overwrite``); refuses another run's checkpoints."""
    existing = run_dir / CHECKPOINT_DIR
    state = run_dir / RESUME_FILE
    if not (existing.is_dir() and any(existing.iterdir())) or overwrite:
        if existing.is_dir():
            shutil.rmtree(existing)
        state.unlink(missing_ok=True)
        return "fresh"
    old = read_meta(run_dir)
    differ = sorted(k for k in set(old) | set(meta)
                    if k not in _OUTCOME and old.get(k) != meta.get(k))
    if differ:
        key = differ[0]
        raise InputError(f"{run_dir} holds another run: its settings differ in {differ} (e.g. "
                         f"{key}: {old.get(key)!r} there, {meta.get(key)!r} now); pass "
                         "overwrite=True to replace it, or choose another out_dir.")
    if "train_loss" in old:
        return "done"
    if not state.is_file():
        raise InputError(f"{run_dir} already holds checkpoints; pass overwrite=True to replace "
                         "them, or choose another out_dir.")
    return "resume"


def _save_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, step: int, curve: np.ndarray) -> None:
    """Everything a resumed run needs at ``step``, as safetensors (JSON metadata), atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for i, entry in opt["state"].items():
        for name, value in entry.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    tensors["rng"] = generator.get_state()
    tensors["loss"] = torch.from_numpy(curve[:step].copy())
    path = run_dir / RESUME_FILE
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step),
                                          "param_groups": json.dumps(opt["param_groups"])})
    tmp.replace(path)


def _load_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, curve: np.ndarray) -> int:
    """Restore what `_save_state` wrote; returns its step (the loss curve is filled up to it)."""
    from safetensors import safe_open

    with safe_open(str(run_dir / RESUME_FILE), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    step = int(meta["step"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                          strict=False)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    generator.set_state(tensors["rng"])
    curve[:step] = tensors["loss"].numpy()
    return step


def _task_loss(task: Any, logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    if hasattr(task, "loss"):
        return task.loss(logits, batch)
    logits = logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             batch[:, 1:].reshape(-1))


def _train_one(model: torch.nn.Module, task: Any, seed: int, hyper: dict[str, Any],
               saved_steps: list[int], run_dir: Path, bar: Any,
               regs: list[SelectivityRegulariser], resume: bool) -> np.ndarray:
    steps, lr, warmup, dtype = hyper["steps"], hyper["lr"], hyper["warmup"], hyper["dtype"]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=hyper["weight_decay"])
    to_save = set(saved_steps)
    curve = np.empty(steps, dtype=np.float32)
    first = 1
    if resume:
        first = _load_state(run_dir, model, optimizer, generator, curve) + 1
        bar.update(first - 1)
    elif 0 in to_save:
        save_checkpoint(run_dir, model, 0, dtype)
        _save_state(run_dir, model, optimizer, generator, 0, curve)
    model.train()
    try:
        with captured(model, regs) as slots:
            for step in range(first, steps + 1):
                if warmup:
                    for group in optimizer.param_groups:
                        group["lr"] = lr * min(1.0, step / warmup)
                batch = task.sample(hyper["batch_size"], generator)
                loss = _task_loss(task, model(batch).logits, batch)
                total = loss + regularisation(regs, slots, task.labels(batch)) if regs else loss
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                curve[step - 1] = float(loss.detach())
                if step in to_save:
                    save_checkpoint(run_dir, model, step, dtype)
                    if step < steps:
                        _save_state(run_dir, model, optimizer, generator, step, curve)
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(seed=seed, loss=f"{curve[step - 1]:.3f}", refresh=False)
    finally:
        model.eval()
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return curve
