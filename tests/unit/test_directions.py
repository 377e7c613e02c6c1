"""Concept directions and word arithmetic against numpy on plain-hook activations / raw weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.analysis.collect import collect
from mechscope.analysis.directions import analogy, concept_directions
from mechscope.datasets.labelled import labelled_texts
from mechscope.errors import InputError
from tests.helpers import model_fingerprint


def _hook_last(model, texts, layer):
    rows = []
    for text in texts:
        seen = {}
        h = model.hf_module("resid", layer).register_forward_hook(
            lambda _m, _i, o, seen=seen: seen.__setitem__("x", (o[0] if isinstance(o, tuple) else o)[0, -1]))
        try:
            with torch.no_grad():
                model.hf(model.to_tokens(text))
        finally:
            h.remove()
        rows.append(seen["x"].double().numpy())
    return np.stack(rows)


def test_mean_difference_and_pca_match_numpy(tiny):
    data = labelled_texts(["animals", "code"], n_per_class=6, seed=1)
    before = model_fingerprint(tiny)
    cd = concept_directions(tiny, data, layer=-1, k=3)
    assert model_fingerprint(tiny) == before
    x = _hook_last(tiny, data["animals"] + data["code"], tiny.n_layers - 1)
    y = np.array([0] * 6 + [1] * 6)
    diff = x[y == 1].mean(0) - x[y == 0].mean(0)
    np.testing.assert_allclose(cd.mean_difference, diff, atol=1e-5)
    xc = x - x.mean(0)
    np.testing.assert_allclose(cd.mean_projection, xc @ diff / np.linalg.norm(diff), atol=1e-4)
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    order = np.argsort(evals)[::-1][:3]
    np.testing.assert_allclose(cd.explained_variance, evals[order] / evals.sum(), atol=1e-5)
    for i, j in enumerate(order):                                    # same axes up to sign
        assert abs(float(cd.components[i] @ evecs[:, j])) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(cd.scores, xc @ cd.components.T.astype(np.float64), atol=1e-4)
    assert list(cd.to_pandas()["label"]) == ["animals"] * 6 + ["code"] * 6


def test_concept_directions_from_store(tiny_llama):
    data = labelled_texts(["cities", "french"], n_per_class=5)
    store = collect(tiny_llama, data["cities"] + data["french"], layers=[1], reduce="mean", progress=False)
    a = concept_directions(store, data, layer=1, k=2)
    b = concept_directions(tiny_llama, data, layer=1, k=2, position="mean")
    np.testing.assert_allclose(a.mean_difference, b.mean_difference, atol=1e-6)
    with pytest.raises(InputError, match=r"layers \[0\] are not in the store"):
        concept_directions(store, data, layer=0)


def test_concept_directions_checks(tiny_llama):
    data = labelled_texts(["cities", "french"], n_per_class=5)
    with pytest.raises(InputError, match="k must be between 1 and the number of texts"):
        concept_directions(tiny_llama, data, layer=0, k=11)
    with pytest.raises(InputError, match="layer 5 is out of range"):
        concept_directions(tiny_llama, data, layer=5)


def test_analogy_matches_numpy(tiny):
    words = [tiny.decode_tokens([i])[0] for i in (11, 12, 13, 14)]
    an = analogy(tiny, words[0], words[1], words[2], answer=words[3], top_k=5)
    emb = tiny.hf_module_at(tiny.adapter.embed_path).weight.detach().double().numpy()
    q = emb[11] - emb[12] + emb[13]
    cos = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    cos[[11, 12, 13]] = -np.inf
    order = np.argsort(-cos, kind="stable")
    assert list(an.ids) == order[:5].tolist()
    np.testing.assert_allclose(an.cosines, cos[order[:5]], atol=1e-6)
    assert an.answer_rank == int(np.flatnonzero(order == 14)[0]) + 1
    assert an.answer_cosine == pytest.approx(cos[14])
    assert len(an.to_pandas()) == 5


def test_analogy_needs_single_tokens(tiny_llama):
    with pytest.raises(InputError, match="not one"):
        analogy(tiny_llama, "hippopotamus", "a", "b")


def test_analogy_can_keep_the_inputs(tiny_llama):
    an = analogy(tiny_llama, "a", "b", "c", top_k=4, exclude_inputs=False)
    emb = tiny_llama.hf_module_at(tiny_llama.adapter.embed_path).weight.detach().double().numpy()
    ids = [tiny_llama.to_single_token(w) for w in "abc"]
    q = emb[ids[0]] - emb[ids[1]] + emb[ids[2]]
    cos = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    assert list(an.ids) == np.argsort(-cos, kind="stable")[:4].tolist()
    with pytest.raises(InputError, match="exclude_inputs must be True or False"):
        analogy(tiny_llama, "a", "b", "c", exclude_inputs=1)
