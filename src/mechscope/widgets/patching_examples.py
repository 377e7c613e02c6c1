"""The dataset side of `PatchingMap`: a `PatchingResult` over many examples (``per_example``).

The map shows the mean over examples (normalised per example, then averaged; or raw, the mean
metric minus the mean corrupt metric) with its bootstrap interval on hover; an example picker
redraws one example's map and a clicked cell shows its spread over the examples. What travels
(every array binary, through the codec):

- ``ci_low`` / ``ci_high``: the result's interval of the mean metric, (layers, columns);
- ``norm_mean`` / ``norm_low`` / ``norm_high``: the normalised mean and its interval
  (`mechscope.stats.summarize` of `PatchingResult.normalized_per_example`);
- ``per_example`` (n, layers, columns) float32 with ``clean_per_example`` /
  ``corrupt_per_example`` (n,), and each example's clean text (truncated) for the picker.

Above `MAX_PER_EXAMPLE` values (n x cells) only the mean and the metric's interval are sent (no
picker, no spread; the normalised mean is a plain mean without its interval), and the text
summary and the widget's note say so. The offline snapshot keeps ``per_example`` up to
`SNAPSHOT_PER_EXAMPLE` values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..interventions.patching import PatchingResult
from ..stats import nanmean, summarize
from .codec import encode_array

#: Most per-example values (examples x cells) sent to the front end; above it, mean + interval.
MAX_PER_EXAMPLE = 4_000_000
#: Most per-example values kept in the offline HTML snapshot (base64 text: 5.3 bytes a value).
SNAPSHOT_PER_EXAMPLE = 1_000_000
#: An example's clean text in the picker is cut to this many characters.
TEXT_CHARS = 60


def truncate(text: str, n: int = TEXT_CHARS) -> str:
    """``text`` cut to ``n`` characters (the last one "…") when longer."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _texts(result: PatchingResult, n: int) -> list[str]:
    clean = getattr(result.dataset, "clean", None)
    if clean is not None and len(clean) == n:
        return [truncate(str(t)) for t in clean]
    return [f"example {i}" for i in range(n)]


def fallback_note(n: int, cells: int) -> str:
    return (f"per-example values not sent ({n} examples x {cells} cells = {n * cells:,} > "
            f"{MAX_PER_EXAMPLE:,}): the map shows the mean and its interval only; no example picker "
            "or spread of a cell")


def dataset_traits(result: PatchingResult) -> tuple[dict[str, Any], bool]:
    """The `PatchingMap` traits of a dataset result, and whether it can be normalised."""
    per_example = np.asarray(result.per_example, dtype=np.float64)
    n = per_example.shape[0]
    cells = per_example[0].size
    clean = (np.full(n, result.clean_metric) if result.clean_per_example is None
             else np.asarray(result.clean_per_example, dtype=np.float64))
    corrupt = (np.full(n, result.corrupt_metric) if result.corrupt_per_example is None
               else np.asarray(result.corrupt_per_example, dtype=np.float64))
    norm = result.normalized_per_example()
    send = n * cells <= MAX_PER_EXAMPLE
    norm_low: Any = {}
    norm_high: Any = {}
    if send:
        s = summarize(norm, level=result.ci_level)
        norm_mean, norm_low, norm_high = s.mean, s.ci_low, s.ci_high
    else:  # a bootstrap of this many values takes minutes: the plain mean only
        norm_mean = nanmean(norm.astype(np.float64)).astype(np.float32)
    can_normalize = bool(np.isfinite(norm_mean).any())
    interval = result.ci_low is not None and result.ci_high is not None
    traits: dict[str, Any] = dict(
        n_examples=n, ci_level=float(result.ci_level), dataset_name=str(result.dataset_name or ""),
        ci_low=encode_array(result.ci_low, "float32") if interval else {},
        ci_high=encode_array(result.ci_high, "float32") if interval else {},
        norm_mean=encode_array(norm_mean, "float32") if can_normalize else {},
        norm_low=encode_array(norm_low, "float32") if can_normalize and send else {},
        norm_high=encode_array(norm_high, "float32") if can_normalize and send else {},
        clean_per_example=encode_array(clean, "float32"),
        corrupt_per_example=encode_array(corrupt, "float32"),
        per_example=encode_array(per_example, "float32") if send else {},
        example_texts=_texts(result, n) if send else [],
        examples_note="" if send else fallback_note(n, cells),
    )
    return traits, can_normalize


def example_map(per_example: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, i: int,
                normalized: bool) -> np.ndarray:
    """Example ``i``'s cells as the front end draws them (float32 inputs, float64 arithmetic):
    normalised by its own runs (NaN when they agree), or its metric minus its corrupt metric."""
    effect = per_example[i].astype(np.float64) - float(corrupt[i])
    if not normalized:
        return effect.astype(np.float32)
    span = float(clean[i]) - float(corrupt[i])
    if not np.isfinite(span) or abs(span) <= 1e-9 * max(1.0, abs(float(clean[i]))):
        return np.full(effect.shape, np.nan, dtype=np.float32)
    return (effect / span).astype(np.float32)


def rerun_normalized(per_example: np.ndarray, result: PatchingResult) -> float | None:
    """A re-run cell's per-example metrics, normalised by each example's runs, averaged (as the
    map's normalised mean is); None without per-example runs or when none normalises."""
    if result.clean_per_example is None or result.corrupt_per_example is None:
        return None
    clean = np.asarray(result.clean_per_example, dtype=np.float64)
    corrupt = np.asarray(result.corrupt_per_example, dtype=np.float64)
    if clean.shape != np.shape(per_example):
        return None
    span = clean - corrupt
    flat = ~np.isfinite(span) | (np.abs(span) <= 1e-9 * np.maximum(1.0, np.abs(clean)))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = (np.asarray(per_example, dtype=np.float64) - corrupt) / np.where(flat, np.nan, span)
    mean = nanmean(norm)
    return float(mean) if np.isfinite(mean) else None


def interval_text(value: float, low: float, high: float) -> str:
    """``0.42 [0.31, 0.55]``."""
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"
