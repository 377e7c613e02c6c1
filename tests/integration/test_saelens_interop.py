"""Interop with the real sae-lens (its own venv, build/saelens-venv: `make saelens-env`): sae-lens
loads mechscope-saved dictionaries and encodes like mechscope, and mechscope loads sae-lens-saved
ones and encodes like sae-lens, to 1e-5 both ways."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mechscope.sae import SAE
from mechscope.sae.formats import load

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / "build" / "saelens-venv" / "bin" / "python"
SCRIPT = ROOT / "tests" / "interop" / "saelens_roundtrip.py"
D_IN, D_SAE, D_OUT, K = 16, 64, 12, 6

pytestmark = pytest.mark.skipif(not VENV_PY.exists(),
                                reason="no sae-lens venv: run `make saelens-env` (build/saelens-venv)")

MECHSCOPE_SAES = {  # name: (architecture, kind); sae-lens has no top-k transcoder
    "relu": ("relu", "sae"), "topk": ("topk", "sae"), "jumprelu": ("jumprelu", "sae"),
    "transcoder": ("relu", "transcoder"), "jumprelu_transcoder": ("jumprelu", "transcoder"),
    "skip_transcoder": ("relu", "skip_transcoder"), "jumprelu_skip_transcoder": ("jumprelu", "skip_transcoder"),
}


def _mechscope_sae(arch: str, kind: str, seed: int) -> SAE:
    sae = SAE.random(D_IN, D_SAE, architecture=arch, kind=kind, d_out=D_OUT if kind != "sae" else 0, k=K,
                     layer=3, model="HuggingFaceTB/SmolLM2-135M", seed=seed)
    rng = np.random.default_rng(seed)
    w = sae.weights()
    for name, value in w.items():
        w[name] = value + rng.normal(size=value.shape).astype(np.float32) * (0.3 if name.startswith("b_") else 0.1)
    w["threshold"] = np.abs(w["threshold"])
    return SAE(sae.cfg, w)


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    work = tmp_path_factory.mktemp("saelens")
    x = np.random.default_rng(0).normal(size=(40, D_IN)).astype(np.float32) * 2
    np.save(work / "X.npy", x)
    saes = {}
    for i, (name, (arch, kind)) in enumerate(MECHSCOPE_SAES.items()):
        saes[name] = _mechscope_sae(arch, kind, i)
        saes[name].save(work / "from_mechscope" / name)
    run = subprocess.run([str(VENV_PY), str(SCRIPT), str(work)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return work, x, saes, json.loads((work / "versions.json").read_text())


@pytest.mark.parametrize("name", list(MECHSCOPE_SAES))
def test_saelens_reads_mechscope(roundtrip, name):
    work, x, saes, versions = roundtrip
    assert f"{name}:" in " ".join(versions["read"])
    folder, sae = work / "from_mechscope" / name, saes[name]
    f = sae.encode(x)
    assert (f > 0).any()
    np.testing.assert_allclose(np.load(folder / "saelens_encode.npy"), f, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.load(folder / "saelens_out.npy"), sae(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["standard", "topk", "topk_rescaled", "jumprelu", "transcoder",
                                  "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"])
def test_mechscope_reads_saelens(roundtrip, name):
    work, x, _, versions = roundtrip
    assert name in versions["written"]
    folder = work / "from_saelens" / name
    sae = load(folder)
    want_f = np.load(folder / "encode.npy")
    assert (want_f > 0).any()
    np.testing.assert_allclose(sae.encode(x), want_f, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sae(x), np.load(folder / "out.npy"), atol=1e-5, rtol=0)
    assert sae.cfg.layer == 3 and sae.cfg.model == "HuggingFaceTB/SmolLM2-135M"
    if "transcoder" in name:
        assert (sae.cfg.site, sae.cfg.site_out) == ("mlp_in", "mlp")
