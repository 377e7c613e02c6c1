"""Steering vectors and steered greedy generation on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import InputError
from tests.helpers import model_fingerprint
from tests.reference_hooks import hf_greedy

POS = ["good great fine day", "happy joy", "The cat is very good and happy today"]
NEG = ["bad awful sad", "The dog is terrible", "sad"]


def _reference_vector(model, layer):
    """Per-prompt unpadded HF runs (hidden_states[layer + 1] is block ``layer``'s output)."""
    def mean(prompts):
        rows = []
        for p in prompts:
            ids = model.tokenizer(p, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                hs = model.hf(input_ids=ids, output_hidden_states=True).hidden_states
            rows.append(hs[layer + 1][0])
        return torch.cat(rows).mean(0)
    return (mean(POS) - mean(NEG)).numpy()


def test_steering_vector_matches_reference(tiny):
    vec = mechscope.steering_vector(tiny, POS, NEG, layer=0)
    ref = _reference_vector(tiny, 0)
    np.testing.assert_allclose(vec.vector, ref, atol=1e-4)
    assert vec.layer == 0 and vec.norm == pytest.approx(float(np.linalg.norm(ref)), rel=1e-4)
    assert vec.resid_norm > 0 and vec.positive == tuple(POS)
    assert "norm=" in repr(vec)
    assert mechscope.steering_vector(tiny, POS, NEG, layer=-1).layer == tiny.n_layers - 1


def test_coefficient_zero_ishf_greedy(tiny):
    vec = mechscope.steering_vector(tiny, POS, NEG, layer=1)
    for prompt in ("The cat", "Bonjour le"):
        expected = hf_greedy(tiny, prompt, 8)
        assert list(mechscope.generate(tiny, prompt, steer=vec, coefficient=0, max_new_tokens=8).new_ids) == expected
        assert list(mechscope.generate(tiny, prompt, max_new_tokens=8).new_ids) == expected


def test_steering_changes_generation_and_is_deterministic(tiny_llama):
    vec = mechscope.steering_vector(tiny_llama, POS, NEG, layer=0)
    base = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=0, max_new_tokens=8)
    strong = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=50, max_new_tokens=8)
    again = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=50, max_new_tokens=8)
    assert strong.new_ids != base.new_ids
    assert strong == again


def test_steering_equals_hf_hook_reference(tiny):
    """Adding c*v at block L's output on every position of every step == HF greedy with a hook."""
    vec = mechscope.steering_vector(tiny, POS, NEG, layer=0)
    c, n = 8.0, 6
    block = tiny.hf_module("resid", 0)
    delta = torch.as_tensor(c * vec.vector)

    def hook(_m, _a, out):
        return (out[0] + delta, *out[1:]) if isinstance(out, tuple) else out + delta

    ids = tiny.tokenizer("The cat", return_tensors="pt")["input_ids"]
    expected = []
    handle = block.register_forward_hook(hook)
    try:
        for _ in range(n):
            with torch.no_grad():
                nxt = int(tiny.hf(input_ids=ids).logits[0, -1].argmax())
            expected.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
            if nxt in {int(tiny.hf.generation_config.eos_token_id)}:
                break
    finally:
        handle.remove()
    got = mechscope.generate(tiny, "The cat", steer=vec, coefficient=c, max_new_tokens=n)
    assert list(got.new_ids) == expected


def test_remote_local_equals_local(tiny_llama):
    vec = mechscope.steering_vector(tiny_llama, POS, NEG, layer=1)
    local = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=20, max_new_tokens=4)
    tiny_llama.remote = "local"
    try:
        vec_sim = mechscope.steering_vector(tiny_llama, POS, NEG, layer=1)
        sim = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=20, max_new_tokens=4)
    finally:
        tiny_llama.remote = False
    np.testing.assert_allclose(vec_sim.vector, vec.vector, atol=1e-6)
    assert sim.new_ids == local.new_ids


def test_sweep(tiny_llama):
    vec = mechscope.steering_vector(tiny_llama, POS, NEG, layer=1)
    sweep = mechscope.steering_sweep(tiny_llama, "The cat", vec, coefficients=[-30, 0, 30], max_new_tokens=5)
    df = sweep.to_pandas()
    assert list(df["coefficient"]) == [-30.0, 0.0, 30.0]
    assert sweep.generations[1].new_ids == mechscope.generate(tiny_llama, "The cat", max_new_tokens=5).new_ids
    w = sweep.show()
    assert w.shape[0] == 3
    assert np.nansum(w.array[1]) == 0  # the unsteered row differs from itself nowhere


def test_wrong_size_and_bad_inputs(tiny_llama):
    other = mechscope.tiny_model("gpt2", d_model=32)
    vec_other = mechscope.steering_vector(other, POS, NEG, layer=0)
    with pytest.raises(InputError, match="d_model=64"):
        mechscope.generate(tiny_llama, "The cat", steer=vec_other, coefficient=1)
    with pytest.raises(InputError, match="d_model=64"):
        mechscope.steering_sweep(tiny_llama, "The cat", vec_other, coefficients=[1])
    with pytest.raises(InputError, match="d_model=64"):
        mechscope.generate(tiny_llama, "The cat", steer=np.zeros(7), layer=0)
    with pytest.raises(InputError, match="needs layer"):
        mechscope.generate(tiny_llama, "The cat", steer=np.zeros(64))
    with pytest.raises(InputError, match="out of range"):
        mechscope.steering_vector(tiny_llama, POS, NEG, layer=2)
    with pytest.raises(InputError, match="non-empty list"):
        mechscope.steering_vector(tiny_llama, "good", NEG, layer=0)
    with pytest.raises(InputError, match="max_new_tokens"):
        mechscope.generate(tiny_llama, "The cat", max_new_tokens=0)
    with pytest.raises(InputError, match="finite"):
        mechscope.generate(tiny_llama, "The cat", steer=vec_other, coefficient=float("nan"))


def test_model_unchanged(tiny):
    before = model_fingerprint(tiny)
    vec = mechscope.steering_vector(tiny, POS, NEG, layer=1)
    mechscope.steering_sweep(tiny, "The cat", vec, coefficients=[-5, 0, 5], max_new_tokens=3)
    assert model_fingerprint(tiny) == before


def test_skip_first_leaves_out_each_prompts_first_token(tiny_llama):
    vec = mechscope.steering_vector(tiny_llama, POS, NEG, layer=0, skip_first=True)

    def mean(prompts):
        rows = []
        for p in prompts:
            ids = tiny_llama.tokenizer(p, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                rows.append(tiny_llama.hf(input_ids=ids, output_hidden_states=True).hidden_states[1][0, 1:])
        return torch.cat(rows).mean(0)

    np.testing.assert_allclose(vec.vector, (mean(POS) - mean(NEG)).numpy(), atol=1e-4)
    assert vec.skip_first
    with pytest.raises(InputError, match="no tokens"):
        mechscope.steering_vector(tiny_llama, ["a"], ["b"], layer=0, skip_first=True)
