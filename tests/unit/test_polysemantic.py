"""`polysemantic` on the tiny models: values vs plain hooks, determinism, bad input, a planted case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.analysis.collect import collect
from mechscope.analysis.polysemantic import PolysemanticResult, polysemantic
from mechscope.datasets.labelled import labelled_texts
from mechscope.errors import InputError
from tests.helpers import model_fingerprint

DATA = labelled_texts(["animals", "cities", "code", "french", "numbers"], n_per_class=8, seed=0)
TEXTS = [x for group in DATA.values() for x in group]


def _hook_neurons(model, text: str, layer: int) -> np.ndarray:
    """(tokens, d_mlp) input of layer's down projection, by a plain forward pre-hook."""
    got = {}
    mod = model.hf.model.layers[layer].mlp.down_proj
    h = mod.register_forward_pre_hook(lambda m, args: got.setdefault("x", args[0].detach()))
    try:
        with torch.no_grad():
            model.hf(model.to_tokens(text))
    finally:
        h.remove()
    return got["x"][0].numpy()


def test_shapes_values_vs_hooks_and_determinism(tiny_llama):
    before = model_fingerprint(tiny_llama)
    res = polysemantic(tiny_llama, DATA, layer=1, neurons=[0, 5, 17], top_k=6, n_shuffles=30)
    again = polysemantic(tiny_llama, DATA, layer=1, neurons=[0, 5, 17], top_k=6, n_shuffles=30)
    assert model_fingerprint(tiny_llama) == before
    assert isinstance(res, PolysemanticResult) and res.neurons.tolist() == [0, 5, 17]
    for name in ("top_examples", "top_positions", "top_values", "clusters", "topic_counts"):
        assert getattr(res, name).shape[0] == 3
        np.testing.assert_array_equal(getattr(res, name), getattr(again, name))
    np.testing.assert_array_equal(res.topic_p, again.topic_p)
    assert res.kind == again.kind and res.fraction == again.fraction
    assert res.topics == sorted(DATA) and (res.topic_counts.sum(1) == 6).all()
    hooks = [_hook_neurons(tiny_llama, t, 1) for t in TEXTS]
    for i, n in enumerate(res.neurons):
        peaks = np.array([h[1:, n].max() for h in hooks])       # first token skipped
        want = np.sort(peaks)[::-1][:6]
        np.testing.assert_allclose(res.top_values[i], want, atol=1e-5)
        ex, pos = res.top_examples[i, 0], res.top_positions[i, 0]
        assert pos == 1 + np.argmax(hooks[ex][1:, n]) and len(set(res.top_examples[i])) == 6
        np.testing.assert_allclose(res.context_values[i, 0, 1:len(hooks[ex])], hooks[ex][1:, n], atol=1e-5)
        assert np.isnan(res.context_values[i, 0, 0])
    assert 0 <= res.fraction <= 1 and res.fraction_ci[0] <= res.fraction <= res.fraction_ci[1]
    assert ((res.silhouette >= -1) & (res.silhouette <= 1)).all()
    frame = res.to_pandas()
    assert len(frame) == 3 and frame["neuron"].tolist() == res.neurons[res.order].tolist()


