"""`mechscope.sae.transcoders` on the embedded SmolLM2: a two-layer build from the real corpus
(its own cache folder) gives transcoders that fit the model, keep k latents, reconstruct the MLP
output better than its mean (FVU < 1) and load back from the cache unchanged. Marked slow: the
collection alone runs the corpus's 700 texts through the model's first layers."""

from __future__ import annotations

import json

import pytest
import torch

import mechscope
from mechscope.sae import transcoders as tc

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_two_layer_build_on_the_real_model(built_corpus, tmp_path):
    model = mechscope.load()
    root = tmp_path / "transcoders"
    got = tc.embedded_transcoders(model, [0, 1], progress=False, cache_dir=root)
    manifest = json.loads((root / tc.MANIFEST).read_text())
    for layer, sae in got.items():
        assert (sae.cfg.d_in, sae.cfg.d_out, sae.cfg.d_sae) == (model.d_model, model.d_model, tc.CONFIG["d_sae"])
        ev = manifest["layers"][str(layer)]["evaluation"]
        assert ev["l0"] <= tc.CONFIG["k"] and ev["fvu"] < 1.0 and ev["ce_clean"] < ev["ce_zero"], (layer, ev)
    again = tc.embedded_transcoders(model, [0, 1], progress=False, cache_dir=root)
    for layer in (0, 1):
        for a, b in zip(got[layer].weights().values(), again[layer].weights().values(), strict=True):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
