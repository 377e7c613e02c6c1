"""A component circuit as a `CircuitGraph`: one node per component, ablation effects precomputed and live.

`circuit_graph_data` lays a `Circuit` out as a `GraphData`: ``input`` in the bottom row,
layer l's heads, MLP and key/value inputs in row l + 1, ``logits`` on top; a head's column is
its index, the MLP's ``n_heads``, key/value head g's ``n_heads + 1 + g``. A head's query input
is folded into the head (``L3H2.q`` -> ``L3H2``) and a key/value head's key and value inputs
into one ``L3KV1`` node, so an edge of the drawing sums the circuit's edges between two
components (their `EdgeScores` scores; without scores, how many edges).

Ablating a node removes its edges from the circuit and reruns it exactly (the edges outside the
circuit carry the corrupt run, or the dataset means: `faithfulness`'s machinery): a node's
edges are its outgoing ones, and for the two kinds that write nothing the graph has (a
key/value node, the logits) its incoming ones. An effect is the change of the metric's mean
over pairs from the full circuit's. `node_ablation_effects` does every node in one pass over
the batches (the offline snapshot answers clicks with them); `circuit_ablator` is the callable
the live widget runs on a list of node ids (a supernode ablates all of them together).

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> from mechscope.circuits import edge_attribution
>>> model = mechscope.tiny_model("llama")
>>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"}] * 2)
>>> scores = edge_attribution(model, data, steps=2, progress=False)
>>> circuit = scores.circuit(n_edges=10)
>>> effects = node_ablation_effects(model, data, circuit, progress=False)
>>> ablate = circuit_ablator(model, data, circuit)
>>> node = effects.nodes[1]
>>> bool(abs(ablate([node]) - effects.effect(node)) < 1e-5)
True
>>> d = circuit_graph_data(circuit, scores, effects)
>>> d.node_id == effects.nodes, d.row_labels[0], d.row_labels[-1]
(True, 'input', 'logits')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .attribution import EdgeScores
from .batches import prepare
from .circuit import Circuit
from .faithfulness import References, check_circuit, circuit_metrics

if TYPE_CHECKING:
    from ..widgets.circuit_graph import CircuitGraph, GraphData

__all__ = ["NodeEffects", "circuit_ablator", "circuit_graph_data", "node_ablation_effects", "node_edges",
           "node_names", "show_circuit"]


# ---- layout --------------------------------------------------------------------------
def _place(name: str, n_layers: int, n_heads: int) -> tuple[str, int, float]:
    """(kind, row, column) of a component name (``input``, ``L3H2``, ``L3MLP``, ``L3KV1``, ``logits``)."""
    if name == "input":
        return "input", 0, (n_heads - 1) / 2
    if name == "logits":
        return "logit", n_layers + 1, (n_heads - 1) / 2
    match = re.fullmatch(r"L(\d+)(H(\d+)|MLP|KV(\d+))", name)
    if match is None:
        raise InputError(f"{name!r} is not a component name (input, L3H2, L3MLP, L3KV1, logits).")
    layer, _, head, kv = match.groups()
    if head is not None:
        return "head", int(layer) + 1, float(head)
    if kv is not None:
        return "kv", int(layer) + 1, n_heads + 1.0 + int(kv)
    return "mlp", int(layer) + 1, float(n_heads)


def node_names(circuit: Circuit) -> tuple[str, ...]:
    """The drawn nodes of ``circuit``: its components plus ``input`` and ``logits``, bottom row first,
    then by column.

    >>> from mechscope.circuits import ComponentGraph
    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> c = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "L0KV0.k"), g.edge_index("L0H1", "logits")]))
    >>> node_names(c)
    ('input', 'L0H1', 'L0KV0', 'logits')
    """
    g = circuit.graph
    names = set(circuit.components) | {"input", "logits"}
    return tuple(sorted(names, key=lambda n: _place(n, g.n_layers, g.n_heads)[1:]))


def _components(circuit: Circuit) -> tuple[np.ndarray, np.ndarray]:
    """Each graph edge's upstream component and downstream component names, (n_edges,) each."""
    g = circuit.graph
    up = np.array(g.upstream, dtype=object)[g.edges[:, 0]]
    down = np.array([g.component(d) for d in g.downstream], dtype=object)[g.edges[:, 1]]
    return up, down


