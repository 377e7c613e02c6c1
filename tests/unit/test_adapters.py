"""Architecture adapters on the three tiny families: sizes, site paths, site shapes in a real trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope import InputError, UnsupportedArchitectureError
from mechscope.models.adapters import ADAPTERS, SITES, adapter_for, get_module
from mechscope.models.sites import site
from mechscope.models.tiny import tiny_tokenizer
from mechscope.models.trace import save

# tiny_model defaults: 2 layers, d_model 64, 4 heads, d_mlp 128.
SIZES = {"n_layers": 2, "d_model": 64, "d_mlp": 128, "n_heads": 4, "d_head": 16}
PROMPT = "hello world"


def test_sizes(tiny):
    assert {name: getattr(tiny, name) for name in SIZES} == SIZES
    assert tiny.vocab_size == 400
    assert tiny.max_positions == 128
    assert tiny.adapter is ADAPTERS[tiny.config.model_type]


def test_sizes_follow_the_config():
    m = mechscope.tiny_model("gpt2", n_layers=3, d_model=48, n_heads=6, d_mlp=96)
    assert (m.n_layers, m.d_model, m.d_mlp, m.n_heads, m.d_head) == (3, 48, 96, 6, 8)


def test_every_site_path_resolves(tiny):
    a = tiny.adapter
    for layer in range(tiny.n_layers):
        for name in SITES:
            module = tiny.hf_module(name, layer)
            assert module is get_module(tiny.hf, a.site_path(name, layer))
            assert isinstance(module, torch.nn.Module)
    for path in (a.embed_path, a.final_norm_path, a.unembed_path, a.layers_path):
        assert isinstance(tiny.hf_module_at(path), torch.nn.Module)
    assert len(tiny.hf_module_at(a.layers_path)) == tiny.n_layers
    # The envoy tree mirrors the HF tree.
    assert tiny.at("neurons", 1).envoy._module is tiny.hf_module("neurons", 1)


#: Every per-layer site, in the order a forward pass reaches it.
_EXECUTION_ORDER = ("resid_pre", "heads", "attn", "neurons", "mlp", "resid")


def _plain_hook_values(tiny, ids):
    """Each site's tensor at each layer from plain torch forward hooks on the HF modules."""
    seen = {}
    hooks = []
    for layer in range(tiny.n_layers):
        for name in _EXECUTION_ORDER:
            s = site(name)
            module = get_module(tiny.hf, tiny.adapter.module_path(s.module, layer))

            def hook(mod, args, kwargs, out, key=(layer, name), port=s.port):
                value = (args[0] if args else next(iter(kwargs.values()))) if port == "input" else out
                seen[key] = (value[0] if isinstance(value, tuple) else value).detach().clone()

            hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            logits = tiny.hf(ids).logits
    finally:
        for h in hooks:
            h.remove()
    return seen, logits


def test_site_refs_read_what_plain_hooks_see(tiny):
    ids = tiny.to_tokens(PROMPT)
    n = ids.shape[1]
    expected, ref_logits = _plain_hook_values(tiny, ids)
    refs = {(layer, name): tiny.at(name, layer)
            for layer in range(tiny.n_layers) for name in _EXECUTION_ORDER}
    unembed = tiny.logits()
    with tiny.trace(ids):
        got = save({key: ref.read() for key, ref in refs.items()})
        logits = save(unembed.all())
    for (layer, name), value in got.items():
        assert tuple(value.shape) == (1, n, tiny.width(name)), (layer, name)
        torch.testing.assert_close(value, expected[layer, name], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    assert not hasattr(logits, "save")  # nnsight's PYMOUNT is off: results carry no .save


def test_site_vocabulary_aliases_and_errors(tiny):
    assert site("mlp_neurons") is site("neurons") and site("z") is site("heads")
    assert tiny.units("heads") == tiny.n_heads and tiny.width("heads") == tiny.n_heads * tiny.d_head
    assert tiny.at("resid", -1).layer == tiny.n_layers - 1
    with pytest.raises(InputError, match="site must be one of .* got 'mlp_output'"):
        site("mlp_output")
    with pytest.raises(InputError, match=r"for patch, got 'neurons' \(the MLP neurons"):
        site("neurons", allowed=("resid", "heads"), verb="patch")


def _tiny_bert():
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, is_decoder=True)
    return BertLMHeadModel(config)


def test_unknown_family_names_its_module_tree():
    with pytest.raises(UnsupportedArchitectureError) as info:
        mechscope.load(_tiny_bert(), tokenizer=tiny_tokenizer())
    msg = str(info.value)
    assert "BertLMHeadModel" in msg
    assert "model_type='bert'" in msg
    assert "bert.encoder.layer: ModuleList" in msg  # the module tree is shown
    assert "llama" in msg and "gpt2" in msg  # and the known types
    assert "ADAPTERS[model_type]" in msg  # and how to register one


class _Config:
    model_type = "llama"  # claims to be a Llama...


class _NotALlama(torch.nn.Module):
    """...but keeps its blocks somewhere else."""

    def __init__(self):
        super().__init__()
        self.config = _Config()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])
        self.head = torch.nn.Linear(4, 10)


def test_custom_module_that_does_not_match_its_model_type():
    with pytest.raises(UnsupportedArchitectureError) as info:
        adapter_for(_NotALlama())
    msg = str(info.value)
    assert "_NotALlama" in msg
    assert "does not match the 'llama' layout" in msg
    assert "blocks: ModuleList" in msg and "head: Linear" in msg


def test_module_without_config():
    with pytest.raises(UnsupportedArchitectureError, match="model_type=None"):
        adapter_for(torch.nn.Linear(3, 3))


def test_padded_batch_computes_what_each_text_computes_alone(tiny):
    """`Model.encode` left-pads with position ids that count real tokens: on every family
    (GPT-2's absolute positions included) a padded row equals the text run alone."""
    texts = ["The cat sat on the mat today", "A dog", "hello"]
    enc = tiny.encode(texts)
    resid = tiny.at("resid", 0)
    with tiny.trace(enc):
        batched = save(resid.read())
    for row, text in enumerate(texts):
        ids = tiny.to_tokens(text)
        with torch.no_grad():
            alone = tiny.hf(ids, output_hidden_states=True).hidden_states[1][0]  # block 0's output
        n = ids.shape[1]
        torch.testing.assert_close(batched[row, -n:], alone, rtol=0, atol=1e-5)


def test_selectivity_token_activations_equal_unpadded_runs_on_gpt2():
    model = mechscope.tiny_model("gpt2")
    examples = {"a": ["the cat sat on the mat", "a dog"], "b": ["hello world again and again", "x"]}
    sel = mechscope.selectivity(model, examples, layer=0, site="resid")
    for text, acts in zip(sel.texts, sel.token_acts, strict=True):
        with torch.no_grad():
            alone = model.hf(model.to_tokens(text), output_hidden_states=True).hidden_states[1][0]
        np.testing.assert_allclose(acts, alone.numpy(), rtol=0, atol=1e-5)
