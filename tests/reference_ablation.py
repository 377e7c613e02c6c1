"""An independent reference for ablation: plain torch forward hooks on ``model.hf`` (no nnsight).

It follows the documented definitions of `mechscope.ablate`, not its code: every run here is a
separate unbatched HF forward pass (the mean runs each reference prompt alone, unpadded) with a hook that
replaces the activation.
"""

from __future__ import annotations

import numpy as np
import torch


def _module(model, path: str) -> torch.nn.Module:
    mod = model.hf
    for part in path.split("."):
        mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
    return mod


def _where(model, kind: str, layer: int, indices, site: str):
    """(module, "pre" | "post", column index tensor or None)."""
    layer = layer % model.n_layers
    if kind == "layer":
        name = model.adapter.attn_name if site == "attn" else model.adapter.mlp_name
        return _module(model, f"{model.adapter.layer_path(layer)}.{name}"), "post", None
    if kind == "neurons":
        path = f"{model.adapter.layer_path(layer)}.{model.adapter.neurons_name}"
        cols = torch.tensor([i % model.d_mlp for i in indices])
        return _module(model, path), "pre", cols
    path = f"{model.adapter.layer_path(layer)}.{model.adapter.heads_name}"
    mod = _module(model, path)
    width = mod.in_features if isinstance(mod, torch.nn.Linear) else mod.weight.shape[0]  # Conv1D: (in, out)
    d_head = width // model.n_heads
    cols = torch.cat([torch.arange((h % model.n_heads) * d_head, (h % model.n_heads + 1) * d_head)
                      for h in indices])
    return mod, "pre", cols


def _capture(model, module, when, cols, **inputs) -> torch.Tensor:
    got = {}

    def pre(_mod, args):
        got["x"] = args[0].detach().clone()

    def post(_mod, _args, out):
        got["x"] = (out[0] if isinstance(out, tuple) else out).detach().clone()

    handle = module.register_forward_pre_hook(pre) if when == "pre" else module.register_forward_hook(post)
    try:
        with torch.no_grad():
            model.hf(**inputs)
    finally:
        handle.remove()
    x = got["x"]
    return x if cols is None else x[..., cols]


def _final_logits(model, ids, module=None, when=None, cols=None, value=None) -> torch.Tensor:
    def replace(x):
        x = x.clone()
        if cols is None:
            x[...] = value
        else:
            x[..., cols] = value
        return x

    def pre(_mod, args):
        return (replace(args[0]), *args[1:])

    def post(_mod, _args, out):
        if isinstance(out, tuple):
            return (replace(out[0]), *out[1:])
        return replace(out)

    handle = None
    if module is not None:
        handle = module.register_forward_pre_hook(pre) if when == "pre" else module.register_forward_hook(post)
    try:
        with torch.no_grad():
            return model.hf(input_ids=ids).logits[0, -1].float()
    finally:
        if handle is not None:
            handle.remove()


def reference_ablation(model, prompt: str, kind: str, layer: int, indices=(), site: str = "",
                       method: str = "zero", reference=None, seed: int = 0):
    """(clean final-position logits, ablated final-position logits) as numpy arrays."""
    module, when, cols = _where(model, kind, layer, indices, site)
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    clean = _final_logits(model, ids)
    if method == "zero":
        value = torch.zeros(())
    elif method == "mean":
        # each reference prompt on its own (no padding at all), then the mean over every position
        acts = [_capture(model, module, when, cols,
                         input_ids=model.tokenizer(p, return_tensors="pt")["input_ids"])[0]
                for p in reference]
        value = torch.cat(acts).mean(0)
    else:
        n = ids.shape[1]
        all_ids = [model.tokenizer(p, return_tensors="pt")["input_ids"] for p in reference]
        eligible = [i for i, r in enumerate(all_ids) if r.shape[1] >= n]
        pick = eligible[int(np.random.default_rng(seed).integers(len(eligible)))]
        value = _capture(model, module, when, cols, input_ids=all_ids[pick][:, :n])[0]
    ablated = _final_logits(model, ids, module, when, cols, value)
    return clean.numpy(), ablated.numpy()
