"""`mechscope.metrics`: values on hand-made logits, binding checks single tokens, kl_to_clean."""

from __future__ import annotations

import math

import pytest
import torch

from mechscope.errors import InputError
from mechscope.interventions.metrics import BoundMetric, as_metric
from mechscope.metrics import kl_to_clean, logit_diff, logprob, prob


@pytest.fixture
def logits(tiny_llama):
    x = torch.zeros(2, tiny_llama.vocab_size)
    x[0, 5], x[0, 7] = 3.0, 1.0
    x[1, 5], x[1, 7] = -1.0, 2.5
    return x


def test_logit_diff(tiny_llama, logits):
    m = logit_diff(5, 7).bind(tiny_llama)
    assert m(logits).tolist() == pytest.approx([2.0, -3.5])
    assert m(logits[0]).tolist() == pytest.approx([2.0])  # a single (vocab,) row is accepted
    assert m.name == "logit_diff(5, 7)" and not m.needs_clean


def test_logit_diff_by_token_string(tiny_llama):
    g, b = tiny_llama.to_single_token(" the"), tiny_llama.to_single_token(" of")
    x = torch.zeros(1, tiny_llama.vocab_size)
    x[0, g], x[0, b] = 4.0, 1.5
    assert logit_diff(" the", " of").bind(tiny_llama)(x).item() == pytest.approx(2.5)


def test_prob_and_logprob(tiny_llama, logits):
    v = tiny_llama.vocab_size
    # row 0: two raised entries (e^3, e^1) and v - 2 zeros (e^0)
    z0 = math.exp(3) + math.exp(1) + (v - 2)
    z1 = math.exp(-1) + math.exp(2.5) + (v - 2)
    p = prob(5).bind(tiny_llama)(logits)
    assert p.tolist() == pytest.approx([math.exp(3) / z0, math.exp(-1) / z1], rel=1e-5)
    lp = logprob(7).bind(tiny_llama)(logits)
    assert lp.tolist() == pytest.approx([1 - math.log(z0), 2.5 - math.log(z1)], rel=1e-5)
    uniform = prob(0).bind(tiny_llama)(torch.zeros(1, v))
    assert uniform.item() == pytest.approx(1 / v)


def test_metrics_upcast_half_precision(tiny_llama, logits):
    out = logit_diff(5, 7).bind(tiny_llama)(logits.half())
    assert out.dtype == torch.float32


def test_kl_to_clean(tiny_llama, logits):
    m = kl_to_clean().bind(tiny_llama)
    assert m.needs_clean and not m.higher_is_clean
    assert m(logits, logits).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    # against a hand computation, clean row broadcast over the batch
    clean = logits[:1]
    p = torch.softmax(clean[0].double(), -1)
    q = torch.softmax(logits[1].double(), -1)
    expect = float((p * (p.log() - q.log())).sum())
    got = m(logits, clean)
    assert got[0].item() == pytest.approx(0.0, abs=1e-6)
    assert got[1].item() == pytest.approx(expect, rel=1e-4)
    assert expect > 0


def test_kl_to_clean_needs_clean_logits(tiny_llama, logits):
    with pytest.raises(InputError, match="needs the clean run's logits"):
        kl_to_clean().bind(tiny_llama)(logits)


def test_single_token_rejection_message(tiny_llama):
    word = "Mechanistic"
    with pytest.raises(InputError) as err:
        logit_diff(word, " of").bind(tiny_llama)
    msg = str(err.value)
    assert repr(word) in msg and "not one. Metrics need single tokens" in msg
    assert "mind the leading space" in msg
    with pytest.raises(InputError, match="out of range"):
        prob(10**9).bind(tiny_llama)
    with pytest.raises(InputError, match="non-empty str"):
        logprob("").bind(tiny_llama)


def test_as_metric(tiny_llama):
    bound = logit_diff(5, 7).bind(tiny_llama)
    assert as_metric(bound, tiny_llama) is bound
    assert isinstance(as_metric(prob(5), tiny_llama), BoundMetric)
    with pytest.raises(InputError, match="mechscope.metrics"):
        as_metric(lambda x: x, tiny_llama)
