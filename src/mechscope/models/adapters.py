"""Architecture adapters: where each model family keeps its layers, MLP neurons and heads.

An adapter turns the names researchers use ("layer 3's residual output", "MLP neurons",
"attention head 2") into module paths of a Hugging Face model, so interventions never
hard-code one family's attribute names.

>>> from mechscope.models.tiny import tiny_model
>>> m = tiny_model("gpt2")
>>> m.adapter.family, m.adapter.layers_path
('gpt2', 'transformer.h')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UnsupportedArchitectureError

#: Names of the per-layer sites every adapter provides (`mechscope.models.sites` defines them).
SITES = ("resid", "resid_pre", "attn", "mlp_in", "mlp", "neurons", "heads", "pattern")


@dataclass(frozen=True)
class Adapter:
    """Module paths (relative to the HF model) for one architecture family.

    Per layer ``L`` the sites are:

    - ``resid``: output of decoder block ``L`` (the residual stream after the block);
    - ``attn``: output of the attention module (first element if it returns a tuple);
    - ``mlp``: output of the MLP module;
    - ``neurons``: input of the MLP's down projection, i.e. post-nonlinearity neurons
      (``d_mlp`` of them);
    - ``heads``: input of the attention output projection, ``n_heads * d_head`` wide,
      one slice per head.
    """

    family: str
    layers_path: str
    attn_name: str
    mlp_name: str
    neurons_name: str  # module whose *input* is the neuron activation
    heads_name: str  # module whose *input* is the concatenated head outputs
    embed_path: str
    final_norm_path: str
    unembed_path: str
    n_layers_attr: str
    d_model_attr: str
    n_heads_attr: str
    d_mlp_attr: str

    def layer_path(self, layer: int) -> str:
        return f"{self.layers_path}.{layer}"

    def module_path(self, module: str, layer: int) -> str:
        """Dotted path of ``module`` ("block", "attn", "mlp", "neurons", "heads") at ``layer``."""
        base = self.layer_path(layer)
        names = {"block": None, "attn": self.attn_name, "mlp": self.mlp_name,
                 "neurons": self.neurons_name, "heads": self.heads_name}
        return base if names[module] is None else f"{base}.{names[module]}"

    def site_path(self, site: str, layer: int) -> str:
        """Dotted module path of ``site`` (see `mechscope.models.sites`) at ``layer``."""
        from .sites import site as get_site

        return self.module_path(get_site(site).module, layer)


LLAMA = Adapter(
    family="llama",
    layers_path="model.layers",
    attn_name="self_attn",
    mlp_name="mlp",
    neurons_name="mlp.down_proj",
    heads_name="self_attn.o_proj",
    embed_path="model.embed_tokens",
    final_norm_path="model.norm",
    unembed_path="lm_head",
    n_layers_attr="num_hidden_layers",
    d_model_attr="hidden_size",
    n_heads_attr="num_attention_heads",
    d_mlp_attr="intermediate_size",
)

GPT2 = Adapter(
    family="gpt2",
    layers_path="transformer.h",
    attn_name="attn",
    mlp_name="mlp",
    neurons_name="mlp.c_proj",
    heads_name="attn.c_proj",
    embed_path="transformer.wte",
    final_norm_path="transformer.ln_f",
    unembed_path="lm_head",
    n_layers_attr="n_layer",
    d_model_attr="n_embd",
    n_heads_attr="n_head",
    d_mlp_attr="n_inner",
)

GPT_NEOX = Adapter(
    family="gpt_neox",
    layers_path="gpt_neox.layers",
    attn_name="attention",
    mlp_name="mlp",
    neurons_name="mlp.dense_4h_to_h",
    heads_name="attention.dense",
    embed_path="gpt_neox.embed_in",
    final_norm_path="gpt_neox.final_layer_norm",
    unembed_path="lm_head",  # "embed_out" before transformers 5
    n_layers_attr="num_hidden_layers",
    d_model_attr="hidden_size",
    n_heads_attr="num_attention_heads",
    d_mlp_attr="intermediate_size",
)

#: model_type (from the HF config) -> adapter. Llama-family models share Llama's layout.
ADAPTERS: dict[str, Adapter] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "gemma": LLAMA,
    "gemma2": LLAMA,
    "olmo": LLAMA,
    "olmo2": LLAMA,
    "gpt2": GPT2,
    "gpt_neox": GPT_NEOX,
}


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def _module_tree(model: torch.nn.Module, depth: int = 3) -> str:
    lines = []
    for name, module in model.named_modules():
        if not name or name.count(".") >= depth:
            continue
        if any(p.isdigit() and p != "0" for p in name.split(".")):
            continue  # show one layer of each ModuleList
        lines.append(f"  {name}: {type(module).__name__}")
    return "\n".join(lines[:40])


def adapter_for(model: torch.nn.Module) -> Adapter:
    """The adapter for a Hugging Face causal LM, checked against its actual module tree."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    adapter = ADAPTERS.get(str(model_type))
    if adapter is not None:
        try:
            get_module(model, adapter.site_path("neurons", 0))
            get_module(model, adapter.site_path("heads", 0))
            get_module(model, adapter.final_norm_path)
            get_module(model, adapter.unembed_path)
        except (AttributeError, IndexError) as err:
            adapter = None
            reason = f"its module tree does not match the {model_type!r} layout ({err})"
        else:
            return adapter
    else:
        reason = f"no adapter is registered for model_type={model_type!r}"
    known = ", ".join(sorted(ADAPTERS))
    raise UnsupportedArchitectureError(
        f"mechscope cannot map {type(model).__name__}: {reason}.\n"
        f"Known model types: {known}.\n"
        f"Its module tree:\n{_module_tree(model)}\n"
        "Register one with mechscope.models.adapters.ADAPTERS[model_type] = Adapter(...)."
    )
