"""`mechscope.sae.SAE`: the maths against an independent numpy computation, folding, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.errors import InputError
from mechscope.sae import SAE, SAEConfig

RNG = np.random.default_rng(0)


def _numpy_encode(w: dict[str, np.ndarray], x: np.ndarray, arch: str, k: int | None) -> np.ndarray:
    pre = x.astype(np.float64) @ w["W_enc"] + w["b_enc"]
    if arch == "relu":
        return np.maximum(pre, 0)
    if arch == "jumprelu":
        return np.where(pre > w["threshold"], pre, 0.0)
    out = np.zeros_like(pre)
    relu = np.maximum(pre, 0)
    top = np.argsort(-relu, axis=-1)[:, :k]
    np.put_along_axis(out, top, np.take_along_axis(relu, top, -1), -1)
    return out


def _random_weights(sae: SAE) -> SAE:
    w = {n: RNG.normal(size=a.shape).astype(np.float32) for n, a in sae.weights().items()}
    w["threshold"] = np.abs(w["threshold"])
    return SAE(sae.cfg, w)


@pytest.mark.parametrize(("arch", "k"), [("relu", None), ("jumprelu", None), ("topk", 5)])
def test_encode_decode_equal_numpy(arch, k):
    sae = _random_weights(SAE.random(12, 40, architecture=arch, k=k))
    w = {n: a.astype(np.float64) for n, a in sae.weights().items()}
    x = RNG.normal(size=(7, 12)).astype(np.float32)
    f = sae.encode(x)
    assert isinstance(f, np.ndarray) and f.shape == (7, 40)
    np.testing.assert_allclose(f, _numpy_encode(w, x, arch, k), atol=1e-4)
    np.testing.assert_allclose(sae.decode(f), f @ w["W_dec"] + w["b_dec"], atol=1e-4)
    t = sae.encode(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.detach().numpy(), f, atol=1e-6)


def test_sparse_decode_equals_dense_and_has_gradients():
    sae = _random_weights(SAE.random(10, 64, architecture="topk", k=6))
    x = torch.randn(9, 10)
    pre = sae.pre_activations(x)
    values, idx = sae.topk(pre)
    sparse = sae.decode_sparse(values, idx)
    dense = sae.activate(pre) @ sae.W_dec + sae.b_dec
    assert torch.allclose(sparse, dense, atol=1e-5)
    sparse.sum().backward()
    assert sae.W_dec.grad is not None and sae.W_enc.grad is not None


def test_skip_transcoder_adds_the_linear_path():
    tc = _random_weights(SAE.random(8, 16, kind="skip_transcoder", d_out=5))
    assert tc.cfg.site == "mlp_in" and tc.cfg.site_out == "mlp"
    x = RNG.normal(size=(3, 8)).astype(np.float32)
    w = tc.weights()
    expected = np.maximum(x @ w["W_enc"] + w["b_enc"], 0) @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"]
    np.testing.assert_allclose(tc(x), expected, atol=1e-4)
    with pytest.raises(InputError, match="pass x= to decode"):
        tc.decode(tc.encode(x))


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk"])
def test_fold_scale_works_on_raw_activations(arch):
    sae = _random_weights(SAE.random(6, 20, architecture=arch, k=4 if arch == "topk" else None))
    x = torch.randn(4, 6) * 37.0
    folded = sae.fold_scale(37.0)
    assert torch.allclose(folded(x), 37.0 * sae(x / 37.0), atol=1e-3)
    assert torch.allclose(folded.encode(x), 37.0 * sae.encode(x / 37.0), atol=1e-3)
    assert folded.cfg.metadata["folded_scale"] == 37.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"d_in": 0, "d_sae": 4}, "d_in must be a positive integer"),
    ({"d_in": 4, "d_sae": 4, "architecture": "batchtopk"}, "saved as 'jumprelu'"),
    ({"d_in": 4, "d_sae": 4, "architecture": "topk"}, "needs k between 1 and d_sae=4"),
    ({"d_in": 4, "d_sae": 4, "architecture": "topk", "k": 9}, "needs k between 1 and d_sae=4"),
    ({"d_in": 4, "d_sae": 4, "kind": "decoder"}, "kind must be one of"),
    ({"d_in": 4, "d_sae": 4, "d_out": 3}, "use kind='transcoder'"),
])
def test_bad_configs(kwargs, message):
    with pytest.raises(InputError, match=message):
        SAEConfig(**kwargs)


def test_bad_weights_and_inputs_name_the_problem():
    cfg = SAEConfig(d_in=4, d_sae=8, model="tiny", layer=2)
    with pytest.raises(InputError, match=r"W_enc has shape \(3, 8\), expected \(4, 8\)"):
        SAE(cfg, {"W_enc": np.zeros((3, 8))})
    with pytest.raises(InputError, match="1 NaN or infinite values"):
        SAE(cfg, {"b_enc": np.array([0, 0, np.nan, 0, 0, 0, 0, 0])})
    with pytest.raises(InputError, match="unknown dictionary weights"):
        SAE(cfg, {"W_gate": np.zeros((4, 8))})
    sae = SAE(cfg)
    with pytest.raises(InputError, match=r"\(\.\.\., 4\) for this dictionary \(resid at layer 2 of tiny"):
        sae.encode(np.zeros((2, 5), np.float32))
    with pytest.raises(InputError, match="must be numbers"):
        sae.encode(np.array([["a"] * 4]))
