"""Checkpoints of a training run on disk, and loading any checkpoint as a mechscope `Model`.

A run directory holds its model config and tokenizer once, and one safetensors file of
weights per saved step::

    run_dir/
      config.json            Hugging Face config (written once)
      tokenizer.json ...     the tokenizer (written once)
      run.json               task, seed, hyper-parameters, schedule, training loss
      checkpoints/step_000120.safetensors   (float32 or float16 weights)

`load_checkpoint` also takes a Hugging Face ``save_pretrained`` directory, a ``(hub_id,
revision)`` pair (loaded with ``mechscope.load(hub_id, revision=...)``, which needs a network,
e.g. Pythia's ``("EleutherAI/pythia-70m", "step1000")``; `hub_checkpoints` makes the list),
or a `Model` (returned as is).

>>> import tempfile, torch
>>> from mechscope.dynamics.training import build_model
>>> from mechscope.dynamics.tasks import InductionTask, task_tokenizer
>>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
>>> hf = build_model(task, seed=0, n_layers=1, d_model=16, n_heads=2)
>>> run = tempfile.mkdtemp()
>>> _ = save_run(run, hf, task_tokenizer(task.vocab_size), {"seed": 0})
>>> path = save_checkpoint(run, hf, step=7)
>>> [c.step for c in list_checkpoints(run)]
[7]
>>> model = load_checkpoint(path)
>>> x = task.sample(2, torch.Generator().manual_seed(0))
>>> bool((model.hf(x).logits == hf(x).logits).all())
True
"""

from __future__ import annotations

import copy
import functools
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelLoadError
from ..models.model import Model

CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"
_STEP_RE = re.compile(r"step_(\d+)\.safetensors$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Checkpoint:
    """One saved step of one run; ``load()`` gives it as a `Model`.

    >>> import tempfile
    >>> from mechscope.dynamics import InductionTask, build_model, task_tokenizer
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> hf = build_model(task, n_layers=1, d_model=16, n_heads=2)
    >>> run = save_run(tempfile.mkdtemp(), hf, task_tokenizer(task.vocab_size), {"seed": 0})
    >>> ckpt = Checkpoint(5, save_checkpoint(run, hf, step=5), run)
    >>> ckpt == list_checkpoints(run)[0], ckpt.path.name
    (True, 'step_000005.safetensors')
    >>> model = ckpt.load()
    >>> model.info["step"], model.info["seed"], model.n_layers
    (5, 0, 1)
    """

    step: int
    path: Path
    run_dir: Path

    def load(self, dtype: torch.dtype = torch.float32) -> Model:
        return load_checkpoint(self.path, dtype=dtype)


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{int(step):06d}.safetensors"


def save_run(run_dir: str | Path, hf_model: torch.nn.Module, tokenizer: Any,
             meta: dict[str, Any]) -> Path:
    """Write the config, tokenizer and ``run.json`` of a run (once, before any checkpoint).

    >>> import tempfile
    >>> from mechscope.dynamics import InductionTask, build_model, task_tokenizer
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> hf = build_model(task, n_layers=1, d_model=16, n_heads=2)
    >>> run = save_run(tempfile.mkdtemp(), hf, task_tokenizer(task.vocab_size), {"seed": 3})
    >>> {"checkpoints", "config.json", "run.json", "tokenizer.json"} <= {p.name for p in run.iterdir()}
    True
    >>> read_meta(run)
    {'seed': 3}
    """
    run_dir = Path(run_dir)
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    config: Any = hf_model.config
    config.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    write_meta(run_dir, meta)
    return run_dir


def write_meta(run_dir: str | Path, meta: dict[str, Any]) -> None:
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(path)


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_checkpoint(run_dir: str | Path, hf_model: torch.nn.Module, step: int,
                    dtype: str = "float32") -> Path:
    """Save the weights of ``hf_model`` at ``step`` as safetensors (``dtype`` float32/float16).

    Returns the file's path, ``run_dir/checkpoints/step_NNNNNN.safetensors``.

    >>> import tempfile, torch
    >>> from safetensors.torch import load_file
    >>> from mechscope.dynamics import InductionTask, build_model
    >>> hf = build_model(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
    ...                  n_layers=1, d_model=16, n_heads=2)
    >>> path = save_checkpoint(tempfile.mkdtemp(), hf, step=3, dtype="float16")
    >>> weights = load_file(str(path))
    >>> path.name, weights["lm_head.weight"].dtype
    ('step_000003.safetensors', torch.float16)
    >>> bool(torch.equal(weights["lm_head.weight"], hf.lm_head.weight.detach().half()))
    True
    """
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in hf_model.state_dict().items()}
    save_file(state, str(path), metadata={"step": str(int(step)), "dtype": dtype})
    return path


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """The checkpoints saved in ``run_dir``, by increasing step.

    >>> import tempfile
    >>> from mechscope.dynamics import InductionTask, build_model
    >>> hf = build_model(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
    ...                  n_layers=1, d_model=16, n_heads=2)
    >>> run = tempfile.mkdtemp()
    >>> for step in (30, 2, 7):
    ...     _ = save_checkpoint(run, hf, step)
    >>> [c.step for c in list_checkpoints(run)]
    [2, 7, 30]
    >>> list_checkpoints(tempfile.mkdtemp())
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: ... is not a training run directory (no checkpoints/ folder); ...
    """
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        raise InputError(
            f"{run_dir} is not a training run directory (no {CHECKPOINT_DIR}/ folder); "
            "runs are made by mechscope.dynamics.train(out_dir=...)."
        )
    found = []
    for path in folder.iterdir():
        match = _STEP_RE.search(path.name)
        if match:
            found.append(Checkpoint(int(match.group(1)), path, run_dir))
    return sorted(found, key=lambda c: c.step)


