"""`graph_ablator`: an attribution graph's nodes removed in the real model equal the same edits
made with plain torch hooks on ``model.hf``; a last-layer feature's live effect against the
linearised ``node_effect`` (the gap is the final RMSNorm, exactly accounted for)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.circuits import graph_ablation
from mechscope.circuits.attribution_graph import attribution_graph
from mechscope.circuits.graph_ablation import graph_ablator
from mechscope.errors import InputError
from mechscope.sae import SAE
from tests.helpers import model_fingerprint, no_forward

PROMPT = "The cat sat on the mat"


def _tcs(model, d_sae=16, k=4, seed=10):
    return {layer: SAE.random(model.d_model, d_sae, kind="transcoder", architecture="topk", k=k, layer=layer,
                              seed=seed + layer) for layer in range(model.n_layers)}


@pytest.fixture(scope="module")
def setup():
    model = mechscope.tiny_model("llama", n_layers=3)
    tcs = _tcs(model)
    graph = attribution_graph(model, PROMPT, transcoders=tcs, progress=False)
    return model, tcs, graph, graph_ablator(model, graph, tcs)


def _hook_logits(model, mlp_deltas=None, zero_embed=(), frozen_final=None):
    """Last-position logits (vocab,) float64 of the plain HF model with ``mlp_deltas`` {layer: (P, d)}
    subtracted from MLP outputs and positions ``zero_embed`` of the embedding zeroed; with
    ``frozen_final`` (the clean final-norm input) the final RMSNorm keeps its clean scale."""
    hf = model.hf
    ids = model.to_tokens(PROMPT)
    handles = []
    for layer, delta in (mlp_deltas or {}).items():
        handles.append(hf.model.layers[layer].mlp.register_forward_hook(
            lambda _m, _i, out, d=delta: out - d[None].to(out.dtype)))
    if zero_embed:
        def embed_hook(_m, _i, out):
            out = out.clone()
            out[:, list(zero_embed)] = 0
            return out
        handles.append(hf.model.embed_tokens.register_forward_hook(embed_hook))
    if frozen_final is not None:
        norm = hf.model.norm

        def norm_hook(_m, inp, _out):
            s = torch.rsqrt(frozen_final.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
            return norm.weight * inp[0] * s
        handles.append(norm.register_forward_hook(norm_hook))
    try:
        with torch.no_grad():
            return hf(ids).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()


def _clean_record(model, tcs):
    """MLP inputs/outputs (N of (P, d)) and the final norm's input (1, P, d) of the clean run."""
    hf = model.hf
    rec: dict = {"in": {}, "out": {}}
    handles = [hf.model.layers[i].mlp.register_forward_hook(
        lambda _m, inp, out, i=i: (rec["in"].__setitem__(i, inp[0][0].detach().clone()),
                                   rec["out"].__setitem__(i, out[0].detach().clone())) and None)
        for i in range(model.n_layers)]
    handles.append(hf.model.norm.register_forward_hook(
        lambda _m, inp, _o: rec.__setitem__("final", inp[0].detach().clone())))
    try:
        with torch.no_grad():
            hf(model.to_tokens(PROMPT))
    finally:
        for h in handles:
            h.remove()
    return rec


def _feature_delta(model, tcs, graph, i):
    delta = torch.zeros(len(graph.tokens), model.d_model)
    delta[int(graph.node_position[i])] = float(graph.node_activation[i]) * \
        tcs[int(graph.node_layer[i])].W_dec.detach()[int(graph.node_feature[i])]
    return {int(graph.node_layer[i]): delta}


def _error_delta(model, tcs, graph, i):
    rec = _clean_record(model, tcs)
    layer, pos = int(graph.node_layer[i]), int(graph.node_position[i])
    tc = tcs[layer]
    x = rec["in"][layer][pos]
    recon = tc.encode(x.detach()) @ tc.W_dec.detach() + tc.b_dec.detach()
    delta = torch.zeros(len(graph.tokens), model.d_model)
    delta[pos] = rec["out"][layer][pos] - recon
    return {layer: delta}


