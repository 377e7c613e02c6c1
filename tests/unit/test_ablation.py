"""`mechscope.ablate`: equals a plain torch-hooks reference, validates targets, leaves the model as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import InputError
from mechscope.metrics import kl_to_clean, logit_diff
from tests.helpers import model_fingerprint
from tests.reference_ablation import reference_ablation

PROMPT = "The cat sat on the"
REFERENCE = ["The dog ran far away today", "A bird sang", "Le chat est sur la table. Bonjour"]

TARGETS = [
    ("neurons", 1, (0, -1), ""),
    ("heads", 0, (1, 3), ""),
    ("heads", -1, (-1,), ""),
    ("layer", 0, (), "mlp"),
    ("layer", 1, (), "attn"),
]


def _target(kind, layer, indices, site):
    if kind == "layer":
        return mechscope.layer(layer, site=site)
    return getattr(mechscope, kind)(layer, list(indices))


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
@pytest.mark.parametrize("spec", TARGETS, ids=lambda s: f"{s[0]}{s[1]}{s[3]}")
def test_matches_torch_hooks_reference(tiny, spec, method):
    ref = None if method == "zero" else REFERENCE
    r = mechscope.ablate(tiny, PROMPT, _target(*spec), method=method, reference=ref, seed=3)
    clean, ablated = reference_ablation(tiny, PROMPT, *spec, method=method, reference=ref, seed=3)
    np.testing.assert_allclose(r.clean_logits, clean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(r.ablated_logits, ablated, atol=1e-4, rtol=0)
    assert np.abs(r.ablated_logits - r.clean_logits).max() > 1e-4  # the ablation did something


def test_remote_local_equals_local(tiny):
    t = mechscope.heads(1, [0])
    local = mechscope.ablate(tiny, PROMPT, t, method="mean", reference=REFERENCE)
    tiny.remote = "local"
    try:
        sim = mechscope.ablate(tiny, PROMPT, t, method="mean", reference=REFERENCE)
    finally:
        tiny.remote = False
    np.testing.assert_allclose(sim.ablated_logits, local.ablated_logits, atol=1e-6)
    np.testing.assert_allclose(sim.clean_logits, local.clean_logits, atol=1e-6)


def test_result_fields_and_metric(tiny_llama):
    m = logit_diff(5, 7)
    r = mechscope.ablate(tiny_llama, PROMPT, mechscope.layer(1, "mlp"), metric=m, top_k=5)
    assert r.metric_name == "logit_diff(5, 7)"
    assert r.clean_metric == pytest.approx(float(r.clean_logits[5] - r.clean_logits[7]), abs=1e-5)
    assert r.ablated_metric == pytest.approx(float(r.ablated_logits[5] - r.ablated_logits[7]), abs=1e-5)
    assert r.metric_change == pytest.approx(r.ablated_metric - r.clean_metric)
    assert len(r.top_clean) == len(r.top_ablated) == 5
    assert r.top_clean_ids[0] == int(np.argmax(r.clean_logits))
    df = r.to_pandas()
    assert {"token", "clean_logit", "ablated_logit", "logit_change"} <= set(df.columns)
    assert 5 <= len(df) <= 10
    w = r.show()
    assert w.shape == (3, len(df))
    kl = mechscope.ablate(tiny_llama, PROMPT, mechscope.layer(1, "mlp"), metric=kl_to_clean())
    assert kl.clean_metric == pytest.approx(0.0, abs=1e-6) and kl.ablated_metric > 0


def test_resample_is_seeded_and_leaves_global_rng(tiny_llama):
    torch.manual_seed(123)
    before = torch.random.get_rng_state().clone()
    refs = [f"The dog number {i} ran far away today" for i in range(6)]
    a = mechscope.ablate(tiny_llama, PROMPT, mechscope.heads(0, [0]), method="resample", reference=refs, seed=1)
    b = mechscope.ablate(tiny_llama, PROMPT, mechscope.heads(0, [0]), method="resample", reference=refs, seed=1)
    assert torch.equal(before, torch.random.get_rng_state())
    assert a.resampled_from == b.resampled_from
    np.testing.assert_array_equal(a.ablated_logits, b.ablated_logits)
    drawn = {mechscope.ablate(tiny_llama, PROMPT, mechscope.heads(0, [0]), method="resample",
                              reference=refs, seed=s).resampled_from for s in range(8)}
    assert len(drawn) > 1


@pytest.mark.parametrize("bad, match", [
    (lambda: mechscope.neurons(0, [128]), "out of range"),
    (lambda: mechscope.neurons(0, [-129]), "out of range"),
    (lambda: mechscope.neurons(5, [0]), "out of range"),
    (lambda: mechscope.heads(0, [4]), "out of range"),
    (lambda: mechscope.heads(0, [1, -3]), "same head twice"),
    (lambda: mechscope.neurons(0, []), "empty"),
    (lambda: mechscope.neurons(0, ["a"]), "must be an int"),
    (lambda: mechscope.neurons(0.5, [1]), "must be an int"),
    (lambda: mechscope.layer(0, site="resid"), "site must be"),
])
def test_bad_targets_raise_before_any_forward(tiny_llama, monkeypatch, bad, match):
    def boom(*a, **k):
        raise AssertionError("a forward pass ran")
    monkeypatch.setattr(tiny_llama.nn, "trace", boom)
    with pytest.raises(InputError, match=match):
        mechscope.ablate(tiny_llama, PROMPT, bad())


def test_bad_arguments(tiny_llama, monkeypatch):
    monkeypatch.setattr(tiny_llama.nn, "trace", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    t = mechscope.neurons(0, [1])
    with pytest.raises(InputError, match="method must be"):
        mechscope.ablate(tiny_llama, PROMPT, t, method="gaussian")
    with pytest.raises(InputError, match="needs reference"):
        mechscope.ablate(tiny_llama, PROMPT, t, method="mean")
    with pytest.raises(InputError, match="non-empty list"):
        mechscope.ablate(tiny_llama, PROMPT, t, method="mean", reference="one string")
    with pytest.raises(InputError, match="only used by"):
        mechscope.ablate(tiny_llama, PROMPT, t, reference=["x"])
    with pytest.raises(InputError, match="target must be"):
        mechscope.ablate(tiny_llama, PROMPT, (0, [1]))
    with pytest.raises(InputError, match="empty"):
        mechscope.ablate(tiny_llama, "", t)


def test_resample_needs_a_long_enough_reference(tiny_llama):
    with pytest.raises(InputError, match="at least as long"):
        mechscope.ablate(tiny_llama, PROMPT, mechscope.neurons(0, [1]), method="resample", reference=["a"])


def test_model_unchanged_after_every_call(tiny):
    before = model_fingerprint(tiny)
    for method in ("zero", "mean", "resample"):
        ref = None if method == "zero" else REFERENCE
        mechscope.ablate(tiny, PROMPT, mechscope.neurons(0, [2]), method=method, reference=ref)
        assert model_fingerprint(tiny) == before


def test_exception_mid_trace_leaves_model_unchanged(tiny_llama):
    m = tiny_llama
    first = mechscope.ablate(m, PROMPT, mechscope.heads(1, [2]))
    before = model_fingerprint(m)

    def fail(*_):
        raise RuntimeError("planted failure after the ablation edit")

    handle = m.hf_module_at(m.adapter.final_norm_path).register_forward_hook(fail)
    try:
        with pytest.raises(Exception, match="planted failure"):
            mechscope.ablate(m, PROMPT, mechscope.heads(1, [2]))
    finally:
        handle.remove()
    assert model_fingerprint(m) == before
    again = mechscope.ablate(m, PROMPT, mechscope.heads(1, [2]))
    np.testing.assert_array_equal(again.ablated_logits, first.ablated_logits)
    np.testing.assert_array_equal(again.clean_logits, first.clean_logits)


def test_context_manager(tiny):
    before = model_fingerprint(tiny)
    t = mechscope.neurons(1, [3, 4, 5])
    one = mechscope.ablate(tiny, PROMPT, t, method="mean", reference=REFERENCE)
    with mechscope.ablate(tiny, target=t, method="mean", reference=REFERENCE) as ablated:
        np.testing.assert_allclose(ablated.logits(PROMPT), one.ablated_logits, atol=1e-5)
        other = ablated.logits("Bonjour le monde")
        assert other.shape == (tiny.vocab_size,)
        r = ablated.result(PROMPT)
        np.testing.assert_allclose(r.ablated_logits, one.ablated_logits, atol=1e-6)
        v = ablated.metric_value(PROMPT, logit_diff(5, 7))
        assert v == pytest.approx(float(one.ablated_logits[5] - one.ablated_logits[7]), abs=1e-4)
        assert model_fingerprint(tiny) == before
    assert model_fingerprint(tiny) == before
    with pytest.raises(InputError, match="ended"):
        ablated.logits(PROMPT)
    plain = mechscope.ablate(tiny, PROMPT, t)  # no leftover edit: zero-ablation is unaffected
    np.testing.assert_allclose(plain.clean_logits, one.clean_logits, atol=1e-6)


def test_context_manager_restores_on_exception(tiny_llama):
    before = model_fingerprint(tiny_llama)
    with pytest.raises(KeyError):
        with mechscope.ablate(tiny_llama, target=mechscope.layer(0, "attn")) as ablated:
            ablated.logits(PROMPT)
            raise KeyError("user code failed")
    assert model_fingerprint(tiny_llama) == before
