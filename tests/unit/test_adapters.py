"""Architecture adapters on the three tiny families: sizes, site paths, site shapes in a real trace."""

from __future__ import annotations

import pytest
import torch

import mechscope
from mechscope import UnsupportedArchitectureError
from mechscope.models.adapters import ADAPTERS, SITES, adapter_for, get_module
from mechscope.models.tiny import tiny_tokenizer

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
        for site in SITES:
            module = tiny.hf_module(site, layer)
            assert module is get_module(tiny.hf, a.site_path(site, layer))
            assert isinstance(module, torch.nn.Module)
    for path in (a.embed_path, a.final_norm_path, a.unembed_path, a.layers_path):
        assert isinstance(tiny.hf_module_at(path), torch.nn.Module)
    assert len(tiny.hf_module_at(a.layers_path)) == tiny.n_layers
    # The envoy tree mirrors the HF tree.
    assert tiny.envoy("neurons", 1)._module is tiny.hf_module("neurons", 1)


def test_site_shapes_inside_a_trace(tiny):
    ids = tiny.to_tokens(PROMPT)
    n = ids.shape[1]
    saved = {}
    # Sites are read in execution order: heads input, attn output, neurons input, mlp output, block output.
    with torch.no_grad(), tiny.nn.trace(ids):
        for layer in range(tiny.n_layers):
            heads = tiny.envoy("heads", layer).input
            attn = tiny.envoy("attn", layer).output
            neurons = tiny.envoy("neurons", layer).input
            mlp = tiny.envoy("mlp", layer).output
            resid = tiny.envoy("resid", layer).output
            saved[layer, "heads"] = heads.save()
            saved[layer, "attn"] = (attn[0] if isinstance(attn, tuple) else attn).save()
            saved[layer, "neurons"] = neurons.save()
            saved[layer, "mlp"] = mlp.save()
            saved[layer, "resid"] = (resid[0] if isinstance(resid, tuple) else resid).save()
        logits = tiny.nn.output.logits.save()
    expected = {"resid": tiny.d_model, "attn": tiny.d_model, "mlp": tiny.d_model,
                "neurons": tiny.d_mlp, "heads": tiny.n_heads * tiny.d_head}
    for layer in range(tiny.n_layers):
        for site, width in expected.items():
            assert tuple(saved[layer, site].shape) == (1, n, width), (layer, site)
    assert tuple(logits.shape) == (1, n, tiny.vocab_size)


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
