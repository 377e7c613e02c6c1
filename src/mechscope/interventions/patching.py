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
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import PromptPairs
from ..errors import InputError
from ..models.model import Model
from ..models.sites import site as get_site
from ..stats import summarize
from ..validate import check_model, check_positive, check_top_k, index
from ._batching import bytes_per_copy, max_copies, plan_chunks
from .metrics import BoundMetric, Metric, as_metric
from .patch_plan import Plan, dataset_plan, pair_plan
from .patch_prefix import idle_columns
from .patch_traces import PatchGroup, attribution_trace, clean_and_prefix, patched_trace
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


# ---- running the plan ------------------------------------------------------------------------------
def _subgroups(plan: Plan, per_copy: int, budget_mb: float) -> Iterator[PatchGroup]:
    """The groups, cut so that one patched column of a sub-group fits the memory budget."""
    most = max_copies(budget_mb, per_copy)
    for group in plan.groups:
        for start in range(0, group.size, most):
            yield group.take(slice(start, start + most))


def _exact(model: Model, plan: Plan, site: str, layers: list[int], metric: BoundMetric,
           budget_mb: float, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(per-example values (N, layers, columns), clean (N,), corrupt (N,), forward passes)."""
    from ..progress import progress as progress_bar

    n_cols = len(plan.columns)
    values = np.empty((plan.n_examples, len(layers), n_cols), dtype=np.float32)
    clean = np.empty(plan.n_examples, dtype=np.float32)
    corrupt = np.empty(plan.n_examples, dtype=np.float32)
    row_of = {layer: i for i, layer in enumerate(layers)}
    element = next(model.hf.parameters()).element_size()
    passes = 0
    bar = progress_bar(total=plan.n_examples * len(layers) * n_cols, desc=f"patching {site}", unit="copy",
                       enabled=progress)
    try:
        longest = max(int(g.corrupt.shape[1]) for g in plan.groups)
        per_copy = bytes_per_copy(longest, model.d_model, model.d_mlp, model.n_heads,
                                  model.vocab_size, element)
        for group in _subgroups(plan, per_copy, budget_mb):
            acts, logits, prefix = clean_and_prefix(model, site, group, layers)
            clean_acts = dict(zip(layers, acts, strict=True))
            ex = group.examples.numpy()
            clean[ex] = metric(logits, logits, group.examples).numpy()
            d = 0 if prefix is None else prefix.length
            idle = idle_columns(group, site, d)
            live = [c for c in range(n_cols) if c not in idle]
            tail = bytes_per_copy(int(group.corrupt.shape[1]) - d, model.d_model, model.d_mlp,
                                  model.n_heads, model.vocab_size, element)
            room = max(1, max_copies(budget_mb, min(per_copy, tail)) // group.size)
            chunks = [[(layer, [live[c] for c in cols]) for layer, cols in chunk]
                      for chunk in plan_chunks(layers, len(live), room)] or [[]]
            for chunk in chunks:
                out = patched_trace(model, site, group, chunk, clean_acts, logits, metric,
                                    prefix=prefix)[0].numpy()
                corrupt[ex] = out[:group.size]
                start = group.size
                for layer, cols in chunk:
                    block = out[start:start + len(cols) * group.size].reshape(len(cols), group.size)
                    values[ex[:, None], row_of[layer], np.array(cols)[None, :]] = block.T
                    start += len(cols) * group.size
                bar.update(start - group.size)
            if idle:  # a patch before the prefix end writes what is there: the corrupt run
                values[ex[:, None, None], np.arange(len(layers))[None, :, None],
                       np.array(idle)[None, None, :]] = corrupt[ex][:, None, None]
                bar.update(len(idle) * len(layers) * group.size)
            passes += 1 + len(chunks)
    finally:
        bar.close()
    return values, clean, corrupt, passes


def _attribution(model: Model, plan: Plan, site: str, layers: list[int],
                 metric: BoundMetric) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(per-example estimates (N, layers, columns), clean (N,), corrupt (N,), forward passes)."""
    values = np.empty((plan.n_examples, len(layers), len(plan.columns)), dtype=np.float32)
    clean = np.empty(plan.n_examples, dtype=np.float32)
    corrupt = np.empty(plan.n_examples, dtype=np.float32)
    passes = 0
    for group in plan.groups:
        estimate, c, k = attribution_trace(model, site, group, layers, metric)
        ex = group.examples.numpy()
        values[ex] = (k[:, None, None] + estimate).numpy()
        clean[ex], corrupt[ex] = c.numpy(), k.numpy()
        passes += 1 if group.clean.shape[1] == group.corrupt.shape[1] else 2
    return values, clean, corrupt, passes


# ---- public API --------------------------------------------------------------------------------
def patch(model: Model, clean: str | PromptPairs, corrupt: str | None = None,
          metric: Metric | BoundMetric | None = None, site: str = "resid",
          method: str = "exact", positions: Sequence[int] | Sequence[str] | None = None, *,
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
    plan, bound = _plan(model, clean, corrupt, metric, site, positions, "patch")
    chosen_layers = model.check_layers(layers)
    if method == "attribution":
        per_example, clean_m, corrupt_m, passes = _attribution(model, plan, site, chosen_layers, bound)
    else:
        per_example, clean_m, corrupt_m, passes = _exact(model, plan, site, chosen_layers, bound,
                                                         memory_budget_mb, progress)
    return _result(model, plan, bound, site, method, chosen_layers, per_example, clean_m,
                   corrupt_m, passes)


def _plan(model: Model, clean: Any, corrupt: Any, metric: Any, site: str, positions: Any,
          verb: str) -> tuple[Plan, BoundMetric]:
    """The plan and the bound metric of one prompt pair or a `PromptPairs` (checked here)."""
    if isinstance(clean, PromptPairs):
        if corrupt is not None and not isinstance(corrupt, Metric | BoundMetric):
            raise InputError(f"{verb}(model, dataset, ...) takes no corrupt prompt: each example "
                             "carries its own; pass the metric as metric=.")
        chosen_metric = corrupt if metric is None and corrupt is not None else metric
        bound = as_metric(chosen_metric, model) if chosen_metric is not None else clean.metric(model)
        return dataset_plan(model, clean, site, positions), bound
    if corrupt is None or metric is None:
        raise InputError(f"{verb}(model, clean, corrupt, metric) needs a corrupt prompt and a metric "
                         "(e.g. logit_diff(' Paris', ' Rome')), or a dataset from mechscope.datasets.")
    bound = as_metric(metric, model)
    return pair_plan(model, clean, corrupt, site, positions), bound


def _result(model: Model, plan: Plan, bound: BoundMetric, site: str, method: str,
            layers: list[int], per_example: np.ndarray, clean: np.ndarray, corrupt: np.ndarray,
            passes: int) -> PatchingResult:
    dataset = plan.dataset_name is not None
    summary = summarize(per_example) if dataset else None
    return PatchingResult(
        values=summary.mean if summary is not None else per_example[0],
        clean_metric=float(np.mean(clean)), corrupt_metric=float(np.mean(corrupt)),
        clean_tokens=plan.clean_tokens, corrupt_tokens=plan.corrupt_tokens,
        layers=layers, columns=plan.columns, positions=plan.positions, site=site,
        method=method, metric_name=bound.name, clean_prompt=plan.clean_prompt,
        corrupt_prompt=plan.corrupt_prompt, model_name=model.name,
        approximation=method == "attribution",
        note=_ATTRIBUTION_NOTE if method == "attribution" else "",
        n_forward_passes=passes, metric=bound,
        per_example=per_example if dataset else None,
        clean_per_example=clean if dataset else None,
        corrupt_per_example=corrupt if dataset else None,
        ci_low=None if summary is None else summary.ci_low,
        ci_high=None if summary is None else summary.ci_high,
        column_names=plan.column_names, dataset_name=plan.dataset_name, dataset=plan.dataset,
    )


def _top_tokens(model: Model, logits: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor) -> TopTokens:
    id_list = [int(i) for i in ids.tolist()]
    return TopTokens(ids=id_list, tokens=[model.tokenizer.decode([i]) for i in id_list],
                     logits=[float(x) for x in logits.float().tolist()],
                     probs=[float(x) for x in probs.float().tolist()])


def patch_cell(model: Model, clean: str | PromptPairs, corrupt: str | None = None,
               metric: Metric | BoundMetric | None = None, site: str = "resid",
               layer: int | None = None, column: int | str | None = None, *, positions: Sequence[int] | Sequence[str] | None = None,
               top_k: int = 5, example: int = 0) -> CellPatch:
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
    if layer is None or column is None:
        raise InputError("patch_cell needs the cell: layer= and column= (a position, a role name "
                         "for a dataset, or a head for site='heads').")
    chosen_layer = model.check_layer(layer)
    if site == "heads":
        head = index(column, model.n_heads, "column (a head for site='heads')", "head")
        plan_positions: Any = positions
    else:
        if positions is not None:
            raise InputError(
                f"positions= applies to site='heads' only; for site={site!r} the column is the "
                "position to patch."
            )
        if isinstance(column, bool) or not isinstance(column, int | np.integer | str):
            raise InputError(f"column (a position) must be an int, got {type(column).__name__} {column!r}.")
        plan_positions, head = [column], 0
    plan, bound = _plan(model, clean, corrupt, metric, site, plan_positions, "patch_cell")
    example = index(example, plan.n_examples, "example", "example")
    values = np.empty(plan.n_examples, dtype=np.float32)
    clean_m, corrupt_m = np.empty_like(values), np.empty_like(values)
    shown: tuple[torch.Tensor, list[torch.Tensor], int, int] | None = None
    for group in plan.groups:
        acts, logits, prefix = clean_and_prefix(model, site, group, [chosen_layer])
        out, top = patched_trace(model, site, group, [(chosen_layer, [head])],
                                 {chosen_layer: acts[0]}, logits, bound, top_k=top_k, prefix=prefix)
        ex = group.examples.numpy()
        clean_m[ex] = bound(logits, logits, group.examples).numpy()
        corrupt_m[ex], values[ex] = out[:group.size].numpy(), out[group.size:].numpy()
        if example in ex.tolist():
            g = ex.tolist().index(example)
            assert top is not None
            shown = (logits[g], top, g, group.size)
    assert shown is not None
    clean_logits, (top_logits, top_ids, top_probs), g, size = shown
    clean_top_logits, clean_top_ids = torch.topk(clean_logits, top_k)
    clean_top_probs = torch.softmax(clean_logits, dim=-1)[clean_top_ids]
    dataset = plan.dataset_name is not None
    col = head if site == "heads" else (plan.positions[0] if plan.positions else 0)
    return CellPatch(
        site=site, layer=chosen_layer, column=col,
        positions=plan.positions, metric_name=bound.name,
        value=float(values.mean()), clean_metric=float(clean_m.mean()),
        corrupt_metric=float(corrupt_m.mean()),
        before=_top_tokens(model, top_logits[g], top_ids[g], top_probs[g]),
        after=_top_tokens(model, top_logits[size + g], top_ids[size + g], top_probs[size + g]),
        clean=_top_tokens(model, clean_top_logits, clean_top_ids, clean_top_probs),
        per_example=values if dataset else None, example=example,
        column_name=plan.column_names[0] if plan.column_names and site != "heads" else None,
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
        layer = result.layers[row]
        if result.dataset is not None:
            return _dataset_cell(model, result, bound, layer, col, int(top_k))
        if result.site == "heads":
            return patch_cell(model, result.clean_prompt, result.corrupt_prompt, bound, result.site,
                              layer, result.columns[col], positions=result.positions, top_k=int(top_k))
        return patch_cell(model, result.clean_prompt, result.corrupt_prompt, bound, result.site,
                          layer, result.columns[col], top_k=int(top_k))

    return rerun


def _dataset_cell(model: Model, result: PatchingResult, bound: BoundMetric, layer: int, col: int,
                  top_k: int) -> CellPatch:
    """`patch_cell` of column ``col`` at ``layer`` over the dataset ``result`` was made on."""
    names = result.column_names
    if result.site == "heads":
        positions = names if names is not None else (result.positions or None)
        return patch_cell(model, result.dataset, metric=bound, site="heads", layer=layer,
                          column=result.columns[col], positions=positions, top_k=top_k)
    column = names[col] if names is not None else result.columns[col]
    return patch_cell(model, result.dataset, metric=bound, site=result.site, layer=layer,
                      column=column, top_k=top_k)
