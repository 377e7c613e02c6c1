"""How much of the model's behaviour a circuit carries, by running the model with every other edge replaced.

With ``ablation="patch"`` the edges outside the circuit carry the corrupt run's outputs; with
``"mean"`` each upstream node's mean output over the dataset's corrupt prompts at that position.
Faithfulness is ``(m(circuit) - m(corrupt)) / (m(model) - m(corrupt))`` of the metric's means
over examples, with a bootstrap interval over examples; m(corrupt) is the run with every edge
replaced (for "patch" it equals the corrupt run). `edge_patching` is the exact effect of
replacing edges one at a time, the reference attribution scores are checked against.

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> from mechscope.circuits import edge_attribution
>>> model = mechscope.tiny_model("llama")
>>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"},
...               {"clean": "a cat ran", "corrupt": "a dog ran", "answer": " the", "wrong": " of"}])
>>> scores = edge_attribution(model, data, progress=False)
>>> full = faithfulness(model, data, scores.circuit(n_edges=scores.graph.n_edges), progress=False)
>>> round(full.value, 4)                         # every edge kept: the model itself
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..progress import progress as bar
from ..stats import bootstrap
from .batches import Prepared, prepare
from .circuit import Circuit
from .traces import node_outputs, patched_logits, single_edge_logits

#: What edges outside a circuit carry: the corrupt run's outputs, or each node's mean output.
ABLATIONS = ("patch", "mean")


@dataclass(frozen=True)
class Faithfulness:
    """``value`` = (m(circuit) - m(corrupt)) / (m(model) - m(corrupt)) of the means over examples,
    ``ci_low`` / ``ci_high`` its bootstrap interval over examples; per-example metrics
    ``m_circuit``, ``m_model``, ``m_corrupt`` (examples,).

    >>> f = Faithfulness(0.5, 0.4, 0.6, np.array([1.0]), np.array([2.0]), np.array([0.0]), n_edges=10)
    >>> float(f), f.to_pandas().shape
    (0.5, (1, 3))
    """

    value: float
    ci_low: float
    ci_high: float
    m_circuit: np.ndarray = field(repr=False)
    m_model: np.ndarray = field(repr=False)
    m_corrupt: np.ndarray = field(repr=False)
    n_edges: int = 0
    ablation: str = "patch"

    def __float__(self) -> float:
        return self.value

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per example: ``m_circuit``, ``m_model``, ``m_corrupt``."""
        import pandas as pd

        return pd.DataFrame({"m_circuit": self.m_circuit, "m_model": self.m_model, "m_corrupt": self.m_corrupt})


def _ratio(rows: np.ndarray) -> float:
    return float((rows[:, 0].mean() - rows[:, 2].mean()) / (rows[:, 1].mean() - rows[:, 2].mean()))


def _mean_outputs(job: Prepared, progress: bool) -> torch.Tensor:
    """Mean output of every upstream node at each position over the corrupt prompts (U, P_max, d)."""
    g, p_max = job.graph, max(b.clean.shape[1] for b in job.batches)
    total = torch.zeros(g.n_upstream, p_max, job.model.d_model)
    count = torch.zeros(p_max)
    for batch in bar(job.batches, desc="mean outputs", unit="batch", enabled=progress):
        acts, _ = node_outputs(job.model, g, batch.corrupt)
        p = acts.shape[2]
        total[:, :p] += acts.sum(1)
        count[:p] += acts.shape[1]
    return total / count.clamp(min=1)[None, :, None]


