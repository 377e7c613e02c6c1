"""`patch`: activation patching, the workhorse test of "where does the model use this information?".

Two prompts of the same token length, a *clean* one ("The Eiffel Tower is in the city of") and
a *corrupt* one ("The Colosseum is in the city of"), and a metric (``logit_diff(" Paris",
" Rome")``). Each cell of the result is the metric on the corrupt run with one activation
replaced by its value from the clean run:

- ``site="resid"``: the output of decoder block ``layer`` (the residual stream) at one position;
- ``site="attn"`` / ``"mlp"``: the output of that layer's attention / MLP module at one position;
- ``site="heads"``: one attention head, i.e. its ``d_head``-wide slice of the input of the
  attention output projection, patched at every position at once (or at ``positions=``), so
  the result is layers x heads.

``method="exact"`` runs every patched copy for real. Copies are batched into as few forward
passes as ``memory_budget_mb`` allows, and a copy patched at layer ``l`` never recomputes the
layers before ``l``: each trace runs the corrupt prompt alone and, as the forward pass reaches
layer ``l``, appends the copies patched there to the batch (the corrupt row is duplicated, the
clean values written in). Only the final position is unembedded. Everything goes through one
nnsight trace per chunk, so ``remote="local"`` and NDIF run the same code.

`patch_cell` re-runs ONE cell through the same trace code (two forward passes) and also
returns the top next tokens before and after the patch; `cell_rerun` binds it to a result and
its model, which is how ``result.show(model=model)`` re-runs a clicked cell of the widget.

``method="attribution"`` is attribution patching: the first-order estimate
``metric(corrupt) + grad . (clean - corrupt)`` for every cell from ONE forward and backward pass
(parameters are frozen for the call, so no parameter gradient is computed or stored). It is an
approximation, marked as such on the result: it tracks exact patching well in late layers and
underestimates large non-linear effects (e.g. subject tokens in early residual layers).

>>> import mechscope
>>> from mechscope.metrics import logit_diff
>>> model = mechscope.tiny_model("llama")
>>> r = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
...                     logit_diff(" the", " of"), progress=False)
>>> r.values.shape == (model.n_layers, len(r.clean_tokens))
True
>>> r.clean_tokens[:2], r.corrupt_tokens[:2]
(['The', ' cat'], ['The', ' dog'])
>>> bool(abs(r.values[-1, -1] - r.clean_metric) < 1e-4)  # the last residual decides the logits
True
>>> h = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
...                     logit_diff(" the", " of"), site="heads", progress=False)
>>> h.values.shape == (model.n_layers, model.n_heads)
True
>>> a = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
...                     logit_diff(" the", " of"), method="attribution", progress=False)
>>> a.approximation, a.values.shape == r.values.shape
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model
from ..models.sites import SiteRef
from ..models.sites import site as get_site
from ..models.trace import save
from ..validate import check_model, check_positive, check_top_k, index, index_list
from ._batching import bytes_per_copy, max_copies, plan_chunks
from .metrics import BoundMetric, Metric, as_metric
from .patching_results import CellPatch, PatchingResult, TopTokens

__all__ = ["CellPatch", "PatchingResult", "TopTokens", "cell_rerun", "patch", "patch_cell"]

SITES = ("resid", "attn", "mlp", "heads")
METHODS = ("exact", "attribution")
#: Default memory (MB) one batched forward pass of patched copies may use.
DEFAULT_MEMORY_BUDGET_MB = 1024.0

_ATTRIBUTION_NOTE = (
    "attribution patching: metric(corrupt) + gradient . (clean - corrupt), a first-order "
    "estimate from one forward and backward pass; it misses non-linear effects (often large on "
    "subject tokens in early residual layers). Confirm cells that matter with method='exact'."
)


# ---- validation --------------------------------------------------------------------------------
def _tokens_of(model: Model, ids: torch.Tensor) -> list[str]:
    return [model.tokenizer.decode([i]) for i in ids[0].tolist()]


def _check_prompts(model: Model, clean: Any, corrupt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ids_clean = model.to_tokens(clean)
    ids_corrupt = model.to_tokens(corrupt)
    nc, nk = int(ids_clean.shape[1]), int(ids_corrupt.shape[1])
    if nc != nk:
        raise InputError(
            "patching needs the clean and corrupt prompts to have the same number of tokens "
            "(position p of one is patched into position p of the other), but:\n"
            f"  clean   has {nc} tokens: {_tokens_of(model, ids_clean)}\n"
            f"  corrupt has {nk} tokens: {_tokens_of(model, ids_corrupt)}\n"
            "Reword one so the tokens line up (model.str_tokens(prompt) shows a tokenisation)."
        )
    return ids_clean, ids_corrupt


# ---- helpers used around the traces -------------------------------------------------------------
@contextmanager
def _frozen_parameters(model: Model) -> Iterator[None]:
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


def _clean_run(model: Model, ids: torch.Tensor, site: str,
               layers: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The clean prompt's site activations at ``layers`` (each (1, n, width)) and final logits (1, vocab)."""
    refs = [model.at(site, layer) for layer in layers]
    unembed = model.logits()
    with model.trace(ids, use_cache=False):
        acts = [ref.read().clone() for ref in refs]
        saved = save([acts, unembed.last()])
    return saved[0], saved[1].float()


