"""mechscope.circuits.view: a component circuit as a CircuitGraph, on the tiny Llama (4 heads, 2 kv heads).

The references are independent: edges are grouped from their printed names, and every node
effect is a separate public `faithfulness` run of the circuit with the node's edges removed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import mechscope
from mechscope.circuits import Circuit, edge_attribution, faithfulness
from mechscope.circuits.view import (
    circuit_ablator,
    circuit_graph_data,
    node_ablation_effects,
    show_circuit,
)
from mechscope.datasets import pairs
from mechscope.errors import InputError
from tests.helpers import model_fingerprint, no_forward

ROWS = [("the cat sat on the", "the dog sat on the"), ("a cat ran to", "a dog ran to")]


@pytest.fixture(scope="module")
def model():
    return mechscope.tiny_model("llama")


@pytest.fixture(scope="module")
def data():
    return pairs([{"clean": c, "corrupt": k, "answer": " the", "wrong": " of"} for c, k in ROWS])


@pytest.fixture(scope="module")
def scores(model, data):
    return edge_attribution(model, data, steps=2, progress=False)


@pytest.fixture(scope="module")
def circuit(scores):
    return scores.circuit(n_edges=14)


@pytest.fixture(scope="module")
def effects(model, data, circuit):
    return node_ablation_effects(model, data, circuit, progress=False)


def _names(circuit):
    """(upstream, downstream component) of each kept edge, from the printed edge names."""
    out = []
    for name in circuit.edge_names():
        up, down = name.split(" -> ")
        out.append((up, down.split(".")[0]))
    return out


def _removed(circuit, node):
    """The circuit without the node's edges: outgoing, or incoming for kv nodes and the logits."""
    sink = node == "logits" or "KV" in node
    keep = np.array(circuit.edges)
    for e in np.flatnonzero(circuit.edges):
        up, down = circuit.graph.edge_name(int(e)).split(" -> ")
        if (down.split(".")[0] if sink else up) == node:
            keep[e] = False
    return Circuit(circuit.graph, keep)


def _m(model, data, circuit, ablation="patch"):
    return float(faithfulness(model, data, circuit, ablation, progress=False).m_circuit.mean())


def test_graph_data_nodes_rows_columns_and_summed_weights(model, scores, circuit, effects):
    d = circuit_graph_data(circuit, scores, effects)
    comps = {n for pair in _names(circuit) for n in pair}
    assert set(d.node_id) == comps | {"input", "logits"}
    assert not any("." in n for n in d.node_id)                      # q/k/v folded into heads / kv heads
    assert d.node_label == d.node_id
    place = dict(zip(d.node_id, zip(d.node_layer.tolist(), d.node_column.tolist(), d.node_kind, strict=True),
                     strict=True))
    assert place["input"][0] == 0 and place["input"][2] == "input"
    assert place["logits"][0] == model.n_layers + 1 and place["logits"][2] == "logit"
    for n, (row, col, kind) in place.items():
        if n.startswith("L"):
            layer = int(re.match(r"L(\d+)", n).group(1))
            assert row == layer + 1
            if kind == "head":
                assert col == float(n.split("H")[1])
            elif kind == "mlp":
                assert col == float(model.n_heads)
            else:
                assert kind == "kv" and col == model.n_heads + 1.0 + int(n.split("KV")[1])
    assert d.row_labels == ("input", "layer 0", "layer 1", "logits")
    assert d.column_labels == ("H0", "H1", "H2", "H3", "MLP", "KV0", "KV1")
    ref: dict[tuple[str, str], float] = {}
    for (u, v), e in zip(_names(circuit), np.flatnonzero(circuit.edges), strict=True):
        ref[(u, v)] = ref.get((u, v), 0.0) + float(scores.scores[e])
    got = {(d.node_id[s], d.node_id[t]): w for s, t, w in zip(d.edge_src, d.edge_dst, d.edge_weight, strict=True)}
    assert got.keys() == ref.keys()
    for k, w in ref.items():
        assert got[k] == pytest.approx(w, abs=1e-6)
    assert np.allclose(d.node_effect, effects.values)
    assert d.metric_name == effects.metric_name and "edges" in d.title


