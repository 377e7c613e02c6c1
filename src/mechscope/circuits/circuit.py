"""Circuits: sets of edges of a `ComponentGraph`, pruned to what connects the input to the logits.

An edge u -> v stays when u can be reached from ``input`` and v's component reaches the
``logits`` through kept edges (a key or value node reaches them through any head of its group).
`select` keeps the top edges of a ranking: the smallest prefix whose pruned circuit has at
least ``n_edges`` edges, so a circuit of "n edges" has n edges after pruning (or a few more,
when one more edge connects several), and a random baseline of the same size is made the same
way from a random ranking.

>>> from mechscope.circuits.graph import ComponentGraph
>>> g = ComponentGraph.build(n_layers=2, n_heads=2, n_kv_heads=1)
>>> scores = np.zeros(g.n_edges)
>>> scores[[g.edge_index("input", "L1H0.q"), g.edge_index("L1H0", "logits"), g.edge_index("L0H1", "L0MLP")]] = 1.0
>>> c = select(g, scores, n_edges=2)
>>> c.n_edges, c.edge_names()
(2, ['input -> L1H0.q', 'L1H0 -> logits'])
>>> c.components
('input', 'L1H0', 'logits')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..validate import as_int
from .graph import ComponentGraph


@dataclass(frozen=True)
class Circuit:
    """``edges`` (n_edges of the graph,) bool: the kept edges of ``graph``; ``requested`` is the
    size asked for and ``how`` how it was chosen ("eap-ig top", "random seed 0", ...).

    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> c = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "logits")]))
    >>> c, c.components, int(c.out_matrix().sum()) == g.n_edges - 1
    (Circuit(edges: 1 edges, 2 components), ('input', 'logits'), True)
    """

    graph: ComponentGraph = field(repr=False)
    edges: np.ndarray = field(repr=False)
    requested: int | None = None
    how: str = ""

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum())

    @property
    def components(self) -> tuple[str, ...]:
        """Components with a kept edge (``input``, heads ``L3H2``, ``L3KV1`` inputs, MLPs, ``logits``)."""
        g = self.graph
        names = {g.upstream[u] for u, _ in g.edges[self.edges]}
        names |= {g.component(g.downstream[v]) for _, v in g.edges[self.edges]}
        order = {n: i for i, n in enumerate(g.upstream)}
        return tuple(sorted(names, key=lambda n: (order.get(n, len(order)), n)))

    def edge_names(self) -> list[str]:
        return self.graph.edge_names(np.flatnonzero(self.edges))

    def out_matrix(self) -> np.ndarray:
        """(n_upstream, n_downstream) bool: the graph's edges NOT in the circuit (what gets patched)."""
        out = self.graph.valid.copy()
        e = self.graph.edges[self.edges]
        out[e[:, 0], e[:, 1]] = False
        return out

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per kept edge: ``upstream``, ``downstream``."""
        import pandas as pd

        e = self.graph.edges[self.edges]
        return pd.DataFrame({"upstream": [self.graph.upstream[u] for u in e[:, 0]],
                             "downstream": [self.graph.downstream[v] for v in e[:, 1]]})

    def show(self, model: Any = None, pairs: Any = None, scores: Any = None, ablation: str = "patch",
             **kwargs: Any) -> Any:
        """The `mechscope.widgets.CircuitGraph` of this circuit (one node per component, edges
        weighted by ``scores``); with ``model`` and ``pairs`` each node's ablation effect is
        precomputed and clicks ablate live (``metric=``, ``batch_size=``, ``progress=`` pass on);
        see `mechscope.circuits.view.show_circuit`.

        >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
        >>> w = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "logits")])).show()
        >>> w.n_nodes, w.live
        (2, False)
        >>> w.close()
        """
        from .view import show_circuit

        return show_circuit(self, model, pairs, scores, ablation, **kwargs)

    def __repr__(self) -> str:
        return f"Circuit({self.how or 'edges'}: {self.n_edges} edges, {len(self.components)} components)"


def _groups(g: ComponentGraph) -> tuple[np.ndarray, np.ndarray]:
    """Each downstream node's components as index pairs (down index, component index), where
    components are the upstream nodes plus ``logits`` (index n_upstream)."""
    pairs = []
    per_group = g.n_heads // g.n_kv_heads
    for v, name in enumerate(g.downstream):
        layer = int(g.down_layer[v])
        if name == "logits":
            pairs.append((v, g.n_upstream))
            continue
        first = g.up_count(layer)
        if name.endswith("MLP"):
            pairs.append((v, first + g.n_heads))
        elif name.endswith(".q"):
            pairs.append((v, first + int(name.split("H")[1].split(".")[0])))
        else:
            kv = int(name.split("KV")[1].split(".")[0])
            pairs += [(v, first + kv * per_group + i) for i in range(per_group)]
    arr = np.asarray(pairs)
    return arr[:, 0], arr[:, 1]


def prune(g: ComponentGraph, kept: np.ndarray) -> np.ndarray:
    """The edges of ``kept`` ((n_edges,) bool) that lie on a path from input to logits.

    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> kept = np.isin(np.arange(g.n_edges), [g.edge_index("input", "L0H0.q"), g.edge_index("L0H1", "logits")])
    >>> int(prune(g, kept).sum())                  # L0H0 never reaches the logits, L0H1 is never reached
    0
    """
    down_of, comp_of = _groups(g)
    u, v = g.edges[:, 0], g.edges[:, 1]
    n_comp = g.n_upstream + 1
    reached = np.zeros(n_comp, bool)
    reached[0] = True
    for stage in _stages(g):  # forward: components in execution order
        e = kept & reached[u] & np.isin(v, stage)
        hit = np.isin(down_of, v[e])
        reached[comp_of[hit]] = True
    useful = np.zeros(n_comp, bool)
    useful[-1] = True
    for ups in reversed(_up_stages(g)):  # backward: outputs of later components first
        down_useful = np.zeros(g.n_downstream, bool)
        np.logical_or.at(down_useful, down_of, useful[comp_of])
        e = kept & np.isin(u, ups) & down_useful[v]
        useful[np.unique(u[e])] = True
    down_useful = np.zeros(g.n_downstream, bool)
    np.logical_or.at(down_useful, down_of, useful[comp_of])
    return kept & reached[u] & down_useful[v]


def _stages(g: ComponentGraph) -> list[np.ndarray]:
    """Downstream indices grouped by when they read: each layer's attention inputs, its MLP, the logits."""
    out = []
    for layer in range(g.n_layers):
        s = g.down_slice(layer)
        out += [np.arange(s.start, s.stop - 1), np.array([s.stop - 1])]
    return out + [np.array([g.n_downstream - 1])]


