"""The three traces circuits are made of, each one nnsight trace over a batch of equal-length rows.

- `node_outputs`: every upstream node's output in residual-stream space, (U, B, P, d_model),
  and the final-position logits.
- `node_gradients`: d metric / d input of every downstream node, (V, B, P, d_model), from one
  forward and one backward pass. A query head's input is the residual stream seen through its
  own copy of the layer norm and its own rows of ``q_proj``; the gradient is pulled back
  through the norm exactly (the norm is re-run on a per-node copy of its input).
- `patched_logits`: the model run on the clean rows with every edge in ``out`` replaced: the
  input of each downstream node v becomes its clean-run input plus the sum, over the edges
  u -> v in ``out``, of (reference output of u - output of u in this run). Query, key and
  value projections are recomputed from each node's own input, so every edge is patched
  exactly, and an empty ``out`` is the unpatched model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..interventions.patch_traces import frozen_parameters
from ..models.trace import save
from .graph import ComponentGraph, module_paths, projections


def _heads_out(z: torch.Tensor, w_o: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Per-head outputs (H, B, P, d) of the o_proj input ``z`` (B, P, H*dh)."""
    b, p, _ = z.shape
    return torch.einsum("bphe,hde->hbpd", z.reshape(b, p, n_heads, -1).float(), w_o.float())


def node_outputs(model: Any, graph: ComponentGraph, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of every upstream node (U, B, P, d) in float32 and the last-position logits (B, vocab)."""
    layers = range(graph.n_layers)
    paths = [module_paths(model, layer) for layer in layers]
    w_o = [projections(model, layer).w_o for layer in layers]
    parts: list[torch.Tensor] = []  # filled inside the trace (a list made there would stay there)
    with model.trace(ids, use_cache=False):
        parts.append(save(model.envoy_at(paths[0]["norm1"]).input.float()[None]))
        for layer in layers:
            z = model.envoy_at(paths[layer]["o"]).input
            parts.append(save(_heads_out(z, w_o[layer], graph.n_heads)))
            parts.append(save(model.envoy_at(paths[layer]["mlp"]).output.float()[None]))
        logits = save(model.logits().last().float())
    return torch.cat(parts), logits


def _plain(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` through its class's forward: no hooks, so it may run inside a trace at that module."""
    return type(module).forward(module, x)


def _pullback(norm: torch.nn.Module, x: torch.Tensor, cot: torch.Tensor) -> torch.Tensor:
    """Vector-Jacobian products of ``norm`` at ``x`` (B, P, d) with cotangents (N, B, P, d)."""
    with torch.enable_grad():
        xe = x.detach().unsqueeze(0).expand(cot.shape[0], *x.shape).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_plain(norm, xe), xe, cot.to(xe.dtype))
    return grad.float()


