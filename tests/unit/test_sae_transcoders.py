"""`mechscope.sae.transcoders`: on the tiny Llama with a tiny config and a tiny corpus, a build
makes one transcoder per layer with its evaluation in the manifest; a second call loads from the
cache without training; a build interrupted after layer 0 is saved (or in the middle of a layer's
training) resumes to exactly the straight build's weights; bad input fails before any work with
a message that says what to do; the model is left unchanged."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

import mechscope
from mechscope.errors import InputError
from mechscope.sae import transcoders as tc
from tests.helpers import model_fingerprint

TINY = {**tc.CONFIG, "model": "tiny-llama", "n_texts": 12, "max_chars": 200, "collect_batch_size": 4,
        "shard_rows": 64, "d_sae": 16, "k": 4, "epochs": 2, "batch_size": 32, "eval_texts": 3,
        "eval_context": 16, "eval_group": 1}
WORDS = "the cat sat on a mat while one dog ran far from home and two birds sang".split()


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A tiny built corpus (train and held-out JSONL plus a manifest) in MECHSCOPE_CORPUS_DIR."""
    root = tmp_path / "corpus"
    root.mkdir()
    for split, n in (("train", 16), ("heldout", 4)):
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                text = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(12 + i % 5))
                f.write(json.dumps({"text": text, "source": "s", "genre": "prose", "id": i}) + "\n")
    (root / "manifest.json").write_text(json.dumps({"totals": {}, "sources": []}))
    monkeypatch.setenv("MECHSCOPE_CORPUS_DIR", str(root))
    return root


@pytest.fixture
def model():
    return mechscope.tiny_model("llama")


def _weights(root: Path, layer: int) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in mechscope.sae.load(root / f"transcoder-{layer}").weights().items()}


def _count_train(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = tc._train_layer

    def counted(store, root, layer, cfg, progress):
        calls.append(layer)
        return original(store, root, layer, cfg, progress)

    monkeypatch.setattr(tc, "_train_layer", counted)
    return calls


def test_builds_every_layer_then_loads_from_the_cache(model, corpus, tmp_path, monkeypatch):
    before = model_fingerprint(model)
    calls = _count_train(monkeypatch)
    root = tmp_path / "cache"
    got = tc.embedded_transcoders(model, progress=False, cache_dir=root, config=TINY)
    assert sorted(got) == list(range(model.n_layers)) and calls == [0, 1]
    for layer, sae in got.items():
        c = sae.cfg
        assert (c.kind, c.site, c.site_out, c.layer, c.d_sae, c.k) == ("transcoder", "mlp_in", "mlp", layer, 16, 4)
        assert json.loads((root / f"transcoder-{layer}" / "cfg.json").read_text())["dtype"] == "float16"
    manifest = json.loads((root / tc.MANIFEST).read_text())
    assert manifest["config"] == TINY and sorted(manifest["layers"]) == ["0", "1"]
    for entry in manifest["layers"].values():
        ev = entry["evaluation"]
        assert 3 < ev["l0"] <= 4 and ev["fvu"] >= 0 and "ce_recovered" in ev
    # the activation store and the checkpoints are gone once every layer is saved
    assert not list(root.glob("activations-*")) and not (root / "train").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = tc.embedded_transcoders(model, [1, 0], progress=False, cache_dir=root, config=TINY)
    assert calls == [0, 1] and list(again) == [0, 1]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes
    for layer in (0, 1):
        assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(got[layer].weights().values(),
                                                     again[layer].weights().values(), strict=True))
    assert model_fingerprint(model) == before