def _up_stages(g: ComponentGraph) -> list[np.ndarray]:
    """Upstream indices grouped by when they write: input, then each layer's heads, its MLP."""
    out = [np.array([0])]
    for layer in range(g.n_layers):
        first = g.up_count(layer)
        out += [np.arange(first, first + g.n_heads), np.array([first + g.n_heads])]
    return out


def select(g: ComponentGraph, ranking: np.ndarray, *, n_edges: Any = None, threshold: Any = None,
           how: str = "") -> Circuit:
    """The circuit of the top edges of ``ranking`` ((n_edges,) scores, larger = kept first),
    pruned: ``n_edges`` after pruning (smallest prefix reaching it) or every edge with score
    at least ``threshold``.

    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> ranking = np.zeros(g.n_edges)
    >>> ranking[[g.edge_index("input", "L0MLP"), g.edge_index("L0MLP", "logits")]] = 1.0
    >>> select(g, ranking, threshold=0.5).edge_names()
    ['input -> L0MLP', 'L0MLP -> logits']
    """
    if (n_edges is None) == (threshold is None):
        raise InputError("give exactly one of n_edges= (circuit size) or threshold= (minimum absolute score).")
    if threshold is not None:
        t = float(threshold)
        if not np.isfinite(t):
            raise InputError(f"threshold must be a finite number, got {threshold!r}.")
        return Circuit(g, prune(g, ranking >= t), None, how)
    n = as_int(n_edges, "n_edges")
    if not 1 <= n <= g.n_edges:
        raise InputError(f"n_edges must be between 1 and {g.n_edges} (the graph's edges), got {n}.")
    order = np.argsort(-ranking, kind="stable")

    def pruned(p: int) -> np.ndarray:
        kept = np.zeros(g.n_edges, bool)
        kept[order[:p]] = True
        return prune(g, kept)

    lo, hi = n, g.n_edges  # pruned(p) has at most p edges and grows with p
    while lo < hi:
        mid = (lo + hi) // 2
        if pruned(mid).sum() >= n:
            hi = mid
        else:
            lo = mid + 1
    return Circuit(g, pruned(lo), n, how)