def _exact_chunk(model: Model, ids: torch.Tensor, site: str, chunk: list[tuple[int, list[int]]],
                 layers: list[int], clean_acts: list[torch.Tensor], clean_logits: torch.Tensor,
                 positions: list[int], metric: BoundMetric) -> torch.Tensor:
    """One trace: the corrupt run plus, from each chunk layer on, its patched copies. Returns (1 + copies,)."""
    return _patched_trace(model, ids, site, chunk, layers, clean_acts, clean_logits, positions, metric)[0]


def _patched_trace(model: Model, ids: torch.Tensor, site: str, chunk: list[tuple[int, list[int]]],
                   layers: list[int], clean_acts: list[torch.Tensor], clean_logits: torch.Tensor,
                   positions: list[int], metric: BoundMetric,
                   top_k: int = 0) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The trace behind `_exact_chunk` (and `patch_cell`): metric per row (1 + copies,), and
    with ``top_k`` > 0 also [top logits, their ids, their probabilities], each (1 + copies, top_k)."""
    n = int(ids.shape[1])
    width = model.width(site)
    d_head = model.d_head
    index = {layer: i for i, layer in enumerate(layers)}
    # (block input, site, copies, positions (k,) or None, head mask or None, clean act)
    steps: list[tuple[SiteRef, SiteRef, int, Any, Any, torch.Tensor]] = []
    for layer, cols in chunk:
        k = len(cols)
        pos = mask = None
        if site == "heads":
            mask = torch.zeros(k, n, width, dtype=torch.bool)
            for i, head in enumerate(cols):
                mask[i, positions, head * d_head:(head + 1) * d_head] = True
        else:
            pos = torch.tensor([positions[c] for c in cols], dtype=torch.long)
        steps.append((model.at("resid_pre", layer), model.at(site, layer), k, pos, mask,
                      clean_acts[index[layer]]))
    unembed = model.logits()
    resid = site == "resid"
    top: list[torch.Tensor] | None = None  # set inside the trace when top_k > 0

    with model.trace(ids, use_cache=False):
        start = 1
        for block_in, ref, k, pos, mask, clean in steps:
            if resid:
                hidden = ref.read()
                copies = hidden[0:1].expand(k, -1, -1).clone()
                copies[torch.arange(k), pos] = clean[0, pos]
                ref.write(torch.cat([hidden, copies]))
            else:
                hidden = block_in.read()
                block_in.write(torch.cat([hidden, hidden[0:1].expand(k, -1, -1)]))
                rows = ref.read()[start:start + k]
                if mask is None:
                    rows[torch.arange(k), pos] = clean[0, pos]
                else:
                    rows[mask] = clean.expand(k, -1, -1)[mask]
            start += k
        logits = unembed.last()
        values = save(metric(logits, clean_logits))
        if top_k:
            full = logits.float()
            top_logits, top_ids = torch.topk(full, top_k, dim=-1)
            top = save([top_logits, top_ids, torch.softmax(full, dim=-1).gather(-1, top_ids)])
    return values.float(), (None if top is None else [t.detach() for t in top])


def _attribution(model: Model, ids_clean: torch.Tensor, ids_corrupt: torch.Tensor, site: str,
                 layers: list[int], positions: list[int],
                 metric: BoundMetric) -> tuple[torch.Tensor, float, float]:
    """grad . (clean - corrupt) per cell (layers, columns), the clean and the corrupt metric.

    ONE forward and backward pass of the batch [clean, corrupt] (two rows cost about as much as
    one on a short prompt): row 0 gives the clean activations and logits, the gradient of the
    metric on row 1 gives the rest. Parameters are frozen, so only activation gradients are made.
    """
    refs = [model.at(site, layer) for layer in layers]
    embed = model.envoy_at(model.adapter.embed_path)
    unembed = model.logits()
    heads = site == "heads"
    n_heads, d_head = model.n_heads, model.d_head
    pos = torch.tensor(positions, dtype=torch.long)
    count = len(layers)
    batch = torch.cat([ids_clean, ids_corrupt])

    with _frozen_parameters(model), torch.enable_grad():
        with model.trace(batch, grad=True, use_cache=False):
            embedded = embed.output
            embedded.requires_grad_(True)
            acts = [ref.read() for ref in refs]
            logits = unembed.last()
            clean_logits = logits[0:1].detach()
            measured = metric(logits[1:], clean_logits)
            both = save(torch.stack([metric(clean_logits, clean_logits)[0], measured.detach()[0]]))
            total = measured.sum()
            rows: list[Any] = [None] * count
            with total.backward():
                for i in reversed(range(count)):
                    grad = acts[i].grad
                    act = acts[i].detach()
                    cell = (grad[1] * (act[0] - act[1]))[pos]
                    if heads:
                        rows[i] = cell.reshape(len(positions), n_heads, d_head).sum(dim=(0, 2))
                    else:
                        rows[i] = cell.sum(-1)
            estimate = save(torch.stack(rows))
    both = both.float()
    return estimate.float(), float(both[0]), float(both[1])


# ---- public API --------------------------------------------------------------------------------
def patch(model: Model, clean: str, corrupt: str, metric: Metric | BoundMetric, site: str = "resid",
          method: str = "exact", positions: Sequence[int] | None = None, *,
          layers: Sequence[int] | None = None,
          memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, progress: bool = True) -> PatchingResult:
    """Patch ``site`` from the ``clean`` run into the ``corrupt`` run at every layer and column.

    - ``metric``: from `mechscope.metrics` (``logit_diff(" Paris", " Rome")``, ``prob``,
      ``logprob``, ``kl_to_clean()``); its tokens must be single tokens.
    - ``site``: "resid", "attn", "mlp" (columns = positions) or "heads" (columns = heads).
    - ``method``: "exact" (every copy run for real, batched) or "attribution" (gradient
      estimate from one forward + backward pass; ``approximation=True`` on the result).
    - ``positions``: the positions to patch (negative count from the end); default all. For
      ``"heads"`` they are patched together and the result is layers x heads.
    - ``layers``: the layers to patch (default all).
    - ``memory_budget_mb``: the memory one batched forward pass of exact patching may use; the
      copies are split into as few passes as fit (one copy per pass at the very least).
    - ``progress``: show a progress bar (tqdm) over the patched copies.

    Everything is validated before any forward pass; the model is left exactly as it was.
    Returns a `PatchingResult`: ``values[layer, column]``, shape ``(len(layers),
    len(positions))``, or ``(len(layers), n_heads)`` for ``site="heads"``.

    Patching the last layer's residual at the last position restores the clean run's logits,
    hence its metric:

    >>> import mechscope
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
    ...                     logit_diff(" the", " of"), layers=[-1], positions=[-1], progress=False)
    >>> r.values.shape, r.layers, r.columns
    ((1, 1), [1], [6])
    >>> bool(abs(r.values[0, 0] - r.clean_metric) < 1e-5)
    True
    """
    check_model(model, "patch")
    site = get_site(site, allowed=SITES, verb="patch").name
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    check_positive(memory_budget_mb, "memory_budget_mb", "megabytes")
    bound = as_metric(metric, model)
    ids_clean, ids_corrupt = _check_prompts(model, clean, corrupt)
    n = int(ids_clean.shape[1])
    chosen_layers = model.check_layers(layers)
    chosen_positions = index_list(range(n) if positions is None else positions, n,
                                  "positions", "position")
    columns = list(range(model.n_heads)) if site == "heads" else chosen_positions

    if method == "attribution":
        estimate, clean_metric, corrupt_metric = _attribution(
            model, ids_clean, ids_corrupt, site, chosen_layers, chosen_positions, bound)
        values = (corrupt_metric + estimate).numpy().astype(np.float32)
        passes = 1
    else:
        clean_acts, clean_logits = _clean_run(model, ids_clean, site, chosen_layers)
        clean_metric = float(bound(clean_logits, clean_logits)[0])
        element = next(model.hf.parameters()).element_size()
        per_copy = bytes_per_copy(n, model.d_model, model.d_mlp, model.n_heads, model.vocab_size, element)
        chunks = plan_chunks(chosen_layers, len(columns), max_copies(memory_budget_mb, per_copy))
        values = np.empty((len(chosen_layers), len(columns)), dtype=np.float32)
        row_of = {layer: i for i, layer in enumerate(chosen_layers)}
        corrupt_metric = float("nan")
        from tqdm.auto import tqdm

        bar = tqdm(total=values.size, desc=f"patching {site}", unit="copy", disable=not progress,
                   leave=False)
        try:
            for chunk in chunks:
                out = _exact_chunk(model, ids_corrupt, site, chunk, chosen_layers, clean_acts,
                                   clean_logits, chosen_positions, bound).numpy()
                corrupt_metric = float(out[0])
                start = 1
                for layer, cols in chunk:
                    values[row_of[layer], cols] = out[start:start + len(cols)]
                    start += len(cols)
                bar.update(start - 1)
        finally:
            bar.close()
        passes = 1 + len(chunks)

    return PatchingResult(
        values=values, clean_metric=clean_metric, corrupt_metric=corrupt_metric,
        clean_tokens=_tokens_of(model, ids_clean), corrupt_tokens=_tokens_of(model, ids_corrupt),
        layers=chosen_layers, columns=columns, positions=chosen_positions, site=site,
        method=method, metric_name=bound.name, clean_prompt=clean, corrupt_prompt=corrupt,
        model_name=model.name, approximation=method == "attribution",
        note=_ATTRIBUTION_NOTE if method == "attribution" else "",
        n_forward_passes=passes, metric=bound,
    )


def _top_tokens(model: Model, logits: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor) -> TopTokens:
    id_list = [int(i) for i in ids.tolist()]
    return TopTokens(ids=id_list, tokens=[model.tokenizer.decode([i]) for i in id_list],
                     logits=[float(x) for x in logits.float().tolist()],
                     probs=[float(x) for x in probs.float().tolist()])


def patch_cell(model: Model, clean: str, corrupt: str, metric: Metric | BoundMetric, site: str,
               layer: int, column: int, *, positions: Sequence[int] | None = None,
               top_k: int = 5) -> CellPatch:
    """Exact patching of ONE cell, with the ``top_k`` next tokens before and after the patch.

    The cell is what `patch` computes at ``values[layer, column]``: ``column`` is a position for
    ``site`` "resid", "attn" or "mlp", and a head for "heads" (patched at ``positions``, default
    all, as in `patch`). It runs the same clean-run and patched-trace code as `patch`, with one
    patched copy, so its ``value`` equals the sweep's cell (up to float rounding of the batch).
    Two forward passes; the model is left as it was.

    >>> import mechscope
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> m = logit_diff(" the", " of")
    >>> cell = patch_cell(model, "The cat sat on the", "The dog sat on the", m, "resid", 0, 1, top_k=3)
    >>> r = mechscope.patch(model, "The cat sat on the", "The dog sat on the", m, progress=False)
    >>> bool(abs(cell.value - r.values[0, 1]) < 1e-5), len(cell.after.tokens)
    (True, 3)
    """
    check_model(model, "patch_cell")
    site = get_site(site, allowed=SITES, verb="patch_cell").name
    top_k = check_top_k(top_k, model.vocab_size)
    bound = as_metric(metric, model)
    ids_clean, ids_corrupt = _check_prompts(model, clean, corrupt)
    n = int(ids_clean.shape[1])
    chosen_layer = model.check_layer(layer)
    if site == "heads":
        head = index(column, model.n_heads, "column (a head for site='heads')", "head")
        chosen_positions = index_list(range(n) if positions is None else positions, n,
                                      "positions", "position")
        chunk = [(chosen_layer, [head])]
        col = head
    else:
        if positions is not None:
            raise InputError(
                f"positions= applies to site='heads' only; for site={site!r} the column is the "
                "position to patch."
            )
        col = index(column, n, "column (a position)", "position")
        chosen_positions = [col]
        chunk = [(chosen_layer, [0])]
    clean_acts, clean_logits = _clean_run(model, ids_clean, site, [chosen_layer])
    clean_metric = float(bound(clean_logits, clean_logits)[0])
    values, top = _patched_trace(model, ids_corrupt, site, chunk, [chosen_layer], clean_acts,
                                 clean_logits, chosen_positions, bound, top_k=top_k)
    assert top is not None
    top_logits, top_ids, top_probs = top
    clean_top_logits, clean_top_ids = torch.topk(clean_logits[0], top_k)
    clean_top_probs = torch.softmax(clean_logits[0], dim=-1)[clean_top_ids]
    return CellPatch(
        site=site, layer=chosen_layer, column=col, positions=chosen_positions,
        metric_name=bound.name, value=float(values[1]), clean_metric=clean_metric,
        corrupt_metric=float(values[0]),
        before=_top_tokens(model, top_logits[0], top_ids[0], top_probs[0]),
        after=_top_tokens(model, top_logits[1], top_ids[1], top_probs[1]),
        clean=_top_tokens(model, clean_top_logits, clean_top_ids, clean_top_probs),
    )


def cell_rerun(result: PatchingResult, model: Model, *, metric: Metric | BoundMetric | None = None,
               top_k: int = 5) -> Callable[[int, int], CellPatch]:
    """A function ``(row, col) -> CellPatch`` re-running cell ``result.values[row, col]`` on ``model``.

    This is what `PatchingResult.show(model=...)` hands its widget: the widget never sees the
    model, only this function. ``model`` must be the model the result was made with (same
    name and tokenisation of both prompts); ``metric`` defaults to the one the result carries.
    Checked once, here, before any forward pass.
    """
    if not isinstance(result, PatchingResult):
        raise InputError(f"cell_rerun needs a PatchingResult (from mechscope.patch), got {type(result).__name__}.")
    check_model(model, "cell_rerun", "model= (the model the result came from)")
    if model.name != result.model_name:
        raise InputError(
            f"this result was made with {result.model_name!r} but model= is {model.name!r}; "
            "pass the model the patching ran on."
        )
    for which, prompt, tokens in (("clean", result.clean_prompt, result.clean_tokens),
                                  ("corrupt", result.corrupt_prompt, result.corrupt_tokens)):
        if model.str_tokens(prompt) != list(tokens):
            raise InputError(
                f"model= tokenises the {which} prompt differently from the result "
                f"({model.str_tokens(prompt)} vs {list(tokens)}); pass the model the patching ran on."
            )
    chosen = metric if metric is not None else result.metric
    if chosen is None:
        raise InputError(
            "this PatchingResult carries no metric (it was not made by mechscope.patch); pass "
            "the one it was measured with, e.g. .show(model=model, metric=logit_diff(' Paris', ' Rome'))."
        )
    bound = as_metric(chosen, model)
    if bound.name != result.metric_name:
        raise InputError(
            f"metric {bound.name} is not the result's metric {result.metric_name}; re-running a "
            "cell with another metric would not match the map."
        )
    top_k = check_top_k(top_k, model.vocab_size)
    rows, cols = np.shape(result.values)

    def rerun(row: int, col: int) -> CellPatch:
        if not (0 <= row < rows and 0 <= col < cols):
            raise InputError(f"cell ({row}, {col}) is outside the {rows} x {cols} map.")
        if result.site == "heads":
            return patch_cell(model, result.clean_prompt, result.corrupt_prompt, bound, result.site,
                              result.layers[row], result.columns[col], positions=result.positions,
                              top_k=int(top_k))
        return patch_cell(model, result.clean_prompt, result.corrupt_prompt, bound, result.site,
                          result.layers[row], result.columns[col], top_k=int(top_k))

    return rerun