class References:
    """The outputs edges outside a circuit carry: the corrupt run's, or the dataset means."""

    def __init__(self, job: Prepared, ablation: str, progress: bool) -> None:
        if ablation not in ABLATIONS:
            raise InputError(f"ablation must be one of {ABLATIONS}, got {ablation!r}.")
        self.job, self.ablation = job, ablation
        self.means = _mean_outputs(job, progress) if ablation == "mean" else None

    def of(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(U, B, P, d) reference outputs and, for "patch", the corrupt run's logits."""
        if self.means is None:
            return node_outputs(self.job.model, self.job.graph, batch.corrupt)
        b, p = batch.clean.shape
        return self.means[:, None, :p].expand(-1, b, -1, -1), None


def check_circuit(job: Prepared, circuit: Any) -> Circuit:
    """``circuit`` if it is a `Circuit` of this job's graph, else an `InputError`."""
    if not isinstance(circuit, Circuit):
        raise InputError(f"circuit must be a Circuit (scores.circuit(n_edges=...)), got {type(circuit).__name__}.")
    if circuit.graph.valid.shape != job.graph.valid.shape or circuit.graph.upstream != job.graph.upstream:
        raise InputError("this circuit is of another model's graph: build it from edge_attribution on this model.")
    return circuit


def faithfulness(model: Any, pairs: Any, circuit: Any, ablation: str = "patch", *, metric: Any = None,
                 batch_size: Any = 8, progress: bool = True) -> Faithfulness:
    """Faithfulness of ``circuit`` over ``pairs`` (see the module docstring).

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> faithfulness(mechscope.tiny_model("llama"), data, circuit=None)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: circuit must be a Circuit (scores.circuit(n_edges=...)), got NoneType.
    """
    job = prepare(model, pairs, "faithfulness", metric=metric, batch_size=batch_size)
    circuit = check_circuit(job, circuit)
    refs = References(job, ablation, progress)
    m = circuit_metrics(job, refs, [circuit], progress)
    return summarise(m[:, [0, 1, 2]], circuit.n_edges, ablation)


def summarise(m: np.ndarray, n_edges: int, ablation: str) -> Faithfulness:
    """`Faithfulness` from per-example (circuit, model, corrupt) metrics (examples, 3)."""
    value, low, high = bootstrap(m, _ratio)
    return Faithfulness(value, low, high, m[:, 0], m[:, 1], m[:, 2], n_edges, ablation)


def circuit_metrics(job: Prepared, refs: References, circuits: list[Circuit], progress: bool) -> np.ndarray:
    """Per-example metric (examples, C + 2): each circuit's run, then the model's, then the
    run with every edge replaced (the corrupt run for "patch"); one clean and one reference
    run per batch serve every circuit."""
    outs = [c.out_matrix() for c in circuits]
    m = np.zeros((job.n, len(circuits) + 2))
    desc = f"faithfulness of {len(circuits)} circuit{'s' if len(circuits) > 1 else ''}"
    with bar(total=len(job.batches) * len(circuits), desc=desc, unit="run", enabled=progress) as done:
        for batch in job.batches:
            _, clean_logits = node_outputs(job.model, job.graph, batch.clean)
            ref, corrupt_logits = refs.of(batch)
            metric_fn = job.metric_of(batch, clean_logits)
            if corrupt_logits is None:
                corrupt_logits = patched_logits(job.model, job.graph, batch.clean, ref, job.graph.valid)
            for i, out in enumerate(outs):
                m[batch.examples, i] = metric_fn(patched_logits(job.model, job.graph, batch.clean, ref, out)).numpy()
                done.update(1)
            m[batch.examples, -2] = metric_fn(clean_logits).numpy()
            m[batch.examples, -1] = metric_fn(corrupt_logits).numpy()
    return m


def edge_patching(model: Any, pairs: Any, edges: Any, ablation: str = "patch", *, metric: Any = None,
                  batch_size: Any = 8, progress: bool = True) -> np.ndarray:
    """Exact effect of replacing each edge alone: m(model with edge i replaced) - m(model),
    (examples, len(edges)); ``edges`` are row indices into the graph's edge list.

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> edge_patching(mechscope.tiny_model("llama"), data, [0, 5], progress=False).shape
    (1, 2)
    """
    job = prepare(model, pairs, "edge_patching", metric=metric, batch_size=batch_size)
    g = job.graph
    index = np.asarray(edges).ravel()
    if index.size == 0 or index.dtype.kind not in "iu" or index.min() < 0 or index.max() >= g.n_edges:
        raise InputError(f"edges must be edge indices 0..{g.n_edges - 1} (graph.edge_index(up, down)), got {edges!r}.")
    refs = References(job, ablation, progress)
    effects = np.zeros((job.n, index.size))
    per_run = max(1, 64 // max(len(b.examples) for b in job.batches))
    chunks = [index[i:i + per_run] for i in range(0, index.size, per_run)]
    with bar(total=len(job.batches) * len(chunks), desc=f"patching {index.size} edges", unit="run",
             enabled=progress) as done:
        for batch in job.batches:
            clean_acts, clean_logits = node_outputs(job.model, g, batch.clean)
            ref, _ = refs.of(batch)
            diff = ref - clean_acts
            metric_fn = job.metric_of(batch, clean_logits)
            base = metric_fn(clean_logits)
            start = 0
            for chunk in chunks:
                logits = single_edge_logits(job.model, g, batch.clean, diff, chunk)
                for j in range(len(chunk)):
                    effects[batch.examples, start + j] = (metric_fn(logits[j]) - base).numpy()
                start += len(chunk)
                done.update(1)
    return effects