def _change(model, graph, **edits):
    top = int(graph.logit_ids[0])
    return float(_hook_logits(model, **edits)[top] - _hook_logits(model)[top])


def _pick(graph, kind, layer=None, pos=None):
    k = np.array(graph.node_kind)
    mask = k == kind
    if layer is not None:
        mask &= graph.node_layer == layer
    if pos is not None:
        mask &= graph.node_position == pos
    return [int(i) for i in np.flatnonzero(mask)]


def test_one_feature_equals_the_hook_edit(setup):
    model, tcs, graph, ablate = setup
    before = model_fingerprint(model)
    for i in _pick(graph, "feature", layer=0)[::7] + _pick(graph, "feature", layer=1)[::9]:
        want = _change(model, graph, mlp_deltas=_feature_delta(model, tcs, graph, i))
        assert ablate([f"n{i}"]) == pytest.approx(want, abs=1e-5), graph.node_label[i]
    assert any(abs(ablate([f"n{i}"])) > 1e-3 for i in _pick(graph, "feature", layer=0))
    assert model_fingerprint(model) == before


def test_error_and_embedding_nodes_equal_the_hook_edits(setup):
    model, tcs, graph, ablate = setup
    before = model_fingerprint(model)
    last = len(graph.tokens) - 1
    for i in _pick(graph, "error", pos=last) + _pick(graph, "error", layer=0)[:2]:
        want = _change(model, graph, mlp_deltas=_error_delta(model, tcs, graph, i))
        assert ablate([f"n{i}"]) == pytest.approx(want, abs=1e-5), graph.node_label[i]
    for i in _pick(graph, "embedding"):
        want = _change(model, graph, zero_embed=(int(graph.node_position[i]),))
        assert abs(want) > 1e-4
        assert ablate([f"n{i}"]) == pytest.approx(want, abs=1e-5), graph.node_label[i]
    assert model_fingerprint(model) == before


def test_nodes_together_equal_the_hook_with_every_edit(setup):
    model, tcs, graph, ablate = setup
    f0, f1 = _pick(graph, "feature", layer=0)[3], _pick(graph, "feature", layer=0)[-1]
    err = _pick(graph, "error", layer=1, pos=len(graph.tokens) - 1)[0]
    emb = _pick(graph, "embedding")[1]
    deltas = _feature_delta(model, tcs, graph, f0)
    for extra in (_feature_delta(model, tcs, graph, f1), _error_delta(model, tcs, graph, err)):
        for layer, d in extra.items():
            deltas[layer] = deltas.get(layer, torch.zeros_like(d)) + d
    want = _change(model, graph, mlp_deltas=deltas, zero_embed=(int(graph.node_position[emb]),))
    got = ablate([f"n{f0}", f"n{f1}", f"n{err}", f"n{emb}"])
    assert got == pytest.approx(want, abs=1e-5)
    pair = _change(model, graph, mlp_deltas={0: _feature_delta(model, tcs, graph, f0)[0]
                                             + _feature_delta(model, tcs, graph, f1)[0]})
    assert ablate([f"n{f0}", f"n{f1}"]) == pytest.approx(pair, abs=1e-5)


