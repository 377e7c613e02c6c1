"""`mechscope.sae.evaluate` (mechscope.sae.evaluation) and splicing, against plain torch forward hooks run one text at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mechscope.errors import InputError
from mechscope.sae import SAE
from mechscope.sae.evaluation import evaluate
from mechscope.sae.splice import Splice, spliced_logits
from tests.reference_hooks import replaced_logits

TEXTS = ["the cat sat on the mat today", "one two three four five", "hello world", "a b c d e f g h"]


def _identity(model, layer: int, kind: str = "sae") -> SAE:
    """ReLU dictionary [I, -I] that reconstructs its input exactly."""
    d = model.d_model
    eye = torch.eye(d)
    w = {"W_enc": torch.cat([eye, -eye], 1), "W_dec": torch.cat([eye, -eye], 0)}
    return SAE(SAE.random(d, 2 * d, kind=kind, layer=layer, model=model.name).cfg, w)


def _hooked_nll(model, text: str, site: str, layer: int, replace, first: bool = False) -> tuple[float, int]:
    """Summed next-token NLL of one unpadded text with ``replace(x_in, y) -> y'`` at the site
    (None: clean), by plain torch hooks: for "resid" the block output, for "mlp" the MLP; the
    first token is replaced too only if ``first``."""
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]

    def change(x, y):
        new = replace(x, y).clone()
        if not first:
            new[:, 0] = y[:, 0]
        return new
    logits = replaced_logits(model, ids, site, layer, None if replace is None else change)[:-1]
    nll = -torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(nll.sum()), len(nll)


def _reference_ce(model, site, layer, replace, first: bool = False) -> float:
    parts = [_hooked_nll(model, t, site, layer, replace, first) for t in TEXTS]
    return sum(p[0] for p in parts) / sum(p[1] for p in parts)


def test_ce_numbers_equal_torch_hooks(tiny):
    sae = SAE.random(tiny.d_model, 48, architecture="topk", k=6, layer=1, model=tiny.name, seed=3)
    ev = evaluate(sae, tiny, TEXTS, batch_size=3, progress=False)
    recon = lambda _x, y: sae(y)  # noqa: E731
    assert ev.ce_clean == pytest.approx(_reference_ce(tiny, "resid", 1, None), abs=1e-4)
    assert ev.ce_sae == pytest.approx(_reference_ce(tiny, "resid", 1, recon), abs=1e-4)
    assert ev.ce_zero == pytest.approx(_reference_ce(tiny, "resid", 1, lambda _x, y: torch.zeros_like(y)), abs=1e-4)
    expected = (ev.ce_zero - ev.ce_sae) / (ev.ce_zero - ev.ce_clean)
    assert ev.ce_recovered == pytest.approx(expected, rel=1e-6)
    lo, hi = ev.ce_recovered_ci
    assert lo <= ev.ce_recovered <= hi
    assert ev.n_tokens == sum(len(tiny.tokenizer(t)["input_ids"]) for t in TEXTS)
    every = evaluate(sae, tiny, TEXTS, batch_size=3, splice_first=True, progress=False)
    assert every.ce_sae == pytest.approx(_reference_ce(tiny, "resid", 1, recon, first=True), abs=1e-4)
    zero = _reference_ce(tiny, "resid", 1, lambda _x, y: torch.zeros_like(y), first=True)
    assert every.ce_zero == pytest.approx(zero, abs=1e-4) and every.ce_clean == pytest.approx(ev.ce_clean)


def test_transcoder_spliced_ce_equals_hooks(tiny):
    tc = SAE.random(tiny.d_model, 40, kind="skip_transcoder", layer=0, model=tiny.name, seed=1)
    with torch.no_grad():
        tc.W_skip.copy_(torch.randn_like(tc.W_skip) * 0.05)
    ev = evaluate(tc, tiny, TEXTS, progress=False)
    assert ev.ce_sae == pytest.approx(_reference_ce(tiny, "mlp", 0, lambda x, _y: tc(x)), abs=1e-4)


def test_identity_dictionary_recovers_everything(tiny):
    ev = evaluate(_identity(tiny, 0), tiny, TEXTS, progress=False)
    assert ev.fvu < 1e-6 and ev.fvu_with_first < 1e-6
    assert ev.ce_recovered == pytest.approx(1.0, abs=1e-4) and abs(ev.delta_ce) < 1e-4
    assert ev.kl < 1e-5 and ev.l2_ratio == pytest.approx(1.0, abs=1e-4)
    assert ev.cosine == pytest.approx(1.0, abs=1e-4)
    assert ev.l0 == pytest.approx(tiny.d_model, rel=0.01)  # each dimension fires one of its two latents


def test_fvu_and_density_equal_numpy(tiny):
    sae = SAE.random(tiny.d_model, 64, architecture="topk", k=5, layer=1, model=tiny.name, seed=2)
    ev = evaluate(sae, tiny, TEXTS, progress=False)
    ys = [_capture_resid(tiny, t, 1) for t in TEXTS]
    later = np.concatenate([y[1:] for y in ys])
    err = ((later - sae(later)) ** 2).sum()
    assert ev.fvu == pytest.approx(err / ((later - later.mean(0)) ** 2).sum(), rel=1e-4)
    everything = np.concatenate(ys)
    fires = (sae.encode(everything) > 0).mean(0)
    np.testing.assert_allclose(ev.density, fires, atol=1e-6)
    assert ev.l0 == pytest.approx(5.0) and ev.dead_fraction == pytest.approx(float((fires == 0).mean()))
    assert ev.dense_fraction == pytest.approx(float((fires > 0.1).mean()))
    assert int(ev.density_histogram.sum()) == int((fires > 0).sum())


def _capture_resid(model, text, layer):
    from tests.reference_hooks import capture
    return capture(model, text, "resid", layer).numpy()


def test_error_term_keeps_the_pass_and_edits_only_change_edited_latents(tiny):
    sae = SAE.random(tiny.d_model, 32, layer=1, model=tiny.name)
    enc = tiny.encode(TEXTS[:2])
    with tiny.trace(enc):
        from mechscope.models.trace import save
        clean = save(tiny.logits().all())
    same = spliced_logits(tiny, [Splice(sae, error_term=True)], enc)
    assert torch.allclose(same, clean, atol=1e-4)
    boosted = spliced_logits(tiny, [Splice(sae, error_term=True, edit=lambda f: f + 0 * f)], enc)
    assert torch.allclose(boosted, clean, atol=1e-4)
    moved = spliced_logits(tiny, [Splice(sae, error_term=True, edit=lambda f: f * 0)], enc)
    assert not torch.allclose(moved, clean, atol=1e-3)


def test_several_dictionaries_share_one_clean_pass(tiny):
    a = SAE.random(tiny.d_model, 32, layer=0, model=tiny.name, seed=0)
    b = SAE.random(tiny.d_model, 32, architecture="topk", k=4, layer=1, model=tiny.name, seed=1)
    both = evaluate([a, b], tiny, TEXTS, progress=False)
    alone = evaluate(b, tiny, TEXTS, progress=False)
    assert both[1].ce_sae == pytest.approx(alone.ce_sae, abs=1e-5) and both[1].fvu == pytest.approx(alone.fvu)
    assert list(both[0].to_pandas().columns)[:3] == ["n_texts", "n_tokens", "l0"]
    assert "CE recovered" in str(both[1])


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: evaluate(SAE.random(5, 8, model="x"), m, TEXTS), "reads 5-wide vectors"),
    (lambda m: evaluate(SAE.random(m.d_model, 8, layer=9), m, TEXTS), "layer"),
    (lambda m: evaluate([], m, TEXTS), "needs an SAE"),
    (lambda m: evaluate(SAE.random(m.d_model, 8), m, "one text"), "list of strings"),
    (lambda m: evaluate(SAE.random(m.d_model, 8), m, ["a"]), "two tokens or more"),
    (lambda m: evaluate(SAE.random(m.d_model, 8), m, TEXTS, context=1), "at least 2 tokens"),
    (lambda m: spliced_logits(m, [Splice(SAE.random(m.d_model, 8)), Splice(SAE.random(m.d_model, 8))],
                              m.encode(TEXTS)), "two dictionaries"),
])
def test_bad_input(call, message):
    import mechscope
    with pytest.raises(InputError, match=message):
        call(mechscope.tiny_model("llama"))


def test_a_failing_edit_leaves_the_model_as_it_was():
    import mechscope
    model = mechscope.tiny_model("llama")
    ids = model.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model.hf(input_ids=ids).logits
    sae = SAE.random(model.d_model, 8, layer=1)
    with pytest.raises(Exception, match="edit"):
        spliced_logits(model, [Splice(sae, error_term=True, edit=lambda f: f[..., :2])], model.encode(TEXTS[:1]))
    with torch.no_grad():
        assert torch.equal(model.hf(input_ids=ids).logits, before)
    assert not math.isnan(float(before.sum()))
