"""mechscope.sae.formats: SAELens round trips, each foreign layout written as its library writes
it and read back to encodings equal to an independent numpy computation, Hub-cache resolution
offline, and bad or hostile files refused with clear errors (no pickle ever run)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mechscope.errors import InputError
from mechscope.sae import ARCHITECTURES, KINDS, SAE
from mechscope.sae.formats import load

D, F, K = 8, 32, 4
RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, D)).astype(np.float32)


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


def _topk(a: np.ndarray, k: int) -> np.ndarray:
    a = _relu(a)
    out = np.zeros_like(a)
    idx = np.argsort(-a, axis=1)[:, :k]
    np.put_along_axis(out, idx, np.take_along_axis(a, idx, 1), 1)
    return out


def _rand(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def _write(folder: Path, cfg: dict, weights: dict[str, np.ndarray], name: str, dtype=torch.float32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v).to(dtype).contiguous() for k, v in weights.items()}, str(folder / name))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_every_architecture_and_kind(tmp_path, arch, kind):
    sae = SAE.random(D, F, architecture=arch, kind=kind, d_out=D if kind == "sae" else 6, k=K, layer=2,
                     model="m", seed=3, metadata={"note": "x"})
    w = sae.weights()
    w["b_enc"] = _rand(F) * 0.1
    w["b_dec"] = _rand(sae.cfg.d_out)
    if arch == "jumprelu":  # the only architecture with thresholds (sae-lens files have none otherwise)
        w["threshold"] = np.abs(_rand(F)) * 0.1
    if kind == "skip_transcoder":
        w["W_skip"] = _rand(D, sae.cfg.d_out)
    sae = SAE(sae.cfg, w)
    back = sae.save(tmp_path / "d")
    loaded = SAE.load(back)
    assert loaded.cfg == sae.cfg
    for name, value in sae.weights().items():
        np.testing.assert_array_equal(loaded.weights()[name], value)
    np.testing.assert_allclose(loaded.encode(X), sae.encode(X), atol=1e-6)
    np.testing.assert_allclose(loaded(X), sae(X), atol=1e-5)
    cfg = json.loads((back / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == {"sae": "blocks.2.hook_resid_post"}.get(kind, "blocks.2.ln2.hook_normalized")
    assert not list(back.glob("*.tmp"))


def _saelens_file(tmp_path: Path, arch: str, *, centre: bool, dtype=torch.float32, extra=None):
    w = {"W_enc": _rand(D, F), "b_enc": _rand(F) * 0.1, "W_dec": _rand(F, D), "b_dec": _rand(D)}
    if arch in ("jumprelu", "jumprelu_skip_transcoder"):
        w["threshold"] = np.abs(_rand(F)) * 0.5
    if "skip" in arch:
        w["W_skip"] = _rand(D, D)  # sae-lens: (d_out, d_in)
    cfg = {"architecture": arch, "d_in": D, "d_sae": F, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": centre, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"sae_lens_version": "6.54.12", "model_name": "gpt2", "hook_name": "blocks.5.hook_mlp_out"},
           **(extra or {})}
    if "transcoder" in arch:
        cfg.update(d_out=D)
        cfg["metadata"].update(hook_name="blocks.5.ln2.hook_normalized", hook_name_out="blocks.5.hook_mlp_out")
    _write(tmp_path / arch, cfg, w, "sae_weights.safetensors", dtype)
    w = {k: torch.from_numpy(v).to(dtype).float().numpy() for k, v in w.items()}
    return tmp_path / arch, w


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_saelens_reader_equals_numpy_with_input_centring(tmp_path, arch):
    folder, w = _saelens_file(tmp_path, arch, centre=True, extra={"k": K} if arch == "topk" else None)
    sae = load(folder)
    pre = (X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    want = {"standard": _relu(pre), "topk": _topk(pre, K),
            "jumprelu": _relu(pre) * (pre > w.get("threshold", 0))}[arch]
    np.testing.assert_allclose(sae.encode(X), want, atol=1e-5)
    np.testing.assert_allclose(sae.decode(want), want @ w["W_dec"] + w["b_dec"], atol=1e-5)
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.model) == ("mlp", 5, "gpt2")


def test_saelens_reader_bfloat16_and_skip_transcoder(tmp_path):
    folder, w = _saelens_file(tmp_path, "jumprelu_skip_transcoder", centre=False, dtype=torch.bfloat16)
    sae = load(folder)
    assert (sae.cfg.kind, sae.cfg.site, sae.cfg.site_out, sae.cfg.layer_out) == ("skip_transcoder", "mlp_in", "mlp", 5)
    pre = X @ w["W_enc"] + w["b_enc"]
    f = _relu(pre) * (pre > w["threshold"])
    np.testing.assert_allclose(sae.encode(X), f, atol=1e-4)
    np.testing.assert_allclose(sae(X), f @ w["W_dec"] + w["b_dec"] + X @ w["W_skip"].T, atol=1e-3)


@pytest.mark.parametrize("transcode", [False, True])
def test_sparsify_reader_equals_numpy(tmp_path, transcode):
    w = {"encoder.weight": _rand(F, D), "encoder.bias": _rand(F) * 0.1, "W_dec": _rand(F, D), "b_dec": _rand(D)}
    if transcode:
        w["W_skip"] = _rand(D, D)
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": F, "k": K,
           "multi_topk": False, "skip_connection": transcode, "transcode": transcode, "d_in": D}
    _write(tmp_path / "repo" / "layers.3.mlp", cfg, w, "sae.safetensors")
    (tmp_path / "repo" / "config.json").write_text(json.dumps({"model": "HuggingFaceTB/SmolLM2-135M"}))
    sae = load(tmp_path / "repo", hookpoint="layers.3.mlp")
    x_in = X if transcode else X - w["b_dec"]
    f = _topk(x_in @ w["encoder.weight"].T + w["encoder.bias"], K)
    np.testing.assert_allclose(sae.encode(X), f, atol=1e-5)
    out = f @ w["W_dec"] + w["b_dec"] + (X @ w["W_skip"].T if transcode else 0)
    np.testing.assert_allclose(sae(X), out, atol=1e-4)
    assert sae.cfg.model == "HuggingFaceTB/SmolLM2-135M"
    assert (sae.cfg.site, sae.cfg.site_out, sae.cfg.layer) == (("mlp_in", "mlp", 3) if transcode else ("mlp", "mlp", 3))
    with pytest.raises(InputError, match=r"layers\.3\.mlp.*hookpoint="):
        load(tmp_path / "repo")


def test_gemma_scope_reader_equals_numpy(tmp_path):
    path = tmp_path / "gemma-scope-2b-pt-res" / "layer_5" / "width_16k" / "average_l0_71" / "params.npz"
    path.parent.mkdir(parents=True)
    w = {"W_enc": _rand(D, F), "W_dec": _rand(F, D), "b_enc": _rand(F) * 0.1, "b_dec": _rand(D),
         "threshold": np.abs(_rand(F)) * 0.3}
    np.savez(path, **w)
    sae = load(path)
    pre = X @ w["W_enc"] + w["b_enc"]
    f = _relu(pre) * (pre > w["threshold"])
    np.testing.assert_allclose(sae.encode(X), f, atol=1e-5)
    np.testing.assert_allclose(sae(X), f @ w["W_dec"] + w["b_dec"], atol=1e-4)
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.model) == ("resid", 5, "google/gemma-2-2b")
    np.savez(path, **{**w, "threshold": np.array([_Evil(tmp_path / "pwned")], dtype=object)})
    with pytest.raises(InputError, match=r"params\.npz.*(pickle|Object arrays)"):
        load(path)
    assert not (tmp_path / "pwned").exists()


def _ae_pt(folder: Path, state: dict, dict_class: str, **trainer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(collections.OrderedDict((k, torch.as_tensor(v)) for k, v in state.items()), folder / "ae.pt")
    cfg = {"trainer": {"dict_class": dict_class, "activation_dim": D, "dict_size": F, "layer": 3,
                       "lm_name": "EleutherAI/pythia-70m-deduped", "submodule_name": "resid_post_layer_3", **trainer}}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "ae.pt"


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder"])
def test_dictionary_learning_reader_equals_numpy(tmp_path, dict_class):
    enc_w, enc_b, dec_w, centre = _rand(F, D), _rand(F) * 0.1, _rand(D, F), _rand(D)
    if dict_class == "AutoEncoder":
        state = {"bias": centre, "encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w}
        want = _relu((X - centre) @ enc_w.T + enc_b)
    elif dict_class == "JumpReluAutoEncoder":
        W_enc, thr = _rand(D, F), np.abs(_rand(F)) * 0.3
        state = {"W_enc": W_enc, "b_enc": enc_b, "W_dec": dec_w.T.copy(), "b_dec": centre, "threshold": thr}
        pre = X @ W_enc + enc_b
        want = _relu(pre * (pre > thr))
    else:
        state = {"k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(0.2), "decoder.weight": dec_w,
                 "encoder.weight": enc_w, "encoder.bias": enc_b, "b_dec": centre}
        post = _relu((X - centre) @ enc_w.T + enc_b)
        want = _topk(post, K) if dict_class == "AutoEncoderTopK" else post * (post > 0.2)
    sae = load(_ae_pt(tmp_path / dict_class, state, dict_class, k=K))
    np.testing.assert_allclose(sae.encode(X), want, atol=1e-5)
    b_dec = state.get("b_dec", state.get("bias"))
    np.testing.assert_allclose(sae.decode(want), want @ np.asarray(state.get("W_dec", dec_w.T)) + b_dec, atol=1e-4)
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.model) == ("resid", 3, "EleutherAI/pythia-70m-deduped")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"bias": torch.zeros(D), "payload": _Evil(marker)}, folder / "ae.pt")
    with pytest.raises(InputError, match=r"refused.*(system|posix).*nothing was executed"):
        load(folder)
    assert not marker.exists()
    # the second guard alone (torch's weights-only unpickler) refuses it too
    import mechscope.sae.readers as readers

    monkeypatch.setattr(readers, "check_pickle", lambda path: None)
    with pytest.raises(InputError, match="refused"):
        load(folder)
    assert not marker.exists()


def test_plain_pickle_and_truncated_files(tmp_path):
    import pickle

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "ae.pt").write_bytes(pickle.dumps(_Evil(tmp_path / "pwned")))
    with pytest.raises(InputError, match="torch zip"):
        load(tmp_path / "p")
    assert not (tmp_path / "pwned").exists()
    folder = SAE.random(D, F).save(tmp_path / "t")
    data = (folder / "sae_weights.safetensors").read_bytes()
    (folder / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"sae_weights\.safetensors.*truncated"):
        load(folder)


def test_nan_weights_unknown_hook_and_bad_hookpoint(tmp_path):
    folder, _ = _saelens_file(tmp_path, "standard", centre=False)
    w = load(folder).weights()
    w["W_dec"][0, 0] = np.nan
    save_file({k: torch.from_numpy(v) for k, v in w.items()}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(InputError, match="W_dec has 1 NaN"):
        load(folder)
    folder, _ = _saelens_file(tmp_path / "u", "standard", centre=False)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.2.attn.hook_z"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"'blocks\.2\.attn\.hook_z'.*site= and layer="):
        load(folder)
    sae = load(folder, site="resid_pre", layer=2)
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.metadata["hook_name"]) == ("resid_pre", 2, "blocks.2.attn.hook_z")
    with pytest.raises(InputError, match="hookpoint"):
        load(tmp_path, hookpoint="../etc")
    with pytest.raises(InputError, match="no dictionary"):
        load(tmp_path / "u")


def test_width_must_fit_the_model(tmp_path):
    pytest.importorskip("mechscope.sae.splice")
    import mechscope

    model = mechscope.tiny_model("llama")
    folder = SAE.random(model.d_model + 1, 16, layer=0, model="other").save(tmp_path / "w")
    with pytest.raises(InputError, match=rf"{model.d_model + 1}-wide.*'other'.*{model.d_model} wide"):
        load(folder, model=model)
    unnamed = SAE.random(model.d_model + 1, 16, layer=0).save(tmp_path / "u")
    with pytest.raises(InputError, match=rf"reads {model.d_model + 1}-wide vectors \(resid at layer 0\) but"):
        load(unnamed, model=model)
    assert load(SAE.random(model.d_model, 16, layer=0).save(tmp_path / "ok"), model=model).cfg.model == model.name


def _hub_cache(root: Path, repo: str) -> Path:
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    return base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"


def test_hub_id_resolves_from_the_local_cache_and_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _hub_cache(tmp_path / "hub", "EleutherAI/sae-test-64x")
    w = {"encoder.weight": _rand(F, D), "encoder.bias": _rand(F), "W_dec": _rand(F, D), "b_dec": _rand(D)}
    _write(snap / "layers.2.mlp", {"num_latents": F, "k": K, "d_in": D}, w, "sae.safetensors")
    a = load("EleutherAI/sae-test-64x", hookpoint="layers.2.mlp")
    b = load("EleutherAI/sae-test-64x/layers.2.mlp")
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    assert (a.cfg.site, a.cfg.layer) == ("mlp", 2)
    with pytest.raises(InputError, match=r"'EleutherAI/sae-missing/layers\.1\.mlp'.*download the folder.*pass its path"):
        load("EleutherAI/sae-missing", hookpoint="layers.1.mlp")
    with pytest.raises(InputError, match="neither an existing path nor a Hub id"):
        load(str(tmp_path / "nothing" / "here"))


def test_float16_save_halves_the_file_and_reads_back(tmp_path):
    import numpy as np

    from mechscope.sae import SAE, load

    sae = SAE.random(16, 64, architecture="topk", k=4, seed=5)
    big = sae.save(tmp_path / "f32")
    small = sae.save(tmp_path / "f16", dtype="float16")
    size = lambda p: (p / "sae_weights.safetensors").stat().st_size  # noqa: E731
    assert size(small) < 0.55 * size(big)
    back = load(small)
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    np.testing.assert_allclose(back.decode(back.encode(x)), sae.decode(sae.encode(x)), atol=2e-2)
    assert back.W_dec.dtype.is_floating_point
