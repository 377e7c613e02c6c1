"""Influence, pruning and scores of an attribution graph: plain numpy on its adjacency matrix.

The adjacency ``A`` is (n, n) with rows = targets and columns = sources (``A[t, s]``: direct
effect of node s on node t). ``normalise`` divides the absolute values of each row by its sum;
the influence of every node on the logits is ``w . (A + A^2 + ...)`` for the normalised matrix
and the logit weights ``w`` (the logit nodes' probabilities, 0 elsewhere). The graph is a DAG,
so the series ends after at most its depth; it is summed exactly by repeated products.

>>> import numpy as np
>>> A = np.array([[0, 0, 0], [2.0, 0, 0], [1.0, 3.0, 0]])      # 0 -> 1 -> 2, 0 -> 2
>>> w = np.array([0, 0, 1.0])                                   # node 2 is the logit
>>> influence(normalise(A), w).round(3).tolist()
[1.0, 0.75, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalise(adjacency: np.ndarray) -> np.ndarray:
    """Absolute values, each row divided by its sum (rows summing to 0 stay 0); (n, n) float64.

    >>> normalise(np.array([[1.0, -3.0], [0.0, 0.0]])).tolist()
    [[0.25, 0.75], [0.0, 0.0]]
    """
    a = np.abs(np.asarray(adjacency, dtype=np.float64))
    total = a.sum(1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=total > 0)


def influence(normalised: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights . (N + N^2 + ...)`` (n,) for a normalised DAG adjacency ``N`` (n, n).

    >>> influence(np.zeros((2, 2)), np.array([0.0, 1.0])).tolist()
    [0.0, 0.0]
    """
    total = np.zeros(normalised.shape[0])
    v = np.asarray(weights, dtype=np.float64) @ normalised
    for _ in range(normalised.shape[0]):
        if not v.any():
            break
        total += v
        v = v @ normalised
    return total


def threshold(values: np.ndarray, fraction: float) -> float:
    """The smallest value among the largest ``values`` that together reach ``fraction`` of their
    sum (keep ``values >= threshold``); +inf when they sum to 0.

    >>> threshold(np.array([5.0, 1.0, 3.0, 1.0]), 0.8)
    3.0
    """
    flat = np.sort(np.asarray(values, dtype=np.float64).ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return float("inf")
    cum = np.cumsum(flat) / total
    return float(flat[min(int(np.searchsorted(cum, fraction - 1e-12)), flat.size - 1)])


@dataclass(frozen=True)
class Pruning:
    """Which nodes (n,) and edges (n, n) a pruning keeps, and the shares of influence its
    threshold selections covered before orphans were dropped: ``node_coverage`` (of the
    prunable nodes' influence) and ``edge_coverage`` (of the edge scores).

    >>> Pruning(np.ones(2, bool), np.zeros((2, 2), bool), 1.0, 1.0).nodes.tolist()
    [True, True]
    """

    nodes: np.ndarray
    edges: np.ndarray
    node_coverage: float
    edge_coverage: float


def prune_masks(adjacency: np.ndarray, weights: np.ndarray, always: np.ndarray, prunable: np.ndarray,
                node_threshold: float = 0.8, edge_threshold: float = 0.98,
                needs_input: np.ndarray | None = None) -> Pruning:
    """Keep the prunable nodes covering ``node_threshold`` of their influence (plus every
    ``always`` node), then the edges covering ``edge_threshold`` of the edge scores (normalised
    weight x influence of its target, logit weight included), then drop orphans: prunable
    nodes without a kept outgoing edge, and ``needs_input`` nodes without a kept incoming one.

    >>> A = np.array([[0, 0, 0, 0], [2.0, 0, 0, 0], [0.1, 0, 0, 0], [1.0, 3.0, 0.01, 0]])
    >>> p = prune_masks(A, np.array([0, 0, 0, 1.0]), np.array([1, 0, 0, 1], bool), np.array([0, 1, 1, 0], bool))
    >>> p.nodes.tolist(), int(p.edges.sum())
    ([True, True, False, True], 3)
    """
    w = np.asarray(weights, dtype=np.float64)
    inf = influence(normalise(adjacency), w)
    cut = threshold(inf[prunable], node_threshold)
    nodes = always | (prunable & (inf >= cut) & (inf > 0))
    total = inf[prunable].sum()
    node_cov = float(inf[prunable & nodes].sum() / total) if total > 0 else 1.0
    kept = np.where(nodes[:, None] & nodes[None, :], adjacency, 0.0)
    norm = normalise(kept)
    score = norm * (influence(norm, w) + w)[:, None]
    edges = (score >= threshold(score, edge_threshold)) & (score > 0)
    edge_total = score.sum()
    edge_cov = float(score[edges].sum() / edge_total) if edge_total > 0 else 1.0
    needs = np.zeros_like(nodes) if needs_input is None else needs_input
    while True:
        edges &= nodes[:, None] & nodes[None, :]
        new = nodes & ~(prunable & ~edges.any(0)) & ~(needs & ~edges.any(1))
        if np.array_equal(new, nodes):
            break
        nodes = new
    return Pruning(nodes, edges, node_cov, edge_cov)


def scores(adjacency: np.ndarray, weights: np.ndarray, is_error: np.ndarray, is_embedding: np.ndarray
           ) -> tuple[float, float]:
    """(replacement score, completeness score): embedding influence / (embedding + error
    influence); the influence-weighted share of node inputs not from error nodes. Both are in
    [0, 1] and 1 when no error node has an effect.

    >>> A = np.array([[0, 0, 0], [0, 0, 0], [3.0, 1.0, 0]])     # embedding 0, error 1, logit 2
    >>> scores(A, np.array([0, 0, 1.0]), np.array([0, 1, 0], bool), np.array([1, 0, 0], bool))
    (0.75, 0.875)
    """
    norm = normalise(adjacency)
    w = np.asarray(weights, dtype=np.float64)
    inf = influence(norm, w)
    tok, err = inf[is_embedding].sum(), inf[is_error].sum()
    replacement = float(tok / (tok + err)) if tok + err > 0 else 1.0
    complete = 1.0 - norm[:, is_error].sum(1)
    out = inf + w
    completeness = float((complete * out).sum() / out.sum()) if out.sum() > 0 else 1.0
    return replacement, completeness


def linear_effects(adjacency: np.ndarray, values: np.ndarray, is_feature: np.ndarray, target: int) -> np.ndarray:
    """Change (n,) of node ``target`` when each node is zeroed in the linearised replacement
    model: attention and norms frozen, error nodes fixed, features passing changes of their
    pre-activation on with slope 1 (they stay active). ``values`` (n,): each feature's
    activation (a source's column is its full effect, so zeroing it is minus the column).

    >>> A = np.array([[0, 0, 0], [2.0, 0, 0], [1.0, 3.0, 0]])   # embedding, feature (act 2), logit
    >>> linear_effects(A, np.array([1.0, 2.0, 1.0]), np.array([0, 1, 0], bool), 2).tolist()
    [-4.0, -3.0, -0.0]
    """
    a = np.asarray(adjacency, dtype=np.float64)
    per_unit = np.where(is_feature, a / np.where(values != 0, values, 1.0)[None, :], 0.0)
    e = np.zeros(a.shape[0])
    e[target] = 1.0
    r = np.linalg.solve((np.eye(a.shape[0]) - per_unit).T, e)
    return -(r @ a)


__all__ = ["Pruning", "influence", "linear_effects", "normalise", "prune_masks", "scores", "threshold"]
