"""Bad inputs fail early, with a message that says what was wrong and how to fix it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mechscope
from mechscope import InputError, MechscopeError, ModelLoadError
from mechscope.metrics import logit_diff, prob
from mechscope.models.tiny import tiny_hf_model


@pytest.mark.parametrize("prompt, message", [
    ("", "the prompt is empty"),
    (b"\xff\xfe not utf-8", "not valid UTF-8"),
    (bytearray(b"\xc3\x28"), "not valid UTF-8"),
    (None, "a prompt must be a str, got NoneType"),
    (42, "a prompt must be a str, got int (several prompts: a list of str or a dataset"),
])
def test_bad_prompt(tiny_llama, prompt, message):
    with pytest.raises(InputError, match=re.escape(message)):
        mechscope.activations(tiny_llama, prompt)


def test_utf8_bytes_prompt_is_decoded(tiny_llama):
    text = "caf\u00e9 world"
    assert tiny_llama.to_tokens(text.encode("utf-8")).tolist() == tiny_llama.to_tokens(text).tolist()


def test_prompt_longer_than_context(tiny):
    assert tiny.max_positions == 128
    prompt = "hello world " * 100
    n = len(tiny.tokenizer(prompt)["input_ids"])
    assert n > 128
    msg = f"the prompt is {n} tokens long but {tiny.name} accepts at most 128 (its context length); shorten it."
    with pytest.raises(InputError, match=re.escape(msg)):
        mechscope.activations(tiny, prompt)


def test_prompt_at_the_context_limit_is_fine(tiny_llama):
    ids = tiny_llama.tokenizer("a " * 200)["input_ids"][:128]
    prompt = tiny_llama.tokenizer.decode(ids)
    assert tiny_llama.to_tokens(prompt).shape[1] == 128
    assert mechscope.activations(tiny_llama, prompt).values.shape == (2, 128)


@pytest.mark.parametrize("layer, expected", [(0, 0), (1, 1), (-1, 1), (-2, 0)])
def test_negative_layers_count_from_the_end(tiny_llama, layer, expected):
    assert tiny_llama.check_layer(layer) == expected
    assert tiny_llama.check_layer(np.int64(layer)) == expected
    r = mechscope.activations(tiny_llama, "hello", layers=[layer])
    assert r.layers == [expected]


@pytest.mark.parametrize("layer", [2, 3, -3, 100, -100])
def test_layer_out_of_range(tiny_llama, layer):
    msg = f"layer {layer} is out of range: this model has 2 layers (0..1; negative indices count from the end, down to -2)"
    with pytest.raises(InputError, match=re.escape(msg)):
        mechscope.activations(tiny_llama, "hello", layers=[0, layer])
    with pytest.raises(InputError, match=re.escape(msg)):
        tiny_llama.check_layer(layer)


@pytest.mark.parametrize("layer", [1.0, "1", True, None])
def test_layer_of_wrong_type(tiny_llama, layer):
    with pytest.raises(InputError, match="layer must be an int"):
        tiny_llama.check_layer(layer)


def test_empty_layer_list(tiny_llama):
    with pytest.raises(InputError, match="layers is empty"):
        mechscope.activations(tiny_llama, "hello", layers=[])


@pytest.mark.parametrize("site, neuron, width", [
    ("neurons", 128, 128), ("neurons", -129, 128), ("resid", 64, 64), ("mlp", 1000, 64),
])
def test_neuron_out_of_range(tiny_llama, site, neuron, width):
    unit = "neuron" if site == "neurons" else f"{site} dimension"
    msg = f"{unit} {neuron} is out of range: there are {width} {unit}s (0..{width - 1}; negative"
    with pytest.raises(InputError, match=re.escape(msg)):
        mechscope.activations(tiny_llama, "hello", site=site, neuron=neuron)


def test_negative_neuron_counts_from_the_end(tiny_llama):
    last = mechscope.activations(tiny_llama, "hello", site="neurons", neuron=-1)
    assert last.quantity == "unit 127"
    np.testing.assert_array_equal(
        last.values, mechscope.activations(tiny_llama, "hello", site="neurons", neuron=127).values)


@pytest.mark.parametrize("neuron", [1.5, "3", True])
def test_neuron_of_wrong_type(tiny_llama, neuron):
    with pytest.raises(InputError, match="neuron must be an int"):
        mechscope.activations(tiny_llama, "hello", site="neurons", neuron=neuron)


@pytest.mark.parametrize("site", ["residual", "heads", "", None])
def test_bad_site(tiny_llama, site):
    with pytest.raises(InputError, match=re.escape("site must be one of ('resid', 'attn', 'mlp', 'neurons')")):
        mechscope.activations(tiny_llama, "hello", site=site)


def test_multi_token_metric_token(tiny_llama):
    word = " Zanzibar"
    pieces = [tiny_llama.tokenizer.decode([i]) for i in tiny_llama.tokenizer(word)["input_ids"]]
    assert len(pieces) > 1
    with pytest.raises(InputError) as info:
        logit_diff(word, " the").bind(tiny_llama)
    msg = str(info.value)
    assert f"{word!r} is {len(pieces)} tokens {pieces}, not one" in msg
    assert "mind the leading space" in msg


@pytest.mark.parametrize("token, message", [
    ("", "non-empty str or an int id"),
    (400, "token id 400 is out of range 0..399"),
    (-1, "token id -1 is out of range"),
    (True, "a token must be a str or an int id"),
    (2.0, "non-empty str or an int id"),
])
def test_bad_metric_token(tiny_llama, token, message):
    with pytest.raises(InputError, match=re.escape(message)):
        prob(token).bind(tiny_llama)


def test_single_token_metric_binds(tiny_llama):
    tid = tiny_llama.to_single_token(" the")
    assert tiny_llama.tokenizer.decode([tid]) == " the"
    assert logit_diff(" the", tid).bind(tiny_llama).name.startswith("logit_diff")


@pytest.mark.parametrize("path", ["./no/such/dir", "/no/such/dir", "~/no/such/dir", "a/b/c"])
def test_unknown_model_path(path):
    with pytest.raises(ModelLoadError) as info:
        mechscope.load(path)
    msg = str(info.value)
    assert f"no model at {path!r}: that path does not exist" in msg
    assert "mechscope.load()" in msg


def test_load_hf_model_without_tokenizer():
    with pytest.raises(ModelLoadError, match=re.escape("load(hf_model) needs its tokenizer too: load(hf_model, tokenizer=tok)")):
        mechscope.load(tiny_hf_model("gpt2"))


@pytest.mark.parametrize("source", ["", "   ", 42])
def test_load_of_something_that_is_not_a_model(source):
    with pytest.raises(ModelLoadError, match="load\\(\\) takes a path, a hub id, a torch model or nothing"):
        mechscope.load(source)


def test_errors_share_a_base_class():
    assert issubclass(InputError, MechscopeError) and issubclass(InputError, ValueError)
    assert issubclass(ModelLoadError, MechscopeError)


def test_a_list_of_prompts_is_a_dataset(tiny_llama):
    """Several prompts are no longer refused: every verb that reads prompts takes a list."""
    r = mechscope.activations(tiny_llama, ["hello", "hello world"])
    assert r.n == 2 and r.roles == ["END"]
    with pytest.raises(InputError, match="the list of prompts is empty|dataset 'prompts' is empty"):
        mechscope.activations(tiny_llama, [])