def test_store_input_equals_model_input(tiny_llama):
    store = collect(tiny_llama, TEXTS, sites=["neurons", "resid_pre"], layers=[0], progress=False)
    labels = [t for t, group in DATA.items() for _ in group]
    a = polysemantic(store, TEXTS, labels=labels, layer=0, neurons=range(10), top_k=5, n_shuffles=20)
    b = polysemantic(tiny_llama, DATA, layer=0, neurons=range(10), top_k=5, n_shuffles=20)
    np.testing.assert_array_equal(a.top_examples, b.top_examples)
    np.testing.assert_allclose(a.entropy, b.entropy)


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer=2), "layer 2"),
    (dict(layer=0, top_k=41), "top_k=41 top contexts (one per text) but only 40 texts: too few texts"),
    (dict(layer=0, top_k=2), "top_k must be larger than n_clusters=2"),
    (dict(layer=0, neurons=[128]), "neuron"),
    (dict(layer=0, n_shuffles=3), "n_shuffles must be at least 10"),
    (dict(layer=0, alpha=1.5), "alpha must be a number between 0 and 1"),
])
def test_bad_input(tiny_llama, kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        polysemantic(tiny_llama, DATA, **kwargs)


def test_bad_texts_and_labels(tiny_llama):
    with pytest.raises(InputError, match="39 labels for 40 texts: give one topic label per text"):
        polysemantic(tiny_llama, TEXTS, labels=["a"] * 39, layer=0)
    with pytest.raises(InputError, match="a list of texts needs labels="):
        polysemantic(tiny_llama, TEXTS, layer=0)
    with pytest.raises(InputError, match="at least 2 topics"):
        polysemantic(tiny_llama, {"code": DATA["code"]}, layer=0, top_k=4)
    with pytest.raises(InputError, match="only 3 texts: too few texts"):
        polysemantic(tiny_llama, {"a": ["x y", "y z"], "b": ["p q"]}, layer=0, top_k=4)
    store = collect(tiny_llama, TEXTS[:5], sites=["neurons", "resid_pre"], layers=[0], progress=False)
    with pytest.raises(InputError, match="the store holds 5 texts, 40 given"):
        polysemantic(store, DATA, layer=0, top_k=4)
    with pytest.raises(InputError, match="takes a mechscope Model"):
        polysemantic("gpt2", DATA, layer=0)


def _own_tokens(model, data: dict[str, list[str]]) -> dict[str, set[int]]:
    """Token ids found in one topic's texts and no other's."""
    ids = {t: {i for x in texts for i in model.to_tokens(x)[0].tolist()} for t, texts in data.items()}
    return {t: ids[t] - set().union(*(ids[u] for u in ids if u != t)) for t in ids}


def _planted(model, topics_of: dict[int, list[str]]) -> dict[str, list[str]]:
    """Neuron n (layer 0) fires on the tokens found only in the texts of ``topics_of[n]``.

    The texts: per topic, template sentences that hold one of its own tokens (4 animals, 4
    cities, 8 of each other topic). Each planted topic gets its own residual dimension d,
    cleared (embeddings, attention output) and set to 4 on that topic's own tokens; the
    neuron's gate and up rows read its topics' dimensions strongly (their random weights
    elsewhere give small values). Two topics on two dimensions: their contexts' residuals
    differ, so the groups separate."""
    pool = labelled_texts(n_per_class=40, seed=0)
    own = _own_tokens(model, pool)
    sizes = {"animals": 4, "cities": 4, "code": 8, "french": 8, "numbers": 8}
    data = {t: [x for x in pool[t] if own[t] & set(model.to_tokens(x)[0, 1:].tolist())][:n]   # not only first
            for t, n in sizes.items()}
    assert [len(v) for v in data.values()] == list(sizes.values())
    layer = model.hf.model.layers[0]
    emb = model.hf.model.embed_tokens.weight
    dims = {t: d for d, t in enumerate(t for topics in topics_of.values() for t in topics)}
    with torch.no_grad():
        for topic, d in dims.items():
            emb[:, d] = 0.0
            emb[sorted(own[topic]), d] = 4.0
            layer.self_attn.o_proj.weight[d] = 0.0
        for neuron, topics in topics_of.items():
            for proj in (layer.mlp.gate_proj, layer.mlp.up_proj):
                proj.weight[neuron, [dims[t] for t in topics]] = 8.0
    return data


def test_planted_polysemantic_and_monosemantic_neurons():
    model = mechscope.tiny_model("llama")
    data = _planted(model, {5: ["animals", "cities"], 9: ["code"]})
    res = polysemantic(model, data, layer=0, top_k=8, n_shuffles=200)
    i5, i9 = 5, 9
    assert res.kind[i5] == "polysemantic" and res.kind[i9] == "monosemantic"
    assert res.topic_counts[i5].tolist() == [4, 4, 0, 0, 0]      # every animal and city text
    assert res.topic_counts[i9].tolist() == [0, 0, 8, 0, 0]
    assert (res.topic_p[i5, :2] < 0.01).all() and res.entropy[i5] == 1.0 < res.baseline_entropy[i5]
    assert 5 in res.ranked("polysemantic") and 9 in res.ranked("monosemantic")
    # the residual clusters of neuron 5's contexts are the two topics
    assert sorted(res.cluster_topics[i5]) == ["animals", "cities"] and res.silhouette[i5] > 0
    groups = res.groups(5)
    assert sorted(len({t for t, _, _ in items}) for items in groups.values()) == [1, 1]
    w = res.show(neuron=5)
    assert w.n_texts == 8 and w.labels == sorted(w.labels, key=lambda s: int(s.split()[1]))
    assert res.fraction < 0.1            # the rest of the random neurons: not planted
    with pytest.raises(InputError, match="neuron 999 was not analysed"):
        res.show(neuron=999)


def test_show_context_window_and_hostile_labels(tiny_llama):
    hostile = {"<img src=x onerror=alert(1)>": DATA["code"], "</script><script>alert(2)</script>": DATA["french"]}
    res = polysemantic(tiny_llama, hostile, layer=1, neurons=[2], top_k=4, n_shuffles=20, context=1)
    w = res.show()
    assert all(len(w.text_tokens(i)) <= 3 for i in range(w.n_texts))
    html = w.offline_html()
    assert "<img src=x" not in html and "<script>alert" not in html
