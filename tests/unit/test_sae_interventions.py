"""`mechscope.sae.interventions` (steer / clamp / ablate features, generation, side effects)
against plain torch forward hooks on ``model.hf`` that add the decoded delta at the site."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import GenerationCancelled, InputError
from mechscope.sae import SAE
from mechscope.sae.interventions import (
    ablate,
    clamp,
    edited_splice,
    feature_generate,
    feature_generate_sweep,
    feature_playground,
    side_effects,
    steer,
)
from mechscope.sae.splice import spliced_logits
from tests.helpers import model_fingerprint, no_forward
from tests.reference_hooks import hf_greedy, replaced_logits, site_module

TEXTS = ["the cat sat on the mat today", "one two three four five", "hello world", "a b c d e f g h"]


def _hooked(model, ids, site: str, layer: int, change):
    return replaced_logits(model, ids, site, layer, change)


def _hooked_greedy(model, prompt, site, layer, change, n):
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    new = []
    for _ in range(n):
        tok = int(_hooked(model, ids, site, layer, change)[-1].argmax())
        new.append(tok)
        ids = torch.cat([ids, torch.tensor([[tok]])], 1)
    return new


def _one(model, text):
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
    return ids, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _planted(model, layer=1, kind="sae", d_sae=24, seed=0):
    return SAE.random(model.d_model, d_sae, kind=kind, layer=layer, model=model.name, seed=seed)


def test_no_edit_is_plain_greedy_exactly(tiny):
    sae = _planted(tiny, layer=0)
    before = model_fingerprint(tiny)
    got = feature_generate(tiny, sae, TEXTS[0], [], max_new_tokens=6)
    assert list(got.new_ids) == hf_greedy(tiny, TEXTS[0], 6)
    assert got.new_ids == mechscope.generate(tiny, TEXTS[0], max_new_tokens=6).new_ids
    assert got.coefficient == 0.0 and got.layer == 0
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("kind", ["sae", "transcoder"])
def test_steer_equals_adding_alpha_decoder_rows_with_a_torch_hook(tiny, kind):
    sae = _planted(tiny, layer=1, kind=kind, seed=2)
    site = "resid" if kind == "sae" else "mlp"
    feats, alpha = [3, 11], 7.5
    delta = alpha * sae.W_dec.detach()[feats].sum(0)
    ids, enc = _one(tiny, TEXTS[0])
    before = model_fingerprint(tiny)
    clean = _hooked(tiny, ids, site, 1, None)
    ref = _hooked(tiny, ids, site, 1, lambda _x, y: y + delta)
    got = spliced_logits(tiny, [edited_splice(sae, steer(feats, alpha))], enc)[0].float()
    # the steer changes the logits, and by exactly what adding the decoded delta does
    assert float((ref - clean).abs().max()) > 1e-2
    torch.testing.assert_close(got - clean, ref - clean, atol=1e-4, rtol=1e-4)
    assert model_fingerprint(tiny) == before


def test_steered_generation_equals_hooked_greedy(tiny):
    sae = _planted(tiny, layer=1, seed=1)
    delta = 40.0 * sae.W_dec.detach()[5]
    got = feature_generate(tiny, sae, TEXTS[1], steer(5, 40.0), max_new_tokens=6)
    ref = _hooked_greedy(tiny, TEXTS[1], "resid", 1, lambda _x, y: y + delta, 6)
    assert list(got.new_ids) == ref
    assert list(got.new_ids) != hf_greedy(tiny, TEXTS[1], 6)  # the steer did something
    assert got.coefficient == 40.0
    again = feature_generate(tiny, sae, TEXTS[1], steer(5, 40.0), max_new_tokens=6)
    assert again == got  # deterministic


@pytest.mark.parametrize(("edit", "change"), [
    (clamp([2, 9], 4.0), lambda f, idx: (4.0 - f[..., idx])),
    (clamp([2, 9], 4.0, where="active"), lambda f, idx: torch.where(f[..., idx] > 0, 4.0 - f[..., idx], 0.0)),
    (ablate([2, 9]), lambda f, idx: -f[..., idx]),
])
def test_clamp_and_ablate_equal_their_decoded_delta(tiny, edit, change):
    # relu dictionary whose latents 2 and 9 fire on some tokens: encoder planted on the decoder
    sae = _planted(tiny, layer=1, seed=4)
    idx = [2, 9]
    w = sae.W_dec.detach()

    def hook(x, y):
        f = sae.encode(x.float())
        return y + change(f, idx) @ w[idx]
    ids, enc = _one(tiny, TEXTS[3])
    f = sae.encode(_resid(tiny, ids))
    assert bool((f[:, idx] > 0).any()) and bool((f[:, idx] == 0).any())
    ref = _hooked(tiny, ids, "resid", 1, hook)
    got = spliced_logits(tiny, [edited_splice(sae, edit)], enc)[0].float()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def _resid(model, ids):
    module, _ = site_module(model, "resid", 1)
    got = {}
    h = module.register_forward_hook(lambda _m, _a, out: got.__setitem__("y", (out[0] if isinstance(out, tuple)
                                                                                else out)[0].detach().clone()))
    try:
        with torch.no_grad():
            model.hf(input_ids=ids)
    finally:
        h.remove()
    return got["y"].float()


def test_edits_compose_in_order(tiny_llama):
    sae = _planted(tiny_llama)
    _, enc = _one(tiny_llama, TEXTS[0])
    a = spliced_logits(tiny_llama, [edited_splice(sae, [steer(4, 9.0), ablate(4)])], enc)
    b = spliced_logits(tiny_llama, [edited_splice(sae, ablate(4))], enc)
    c = spliced_logits(tiny_llama, [edited_splice(sae, [ablate(4), steer(4, 9.0)])], enc)
    d = spliced_logits(tiny_llama, [edited_splice(sae, clamp(4, 9.0))], enc)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c, d, atol=1e-5, rtol=1e-5)


def test_model_unchanged_after_an_exception_mid_generation(tiny_llama):
    sae = _planted(tiny_llama)
    before = model_fingerprint(tiny_llama)
    calls = []

    def boom():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("stop here")
        return False
    with pytest.raises(RuntimeError, match="stop here"):
        feature_generate(tiny_llama, sae, "The cat", steer(1, 5.0), max_new_tokens=5, should_stop=boom)
    with pytest.raises(GenerationCancelled, match="after 0 of 5"):
        feature_generate(tiny_llama, sae, "The cat", steer(1, 5.0), max_new_tokens=5, should_stop=lambda: True)
    assert model_fingerprint(tiny_llama) == before
    assert feature_generate(tiny_llama, sae, "The cat", [], max_new_tokens=3).new_ids == tuple(
        hf_greedy(tiny_llama, "The cat", 3))


def test_sweep_and_playground(tiny_llama):
    sae = _planted(tiny_llama)
    sweep = feature_generate_sweep(tiny_llama, sae, "The cat", [1, 2], alphas=[0, 30], max_new_tokens=3)
    assert sweep.generations[0].new_ids == tuple(hf_greedy(tiny_llama, "The cat", 3))
    assert sweep.generations[1].new_ids == feature_generate(tiny_llama, sae, "The cat", steer([1, 2], 30),
                                                            max_new_tokens=3).new_ids
    assert sweep.vector_norm == pytest.approx(float(sae.W_dec.detach()[[1, 2]].sum(0).norm()))
    w = feature_playground(tiny_llama, sae, "The cat", [1, 2], alphas=[30], max_new_tokens=3, title="feat <b>")
    try:
        assert w.coefficients == [0.0, 30.0] and w.live
        w.request("The dog", 12.0)
        assert w.wait(timeout=60)
        assert w.result("The dog", 12.0).new_ids == feature_generate(
            tiny_llama, sae, "The dog", steer([1, 2], 12.0), max_new_tokens=3).new_ids
        html = w.offline_html()
        assert "feat <b>" not in html and "SteeringPlayground" in w.summary()
    finally:
        w.close()


def _hooked_text_sums(model, text, change):
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
    clean = torch.log_softmax(_hooked(model, ids, "resid", 1, None)[:-1], -1)
    edited = torch.log_softmax(_hooked(model, ids, "resid", 1, change)[:-1], -1)
    tgt = ids[0, 1:, None]
    kl = float((clean.exp() * (clean - edited)).sum())
    return [-float(clean.gather(-1, tgt).sum()), -float(edited.gather(-1, tgt).sum()), kl, len(tgt)]


def test_side_effects_equal_hooked_ce_and_kl(tiny):
    sae = _planted(tiny, seed=3)
    delta = 15.0 * sae.W_dec.detach()[6]
    before = model_fingerprint(tiny)
    fx = side_effects(tiny, sae, steer(6, 15.0), TEXTS, batch_size=3, prompts=TEXTS[:2], top=4)
    ref = np.array([_hooked_text_sums(tiny, t, lambda _x, y: y + delta) for t in TEXTS])
    np.testing.assert_allclose(fx.per_text, ref, rtol=1e-4, atol=1e-4)
    n = ref[:, 3].sum()
    assert fx.ce_clean == pytest.approx(ref[:, 0].sum() / n, abs=1e-5)
    assert fx.delta_ce == pytest.approx((ref[:, 1].sum() - ref[:, 0].sum()) / n, abs=1e-5)
    assert fx.kl == pytest.approx(ref[:, 2].sum() / n, abs=1e-5) and fx.kl > 0
    assert fx.delta_ce_ci[0] <= fx.delta_ce <= fx.delta_ce_ci[1] and fx.n_tokens == int(n)
    # the prompts' next-token KL at the last position
    for i, p in enumerate(TEXTS[:2]):
        ids = tiny.tokenizer(p, return_tensors="pt")["input_ids"]
        c = torch.log_softmax(_hooked(tiny, ids, "resid", 1, None)[-1], -1)
        e = torch.log_softmax(_hooked(tiny, ids, "resid", 1, lambda _x, y: y + delta)[-1], -1)
        assert float(fx.prompt_kl[i]) == pytest.approx(float((c.exp() * (c - e)).sum()), abs=1e-4)
    assert len(fx.promoted) == 4 and np.all(np.diff(fx.promoted_logprob) <= 0)
    assert "delta CE" in repr(fx) and fx.to_pandas().shape == (1, 10)
    assert model_fingerprint(tiny) == before


def test_no_edit_has_no_side_effect(tiny_llama):
    fx = side_effects(tiny_llama, _planted(tiny_llama), None, TEXTS)
    assert abs(fx.delta_ce) < 1e-4 and abs(fx.kl) < 1e-4 and fx.edits == ()


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, s: feature_generate(m, s, "a", steer(24, 1.0)), "feature 24 is out of range: this dictionary has d_sae=24"),
    (lambda m, s: feature_generate(m, s, "a", steer([1], float("nan"))), "alpha must be a finite number"),
    (lambda m, s: feature_generate(m, s, "a", steer([1], float("inf"))), "alpha must be a finite number"),
    (lambda m, s: steer([], 1.0), "feature list is empty"),
    (lambda m, s: ablate([2, 2]), "name a latent twice"),
    (lambda m, s: ablate([-1]), ">= 0"),
    (lambda m, s: ablate("3"), "a latent index or a list"),
    (lambda m, s: clamp(1, 2.0, where="some"), "where must be one of"),
    (lambda m, s: feature_generate(m, s, "a", [lambda f: f]), "FeatureEdits"),
    (lambda m, s: feature_generate(m, "sae", "a", []), "SAE dictionary"),
    (lambda m, s: feature_generate(m, s, "a", [], max_new_tokens=0), "max_new_tokens"),
    (lambda m, s: feature_generate(m, s, "", []), "prompt is empty"),
    (lambda m, s: feature_generate(m, SAE.random(5, 8), "a", []), "reads 5-wide"),
    (lambda m, s: feature_generate_sweep(m, s, "a", [1], alphas=[]), "coefficients must be"),
    (lambda m, s: side_effects(m, s, ablate(1), []), "two tokens or more"),
    (lambda m, s: side_effects(m, s, ablate(1), "text"), "list of strings"),
    (lambda m, s: side_effects(m, s, ablate(99), TEXTS), "d_sae=24"),
    (lambda m, s: side_effects(m, s, ablate(1), TEXTS, prompts=[]), "prompts must be a non-empty"),
    (lambda m, s: feature_playground(m, s, ["a"], [1]), "one prompt"),
])
def test_bad_input_before_any_forward_pass(tiny_llama, call, message):
    sae = _planted(tiny_llama)
    with no_forward(tiny_llama), pytest.raises(InputError, match=message):
        call(tiny_llama, sae)


def test_remote_local_equals_local():
    hf = mechscope.models.tiny.tiny_hf_model("gpt2")
    tok = mechscope.models.tiny.tiny_tokenizer()
    sim, plain = mechscope.load(hf, tokenizer=tok, remote="local"), mechscope.load(hf, tokenizer=tok)
    sae = _planted(plain, seed=1)
    a = feature_generate(sim, sae, TEXTS[1], steer(5, 40.0), max_new_tokens=2)
    b = feature_generate(plain, sae, TEXTS[1], steer(5, 40.0), max_new_tokens=2)
    assert a.new_ids == b.new_ids
    fa = side_effects(sim, sae, clamp(2, 3.0), TEXTS[2:3])
    fb = side_effects(plain, sae, clamp(2, 3.0), TEXTS[2:3])
    np.testing.assert_allclose(fa.per_text, fb.per_text, atol=1e-5)