def test_summaries_say_name_scores_and_effect(scores, circuit, effects):
    d = circuit_graph_data(circuit, scores, effects)
    head = next(i for i, n in enumerate(d.node_id) if "H" in n and "KV" not in n)
    s = d.node_summary[head]
    assert s.startswith(f"{d.node_id[head]}: attention head")
    assert "score sum" in s and f"{effects.values[head]:+.4g}" in s and "outgoing" in s
    bare = circuit_graph_data(circuit)
    assert np.isnan(bare.node_effect).all() and "not computed" in bare.node_summary[0]
    assert bare.edge_weight.sum() == circuit.n_edges                 # no scores: edge counts


def test_node_effects_equal_independent_faithfulness_runs(model, data, circuit, effects):
    before = model_fingerprint(model)
    full = _m(model, data, circuit)
    assert effects.m_circuit.mean() == pytest.approx(full, abs=1e-5)
    for node, value in zip(effects.nodes, effects.values, strict=True):
        assert value == pytest.approx(_m(model, data, _removed(circuit, node)) - full, abs=1e-5), node
    assert effects.effect("logits") == pytest.approx(
        float(faithfulness(model, data, circuit, progress=False).m_corrupt.mean()) - full, abs=1e-5)
    assert model_fingerprint(model) == before


def test_mean_ablation_effect(model, data, circuit):
    e = node_ablation_effects(model, data, circuit, "mean", progress=False)
    node = e.nodes[1]
    ref = _m(model, data, _removed(circuit, node), "mean") - _m(model, data, circuit, "mean")
    assert e.effect(node) == pytest.approx(ref, abs=1e-5) and e.ablation == "mean"


def test_ablator_one_node_is_the_effect_two_nodes_a_direct_run(model, data, circuit, effects):
    before = model_fingerprint(model)
    ablate = circuit_ablator(model, data, circuit)
    a, b = effects.nodes[1], effects.nodes[2]
    assert ablate([a]) == pytest.approx(effects.effect(a), abs=1e-5)
    both = _removed(_removed(circuit, a), b)
    assert ablate([a, b]) == pytest.approx(_m(model, data, both) - _m(model, data, circuit), abs=1e-5)
    assert model_fingerprint(model) == before


def test_show_with_model_is_live_and_answers_like_the_ablator(model, data, scores, circuit, effects):
    before = model_fingerprint(model)
    w = circuit.show(model, data, scores=scores, progress=False)
    try:
        assert w.live and np.allclose(w.data.node_effect, effects.values, atol=1e-6)
        node = effects.nodes[1]
        w.request([node])
        assert w.wait(60)
        assert w.answer["state"] == "done"
        assert w.answer["value"] == pytest.approx(effects.effect(node), abs=1e-5)
    finally:
        w.close()
    assert model_fingerprint(model) == before


def test_edge_scores_show_offline(scores):
    w = scores.show(10)
    try:
        c = scores.circuit(10)
        assert not w.live and np.isnan(w.data.node_effect).all()
        assert w.data.edge_weight.sum() == pytest.approx(float(scores.scores[c.edges].sum()), abs=1e-5)
        assert scores.show(10_000).n_nodes >= w.n_nodes                # capped at the graph's edges
    finally:
        w.close()


def test_bad_input(model, data, scores, circuit):
    before = model_fingerprint(model)
    with no_forward(model), pytest.raises(InputError, match="give both model= and pairs="):
        circuit.show(pairs=data)
    with no_forward(model), pytest.raises(InputError, match="give both model= and pairs="):
        show_circuit(circuit, model=model)
    with no_forward(model), pytest.raises(InputError, match="scores must be the EdgeScores"):
        circuit.show(scores=np.zeros(3))
    with pytest.raises(InputError, match="circuit must be a Circuit"):
        circuit_graph_data("L0H1")
    with pytest.raises(InputError, match="'L7H0', which is not a node of this circuit"):
        circuit_graph_data(circuit, effects={"L7H0": 1.0})
    with no_forward(model), pytest.raises(InputError, match="ablation must be one of"):
        node_ablation_effects(model, data, circuit, "zero")
    ablate = circuit_ablator(model, data, circuit)
    with no_forward(model), pytest.raises(InputError, match="'L9H9' is not a node of this circuit's graph"):
        ablate(["L9H9"])
    with no_forward(model), pytest.raises(InputError, match="non-empty list of node ids"):
        ablate([])
    assert model_fingerprint(model) == before