def node_edges(circuit: Circuit, names: tuple[str, ...] | None = None) -> np.ndarray:
    """(nodes, n_edges of the graph) bool: the circuit edges that ablating each node removes (its
    outgoing edges; a key/value node's or the logits' incoming ones). ``names`` default `node_names`.

    >>> from mechscope.circuits import ComponentGraph
    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> c = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "L0KV0.k"), g.edge_index("L0H1", "logits")]))
    >>> node_edges(c).sum(1).tolist()                       # input, L0H1, L0KV0, logits
    [1, 1, 1, 1]
    """
    g = circuit.graph
    names = node_names(circuit) if names is None else names
    up, down = _components(circuit)
    out = np.zeros((len(names), g.n_edges), bool)
    for i, name in enumerate(names):
        sink = _place(name, g.n_layers, g.n_heads)[0] in ("kv", "logit")
        out[i] = circuit.edges & ((down == name) if sink else (up == name))
    return out


# ---- effects -------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeEffects:
    """Each node's ablation effect: ``values`` (nodes,) the change of the metric's mean over pairs
    when the node's edges (``removed`` (nodes,) of them) leave the circuit; ``per_example``
    (examples, nodes) the same per pair; ``m_circuit`` (examples,) the full circuit's metric.

    >>> e = NodeEffects(("input", "logits"), np.array([-1.0, -2.0]), np.array([[-1.0, -2.0]]),
    ...                 np.array([3.0]), np.array([2, 1]), "logit diff")
    >>> e, e.effect("logits"), e.to_pandas().shape
    (NodeEffects(2 nodes, logit diff, patch ablation, 1 examples), -2.0, (2, 3))
    """

    nodes: tuple[str, ...]
    values: np.ndarray = field(repr=False)
    per_example: np.ndarray = field(repr=False)
    m_circuit: np.ndarray = field(repr=False)
    removed: np.ndarray = field(repr=False)
    metric_name: str = "metric"
    ablation: str = "patch"

    def effect(self, node: str) -> float:
        """The effect of one node (by id)."""
        if node not in self.nodes:
            raise InputError(f"{node!r} is not one of these nodes; they are {list(self.nodes)[:6]}...")
        return float(self.values[self.nodes.index(node)])

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per node: ``node``, ``effect``, ``removed_edges``."""
        import pandas as pd

        return pd.DataFrame({"node": self.nodes, "effect": self.values, "removed_edges": self.removed})

    def __repr__(self) -> str:
        return (f"NodeEffects({len(self.nodes)} nodes, {self.metric_name}, {self.ablation} ablation, "
                f"{len(self.m_circuit)} examples)")


def _job(model: Any, pairs: Any, circuit: Any, ablation: str, verb: str, metric: Any, batch_size: Any,
         progress: bool) -> tuple[Any, Circuit, References]:
    job = prepare(model, pairs, verb, metric=metric, batch_size=batch_size)
    circuit = check_circuit(job, circuit)
    return job, circuit, References(job, ablation, progress)


def _without(circuit: Circuit, removed: np.ndarray) -> Circuit:
    return Circuit(circuit.graph, circuit.edges & ~removed, None, f"{circuit.how} minus {int(removed.sum())} edges")


def node_ablation_effects(model: Any, pairs: Any, circuit: Any, ablation: str = "patch", *, metric: Any = None,
                          batch_size: Any = 8, progress: bool = True) -> NodeEffects:
    """Every node's ablation effect (see the module docstring): one exact circuit run per node
    and batch of pairs, plus the full circuit's, sharing each batch's clean and reference runs.

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> from mechscope.circuits import edge_attribution
    >>> model = mechscope.tiny_model("llama")
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> circuit = edge_attribution(model, data, method="eap", progress=False).circuit(n_edges=5)
    >>> e = node_ablation_effects(model, data, circuit, progress=False)
    >>> e.values.shape == (len(e.nodes),), e.per_example.shape == (1, len(e.nodes))
    (True, True)
    """
    job, circuit, refs = _job(model, pairs, circuit, ablation, "node_ablation_effects", metric, batch_size, progress)
    names = node_names(circuit)
    masks = node_edges(circuit, names)
    m = circuit_metrics(job, refs, [circuit] + [_without(circuit, r) for r in masks], progress)
    per = m[:, 1:1 + len(names)] - m[:, :1]
    values = m[:, 1:1 + len(names)].mean(0) - m[:, 0].mean()
    return NodeEffects(names, values, per, m[:, 0].copy(), masks.sum(1), job.metric.name, ablation)


def circuit_ablator(model: Any, pairs: Any, circuit: Any, ablation: str = "patch", *, metric: Any = None,
                    batch_size: Any = 8) -> Callable[[list[str]], float]:
    """``ablate(node_ids) -> float``: the change of the metric's mean over ``pairs`` when the edges
    of all those nodes (a supernode) leave ``circuit`` together; what `CircuitGraph` runs live.
    Inputs are checked now; each call reruns the circuit exactly (no progress bar: it runs in
    the widget's background thread).

    >>> import mechscope
    >>> from mechscope.datasets import pairs
    >>> from mechscope.circuits import edge_attribution
    >>> model = mechscope.tiny_model("llama")
    >>> data = pairs([{"clean": "the cat", "corrupt": "the dog", "answer": " the", "wrong": " of"}])
    >>> circuit = edge_attribution(model, data, method="eap", progress=False).circuit(n_edges=5)
    >>> ablate = circuit_ablator(model, data, circuit)
    >>> isinstance(ablate(["logits"]), float)
    True
    >>> ablate(["L9H9"])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: 'L9H9' is not a node of this circuit's graph; its nodes are ...
    """
    job, circuit, refs = _job(model, pairs, circuit, ablation, "circuit_ablator", metric, batch_size, False)
    names = node_names(circuit)
    masks = node_edges(circuit, names)
    full: list[float] = []

    def ablate(node_ids: list[str]) -> float:
        ids = [node_ids] if isinstance(node_ids, str) else node_ids
        if not isinstance(ids, (list, tuple)) or not ids:
            raise InputError(f"give a non-empty list of node ids (e.g. [{names[0]!r}]), got {node_ids!r}.")
        for x in ids:
            if x not in names:
                raise InputError(f"{x!r} is not a node of this circuit's graph; its nodes are "
                                 f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}.")
        reduced = _without(circuit, np.asarray(masks[[names.index(x) for x in ids]].any(0)))
        runs = [reduced] if full else [circuit, reduced]
        m = circuit_metrics(job, refs, runs, False)
        if not full:
            full.append(float(m[:, 0].mean()))
        return float(m[:, len(runs) - 1].mean() - full[0])

    return ablate


# ---- the graph -----------------------------------------------------------------------
def _check_scores(circuit: Any, scores: Any) -> None:
    if not isinstance(circuit, Circuit):
        raise InputError(f"circuit must be a Circuit (scores.circuit(n_edges=...)), got {type(circuit).__name__}.")
    if scores is None:
        return
    if not isinstance(scores, EdgeScores):
        raise InputError(f"scores must be the EdgeScores the circuit came from (edge_attribution(...)), "
                         f"got {type(scores).__name__}.")
    if scores.graph.upstream != circuit.graph.upstream or scores.graph.downstream != circuit.graph.downstream:
        raise InputError("these scores are of another model's graph than the circuit: pass the EdgeScores "
                         "the circuit was selected from.")


def _effects(names: tuple[str, ...], effects: Any) -> tuple[np.ndarray, str, str]:
    """(nodes,) effects (NaN for none), the metric's name and the ablation from ``effects``."""
    if effects is None:
        return np.full(len(names), np.nan), "metric", ""
    if isinstance(effects, NodeEffects):
        given, metric, ablation = dict(zip(effects.nodes, effects.values.tolist(), strict=True)), \
            effects.metric_name, effects.ablation
    elif isinstance(effects, Mapping):
        given, metric, ablation = dict(effects), "metric", ""
    else:
        raise InputError(f"effects must be NodeEffects (node_ablation_effects(...)) or a dict node id -> "
                         f"metric change, got {type(effects).__name__}.")
    unknown = [k for k in given if k not in names]
    if unknown:
        raise InputError(f"effects name {unknown[0]!r}, which is not a node of this circuit ({', '.join(names[:6])} ...).")
    try:
        values = np.array([float(given.get(n, math.nan)) for n in names])
    except (TypeError, ValueError):
        raise InputError("effects must be numbers (one metric change per node id).") from None
    return values, metric, ablation


def _describe(name: str, kind: str, n_heads: int, per_group: int) -> str:
    if kind == "input":
        return "input: the token embeddings (the residual stream entering layer 0)"
    if kind == "logit":
        return "logits: the model's output"
    layer = re.match(r"L(\d+)", name).group(1)  # type: ignore[union-attr]
    if kind == "head":
        return f"{name}: attention head {name.split('H')[1]} of layer {layer} (query input and output)"
    if kind == "mlp":
        return f"{name}: the MLP of layer {layer}"
    g = int(name.split("KV")[1])
    return (f"{name}: key and value inputs of layer {layer}'s key-value head {g} "
            f"(shared by heads {g * per_group}..{(g + 1) * per_group - 1})")


def _summary(text: str, kind: str, io: tuple[int, float, int, float], weighted: bool, effect: float,
             metric: str, ablation: str) -> str:
    n_in, w_in, n_out, w_out = io
    def part(n: int, w: float, way: str) -> str:
        return f"{n} {way} (score sum {w:+.4g})" if weighted and n else f"{n} {way}"

    edges = f"circuit edges: {part(n_in, w_in, 'in')}, {part(n_out, w_out, 'out')}"
    which = "incoming" if kind in ("kv", "logit") else "outgoing"
    if math.isfinite(effect):
        how = f", {ablation} ablation" if ablation else ""
        said = f"removing its {which} edges changes {metric} by {effect:+.4g} (mean over pairs{how})"
    else:
        said = "ablation effect not computed (Circuit.show(model=..., pairs=...) computes it)"
    return f"{text}. {edges}; {said}."


def circuit_graph_data(circuit: Any, scores: Any = None, effects: Any = None, *, title: str | None = None) -> GraphData:
    """``circuit`` as a `GraphData` (layout in the module docstring): edges weighted by the sum of
    ``scores`` (`EdgeScores`) over the circuit edges they stand for (or their count), node
    effects from ``effects`` (`NodeEffects` or a dict node id -> metric change; NaN otherwise).

    >>> from mechscope.circuits import ComponentGraph
    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> c = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "L0H1.q"), g.edge_index("L0H1", "logits")]))
    >>> d = circuit_graph_data(c, effects={"L0H1": -0.5})
    >>> d.node_id, d.node_layer.tolist(), d.edge_weight.tolist(), d.node_effect.tolist()[1]
    (('input', 'L0H1', 'logits'), [0, 1, 2], [1.0, 1.0], -0.5)
    """
    from ..widgets.circuit_graph import GraphData

    _check_scores(circuit, scores)
    g = circuit.graph
    names = node_names(circuit)
    values, metric, ablation = _effects(names, effects)
    index = {n: i for i, n in enumerate(names)}
    up, down = _components(circuit)
    weights: dict[tuple[int, int], float] = {}
    for e in np.flatnonzero(circuit.edges):
        key = (index[up[e]], index[down[e]])
        weights[key] = weights.get(key, 0.0) + (float(scores.scores[e]) if scores is not None else 1.0)
    src = np.array([k[0] for k in weights], np.int64)
    dst = np.array([k[1] for k in weights], np.int64)
    w = np.array(list(weights.values()), np.float64)
    placed = [_place(n, g.n_layers, g.n_heads) for n in names]
    summaries = []
    for i, (name, (kind, _, _)) in enumerate(zip(names, placed, strict=True)):
        io = (int((dst == i).sum()), float(w[dst == i].sum()), int((src == i).sum()), float(w[src == i].sum()))
        text = _describe(name, kind, g.n_heads, g.n_heads // g.n_kv_heads)
        summaries.append(_summary(text, kind, io, scores is not None, float(values[i]), metric, ablation))
    return GraphData(node_id=names, node_label=names, node_layer=[p[1] for p in placed],
                     node_column=[p[2] for p in placed], node_kind=[p[0] for p in placed], node_summary=summaries,
                     node_effect=values, edge_src=src, edge_dst=dst, edge_weight=w,
                     title=title if title is not None else f"circuit ({circuit.how or 'edges'}): {circuit.n_edges} edges",
                     metric_name=metric,
                     row_labels=["input"] + [f"layer {k}" for k in range(g.n_layers)] + ["logits"],
                     column_labels=[f"H{h}" for h in range(g.n_heads)] + ["MLP"]
                     + [f"KV{k}" for k in range(g.n_kv_heads)])


def show_circuit(circuit: Any, model: Any = None, pairs: Any = None, scores: Any = None, ablation: str = "patch", *,
                 metric: Any = None, batch_size: Any = 8, progress: bool = True) -> CircuitGraph:
    """`Circuit.show`: the `CircuitGraph` of ``circuit``; with ``model`` and ``pairs`` every node's
    effect is precomputed (`node_ablation_effects`: what the offline snapshot shows) and clicks
    run `circuit_ablator` live; without them the effects are NaN and the graph is offline.

    >>> from mechscope.circuits import ComponentGraph
    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> c = Circuit(g, np.isin(np.arange(g.n_edges), [g.edge_index("input", "logits")]))
    >>> w = show_circuit(c)
    >>> w.live, w.n_nodes, w.n_edges
    (False, 2, 1)
    >>> w.close()
    """
    from ..widgets.circuit_graph import CircuitGraph

    _check_scores(circuit, scores)
    if (model is None) != (pairs is None):
        raise InputError("give both model= and pairs= (to compute and run node ablations), or neither "
                         "(to draw the circuit with its scores only).")
    if model is None:
        return CircuitGraph(circuit_graph_data(circuit, scores))
    ablate = circuit_ablator(model, pairs, circuit, ablation, metric=metric, batch_size=batch_size)
    effects = node_ablation_effects(model, pairs, circuit, ablation, metric=metric, batch_size=batch_size,
                                    progress=progress)
    return CircuitGraph(circuit_graph_data(circuit, scores, effects), ablate=ablate)
