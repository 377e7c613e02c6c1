"""The local replacement model of one prompt, and the backward passes that read its direct effects.

The model runs for real; then a second, batched pass makes the residual stream linear in the
graph's nodes (Ameisen et al. 2025, the circuit-tracer method):

- every MLP output is replaced by a leaf holding its real value (so values are exact); for a
  skip transcoder the linear skip path ``mlp_in @ W_skip`` is added with zero value but its
  gradient, so gradients cross MLPs only through the transcoder's linear part;
- the attention patterns are frozen (the ``q_proj`` and ``k_proj`` outputs are detached, so
  softmax(q k) is a constant and a head is linear in its values);
- every RMSNorm is frozen at its real scale: ``out.detach() + (x - x.detach()) * w *
  rsqrt(mean(x^2) + eps)``, exact in value, linear in gradient.

Nodes of the graph: active transcoder features (the real model's MLP inputs encoded), one error
node per (layer, position) (MLP output minus reconstruction), one embedding node per position
and the logit nodes. A target's row of the adjacency is one backward pass: its encoder column
(a feature's pre-activation) or its de-meaned unembedding (a logit) is injected as the gradient
at its input; the gradient at each MLP output dotted with activation x decoder row (a feature)
or the error vector, and at the embeddings dotted with the embedding, is the direct effect.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> tcs = {l: SAE.random(64, 16, kind="transcoder", architecture="topk", k=4, layer=l) for l in range(2)}
>>> run = forward(model, model.to_tokens("a cat"), check_transcoders(model, tcs, "demo"))
>>> run.n_features, tuple(run.errors.shape)      # 2 layers x 2 tokens x k=4; (layers, positions, d_model)
(16, (2, 2, 64))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..interventions.patch_traces import frozen_parameters
from ..models.trace import save
from .graph import module_paths

#: Model types whose layers are Llama-like with RMSNorm (``weight * x * rsqrt(mean(x^2) + eps)``).
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def check_family(model: Any, verb: str) -> None:
    """`InputError` unless the model's norms and attention have the layout the method freezes."""
    model_type = str(getattr(model.config, "model_type", ""))
    if model_type not in FAMILIES:
        raise InputError(f"{verb} supports Llama-like models with RMSNorm ({', '.join(FAMILIES)}); "
                         f"{model.name} has model_type={model_type!r}. Use mechscope.circuits.edge_attribution "
                         "for component circuits on it.")


def check_transcoders(model: Any, transcoders: Any, verb: str) -> list[Any]:
    """The transcoders as a list with one per layer, each checked to fit ``model``.

    ``transcoders``: a dict {layer: SAE} or a list/tuple with one SAE per layer (in order).
    Every layer needs one (``kind`` transcoder or skip_transcoder, ``mlp_in`` -> ``mlp`` at that
    layer, d_in = d_out = d_model)."""
    from ..sae.dictionary import SAE

    n, d = model.n_layers, model.d_model
    if isinstance(transcoders, (list, tuple)):
        transcoders = dict(enumerate(transcoders))
    if not isinstance(transcoders, dict):
        raise InputError(f"transcoders must be a dict {{layer: SAE}} (e.g. mechscope.sae.embedded_transcoders(model)) "
                         f"or a list with one per layer, got {type(transcoders).__name__}.")
    missing = [layer for layer in range(n) if layer not in transcoders]
    extra = [k for k in transcoders if k not in range(n)]
    if extra:
        raise InputError(f"transcoders has keys {extra[:5]} that are not layers of {model.name} (0..{n - 1}).")
    if missing:
        raise InputError(f"an attribution graph needs a transcoder at every MLP layer; missing for layers "
                         f"{missing} of 0..{n - 1}: pass one per layer (mechscope.sae.embedded_transcoders(model)).")
    out = []
    for layer in range(n):
        tc = transcoders[layer]
        if not isinstance(tc, SAE):
            raise InputError(f"transcoders[{layer}] must be a mechscope.sae.SAE, got {type(tc).__name__}.")
        c = tc.cfg
        if c.kind not in ("transcoder", "skip_transcoder") or c.site != "mlp_in" or c.site_out != "mlp":
            raise InputError(f"transcoders[{layer}] is a {c.kind} reading {c.site!r} and writing {c.site_out!r}; "
                             "an attribution graph needs transcoders (kind='transcoder', mlp_in -> mlp), not "
                             "sparse autoencoders.")
        if c.layer != layer or c.layer_out != layer:
            raise InputError(f"transcoders[{layer}] was made for layer {c.layer} -> {c.layer_out}; give each layer "
                             "its own transcoder (cfg.layer == layer).")
        if c.d_in != d or c.d_out != d:
            raise InputError(f"transcoders[{layer}] has d_in={c.d_in}, d_out={c.d_out} but {model.name} has "
                             f"d_model={d}: use transcoders trained on this model.")
        out.append(tc)
    return out


