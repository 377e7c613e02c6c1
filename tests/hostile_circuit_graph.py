"""`CircuitGraph` test graphs: a real circuit of the tiny Llama, a large synthetic graph, and the
real circuit with hostile strings in every label, summary, row / column label and the title.

``circuit_graph_data(...)`` turns an EAP-IG circuit (``edge_attribution(...).circuit(n_edges=20)``,
nodes = ``circuit.components``) into a `GraphData`: input in row 0, layer l's heads, MLP and
key/value inputs in row l + 1, logits on top; a head's column is its index, the MLP's
``n_heads``, KV group g's ``n_heads + 1 + g``; an edge's weight is its score (q/k/v edges into the
same component summed). ``node_effect`` is each head's / MLP's zero-ablation ``metric_change``
from `mechscope.ablate`; ``hook_ablate(model)`` ablates a set of nodes together with plain
torch hooks on ``model.hf`` (the independent computation, and the live widget's callable).
``make(title)`` is the hostile one, like the other ``tests/hostile_*.py``.

>>> w = make("</script><b>t</b>")
>>> w.title, w.n_nodes > 5, w.column_labels[0] == CATALOGUE[0]
('</script><b>t</b>', True, True)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from tests.hostile import CATALOGUE, pick

PROMPT = "the cat sat"
PAIR = {"clean": PROMPT, "corrupt": "the dog sat", "answer": " the", "wrong": " of"}


def tiny_circuit(n_edges: int = 20) -> tuple[Any, Any, Any]:
    """(model, scores, circuit): EAP-IG on the tiny Llama over two identical pairs."""
    import mechscope
    from mechscope.datasets import pairs

    model = mechscope.tiny_model("llama")
    scores = mechscope.circuits.edge_attribution(model, pairs([PAIR] * 2), progress=False)
    return model, scores, scores.circuit(n_edges=n_edges)


def _place(name: str, n_layers: int, n_heads: int) -> tuple[str, int, float]:
    """(kind, row, column) of a component name."""
    if name == "input":
        return "input", 0, (n_heads - 1) / 2
    if name == "logits":
        return "logit", n_layers + 1, (n_heads - 1) / 2
    layer, rest = re.fullmatch(r"L(\d+)(.*)", name).groups()  # type: ignore[union-attr]
    if rest == "MLP":
        return "mlp", int(layer) + 1, float(n_heads)
    if rest.startswith("KV"):
        return "kv", int(layer) + 1, n_heads + 1.0 + int(rest[2:])
    return "head", int(layer) + 1, float(rest[1:])


def single_effect(model: Any, name: str) -> float:
    """``mechscope.ablate``'s zero-ablation metric change of one head or MLP (NaN otherwise)."""
    import mechscope
    from mechscope.metrics import logit_diff

    kind, row, col = _place(name, model.n_layers, model.n_heads)
    if kind == "head":
        target = mechscope.heads(row - 1, [int(col)])
    elif kind == "mlp":
        target = mechscope.layer(row - 1, "mlp")
    else:
        return float("nan")
    r = mechscope.ablate(model, PROMPT, target, metric=logit_diff(PAIR["answer"], PAIR["wrong"]), progress=False)
    return float(r.metric_change)


def circuit_graph_data(model: Any, scores: Any, circuit: Any, **kwargs: Any) -> Any:
    from mechscope.widgets.circuit_graph import GraphData

    g = circuit.graph
    names = list(circuit.components)
    index = {n: i for i, n in enumerate(names)}
    placed = [_place(n, g.n_layers, g.n_heads) for n in names]
    weights: dict[tuple[int, int], float] = {}
    for e in np.flatnonzero(circuit.edges):
        u, v = g.edges[e]
        key = (index[g.upstream[u]], index[g.component(g.downstream[v])])
        weights[key] = weights.get(key, 0.0) + float(scores.scores[e])
    src, dst = (np.array([k[i] for k in weights], np.int64) for i in (0, 1))
    values = dict(node_id=names, node_label=names, node_layer=[p[1] for p in placed],
                  node_column=[p[2] for p in placed], node_kind=[p[0] for p in placed],
                  node_summary=[f"{p[0]} {n}: {sum(abs(w) for k, w in weights.items() if index[n] in k):.3g} "
                                "total |score| over its circuit edges" for n, p in zip(names, placed, strict=True)],
                  node_effect=[single_effect(model, n) for n in names], edge_src=src, edge_dst=dst,
                  edge_weight=np.array(list(weights.values())), title="tiny-llama EAP-IG circuit",
                  metric_name="logit diff", row_labels=["input"] + [f"layer {k}" for k in range(g.n_layers)] + ["logits"],
                  column_labels=[f"H{h}" for h in range(g.n_heads)] + ["MLP"] + [f"KV{k}" for k in range(g.n_kv_heads)])
    values.update(kwargs)
    return GraphData(**values)


