"""`mechscope.analysis.attention`: patterns vs Hugging Face's own ``output_attentions`` with
eager attention, the scores vs plain loops, batching, errors and the restored implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.analysis.attention import SCORES, attention
from mechscope.datasets import prompts
from mechscope.errors import InputError
from mechscope.models.tiny import tiny_model
from tests.helpers import model_fingerprint

TEXT = "the cat sat on the mat and the cat sat"


def hf_patterns(model, text: str) -> np.ndarray:
    """(layers, heads, q, k) from the HF model itself, eager attention, no nnsight."""
    ids = model.to_tokens(text)
    hf = model.hf
    before = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = hf(ids, output_attentions=True)
    finally:
        hf.set_attn_implementation(before)
    return torch.stack([a[0] for a in out.attentions]).float().numpy()


def loop_scores(p: np.ndarray, ids: list[int]) -> np.ndarray:
    """The four scores of one (q, k) pattern by plain Python loops."""
    n = len(ids)
    prev = np.mean([p[i, i - 1] for i in range(1, n)])
    first = np.mean([p[i, 0] for i in range(1, n)])
    dup, ind = [], []
    for i in range(n):
        same = [j for j in range(i) if ids[j] == ids[i]]
        after = [j + 1 for j in same if j + 1 < i]
        if same:
            dup.append(sum(p[i, j] for j in same))
        if after:
            ind.append(sum(p[i, k] for k in after))
    return np.array([prev, np.mean(dup) if dup else np.nan, np.mean(ind) if ind else np.nan, first])


def test_patterns_equal_hf_output_attentions(tiny):
    before = model_fingerprint(tiny)
    impl = tiny.hf.config._attn_implementation
    att = attention(tiny, TEXT)
    assert model_fingerprint(tiny) == before  # (HF's output_attentions below leaves its own hooks)
    ref = hf_patterns(tiny, TEXT)
    assert att.patterns.dtype == np.float32
    assert att.patterns.shape == (tiny.n_layers, tiny.n_heads, len(att.tokens), len(att.tokens))
    np.testing.assert_allclose(att.patterns, ref, atol=1e-5)
    assert att.tokens == tiny.str_tokens(TEXT)
    assert tiny.hf.config._attn_implementation == impl


def test_gqa_gives_one_pattern_per_query_head(tiny_llama):
    assert tiny_llama.hf.config.num_key_value_heads < tiny_llama.n_heads
    att = attention(tiny_llama, TEXT, heads=[1, 3], layers=[-1])
    np.testing.assert_allclose(att.patterns[0], hf_patterns(tiny_llama, TEXT)[-1][[1, 3]], atol=1e-5)
    assert (att.layers, att.heads) == ([1], [1, 3])


def test_scores_equal_plain_loops(tiny):
    att = attention(tiny, TEXT)
    ids = tiny.to_tokens(TEXT)[0].tolist()
    ref = hf_patterns(tiny, TEXT)
    for li in range(tiny.n_layers):
        for h in range(tiny.n_heads):
            np.testing.assert_allclose(att.per_example[0, :, li, h], loop_scores(ref[li, h], ids),
                                       atol=1e-5)
    np.testing.assert_allclose(att.scores, att.per_example[0], atol=1e-6)
    assert att.induction_source == "prompt"


def test_dataset_batched_equals_single_calls(tiny):
    texts = ["a b a b", "the cat sat on the mat", "x y"]
    many = attention(tiny, prompts(texts))
    assert many.per_example.shape == (3, len(SCORES), tiny.n_layers, tiny.n_heads)
    assert many.example_patterns is not None and len(many.example_patterns) == 3
    for i, text in enumerate(texts):
        one = attention(tiny, text, induction_probe=False)
        np.testing.assert_allclose(many.example_patterns[i], hf_patterns(tiny, text), atol=1e-5)
        np.testing.assert_allclose(many.per_example[i], one.per_example[0], atol=1e-5, equal_nan=True)
        assert many.example_tokens[i] == one.tokens
    np.testing.assert_allclose(many.patterns, many.example_patterns[0])
    finite = np.nanmean(many.per_example, axis=0)
    np.testing.assert_allclose(many.scores, finite, atol=1e-5, equal_nan=True)
    assert (many.ci_low <= many.scores + 1e-6).all() and (many.scores <= many.ci_high + 1e-6).all()


def test_induction_probe_when_no_repeat(tiny_llama):
    att = attention(tiny_llama, "ab")           # two distinct tokens: no induction query
    assert np.isnan(att.per_example[0, SCORES.index("induction")]).all()
    assert att.induction_source.startswith("repeated random tokens (8 sequences of")
    induction = att.score("induction")
    assert np.isfinite(induction).all() and ((induction >= 0) & (induction <= 1)).all()
    off = attention(tiny_llama, "ab", induction_probe=False)
    assert np.isnan(off.score("induction")).all() and off.induction_source == "prompt"


def test_to_pandas_and_top_heads(tiny_llama):
    att = attention(tiny_llama, TEXT)
    frame = att.to_pandas()
    assert len(frame) == len(SCORES) * tiny_llama.n_layers * tiny_llama.n_heads
    row = frame[(frame["layer"] == 1) & (frame["head"] == 2) & (frame["score"] == "first_token")].iloc[0]
    assert row.value == pytest.approx(float(att.score("first_token")[1, 2]))
    top = att.top_heads("previous_token", 3)
    assert [s for *_, s in top] == sorted((s for *_, s in top), reverse=True)
    assert top[0][2] == pytest.approx(float(np.nanmax(att.score("previous_token"))))
    assert "2 layers x 4 heads" in repr(att)
    with pytest.raises(InputError, match=r"score must be one of \['previous_token'"):
        att.score("nope")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layers": 5}, "layer 5 is out of range"),
    ({"heads": [0, 9]}, "head 9 is out of range"),
    ({"heads": [1, 1]}, "heads"),
    ({"induction_probe": "yes"}, "induction_probe must be None, True or False"),
])
def test_input_errors_before_any_forward_pass(tiny_llama, kwargs, message):
    calls = []
    handle = tiny_llama.hf.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(InputError, match=message):
            attention(tiny_llama, TEXT, **kwargs)
        with pytest.raises(InputError, match="at least one prompt"):
            attention(tiny_llama, [])
    finally:
        handle.remove()
    assert calls == []


def test_model_without_eager_switch_is_refused_before_running():
    model = tiny_model("gpt2")
    model.hf.set_attn_implementation = None  # an HF model too old to switch attention
    calls = []
    handle = model.hf.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match="cannot give attention patterns.*eager attention"):
        attention(model, TEXT)
    handle.remove()
    assert calls == []


def test_implementation_restored_after_an_exception(tiny):
    before = model_fingerprint(tiny)
    impl = tiny.hf.config._attn_implementation
    assert impl != "eager"

    def boom(*_args):
        raise RuntimeError("boom mid-trace")

    handle = tiny.hf_module("mlp", 0).register_forward_hook(boom)
    try:
        with pytest.raises(Exception, match="boom mid-trace"):
            attention(tiny, TEXT)
    finally:
        handle.remove()
    assert tiny.hf.config._attn_implementation == impl
    assert model_fingerprint(tiny) == before
    np.testing.assert_allclose(attention(tiny, TEXT).patterns, hf_patterns(tiny, TEXT), atol=1e-5)


def test_remote_local_equals_local():
    import mechscope

    hf = mechscope.models.tiny.tiny_hf_model("llama")
    tok = mechscope.models.tiny.tiny_tokenizer()
    sim = mechscope.load(hf, tokenizer=tok, remote="local")
    plain = mechscope.load(hf, tokenizer=tok)
    a, b = attention(sim, TEXT), attention(plain, TEXT)
    np.testing.assert_allclose(a.patterns, b.patterns, atol=1e-6)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6, equal_nan=True)
