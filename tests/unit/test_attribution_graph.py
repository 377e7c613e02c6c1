"""`mechscope.circuits.attribution_graph` on the tiny Llama with random TopK transcoders.

The reference is an independent frozen forward pass with plain torch hooks on ``model.hf``:
``q_proj``/``k_proj`` outputs held at their clean values (frozen attention patterns), every
RMSNorm at its clean scale, every MLP output at its clean value (plus the skip path's change
for skip transcoders). Doubling one node (adding its value once more) in that model must move
every feature pre-activation and every de-meaned logit by exactly the node's adjacency column."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import mechscope
from mechscope.circuits import graph_pruning as gp
from mechscope.circuits import replacement
from mechscope.circuits.attribution_graph import AttributionGraph, attribution_graph
from mechscope.errors import InputError
from mechscope.sae import SAE
from tests.helpers import model_fingerprint, no_forward

PROMPT = "The cat sat on the mat"


def _tcs(model, kind="transcoder", d_sae=16, k=4):
    return {layer: SAE.random(model.d_model, d_sae, kind=kind, architecture="topk", k=k, layer=layer,
                              seed=10 + layer) for layer in range(model.n_layers)}


def _skip(tcs):
    g = torch.Generator().manual_seed(3)
    out = {}
    for layer, tc in tcs.items():
        w = tc.weights()
        w["W_skip"] = (torch.randn(tc.cfg.d_in, tc.cfg.d_out, generator=g) * 0.05).numpy()
        out[layer] = SAE(replace(tc.cfg, kind="skip_transcoder"), w)
    return out


@pytest.fixture(scope="module")
def model():
    return mechscope.tiny_model("llama", n_layers=3)


def _frozen_run(model, ids, tcs, delta_embed=None, delta_mlp=None, clean=None):
    """Plain-hook run; with ``clean`` (a previous run's record) everything is frozen at it.
    Returns {"mlp_in": (N, P, d), "mlp_out": (N, P, d), "logits": (vocab,), record...}."""
    hf = model.hf
    layers = hf.model.layers
    rec: dict = {"q": {}, "k": {}, "norm_in": {}, "norm_out": {}, "mlp_in": {}, "mlp_out": {}}
    handles = []

    def proj(kind, i):
        def hook(_m, _inp, out):
            rec[kind][i] = out.detach().clone()
            return None if clean is None else clean[kind][i]
        return hook

    norms = [(n, m) for n, m in hf.named_modules() if type(m).__name__.endswith("RMSNorm")]

    def norm_hook(name, module):
        def hook(_m, inp, out):
            x = inp[0]
            rec["norm_in"][name], rec["norm_out"][name] = x.detach().clone(), out.detach().clone()
            if clean is None:
                return None
            x0 = clean["norm_in"][name]
            s = torch.rsqrt(x0.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
            return clean["norm_out"][name] + module.weight * s * (x - x0)
        return hook

    def mlp_hook(i):
        def hook(_m, inp, out):
            rec["mlp_in"][i], rec["mlp_out"][i] = inp[0].detach().clone(), out.detach().clone()
            if clean is None:
                return None
            new = clean["mlp_out"][i].clone()
            if tcs[i].cfg.kind == "skip_transcoder":
                new = new + (inp[0] - clean["mlp_in"][i]) @ tcs[i].W_skip.detach()
            if delta_mlp is not None and i in delta_mlp:
                new = new + delta_mlp[i]
            return new
        return hook

    def embed_hook(_m, _inp, out):
        return None if delta_embed is None else out + delta_embed

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.self_attn.q_proj.register_forward_hook(proj("q", i)))
            handles.append(layer.self_attn.k_proj.register_forward_hook(proj("k", i)))
            handles.append(layer.mlp.register_forward_hook(mlp_hook(i)))
        handles += [m.register_forward_hook(norm_hook(n, m)) for n, m in norms]
        handles.append(hf.model.embed_tokens.register_forward_hook(embed_hook))
        with torch.no_grad():
            rec["logits"] = hf(ids).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    n = len(layers)
    rec["mlp_in_all"] = torch.stack([rec["mlp_in"][i][0] for i in range(n)]).double()
    return rec


def _pre(rec, tcs, layer, pos, feature):
    x = rec["mlp_in_all"][layer, pos]
    return float(x @ tcs[layer].W_enc.detach()[:, feature].double())


@pytest.mark.parametrize("kind", ["transcoder", "skip_transcoder"])
def test_doubling_a_node_moves_every_target_by_its_adjacency_column(model, kind):
    tcs = _tcs(model) if kind == "transcoder" else _skip(_tcs(model))
    before = model_fingerprint(model)
    g = attribution_graph(model, PROMPT, transcoders=tcs, batch_size=7, progress=False)
    assert g.n_active == g.node_kind.count("feature")
    ids = model.to_tokens(PROMPT)
    clean = _frozen_run(model, ids, tcs)
    assert torch.allclose(clean["logits"].float(), model.hf(ids).logits[0, -1].detach(), atol=1e-6)
    kinds = np.array(g.node_kind)
    feats = np.flatnonzero(kinds == "feature")
    logits = np.flatnonzero(kinds == "logit")
    errors = np.flatnonzero(kinds == "error")
    embeds = np.flatnonzero(kinds == "embedding")
    pre0 = np.array([_pre(clean, tcs, g.node_layer[t], g.node_position[t], g.node_feature[t]) for t in feats])
    run = replacement.forward(model, ids, replacement.check_transcoders(model, tcs, "t"))
    # sources: early features of each layer below the top, some error nodes, every embedding
    sources = [int(s) for layer in range(model.n_layers - 1) for s in feats[g.node_layer[feats] == layer][::5]]
    sources += [int(s) for s in errors[::4]] + [int(s) for s in embeds]
    assert len(sources) > 10
    for s in sources:
        layer, pos = int(g.node_layer[s]), int(g.node_position[s])
        delta = torch.zeros(ids.shape[1], model.d_model)
        if g.node_kind[s] == "feature":
            delta[pos] = g.node_activation[s] * tcs[layer].W_dec.detach()[g.node_feature[s]]
        elif g.node_kind[s] == "error":
            delta[pos] = run.errors[layer, pos]
        else:
            delta[pos] = run.embeds[pos]
        pert = (_frozen_run(model, ids, tcs, delta_embed=delta, clean=clean) if g.node_kind[s] == "embedding"
                else _frozen_run(model, ids, tcs, delta_mlp={layer: delta}, clean=clean))
        pre1 = np.array([_pre(pert, tcs, g.node_layer[t], g.node_position[t], g.node_feature[t]) for t in feats])
        np.testing.assert_allclose(g.adjacency[feats, s], pre1 - pre0, atol=1e-4, rtol=1e-4, err_msg=g.node_label[s])
        dl = (pert["logits"] - clean["logits"]).numpy()
        np.testing.assert_allclose(g.adjacency[logits, s], dl[g.logit_ids] - dl.mean(), atol=1e-4, rtol=1e-4)
    assert model_fingerprint(model) == before


def test_error_nodes_make_the_replacement_forward_exact(model):
    tcs = replacement.check_transcoders(model, _tcs(model), "t")
    ids = model.to_tokens(PROMPT)
    real = _frozen_run(model, ids, tcs)
    run = replacement.forward(model, ids, tcs)
    for layer, tc in enumerate(tcs):
        x = real["mlp_in"][layer][0]
        f = tc.encode(x.detach())
        recon = f @ tc.W_dec.detach() + tc.b_dec.detach() + run.errors[layer]
        torch.testing.assert_close(recon, real["mlp_out"][layer][0], atol=1e-5, rtol=1e-5)
    with replacement.frozen_parameters(model), torch.enable_grad():
        lin = replacement.linearise(model, run, tcs, 3)
    for row in lin.logits:
        torch.testing.assert_close(row.detach().double(), real["logits"], atol=1e-5, rtol=1e-5)


def test_logit_nodes_cover_the_probability(model):
    g = attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False, logit_probability=0.5)
    probs = torch.softmax(model.hf(model.to_tokens(PROMPT)).logits[0, -1].detach().double(), -1)
    top = torch.sort(probs, descending=True)
    n = len(g.logit_ids)
    assert n <= 10 and g.logit_ids.tolist() == top.indices[:n].tolist()
    assert top.values[:n].sum() >= 0.5 or n == 10
    assert n == 1 or top.values[:n - 1].sum() < 0.5
    np.testing.assert_allclose(g.logit_probabilities, top.values[:n].numpy(), rtol=1e-6)


def test_max_feature_nodes_picks_the_most_logit_influential(model):
    tcs = _tcs(model)
    full = attribution_graph(model, PROMPT, transcoders=tcs, progress=False)
    few = attribution_graph(model, PROMPT, transcoders=tcs, max_feature_nodes=6, batch_size=8, progress=False)
    assert few.node_kind.count("feature") == 6 and few.n_active == full.n_active
    kinds = np.array(full.node_kind)
    logit = kinds == "logit"
    sources = ~logit
    v = full.logit_probabilities @ gp.normalise(full.adjacency[logit][:, sources])
    feats = np.flatnonzero(kinds[sources] == "feature")
    best = feats[np.argsort(-v[feats], kind="stable")[:6]]
    key = lambda g, i: (int(g.node_layer[i]), int(g.node_position[i]), int(g.node_feature[i]))  # noqa: E731
    assert {key(full, i) for i in best} == {key(few, i) for i in np.flatnonzero(np.array(few.node_kind) == "feature")}
    # the chosen features' rows are the same numbers as in the full graph
    for i in np.flatnonzero(np.array(few.node_kind) == "logit"):
        j = int(np.flatnonzero(full.logit_ids == few.logit_ids[i - len(few.node_kind) + len(few.logit_ids)])[0])
        row_full = full.adjacency[np.flatnonzero(logit)[j]]
        errs = np.flatnonzero(kinds == "error")
        np.testing.assert_allclose(few.adjacency[i][np.array(few.node_kind) == "error"], row_full[errs], atol=1e-5)


def test_pruning_keeps_the_logits_and_covers_the_thresholds(model):
    g = attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False)
    p = g.prune(0.8, 0.98)
    assert isinstance(p, AttributionGraph) and p.pruned and p.n_nodes < g.n_nodes
    assert p.logit_tokens == g.logit_tokens and p.node_kind.count("logit") == g.node_kind.count("logit")
    assert p.node_kind.count("embedding") == g.node_kind.count("embedding")
    assert p.coverage[0] >= 0.8 and p.coverage[1] >= 0.98
    kinds = np.array(p.node_kind)
    nz = p.adjacency != 0
    assert nz[:, (kinds == "feature") | (kinds == "error")].any(0).all(), "a kept node without a kept outgoing edge"
    assert nz[kinds == "feature"].any(1).all(), "a kept feature without a kept incoming edge"
    assert p.unpruned_scores == (g.replacement_score, g.completeness_score)
    # kept edges are the original numbers
    def keys(x):
        return list(zip(x.node_kind, x.node_layer.tolist(), x.node_position.tolist(), x.node_feature.tolist(),
                        strict=True))

    index = {k: j for j, k in enumerate(keys(g))}
    keep = [index[k] for k in keys(p)]
    sub = g.adjacency[np.ix_(keep, keep)]
    assert np.all((p.adjacency == 0) | (p.adjacency == sub))
    smaller = g.prune(0.5, 0.9)
    assert smaller.n_nodes <= p.n_nodes


def test_prune_masks_cover_on_a_random_dag():
    rng = np.random.default_rng(0)
    n = 40
    a = np.tril(rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.3), -1)
    w = np.zeros(n)
    w[-3:] = [0.5, 0.3, 0.2]
    always = np.zeros(n, bool)
    always[-3:] = True
    always[:4] = True
    masks = gp.prune_masks(a, w, always, ~always, 0.8, 0.98)
    assert masks.nodes[always].all() and masks.node_coverage >= 0.8 and masks.edge_coverage >= 0.98
    inf = gp.influence(gp.normalise(a), w)
    brute = sum(w @ np.linalg.matrix_power(gp.normalise(a), k) for k in range(1, n + 1))
    np.testing.assert_allclose(inf, brute, atol=1e-12)


def test_scores_are_fractions_and_one_without_error(model, monkeypatch):
    g = attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False)
    p = g.prune()
    for s in (g.replacement_score, g.completeness_score, p.replacement_score, p.completeness_score):
        assert 0.0 <= s <= 1.0
    assert g.replacement_score < 1 and g.completeness_score < 1
    kinds = np.array(g.node_kind)
    a = g.adjacency.copy()
    a[:, kinds == "error"] = 0
    assert gp.scores(a, g.logit_weights, kinds == "error", kinds == "embedding") == (1.0, 1.0)
    # perfect transcoders: every error is zero, so error nodes carry nothing
    encode = replacement._encode
    monkeypatch.setattr(replacement, "_encode", lambda tc, x, out: (encode(tc, x, out)[0], torch.zeros_like(out)))
    perfect = attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False)
    assert perfect.replacement_score == pytest.approx(1.0) and perfect.completeness_score == pytest.approx(1.0)
    assert perfect.prune().completeness_score == pytest.approx(1.0)


def test_node_effects_and_the_result_views(model):
    g = attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False)
    kinds = np.array(g.node_kind)
    top = int(np.flatnonzero(kinds == "logit")[0])
    last = np.flatnonzero((kinds == "feature") & (g.node_layer == model.n_layers - 1))
    np.testing.assert_allclose(g.node_effect[last], -g.adjacency[top, last], rtol=1e-5, atol=1e-6)
    assert np.isnan(g.node_effect[kinds == "logit"]).all() and np.isfinite(g.node_effect[kinds != "logit"]).all()
    df = g.to_pandas()
    assert len(df) == g.n_nodes and {"kind", "layer", "position", "feature", "activation", "label"} <= set(df)
    data = g.prune().graph_data()
    assert data.n_nodes == g.prune().n_nodes and data.row_labels[0] == "emb" and data.row_labels[-1] == "logits"
    assert list(data.column_labels) == model.str_tokens(PROMPT)
    assert "decoder promotes" in data.node_summary[0]
    w = g.prune().show()
    assert w.n_nodes == data.n_nodes and not w.live
    w.close()
    assert repr(g).startswith("AttributionGraph(")


def test_bad_input_fails_before_any_forward(model):
    tcs = _tcs(model)
    cases = [
        (dict(prompt="", transcoders=tcs), "the prompt is empty"),
        (dict(prompt=PROMPT, transcoders={0: tcs[0], 2: tcs[2]}), "missing for layers [1]"),
        (dict(prompt=PROMPT, transcoders={**tcs, 1: SAE.random(32, 16, kind="transcoder", layer=1)}),
         "d_in=32, d_out=32 but tiny-llama-seed0 has d_model=64"),
        (dict(prompt=PROMPT, transcoders={**tcs, 1: SAE.random(64, 16, layer=1)}), "not sparse autoencoders"),
        (dict(prompt=PROMPT, transcoders={**tcs, 1: tcs[0]}), "made for layer 0"),
        (dict(prompt=PROMPT, transcoders="x"), "transcoders must be a dict"),
        (dict(prompt=PROMPT, transcoders=tcs, max_feature_nodes=0), "max_feature_nodes must be an int"),
        (dict(prompt=PROMPT, transcoders=tcs, logit_probability=1.5), "logit_probability must be a fraction"),
    ]
    for kwargs, message in cases:
        with no_forward(model), pytest.raises(InputError) as err:
            attribution_graph(model, kwargs.pop("prompt"), progress=False, **kwargs)
        assert message in str(err.value), (message, str(err.value))
    gpt2 = mechscope.tiny_model("gpt2")
    with no_forward(gpt2), pytest.raises(InputError, match="model_type='gpt2'"):
        attribution_graph(gpt2, PROMPT, transcoders=tcs, progress=False)
    with pytest.raises(InputError, match="edge_threshold must be a fraction"):
        attribution_graph(model, PROMPT, transcoders=tcs, progress=False).prune(edge_threshold=0)


def test_model_unchanged_after_an_exception_mid_way(model, monkeypatch):
    before = model_fingerprint(model)

    def boom(*_args, **_kwargs):
        raise RuntimeError("stopped mid-way")

    monkeypatch.setattr(replacement, "rows", boom)
    with pytest.raises(RuntimeError, match="stopped mid-way"):
        attribution_graph(model, PROMPT, transcoders=_tcs(model), progress=False)
    assert model_fingerprint(model) == before