def node_gradients(model: Any, graph: ComponentGraph, ids: torch.Tensor, embeds: torch.Tensor,
                   metric: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """d sum(metric) / d input of every downstream node (V, B, P, d), float32, and the
    per-row metric (B,) of this run. ``embeds`` (B, P, d) are the input embeddings used."""
    layers = range(graph.n_layers)
    paths = [module_paths(model, layer) for layer in layers]
    final = model.envoy_at(model.adapter.final_norm_path)
    embed = model.envoy_at(model.adapter.embed_path)
    with frozen_parameters(model), torch.enable_grad():
        leaf = embeds.detach().clone().requires_grad_(True)
        reads: list[Any] = []
        with model.trace(ids, grad=True, use_cache=False):
            embed.output = leaf
            for layer in layers:
                env = {k: model.envoy_at(p) for k, p in paths[layer].items()}
                reads.append([save(env["norm1"].input), save(env["q"].output), save(env["k"].output),
                              save(env["v"].output), save(env["norm2"].input), save(env["mlp"].input)])
            x_final = save(final.input)
            normed = save(final.output)
            logits = save(model.logits().last())
        values = metric(logits.float())
        wanted = [t for r in reads for t in r[1:4] + r[5:6]] + [normed]
        found = torch.autograd.grad(values.sum(), wanted, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for g, w in zip(found, wanted, strict=True)]
    out = []
    for layer in layers:
        g_q, g_k, g_v, g_mlp = grads[4 * layer: 4 * layer + 4]
        w = projections(model, layer)
        b, p, _ = g_q.shape
        cot = torch.cat([torch.einsum("bphe,hed->hbpd", g.reshape(b, p, n, -1).float(), wt.float())
                         for g, wt, n in ((g_q, w.w_q, graph.n_heads), (g_k, w.w_k, graph.n_kv_heads),
                                          (g_v, w.w_v, graph.n_kv_heads))])
        mods = model.hf_module_at(paths[layer]["norm1"]), model.hf_module_at(paths[layer]["norm2"])
        out.append(_pullback(mods[0], reads[layer][0], cot))
        out.append(_pullback(mods[1], reads[layer][4], g_mlp.float()[None]))
    out.append(_pullback(model.hf_module_at(model.adapter.final_norm_path), x_final, grads[-1].float()[None]))
    return torch.cat(out), values.detach().float()


class _Deltas:
    """Sum over the patched edges into a set of downstream nodes of (reference - current) outputs."""

    def __init__(self, graph: ComponentGraph, out: np.ndarray, ref: torch.Tensor, shape: tuple[int, ...]) -> None:
        self.graph, self.out, self.ref = graph, out, ref
        self.cur = torch.zeros(graph.n_upstream, *shape)
        self.total = torch.zeros(shape)
        self.filled = 0

    def add(self, acts: torch.Tensor) -> None:
        """Record the current outputs of the next upstream nodes (N, B, P, d)."""
        n = acts.shape[0]
        self.cur[self.filled:self.filled + n] = acts
        self.total += (self.ref[self.filled:self.filled + n] - acts).sum(0)
        self.filled += n

    def into(self, cols: slice | list[int]) -> torch.Tensor | None:
        """(N, B, P, d) for the downstream nodes ``cols``; None when nothing into them is patched."""
        out = self.out[:self.filled, cols]
        if not out.any():
            return None
        kept = self.graph.valid[:self.filled, cols] & ~out
        if out.sum() <= kept.sum():
            rows = np.flatnonzero(out.any(1))
            diff = self.ref[rows] - self.cur[rows]
            return torch.einsum("uv,ubpd->vbpd", torch.from_numpy(out[rows].astype(np.float32)), diff)
        rows = np.flatnonzero(kept.any(1))
        diff = self.ref[rows] - self.cur[rows]
        keep = torch.einsum("uv,ubpd->vbpd", torch.from_numpy(kept[rows].astype(np.float32)), diff)
        return self.total[None] - keep


def _project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """(N, B, P, d) node inputs (already normed) through their own projection rows -> (B, P, N*dh)."""
    y = torch.einsum("nbpd,ned->bpne", x.float(), w.float())
    if b is not None:
        y = y + b.float()
    return y.reshape(*y.shape[:2], -1).to(dtype)


def patched_logits(model: Any, graph: ComponentGraph, ids: torch.Tensor, ref: torch.Tensor,
                   out: np.ndarray) -> torch.Tensor:
    """Last-position logits (B, vocab) of the clean rows ``ids`` with the edges ``out``
    ((U, V) bool) patched from the reference outputs ``ref`` (U, B, P, d)."""
    h, g = graph.n_heads, graph.n_kv_heads
    layers = range(graph.n_layers)
    paths = [module_paths(model, layer) for layer in layers]
    dtype = next(model.hf.parameters()).dtype
    deltas = _Deltas(graph, out, ref.float(), (ids.shape[0], ids.shape[1], model.d_model))
    with model.trace(ids, use_cache=False):
        deltas.add(model.envoy_at(paths[0]["norm1"]).input.float()[None])
        for layer in layers:
            env = {k: model.envoy_at(p) for k, p in paths[layer].items()}
            base = graph.down_slice(layer).start
            delta = deltas.into(slice(base, base + graph.per_layer - 1))
            x = env["norm1"].input
            if delta is not None:
                norm1 = model.hf_module_at(paths[layer]["norm1"])
                normed = _plain(norm1, (x.float()[None] + delta).to(dtype))
                w = projections(model, layer)
                env["q"].output = _project(normed[:h], w.w_q, w.b_q, dtype)
                env["k"].output = _project(normed[h:h + g], w.w_k, w.b_k, dtype)
                env["v"].output = _project(normed[h + g:h + 2 * g], w.w_v, w.b_v, dtype)
            deltas.add(_heads_out(env["o"].input, projections(model, layer).w_o, h))
            mlp_delta = deltas.into([base + graph.per_layer - 1])
            if mlp_delta is not None:
                norm2 = model.hf_module_at(paths[layer]["norm2"])
                env["mlp"].input = _plain(norm2, (env["norm2"].input.float() + mlp_delta[0]).to(dtype))
            deltas.add(env["mlp"].output.float()[None])
        logit_delta = deltas.into([graph.n_downstream - 1])
        final = model.envoy_at(model.adapter.final_norm_path)
        if logit_delta is not None:
            final.input = (final.input.float() + logit_delta[0]).to(dtype)
        logits = save(model.logits().last().float())
    return logits


def _down_kind(graph: ComponentGraph, v: int) -> tuple[int, str, int]:
    """(layer, "q" | "k" | "v" | "mlp" | "logits", head or kv index) of downstream node ``v``."""
    layer = int(graph.down_layer[v])
    if layer == graph.n_layers:
        return layer, "logits", 0
    i = v - graph.down_slice(layer).start
    h, g = graph.n_heads, graph.n_kv_heads
    if i < h:
        return layer, "q", i
    if i < h + g:
        return layer, "k", i - h
    if i < h + 2 * g:
        return layer, "v", i - h - g
    return layer, "mlp", 0


def single_edge_logits(model: Any, graph: ComponentGraph, ids: torch.Tensor, diff: torch.Tensor,
                       edges: np.ndarray) -> torch.Tensor:
    """Last-position logits (E, B, vocab) of the clean rows ``ids`` (B, P) with one edge patched
    per copy: copy j has edge ``edges[j]``'s input shifted by ``diff[u_j]`` ((U, B, P, d) =
    reference - clean outputs). Nothing upstream of a single patched edge changes, so this equals
    `patched_logits` with that one edge out, with all E copies in one forward pass."""
    b = ids.shape[0]
    dtype = next(model.hf.parameters()).dtype
    targets: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for j, e in enumerate(edges):
        u, v = graph.edges[e]
        layer, kind, index = _down_kind(graph, int(v))
        targets.setdefault((layer, kind), []).append((j, int(u), index))

    def shift(x: torch.Tensor, hits: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.cat([torch.arange(j * b, (j + 1) * b) for j, _, _ in hits])
        delta = torch.cat([diff[u] for _, u, _ in hits])
        return rows, (x[rows].float() + delta).to(dtype)

    paths = [module_paths(model, layer) for layer in range(graph.n_layers)]
    with model.trace(ids.repeat(len(edges), 1), use_cache=False):
        for layer in range(graph.n_layers):
            env = {k: model.envoy_at(p) for k, p in paths[layer].items()}
            x = env["norm1"].input
            w = projections(model, layer) if any((layer, k) in targets for k in "qkv") else None
            for kind in "qkv":
                hits = targets.get((layer, kind))
                if not hits or w is None:
                    continue
                rows, shifted = shift(x, hits)
                normed = _plain(model.hf_module_at(paths[layer]["norm1"]), shifted)
                proj = env[kind].output
                weight, bias = {"q": (w.w_q, w.b_q), "k": (w.w_k, w.b_k), "v": (w.w_v, w.b_v)}[kind]
                dh = weight.shape[1]
                for n, (j, _, index) in enumerate(hits):
                    part = normed[n * b:(n + 1) * b].float() @ weight[index].float().T
                    part = part + bias[index].float() if bias is not None else part
                    proj[j * b:(j + 1) * b, :, index * dh:(index + 1) * dh] = part.to(dtype)
            hits = targets.get((layer, "mlp"))
            if hits:
                mid = env["norm2"].input
                rows, shifted = shift(mid, hits)
                mlp_in = env["mlp"].input
                mlp_in[rows] = _plain(model.hf_module_at(paths[layer]["norm2"]), shifted)
        hits = targets.get((graph.n_layers, "logits"))
        final = model.envoy_at(model.adapter.final_norm_path)
        if hits:
            x_final = final.input
            rows, shifted = shift(x_final, hits)
            x_final[rows] = shifted
        logits = save(model.logits().last().float())
    return logits.reshape(len(edges), b, -1)
