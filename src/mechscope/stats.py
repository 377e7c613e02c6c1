"""Uncertainty over examples: the mean of per-example values and its bootstrap interval.

Every result computed over a dataset keeps its raw ``per_example`` values (examples first)
and reports the mean with a percentile bootstrap confidence interval over examples
(resampling whole examples with replacement, ``n_boot`` times, from a fixed seed, so the
interval is the same on every run). NaN values (e.g. a normalisation whose clean and corrupt
runs agree) are left out of the mean and of each resample.

>>> import numpy as np
>>> per_example = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0], [2.0, 2.0]])   # (examples, cells)
>>> s = summarize(per_example)
>>> s.mean.tolist(), s.n, s.level
([2.0, 2.0], 4, 0.95)
>>> bool(np.all(s.ci_low <= s.mean) and np.all(s.mean <= s.ci_high)), bool(s.ci_low[1] == s.ci_high[1] == 2.0)
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

#: Bootstrap resamples and confidence level used unless a call says otherwise.
N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """``mean``, ``ci_low``, ``ci_high``: arrays shaped like one example's values; ``n`` examples."""

    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: int
    level: float


def summarize(per_example: np.ndarray, *, level: float = LEVEL, n_boot: int = N_BOOT,
              seed: int = 0) -> Summary:
    """Mean over axis 0 of ``per_example`` (examples, ...) with a percentile bootstrap interval.

    With one example the interval is that example's value (no spread can be estimated).
    """
    values = np.asarray(per_example, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise InputError("no examples to summarise: give at least one.")
    if not 0 < level < 1:
        raise InputError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}.")
    n = values.shape[0]
    with np.errstate(invalid="ignore"):
        mean = nanmean(values)
        if n == 1:
            low = high = mean
        else:
            rng = np.random.default_rng(seed)
            boots = np.stack([nanmean(values[rng.integers(0, n, n)]) for _ in range(n_boot)])
            tail = (1 - level) / 2 * 100
            low, high = np.nanpercentile(boots, [tail, 100 - tail], axis=0)
    return Summary(mean=mean.astype(np.float32), ci_low=np.asarray(low, dtype=np.float32),
                   ci_high=np.asarray(high, dtype=np.float32), n=n, level=level)


def bootstrap(per_example: np.ndarray, statistic: Any, *, level: float = LEVEL, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, float, float]:
    """``statistic(rows)`` of all examples and its percentile bootstrap interval, resampling
    whole rows of ``per_example`` (examples, ...): for statistics that are not a mean over
    examples, e.g. a ratio of sums.

    >>> sums = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])     # (texts, [numerator, denominator])
    >>> bootstrap(sums, lambda r: r[:, 0].sum() / r[:, 1].sum())
    (0.5, 0.5, 0.5)
    """
    values = np.asarray(per_example, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise InputError("no examples to bootstrap: give at least one.")
    n = values.shape[0]
    value = float(statistic(values))
    if n == 1:
        return value, value, value
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = np.array([float(statistic(values[rng.integers(0, n, n)])) for _ in range(n_boot)])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(boots, [tail, 100 - tail])
    return value, float(low), float(high)


def nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 leaving NaN out (NaN where every value is NaN), without a warning."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class OverExamples:
    """What every result over a dataset shares: ``per_example`` (examples first) and `n`."""

    per_example: np.ndarray

    @property
    def n(self) -> int:
        """How many examples."""
        return int(self.per_example.shape[0])

    def long_frame(self, **axes: Any):  # noqa: ANN201 - pandas is imported lazily
        """``per_example`` in long format: a column ``example``, one column per further axis
        (``axes[name]`` = the labels along it, in order) and ``value``."""
        import pandas as pd

        grids = np.meshgrid(np.arange(self.n), *[np.arange(len(v)) for v in axes.values()], indexing="ij")
        columns = {"example": grids[0].ravel()}
        for (name, labels), grid in zip(axes.items(), grids[1:], strict=True):
            columns[name] = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[grid.ravel()]
        return pd.DataFrame({**columns, "value": self.per_example.ravel()})
