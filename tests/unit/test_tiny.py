"""Tiny test models: built in milliseconds, deterministic, with an exact-unicode tokenizer."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mechscope
from mechscope.models.tiny import FAMILIES, tiny_hf_model, tiny_tokenizer

TEXTS = [
    "hello world",
    "caf\u00e9 na\u00efve \u00fcber",
    "\u4e2d\u6587 \u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \ud55c\uad6d\uc5b4",
    "emoji \U0001f600\U0001f999 family \U0001f469\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
    "\u202e right-to-left override, a\u0301 combining, \u00a0nbsp, zero\u200bwidth",
    "  leading, trailing and\ttabs\nnew\r\nlines  ",
    "<img src=x onerror=alert(1)> </script> & \"quotes\"",
    "\x00\x01 control \x7f bytes",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_builds_well_under_a_second(family):
    mechscope.tiny_model(family)  # first call pays for imports and the tokenizer training
    start = time.perf_counter()
    model = mechscope.tiny_model(family, seed=3)
    elapsed = time.perf_counter() - start
    print(f"tiny_model({family!r}) built in {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5
    assert model.adapter.family == family and model.name == f"tiny-{family}-seed3"


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trips_unicode_exactly(tiny_llama, text):
    tok = tiny_llama.tokenizer
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tiny_llama.to_tokens(text)[0].tolist() == ids  # no BOS or other special token added
    # str_tokens gives one string per token, each the decoding of that token alone.
    assert tiny_llama.str_tokens(text) == [tok.decode([i]) for i in ids]


def test_str_tokens_concatenate_to_the_text_when_no_character_is_split(tiny_llama):
    for text in ("hello world", "The Eiffel Tower is in the city of Paris.", "  tabs\tand\nlines "):
        assert "".join(tiny_llama.str_tokens(text)) == text


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_tokenizer_round_trip_property(text):
    tok = tiny_tokenizer()
    assert tok.decode(tok(text)["input_ids"]) == text


def test_user_tokenizer_is_not_mutated():
    tok = tiny_tokenizer()
    tok.padding_side = "right"
    model = mechscope.load(tiny_hf_model("gpt2"), tokenizer=tok)
    mechscope.activations(model, "hello")
    assert tok.padding_side == "right"
    assert model.tokenizer is not tok and model.tokenizer.padding_side == "left"


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (tiny_hf_model("llama", seed=s) for s in (0, 0, 1))
    wa, wb, wc = (m.model.layers[0].mlp.down_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    rng = torch.random.get_rng_state()
    tiny_hf_model("gpt2", seed=5)
    assert torch.equal(rng, torch.random.get_rng_state())  # the global RNG is left alone


def test_models_are_in_eval_mode_without_dropout(tiny):
    assert not tiny.hf.training
    ids = tiny.to_tokens("hello world")
    with torch.no_grad():
        assert torch.equal(tiny.hf(ids).logits, tiny.hf(ids).logits)


def test_unknown_family():
    with pytest.raises(ValueError, match=r"unknown tiny family 'bert'; choose one of \('llama', 'gpt2', 'gpt_neox'\)"):
        mechscope.tiny_model("bert")