def hub_checkpoints(hub_id: str, steps: Sequence[int], prefix: str = "step"
                    ) -> list[tuple[str, str]]:
    """``(hub_id, revision)`` pairs for a model published with one revision per training step.

    Pythia names its revisions ``step0`` ... ``step143000``:

    >>> hub_checkpoints("EleutherAI/pythia-70m", [0, 1000])
    [('EleutherAI/pythia-70m', 'step0'), ('EleutherAI/pythia-70m', 'step1000')]

    Loading them needs a network (or the revisions in the Hugging Face cache).
    """
    if not isinstance(hub_id, str) or not hub_id.strip():
        raise InputError(f"hub_id must be a non-empty str such as 'EleutherAI/pythia-70m', got {hub_id!r}.")
    if isinstance(steps, str | int) or not len(steps):
        raise InputError(f"steps must be a non-empty list of ints, got {steps!r}.")
    return [(hub_id, f"{prefix}{int(s)}") for s in steps]


def build_from_config(config: Any) -> torch.nn.Module:
    """A randomly initialised model from its config, with eager attention (readable patterns)."""
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zero-element tensors.*")
        return AutoModelForCausalLM.from_config(config, attn_implementation="eager")


@functools.lru_cache(maxsize=8)
def _run_files(run_dir: str, stamp: float) -> tuple[Any, Any]:
    """(config, tokenizer) of a run, read once per run (``stamp``: config.json's mtime)."""
    from transformers import AutoConfig, AutoTokenizer

    return AutoConfig.from_pretrained(run_dir), AutoTokenizer.from_pretrained(run_dir)


def _load_run_checkpoint(path: Path, dtype: torch.dtype) -> Model:
    from safetensors.torch import load_file

    run_dir = path.parent.parent
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json two folders up ({run_dir}): not a run.")
    config, tokenizer = _run_files(str(run_dir), config_file.stat().st_mtime)
    hf = build_from_config(copy.deepcopy(config))  # each model owns its config
    state = load_file(str(path))
    missing, unexpected = hf.load_state_dict({k: v.to(dtype) for k, v in state.items()},
                                             strict=False)
    if unexpected or [m for m in missing if "rotary" not in m]:
        raise ModelLoadError(f"{path} does not match its run's config: missing {missing}, "
                             f"unexpected {unexpected}.")
    hf.to(dtype)
    meta = read_meta(run_dir)
    match = _STEP_RE.search(path.name)
    step = int(match.group(1)) if match else -1
    label = meta.get("label", run_dir.name)
    model = Model.wrap(hf, tokenizer, name=f"{label}@step{step}")
    model.info.update({"step": step, "seed": meta.get("seed"), "run_dir": str(run_dir),
                       "checkpoint": str(path)})
    return model


def load_checkpoint(source: Any, dtype: torch.dtype = torch.float32) -> Model:
    """Any checkpoint as a mechscope `Model`.

    ``source`` is a run checkpoint file (``.../checkpoints/step_N.safetensors``), a
    `Checkpoint`, a Hugging Face ``save_pretrained`` directory, a ``(hub_id, revision)`` pair
    (e.g. ``("EleutherAI/pythia-70m", "step1000")``; needs a network) or a `Model`.
    A run checkpoint reloads bit for bit (see the module example).

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> load_checkpoint(model) is model
    True
    >>> load_checkpoint("no/such/run/checkpoints/step_000001.safetensors")
    Traceback (most recent call last):
        ...
    mechscope.errors.ModelLoadError: no checkpoint at 'no/such/run/checkpoints/step_000001.safetensors': ...
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, Checkpoint):
        return _load_run_checkpoint(source.path, dtype)
    if isinstance(source, tuple):
        if len(source) != 2 or not all(isinstance(s, str) for s in source):
            raise InputError(f"a hub checkpoint is a (hub_id, revision) pair of str, got {source!r}.")
        from ..models.load import load

        hub_id, revision = source
        model = load(hub_id, revision=revision, dtype=dtype)
        model.info["revision"] = revision
        step = re.search(r"(\d+)$", revision)
        if step:
            model.info["step"] = int(step.group(1))
        return model
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.is_file() and _STEP_RE.search(path.name):
            return _load_run_checkpoint(path, dtype)
        if path.is_dir() and (path / "config.json").is_file() and not (path / CHECKPOINT_DIR).is_dir():
            from ..models.load import load

            return load(str(path), dtype=dtype)
        if path.is_dir() and (path / CHECKPOINT_DIR).is_dir():
            raise InputError(
                f"{path} is a whole training run; pick one checkpoint, e.g. "
                f"list_checkpoints({str(path)!r})[-1], or pass the run to dynamics.measure()."
            )
        raise ModelLoadError(
            f"no checkpoint at {str(source)!r}: give a step_N.safetensors file of a run, a "
            "save_pretrained directory, or a (hub_id, revision) pair."
        )
    raise InputError(f"cannot load a checkpoint from {type(source).__name__} {source!r}.")
