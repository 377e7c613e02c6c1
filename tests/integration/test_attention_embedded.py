"""`mechscope.attention` on the embedded SmolLM2-135M against Hugging Face's own eager attentions."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import mechscope
from mechscope.analysis.attention import head_scores
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded

LAYERS = [3, 18]


def _repeated_random(model, span: int = 20, seed: int = 1) -> torch.Tensor:
    """``span`` distinct random word tokens (" " + lowercase letters) written twice, (1, 2 * span).

    SmolLM2's tokenizer adds no BOS; word tokens with a leading space re-tokenise exactly."""
    tok = model.tokenizer
    pool = np.array([i for i in range(1000, 20000) if re.fullmatch(r" [a-z]{3,}", tok.decode([i]))])
    body = np.tile(np.random.default_rng(seed).choice(pool, size=span, replace=False), 2)
    return torch.as_tensor(body, dtype=torch.long)[None]


def test_patterns_equal_hf_eager_attentions_and_gqa(embedded):
    model = embedded
    ids = _repeated_random(model)
    prompt = model.tokenizer.decode(ids[0])
    assert model.to_tokens(prompt)[0].tolist() == ids[0].tolist()   # the text re-tokenises exactly
    config = model.hf.config
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)   # grouped-query
    before_impl = config._attn_implementation
    before = model_fingerprint(model)

    att = mechscope.attention(model, prompt, layers=LAYERS)
    assert config._attn_implementation == before_impl          # implementation restored
    assert model_fingerprint(model) == before

    model.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = model.hf(ids, output_attentions=True).attentions
    finally:
        model.hf.set_attn_implementation(before_impl)
    n = ids.shape[1]
    assert att.patterns.shape == (len(LAYERS), 9, n, n)        # one pattern per QUERY head
    for k, layer in enumerate(LAYERS):
        want = ref[layer][0].float().numpy()
        assert want.shape == (9, n, n)
        np.testing.assert_allclose(att.patterns[k], want, atol=1e-5)
    np.testing.assert_allclose(att.patterns.sum(-1), 1.0, atol=1e-5)
    assert np.allclose(np.triu(att.patterns, k=1), 0.0)        # causal
    # query heads sharing one kv head (9 / 3 = 3 per group) still attend differently
    assert not np.allclose(att.patterns[1, 6], att.patterns[1, 7], atol=1e-3)
    assert att.induction_source == "prompt" and att.score("induction")[1, 6] > 0.5   # L18H6 on this sequence
    # the scores are head_scores of these very patterns
    np.testing.assert_allclose(att.per_example[0], head_scores(att.patterns, ids[0].tolist()), atol=1e-6)


def test_induction_heads_of_notebook_09_found_again(embedded):
    model = embedded
    impl = model.hf.config._attn_implementation
    att = mechscope.attention(model, "The cat sat on the mat.", layers=[16, 17, 18], induction_probe=True)
    assert model.hf.config._attn_implementation == impl
    assert att.induction_source.startswith("repeated random tokens")
    ind = att.score("induction")                                   # (3 layers, 9 heads)
    # notebook 09 measured L18H6 0.82 [0.73, 0.88], L17H4 0.69, L17H3 0.68 on the same probe
    assert ind[2, 6] > 0.5 and att.ci_low[att.score_names.index("induction"), 2, 6] > 0.5
    top = {(la, h) for la, h, _ in att.top_heads("induction", 4)}
    assert {(18, 6), (17, 4), (17, 3)} <= top
    assert np.nanmedian(ind) < 0.3                                 # most heads are not induction heads
