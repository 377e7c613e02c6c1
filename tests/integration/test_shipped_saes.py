"""The dictionaries shipped for the embedded SmolLM2 (`mechscope.sae.embedded`): every one CONFIG
names is there, equals its manifest's sha256, is fp16 and <= 25 MB in all, loads onto the model,
and re-evaluated on the same held-out corpus texts gives the numbers its manifest states (the
manifest's were measured before the fp16 rounding: equal to 0.01)."""

from __future__ import annotations

import hashlib
import json

import pytest

import mechscope
from mechscope.sae import embedded
from mechscope.sae.shipped import CONFIG, WEIGHTS

pytestmark = pytest.mark.embedded
LIMIT = 25 * 2**20


def _manifest() -> dict:
    return json.loads((WEIGHTS / "manifest.json").read_text())


def test_every_dictionary_is_shipped_pinned_and_small():
    manifest = _manifest()
    assert manifest["config"] == json.loads(json.dumps(CONFIG)), "weights were built with another CONFIG"
    total = 0
    for d in CONFIG["dictionaries"]:
        data = (WEIGHTS / d["name"] / "sae_weights.safetensors").read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["dictionaries"][d["name"]]["sha256"], d["name"]
        cfg = json.loads((WEIGHTS / d["name"] / "cfg.json").read_text())
        assert cfg["dtype"] == "float16" and cfg["d_sae"] == d["d_sae"] and cfg["k"] == d["k"]
        total += len(data)
    assert total <= LIMIT


@pytest.fixture(scope="module")
def model():
    return mechscope.load()


def test_embedded_loads_onto_the_model(model):
    sae = embedded(model, 15)
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.d_in, sae.cfg.k) == ("resid", 15, model.d_model, 64)
    tc = embedded(model, 15, kind="transcoder")
    assert (tc.cfg.site, tc.cfg.site_out) == ("mlp_in", "mlp")
    with pytest.raises(mechscope.InputError, match="shipped are"):
        embedded(model, 3)


@pytest.mark.slow     # ~2.5 min on 2 cores
def test_reevaluation_matches_the_manifest(model, built_corpus):
    _, held = built_corpus
    e = CONFIG["evaluate"]
    texts = held.texts(n=e["n_texts"], max_chars=e["max_chars"])
    stated = _manifest()["dictionaries"]["resid-15"]["evaluation"]
    ev = embedded(model, 15).evaluate(model, texts, context=e["context"], progress=False)
    assert ev.l0 == pytest.approx(64.0, abs=0.5) and ev.n_tokens == stated["n_tokens"]
    for name in ("fvu", "ce_recovered", "ce_recovered_mean", "delta_ce", "kl", "dead_fraction"):
        assert getattr(ev, name) == pytest.approx(stated[name], abs=0.01), name
    # the targets for the middle residual dictionary
    assert ev.fvu <= 0.3 and ev.ce_recovered >= 0.8 and ev.dead_fraction <= 0.1
