"""`activations` equals plain torch forward hooks on the HF model, and leaves the model as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mechscope
from mechscope import InputError
from tests.helpers import model_fingerprint

PROMPT = "The Eiffel Tower is in the city of Paris"


def _hooked(model, prompt, site):
    """Each layer's site activation, shape (positions, width), read with torch hooks (no nnsight)."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    acts = {}

    def output_hook(layer):
        def hook(_module, _inputs, output):
            acts[layer] = (output[0] if isinstance(output, tuple) else output)[0].detach().clone()
        return hook

    def input_hook(layer):
        def hook(_module, inputs):
            acts[layer] = inputs[0][0].detach().clone()
        return hook

    handles = []
    for layer in range(model.n_layers):
        module = model.hf_module(site, layer)
        if site == "neurons":
            handles.append(module.register_forward_pre_hook(input_hook(layer)))
        else:
            handles.append(module.register_forward_hook(output_hook(layer)))
    try:
        with torch.no_grad():
            model.hf(ids)
    finally:
        for h in handles:
            h.remove()
    return ids, [acts[layer] for layer in range(model.n_layers)]


@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_norm_matches_torch_hooks(tiny, site):
    before = model_fingerprint(tiny)
    r = mechscope.activations(tiny, PROMPT, site=site)
    ids, acts = _hooked(tiny, PROMPT, site)
    expected = torch.stack([a.norm(dim=-1) for a in acts]).numpy()
    assert r.values.shape == (tiny.n_layers, ids.shape[1])
    assert r.values.dtype == np.float32
    np.testing.assert_allclose(r.values, expected, atol=1e-5, rtol=1e-5)
    assert (r.site, r.quantity, r.layers) == (site, "norm", list(range(tiny.n_layers)))
    assert r.tokens == [tiny.tokenizer.decode([i]) for i in ids[0].tolist()]
    assert r.prompt == PROMPT and r.model_name == tiny.name
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("neuron", [0, 37, 127])
def test_mlp_neuron_matches_torch_hooks(tiny, neuron):
    before = model_fingerprint(tiny)
    r = mechscope.activations(tiny, PROMPT, site="neurons", neuron=neuron)
    _, acts = _hooked(tiny, PROMPT, "neurons")
    expected = torch.stack([a[:, neuron] for a in acts]).numpy()
    np.testing.assert_allclose(r.values, expected, atol=1e-5, rtol=1e-5)
    assert r.quantity == f"unit {neuron}"
    assert np.abs(r.values).max() > 0  # a real signal, not zeros matching zeros
    assert model_fingerprint(tiny) == before


def test_resid_dimension_matches_torch_hooks(tiny_llama):
    r = mechscope.activations(tiny_llama, PROMPT, site="resid", neuron=5)
    _, acts = _hooked(tiny_llama, PROMPT, "resid")
    np.testing.assert_allclose(r.values, torch.stack([a[:, 5] for a in acts]).numpy(), atol=1e-5)


def test_layer_subset_comes_back_in_model_order_and_duplicates_are_refused(tiny_llama):
    full = mechscope.activations(tiny_llama, PROMPT)
    r = mechscope.activations(tiny_llama, PROMPT, layers=[-1, 0])
    assert r.layers == [0, 1]
    np.testing.assert_array_equal(r.values, full.values[[0, 1]])
    assert mechscope.activations(tiny_llama, PROMPT, layers=1).layers == [1]
    with pytest.raises(InputError, match=r"layers \[-1, 0, 1\] names the same layer twice \(1\)"):
        mechscope.activations(tiny_llama, PROMPT, layers=[-1, 0, 1])


def test_repeated_calls_are_identical_and_leave_the_model_alone(tiny_llama):
    before = model_fingerprint(tiny_llama)
    tok_state = (tiny_llama.tokenizer.padding_side, tiny_llama.tokenizer.pad_token)
    first = mechscope.activations(tiny_llama, PROMPT, site="neurons", neuron=3)
    for _ in range(3):
        again = mechscope.activations(tiny_llama, PROMPT, site="neurons", neuron=3)
        np.testing.assert_array_equal(first.values, again.values)
    assert model_fingerprint(tiny_llama) == before
    assert (tiny_llama.tokenizer.padding_side, tiny_llama.tokenizer.pad_token) == tok_state
    assert not tiny_llama.hf.training


def test_to_pandas(tiny_llama):
    r = mechscope.activations(tiny_llama, PROMPT, layers=[1, 0])
    frame = r.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == r.values.shape
    assert frame.index.name == "layer" and list(frame.index) == [0, 1]  # model order
    assert frame.columns.names == ["position", "token"]
    assert list(frame.columns.get_level_values("token")) == r.tokens
    assert list(frame.columns.get_level_values("position")) == list(range(len(r.tokens)))
    np.testing.assert_array_equal(frame.to_numpy(), r.values)
    # Repeated tokens stay distinct columns (positions tell them apart).
    prompt = "hello the the the"
    tokens = tiny_llama.str_tokens(prompt)
    assert tokens[-3:] == [" the"] * 3
    rep = mechscope.activations(tiny_llama, prompt).to_pandas()
    assert rep.shape[1] == len(tokens)
    assert list(rep.loc[0, (slice(None), " the")].to_numpy()) == list(rep.iloc[0, -3:].to_numpy())


def test_result_is_frozen_and_shows_a_heatmap(tiny_llama):
    r = mechscope.activations(tiny_llama, PROMPT)
    with pytest.raises(AttributeError):
        r.site = "mlp"  # type: ignore[misc]
    w = r.show()
    assert w.shape == r.values.shape
    assert w.col_labels == r.tokens and w.row_labels == ["L0", "L1"]
    assert w.colorscale == "viridis"
    np.testing.assert_allclose(w.array, r.values, rtol=1e-6)
    assert mechscope.activations(tiny_llama, PROMPT, neuron=2).show().colorscale == "diverging"


@pytest.mark.parametrize("neuron", [None, 3])
def test_remote_local_equals_local(tiny, neuron):
    """nnsight's real serialise/deserialise path (what NDIF runs) gives the same values."""
    local = mechscope.activations(tiny, PROMPT, site="neurons", neuron=neuron)
    tiny.remote = "local"
    try:
        sim = mechscope.activations(tiny, PROMPT, site="neurons", neuron=neuron)
    finally:
        tiny.remote = False
    np.testing.assert_allclose(sim.values, local.values, atol=1e-6)
