"""`mechscope.sae.dashboard`: every number against a brute-force numpy computation over all
tokens (activations read with a plain forward hook, `tests/reference_hooks.capture`), on a tiny
Llama with planted token-detector features; save/load, resume after an interrupt, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import InputError
from mechscope.sae import SAE
from mechscope.sae import dashboard as dash
from mechscope.sae.dashboard import FeatureDashboards, dashboards, features_on
from mechscope.sae.dashboard_stream import HIST_EDGES, priority_keys
from tests.helpers import model_fingerprint
from tests.reference_hooks import capture

TEXTS = ["the cat sat on the mat", "one two three four five", "a dog ran far away from home",
         "the the the cat", "x y z", "hello world again and again", "cats and dogs", "sat on a mat",
         "far far away", "four five six seven", "z", "home sweet home"]
LAYER = 1
#: Feature k is planted on token 2 of text PLANTED[k] (text 3 repeats that token: left out).
PLANTED = [0, 1, 2, 4, 5, 6, 7, 8]


@pytest.fixture(scope="module")
def model():
    return mechscope.tiny_model("llama")


@pytest.fixture(scope="module")
def acts_ref(model):
    """Per text: the resid at LAYER (plain hook) -> (tokens, d_model), and its token ids."""
    xs = [capture(model, t, "resid", LAYER).float() for t in TEXTS]
    ids = [model.tokenizer(t)["input_ids"] for t in TEXTS]
    return xs, ids


@pytest.fixture(scope="module")
def sae(model, acts_ref):
    """24 features: 8 planted detectors (encoder column = one token's own residual, unit norm,
    with a bias so they fire on few tokens), 16 random."""
    base = SAE.random(model.d_model, 24, layer=LAYER, model=model.name, seed=3)
    w = base.weights()
    xs, _ = acts_ref
    for f, i in enumerate(PLANTED):
        x = xs[i][2].numpy()
        w["W_enc"][:, f] = x / np.linalg.norm(x)
        w["b_enc"][f] = -0.5 * float(np.linalg.norm(x))
    w["b_enc"][8:] = -0.05
    return SAE(base.cfg, w)


def brute(sae, acts_ref):
    xs, ids = acts_ref
    f = np.concatenate([sae.encode(x.numpy()) for x in xs])
    text_of = np.concatenate([np.full(len(x), i) for i, x in enumerate(xs)])
    pos = np.concatenate([np.arange(len(x)) for x in xs])
    return f.astype(np.float32), text_of, pos, np.concatenate([np.asarray(i) for i in ids])


def test_matches_brute_force(model, sae, acts_ref):
    d = dashboards(sae, model, TEXTS, n_top=5, window=2, batch_size=3, progress=False)
    f, text_of, pos, flat = brute(sae, acts_ref)
    n = len(f)
    assert d.n_tokens == n
    np.testing.assert_allclose(d.density, (f > 0).mean(0), atol=1e-7)
    np.testing.assert_allclose(d.max_act, f.max(0), rtol=1e-5, atol=1e-6)
    for j in range(sae.cfg.d_sae):
        col = f[:, j]
        pos_vals = col[col > 0]
        b = np.clip(np.floor((np.log10(pos_vals) - HIST_EDGES[0]) / (HIST_EDGES[1] - HIST_EDGES[0])), 0, 49)
        assert d.histogram[j].tolist() == np.bincount(b.astype(int), minlength=50).tolist()
        order = np.lexsort((np.arange(n), -col))[:5]
        np.testing.assert_allclose(d.top_value[j], np.maximum(col[order], 0), rtol=1e-5, atol=1e-6)
        gap = np.abs(np.diff(col[order])) > 1e-5  # where no near-tie makes the order ambiguous
        strict = np.r_[True, gap] & np.r_[gap, True] & (col[order] > 0)
        assert (d.top_text[j][col[order] <= 0] == -1).all()
        assert d.top_text[j][strict].tolist() == text_of[order][strict].tolist()
        assert d.top_pos[j][strict].tolist() == pos[order][strict].tolist()
        for k in np.nonzero(strict)[0]:
            g = order[k]
            for o in range(-2, 3):
                h = g + o
                inside = 0 <= h < n and text_of[h] == text_of[g]
                got_tok, got_act = d.top_tokens[j, k, o + 2], d.top_acts[j, k, o + 2]
                if inside:
                    assert d.vocab[got_tok] == model.decode_tokens([int(flat[h])])[0]
                    assert got_act == pytest.approx(col[h], rel=1e-5, abs=1e-6)
                else:
                    assert got_tok == -1 and np.isnan(got_act)
    # planted detectors: the token they were planted on is their top example
    for j, i in enumerate(PLANTED):
        assert (d.top_text[j, 0], d.top_pos[j, 0]) == (i, 2)


def test_quantile_bands_exact_in_one_batch(model, sae, acts_ref):
    """With every text in one batch the max is known when sampling: each band holds exactly the
    per_quantile tokens of smallest priority key among that band's tokens."""
    d = dashboards(sae, model, TEXTS, n_quantiles=4, per_quantile=3, window=1, batch_size=len(TEXTS), progress=False)
    f, text_of, pos, _ = brute(sae, acts_ref)
    for j in range(sae.cfg.d_sae):
        col = f[:, j]
        m = col.max()
        tok = np.nonzero(col > 0)[0]
        band = np.clip(np.ceil(col[tok] / m * 4).astype(int) - 1, 0, 3)
        key = priority_keys(tok, np.full(len(tok), j))
        for b in range(4):
            pick = tok[band == b][np.argsort(key[band == b])][:3]
            got = [(int(t), int(p)) for t, p in zip(d.q_text[j, b], d.q_pos[j, b], strict=True) if t >= 0]
            assert got == [(int(text_of[g]), int(pos[g])) for g in pick]
            np.testing.assert_allclose(d.q_value[j, b, :len(pick)], col[pick], rtol=1e-5, atol=1e-6)


