"""`mechscope.load` from a local directory, and its errors offline (no download is ever tried)."""

from __future__ import annotations

import os
import re
import time

import huggingface_hub.constants
import pytest
import torch

import mechscope
from mechscope import ModelLoadError, UnsupportedArchitectureError
from mechscope.models.tiny import FAMILIES, tiny_hf_model, tiny_tokenizer

pytestmark = pytest.mark.embedded

PROMPT = "The Eiffel Tower is in the city of Paris"


def _save(path, family="llama", tokenizer=True):
    hf = tiny_hf_model(family, seed=7)
    hf.save_pretrained(path)
    if tokenizer:
        tiny_tokenizer().save_pretrained(path)
    return hf


@pytest.mark.parametrize("family", FAMILIES)
def test_load_a_saved_local_directory(tmp_path, family):
    original = _save(tmp_path, family)
    model = mechscope.load(str(tmp_path))
    assert model.adapter.family == family
    assert (model.n_layers, model.d_model, model.d_mlp, model.n_heads) == (2, 64, 128, 4)
    assert model.name == str(tmp_path)
    ids = model.to_tokens(PROMPT)
    with torch.no_grad():
        torch.testing.assert_close(model.hf(ids).logits, original(ids).logits, rtol=0, atol=1e-6)
    assert "".join(model.str_tokens(PROMPT)) == PROMPT
    assert mechscope.activations(model, PROMPT).values.shape == (2, ids.shape[1])


def test_load_accepts_a_path_object_and_a_dtype(tmp_path):
    _save(tmp_path)
    model = mechscope.load(tmp_path, dtype=torch.float16)
    assert next(model.hf.parameters()).dtype == torch.float16


def test_local_directory_without_a_tokenizer(tmp_path):
    _save(tmp_path, tokenizer=False)
    with pytest.raises(ModelLoadError, match=re.escape(f"could not load {str(tmp_path)!r}")):
        mechscope.load(str(tmp_path))


def test_local_directory_of_an_unsupported_architecture(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, is_decoder=True)
    BertLMHeadModel(config).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match="model_type='bert'"):
        mechscope.load(str(tmp_path))


def test_unreachable_hub_id_offline_fails_fast_with_a_clear_message():
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("HF_HUB_OFFLINE was set to something else than 1 by the caller")
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest sets it before any import
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        mechscope.load("mechscope-tests/no-such-model")
    elapsed = time.perf_counter() - start
    msg = str(info.value)
    assert msg.startswith("could not load 'mechscope-tests/no-such-model'")
    assert "HF_HUB_OFFLINE=1 is set" in msg
    assert re.search(r"offline|network|connect", msg, flags=re.I)
    assert "mechscope.load()" in msg  # points at the embedded model
    assert elapsed < 15, f"offline failure took {elapsed:.1f} s: a network retry loop?"


def test_unreachable_hub_id_with_a_revision():
    with pytest.raises(ModelLoadError, match="at revision 'v1'"):
        mechscope.load("mechscope-tests/no-such-model", revision="v1")


def test_tokenizer_argument_only_with_a_model_object(tmp_path):
    _save(tmp_path)
    with pytest.raises(ModelLoadError, match=re.escape("tokenizer= is only for load(hf_model, tokenizer=tok).")):
        mechscope.load(str(tmp_path), tokenizer=tiny_tokenizer())
