"""Circuits across training: the component circuit of every checkpoint of every seed.

`circuits_over_training` scores every edge of the `mechscope.circuits.ComponentGraph` with
`mechscope.circuits.edge_attribution` at each checkpoint of each run, over one fixed set of
prompt pairs (`induction_pairs`: a span of distinct random tokens written twice, the corrupt
copy with the first span replaced by other tokens, so the repeat tells nothing), and returns a
`TrainingCircuits`: the scores (seeds, checkpoints, edges), the repeated-token loss at each
step, the top-``n_edges`` circuit of each checkpoint, and the K-composition edge from each
seed's previous-token head into its induction head's key input
(`TrainingCircuits.prev_to_induction`), with the step it forms at beside the step the loss
drops at (`TrainingCircuits.formation_step`).

Scores follow `mechscope.circuits.EdgeScores`: negative = corrupting the edge lowers the
metric (the log-probability of the correct next token, read at the last position, a repeated
one), i.e. the edge carries what the clean answer needs.

>>> import tempfile
>>> from mechscope import dynamics
>>> runs = dynamics.train(dynamics.InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
...                       seeds=(0, 1), n_layers=2, d_model=16, n_heads=2, steps=4,
...                       n_checkpoints=3, out_dir=tempfile.mkdtemp(), progress=False)
>>> tc = circuits_over_training(runs, n_pairs=4, steps=2, n_edges=5, progress=False)
>>> tc.scores.shape, tc.loss.shape, len(tc.edge_labels)     # (seeds, checkpoints, edges)
((2, 3, 46), (2, 3), 46)
>>> tc.prev_to_induction().shape, tc.edge("L0H1", "L1KV0.k").shape    # (seeds, checkpoints)
((2, 3), (2, 3))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..circuits.attribution import METHODS, edge_attribution
from ..circuits.batches import prepare
from ..circuits.circuit import Circuit, select
from ..circuits.graph import ComponentGraph
from ..datasets.pairs import PromptPairs
from ..errors import InputError
from ..interventions.metrics import Metric
from ..validate import as_int
from .checkpoints import Checkpoint, list_checkpoints, load_checkpoint, read_meta
from .emergence_steps import crossing, emergence_step
from .measurement import DynamicsResult, measure
from .tasks import InductionTask
from .training import TrainingRuns

__all__ = ["Formation", "TrainingCircuits", "answer_logprob", "circuits_over_training",
           "induction_pairs"]


def induction_pairs(task: InductionTask, n_pairs: int = 16, *, span: int | None = None,
                    seed: int = 0) -> PromptPairs:
    """``n_pairs`` prompt pairs for ``task``'s tokens, all of one length (``2 * span`` tokens
    with the ``<bos>``).

    Clean: ``s_1 .. s_L s_1 .. s_{L-1}``, a span of ``L = span`` distinct random tokens and its
    repeat but for the last token, which is the ``answer`` (only the repeat predicts it).
    Corrupt: ``r_1 .. r_L s_1 .. s_{L-1}``: the first span replaced by ``L`` other tokens, so
    nothing in the context predicts the next token; ``wrong`` is ``r_L``. ``span`` defaults to
    the task's ``max_span``, at most half the vocabulary.

    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> data = induction_pairs(task, 2, span=3)
    >>> clean, corrupt = data.clean[0].split(), data.corrupt[0].split()
    >>> clean[3:] == clean[:2] == corrupt[3:], data.answer[0] == clean[2], len(set(clean[:3] + corrupt[:3]))
    (True, True, 6)
    """
    if not isinstance(task, InductionTask):
        raise InputError(f"task must be a mechscope.dynamics.InductionTask, got {type(task).__name__}.")
    n = as_int(n_pairs, "n_pairs")
    if n < 1:
        raise InputError(f"n_pairs must be at least 1, got {n}.")
    length = min(task.max_span, task.vocab_size // 2) if span is None else as_int(span, "span")
    if not 2 <= length <= task.vocab_size // 2 or 2 * length > task.seq_len + 1:
        raise InputError(f"span must be between 2 and {min(task.vocab_size // 2, (task.seq_len + 1) // 2)} "
                         f"(two spans of distinct tokens must fit the vocabulary and the context), got {length}.")
    rng = np.random.default_rng(as_int(seed, "seed"))
    rows: dict[str, list[str]] = {"clean": [], "corrupt": [], "answer": [], "wrong": []}
    for _ in range(n):
        perm = [f"t{i}" for i in rng.permutation(task.vocab_size)[:2 * length]]
        s, r = perm[:length], perm[length:]
        rows["clean"].append(" ".join(s + s[:-1]))
        rows["corrupt"].append(" ".join(r + s[:-1]))
        rows["answer"].append(s[-1])
        rows["wrong"].append(r[-1])
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]),
                       tuple(rows["wrong"]), name="induction pairs")


def answer_logprob(pairs: PromptPairs) -> Metric:
    """The log-probability of example i's ``answer`` token on its rows (a per-example metric for
    `mechscope.circuits.edge_attribution`; higher = cleaner).

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> data = PromptPairs(("the cat", "a dog"), ("the dog", "a cat"), (" the", " of"), (" of", " the"))
    >>> m = answer_logprob(data).bind(model)
    >>> logits = torch.randn(2, model.vocab_size)                      # (rows, vocab)
    >>> ids = [model.to_single_token(t) for t in data.answer]
    >>> bool(torch.allclose(m(logits), torch.log_softmax(logits, -1)[[0, 1], ids]))
    True
    """
    if not isinstance(pairs, PromptPairs):
        raise InputError(f"answer_logprob needs PromptPairs, got {type(pairs).__name__}.")

    def make(ids: list[int]):
        good = torch.tensor(ids[:len(ids) // 2])

        def fn(logits: torch.Tensor, _clean: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(logits, dim=-1)[torch.arange(logits.shape[0]), good[rows]]
        return fn
    # answers twice: Metric names a bad token "example i: its answer token" from the first half
    return Metric("logprob(answer)", (*pairs.answer, *pairs.answer), make, per_example=True)


@dataclass(frozen=True)
class Formation:
    """When an edge forms, per seed, beside when the loss drops.

    ``edge_steps`` (seeds,): the step at which the edge's support (minus its score) first
    reaches ``threshold`` of its net change (`mechscope.dynamics.crossing`, interpolated in
    log(step + 1)); NaN when the support does not grow. ``loss_steps`` (seeds,): the
    repeated-token loss's emergence step (halfway crossing, as `mechscope.dynamics.emergence`).
    ``edges[i]``: seed i's edge.

    >>> f = Formation(["seed0", "seed1"], ["L0H1 -> L1KV0.k"] * 2, 0.5, np.array([90.0, 110.0]),
    ...               np.array([100.0, 100.0]))
    >>> f.lag.tolist(), f.spread()["edge_step_std"], f.to_pandas().shape
    ([-10.0, 10.0], 10.0, (2, 5))
    """

    runs: list[str]
    edges: list[str]
    threshold: float
    edge_steps: np.ndarray
    loss_steps: np.ndarray

    @property
    def lag(self) -> np.ndarray:
        """(seeds,) edge step minus loss-drop step (negative: the edge forms first)."""
        return self.edge_steps - self.loss_steps

    def spread(self) -> dict[str, float]:
        """Mean and standard deviation (ddof 0) across seeds of both steps and of the lag."""
        out = {}
        for name, values in (("edge_step", self.edge_steps), ("loss_step", self.loss_steps),
                             ("lag", self.lag)):
            finite = values[np.isfinite(values)]
            out[f"{name}_mean"] = float(finite.mean()) if finite.size else math.nan
            out[f"{name}_std"] = float(finite.std()) if finite.size else math.nan
        return out

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per seed: run, edge, edge_step, loss_step, lag."""
        import pandas as pd

        return pd.DataFrame({"run": self.runs, "edge": self.edges, "edge_step": self.edge_steps,
                             "loss_step": self.loss_steps, "lag": self.lag})

    def __repr__(self) -> str:
        s = self.spread()
        return (f"Formation({len(self.runs)} seeds at {self.threshold:g} of the change: edge at step "
                f"{s['edge_step_mean']:.0f} +- {s['edge_step_std']:.0f}, loss drop at "
                f"{s['loss_step_mean']:.0f} +- {s['loss_step_std']:.0f})")