def test_quantile_samples_lie_in_their_band(model, sae, acts_ref):
    d = dashboards(sae, model, TEXTS, batch_size=2, progress=False)
    f, text_of, pos, _ = brute(sae, acts_ref)
    index = {(int(t), int(p)): g for g, (t, p) in enumerate(zip(text_of, pos, strict=True))}
    for j in range(sae.cfg.d_sae):
        for b in range(10):
            for t, p, v in zip(d.q_text[j, b], d.q_pos[j, b], d.q_value[j, b], strict=True):
                if t < 0:
                    continue
                assert v == pytest.approx(f[index[(int(t), int(p))], j], rel=1e-5)
                assert b / 10 * d.max_act[j] - 1e-6 <= v <= (b + 1) / 10 * d.max_act[j] + 1e-6


def test_logit_effects_and_neighbours(model, sae):
    d = dashboards(sae, model, TEXTS[:3], progress=False)
    w_dec = sae.weights()["W_dec"].astype(np.float64)
    w_u = model.hf.lm_head.weight.detach().double().numpy() * model.hf.model.norm.weight.detach().double().numpy()
    eff = w_dec @ w_u.T
    for j in range(sae.cfg.d_sae):
        top = np.argsort(-eff[j])[:10]
        bot = np.argsort(eff[j])[:10]
        assert [d.vocab[i] for i in d.logit_top_ids[j]] == model.decode_tokens(top)
        np.testing.assert_allclose(d.logit_top[j], eff[j, top], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d.logit_bottom[j], eff[j, bot], rtol=1e-4, atol=1e-6)
    u = w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True)
    cos = u @ u.T
    np.fill_diagonal(cos, -np.inf)
    for j in range(sae.cfg.d_sae):
        assert d.neighbours[j].tolist() == np.argsort(-cos[j])[:10].tolist()
        np.testing.assert_allclose(d.neighbour_cos[j], np.sort(cos[j])[::-1][:10], rtol=1e-5, atol=1e-6)


