"""`measure`: metrics at every checkpoint of one or more runs, as a `DynamicsResult`.

Sources it takes: a `TrainingRuns` (from `train`), one run directory or a list of them, a
list of checkpoints of one run (run checkpoint files, ``save_pretrained`` directories,
``(hub_id, revision)`` pairs, `Model` objects), or a dict ``{run label: run directory or
[checkpoints]}``. All runs must have the same checkpoint steps, read from the checkpoints
(`Checkpoint.step`, ``model.info["step"]``, a revision ``step1000``, a name ``step_120`` or
``checkpoint-120``) or given as ``steps=``.

>>> import tempfile
>>> from mechscope.dynamics import InductionTask, measure, train
>>> runs = train(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5), seeds=(0, 1),
...              n_layers=1, d_model=16, n_heads=2, steps=4, n_checkpoints=3,
...              out_dir=tempfile.mkdtemp(), progress=False)
>>> result = measure(runs, n_seqs=4, progress=False)
>>> result.induction.shape                  # (runs, checkpoints, layers, heads)
(2, 3, 1, 2)
>>> result.metric_names
['first_loss', 'repeated_loss', 'icl_score']
>>> result.curve("repeated_loss").shape     # (runs, checkpoints)
(2, 3)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.model import Model
from .checkpoints import CHECKPOINT_DIR, Checkpoint, list_checkpoints, load_checkpoint, read_meta
from .emergence_steps import WINDOW, EmergenceResult, emergence
from .metrics import BEHAVIOUR, UserMetrics, checkpoint_metrics, repeat_probe, user_metrics
from .training import TrainingRuns

#: Per-head structure metrics; "selectivity" (per neuron) joins them when measured.
HEAD_METRICS = ("induction", "prev_token")


@dataclass(frozen=True)
class DynamicsResult:
    """Metrics per (run, checkpoint), with the labels that index them.

    - ``induction``, ``prev_token``: (runs, checkpoints, layers, heads) head scores;
    - ``behaviour``: (runs, checkpoints, metrics), columns named by ``metric_names``
      (``first_loss``, ``repeated_loss``, ``icl_score``, then user metrics);
    - ``selectivity``: (runs, checkpoints, len(selectivity_layers), d_mlp) neuron
      class-selectivity index, or None when not measured;
    - ``runs`` (labels), ``seeds`` (None when unknown), ``steps`` (checkpoints,),
      ``checkpoints`` (runs x checkpoints names), ``probe`` (how the probe was made).

    Built by `measure`, or by hand (shapes are checked):

    >>> import numpy as np
    >>> ind = np.zeros((2, 3, 1, 2)); ind[:, 1:, 0, 1] = [0.5, 0.9]   # (runs, checkpoints, layers, heads)
    >>> loss = np.stack([np.full((3, 1), 2.0), np.full((3, 1), 1.0)])  # (runs, checkpoints, metrics)
    >>> result = DynamicsResult(["a", "b"], [0, 1], np.array([0, 10, 100]), ind, 0 * ind, loss,
    ...                         ["repeated_loss"])
    >>> result.curve("induction").tolist()                      # best head at each checkpoint
    [[0.0, 0.5, 0.9], [0.0, 0.5, 0.9]]
    >>> result.curve("prev_token", unit=(0, 1)).shape, result.to_pandas().shape
    ((2, 3), (6, 6))
    >>> DynamicsResult(["a"], [0], np.array([0, 10, 100]), ind, 0 * ind, loss, ["repeated_loss"])
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: inconsistent DynamicsResult: induction has shape (2, 3, 1, 2), expected (1, 3, layers, heads); ...
    """

    runs: list[str]
    seeds: list[int | None]
    steps: np.ndarray
    induction: np.ndarray
    prev_token: np.ndarray
    behaviour: np.ndarray
    metric_names: list[str]
    selectivity: np.ndarray | None = None
    selectivity_layers: list[int] = field(default_factory=list)
    selectivity_classes: list[str] = field(default_factory=list)
    checkpoints: list[list[str]] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_runs, n_ckpt = len(self.runs), int(np.asarray(self.steps).size)
        problems = []
        if np.asarray(self.steps).ndim != 1 or np.any(np.diff(self.steps) <= 0):
            problems.append(f"steps must be 1-D and increasing, got {np.asarray(self.steps).tolist()}")
        if len(self.seeds) != n_runs:
            problems.append(f"{len(self.seeds)} seeds for {n_runs} runs")
        for name in ("induction", "prev_token"):
            shape = np.shape(getattr(self, name))
            if len(shape) != 4 or shape[:2] != (n_runs, n_ckpt):
                problems.append(f"{name} has shape {shape}, expected ({n_runs}, {n_ckpt}, layers, heads)")
        if np.shape(self.induction) != np.shape(self.prev_token):
            problems.append("induction and prev_token differ in shape")
        if np.shape(self.behaviour) != (n_runs, n_ckpt, len(self.metric_names)):
            problems.append(f"behaviour has shape {np.shape(self.behaviour)}, expected "
                            f"({n_runs}, {n_ckpt}, {len(self.metric_names)}) for metrics "
                            f"{self.metric_names}")
        if self.selectivity is not None and (
                np.ndim(self.selectivity) != 4
                or np.shape(self.selectivity)[:3] != (n_runs, n_ckpt, len(self.selectivity_layers))):
            problems.append(f"selectivity has shape {np.shape(self.selectivity)}, expected "
                            f"({n_runs}, {n_ckpt}, {len(self.selectivity_layers)}, neurons)")
        if problems:
            raise InputError("inconsistent DynamicsResult: " + "; ".join(problems) + ".")

    # ---- shapes and labels -----------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.induction.shape[2])

    @property
    def n_heads(self) -> int:
        return int(self.induction.shape[3])

    @property
    def structure_names(self) -> list[str]:
        """Per-unit metrics: the head scores, and "selectivity" when measured."""
        return list(HEAD_METRICS) + (["selectivity"] if self.selectivity is not None else [])

    def units(self, name: str) -> tuple[np.ndarray, list[str], list[str]]:
        """(values (runs, checkpoints, rows, cols), row labels, column labels) of a per-unit
        metric: layers x heads ("L0", "H0") or selectivity layers x neurons ("L1", "N0")."""
        if name in HEAD_METRICS:
            values = getattr(self, name)
            return (values, [f"L{i}" for i in range(self.n_layers)],
                    [f"H{h}" for h in range(self.n_heads)])
        if name == "selectivity" and self.selectivity is not None:
            return (self.selectivity, [f"L{i}" for i in self.selectivity_layers],
                    [f"N{n}" for n in range(self.selectivity.shape[3])])
        raise InputError(f"{name!r} is not a per-unit metric of this result; choose from "
                         f"{self.structure_names}.")

    def curve(self, name: str, unit: tuple[int, int] | None = None) -> np.ndarray:
        """(runs, checkpoints) values of a metric.

        Per-unit metrics ("induction", "prev_token", "selectivity"): the best unit (highest
        value) at each checkpoint, or the unit ``(row, col)`` given, e.g. ``(layer, head)``.
        Behaviour metrics: their column.
        """
        if name in self.structure_names:
            values, rows, cols = self.units(name)
            if unit is None:
                flat = values.reshape(*values.shape[:2], -1)
                with np.errstate(invalid="ignore"):
                    return np.where(np.isnan(flat).all(axis=-1), np.nan,
                                    np.nanmax(np.where(np.isnan(flat), -np.inf, flat), axis=-1))
            r, c = unit
            if not (0 <= r < len(rows) and 0 <= c < len(cols)):
                raise InputError(f"unit {unit} is out of range for {name!r}: rows 0..{len(rows) - 1}, "
                                 f"columns 0..{len(cols) - 1}.")
            return values[:, :, r, c]
        if name in self.metric_names:
            if unit is not None:
                raise InputError(f"{name!r} is one number per checkpoint; leave unit out.")
            return self.behaviour[:, :, self.metric_names.index(name)]
        raise InputError(f"unknown metric {name!r}; choose from "
                         f"{self.structure_names + self.metric_names}.")

    # ---- views -------------------------------------------------------------------------------
    def to_pandas(self, heads: bool = False):  # noqa: ANN201
        """One row per (run, step): behaviour metrics and the best unit of each per-unit metric.

        With ``heads=True``: one row per (run, step, layer, head) with both head scores.
        """
        import pandas as pd

        n_runs, n_ckpt = self.behaviour.shape[:2]
        runs = np.asarray(self.runs, dtype=object)
        seeds = np.asarray(self.seeds, dtype=object)
        if heads:
            r, c, layer, h = np.meshgrid(np.arange(n_runs), np.arange(n_ckpt),
                                         np.arange(self.n_layers), np.arange(self.n_heads),
                                         indexing="ij")
            return pd.DataFrame({
                "run": runs[r.ravel()], "seed": seeds[r.ravel()], "step": self.steps[c.ravel()],
                "layer": layer.ravel(), "head": h.ravel(),
                "induction": self.induction.ravel(), "prev_token": self.prev_token.ravel(),
            })
        r, c = np.meshgrid(np.arange(n_runs), np.arange(n_ckpt), indexing="ij")
        frame = pd.DataFrame({"run": runs[r.ravel()], "seed": seeds[r.ravel()],
                              "step": self.steps[c.ravel()]})
        for name in self.structure_names:
            frame[f"{name}_max"] = self.curve(name).ravel()
        for i, name in enumerate(self.metric_names):
            frame[name] = self.behaviour[:, :, i].ravel()
        return frame

    def emergence(self, structure: str = "induction", behaviour: str = "repeated_loss",
                  method: str = "halfway", window: tuple[float, float] = WINDOW
                  ) -> EmergenceResult:
        """Emergence steps and correlation; see `mechscope.dynamics.emergence`."""
        return emergence(self, structure, behaviour, method, window)

    def show(self, structure: str = "induction", behaviour: str = "repeated_loss", **kwargs: Any):  # noqa: ANN201
        """`Dynamics` widget: curves per run, a step slider driving per-run heatmaps of
        ``structure``, and the emergence-step scatter (see `mechscope.widgets.dynamics`)."""
        from ..widgets.dynamics import Dynamics

        return Dynamics(self, structure=structure, behaviour=behaviour, **kwargs)

    def __repr__(self) -> str:
        steps = self.steps.tolist()
        span = f"steps {steps[0]}..{steps[-1]}" if steps else "no steps"
        sel = (f", selectivity of {self.selectivity.shape[3]} neurons at layers "
               f"{self.selectivity_layers}" if self.selectivity is not None else "")
        return (f"DynamicsResult({len(self.runs)} runs {self.runs}, {len(steps)} checkpoints "
                f"({span}), {self.n_layers} layers x {self.n_heads} heads, behaviour "
                f"{self.metric_names}{sel})")


# ---- sources -----------------------------------------------------------------------------------
_NAME_STEP = (re.compile(r"step[_-]?(\d+)"), re.compile(r"checkpoint-(\d+)"), re.compile(r"(\d+)$"))


def _step_of(item: Any) -> int | None:
    if isinstance(item, Checkpoint):
        return item.step
    if isinstance(item, Model):
        step = item.info.get("step")
        return int(step) if step is not None else None
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
        match = re.search(r"(\d+)$", item[1])  # hub revisions such as "step1000"
        return int(match.group(1)) if match else None
    if isinstance(item, str | Path):
        name = Path(item).name
        for pattern in _NAME_STEP:
            match = pattern.search(name.removesuffix(".safetensors"))
            if match:
                return int(match.group(1))
    return None


def _label_of(item: Any) -> str:
    if isinstance(item, Checkpoint):
        return str(item.path)
    if isinstance(item, Model):
        return item.name
    if isinstance(item, tuple):
        return "@".join(str(i) for i in item)
    return str(item)


def _is_run_dir(item: Any) -> bool:
    return isinstance(item, str | Path) and (Path(item).expanduser() / CHECKPOINT_DIR).is_dir()


def _resolve(source: Any) -> list[tuple[str, int | None, list[Any]]]:
    """[(label, seed, checkpoints)] for every accepted kind of source."""
    if isinstance(source, TrainingRuns):
        return [(f"seed{s}", s, list_checkpoints(d))
                for s, d in zip(source.seeds, source.run_dirs, strict=True)]
    if _is_run_dir(source):
        source = [source]
    if isinstance(source, Mapping):
        runs = []
        for key, value in source.items():
            if _is_run_dir(value):
                runs.append((str(key), read_meta(value).get("seed"), list_checkpoints(value)))
            elif isinstance(value, Sequence) and not isinstance(value, str | bytes | tuple):
                runs.append((str(key), None, list(value)))
            else:
                raise InputError(f"run {key!r}: give a run directory or a list of checkpoints, "
                                 f"got {type(value).__name__}.")
        return runs
    if isinstance(source, Sequence) and not isinstance(source, str | bytes | tuple):
        items = list(source)
        if items and all(_is_run_dir(i) for i in items):
            runs = []
            for run_dir in items:
                meta = read_meta(run_dir)
                runs.append((str(meta.get("label", Path(run_dir).name)), meta.get("seed"),
                             list_checkpoints(run_dir)))
            return runs
        return [("run0", None, items)]
    raise InputError(
        "measure() takes TrainingRuns, a run directory, a list of run directories, a list of "
        f"checkpoints or a dict of them; got {type(source).__name__}."
    )


def _check_items(runs: list[tuple[str, int | None, list[Any]]]) -> None:
    """Local checkpoints must exist before any is loaded."""
    for label, _, items in runs:
        for item in items:
            if isinstance(item, str | Path) and not Path(item).expanduser().exists():
                raise InputError(f"run {label!r}: no checkpoint at {str(item)!r} (path does not "
                                 "exist).")
            if not isinstance(item, str | Path | tuple | Checkpoint | Model):
                raise InputError(f"run {label!r}: a checkpoint is a path, a (hub_id, revision) "
                                 f"pair, a Checkpoint or a Model, got {type(item).__name__}.")


def _resolve_steps(runs: list[tuple[str, int | None, list[Any]]],
                   steps: Sequence[int] | None) -> list[int]:
    lengths = {len(c) for _, _, c in runs}
    if lengths == {0} or len(lengths) != 1:
        raise InputError("every run needs the same, non-zero number of checkpoints; got "
                         f"{[len(c) for _, _, c in runs]} for runs {[r for r, _, _ in runs]}.")
    n = lengths.pop()
    if steps is not None:
        chosen = [int(s) for s in steps]
        if len(chosen) != n:
            raise InputError(f"steps has {len(chosen)} entries for {n} checkpoints per run.")
    else:
        read = [[_step_of(item) for item in ckpts] for _, _, ckpts in runs]
        if any(s is None for row in read for s in row):
            missing = next(_label_of(item) for _, _, ckpts in runs for item in ckpts
                           if _step_of(item) is None)
            raise InputError(f"cannot read a training step from {missing!r}; name checkpoints "
                             "step_N / checkpoint-N, or pass steps=[...] to measure().")
        chosen = [int(s) for s in read[0]]  # type: ignore[arg-type]
        for (label, _, _), row in zip(runs[1:], read[1:], strict=True):
            if row != chosen:
                raise InputError(f"run {label!r} has checkpoint steps {row}, run "
                                 f"{runs[0][0]!r} has {chosen}; every run needs the same steps.")
    if any(b <= a for a, b in zip(chosen, chosen[1:], strict=False)) or chosen[0] < 0:
        raise InputError(f"checkpoint steps must be non-negative and increasing, got {chosen}; "
                         "list the checkpoints in training order.")
    return chosen


def measure(source: Any, *, metrics: UserMetrics = None, steps: Sequence[int] | None = None,
            n_seqs: int = 32, span_len: int | None = None, n_repeats: int = 2,
            probe_seed: int = 0, batch_size: int = 32,
            neuron_examples: Mapping[str, Sequence[str]] | None = None,
            neuron_layers: Sequence[int] | None = None,
            progress: bool = True) -> DynamicsResult:
    """Induction and previous-token scores per head, behaviour, and optionally neuron
    selectivity, at every checkpoint of every run.

    The probe (see `mechscope.dynamics.metrics`) is built once from the first checkpoint's
    tokenizer and used for every checkpoint. ``span_len`` defaults to the task's
    ``max_span`` for runs made by `train` (capped at 20), else 20. ``metrics`` adds
    user metrics: ``{name: fn(model) -> float}`` or a list of named functions.
    ``neuron_examples`` (``{class: [texts]}``, e.g. `InductionTask.labelled_texts`) adds the
    class-selectivity index of every MLP neuron at ``neuron_layers`` (default: all layers).
    Everything is checked on the first checkpoint before the others are loaded.

    Any models can be checkpoints; without a step in their names, ``steps=`` gives them:

    >>> import mechscope
    >>> from mechscope.dynamics import checkpoint_metrics, repeat_probe
    >>> models = [mechscope.tiny_model("llama", seed=s) for s in (0, 1)]    # two "checkpoints"
    >>> result = measure(models, steps=[0, 100], n_seqs=2, span_len=3, progress=False)
    >>> result.induction.shape, result.runs, result.steps.tolist()   # (runs, checkpoints, layers, heads)
    ((1, 2, 2, 4), ['run0'], [0, 100])
    >>> alone = checkpoint_metrics(models[1], repeat_probe(models[0], n_seqs=2, span_len=3))
    >>> bool(np.allclose(result.prev_token[0, 1], alone.prev_token))
    True
    """
    runs = _resolve(source)
    _check_items(runs)
    step_list = _resolve_steps(runs, steps)
    pairs = user_metrics(metrics)
    names = list(BEHAVIOUR) + [name for name, _ in pairs]

    first = load_checkpoint(runs[0][2][0])
    length = span_len
    if length is None:
        task = read_meta(first.info["run_dir"]).get("task", {}) if "run_dir" in first.info else {}
        length = min(20, int(task.get("max_span", 20)))
    probe = repeat_probe(first, n_seqs=n_seqs, span_len=length, n_repeats=n_repeats,
                         seed=probe_seed)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    sel_layers: list[int] = []
    classes: list[str] = []
    if neuron_examples is not None:
        if first.d_mlp == 0:
            raise InputError(f"{first.name} has no MLP neurons (d_mlp=0, attention-only), so "
                             "neuron selectivity is undefined; drop neuron_examples or train "
                             "with d_mlp > 0.")
        if not isinstance(neuron_examples, Mapping) or len(neuron_examples) < 2:
            raise InputError("neuron_examples must map at least two class labels to lists of "
                             "texts, e.g. InductionTask().labelled_texts().")
        layers = range(first.n_layers) if neuron_layers is None else neuron_layers
        sel_layers = sorted({first.check_layer(layer) for layer in layers})
        classes = [str(c) for c in neuron_examples]
        for label, texts in neuron_examples.items():
            if isinstance(texts, str) or not len(texts):
                raise InputError(f"class {label!r} needs a non-empty list of texts.")
            for text in texts:
                first.to_tokens(text)
    elif neuron_layers is not None:
        raise InputError("neuron_layers needs neuron_examples (the labelled texts to score "
                         "neurons on).")

    from ..progress import progress as progress_bar

    total = sum(len(c) for _, _, c in runs)
    bar = progress_bar(total=total, desc="measuring", unit="ckpt", enabled=progress)
    ind, prev, beh, sel = [], [], [], []
    try:
        for r, (_, _, ckpts) in enumerate(runs):
            for c, item in enumerate(ckpts):
                model = first if (r, c) == (0, 0) else load_checkpoint(item)
                if (model.n_layers, model.n_heads) != (first.n_layers, first.n_heads):
                    raise InputError(f"{_label_of(item)} has {model.n_layers} layers x "
                                     f"{model.n_heads} heads, the first checkpoint "
                                     f"{first.n_layers} x {first.n_heads}; every checkpoint "
                                     "must share one architecture.")
                m = checkpoint_metrics(model, probe, dict(pairs), batch_size=batch_size,
                                       neuron_examples=neuron_examples, neuron_layers=sel_layers)
                ind.append(m.induction)
                prev.append(m.prev_token)
                beh.append([m.behaviour[n] for n in names])
                if m.selectivity is not None:
                    sel.append(m.selectivity)
                bar.update(1)
    finally:
        bar.close()
    n_runs, n_ckpt = len(runs), len(step_list)

    def grid(values: Sequence[Any]) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float32)
        return arr.reshape(n_runs, n_ckpt, *arr.shape[1:])

    return DynamicsResult(
        runs=[label for label, _, _ in runs], seeds=[seed for _, seed, _ in runs],
        steps=np.asarray(step_list, dtype=np.int64), induction=grid(ind), prev_token=grid(prev),
        behaviour=grid(beh), metric_names=names, selectivity=grid(sel) if sel else None,
        selectivity_layers=sel_layers, selectivity_classes=classes,
        checkpoints=[[_label_of(item) for item in ckpts] for _, _, ckpts in runs],
        probe={"n_seqs": n_seqs, "span_len": probe.span_len, "n_repeats": n_repeats,
               "seed": probe_seed, "has_bos": probe.has_bos, "n_positions": probe.n_positions},
    )
