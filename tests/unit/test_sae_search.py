"""`mechscope.sae.search` against brute force: site values from plain torch hooks, latents,
statistics and logit effects in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mechscope.errors import InputError
from mechscope.sae import SAE
from mechscope.sae.search import promoting_features, separating_features, top_features
from tests.helpers import model_fingerprint, no_forward
from tests.reference_hooks import capture

A = ["the cat sat on the mat", "a cat and a cat", "cats like the cat", "my cat is here now"]
B = ["one two three four", "five six seven", "numbers go up and up", "eight nine ten eleven twelve"]


def _np_latents(sae: SAE, x: np.ndarray) -> np.ndarray:
    w = sae.weights()
    pre = x @ w["W_enc"] + w["b_enc"]
    relu = np.maximum(pre, 0)
    if sae.cfg.architecture == "topk":
        keep = np.argsort(-relu, axis=-1, kind="stable")[..., : sae.cfg.k]
        out = np.zeros_like(relu)
        np.put_along_axis(out, keep, np.take_along_axis(relu, keep, -1), -1)
        return out
    return relu


def _site(model, text, layer=1):
    return capture(model, text, "resid", layer).float().numpy()


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_top_features_equal_numpy(tiny, arch):
    sae = SAE.random(tiny.d_model, 40, architecture=arch, k=6 if arch == "topk" else None, layer=1,
                     model=tiny.name, seed=5)
    before = model_fingerprint(tiny)
    got = top_features(sae, tiny, A[0], k=5)
    f = _np_latents(sae, _site(tiny, A[0]))
    counted = f[1:]
    ref_max, ref_mean = counted.max(0), counted.mean(0)
    np.testing.assert_allclose(got.max_value, np.sort(ref_max)[::-1][:5], atol=1e-5)
    np.testing.assert_allclose(got.mean_value, np.sort(ref_mean)[::-1][:5], atol=1e-5)
    np.testing.assert_allclose(ref_max[got.by_max], got.max_value, atol=1e-5)
    np.testing.assert_allclose(ref_mean[got.by_mean], got.mean_value, atol=1e-5)
    np.testing.assert_allclose(got.activations, f[:, got.by_max], atol=1e-5)
    for j, feat in enumerate(got.by_max):
        assert f[got.max_position[j], feat] == pytest.approx(got.max_value[j], abs=1e-5)
    every = top_features(sae, tiny, A[0], k=5, skip_first=False)
    np.testing.assert_allclose(every.max_value, np.sort(f.max(0))[::-1][:5], atol=1e-5)
    assert got.to_pandas().shape == (5, 5) and "TopFeatures" in repr(got)
    assert model_fingerprint(tiny) == before


def _welch(a, b):
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(a.mean(0) - b.mean(0)) < 1e-12, 0.0, (a.mean(0) - b.mean(0)) / se)


def _pairwise_auroc(a, b):
    gt = (a[:, None, :] > b[None, :, :]).mean((0, 1))
    eq = (a[:, None, :] == b[None, :, :]).mean((0, 1))
    return gt + eq / 2


BASES = ["one two {} four five", "we saw {} here today", "a big {} ran off", "so many {} were seen",
         "look at {} go now", "my old {} is fine"]
CATS, THES = [b.format("cat") for b in BASES], [b.format("the") for b in BASES]


def _planted(model, layer=1, d_sae=30):
    """A relu dictionary whose latent 0 is a " cat" detector: it reads mean(" cat" residuals) -
    mean(other residuals) with a bias above every other counted token, so it fires on CATS only."""
    cat = model.to_single_token(" cat")
    on, off = [], []
    for t in CATS + THES:
        ids, x = model.to_tokens(t)[0, 1:].numpy(), _site(model, t, layer)[1:]
        on.append(x[ids == cat])
        off.append(x[ids != cat])
    x_on, x_off = np.concatenate(on), np.concatenate(off)
    d = x_on.mean(0) - x_off.mean(0)
    d /= np.linalg.norm(d)
    sae = SAE.random(model.d_model, d_sae, layer=layer, model=model.name, seed=7)
    w = sae.weights()
    w["W_enc"][:, 0] = d
    w["b_enc"][0] = -float((x_off @ d).max()) - 1e-3
    assert float((x_on @ d).min()) > float((x_off @ d).max())  # the planted latent separates the tokens
    return SAE(sae.cfg, w)


def test_separating_features_equal_numpy_and_find_the_planted_latent(tiny):
    sae = _planted(tiny)
    before = model_fingerprint(tiny)
    sep = separating_features(sae, tiny, CATS, THES, k=4, batch_size=4, n_permutations=200)
    per = [np.stack([_np_latents(sae, _site(tiny, t))[1:].mean(0) for t in s]) for s in (CATS, THES)]
    rates = [np.stack([(_np_latents(sae, _site(tiny, t))[1:] > 0).mean(0) for t in s]) for s in (CATS, THES)]
    np.testing.assert_allclose(sep.mean_a, per[0].mean(0), atol=1e-5)
    np.testing.assert_allclose(sep.mean_b, per[1].mean(0), atol=1e-5)
    np.testing.assert_allclose(sep.rate_a, rates[0].mean(0), atol=1e-6)
    ref_t = _welch(*per)
    finite = np.isfinite(ref_t) & (np.abs(ref_t) < 1e4)
    np.testing.assert_allclose(sep.t[finite], ref_t[finite], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(sep.auroc, _pairwise_auroc(*per), atol=1e-6)
    assert sep.top[0] == 0 and sep.t[0] > 0 and sep.auroc[0] == 1.0
    assert sep.p_fwer[0] == sep.p_fwer.min() == 1 / 201  # no relabelling of the texts beats it
    assert np.all(sep.p_fwer >= sep.p_raw) and np.all(sep.p_raw >= 1 / 201)
    assert sep.significant(0.05)[0] == 0 and sep.rate_b[0] == 0 and "SeparatingFeatures" in repr(sep)
    assert model_fingerprint(tiny) == before


def test_permutation_p_values_equal_a_loop(tiny_llama):
    sae = SAE.random(tiny_llama.d_model, 12, layer=1, model=tiny_llama.name, seed=2)
    sep = separating_features(sae, tiny_llama, A, B[:3], n_permutations=30, seed=4)
    x = np.concatenate([np.stack([_np_latents(sae, _site(tiny_llama, t))[1:].mean(0) for t in s])
                        for s in (A, B[:3])])
    obs = np.abs(_welch(x[:4], x[4:]))
    rng = np.random.default_rng(4)
    raw, fw = np.zeros(12), np.zeros(12)
    for _ in range(30):
        sel = np.zeros(7, bool)
        sel[rng.permutation(7)[:4]] = True
        tp = np.abs(_welch(x[sel], x[~sel]))
        raw += tp >= obs - 1e-6
        fw += tp.max() >= obs - 1e-6
    np.testing.assert_allclose(sep.p_raw, (raw + 1) / 31)
    np.testing.assert_allclose(sep.p_fwer, (fw + 1) / 31)
    again = separating_features(sae, tiny_llama, A, B[:3], n_permutations=30, seed=4)
    np.testing.assert_array_equal(again.p_fwer, sep.p_fwer)


def test_promoting_features_equal_numpy(tiny):
    sae = SAE.random(tiny.d_model, 50, layer=1, model=tiny.name, seed=1)
    tid = 17
    w_u = tiny.hf_module_at(tiny.adapter.unembed_path).weight.detach().float().numpy()
    norm = tiny.hf_module_at(tiny.adapter.final_norm_path)
    gamma = norm.weight.detach().float().numpy()
    w = sae.weights()
    w["W_dec"][9] = w_u[tid] / np.linalg.norm(w_u[tid])  # planted: latent 9 writes the token's direction
    sae = SAE(sae.cfg, w)
    got = promoting_features(sae, tiny, tid, k=6, n_top=3)
    ref = w["W_dec"] @ (w_u * gamma)[tid]
    np.testing.assert_allclose(got.effects, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.logit_effect, np.sort(ref)[::-1][:6], rtol=1e-5, atol=1e-5)
    full = w["W_dec"][got.features] @ (w_u * gamma).T
    assert got.token_rank.tolist() == (full > full[:, [tid]]).sum(1).tolist()
    np.testing.assert_allclose(got.centred, full[:, tid] - full.mean(1), rtol=1e-4, atol=1e-5)
    assert got.top_tokens[0][0] == tiny.decode_tokens([int(np.argmax(full[0]))])[0]
    assert got.folded_norm
    raw = promoting_features(sae, tiny, tiny.decode_tokens([tid])[0], k=3, fold_norm=False)
    np.testing.assert_allclose(raw.effects, w["W_dec"] @ w_u[tid], rtol=1e-5, atol=1e-5)
    assert int(got.features[0]) == 9 == int(raw.features[0])


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, s: separating_features(s, m, [], B), "texts_a is empty"),
    (lambda m, s: separating_features(s, m, A, []), "texts_b is empty"),
    (lambda m, s: separating_features(s, m, A, ["one two"]), "at least 2 per set"),
    (lambda m, s: separating_features(s, m, A, "one two"), "list of strings"),
    (lambda m, s: separating_features(s, m, A, [B[0], 3]), r"texts_b\[1\] must be a non-empty string"),
    (lambda m, s: separating_features(s, m, A, B, n_permutations=0), "n_permutations"),
    (lambda m, s: top_features(s, m, "a b c", k=0), r"k must be at least 1 \(more than d_sae=30"),
    (lambda m, s: top_features(s, m, "a b c", k=1.5), "k must be an int"),
    (lambda m, s: top_features(s, m, ""), "prompt is empty"),
    (lambda m, s: top_features("sae", m, "a b"), "SAE dictionary"),
    (lambda m, s: top_features(s, "model", "a b"), "needs a mechscope Model"),
    (lambda m, s: top_features(SAE.random(5, 8), m, "a b"), "reads 5-wide"),
    (lambda m, s: promoting_features(s, m, "the cat sat on the mat"), "not one"),
    (lambda m, s: promoting_features(s, m, 10 ** 9), "out of range"),
    (lambda m, s: promoting_features(SAE.random(m.d_mlp, 8, site="neurons", layer=0), m, 3),
     "d_model=64-wide"),
])
def test_bad_input_before_any_forward_pass(tiny_llama, call, message):
    sae = SAE.random(tiny_llama.d_model, 30, layer=1, model=tiny_llama.name)
    with no_forward(tiny_llama), pytest.raises(InputError, match=message):
        call(tiny_llama, sae)


def test_one_token_text_with_skip_first(tiny_llama):
    sae = SAE.random(tiny_llama.d_model, 8, layer=1)
    one = next(t for t in ["a", "x", "the"] if len(tiny_llama.str_tokens(t)) == 1)
    with pytest.raises(InputError, match="skip_first=False"):
        top_features(sae, tiny_llama, one)
    assert top_features(sae, tiny_llama, one, k=2, skip_first=False).activations.shape == (1, 2)
    assert len(top_features(sae, tiny_llama, "a b c d", k=50).by_max) == 8  # k clipped to d_sae
