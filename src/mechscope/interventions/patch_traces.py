"""The traces behind `mechscope.patch`: one code path for one prompt pair and for a dataset.

Examples are processed in *groups* of equal token lengths (`PatchGroup`: G examples, their
clean and corrupt ids, and for each example the clean and corrupt positions of every column),
so no padding enters a patched run. A single prompt pair is a group of one.

- `clean_run`: the site activations at the chosen layers and the final-position logits of the
  group's clean texts, (G, n_clean, width) per layer and (G, vocab).
- `patched_trace`: one trace that runs the G corrupt texts alone and, as the forward pass
  reaches each chunk layer, appends G patched copies per column (copies of column c are rows
  ``c * G + g``): a copy never recomputes the layers before its patch. With a `Prefix`
  (`clean_and_prefix`: the keys and values of the first ``d`` positions, which every copy shares
  with its corrupt run) it runs positions ``d..n-1`` only (`mechscope.interventions.patch_prefix`).
- `attribution_trace`: the first-order estimate grad . (clean - corrupt) of every cell from one
  forward and backward pass (one batch [clean; corrupt] when the lengths agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from ..models.model import Model
from ..models.sites import SiteRef
from ..models.trace import save
from .metrics import BoundMetric
from .patch_prefix import Prefix, prefix_length


@dataclass(frozen=True)
class PatchGroup:
    """G examples of one (clean, corrupt) token length: ``examples`` (G,) dataset indices,
    ``clean`` (G, n_clean) and ``corrupt`` (G, n_corrupt) ids, ``pos_clean`` / ``pos_corrupt``
    (G, P): for position sites the position of column j in each text; for heads the P
    positions patched together."""

    examples: torch.Tensor
    clean: torch.Tensor
    corrupt: torch.Tensor
    pos_clean: torch.Tensor
    pos_corrupt: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.examples.numel())

    def take(self, rows: slice) -> PatchGroup:
        """The examples ``rows`` of this group (to keep a batch under the memory budget)."""
        return PatchGroup(self.examples[rows], self.clean[rows], self.corrupt[rows],
                          self.pos_clean[rows], self.pos_corrupt[rows])


@contextmanager
def frozen_parameters(model: Model) -> Iterator[None]:
    """Parameters do not require grad inside the block; each flag is restored afterwards."""
    params = list(model.hf.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def clean_run(model: Model, ids: torch.Tensor, site: str, layers: list[int],
              cache: DynamicCache | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Site activations of the rows of ``ids`` at ``layers`` (each (G, n, width)) and their
    final-position logits (G, vocab); with ``cache`` (local models) it also fills the cache
    with every layer's keys and values."""
    refs = [model.at(site, layer) for layer in layers]
    unembed = model.logits()
    extra: dict[str, Any] = {"use_cache": False} if cache is None else {"use_cache": True, "cache": cache}
    with model.trace(ids, **extra):
        acts = [ref.read().clone() for ref in refs]
        saved = save([acts, unembed.last()])
    return saved[0], saved[1].float()


def clean_and_prefix(model: Model, site: str, group: PatchGroup,
                     layers: list[int]) -> tuple[list[torch.Tensor], torch.Tensor, Prefix | None]:
    """`clean_run` of the group's clean texts and, where the group's copies share a prefix
    with their corrupt run (`prefix_length` > 0), its keys and values, from the same pass."""
    d = prefix_length(model, group)
    cache = DynamicCache() if d else None
    acts, logits = clean_run(model, group.clean, site, layers, cache)
    return acts, logits, None if cache is None else Prefix.from_cache(cache, d)


