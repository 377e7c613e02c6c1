"""CircuitGraph, Python side: GraphData validation messages, arrays as binary buffers (no JSON
lists of numbers), the text/plain summary, the offline snapshot (escaped hostile text, no kernel
state), and the ablate request path: a front-end message runs the callable in the background
thread and the answer names the request; the real circuit's precomputed effects equal plain torch
hooks."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from mechscope.errors import InputError
from mechscope.widgets import decode_array
from mechscope.widgets.circuit_graph import CircuitGraph, GraphData
from tests.helpers import model_fingerprint
from tests.hostile import CATALOGUE
from tests.hostile_circuit_graph import (
    circuit_graph_data,
    hook_ablate,
    make,
    synthetic,
    tiny_circuit,
)
from tests.unit.test_token_text import snapshot_state


def small(**over) -> GraphData:
    base = dict(node_id=["in", "h", "out"], node_label=["input", "L0H0", "logits"], node_layer=[0, 1, 2],
                node_column=[0, 0, 0], node_kind=["input", "head", "logit"], node_summary=["", "a head", ""],
                node_effect=[np.nan, -0.5, np.nan], edge_src=[0, 1], edge_dst=[1, 2], edge_weight=[0.3, -1.2])
    base.update(over)
    return GraphData(**base)


@pytest.mark.parametrize(("over", "message"), [
    ({"node_label": ["a", "b"]}, "node_label has 2 entries but node_id has 3: give one per node."),
    ({"node_id": ["a", "a", "b"]}, "node_id must be unique; 'a' appears more than once."),
    ({"node_kind": ["input", "neuron", "logit"]}, "node_kind 'neuron' is not one of ('input', 'head', 'mlp', "
                                                  "'feature', 'error', 'embedding', 'logit', 'kv')."),
    ({"node_layer": [0, 1.5, 2]}, "node_layer must be whole numbers (one row per node)."),
    ({"node_layer": [-1, 0, 1]}, "node_layer must be >= 0 (rows count up from the input), got -1."),
    ({"node_column": [0, np.inf, 0]}, "node_column is NaN or infinite at 1 entries (first: [1]); give every node a finite position."),
    ({"node_effect": [np.nan, np.inf, 0]}, "node_effect is infinite at 1 entries (first: [1]); use NaN for a node "
                                           "without a precomputed effect."),
    ({"edge_weight": [np.nan, 1.0]}, "edge_weight is NaN or infinite at 1 entries (first: [0]); every edge needs a "
                                     "finite weight: drop or fill those edges."),
    ({"edge_weight": [1.0]}, "edge_weight must have shape (2,) (one weight per edge, like edge_src), got (1,)."),
    ({"edge_dst": [1, 3]}, "edge 1 goes 1 -> 3, but there are 3 nodes (indices 0..2): fix edge_src / edge_dst."),
    ({"edge_src": [-1, 1]}, "edge 0 goes -1 -> 1, but there are 3 nodes (indices 0..2): fix edge_src / edge_dst."),
    ({"row_labels": ["a", "b"]}, "row_labels has 2 names but node_layer goes up to 2: name every row (or pass none "
                                 "for L0, L1, ...)."),
    ({"node_summary": ["", 3, ""]}, "node_summary[1] must be a string, got int."),
    ({"node_id": []}, "a graph needs 1..20000 nodes, got 0."),
])
def test_validation_messages(over, message):
    with pytest.raises(InputError) as err:
        small(**over)
    assert str(err.value) == message


def test_widget_input_errors():
    with pytest.raises(InputError, match="CircuitGraph takes a GraphData"):
        CircuitGraph({"node_id": []})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ablate must be callable"):
        CircuitGraph(small(), ablate=3)  # type: ignore[arg-type]
    w = CircuitGraph(small())
    with pytest.raises(InputError, match="has no ablate callable"):
        w.request(["h"])
    with pytest.raises(InputError, match=r"'zz' is not a node of this graph: give node ids \(e.g. 'in'\) or indices 0..2."):
        w.effect(["zz"])


def test_arrays_travel_as_binary_buffers_once():
    data = synthetic(n_layers=30, n_cols=10, n_edges=3000)
    w = CircuitGraph(data)
    state, _paths, buffers = _remove_buffers(w.get_state())
    nbytes = sum(memoryview(b).nbytes for b in buffers)
    # 300 nodes x (4 + 4 + 1 + 4) bytes + 3000 edges x 12 bytes, every number in a buffer
    assert nbytes == 300 * 13 + 3000 * 12, nbytes
    for key in ("node_layer", "node_column", "node_kind", "node_effect", "edge_src", "edge_dst", "edge_weight"):
        assert "data" not in state[key], key  # moved out into a buffer
    assert all(isinstance(v, str) for v in state["node_labels"])
    assert w.edge_weight["dtype"] == "float32" and w.node_kind["dtype"] == "uint8"
    np.testing.assert_array_equal(decode_array(w.edge_src), data.edge_src)
    np.testing.assert_allclose(decode_array(w.edge_weight), data.edge_weight, rtol=1e-6)
    eff = decode_array(w.node_effect)
    assert np.isnan(eff[::7]).all() and np.isfinite(eff[1::7]).all()


def test_summary_text_plain():
    w = CircuitGraph(small(title="demo", metric_name="logit diff"))
    text = w._repr_mimebundle_()[0]["text/plain"]
    assert text.splitlines() == [
        "CircuitGraph 'demo': 3 nodes (1 input, 1 head, 1 logit) in 3 rows, 2 edges (|weight| 0.3..1.2); offline",
        "top nodes by |logit diff change| when ablated: 'L0H0' -0.5",
    ]
    none = CircuitGraph(small(node_effect=[np.nan] * 3))
    assert none.summary().splitlines()[1] == "top nodes by total |edge weight|: 'L0H0' 1.5, 'logits' 1.2, 'input' 0.3"


def test_offline_snapshot_escapes_hostile_text_and_drops_the_kernel():
    w = make(CATALOGUE[1])
    html = w.offline_html()
    assert html is not None
    for s in CATALOGUE:
        if any(c in s for c in "<>&\u2028\u2029"):
            assert s not in html, s
    assert html.count("</script>") == 1 and "<img" not in html
    state = snapshot_state(w)
    assert state["live"] is False and state["answer"] == {}
    assert state["node_labels"] == list(w.node_labels) and state["groups"] == [[1, 2]]
    assert set(state["node_effect"]) == {"dtype", "shape", "data"} and isinstance(state["node_effect"]["data"], str)
    live = CircuitGraph(small(), ablate=lambda ids: 1.0)
    assert snapshot_state(live)["live"] is False
    live.close()


def test_ablate_request_runs_the_callable_in_the_background():
    calls: list[tuple[list[str], str]] = []
    gate = threading.Event()

    def ablate(ids: list[str]) -> float:
        calls.append((ids, threading.current_thread().name))
        gate.wait(10)
        return -0.25 * len(ids)

    w = CircuitGraph(small(), ablate=ablate)
    assert w.live
    w._on_msg(w, {"kind": "ablate", "id": 7, "nodes": [1]}, [])
    assert w.answer["client_id"] == 7 and w.answer["state"] == "running"  # answered at once: running
    gate.set()
    assert w.wait(timeout=30)
    assert calls == [(["h"], "mechscope-circuit-graph")]
    assert w.answer == {"seq": 1, "client_id": 7, "nodes": [1], "state": "done", "value": -0.25, "message": ""}
    # cached: answered at once, the callable not called again; a group ablates together
    w._on_msg(w, {"kind": "ablate", "id": 8, "nodes": [1]}, [])
    assert w.answer["state"] == "done" and w.answer["client_id"] == 8 and len(calls) == 1
    w.request(["out", "in"])
    assert w.wait(timeout=30) and calls[-1][0] == ["in", "out"] and w.effect([2, 0]) == -0.5
    # a bad request and a failing callable are reported in answer, the thread survives
    w._on_msg(w, {"kind": "ablate", "id": 9, "nodes": [5]}, [])
    assert w.answer["state"] == "error" and "is not a node of this graph" in w.answer["message"]
    w2 = CircuitGraph(small(), ablate=lambda ids: 1 / 0)
    w2.request(["h"])
    assert w2.wait(timeout=30)
    assert w2.answer["state"] == "error" and w2.answer["message"] == "ZeroDivisionError: division by zero"
    w.close()
    w2.close()


def test_real_circuit_effects_equal_plain_hooks():
    model, scores, circuit = tiny_circuit()
    before = model_fingerprint(model)
    data = circuit_graph_data(model, scores, circuit)
    assert list(data.node_id) == list(circuit.components)
    assert np.isclose(data.edge_weight.sum(), scores.scores[circuit.edges].sum(), rtol=1e-5)  # q/k/v edges summed
    ablate = hook_ablate(model)
    w = CircuitGraph(data, ablate=ablate)
    for i, name in enumerate(data.node_id):
        if data.node_kind[i] in ("head", "mlp"):
            w.request([name])
            assert w.wait(timeout=60)
            assert abs(w.answer["value"] - data.node_effect[i]) < 1e-5, name
    w.request(["L0H1", "L1MLP"])
    assert w.wait(timeout=60) and w.answer["state"] == "done"
    assert abs(w.effect(["L0H1", "L1MLP"]) - ablate(["L0H1", "L1MLP"])) < 1e-6
    w.close()
    assert model_fingerprint(model) == before
    # dataclasses.replace re-validates
    with pytest.raises(InputError, match="node_label has 1 entries"):
        dataclasses.replace(data, node_label=["x"])
