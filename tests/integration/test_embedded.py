"""The embedded SmolLM2-135M-Instruct: loads offline, tokenises exactly, and is a real LM."""

from __future__ import annotations

import gc
import os
import time

import nnsight
import numpy as np
import pytest
import torch

import mechscope
from mechscope import InputError
from mechscope.metrics import logit_diff
from mechscope.models import embedded as embedded_module
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded

PROMPT = "The capital of France is"
PARIS = 7042
ROUND_TRIP = [
    "The capital of France is",
    "caf\u00e9 na\u00efve \u00fcber Stra\u00dfe",
    "\u4e2d\u6587 \u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \ud55c\uad6d\uc5b4",
    "emoji \U0001f600\U0001f999 family \U0001f469\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
    "\u202e rtl, a\u0301 combining, \u00a0nbsp, zero\u200bwidth",
    "  leading, trailing and\ttabs\nnew\r\nlines  ",
    "<img src=x onerror=alert(1)> </script>",
]


def test_loads_offline(embedded):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert embedded_module.is_prepared()
    assert embedded.name == "SmolLM2-135M-Instruct"
    assert embedded.adapter.family == "llama"
    assert not embedded.hf.training
    assert next(embedded.hf.parameters()).dtype == torch.float32


def test_sizes(embedded):
    assert (embedded.n_layers, embedded.d_model, embedded.d_mlp, embedded.n_heads) == (30, 576, 1536, 9)
    assert embedded.d_head == 64
    assert embedded.vocab_size == 49152


def test_str_tokens(embedded):
    assert embedded.str_tokens(PROMPT) == ["The", " capital", " of", " France", " is"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_tokenisation_round_trips_exactly(embedded, text):
    tok = embedded.tokenizer
    ids = embedded.to_tokens(text)[0].tolist()
    assert ids == tok(text, add_special_tokens=False)["input_ids"]  # no BOS is added
    assert tok.decode(ids) == text
    assert embedded.str_tokens(text) == [tok.decode([i]) for i in ids]


def test_top_next_token_is_paris(embedded):
    before = model_fingerprint(embedded)
    assert embedded.to_single_token(" Paris") == PARIS
    ids = embedded.to_tokens(PROMPT)
    with torch.no_grad():
        hf_logits = embedded.hf(ids).logits[0, -1]
    with torch.no_grad(), embedded.nn.trace(ids):
        nn_logits = nnsight.save(embedded.nn.output.logits[0, -1])
    torch.testing.assert_close(nn_logits, hf_logits, rtol=0, atol=1e-4)
    probs = torch.softmax(hf_logits, -1)
    assert int(probs.argmax()) == PARIS
    assert embedded.tokenizer.decode([PARIS]) == " Paris"
    assert float(probs[PARIS]) > 0.5  # ~0.77
    assert model_fingerprint(embedded) == before


def test_activations_match_torch_hooks(embedded):
    layer, neuron = 20, 100
    r = mechscope.activations(embedded, PROMPT, site="neurons", neuron=neuron, layers=[layer, -1])
    seen = {}
    handles = [
        embedded.hf_module("neurons", at).register_forward_pre_hook(
            lambda _m, inputs, at=at: seen.__setitem__(at, inputs[0][0, :, neuron].clone()))
        for at in (layer, 29)
    ]
    try:
        with torch.no_grad():
            embedded.hf(embedded.to_tokens(PROMPT))
    finally:
        for h in handles:
            h.remove()
    np.testing.assert_allclose(r.values, torch.stack([seen[layer], seen[29]]).numpy(), atol=1e-5, rtol=1e-5)
    assert r.layers == [20, 29]


def test_multi_token_metric_token(embedded):
    with pytest.raises(InputError, match=r"' Parisians and Romans' is \d+ tokens .* not one"):
        logit_diff(" Parisians and Romans", " Rome").bind(embedded)
    assert logit_diff(" Paris", " Rome").bind(embedded)(torch.zeros(1, 49152)).tolist() == [0.0]


def test_prompt_longer_than_context(embedded):
    limit = embedded.max_positions
    with pytest.raises(InputError, match=f"accepts at most {limit}"):
        embedded.to_tokens(" Paris" * (limit + 1))


def test_second_load_time(embedded):
    """Prints (does not assert) how long a load from the prepared cache takes."""
    start = time.perf_counter()
    again = mechscope.load()
    wall = time.perf_counter() - start
    print(f"\nembedded model second load: {wall:.2f} s wall, "
          f"{again.info['load_seconds']:.2f} s from_pretrained (cache {embedded_module.cache_dir()})")
    ids = again.to_tokens(PROMPT)
    with torch.no_grad():
        assert torch.equal(again.hf(ids).logits, embedded.hf(ids).logits)
    del again
    gc.collect()