def _patch_values(model: Model, site: str, group: PatchGroup, cols: list[int],
                  clean_act: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, values), each (len(cols) * G, n_corrupt - start, width): where each copy is
    patched and with what (the clean activation at the matching clean position), for the
    corrupt positions ``start..`` (a patch before ``start`` writes what is there: dropped)."""
    g_count, n = group.size, int(group.corrupt.shape[1]) - start
    width = model.width(site)
    mask = torch.zeros(len(cols) * g_count, n, width, dtype=torch.bool)
    values = torch.zeros(len(cols) * g_count, n, width, dtype=clean_act.dtype)
    d_head = model.d_head
    for c, col in enumerate(cols):
        for g in range(g_count):
            row = c * g_count + g
            if site == "heads":
                dims = slice(col * d_head, (col + 1) * d_head)
                to, frm = group.pos_corrupt[g], group.pos_clean[g]
            else:
                dims = slice(None)
                to, frm = group.pos_corrupt[g, col:col + 1], group.pos_clean[g, col:col + 1]
            kept = to >= start
            to, frm = to[kept] - start, frm[kept]
            mask[row, to, dims] = True
            values[row, to, dims] = clean_act[g, frm, dims]
    return mask, values


def patched_trace(model: Model, site: str, group: PatchGroup, chunk: list[tuple[int, list[int]]],
                  clean_acts: dict[int, torch.Tensor], clean_logits: torch.Tensor,
                  metric: BoundMetric, top_k: int = 0,
                  prefix: Prefix | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The metric of every row (G + copies,): the G corrupt runs, then for each chunk step and
    column its G copies; with ``top_k`` > 0 also [top logits, ids, probabilities], (rows, top_k).
    With ``prefix`` only positions ``prefix.length..`` run, on top of its keys and values."""
    g_count = group.size
    start_pos = 0 if prefix is None else prefix.length
    steps: list[tuple[SiteRef, SiteRef, int, torch.Tensor, torch.Tensor]] = []
    row_examples = [torch.arange(g_count)]
    for layer, cols in chunk:
        mask, values = _patch_values(model, site, group, cols, clean_acts[layer], start_pos)
        steps.append((model.at("resid_pre", layer), model.at(site, layer), len(cols) * g_count,
                      mask, values))
        row_examples.append(torch.arange(g_count).repeat(len(cols)))
    rows_of = torch.cat(row_examples)
    examples = group.examples[rows_of]
    row_clean = clean_logits[rows_of]
    unembed = model.logits()
    resid = site == "resid"
    top: list[torch.Tensor] | None = None  # set inside the trace when top_k > 0
    inputs: Any = group.corrupt
    extra: dict[str, Any] = {"use_cache": False}
    if prefix is not None:
        inputs, extra = prefix.trace_inputs(group.corrupt, next(model.hf.parameters()).dtype)

    with model.trace(inputs, **extra):
        start = g_count
        for block_in, ref, k, mask, values in steps:
            if resid:
                hidden = ref.read()
                copies = hidden[0:g_count].repeat(k // g_count, 1, 1)
                copies[mask] = values[mask]
                ref.write(torch.cat([hidden, copies]))
            else:
                hidden = block_in.read()
                block_in.write(torch.cat([hidden, hidden[0:g_count].repeat(k // g_count, 1, 1)]))
                rows = ref.read()[start:start + k]
                rows[mask] = values[mask]
            start += k
        logits = unembed.last()
        measured = save(metric(logits, row_clean, examples))
        if top_k:
            full = logits.float()
            top_logits, top_ids = torch.topk(full, top_k, dim=-1)
            top = save([top_logits, top_ids, torch.softmax(full, dim=-1).gather(-1, top_ids)])
    return measured.float(), (None if top is None else [t.detach() for t in top])


def attribution_trace(model: Model, site: str, group: PatchGroup, layers: list[int],
                      metric: BoundMetric) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad . (clean - corrupt) per example and cell (G, layers, columns), and the clean and the
    corrupt metric per example (G,), from one forward and backward pass (plus a clean run when
    the clean and corrupt lengths differ). Parameters are frozen: only activation gradients."""
    g_count = group.size
    joint = group.clean.shape[1] == group.corrupt.shape[1]
    precomputed: list[torch.Tensor] = []
    clean_logits_pre = torch.empty(0)
    if not joint:
        precomputed, clean_logits_pre = clean_run(model, group.clean, site, layers)
    refs = [model.at(site, layer) for layer in layers]
    embed = model.envoy_at(model.adapter.embed_path)
    unembed = model.logits()
    heads = site == "heads"
    n_heads, d_head = model.n_heads, model.d_head
    g_index = torch.arange(g_count)[:, None]
    pos_c, pos_k = group.pos_clean, group.pos_corrupt
    examples = group.examples
    offset = g_count if joint else 0
    batch = torch.cat([group.clean, group.corrupt]) if joint else group.corrupt
    count = len(layers)

    with frozen_parameters(model), torch.enable_grad():
        with model.trace(batch, grad=True, use_cache=False):
            embedded = embed.output
            embedded.requires_grad_(True)
            acts = [ref.read() for ref in refs]
            logits = unembed.last()
            clean_logits = logits[:g_count].detach() if joint else clean_logits_pre
            measured = metric(logits[offset:], clean_logits, examples)
            both = save(torch.stack([metric(clean_logits, clean_logits, examples), measured.detach()]))
            total = measured.sum()
            cells: list[Any] = [None] * count
            with total.backward():
                for i in reversed(range(count)):
                    grad = acts[i].grad[offset:]
                    act = acts[i].detach()
                    clean = act[:g_count] if joint else precomputed[i]
                    diff = clean[g_index, pos_c] - act[offset:][g_index, pos_k]
                    cell = grad[g_index, pos_k] * diff  # (G, P, width)
                    if heads:
                        cells[i] = cell.reshape(g_count, -1, n_heads, d_head).sum(dim=(1, 3))
                    else:
                        cells[i] = cell.sum(-1)
            estimate = save(torch.stack(cells, dim=1))
    both = both.float()
    return estimate.float(), both[0], both[1]