def test_last_layer_feature_live_vs_linear_effect(setup):
    """Nothing but the final RMSNorm lies between a last-layer feature at the last position and
    the logits, so: live == the real edit; node_effect == the same edit with the final norm
    frozen at its clean scale, de-meaned over the vocabulary. The two differ by the final
    norm's rescaling (large on this tiny random model), not by anything downstream."""
    model, tcs, graph, ablate = setup
    top = int(graph.logit_ids[0])
    last_layer, last = model.n_layers - 1, len(graph.tokens) - 1
    nodes = _pick(graph, "feature", layer=last_layer, pos=last)
    assert nodes
    final = _clean_record(model, tcs)["final"]
    clean = _hook_logits(model)
    gaps = []
    for i in nodes:
        deltas = _feature_delta(model, tcs, graph, i)
        live = ablate([f"n{i}"])
        assert live == pytest.approx(_change(model, graph, mlp_deltas=deltas), abs=1e-5)
        frozen = _hook_logits(model, mlp_deltas=deltas, frozen_final=final) - clean
        assert graph.node_effect[i] == pytest.approx(float(frozen[top] - frozen.mean()), abs=1e-4)
        gaps.append(abs(live - graph.node_effect[i]))
    for i in _pick(graph, "feature", layer=last_layer):
        if graph.node_position[i] != last:
            assert ablate([f"n{i}"]) == 0.0 and graph.node_effect[i] == 0.0  # no path to the last position
    assert max(gaps) > 1e-4  # the real final norm is not frozen: they do not match here


def test_bad_ids_and_logit_nodes_fail_before_any_forward(setup):
    model, tcs, graph, ablate = setup
    logit = _pick(graph, "logit")[0]
    cases = [(["x3"], "'x3' is not a node of this graph; valid ids are n0, n1"),
             ([f"n{graph.n_nodes}"], "is not a node of this graph; valid ids are n0"),
             (["n01"], "'n01' is not a node"),
             ([3], "3 is not a node"),
             ([], "give a non-empty list of node ids, e.g. ['n0']"),
             ([f"n{logit}"], "a logit node: logits are what ablation measures"),
             (["n0", "n0"], "'n0' is given twice")]
    for ids, message in cases:
        with no_forward(model), pytest.raises(InputError) as err:
            ablate(ids)
        assert message in str(err.value), (message, str(err.value))


def test_bad_construction_fails_with_a_message(setup):
    model, tcs, graph, _ = setup
    with pytest.raises(InputError, match="graph must be an AttributionGraph"):
        graph_ablator(model, "graph", tcs)
    with pytest.raises(InputError, match="missing for layers"):
        graph_ablator(model, graph, {0: tcs[0]})
    with pytest.raises(InputError, match="pass the transcoders the graph was built with"):
        graph_ablator(model, graph, _tcs(model, seed=50))
    with pytest.raises(InputError, match="pass the model it was built on"):
        graph_ablator(mechscope.tiny_model("llama"), graph, tcs)
    with pytest.raises(InputError, match="give both model= and transcoders="):
        graph.show(model=model)


def test_show_wires_the_live_ablator(setup):
    model, tcs, graph, ablate = setup
    before = model_fingerprint(model)
    p = graph.prune()
    w = p.show(model=model, transcoders=tcs)
    try:
        assert w.live and "real model" in w.data.metric_name
        np.testing.assert_array_equal(w.data.node_effect, p.node_effect)
        node = f"n{_pick(p, 'embedding')[0]}"
        w.request([node])
        assert w.wait(timeout=120)
        assert w.effect([node]) == pytest.approx(graph_ablator(model, p, tcs)([node]), abs=1e-9)
    finally:
        w.close()
    assert not graph.show().live
    assert model_fingerprint(model) == before


def test_model_unchanged_after_an_exception_inside_the_trace(setup, monkeypatch):
    model, tcs, graph, ablate = setup
    before = model_fingerprint(model)
    clean, logits = ablate(["n0"]), _hook_logits(model)

    def boom(*_args, **_kwargs):
        raise RuntimeError("stopped mid-way")

    monkeypatch.setattr(graph_ablation, "save", boom)
    with pytest.raises(RuntimeError, match="stopped mid-way"):
        ablate(["n0", f"n{_pick(graph, 'embedding')[0]}"])
    monkeypatch.undo()
    assert model_fingerprint(model) == before
    assert ablate(["n0"]) == clean
    assert torch.equal(_hook_logits(model), logits)
