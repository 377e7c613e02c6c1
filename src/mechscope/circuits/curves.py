"""The checks a circuit method must pass: faithfulness against circuit size, and agreement with exact patching.

`faithfulness_curve` runs circuits of each size from each set of scores (EAP, EAP-IG, ...)
and same-size random circuits, all from one clean and one reference run per batch, and
reports each faithfulness with its interval and the smallest size reaching a target.
`edge_agreement` patches sampled edges exactly, one at a time, and reports the Spearman
correlation of the scores with those effects, with a bootstrap interval over the edges.

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> from mechscope.circuits import edge_attribution
>>> model = mechscope.tiny_model("llama")
>>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"}] * 2)
>>> eap = edge_attribution(model, data, method="eap", progress=False)
>>> curve = faithfulness_curve(model, data, {"eap": eap}, sizes=[10, 82], progress=False)
>>> curve.methods, curve.value.shape                          # (methods incl. random, sizes)
(('eap', 'random'), (2, 2))
>>> round(float(curve.value[0, -1]), 4)                         # every edge: the model itself
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dynamics.emergence_steps import correlation
from ..errors import InputError
from ..stats import bootstrap
from ..validate import as_int
from .attribution import EdgeScores
from .batches import prepare
from .faithfulness import References, circuit_metrics, edge_patching, summarise


@dataclass(frozen=True)
class FaithfulnessCurve:
    """``value`` / ``ci_low`` / ``ci_high`` (methods, sizes): faithfulness of the top ``sizes[j]``
    edges of ``methods[i]`` ("random" = mean over ``seeds`` of same-size random circuits, its
    interval the widest of theirs); ``n_edges`` (methods, sizes) after pruning.

    >>> c = FaithfulnessCurve(("eap",), np.array([10, 100]), np.array([[0.3, 0.9]]), np.array([[0.2, 0.8]]),
    ...                       np.array([[0.4, 1.0]]), np.array([[10, 101]]), "patch", (0,))
    >>> c.smallest("eap", target=0.8), c.to_pandas().shape
    (100, (2, 6))
    """

    methods: tuple[str, ...]
    sizes: np.ndarray
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_edges: np.ndarray
    ablation: str = "patch"
    seeds: tuple[int, ...] = field(default=(0,), repr=False)

    def smallest(self, method: str, target: float = 0.8) -> int | None:
        """The smallest size of the sweep whose ``method`` circuit reaches ``target`` (None if none does)."""
        if method not in self.methods:
            raise InputError(f"method must be one of {self.methods}, got {method!r}.")
        row = self.value[self.methods.index(method)]
        hits = np.flatnonzero(row >= float(target))
        return int(self.sizes[hits[0]]) if hits.size else None

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (method, size): ``method``, ``size``, ``n_edges``, ``faithfulness``, ``ci_low``, ``ci_high``."""
        import pandas as pd

        rows = [{"method": m, "size": int(s), "n_edges": int(self.n_edges[i, j]), "faithfulness": self.value[i, j],
                 "ci_low": self.ci_low[i, j], "ci_high": self.ci_high[i, j]}
                for i, m in enumerate(self.methods) for j, s in enumerate(self.sizes)]
        return pd.DataFrame(rows)


def _scores_dict(scores: Any) -> dict[str, EdgeScores]:
    if isinstance(scores, EdgeScores):
        return {scores.method: scores}
    if isinstance(scores, Mapping) and scores and all(isinstance(v, EdgeScores) for v in scores.values()):
        return {str(k): v for k, v in scores.items()}
    raise InputError("scores must be EdgeScores or a dict of them ({'eap': ..., 'eap-ig': ...}), "
                     f"got {type(scores).__name__}.")


def faithfulness_curve(model: Any, pairs: Any, scores: Any, sizes: Sequence[int], *, ablation: str = "patch",
                       seeds: Sequence[int] = (0,), metric: Any = None, batch_size: Any = 8,
                       progress: bool = True) -> FaithfulnessCurve:
    """Faithfulness of the top ``sizes`` edges of each of ``scores`` and of random circuits of
    the same sizes (one per seed), over ``pairs`` (see the module docstring).

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> faithfulness_curve(mechscope.tiny_model("llama"), data, [1, 2], sizes=[5])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: scores must be EdgeScores or a dict of them ({'eap': ..., 'eap-ig': ...}), got list.
    """
    named = _scores_dict(scores)
    if "random" in named:
        raise InputError("'random' is the name of the baseline: call your scores something else.")
    size_list = sorted({as_int(s, "sizes") for s in sizes})
    if not size_list:
        raise InputError("sizes must list at least one circuit size.")
    seed_list = [as_int(s, "seeds") for s in seeds] or [0]
    job = prepare(model, pairs, "faithfulness_curve", metric=metric, batch_size=batch_size)
    circuits = [s.circuit(n_edges=n) for s in named.values() for n in size_list]
    circuits += [next(iter(named.values())).random_circuit(n_edges=n, seed=seed) for n in size_list
                 for seed in seed_list]
    m = circuit_metrics(job, References(job, ablation, progress), circuits, progress)
    results = [summarise(m[:, [i, -2, -1]], c.n_edges, ablation) for i, c in enumerate(circuits)]
    k, s = len(named), len(size_list)
    shape = (k + 1, s)
    value, low, high, n = (np.zeros(shape) for _ in range(4))
    for i, r in enumerate(results[:k * s]):
        value[i // s, i % s], low[i // s, i % s], high[i // s, i % s], n[i // s, i % s] = (
            r.value, r.ci_low, r.ci_high, r.n_edges)
    rand = np.array([[(r.value, r.ci_low, r.ci_high, r.n_edges) for r in results[k * s + j * len(seed_list):
                                                                                k * s + (j + 1) * len(seed_list)]]
                     for j in range(s)])  # (sizes, seeds, 4)
    value[k], low[k], high[k] = rand[:, :, 0].mean(1), rand[:, :, 1].min(1), rand[:, :, 2].max(1)
    n[k] = rand[:, :, 3].mean(1)
    return FaithfulnessCurve((*named, "random"), np.array(size_list), value, low, high, n.astype(int), ablation,
                             tuple(seed_list))