@dataclass
class Forward:
    """The real run of one prompt (positions P, layers N, d_model d): ``ids`` (1, P),
    ``embeds`` (P, d), ``mlp_out`` (N, P, d), ``errors`` (N, P, d), the active features
    ``feat_layer`` / ``feat_pos`` / ``feat_index`` / ``feat_act`` (F,) sorted by layer, position,
    index, ``logits`` (vocab,) at the last position."""

    ids: torch.Tensor
    embeds: torch.Tensor
    mlp_out: torch.Tensor
    errors: torch.Tensor
    feat_layer: torch.Tensor
    feat_pos: torch.Tensor
    feat_index: torch.Tensor
    feat_act: torch.Tensor
    logits: torch.Tensor

    @property
    def n_features(self) -> int:
        return int(self.feat_act.numel())

    def cells(self) -> list[tuple[int, int, int, int]]:
        """(layer, position, start, end) of each run of features sharing a layer and position."""
        key = (self.feat_layer * self.embeds.shape[0] + self.feat_pos).tolist()
        out, start = [], 0
        for i in range(1, len(key) + 1):
            if i == len(key) or key[i] != key[start]:
                out.append((int(self.feat_layer[start]), int(self.feat_pos[start]), start, i))
                start = i
        return out


def _encode(tc: Any, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations (P, d_sae) of MLP inputs ``x`` (P, d) and the error ``out`` - reconstruction."""
    with torch.no_grad():
        f = tc.activate(tc.pre_activations(x.float()))
        recon = f @ tc.W_dec + tc.b_dec
        if tc.cfg.kind == "skip_transcoder":
            recon = recon + x.float() @ tc.W_skip
    return f, out.float() - recon


def forward(model: Any, ids: torch.Tensor, transcoders: list[Any]) -> Forward:
    """The real forward pass of ``ids`` (1, P): embeddings, MLP inputs and outputs, logits;
    the active features and error vectors of every layer."""
    layers = range(model.n_layers)
    mlp = [model.envoy_at(module_paths(model, layer)["mlp"]) for layer in layers]
    embed = model.envoy_at(model.adapter.embed_path)
    parts: list[Any] = []  # filled inside the trace
    with model.trace(ids, use_cache=False):
        parts.append(save(embed.output[0].float()))
        for layer in layers:
            parts.append(save([mlp[layer].input[0].float(), mlp[layer].output[0].float()]))
        parts.append(save(model.logits().last()[0].float()))
    embeds, logits = parts[0], parts[-1]
    outs, errors, found = [], [], []
    for layer, (x, out) in enumerate(parts[1:-1]):
        f, err = _encode(transcoders[layer], x, out)
        outs.append(out)
        errors.append(err)
        pos, index = torch.nonzero(f > 0, as_tuple=True)
        found.append((torch.full_like(pos, layer), pos, index, f[pos, index]))
    cat = [torch.cat([row[i] for row in found]) for i in range(4)]
    return Forward(ids, embeds, torch.stack(outs), torch.stack(errors), cat[0], cat[1], cat[2], cat[3].float(), logits)


def _frozen_norm(norm: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` in value; gradient as if the RMS scale were a constant."""
    eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
    xd = x.detach().float()
    weight: torch.Tensor = norm.weight  # type: ignore[assignment]
    coeff = weight.detach().float() * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps)
    return (out.detach().float() + (x.float() - xd) * coeff).to(out.dtype)


@dataclass
class Linearised:
    """The batched replacement pass: autograd leaves ``embed`` (B, P, d) and ``mlp`` (N of (B, P, d)),
    and the targets' inputs ``mlp_in`` (N of (B, P, d)) and ``logits`` (B, vocab) built from them."""

    embed: torch.Tensor
    mlp: list[torch.Tensor]
    mlp_in: list[torch.Tensor]
    logits: torch.Tensor


