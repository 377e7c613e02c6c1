"""Ablation and steering on the embedded SmolLM2-135M-Instruct (offline; ~30 s on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest

import mechscope
from mechscope.metrics import logit_diff
from tests.helpers import model_fingerprint
from tests.reference_ablation import reference_ablation
from tests.reference_hooks import hf_greedy

PROMPT = "The capital of France is"
REFERENCE = ["The Colosseum is in the city of Rome.", "The Eiffel Tower is in Paris, France.",
             "My favourite food is pasta."]
POS = ["I love this, it is wonderful and makes me so happy.",
       "What a fantastic, beautiful day. Everything is great!",
       "This movie was excellent, I enjoyed every minute.",
       "I am delighted and grateful for such kind friends."]
NEG = ["I hate this, it is terrible and makes me so sad.",
       "What an awful, miserable day. Everything is horrible!",
       "This movie was dreadful, I regretted every minute.",
       "I am furious and disgusted with such cruel people."]


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
@pytest.mark.parametrize("spec", [("neurons", 20, (5, 100, -1), ""), ("heads", 3, (0, 8), ""),
                                  ("layer", 12, (), "mlp"), ("layer", 25, (), "attn")],
                         ids=lambda s: f"{s[0]}{s[1]}{s[3]}")
def test_ablation_matches_torch_hooks(embedded, spec, method):
    kind, layer, idx, site = spec
    target = mechscope.layer(layer, site) if kind == "layer" else getattr(mechscope, kind)(layer, list(idx))
    ref = None if method == "zero" else REFERENCE
    r = mechscope.ablate(embedded, PROMPT, target, method=method, reference=ref, seed=0)
    clean, ablated = reference_ablation(embedded, PROMPT, *spec, method=method, reference=ref, seed=0)
    np.testing.assert_allclose(r.clean_logits, clean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(r.ablated_logits, ablated, atol=1e-4, rtol=0)


def test_ablation_effect_and_remote_local(embedded):
    m = logit_diff(" Paris", " Rome")
    target = mechscope.layer(21, "mlp")
    local = mechscope.ablate(embedded, PROMPT, target, method="mean", reference=REFERENCE, metric=m)
    assert local.top_clean[0] == " Paris"
    embedded.remote = "local"
    try:
        sim = mechscope.ablate(embedded, PROMPT, target, method="mean", reference=REFERENCE, metric=m)
    finally:
        embedded.remote = False
    np.testing.assert_allclose(sim.ablated_logits, local.ablated_logits, atol=1e-5)
    assert sim.ablated_metric == pytest.approx(local.ablated_metric, abs=1e-4)


def test_model_unchanged_incl_exceptions(embedded):
    before = model_fingerprint(embedded)
    t = mechscope.heads(10, [2])
    mechscope.ablate(embedded, PROMPT, t, method="resample", reference=REFERENCE)
    assert model_fingerprint(embedded) == before

    def fail(*_):
        raise RuntimeError("planted failure mid-trace")

    handle = embedded.hf_module("resid", 20).register_forward_hook(fail)
    try:
        with pytest.raises(Exception, match="planted failure"):
            mechscope.ablate(embedded, PROMPT, t)
    finally:
        handle.remove()
    assert model_fingerprint(embedded) == before
    with pytest.raises(ValueError, match="inside the block"):
        with mechscope.ablate(embedded, target=t, method="mean", reference=REFERENCE) as ablated:
            assert ablated.logits(PROMPT).shape == (embedded.vocab_size,)
            raise ValueError("inside the block")
    assert model_fingerprint(embedded) == before


def test_sentiment_steering(embedded):
    before = model_fingerprint(embedded)
    vec = mechscope.steering_vector(embedded, POS, NEG, layer=12, skip_first=True)
    assert 10 < vec.norm < 60 and 80 < vec.resid_norm < 300  # measured: 22.4 and ~140
    prompt = "I think that the weather today is"
    sweep = mechscope.steering_sweep(embedded, prompt, vec, coefficients=[-3, 0, 3], max_new_tokens=10)
    base = sweep.generations[1]
    assert list(base.new_ids) == hf_greedy(embedded, prompt, 10)
    assert sweep.generations[0].new_ids != base.new_ids
    assert sweep.generations[2].new_ids != base.new_ids
    assert model_fingerprint(embedded) == before


def test_generate_remote_local_equals_local(embedded):
    vec = mechscope.steering_vector(embedded, POS[:2], NEG[:2], layer=12)
    local = mechscope.generate(embedded, "Today I feel", steer=vec, coefficient=2, max_new_tokens=4)
    embedded.remote = "local"
    try:
        sim = mechscope.generate(embedded, "Today I feel", steer=vec, coefficient=2, max_new_tokens=4)
    finally:
        embedded.remote = False
    assert sim.new_ids == local.new_ids
