"""Logit lens: the last layer's lens equals the model's real output; bad input is rejected early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope import InputError
from tests.helpers import model_fingerprint

PROMPT = "hello world the quick brown fox"


def _hf_lens(model, prompt):
    """Independent lens with plain torch forward hooks (no nnsight)."""
    ids = model.to_tokens(prompt)
    outs = {}
    handles = [model.hf_module("resid", layer).register_forward_hook(
        lambda _m, _i, o, layer=layer: outs.__setitem__(layer, o[0] if isinstance(o, tuple) else o))
        for layer in range(model.n_layers)]
    try:
        with torch.no_grad():
            final = model.hf(ids).logits[0]
            norm = model.hf_module_at(model.adapter.final_norm_path)
            unembed = model.hf_module_at(model.adapter.unembed_path)
            probs = [torch.softmax(unembed(norm(outs[layer]))[0], -1) for layer in range(model.n_layers)]
    finally:
        for h in handles:
            h.remove()
    return torch.stack(probs), torch.softmax(final, -1)


def test_lens_matches_hooks_reference_and_final_logits(tiny):
    before = model_fingerprint(tiny)
    lens = mechscope.logit_lens(tiny, PROMPT, top_k=4, target=" the")
    probs, final = _hf_lens(tiny, PROMPT)
    top = torch.topk(probs, 4, dim=-1)
    np.testing.assert_array_equal(lens.top_ids, top.indices.numpy())
    np.testing.assert_allclose(lens.top_probs, top.values.numpy(), atol=1e-5)
    np.testing.assert_allclose(lens.top_probs[-1], torch.topk(final, 4).values.numpy(), atol=1e-5)
    tid = tiny.to_single_token(" the")
    np.testing.assert_allclose(lens.target_prob, probs[..., tid].numpy(), atol=1e-5)
    expected_rank = (probs > probs[..., tid : tid + 1]).sum(-1).numpy()
    np.testing.assert_array_equal(lens.target_rank, expected_rank)
    assert model_fingerprint(tiny) == before


def test_lens_chunks_long_prompts(tiny_llama, monkeypatch):
    import mechscope.analysis.logit_lens as ll

    prompt = " ".join(["the quick brown fox"] * 12)
    full = mechscope.logit_lens(tiny_llama, prompt, top_k=2)
    monkeypatch.setattr(ll, "CHUNK", 7)
    chunked = mechscope.logit_lens(tiny_llama, prompt, top_k=2)
    np.testing.assert_array_equal(full.top_ids, chunked.top_ids)
    np.testing.assert_allclose(full.top_probs, chunked.top_probs, atol=1e-6)


def test_lens_result_tables_and_widget(tiny_llama):
    lens = mechscope.logit_lens(tiny_llama, "hello world", top_k=2, layers=[-1])
    assert lens.layers == [tiny_llama.n_layers - 1]
    frame = lens.to_pandas()
    assert len(frame) == 1 * len(lens.tokens) * 2
    assert set(frame.columns) >= {"layer", "position", "token", "prob"}
    widget = lens.show()
    assert widget.shape == (1, len(lens.tokens))


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k"),
    ({"target": " hello world"}, "not one"),
    ({"layers": [99]}, "out of range"),
])
def test_lens_bad_input(tiny_llama, kwargs, message):
    with pytest.raises(InputError, match=message):
        mechscope.logit_lens(tiny_llama, "hello", **kwargs)