def hook_ablate(model: Any) -> Any:
    """``ablate(node_ids) -> float``: zero the heads' slices of the attention output projection's
    input and the MLPs' outputs together (plain torch hooks), the logit diff change at the last
    position of `PROMPT`."""
    import torch

    ids = model.to_tokens(PROMPT)
    a, b = (model.to_single_token(PAIR[k]) for k in ("answer", "wrong"))
    layers = model.hf.model.layers
    d = model.d_head

    def metric() -> float:
        with torch.no_grad():
            logits = model.hf(ids).logits[0, -1]
        return float(logits[a] - logits[b])

    def ablate(node_ids: list[str]) -> float:
        clean = metric()
        handles = []
        try:
            for name in node_ids:
                kind, row, col = _place(name, model.n_layers, model.n_heads)
                if kind == "head":
                    h = int(col)

                    def pre(_m: Any, args: Any, h: int = h) -> Any:
                        x = args[0].clone()
                        x[..., h * d:(h + 1) * d] = 0
                        return (x, *args[1:])
                    handles.append(layers[row - 1].self_attn.o_proj.register_forward_pre_hook(pre))
                elif kind == "mlp":
                    handles.append(layers[row - 1].mlp.register_forward_hook(lambda _m, _i, o: torch.zeros_like(o)))
                else:
                    raise ValueError(f"{name} is a {kind} node: only heads and MLPs are ablated here")
            return metric() - clean
        finally:
            for hd in handles:
                hd.remove()

    return ablate


def synthetic(n_layers: int = 30, n_cols: int = 10, n_edges: int = 3000, seed: int = 0, per_cell: int = 1) -> Any:
    """A random layered `GraphData`: ``per_cell`` nodes per (row, column), ``n_edges`` edges
    going up (distinct pairs), weights ~ N(0, 1), effects ~ N(0, 1) with every 7th NaN."""
    from mechscope.widgets.circuit_graph import NODE_KINDS, GraphData

    rng = np.random.default_rng(seed)
    layer = np.repeat(np.arange(n_layers), n_cols * per_cell)
    column = np.tile(np.repeat(np.arange(n_cols), per_cell), n_layers).astype(float)
    n = layer.size
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_edges:
        s, t = (int(x) for x in rng.integers(0, n, 2))
        if layer[s] < layer[t]:
            pairs.add((s, t))
    src, dst = np.array(sorted(pairs)).T
    effect = rng.normal(size=n)
    effect[::7] = np.nan
    kinds = [NODE_KINDS[(k % 4) + 1] for k in range(n)]
    return GraphData(node_id=[f"n{i}" for i in range(n)], node_label=[f"L{layer[i]}C{int(column[i])}#{i}" for i in range(n)],
                     node_layer=layer, node_column=column, node_kind=kinds,
                     node_summary=[f"node {i}: layer {layer[i]}, column {int(column[i])}" for i in range(n)],
                     node_effect=effect, edge_src=src, edge_dst=dst, edge_weight=rng.normal(size=src.size),
                     title=f"synthetic {n_layers} x {n_cols}, {n_edges} edges", metric_name="logit diff",
                     row_labels=[f"layer {k}" for k in range(n_layers)], column_labels=[f"tok{c}" for c in range(n_cols)])


def make(title: str) -> Any:
    """A hostile `CircuitGraph` of the tiny Llama's circuit: catalogue entries as every node label
    and summary, row and column label, the metric name and ``title``; two nodes grouped."""
    from mechscope.widgets.circuit_graph import CircuitGraph

    model, scores, circuit = tiny_circuit()
    data = circuit_graph_data(model, scores, circuit)
    n = data.n_nodes
    data = dataclasses.replace(
        data, node_label=pick(n, 1), node_summary=[f"{CATALOGUE[(i + 5) % len(CATALOGUE)]} · {s}"
                                                    for i, s in enumerate(pick(n, 3))],
        row_labels=pick(len(data.row_labels), 7), column_labels=pick(len(data.column_labels), 0),
        metric_name=CATALOGUE[2], title=title)
    w = CircuitGraph(data)
    w.groups = [[1, 2]]
    return w