def test_subset_save_load_and_card(model, sae, tmp_path):
    full = dashboards(sae, model, TEXTS, progress=False)
    part = dashboards(sae, model, TEXTS, features=[3, 10], progress=False)
    for name in ("density", "max_act", "top_value", "top_text", "top_pos", "logit_top", "neighbours"):
        np.testing.assert_allclose(getattr(part, name), getattr(full, name)[[3, 10]], rtol=1e-5, atol=1e-7)
    back = FeatureDashboards.load(full.save(tmp_path / "d"))
    for name in ("density", "histogram", "top_tokens", "top_acts", "q_tokens", "q_acts", "logit_bottom_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(full, name))
    assert back.vocab == full.vocab and back.n_tokens == full.n_tokens
    assert not list((tmp_path / "d").glob("*.pkl"))
    card = back.feature(3)
    assert card.index == 3 and card.top_values[0] == full.top_value[3, 0]
    assert len(full.to_pandas()) == sae.cfg.d_sae
    with pytest.raises(InputError, match=r"feature 30 is not in these dashboards \(24 features\): pick one of 0..23"):
        full.feature(30)


def test_resume_after_interrupt_is_exact(model, sae, tmp_path, monkeypatch):
    whole = dashboards(sae, model, TEXTS, batch_size=2, progress=False)

    def stop(done):
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(dash, "AFTER_BATCH", [stop])
    with pytest.raises(KeyboardInterrupt):
        dashboards(sae, model, TEXTS, batch_size=2, out_dir=tmp_path, progress=False)
    assert (tmp_path / "state.json").is_file() and not (tmp_path / "dashboards.json").exists()
    seen = []
    monkeypatch.setattr(dash, "AFTER_BATCH", [seen.append])
    resumed = dashboards(sae, model, TEXTS, batch_size=2, out_dir=tmp_path, progress=False)
    assert seen == [4, 5, 6]  # only the batches not yet done
    for name in ("density", "histogram", "top_value", "top_text", "top_acts", "q_value", "q_text", "q_acts"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    assert not (tmp_path / "state.json").exists()
    seen.clear()
    again = dashboards(sae, model, TEXTS, batch_size=2, out_dir=tmp_path, progress=False)
    assert seen == [] and np.array_equal(again.top_value, whole.top_value)  # cached


def test_model_untouched(model, sae):
    before = model_fingerprint(model)
    dashboards(sae, model, TEXTS[:4], batch_size=2, progress=False)
    features_on(sae, model, TEXTS[0])
    assert model_fingerprint(model) == before


def test_bad_input(model, sae):
    with pytest.raises(InputError, match=r"feature 24 is out of range: this dictionary has features 0..23"):
        dashboards(sae, model, TEXTS, features=[1, 24], progress=False)
    other = SAE.random(32, 8, layer=0, model="other")
    with pytest.raises(InputError, match="reads 32-wide vectors .* load the dictionary made for this model"):
        dashboards(other, model, TEXTS, progress=False)
    with pytest.raises(InputError, match="no text has a token"):
        dashboards(sae, model, ["", ""], progress=False)
    with pytest.raises(InputError, match="texts must be a list of strings"):
        dashboards(sae, model, "the cat", progress=False)
    with pytest.raises(InputError, match="n_top must be at least 1"):
        dashboards(sae, model, TEXTS, n_top=0, progress=False)


def test_features_on_prompt(model, sae, acts_ref):
    p = features_on(sae, model, TEXTS[0], top=3)
    x = acts_ref[0][0]
    f = sae.encode(x.numpy())
    assert p.tokens == model.str_tokens(TEXTS[0])
    for t in range(len(p.tokens)):
        order = np.argsort(-f[t], kind="stable")[:3]
        ok = f[t][order] > 0
        assert p.features[t][ok].tolist() == order[ok].tolist()
        np.testing.assert_allclose(p.values[t][ok], f[t][order][ok], rtol=1e-5, atol=1e-6)
    assert torch.is_tensor(sae.W_dec)


def synthetic(n: int, vocab: int = 5000) -> FeatureDashboards:
    """Dashboards of ``n`` features shaped like the defaults (20 top, 10 x 5 bands, window 5)."""
    g = np.random.default_rng(0)
    ints = lambda *s: g.integers(-1, vocab, size=s).astype(np.int32)  # noqa: E731
    flt = lambda *s: g.random(s).astype(np.float32)  # noqa: E731
    return FeatureDashboards(
        features=np.arange(n, dtype=np.int32), n_tokens=100_000, density=flt(n), max_act=flt(n),
        histogram=g.integers(0, 100, size=(n, 50)), top_value=flt(n, 20), top_text=ints(n, 20), top_pos=ints(n, 20),
        top_tokens=ints(n, 20, 11), top_acts=flt(n, 20, 11), q_value=flt(n, 10, 5), q_text=ints(n, 10, 5),
        q_pos=ints(n, 10, 5), q_tokens=ints(n, 10, 5, 11), q_acts=flt(n, 10, 5, 11),
        logit_top_ids=g.integers(0, vocab, (n, 10)), logit_top=flt(n, 10), logit_bottom_ids=g.integers(0, vocab, (n, 10)),
        logit_bottom=flt(n, 10), neighbours=g.integers(0, n, (n, 10)).astype(np.int32), neighbour_cos=flt(n, 10),
        vocab=[f"t{i}" for i in range(vocab)])


def test_widget_snapshot_size_and_cap():
    from mechscope.widgets._base import FALLBACK_MAX_BYTES
    from mechscope.widgets.feature_dashboard import MAX_FEATURES, FeatureDashboard

    d = synthetic(4096)
    w = FeatureDashboard(d)
    assert w.features["shape"] == [MAX_FEATURES] and w.top_tokens["dtype"] == "uint16"
    assert w.note == f"showing {MAX_FEATURES} of 4096 features (0..{MAX_FEATURES - 1}); pass features=[...] to pick others"
    html = w.offline_html()
    assert html is not None and len(html) < FALLBACK_MAX_BYTES
    assert FeatureDashboard(d, max_features=4096).offline_html() is None  # all 4,096: over the cap
    picked = FeatureDashboard(d, features=[4000, 7], selected=7)
    assert picked.features["shape"] == [2] and picked.note == "showing 2 chosen features of 4096"
    with pytest.raises(InputError, match="FeatureDashboard takes FeatureDashboards"):
        FeatureDashboard("nope")
    with pytest.raises(InputError, match="3 features asked for; at most max_features=2 travel"):
        FeatureDashboard(d, features=[1, 2, 3], max_features=2)


def test_widget_hostile_snapshot_escaped():
    from tests.hostile import CATALOGUE
    from tests.hostile_feature_dashboard import make

    w = make(CATALOGUE[0])
    html = w.offline_html()
    assert html is not None
    for s in CATALOGUE:
        if any(c in s for c in "<>&\u2028\u2029"):  # what would break out of the inline <script>
            assert s not in html, s
    assert "<script>window.__pwned" not in html and "\u2028" not in html
    assert w.summary().startswith("FeatureDashboard: ") and "prompt of 6 tokens" in w.summary()
