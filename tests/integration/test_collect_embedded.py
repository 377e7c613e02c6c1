"""`collect` on the embedded SmolLM2-135M-Instruct at one middle layer: the rows equal plain torch
hooks on each text run alone, layers above the one needed never run, shards round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.analysis.collect import collect
from mechscope.analysis.store import ActivationStore

try:  # mechscope.datasets is becoming a package
    from mechscope.datasets import labelled_texts
except ImportError:
    from mechscope.datasets.labelled import labelled_texts  # type: ignore[no-redef]
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded

LAYER = 15


def _texts() -> list[str]:
    data = labelled_texts(n_per_class=3, seed=0)
    return [t for texts in data.values() for t in texts]  # 15 texts of different lengths


def _hooked(model, text: str) -> dict[str, np.ndarray]:
    """resid (block output) and neurons (down projection input) at LAYER, text run alone."""
    block = model.hf.model.layers[LAYER]
    got: dict[str, torch.Tensor] = {}
    handles = [
        block.register_forward_hook(lambda _m, _a, out: got.__setitem__(
            "resid", (out[0] if isinstance(out, tuple) else out)[0].clone())),
        block.mlp.down_proj.register_forward_pre_hook(lambda _m, args: got.__setitem__(
            "neurons", args[0][0].clone())),
    ]
    try:
        with torch.no_grad():
            model.hf(input_ids=model.tokenizer(text, return_tensors="pt")["input_ids"])
    finally:
        for h in handles:
            h.remove()
    return {k: v.float().numpy() for k, v in got.items()}


def test_middle_layer_equals_torch_hooks_and_stops_there(embedded, tmp_path):
    texts = _texts()
    before = model_fingerprint(embedded)
    later = []
    handle = embedded.hf.model.layers[LAYER + 1].register_forward_pre_hook(lambda *_: later.append(1))
    try:
        store = collect(embedded, texts, sites=["resid", "neurons"], layers=LAYER, batch_size=8,
                        out_dir=tmp_path, shard_rows=64, progress=False)
    finally:
        handle.remove()
    assert later == []  # the forward pass stopped after layer LAYER
    refs = [_hooked(embedded, t) for t in texts]
    for site in ("resid", "neurons"):
        want = np.concatenate([r[site] for r in refs])
        got = store.get(site, LAYER)
        assert got.shape == want.shape == (store.n_rows, embedded.width(site))
        # left-padded batches vs one text alone: float rounding only, through 16 layers
        # (measured: 1.6e-5 of the row's norm at most; the first token's "attention sink"
        # residual is ~1e4 large, so the bound is relative to each row)
        err = np.abs(got - want).max(axis=1) / np.linalg.norm(want, axis=1)
        assert err.max() < 1e-4, err.max()
    assert store.tokens == [tok for t in texts for tok in embedded.str_tokens(t)]
    reopened = ActivationStore.open(tmp_path)
    assert len(reopened.manifest["shards"]) > 1
    np.testing.assert_array_equal(reopened.get("resid", LAYER), store.get("resid", LAYER))
    # one text per batch (no padding): the same floats as the hooks, to 1e-5
    single = collect(embedded, texts, layers=LAYER, reduce="last", batch_size=1, progress=False)
    np.testing.assert_allclose(single.get("resid", LAYER), np.stack([r["resid"][-1] for r in refs]),
                               atol=1e-5, rtol=0)
    assert model_fingerprint(embedded) == before
