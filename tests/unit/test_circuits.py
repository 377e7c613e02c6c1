"""mechscope.circuits against plain torch hooks on the tiny Llama (grouped-query attention: 4 heads, 2 kv heads).

The references here never use nnsight or mechscope's traces: an edge is patched by a forward
hook that recomputes one head's query (or one kv head's key) from its own copy of the residual
stream, and a score is checked against the finite difference of that hook-patched run.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

import mechscope
from mechscope.circuits import ComponentGraph, edge_attribution, edge_patching, faithfulness, prune
from mechscope.circuits.graph import projections
from mechscope.datasets import pairs
from mechscope.errors import InputError, UnsupportedArchitectureError
from tests.helpers import model_fingerprint, no_forward

ROWS = [("the cat sat on the", "the dog sat on the"), ("a cat ran to the", "a dog ran to the"),
        ("the cat jumps over", "the dog jumps over")]


@pytest.fixture(scope="module")
def model():
    return mechscope.tiny_model("llama")


@pytest.fixture(scope="module")
def data():
    return pairs([{"clean": c, "corrupt": k, "answer": " the", "wrong": " of"} for c, k in ROWS])


def _hf_outputs(model, text):
    """Per-head outputs, MLP outputs and the layer-0 residual input by plain hooks: dict name -> (P, d)."""
    hf, out, handles = model.hf, {}, []
    layers = hf.model.layers
    handles.append(layers[0].register_forward_pre_hook(lambda m, a: out.__setitem__("input", a[0][0].detach())))
    for i, layer in enumerate(layers):
        def o_pre(m, a, i=i):
            z = a[0][0].reshape(a[0].shape[1], model.n_heads, -1)
            for h in range(model.n_heads):
                out[f"L{i}H{h}"] = (z[:, h] @ m.weight[:, h * model.d_head:(h + 1) * model.d_head].T).detach()
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(o_pre))
        handles.append(layer.mlp.register_forward_hook(lambda m, a, o, i=i: out.__setitem__(f"L{i}MLP", o[0].detach())))
    try:
        with torch.no_grad():
            logits = hf(model.to_tokens(text)).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    return out, logits


def _hook_patched_logits(model, text, layer, kind, index, delta):
    """Clean logits with one downstream node's input (``kind`` "q" head ``index`` / "k" kv head / "mlp")
    shifted by ``delta`` (P, d) before its own norm: plain hooks only."""
    block = model.hf.model.layers[layer]
    captured = {}
    handles = [block.input_layernorm.register_forward_pre_hook(lambda m, a: captured.__setitem__("x", a[0])),
               block.post_attention_layernorm.register_forward_pre_hook(lambda m, a: captured.__setitem__("mid", a[0]))]
    dh = model.d_head

    def proj_hook(m, a, o):
        normed = block.input_layernorm(captured["x"] + delta)
        rows = slice(index * dh, (index + 1) * dh)
        o = o.clone()
        o[..., rows] = normed @ m.weight[rows].T
        return o

    if kind == "q":
        handles.append(block.self_attn.q_proj.register_forward_hook(proj_hook))
    elif kind == "k":
        handles.append(block.self_attn.k_proj.register_forward_hook(proj_hook))
    else:
        handles.append(block.mlp.register_forward_pre_hook(
            lambda m, a: (block.post_attention_layernorm(captured["mid"] + delta),)))
    try:
        with torch.no_grad():
            return model.hf(model.to_tokens(text)).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


def _metric(model, logits):
    return float(logits[model.to_single_token(" the")] - logits[model.to_single_token(" of")])


def test_graph_counts_and_gqa():
    smol = ComponentGraph.build(n_layers=30, n_heads=9, n_kv_heads=3)
    assert (smol.n_upstream, smol.n_downstream, smol.n_edges) == (301, 481, 70651)
    gpt2_small = ComponentGraph.build(n_layers=12, n_heads=12, n_kv_heads=12)
    assert gpt2_small.n_edges == 32491  # the count the EAP papers report for GPT-2 small
    g = ComponentGraph.build(2, 4, 2)
    with pytest.raises(InputError, match="L0H1 writes after L0H0.q reads"):
        g.edge_index("L0H1", "L0H0.q")
    assert g.valid[g.upstream.index("L0H3"), g.downstream.index("L0MLP")]


def test_node_outputs_equal_plain_hooks(model):
    from mechscope.circuits.traces import node_outputs

    g = ComponentGraph.of(model)
    text = ROWS[0][0]
    acts, logits = node_outputs(model, g, model.to_tokens(text))
    ref, ref_logits = _hf_outputs(model, text)
    for u, name in enumerate(g.upstream):
        torch.testing.assert_close(acts[u, 0], ref[name].float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[0], ref_logits.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("edge", [("L0H1", "L1H2.q"), ("input", "L1KV1.k"), ("L1H3", "L1MLP"), ("L0MLP", "L1H0.q")])
def test_single_edge_patch_equals_hooks(model, data, edge):
    g = ComponentGraph.of(model)
    up, down = edge
    before = model_fingerprint(model)
    effects = edge_patching(model, data, [g.edge_index(up, down)], progress=False)
    for i, (clean, corrupt) in enumerate(ROWS):
        a_clean, l_clean = _hf_outputs(model, clean)
        a_corrupt, _ = _hf_outputs(model, corrupt)
        delta = a_corrupt[up] - a_clean[up]
        layer = int(down[1])
        if down.endswith(".q"):
            kind, index = "q", int(down.split("H")[1].split(".")[0])
        elif down.endswith(".k"):
            kind, index = "k", int(down.split("KV")[1].split(".")[0])
        else:
            kind, index = "mlp", 0
        patched = _hook_patched_logits(model, clean, layer, kind, index, delta)
        assert effects[i, 0] == pytest.approx(_metric(model, patched) - _metric(model, l_clean), abs=2e-5)
    assert model_fingerprint(model) == before


def test_all_edges_patched_is_the_corrupt_run_and_none_is_the_model(model, data):
    scores = edge_attribution(model, data, method="eap", progress=False)
    g = scores.graph
    full = faithfulness(model, data, scores.circuit(n_edges=g.n_edges), progress=False)
    np.testing.assert_allclose(full.m_circuit, full.m_model, atol=1e-5)
    assert full.value == pytest.approx(1.0, abs=1e-5)
    from mechscope.circuits.traces import node_outputs, patched_logits

    batch_ids = [model.to_tokens(c) for c, _ in ROWS]
    for (_clean, corrupt), ids in zip(ROWS, batch_ids, strict=True):
        ref, corrupt_logits = node_outputs(model, g, model.to_tokens(corrupt))
        logits = patched_logits(model, g, ids, ref, g.valid)
        torch.testing.assert_close(logits, corrupt_logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(full.m_corrupt, scores.m_corrupt, atol=1e-4)


def test_eap_scores_are_the_first_order_effect_of_each_edge(model, data):
    """EAP's score of an edge is the derivative of the hook-patched metric along that edge's difference."""
    scores = edge_attribution(model, data, method="eap", progress=False)
    g, eps = scores.graph, 1e-3
    for up, down in [("L0H1", "L1H2.q"), ("input", "L1KV1.k"), ("L1H3", "L1MLP"), ("L0H0", "L0MLP")]:
        e = g.edge_index(up, down)
        for i, (clean, corrupt) in enumerate(ROWS):
            a_clean, l_clean = _hf_outputs(model, clean)
            a_corrupt, _ = _hf_outputs(model, corrupt)
            delta = eps * (a_corrupt[up] - a_clean[up])
            layer = int(down[1])
            kind = "q" if down.endswith(".q") else "k" if down.endswith(".k") else "mlp"
            index = int(down.split("H")[1].split(".")[0]) if kind == "q" else (
                int(down.split("KV")[1].split(".")[0]) if kind == "k" else 0)
            plus = _metric(model, _hook_patched_logits(model, clean, layer, kind, index, delta))
            minus = _metric(model, _hook_patched_logits(model, clean, layer, kind, index, -delta))
            derivative = (plus - minus) / (2 * eps)
            assert scores.per_example[i, e] == pytest.approx(derivative, rel=2e-2, abs=2e-4)


def test_eap_ig_is_eap_with_one_step_and_complete_with_many(model, data):
    eap = edge_attribution(model, data, method="eap", progress=False)
    one = edge_attribution(model, data, method="eap-ig", steps=1, progress=False)
    np.testing.assert_array_equal(eap.per_example, one.per_example)
    many = edge_attribution(model, data, method="eap-ig", steps=64, progress=False)
    g = many.graph
    from_input = g.edges[:, 0] == 0
    # integrated gradients are complete: the input node's edges sum to m(corrupt) - m(clean)
    total = many.per_example[:, from_input].sum(1)
    np.testing.assert_allclose(total, many.m_corrupt - many.m_clean, rtol=2e-2, atol=2e-3)
    assert not np.allclose(eap.scores, many.scores)


def test_batches_do_not_change_scores(model, data):
    a = edge_attribution(model, data, steps=2, batch_size=1, progress=False)
    b = edge_attribution(model, data, steps=2, batch_size=3, progress=False)
    np.testing.assert_allclose(a.per_example, b.per_example, atol=1e-5, rtol=1e-4)


def _component_digraph(g):
    """networkx graph: upstream output -> component of the downstream node (kv nodes -> every head of the group)."""
    d = nx.MultiDiGraph()
    per = g.n_heads // g.n_kv_heads
    for u, v in g.edges:
        name = g.downstream[v]
        if ".k" in name or ".v" in name:
            layer, kv = name[1:].split("KV")
            targets = [f"L{layer}H{int(kv.split('.')[0]) * per + i}" for i in range(per)]
        else:
            targets = [g.component(name)]
        for t in targets:
            d.add_edge(g.upstream[u], t, edge=(u, v))
    return d


def test_circuits_are_pruned_to_input_logit_paths(model, data):
    scores = edge_attribution(model, data, steps=2, progress=False)
    g = scores.graph
    rng = np.random.default_rng(0)
    for _ in range(20):
        kept = rng.random(g.n_edges) < 0.15
        pruned = prune(g, kept)
        full = _component_digraph(g)
        sub = nx.MultiDiGraph([(a, b) for a, b, e in full.edges(data="edge") if kept[_row(g, e)]])
        sub.add_nodes_from(["input", "logits"])
        alive = nx.descendants(sub, "input") | {"input"}
        useful = nx.ancestors(sub, "logits") | {"logits"}
        expect = np.zeros(g.n_edges, bool)
        for a, b, e in full.edges(data="edge"):
            if kept[_row(g, e)] and a in alive and b in useful:
                expect[_row(g, e)] = True
        np.testing.assert_array_equal(pruned, expect)
    for n in (5, 20, 60):
        c, r = scores.circuit(n_edges=n), scores.random_circuit(n_edges=n, seed=1)
        assert n <= c.n_edges <= n + 6 and n <= r.n_edges <= n + 6
        assert np.array_equal(prune(g, c.edges), c.edges)
    by_threshold = scores.circuit(threshold=float(np.quantile(np.abs(scores.scores), 0.9)))
    assert by_threshold.n_edges <= int(0.1 * g.n_edges) + 1


def _row(g, e):
    u, v = e
    return int(np.flatnonzero((g.edges[:, 0] == u) & (g.edges[:, 1] == v))[0])


def test_faithfulness_mean_ablation_and_interval(model, data):
    scores = edge_attribution(model, data, steps=2, progress=False)
    f = faithfulness(model, data, scores.circuit(n_edges=30), ablation="mean", progress=False)
    assert f.ci_low <= f.value <= f.ci_high and f.n_edges >= 30 and f.ablation == "mean"
    full = faithfulness(model, data, scores.circuit(n_edges=scores.graph.n_edges), ablation="mean", progress=False)
    assert full.value == pytest.approx(1.0, abs=1e-5)
    assert list(f.to_pandas().columns) == ["m_circuit", "m_model", "m_corrupt"]


def test_bad_input_is_refused_before_any_forward_pass(model, data):
    before = model_fingerprint(model)
    uneven = pairs([{"clean": "the fox sat", "corrupt": "the dog sat", "answer": " the", "wrong": " of"}])
    with no_forward(model):
        with pytest.raises(InputError, match="example 0 has 6 clean and 5 corrupt tokens"):
            edge_attribution(model, uneven)
        with pytest.raises(InputError, match="method must be one of"):
            edge_attribution(model, data, method="acdc")
        with pytest.raises(InputError, match="steps must be at least 1"):
            edge_attribution(model, data, steps=0)
        with pytest.raises(InputError, match="needs prompt pairs"):
            edge_attribution(model, ["the cat"])
        with pytest.raises(InputError, match="ablation must be one of"):
            g = ComponentGraph.of(model)
            faithfulness(model, data, mechscope.circuits.select(g, np.ones(g.n_edges), n_edges=3), ablation="zero")
        with pytest.raises(InputError, match="n_edges must be between 1 and 82"):
            mechscope.circuits.select(ComponentGraph.of(model), np.ones(82), n_edges=0)
        with pytest.raises(InputError, match="edges must be edge indices 0..81"):
            edge_patching(model, data, [82])
    other = mechscope.circuits.select(ComponentGraph.build(3, 4, 2), np.ones(ComponentGraph.build(3, 4, 2).n_edges),
                                      n_edges=5)
    with no_forward(model), pytest.raises(InputError, match="another model's graph"):
        faithfulness(model, data, other)
    with pytest.raises(UnsupportedArchitectureError, match="circuits need a pre-norm model"):
        edge_attribution(mechscope.tiny_model("gpt2"), data)
    assert model_fingerprint(model) == before


def test_projections_split_per_head(model):
    w = projections(model, 1)
    attn = model.hf.model.layers[1].self_attn
    x = torch.randn(5, model.d_model)
    torch.testing.assert_close(torch.einsum("pd,hed->phe", x, w.w_q).reshape(5, -1), attn.q_proj(x).detach())
    torch.testing.assert_close(torch.einsum("pd,hed->phe", x, w.w_k).reshape(5, -1), attn.k_proj(x).detach())
    z = torch.randn(5, model.n_heads * model.d_head)
    per_head = torch.einsum("phe,hde->pd", z.reshape(5, model.n_heads, -1), w.w_o)
    torch.testing.assert_close(per_head, attn.o_proj(z).detach(), atol=1e-5, rtol=1e-5)


def test_single_edge_copies_equal_the_general_patched_run(model):
    from mechscope.circuits.traces import node_outputs, patched_logits, single_edge_logits

    g = ComponentGraph.of(model)
    ids = torch.stack([model.to_tokens(c)[0] for c, _ in ROWS[:2]])     # the two 8-token pairs
    corrupt = torch.stack([model.to_tokens(k)[0] for _, k in ROWS[:2]])
    clean_acts, _ = node_outputs(model, g, ids)
    ref, _ = node_outputs(model, g, corrupt)
    edges = np.random.default_rng(3).choice(g.n_edges, 25, replace=False)
    kinds = {g.downstream[v].split(".")[-1][-3:] for v in g.edges[edges, 1]}
    assert {"q", "k", "v", "MLP", "its"} <= kinds  # every kind of downstream node is among them
    fast = single_edge_logits(model, g, ids, ref - clean_acts, edges)
    for j, e in enumerate(edges):
        out = np.zeros_like(g.valid)
        out[g.edges[e, 0], g.edges[e, 1]] = True
        torch.testing.assert_close(fast[j], patched_logits(model, g, ids, ref, out), atol=2e-5, rtol=1e-5)


def test_curve_and_agreement(model, data):
    from mechscope.circuits import edge_agreement, faithfulness_curve

    eap = edge_attribution(model, data, method="eap", progress=False)
    ig = edge_attribution(model, data, method="eap-ig", steps=8, progress=False)
    g = eap.graph
    curve = faithfulness_curve(model, data, {"eap": eap, "eap-ig": ig}, sizes=[8, 30, g.n_edges], seeds=[0, 1],
                               progress=False)
    assert curve.methods == ("eap", "eap-ig", "random")
    np.testing.assert_allclose(curve.value[:, -1], 1.0, atol=1e-5)
    single = faithfulness(model, data, ig.circuit(n_edges=30), progress=False)
    assert curve.value[1, 1] == pytest.approx(single.value, abs=1e-6)
    assert curve.smallest("eap-ig", target=0.8) in (8, 30, g.n_edges)
    agree = edge_agreement(model, data, ig, n_edges=40, seed=0, progress=False)
    assert agree.top.sum() == 20 and len(set(agree.edges.tolist())) == 40
    exact = edge_patching(model, data, agree.edges, progress=False).mean(0)
    np.testing.assert_allclose(agree.exact, exact, atol=1e-6)
    assert agree.spearman > 0.8 and agree.ci_low <= agree.spearman <= agree.ci_high
    with no_forward(model), pytest.raises(InputError, match="n_edges must be at least 3"):
        edge_agreement(model, data, ig, n_edges=2)
    with no_forward(model), pytest.raises(InputError, match="scores must be EdgeScores or a dict"):
        faithfulness_curve(model, data, [ig], sizes=[3])