@dataclass(frozen=True)
class TrainingCircuits:
    """Edge scores at every (seed, checkpoint) and what to read from them.

    - ``scores`` (seeds, checkpoints, edges): `mechscope.circuits.EdgeScores.scores` of each
      checkpoint, edge i named ``edge_labels[i]``; ``in_circuit`` (same shape, bool): the edges
      of its top-``n_edges`` circuit (`mechscope.circuits.EdgeScores.circuit`);
    - ``loss`` (seeds, checkpoints): the repeated-token loss measured by `dynamics.measure`;
    - ``steps`` (checkpoints,), ``runs``, ``seeds``; ``dynamics``: the `DynamicsResult` of
      every checkpoint (head scores, the loss drop), ``pairs`` and ``metric``: what was scored.

    >>> import numpy as np, tempfile
    >>> from mechscope import dynamics
    >>> runs = dynamics.train(dynamics.InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
    ...                       seeds=(0,), n_layers=2, d_model=16, n_heads=2, steps=3,
    ...                       checkpoints=[0, 3], out_dir=tempfile.mkdtemp(), progress=False)
    >>> tc = circuits_over_training(runs, n_pairs=2, method="eap", n_edges=3, progress=False)
    >>> tc
    TrainingCircuits(eap: 1 seeds x 2 checkpoints (steps 0..3) x 46 edges, top-3 circuits)
    >>> tc.prev_edges[0] in tc.edge_labels, tc.to_pandas().shape    # seeds * checkpoints * edges rows
    (True, (92, 9))
    """

    runs: list[str]
    seeds: list[int | None]
    steps: np.ndarray
    graph: ComponentGraph = field(repr=False)
    scores: np.ndarray = field(repr=False)
    in_circuit: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    dynamics: DynamicsResult = field(repr=False)
    pairs: PromptPairs = field(repr=False)
    metric: str = "logprob(answer)"
    method: str = "eap-ig"
    ig_steps: int = 5
    n_edges: int = 20

    @property
    def edge_labels(self) -> list[str]:
        """``"up -> down"`` for every edge, in the order of the last axis of ``scores``."""
        return self.graph.edge_names()

    def edge(self, up: str, down: str) -> np.ndarray:
        """(seeds, checkpoints) score of edge ``up -> down`` (names as in `ComponentGraph`)."""
        return self.scores[:, :, self.graph.edge_index(up, down)]

    @property
    def heads(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Per seed, ((layer, head) of the previous-token head, (layer, head) of the induction head)
        at the final checkpoint: the best induction score in layers 1 and up, and the best
        previous-token score in the layers before it (`dynamics.measure`'s scores)."""
        if self.graph.n_layers < 2:
            raise InputError("the previous-token -> induction edge needs at least 2 layers (K-composition "
                             f"reads an earlier head); these models have {self.graph.n_layers}.")
        out = []
        for r in range(len(self.runs)):
            ind = np.nan_to_num(self.dynamics.induction[r, -1, 1:], nan=-np.inf)  # layers 1..
            li, hi = (int(i) for i in np.unravel_index(int(np.argmax(ind)), ind.shape))
            li += 1
            prev = np.nan_to_num(self.dynamics.prev_token[r, -1, :li], nan=-np.inf)  # layers < li
            lp, hp = (int(i) for i in np.unravel_index(int(np.argmax(prev)), prev.shape))
            out.append(((lp, hp), (li, hi)))
        return out

    @property
    def prev_edges(self) -> list[str]:
        """Per seed, the K-composition edge ``L{p}H{h} -> L{i}KV{g}.k`` from its previous-token
        head into the key input of its induction head's key-value group."""
        group = self.graph.n_heads // self.graph.n_kv_heads
        return [f"L{lp}H{hp} -> L{li}KV{hi // group}.k" for (lp, hp), (li, hi) in self.heads]

    def prev_to_induction(self) -> np.ndarray:
        """(seeds, checkpoints): each seed's `prev_edges` score against ``steps``."""
        rows = [self.edge(*name.split(" -> ")) for name in self.prev_edges]
        return np.stack([row[r] for r, row in enumerate(rows)])

    def formation_step(self, threshold: float = 0.5) -> Formation:
        """When each seed's `prev_edges` edge forms (its support, minus its score, reaching
        ``threshold`` of its net change) beside when its repeated-token loss drops; see `Formation`."""
        t = float(threshold)
        if not 0.0 < t <= 1.0:
            raise InputError(f"threshold is a fraction of the edge's net change, in (0, 1]; got {threshold!r}.")
        support = -self.prev_to_induction()
        edge_steps = np.array([crossing(row, self.steps, t) if row[-1] > row[0] else math.nan
                               for row in support])
        loss = self.dynamics.curve("repeated_loss")
        loss_steps = np.array([emergence_step(row, self.dynamics.steps) for row in loss])
        return Formation(list(self.runs), self.prev_edges, t, edge_steps, loss_steps)

    def circuit(self, seed_index: int, step: int) -> Circuit:
        """The top-``n_edges`` `Circuit` of run ``seed_index`` at checkpoint ``step``."""
        r = as_int(seed_index, "seed_index")
        if not 0 <= r < len(self.runs):
            raise InputError(f"seed_index must be in 0..{len(self.runs) - 1}, got {r}.")
        hits = np.flatnonzero(self.steps == as_int(step, "step"))
        if not hits.size:
            raise InputError(f"no checkpoint at step {step}; the steps are {self.steps.tolist()}.")
        return select(self.graph, np.abs(self.scores[r, hits[0]]), n_edges=self.n_edges,
                      how=f"{self.method} top")

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (seed, step, edge): run, seed, step, loss, upstream, downstream, edge,
        score, in_circuit."""
        import pandas as pd

        n_runs, n_ckpt, n_e = self.scores.shape
        r, c, e = (a.ravel() for a in np.meshgrid(np.arange(n_runs), np.arange(n_ckpt),
                                                   np.arange(n_e), indexing="ij"))
        g = self.graph
        up = np.asarray(g.upstream, dtype=object)[g.edges[:, 0]]
        down = np.asarray(g.downstream, dtype=object)[g.edges[:, 1]]
        return pd.DataFrame({
            "run": np.asarray(self.runs, dtype=object)[r], "seed": np.asarray(self.seeds, dtype=object)[r],
            "step": self.steps[c], "loss": self.loss[r, c], "upstream": up[e], "downstream": down[e],
            "edge": np.asarray(self.edge_labels, dtype=object)[e], "score": self.scores.ravel(),
            "in_circuit": self.in_circuit.ravel()})

    def show(self, top: int = 6, seed_index: int | None = None) -> Any:
        """A `mechscope.widgets.Heatmap` of edge scores against steps: per seed, its
        previous-token -> induction edge, then the ``top`` edges of largest absolute score at
        the final checkpoint (diverging colours, symmetric around 0)."""
        from ..widgets.heatmap import Heatmap

        k = as_int(top, "top")
        if k < 0:
            raise InputError(f"top must be >= 0, got {k}.")
        chosen = range(len(self.runs)) if seed_index is None else [as_int(seed_index, "seed_index")]
        prev: list[str | None] = list(self.prev_edges) if self.graph.n_layers >= 2 else [None] * len(self.runs)
        labels, rows = [], []
        for r in chosen:
            if not 0 <= r < len(self.runs):
                raise InputError(f"seed_index must be in 0..{len(self.runs) - 1}, got {r}.")
            order = [int(i) for i in np.argsort(-np.abs(self.scores[r, -1]), kind="stable")]
            name = prev[r]
            first = [self.graph.edge_index(*name.split(" -> "))] if name else []
            for i in first + [i for i in order if i not in first][:k]:
                labels.append(f"{self.runs[r]}: {self.graph.edge_name(i)}")
                rows.append(self.scores[r, :, i])
        values = np.asarray(rows)
        bound = float(np.nanmax(np.abs(values))) or 1.0
        return Heatmap(values, labels, [f"step {s}" for s in self.steps.tolist()],
                       title=f"{self.method} edge scores over training (negative: carries the answer)",
                       value_label="edge score", colorscale="diverging", vmin=-bound, vmax=bound)

    def __repr__(self) -> str:
        s = self.steps.tolist()
        return (f"TrainingCircuits({self.method}: {len(self.runs)} seeds x {len(s)} checkpoints "
                f"(steps {s[0]}..{s[-1]}) x {self.graph.n_edges} edges, top-{self.n_edges} circuits)")


# ---- building one ------------------------------------------------------------------------------
def _run_dirs(source: Any) -> list[Path]:
    if isinstance(source, TrainingRuns):
        return list(source.run_dirs)
    if isinstance(source, str | Path):
        source = [source]
    if not isinstance(source, Sequence) or isinstance(source, bytes) or not len(source):
        raise InputError("circuits_over_training needs training runs: the TrainingRuns of "
                         "mechscope.dynamics.train(...), a run directory or a non-empty list of them; "
                         f"got {source!r}.")
    for item in source:
        if not isinstance(item, str | Path):
            raise InputError(f"a run is a directory made by mechscope.dynamics.train(out_dir=...), "
                             f"got {type(item).__name__}.")
    return [Path(item).expanduser() for item in source]


def _checkpoints(run_dirs: list[Path], every: int) -> tuple[list[list[Checkpoint]], list[int]]:
    """Every ``every``-th checkpoint of each run (the last always), checked to share steps."""
    found = []
    for run_dir in run_dirs:
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            raise InputError(f"{run_dir} has no checkpoints yet (checkpoints/ is empty); train it with "
                             "mechscope.dynamics.train(out_dir=...) first.")
        found.append(ckpts)
    steps = [c.step for c in found[0]]
    for run_dir, ckpts in zip(run_dirs[1:], found[1:], strict=True):
        if [c.step for c in ckpts] != steps:
            raise InputError(f"{run_dir} has checkpoint steps {[c.step for c in ckpts]}, {run_dirs[0]} "
                             f"has {steps}; every run needs the same steps (train them in one call).")
    keep = sorted(set(range(0, len(steps), every)) | {len(steps) - 1})
    return [[ckpts[i] for i in keep] for ckpts in found], [steps[i] for i in keep]


def _default_pairs(run_dir: Path, n_pairs: int) -> PromptPairs:
    task = read_meta(run_dir).get("task")
    if not task or task.get("name") != "induction":
        raise InputError(f"{run_dir} does not record an induction task in run.json; pass pairs= "
                         "(mechscope.datasets.pairs of clean/corrupt texts of equal token length).")
    return induction_pairs(InductionTask.from_dict(task), n_pairs)


def _dynamics(given: DynamicsResult | None, run_dirs: list[Path], steps: list[int],
              progress: bool) -> DynamicsResult:
    if given is None:
        return measure([str(d) for d in run_dirs], progress=progress)
    if not isinstance(given, DynamicsResult) or len(given.runs) != len(run_dirs) \
            or not set(steps) <= set(given.steps.tolist()):
        raise InputError("dynamics= must be the DynamicsResult of mechscope.dynamics.measure on these "
                         f"same {len(run_dirs)} runs (all their checkpoints); leave it out to measure here.")
    return given


def circuits_over_training(runs_or_run_dirs: Any, *, pairs: PromptPairs | None = None,
                           n_pairs: int = 16, method: str = "eap-ig", steps: int = 5,
                           n_edges: int = 20, every: int = 1, metric: Any = None,
                           dynamics: DynamicsResult | None = None,
                           progress: bool = True) -> TrainingCircuits:
    """Edge attribution (``method`` "eap" or "eap-ig" with ``steps`` interpolation steps) at every
    ``every``-th checkpoint (the last always) of each run, over ``pairs`` (default
    `induction_pairs` of the runs' task, ``n_pairs`` of them) with ``metric`` (default
    `answer_logprob`), and the top-``n_edges`` circuit of each. ``dynamics``: the runs'
    `DynamicsResult` if already measured (else `dynamics.measure` runs here, on every
    checkpoint), for the head roles and the loss. Every argument is checked before any model runs.

    >>> circuits_over_training([])
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: circuits_over_training needs training runs: the TrainingRuns of mechscope.dynamics.train(...), ...
    """
    run_dirs = _run_dirs(runs_or_run_dirs)
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    ig_steps = 1 if method == "eap" else as_int(steps, "steps")
    for name, value in (("n_edges", n_edges), ("every", every), ("n_pairs", n_pairs), ("steps", ig_steps)):
        if as_int(value, name) < 1:
            raise InputError(f"{name} must be at least 1, got {value!r}.")
    ckpts, step_list = _checkpoints(run_dirs, as_int(every, "every"))
    data = _default_pairs(run_dirs[0], n_pairs) if pairs is None else pairs
    if not isinstance(data, PromptPairs):
        raise InputError(f"pairs must be PromptPairs (mechscope.datasets.pairs(...) or "
                         f"induction_pairs(task)), got {type(data).__name__}.")
    bound = answer_logprob(data) if metric is None else metric
    first = load_checkpoint(ckpts[0][0])
    graph = prepare(first, data, "circuits_over_training", metric=bound).graph  # pairs checked here
    if n_edges > graph.n_edges:
        raise InputError(f"n_edges must be between 1 and {graph.n_edges} (the graph's edges), got {n_edges}.")
    measured = _dynamics(dynamics, run_dirs, step_list, progress)

    from ..progress import progress as progress_bar

    scores = np.zeros((len(run_dirs), len(step_list), graph.n_edges), np.float32)
    kept = np.zeros(scores.shape, bool)
    bar = progress_bar(total=scores.shape[0] * scores.shape[1], desc=f"{method} over training",
                       unit="ckpt", enabled=progress)
    try:
        for r, row in enumerate(ckpts):
            for c, ckpt in enumerate(row):
                model = first if (r, c) == (0, 0) else load_checkpoint(ckpt)
                s = edge_attribution(model, data, method, steps=ig_steps, metric=bound,
                                     batch_size=min(len(data), 32), progress=False)
                scores[r, c], kept[r, c] = s.scores, s.circuit(n_edges=n_edges).edges
                bar.update(1)
    finally:
        bar.close()
    where = [measured.steps.tolist().index(s) for s in step_list]
    return TrainingCircuits(
        runs=list(measured.runs), seeds=list(measured.seeds), steps=np.asarray(step_list, np.int64),
        graph=graph, scores=scores, in_circuit=kept,
        loss=measured.curve("repeated_loss")[:, where].astype(np.float32), dynamics=measured,
        pairs=data, metric=getattr(bound, "name", str(bound)), method=method, ig_steps=ig_steps,
        n_edges=int(n_edges))