def linearise(model: Any, run: Forward, transcoders: list[Any], batch: int) -> Linearised:
    """The replacement model's forward pass over ``batch`` copies of the prompt (see the module
    docstring); call inside ``torch.enable_grad()`` and `frozen_parameters`."""
    n = model.n_layers
    paths = [module_paths(model, layer) for layer in range(n)]
    dtype = next(model.hf.parameters()).dtype
    embed_leaf = run.embeds[None].expand(batch, -1, -1).to(dtype).clone().requires_grad_(True)
    leaves = [run.mlp_out[layer][None].expand(batch, -1, -1).to(dtype).clone().requires_grad_(True)
              for layer in range(n)]
    skip = [tc.W_skip.detach() if tc.cfg.kind == "skip_transcoder" else None for tc in transcoders]
    final_path = model.adapter.final_norm_path
    final = model.envoy_at(final_path)
    reads: list[Any] = []  # filled inside the trace
    with model.trace(run.ids.expand(batch, -1), grad=True, use_cache=False):
        model.envoy_at(model.adapter.embed_path).output = embed_leaf
        for layer in range(n):
            env = {k: model.envoy_at(p) for k, p in paths[layer].items()}
            env["norm1"].output = _frozen_norm(model.hf_module_at(paths[layer]["norm1"]), env["norm1"].input,
                                               env["norm1"].output)
            env["q"].output = env["q"].output.detach()
            env["k"].output = env["k"].output.detach()
            env["norm2"].output = _frozen_norm(model.hf_module_at(paths[layer]["norm2"]), env["norm2"].input,
                                               env["norm2"].output)
            x = env["mlp"].input
            reads.append(save(x))
            env["mlp"].input = x.detach()  # the MLP itself is replaced: record nothing inside it
            w = skip[layer]
            if w is None:
                env["mlp"].output = leaves[layer]
            else:
                lin = x @ w.to(x.dtype)
                env["mlp"].output = leaves[layer] + (lin - lin.detach())
        final.output = _frozen_norm(model.hf_module_at(final_path), final.input, final.output)
        reads.append(save(model.logits().last()))
    return Linearised(embed_leaf, leaves, reads[:-1], reads[-1])


@dataclass
class Targets:
    """One batch of targets (B rows): feature targets as (row, layer, position, encoder column
    (d,)) and logit targets as (row, de-meaned one-hot (vocab,))."""

    features: list[tuple[int, int, int, torch.Tensor]]
    logits: list[tuple[int, torch.Tensor]]


def rows(lin: Linearised, run: Forward, targets: Targets, decoders: torch.Tensor) -> torch.Tensor:
    """Direct effects (B, n_sources) on each target of every source: all active features (in
    ``run``'s order; ``decoders`` (F, d) are their decoder rows), then the error nodes (layer,
    position), then the embeddings (position). Features are read one (layer, position) cell at a
    time: no (B, F, d) array is formed."""
    b = lin.embed.shape[0]
    seeds = [torch.zeros_like(t) for t in lin.mlp_in] + [torch.zeros_like(lin.logits)]
    for row, layer, pos, w in targets.features:
        seeds[layer][row, pos] = w.to(seeds[layer].dtype)
    for row, direction in targets.logits:
        seeds[-1][row] = direction.to(seeds[-1].dtype)
    used = sorted({layer for _, layer, _, _ in targets.features}) + ([len(lin.mlp_in)] if targets.logits else [])
    outputs = lin.mlp_in + [lin.logits]
    grads = torch.autograd.grad([outputs[i] for i in used], [lin.embed, *lin.mlp], [seeds[i] for i in used],
                                retain_graph=True, allow_unused=True)
    g_embed = torch.zeros_like(lin.embed) if grads[0] is None else grads[0]
    g_mlp = torch.stack([torch.zeros_like(lin.embed) if g is None else g for g in grads[1:]], 1).float()  # (B, N, P, d)
    feats = torch.zeros(b, run.n_features)
    for layer, pos, start, end in run.cells():
        feats[:, start:end] = g_mlp[:, layer, pos] @ decoders[start:end].T
    feats *= run.feat_act[None]
    errors = (g_mlp * run.errors[None]).sum(-1).reshape(b, -1)
    embeds = (g_embed.float() * run.embeds[None]).sum(-1)
    return torch.cat([feats, errors, embeds], 1)


