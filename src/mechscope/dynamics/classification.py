"""A classification task for `train`, and the class-selectivity regularisation sweep.

`ClassificationTask`: sequences ``<bos> x1 .. xL`` of tokens ``t0 .. t{V-1}``; token ``t``
belongs to group ``t mod n_classes`` and a sequence's class is the group with strictly the
most tokens in it (a counting pattern; ties are never sampled). Each sequence is made by
drawing its class ``c`` and filling every position with a token of group ``c`` with
probability ``signal``, else a uniformly random token. The model reads the class at the last
position: logits ``0 .. n_classes - 1`` there are the class scores. Training batches are
drawn from a fixed pool of ``n_train`` sequences and accuracy is measured on ``n_test``
held-out ones, so the task can be overfitted, as in the paper's image tasks.

`selectivity_sweep` trains one model per (alpha, seed) with
`mechscope.dynamics.regularisers.selectivity_regulariser` and measures, at every checkpoint,
test accuracy and each neuron's class-selectivity index on the test split (the batch index
of `batch_selectivity` over the whole split), after Leavitt & Morcos (2020, "Selectivity
considered harmful").

>>> import torch
>>> task = ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=32, n_test=16)
>>> tokens = task.sample(4, torch.Generator().manual_seed(0))     # (n, seq_len + 1)
>>> tuple(tokens.shape), task.labels(tokens).shape, tuple(task.split("test").shape)
((4, 9), torch.Size([4]), (16, 9))
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .regularisers import batch_selectivity


@functools.lru_cache(maxsize=16)
def _pools(vocab_size: int, n_classes: int, seq_len: int, signal: float, n: int,
           seed: int) -> torch.Tensor:
    """``n`` sequences (n, seq_len + 1) whose class is the strict majority group."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    while sum(len(k) for k in kept) < n:
        m = 2 * n
        cls = rng.integers(n_classes, size=(m, 1))
        from_class = cls + n_classes * rng.integers(vocab_size // n_classes, size=(m, seq_len))
        body = np.where(rng.random((m, seq_len)) < signal, from_class,
                        rng.integers(vocab_size, size=(m, seq_len)))
        counts = np.stack([(body % n_classes == c).sum(1) for c in range(n_classes)], 1)
        top = np.sort(counts, axis=1)
        kept.append(body[(top[:, -1] > top[:, -2]) & (counts.argmax(1) == cls[:, 0])])
    body = np.concatenate(kept)[:n]
    bos = np.full((n, 1), vocab_size)
    return torch.from_numpy(np.concatenate([bos, body], 1).astype(np.int64))


@dataclass(frozen=True)
class ClassificationTask:
    """Token sequences labelled by their majority token group, with a held-out test split.

    - ``vocab_size``: ordinary tokens (a multiple of ``n_classes``; ``<bos>`` has id ``V``);
    - ``n_classes``: classes (groups of tokens, ``t mod n_classes``);
    - ``seq_len``: tokens after ``<bos>``; ``signal``: chance a position is drawn from the class;
    - ``n_train``/``n_test``: pool sizes; ``data_seed``: seeds both pools (test = seed + 1).

    >>> task = ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=32, n_test=16)
    >>> test = task.split("test")
    >>> counts = torch.stack([(test[:, 1:] % 3 == c).sum(1) for c in range(3)], 1)
    >>> bool((task.labels(test) == counts.argmax(1)).all()), task.class_names
    (True, ['c0', 'c1', 'c2'])
    >>> ClassificationTask(vocab_size=10, n_classes=3)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: vocab_size 10 must be a multiple of n_classes 3 (each class owns vocab_size / n_classes tokens).
    """

    vocab_size: int = 24
    n_classes: int = 4
    seq_len: int = 12
    signal: float = 0.25
    n_train: int = 256
    n_test: int = 1024
    data_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_classes", "seq_len", "n_train", "n_test", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (name != "data_seed"):
                raise InputError(f"{name} must be an int >= 1, got {value!r}.")
        if self.n_classes < 2 or self.vocab_size % self.n_classes:
            raise InputError(f"vocab_size {self.vocab_size} must be a multiple of n_classes "
                             f"{self.n_classes} (each class owns vocab_size / n_classes tokens)."
                             if self.n_classes >= 2 else "n_classes must be >= 2.")
        if not 0 < self.signal <= 1:
            raise InputError(f"signal must be in (0, 1], got {self.signal!r}.")

    @property
    def bos_id(self) -> int:
        return self.vocab_size

    @property
    def n_tokens(self) -> int:
        return self.vocab_size + 1

    @property
    def class_names(self) -> list[str]:
        return [f"c{c}" for c in range(self.n_classes)]

    def split(self, name: str = "train") -> torch.Tensor:
        """The fixed ``"train"`` or ``"test"`` sequences, (n_train or n_test, seq_len + 1)."""
        if name not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {name!r}.")
        n = self.n_train if name == "train" else self.n_test
        return _pools(self.vocab_size, self.n_classes, self.seq_len, float(self.signal), n,
                      self.data_seed + (name == "test"))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` training sequences drawn with replacement from the train pool."""
        return self.split("train")[torch.randint(self.n_train, (n,), generator=generator)]

    def labels(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n,) class of each sequence (n, seq_len + 1): its majority token group."""
        groups = torch.nn.functional.one_hot(tokens[:, 1:] % self.n_classes, self.n_classes)
        return groups.sum(1).argmax(1)

    def loss(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the class scores (last position, logits 0..n_classes-1)."""
        return torch.nn.functional.cross_entropy(logits[:, -1, : self.n_classes],
                                                 self.labels(tokens))

    def to_dict(self) -> dict[str, Any]:
        return {"name": "classification", **asdict(self)}


@torch.no_grad()
def evaluate(hf: torch.nn.Module, task: ClassificationTask, split: str = "test"
             ) -> tuple[float, np.ndarray]:
    """(accuracy, per-neuron selectivity index (n_layers, d_mlp)) of ``hf`` on a split.

    >>> from mechscope.dynamics import build_model
    >>> task = ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=32, n_test=16)
    >>> acc, index = evaluate(build_model(task, n_layers=1, d_model=16, n_heads=2, d_mlp=8), task)
    >>> 0 <= acc <= 1, index.shape
    (True, (1, 8))
    """
    from .regularisers import captured, selectivity_regulariser

    tokens = task.split(split)
    labels = task.labels(tokens)
    config: Any = hf.config
    regs = [selectivity_regulariser(layer, 1.0) for layer in range(config.num_hidden_layers)]
    with captured(hf, regs) as slots:
        logits = hf(tokens).logits[:, -1, : task.n_classes]
    index = np.stack([batch_selectivity(acts, labels).numpy() for acts in slots if acts is not None])
    return float((logits.argmax(-1) == labels).float().mean()), index.astype(np.float32)


def checkpoint_curves(run_dir: str | Path, task: ClassificationTask, layer: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, test accuracy, selectivity (checkpoints, d_mlp) at ``layer``) of one run."""
    from .checkpoints import list_checkpoints, load_checkpoint

    steps, accs, sels = [], [], []
    for ckpt in list_checkpoints(run_dir):
        acc, index = evaluate(load_checkpoint(ckpt).hf, task)
        steps.append(ckpt.step)
        accs.append(acc)
        sels.append(index[layer])
    return np.array(steps), np.array(accs, dtype=np.float32), np.stack(sels)


#: The sweep's default model and schedule: a 1-layer GPT-2 that trains in a few seconds on CPU.
SWEEP_TRAINING: dict[str, Any] = {"family": "gpt2", "n_layers": 1, "d_model": 32, "n_heads": 4,
                                  "d_mlp": 64, "steps": 400, "batch_size": 64, "lr": 3e-3,
                                  "warmup": 25, "n_checkpoints": 8}


@dataclass(frozen=True)
class SelectivitySweep:
    """Test accuracy and class selectivity per (alpha, seed, checkpoint) of a regularised sweep.

    ``accuracy``: (alphas, seeds, checkpoints) test accuracy; ``unit_selectivity``: (alphas,
    seeds, checkpoints, d_mlp) each neuron's index on the test split; ``selectivity``: its mean
    over neurons; ``train_accuracy``: (alphas, seeds) at the end; ``steps``: (checkpoints,).
    `summary` gives the mean over seeds per alpha with a bootstrap interval over seeds.

    >>> import numpy as np
    >>> acc = np.array([[[0.2, 0.9], [0.3, 0.8]], [[0.2, 0.5], [0.3, 0.6]]])  # (2 alphas, 2 seeds, 2)
    >>> sweep = SelectivitySweep([-1.0, 1.0], [0, 1], np.array([0, 10]), acc,
    ...                          np.full((2, 2, 2, 3), 0.1), np.ones((2, 2)), 0, {})
    >>> [round(float(x), 2) for x in sweep.summary("accuracy").mean], sweep.to_pandas().shape
    ([0.85, 0.55], (4, 5))
    """

    alphas: list[float]
    seeds: list[int]
    steps: np.ndarray
    accuracy: np.ndarray
    unit_selectivity: np.ndarray
    train_accuracy: np.ndarray
    layer: int
    config: dict[str, Any]

    @property
    def selectivity(self) -> np.ndarray:
        """(alphas, seeds, checkpoints) mean selectivity index over the layer's neurons."""
        return self.unit_selectivity.mean(axis=-1)

    def final(self, name: str) -> np.ndarray:
        """(alphas, seeds) at the last checkpoint: "accuracy", "selectivity" or "train_accuracy"."""
        if name == "train_accuracy":
            return self.train_accuracy
        if name not in ("accuracy", "selectivity"):
            raise InputError(f"name must be 'accuracy', 'selectivity' or 'train_accuracy', got {name!r}.")
        return np.asarray(getattr(self, name))[:, :, -1]

    def summary(self, name: str = "accuracy") -> Any:
        """`mechscope.stats.Summary` over seeds: mean, ci_low, ci_high, each (alphas,)."""
        from ..stats import summarize

        return summarize(self.final(name).T)

    def to_pandas(self):  # noqa: ANN201
        """One row per (alpha, seed): final test accuracy, train accuracy, mean selectivity."""
        import pandas as pd

        a, s = np.meshgrid(np.arange(len(self.alphas)), np.arange(len(self.seeds)), indexing="ij")
        return pd.DataFrame({"alpha": np.asarray(self.alphas)[a.ravel()],
                             "seed": np.asarray(self.seeds)[s.ravel()],
                             "test_accuracy": self.final("accuracy").ravel(),
                             "train_accuracy": self.train_accuracy.ravel(),
                             "mean_selectivity": self.final("selectivity").ravel()})

    def table(self):  # noqa: ANN201
        """One row per alpha: mean over seeds and 95% bootstrap interval of each final metric."""
        import pandas as pd

        frame = pd.DataFrame({"alpha": self.alphas})
        for name in ("accuracy", "train_accuracy", "selectivity"):
            s = self.summary(name)
            frame[name], frame[f"{name}_low"], frame[f"{name}_high"] = s.mean, s.ci_low, s.ci_high
        return frame

    def to_dynamics(self) -> Any:
        """A `DynamicsResult` with one run per (alpha, seed): per-neuron selectivity as the
        structure, test accuracy and mean selectivity as behaviour metrics."""
        from .measurement import DynamicsResult

        n_a, n_s, n_c, n_u = self.unit_selectivity.shape
        runs = [f"alpha={a:+g} seed{s}" for a in self.alphas for s in self.seeds]
        nan = np.full((n_a * n_s, n_c, 1, 1), np.nan)
        behaviour = np.stack([self.accuracy, self.selectivity], -1).reshape(n_a * n_s, n_c, 2)
        return DynamicsResult(runs, [s for _ in self.alphas for s in self.seeds], self.steps,
                              nan, nan.copy(), behaviour, ["test_accuracy", "mean_selectivity"],
                              selectivity=self.unit_selectivity.reshape(n_a * n_s, n_c, 1, n_u),
                              selectivity_layers=[self.layer])

    def show(self, **kwargs: Any):  # noqa: ANN201
        """The `Dynamics` widget: one small multiple per (alpha, seed), selectivity of the
        best neuron and test accuracy over training, neuron heatmaps at the slider's step."""
        from ..widgets.dynamics import Dynamics

        kwargs.setdefault("title", f"Selectivity regularisation at layer {self.layer}: "
                          f"alphas {self.alphas}")
        return Dynamics(self.to_dynamics(), structure="selectivity", behaviour="test_accuracy",
                        **kwargs)

    def __repr__(self) -> str:
        acc = self.summary("accuracy").mean
        return (f"SelectivitySweep(alphas {self.alphas}, {len(self.seeds)} seeds, test accuracy "
                f"{[round(float(x), 3) for x in acc]})")


def selectivity_sweep(alphas: Any, seeds: Any = (0, 1, 2, 3, 4), *,
                      task: ClassificationTask | None = None, layer: int = 0,
                      out_dir: str | Path | None = None, progress: bool = True,
                      **training: Any) -> SelectivitySweep:
    """Train one model per (alpha, seed) with ``selectivity_regulariser(layer, alpha)``.

    ``training``: keyword arguments of `train`, over `SWEEP_TRAINING`. Runs go to
    ``out_dir/alpha{alpha}/seed{seed}``. Every argument is checked before any training.

    >>> import tempfile
    >>> task = ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=32, n_test=16)
    >>> sweep = selectivity_sweep([-1, 1], seeds=(0, 1), task=task, steps=3, n_checkpoints=2,
    ...                           d_model=16, n_heads=2, d_mlp=8, out_dir=tempfile.mkdtemp(),
    ...                           progress=False)
    >>> sweep.accuracy.shape, sweep.unit_selectivity.shape   # (alphas, seeds, checkpoints[, d_mlp])
    ((2, 2, 2), (2, 2, 2, 8))
    """
    import tempfile

    from .regularisers import selectivity_regulariser
    from .training import build_model, train

    task = task if task is not None else ClassificationTask()
    if isinstance(alphas, int | float) or not len(alphas):
        raise InputError(f"alphas must be a non-empty list of numbers, got {alphas!r}.")
    regs = [selectivity_regulariser(layer, a) for a in alphas]
    if len({r.alpha for r in regs}) != len(regs):
        raise InputError(f"alphas must be distinct, got {list(alphas)!r}.")
    settings = {**SWEEP_TRAINING, **training}
    arch = {k: settings[k] for k in ("family", "n_layers", "d_model", "n_heads", "d_mlp")}
    regs[0].check(build_model(task, **arch))
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mechscope-sweep-"))
    acc, sel, train_acc, steps = [], [], [], np.zeros(0)
    for reg in regs:
        runs = train(task, seeds=seeds, out_dir=out / f"alpha{reg.alpha:+g}", regularisers=[reg],
                     progress=progress, **settings)
        curves = [checkpoint_curves(d, task, layer) for d in runs.run_dirs]
        steps = curves[0][0]
        acc.append(np.stack([c[1] for c in curves]))
        sel.append(np.stack([c[2] for c in curves]))
        train_acc.append([evaluate(_last(d), task, "train")[0] for d in runs.run_dirs])
    return SelectivitySweep([r.alpha for r in regs], [int(s) for s in seeds], steps,
                            np.stack(acc), np.stack(sel), np.array(train_acc, dtype=np.float32),
                            layer, {"task": task.to_dict(), **settings, "out_dir": str(out)})


def _last(run_dir: Path) -> torch.nn.Module:
    from .checkpoints import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(run_dir)[-1]).hf