@dataclass(frozen=True)
class EdgeAgreement:
    """Scores against exact single-edge patching on sampled ``edges`` (indices into the graph):
    ``estimate`` (E,) the score, ``exact`` (E,) the mean over examples of the metric change when
    the edge alone is patched; ``spearman`` with its bootstrap interval over edges (also
    ``pearson``); ``top`` (E,) True for edges sampled from the top by absolute score.

    >>> a = EdgeAgreement(np.arange(3), ["a", "b", "c"], np.array([1.0, 2, 3]), np.array([1.1, 1.9, 3.2]),
    ...                   1.0, 1.0, 1.0, 0.99, np.array([True, False, False]), "eap")
    >>> a.to_pandas().shape
    (3, 4)
    """

    edges: np.ndarray
    names: list[str]
    estimate: np.ndarray
    exact: np.ndarray
    spearman: float
    ci_low: float
    ci_high: float
    pearson: float
    top: np.ndarray
    method: str = ""

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per sampled edge: ``edge``, ``estimate``, ``exact``, ``top``."""
        import pandas as pd

        return pd.DataFrame({"edge": self.names, "estimate": self.estimate, "exact": self.exact, "top": self.top})


def sample_edges(scores: EdgeScores, n_edges: int, top_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_edges`` edge indices: the top ``top_share`` of them by absolute score, the rest uniformly
    from the other edges; and which are from the top.

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> from mechscope.circuits import edge_attribution
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> s = edge_attribution(mechscope.tiny_model("llama"), data, method="eap", progress=False)
    >>> edges, top = sample_edges(s, 10, 0.5, seed=0)
    >>> edges.shape, int(top.sum()), bool(abs(s.scores[edges[0]]) == abs(s.scores).max())
    ((10,), 5, True)
    """
    total = scores.graph.n_edges
    n = min(n_edges, total)
    n_top = int(round(n * top_share))
    order = np.argsort(-np.abs(scores.scores), kind="stable")
    rest = np.random.default_rng(seed).choice(order[n_top:], n - n_top, replace=False)
    edges = np.concatenate([order[:n_top], rest])
    return edges, np.arange(n) < n_top


def edge_agreement(model: Any, pairs: Any, scores: Any, n_edges: Any = 200, *, top_share: float = 0.5,
                   seed: Any = 0, metric: Any = None, batch_size: Any = 8, progress: bool = True) -> EdgeAgreement:
    """Spearman agreement of ``scores`` with exact single-edge patching (the corrupt run's output
    into one edge, every other edge clean) on ``n_edges`` sampled edges (see `sample_edges`).

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> from mechscope.circuits import edge_attribution
    >>> model = mechscope.tiny_model("llama")
    >>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"}])
    >>> a = edge_agreement(model, data, edge_attribution(model, data, steps=4, progress=False), n_edges=20,
    ...                    progress=False)
    >>> a.exact.shape, bool(a.ci_low <= a.spearman <= a.ci_high)
    ((20,), True)
    """
    if not isinstance(scores, EdgeScores):
        raise InputError(f"scores must be EdgeScores (edge_attribution(...)), got {type(scores).__name__}.")
    n = as_int(n_edges, "n_edges")
    if n < 3:
        raise InputError(f"n_edges must be at least 3 for a rank correlation, got {n}.")
    share = float(top_share)
    if not 0.0 <= share <= 1.0:
        raise InputError(f"top_share must be between 0 and 1, got {top_share!r}.")
    edges, top = sample_edges(scores, n, share, as_int(seed, "seed"))
    exact = edge_patching(model, pairs, edges, metric=metric, batch_size=batch_size, progress=progress).mean(0)
    estimate = scores.scores[edges].astype(np.float64)
    both = np.stack([estimate, exact], 1)
    rho, low, high = bootstrap(both, lambda r: correlation(r[:, 0], r[:, 1])["spearman"])
    return EdgeAgreement(edges, scores.graph.edge_names(edges), estimate, exact, rho, low, high,
                         correlation(estimate, exact)["pearson"], top, scores.method)