def direct_effects(model: Any, run: Forward, transcoders: list[Any], batch: int
                   ) -> Callable[[Targets], torch.Tensor]:
    """A function from a batch of targets to their rows (see `rows`), all sharing one
    replacement pass of ``batch`` copies. The model's parameters stay frozen only while a
    call runs, so use it inside `frozen_parameters` (as `attribution_graph` does)."""
    with torch.enable_grad():
        lin = linearise(model, run, transcoders, batch)
    decoders = torch.stack([transcoders[int(layer)].W_dec.detach()[int(f)].float()
                            for layer, f in zip(run.feat_layer, run.feat_index, strict=True)]) \
        if run.n_features else torch.zeros(0, model.d_model)

    def compute(targets: Targets) -> torch.Tensor:
        with torch.enable_grad():
            return rows(lin, run, targets, decoders).detach()

    return compute


def _decoder_tokens(model: Any, decoders: torch.Tensor, top: int = 3, chunk: int = 256) -> list[list[int]]:
    """The ``top`` token ids each decoder row (S, d) promotes most directly (through the final
    norm's weight and the unembedding)."""
    unembed = model.hf_module_at(model.adapter.unembed_path).weight.detach().float()
    scale = model.hf_module_at(model.adapter.final_norm_path).weight.detach().float()
    out: list[list[int]] = []
    with torch.no_grad():
        for i in range(0, decoders.shape[0], chunk):
            out += ((decoders[i:i + chunk] * scale) @ unembed.T).topk(min(top, unembed.shape[0]), -1).indices.tolist()
    return out


def node_table(model: Any, run: Forward, transcoders: list[Any], chosen: Any, logit_ids: Any,
               probs: Any) -> dict[str, Any]:
    """Kind, layer, position, feature, activation, label and summary of every node, in graph order:
    the ``chosen`` features (indices into ``run``'s), errors, embeddings, logits."""
    n, p = model.n_layers, run.embeds.shape[0]
    toks = model.decode_tokens(run.ids)
    chosen = torch.as_tensor(chosen, dtype=torch.long)
    fl, fp, fi = run.feat_layer[chosen], run.feat_pos[chosen], run.feat_index[chosen]
    dec = torch.stack([transcoders[int(a)].W_dec.detach()[int(b)].float() for a, b in zip(fl, fi, strict=True)]) \
        if chosen.numel() else torch.zeros(0, model.d_model)
    promoted = _decoder_tokens(model, dec)
    logits = run.logits.double()
    kind = ["feature"] * len(chosen) + ["error"] * (n * p) + ["embedding"] * p + ["logit"] * len(logit_ids)
    layer = fl.tolist() + [x for x in range(n) for _ in range(p)] + [-1] * p + [n] * len(logit_ids)
    pos = fp.tolist() + list(range(p)) * n + list(range(p)) + [p - 1] * len(logit_ids)
    feature = fi.tolist() + [-1] * ((n + 1) * p) + [int(t) for t in logit_ids]
    act = (run.feat_act[chosen].tolist() + run.errors.norm(dim=-1).reshape(-1).tolist()
           + run.embeds.norm(dim=-1).tolist() + [float(logits[int(t)] - logits.mean()) for t in logit_ids])
    label, summary = [], []
    for i, (k, a, q, f) in enumerate(zip(kind, layer, pos, feature, strict=True)):
        if k == "feature":
            words = ", ".join(repr(w) for w in model.decode_tokens(promoted[i]))
            label.append(f"L{a} #{f} p{q}")
            summary.append(f"feature {f} at layer {a}, position {q} ({toks[q]!r}): activation {act[i]:.4g}; "
                           f"its decoder promotes {words}")
        elif k == "error":
            label.append(f"err L{a} p{q}")
            summary.append(f"error of layer {a}'s transcoder at position {q} ({toks[q]!r}): norm {act[i]:.4g}")
        elif k == "embedding":
            label.append(f"emb {toks[q]!r}")
            summary.append(f"embedding of {toks[q]!r} at position {q}: norm {act[i]:.4g}")
        else:
            j = i - len(kind) + len(logit_ids)
            tok = model.decode_tokens([f])[0]
            label.append(f"logit {tok!r}")
            summary.append(f"logit of {tok!r}: probability {float(probs[j]):.4g}, de-meaned logit {act[i]:.4g}")
    return {"kind": kind, "layer": np.asarray(layer, np.int64), "position": np.asarray(pos, np.int64),
            "feature": np.asarray(feature, np.int64), "activation": np.asarray(act, np.float64),
            "label": label, "summary": summary}


__all__ = ["FAMILIES", "check_family", "check_transcoders", "direct_effects", "forward", "frozen_parameters", "linearise"]
