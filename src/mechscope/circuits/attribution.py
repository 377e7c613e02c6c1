"""Edge attribution patching: a score for every edge of the component graph over a dataset.

EAP (Syed et al. 2023) estimates the effect on the metric of corrupting edge u -> v as
``(a_u(corrupt) - a_u(clean)) . d metric / d input_v`` at the clean run, summed over positions
and averaged over examples: two forward passes and one backward pass per batch. EAP-IG
(Hanna et al. 2024) averages the gradient over ``steps`` runs whose input embeddings go from
the corrupt to the clean ones (alpha = 1/steps, ..., 1), which is what makes it faithful where
the metric saturates; EAP is EAP-IG with one step. Memory is bounded by the batch: every
batch adds its (upstream x downstream) score matrix and frees its activations.

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> model = mechscope.tiny_model("llama")
>>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"}] * 2)
>>> scores = edge_attribution(model, data, method="eap-ig", steps=2, progress=False)
>>> scores.scores.shape, scores.per_example.shape      # (edges,), (examples, edges)
((82,), (2, 82))
>>> scores.circuit(n_edges=10).n_edges >= 10
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..progress import progress as bar
from ..validate import as_int
from .batches import Prepared, embeddings, prepare
from .circuit import Circuit, select
from .graph import ComponentGraph
from .traces import node_gradients, node_outputs

#: The scoring methods: edge attribution patching and its integrated-gradients variant.
METHODS = ("eap", "eap-ig")


@dataclass(frozen=True)
class EdgeScores:
    """``scores`` (n_edges,): mean over examples of each edge's estimated effect on the metric
    of corrupting it (negative = the edge carries what the clean answer needs, for a metric that
    is higher when clean); ``per_example`` (examples, n_edges); ``m_clean`` / ``m_corrupt``
    (examples,) the metric of the clean and the corrupt runs. Edge i is
    ``graph.edge_name(i)``.

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> s = edge_attribution(mechscope.tiny_model("llama"), data, method="eap", progress=False)
    >>> s, len(s.top(3)), list(s.to_pandas().columns)
    (EdgeScores(eap: 82 edges over 1 examples), 3, ['upstream', 'downstream', 'score', 'abs_score'])
    """

    graph: ComponentGraph = field(repr=False)
    scores: np.ndarray = field(repr=False)
    per_example: np.ndarray = field(repr=False)
    m_clean: np.ndarray = field(repr=False)
    m_corrupt: np.ndarray = field(repr=False)
    method: str = "eap-ig"
    steps: int = 5

    def score(self, up: str, down: str) -> float:
        """The score of edge ``up -> down`` (names as in `ComponentGraph`)."""
        return float(self.scores[self.graph.edge_index(up, down)])

    def top(self, k: int = 20) -> list[tuple[str, float]]:
        """The ``k`` edges of largest absolute score, with their scores."""
        order = np.argsort(-np.abs(self.scores), kind="stable")[:as_int(k, "k")]
        return [(self.graph.edge_name(int(i)), float(self.scores[i])) for i in order]

    def circuit(self, n_edges: Any = None, *, threshold: Any = None) -> Circuit:
        """The top edges by absolute score pruned to what connects input to logits: ``n_edges`` after
        pruning, or every edge with absolute score >= ``threshold`` (see `mechscope.circuits.circuit.select`)."""
        return select(self.graph, np.abs(self.scores), n_edges=n_edges, threshold=threshold,
                      how=f"{self.method} top")

    def random_circuit(self, n_edges: Any, *, seed: Any = 0) -> Circuit:
        """A same-size baseline: edges in a random order, pruned the same way as `circuit`."""
        rng = np.random.default_rng(as_int(seed, "seed"))
        return select(self.graph, rng.permutation(self.graph.n_edges).astype(float), n_edges=n_edges,
                      how=f"random seed {seed}")

    def show(self, n_edges: Any = 200, model: Any = None, pairs: Any = None, ablation: str = "patch",
             **kwargs: Any) -> Any:
        """``self.circuit(n_edges).show(model, pairs, scores=self, ...)``: the top ``n_edges`` (at most
        the graph's edges) as a `mechscope.widgets.CircuitGraph` weighted by these scores (see `Circuit.show`).

        >>> import mechscope
        >>> from mechscope.datasets import pairs
        >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
        >>> w = edge_attribution(mechscope.tiny_model("llama"), data, method="eap", progress=False).show(10)
        >>> w.n_nodes > 2, w.live
        (True, False)
        >>> w.close()
        """
        n = min(as_int(n_edges, "n_edges"), self.graph.n_edges)
        return self.circuit(n).show(model, pairs, scores=self, ablation=ablation, **kwargs)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per edge: ``upstream``, ``downstream``, ``score``, ``abs_score``, sorted by absolute score."""
        import pandas as pd

        e = self.graph.edges
        df = pd.DataFrame({"upstream": [self.graph.upstream[u] for u in e[:, 0]],
                           "downstream": [self.graph.downstream[v] for v in e[:, 1]],
                           "score": self.scores, "abs_score": np.abs(self.scores)})
        return df.sort_values("abs_score", ascending=False, kind="stable").reset_index(drop=True)

    def __repr__(self) -> str:
        return (f"EdgeScores({self.method}{f', {self.steps} steps' if self.method == 'eap-ig' else ''}: "
                f"{self.graph.n_edges} edges over {len(self.m_clean)} examples)")


def _batch_scores(job: Prepared, batch: Any, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example edge scores (B, n_edges) and the clean / corrupt metric (B,) of one batch."""
    model, g = job.model, job.graph
    clean_acts, clean_logits = node_outputs(model, g, batch.clean)
    corrupt_acts, corrupt_logits = node_outputs(model, g, batch.corrupt)
    diff = corrupt_acts - clean_acts  # (U, B, P, d)
    del clean_acts, corrupt_acts
    metric = job.metric_of(batch, clean_logits)
    e_clean, e_corrupt = embeddings(model, batch.clean), embeddings(model, batch.corrupt)
    grad = torch.zeros(g.n_downstream, *diff.shape[1:])
    for k in range(1, steps + 1):
        mixed = e_corrupt + (k / steps) * (e_clean - e_corrupt)
        grad += node_gradients(model, g, batch.clean, mixed, metric)[0] / steps
    u, v = g.edges[:, 0], g.edges[:, 1]
    per = torch.einsum("ubpd,vbpd->buv", diff, grad)[:, u, v]
    with torch.no_grad():
        return per.numpy(), metric(clean_logits).numpy(), metric(corrupt_logits).numpy()


def edge_attribution(model: Any, pairs: Any, method: str = "eap-ig", *, steps: Any = 5, metric: Any = None,
                     batch_size: Any = 8, progress: bool = True) -> EdgeScores:
    """Score every edge of ``model``'s component graph over the prompt pairs ``pairs`` (see the
    module docstring); ``metric`` defaults to the dataset's answer-vs-wrong logit difference.

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> edge_attribution(mechscope.tiny_model("llama"), data, method="acdc")
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: method must be one of ('eap', 'eap-ig'), got 'acdc'.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    n_steps = 1 if method == "eap" else as_int(steps, "steps")
    if n_steps < 1:
        raise InputError(f"steps must be at least 1, got {n_steps}.")
    job = prepare(model, pairs, "edge_attribution", metric=metric, batch_size=batch_size)
    per = np.zeros((job.n, job.graph.n_edges), np.float32)
    m_clean, m_corrupt = np.zeros(job.n), np.zeros(job.n)
    for batch in bar(job.batches, desc=f"{method} over {job.n} pairs", unit="batch", enabled=progress):
        rows = batch.examples
        per[rows], m_clean[rows], m_corrupt[rows] = _batch_scores(job, batch, n_steps)
    return EdgeScores(job.graph, per.mean(0), per, m_clean, m_corrupt, method, n_steps)
