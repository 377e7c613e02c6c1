"""An independent reference for activation patching: plain torch forward hooks on ``model.hf``.

No nnsight and no mechscope code path: it follows the documented definition of
`mechscope.patch` literally. Every patched cell is its own unbatched HF forward pass of the
corrupt prompt, with one hook that writes the clean run's value into the site:

- ``resid``: the decoder block's output at one position;
- ``attn`` / ``mlp``: the attention / MLP module's output at one position;
- ``heads``: head ``h``'s ``d_head`` columns of the input of the attention output projection,
  at the given positions (all of them by default) at once.

Slow by design (one forward per cell), so keep it to tiny models or a few cells.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def _module(model, path: str) -> torch.nn.Module:
    mod = model.hf
    for part in path.split("."):
        mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
    return mod


def site_module(model, site: str, layer: int) -> tuple[torch.nn.Module, str]:
    """The module holding ``site`` at ``layer`` and whether the value is its input ("pre") or output."""
    a = model.adapter
    base = f"{a.layers_path}.{layer}"
    where = {"resid": (base, "post"), "resid_pre": (base, "pre"),
             "attn": (f"{base}.{a.attn_name}", "post"), "mlp": (f"{base}.{a.mlp_name}", "post"),
             "mlp_in": (f"{base}.{a.mlp_name}", "pre"),
             "neurons": (f"{base}.{a.neurons_name}", "pre"), "heads": (f"{base}.{a.heads_name}", "pre")}
    if site not in where:
        raise ValueError(site)
    path, port = where[site]
    return _module(model, path), port


def _ids(model, prompt: str) -> torch.Tensor:
    return model.tokenizer(prompt, return_tensors="pt")["input_ids"]


def _last_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(input_ids=ids).logits[0, -1].float()


def capture(model, prompt: str, site: str, layer: int) -> torch.Tensor:
    """The site's value on one prompt, shape (n_tokens, width)."""
    module, when = site_module(model, site, layer)
    got: dict[str, torch.Tensor] = {}

    def pre(_mod, args):
        got["x"] = args[0][0].detach().clone()

    def post(_mod, _args, out):
        got["x"] = (out[0] if isinstance(out, tuple) else out)[0].detach().clone()

    handle = module.register_forward_pre_hook(pre) if when == "pre" else module.register_forward_hook(post)
    try:
        _last_logits(model, _ids(model, prompt))
    finally:
        handle.remove()
    return got["x"]


def patched_logits(model, corrupt: str, site: str, layer: int, positions: list[int],
                   value: torch.Tensor, cols: slice | None = None) -> torch.Tensor:
    """Final-position logits of ``corrupt`` with ``value`` (n, width) written at ``positions`` (and ``cols``)."""
    module, when = site_module(model, site, layer)
    pos = torch.tensor(positions)
    cs = slice(None) if cols is None else cols

    def write(x: torch.Tensor) -> None:
        x[0, pos, cs] = value[pos, cs]

    def pre(_mod, args):
        write(args[0])

    def post(_mod, _args, out):
        write(out[0] if isinstance(out, tuple) else out)

    handle = module.register_forward_pre_hook(pre) if when == "pre" else module.register_forward_hook(post)
    try:
        return _last_logits(model, _ids(model, corrupt))
    finally:
        handle.remove()


def reference_patching(model, clean: str, corrupt: str, metric: Callable[[torch.Tensor, torch.Tensor], float],
                       site: str = "resid", positions: list[int] | None = None,
                       layers: list[int] | None = None) -> tuple[np.ndarray, float, float]:
    """(values (layers, columns), clean metric, corrupt metric), one HF forward per cell.

    ``metric(logits, clean_logits)`` takes final-position logits (vocab,) and returns a float.
    """
    n = int(_ids(model, clean).shape[1])
    positions = list(range(n)) if positions is None else [p % n for p in positions]
    layers = list(range(model.n_layers)) if layers is None else layers
    clean_logits = _last_logits(model, _ids(model, clean))
    corrupt_logits = _last_logits(model, _ids(model, corrupt))
    rows = []
    for layer in layers:
        clean_act = capture(model, clean, site, layer)
        row = []
        if site == "heads":
            d_head = clean_act.shape[-1] // model.n_heads
            for h in range(model.n_heads):
                lg = patched_logits(model, corrupt, site, layer, positions, clean_act,
                                    slice(h * d_head, (h + 1) * d_head))
                row.append(metric(lg, clean_logits))
        else:
            for p in positions:
                lg = patched_logits(model, corrupt, site, layer, [p], clean_act)
                row.append(metric(lg, clean_logits))
        rows.append(row)
    return (np.asarray(rows, dtype=np.float64), metric(clean_logits, clean_logits),
            metric(corrupt_logits, clean_logits))


def reference_attribution(model, clean: str, corrupt: str,
                          metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                          site: str = "resid", positions: list[int] | None = None) -> np.ndarray:
    """Attribution patching by hand: metric(corrupt) + grad . (clean - corrupt) per cell.

    One HF forward of ``corrupt`` with hooks keeping every layer's site tensor, then
    ``torch.autograd.grad`` of the (differentiable) ``metric(logits, clean_logits)`` with respect
    to them. Heads sum their positions, like exact head patching patches them together.
    """
    n = int(_ids(model, clean).shape[1])
    positions = list(range(n)) if positions is None else [p % n for p in positions]
    clean_logits = _last_logits(model, _ids(model, clean))
    clean_acts = [capture(model, clean, site, layer) for layer in range(model.n_layers)]
    kept: list[torch.Tensor] = []
    handles = []
    for layer in range(model.n_layers):
        module, when = site_module(model, site, layer)
        if when == "pre":
            handles.append(module.register_forward_pre_hook(lambda _m, args: kept.append(args[0])))
        else:
            handles.append(module.register_forward_hook(
                lambda _m, _a, out: kept.append(out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.enable_grad():
            logits = model.hf(input_ids=_ids(model, corrupt)).logits[0, -1].float()
            value = metric(logits, clean_logits)
            grads = torch.autograd.grad(value, kept)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for act, grad, clean_act in zip(kept, grads, clean_acts, strict=True):
        cell = (grad[0] * (clean_act - act[0].detach()))[positions]
        if site == "heads":
            rows.append(cell.reshape(len(positions), model.n_heads, -1).sum(dim=(0, 2)))
        else:
            rows.append(cell.sum(-1))
    return float(value.detach()) + torch.stack(rows).numpy().astype(np.float64)


def hf_greedy(model, prompt, n):
    """Hugging Face's own greedy ``generate`` (no mechscope, no nnsight): the ``n`` new token ids."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=n, pad_token_id=model.tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def replaced_logits(model, ids: torch.Tensor, site: str, layer: int, change) -> torch.Tensor:
    """Logits (positions, vocab) of one unpadded row ``ids`` (1, n) with ``change(x_in, y) -> y'``
    at the site's output by plain torch hooks (``resid``: the block output, x_in = y; ``mlp``: the
    MLP output, x_in = the MLP's input); ``change=None``: the clean run."""
    handles = []
    if change is not None:
        module, _ = site_module(model, site, layer)
        seen = {}
        handles.append(module.register_forward_pre_hook(lambda _m, a: seen.__setitem__("x", a[0])))

        def post(_m, _a, out):
            y = out[0] if isinstance(out, tuple) else out
            new = change(seen["x"] if site == "mlp" else y, y).to(y.dtype)
            return (new, *out[1:]) if isinstance(out, tuple) else new
        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad():
            return model.hf(input_ids=ids).logits[0].float()
    finally:
        for h in handles:
            h.remove()