def test_an_interrupted_build_resumes_to_the_straight_weights(model, corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    tc.build_transcoders(model, progress=False, cache_dir=straight, config=TINY)
    root = tmp_path / "interrupted"
    original = tc._save_layer

    def save_then_stop(root_, manifest, layer, *args):
        if layer == 1:
            raise KeyboardInterrupt("stopped after layer 0 was saved")
        return original(root_, manifest, layer, *args)

    monkeypatch.setattr(tc, "_save_layer", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        tc.build_transcoders(model, progress=False, cache_dir=root, config=TINY)
    assert sorted(json.loads((root / tc.MANIFEST).read_text())["layers"]) == ["0"]
    monkeypatch.setattr(tc, "_save_layer", original)
    calls = _count_train(monkeypatch)
    report = tc.build_transcoders(model, progress=False, cache_dir=root, config=TINY)
    assert calls == [1], "layer 0 was saved: it must not be trained again"
    for layer in (0, 1):
        a, b = _weights(straight, layer), _weights(root, layer)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), layer
        assert report[layer]["sha256"] == json.loads((straight / tc.MANIFEST).read_text())["layers"][str(layer)]["sha256"]


def test_a_layer_interrupted_mid_training_resumes_from_its_checkpoint(model, corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    tc.build_transcoders(model, [1], progress=False, cache_dir=straight, config=TINY)
    train_module = importlib.import_module("mechscope.sae.train")  # the module: mechscope.sae.train is the function

    def stop_at_step_2(step, row):
        if step == 2:
            raise KeyboardInterrupt("mid-training")

    real_train = train_module.train

    def interrupted_train(*args, **kwargs):
        return real_train(*args, **kwargs, callback=stop_at_step_2)

    root = tmp_path / "cache"
    monkeypatch.setattr(train_module, "train", interrupted_train)
    with pytest.raises(KeyboardInterrupt):
        tc.build_transcoders(model, [1], progress=False, cache_dir=root, config=TINY)
    assert list((root / "train" / "layer-1").iterdir()), "train left no checkpoint"
    monkeypatch.setattr(train_module, "train", real_train)
    tc.build_transcoders(model, [1], progress=False, cache_dir=root, config=TINY)
    a, b = _weights(straight, 1), _weights(root, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_fails_before_any_work(model, tmp_path, monkeypatch):
    calls = _count_train(monkeypatch)
    root = tmp_path / "cache"
    with pytest.raises(InputError, match=r"for SmolLM2-135M-Instruct \(mechscope.load\(\)\), not tiny-llama-seed0"):
        tc.embedded_transcoders(model, cache_dir=root)
    with pytest.raises(InputError, match=r"layer 5 is out of range: this model has 2 layers \(0..1"):
        tc.embedded_transcoders(model, 5, cache_dir=root, config=TINY)
    with pytest.raises(InputError, match="names the same layer twice"):
        tc.build_transcoders(model, [0, -2], cache_dir=root, config=TINY)
    with pytest.raises(InputError, match="keys of mechscope.sae.transcoders.CONFIG"):
        tc.build_transcoders(model, cache_dir=root, config={"model": "tiny"})
    with pytest.raises(InputError, match=r"config\['d_sae'\] must be a positive int, got 0"):
        tc.build_transcoders(model, cache_dir=root, config={**TINY, "d_sae": 0})
    with pytest.raises(InputError, match="k=4 is more than d_sae=2"):
        tc.build_transcoders(model, cache_dir=root, config={**TINY, "d_sae": 2})
    with pytest.raises(InputError, match="progress must be True or False"):
        tc.build_transcoders(model, cache_dir=root, config=TINY, progress="yes")
    assert calls == [] and not root.exists()


def test_an_unbuilt_corpus_is_the_corpus_error(model, tmp_path, monkeypatch):
    monkeypatch.setenv("MECHSCOPE_CORPUS_DIR", str(tmp_path / "nothing"))
    with pytest.raises(InputError, match=r"the corpus is not built in .*run `make corpus`"):
        tc.build_transcoders(model, cache_dir=tmp_path / "cache", config=TINY, progress=False)


def test_a_cache_of_another_config_is_refused(model, corpus, tmp_path):
    root = tmp_path / "cache"
    tc.build_transcoders(model, [0], progress=False, cache_dir=root, config=TINY)
    with pytest.raises(InputError, match="built with another config"):
        tc.build_transcoders(model, [0], progress=False, cache_dir=root, config={**TINY, "k": 2})
