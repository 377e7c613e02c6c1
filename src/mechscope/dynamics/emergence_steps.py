"""When does a metric change, and do a structure and a behaviour change together across seeds?

Everything is done in ``x = log(step + 1)``, so step 0 (the initialisation) is allowed and
log-spaced checkpoints weigh evenly. A curve's **net change** runs from its value at the first
checkpoint to its value at the last; "fraction ``f`` of the change" is the value
``first + f * (last - first)``, for rising (scores) and falling (losses) curves alike.

- `crossing`: the first step at which the curve reaches fraction ``f`` of its net change,
  interpolated linearly in ``x`` between the two checkpoints that bracket it.
- **Emergence step** (`emergence_step`): with ``method="halfway"`` (default) the crossing of
  ``f = 0.5``; with ``method="max_slope"``, the geometric midpoint ``exp((x_k + x_{k+1}) / 2) - 1``
  of the checkpoint interval where the curve moves fastest per unit ``x`` in the direction of
  its net change. NaN when the curve ends where it started.
- **Transition window** (`transition_window`): from the crossing of ``f = 0.2`` to the crossing
  of ``f = 0.8``: where most of the change happens.

**Correlation** of a structure curve (e.g. the best head's induction score) with a behaviour
curve (e.g. the loss on repeated tokens): Pearson and Spearman over all (seed, checkpoint)
pairs; per seed; and of the emergence steps across seeds (needs 3+ seeds).

>>> import numpy as np
>>> steps = np.array([0, 1, 3, 7, 15, 31, 63])
>>> score = np.array([0.0, 0.0, 0.0, 0.1, 0.9, 1.0, 1.0])
>>> round(emergence_step(score, steps), 2)          # 0.5 is crossed between steps 7 and 15
10.31
>>> [round(s, 1) for s in transition_window(score, steps)]
[7.7, 13.7]
>>> corr = correlation(score, 1.0 - score)
>>> round(corr["pearson"], 3), round(corr["spearman"], 3)
(-1.0, -1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .measurement import DynamicsResult

METHODS = ("halfway", "max_slope")
#: Fractions of the net change that bound the transition window.
WINDOW = (0.2, 0.8)


def _curve(curve: Any, steps: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(curve, dtype=np.float64)
    s = np.asarray(steps, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise InputError(f"curve and steps must be 1-D of one length, got {y.shape}, {s.shape}.")
    if np.any(~np.isfinite(s)) or np.any(np.diff(s) <= 0) or (s.size and s[0] < 0):
        raise InputError(f"steps must be finite, non-negative and increasing, got {s.tolist()}.")
    keep = np.isfinite(y)
    return y[keep], s[keep]


def crossing(curve: Any, steps: Any, fraction: float) -> float:
    """The first step at which ``curve`` reaches ``fraction`` (0..1) of its net change.

    ``curve`` and ``steps``: (checkpoints,). Interpolated linearly in ``log(step + 1)``: half
    of a jump between steps 0 and 9 is crossed at ``sqrt(10) - 1``.

    >>> crossing([0.0, 1.0, 1.0], [0, 9, 99], 0.5), 10 ** 0.5 - 1
    (2.16227766..., 2.16227766...)
    >>> crossing([2.0, 2.0], [0, 10], 0.5)                      # no net change
    nan
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}.")
    y, s = _curve(curve, steps)
    if y.size < 2 or y[-1] == y[0]:
        return math.nan
    x = np.log1p(s)
    change = y[-1] - y[0]
    level = y[0] + fraction * change
    reached = np.nonzero(np.sign(change) * (y - level) >= 0)[0]
    k = int(reached[reached >= 1][0])  # the last point always reaches it
    frac = (level - y[k - 1]) / (y[k] - y[k - 1])
    return float(np.expm1(x[k - 1] + frac * (x[k] - x[k - 1])))


def emergence_step(curve: Any, steps: Any, method: str = "halfway") -> float:
    """The step at which ``curve`` (one value per checkpoint step) changes; see the module doc.

    With ``method="max_slope"``: the geometric midpoint of the steepest interval, here 3..7:

    >>> curve, steps = [0.0, 0.0, 0.1, 0.9, 1.0], [0, 1, 3, 7, 15]
    >>> round(emergence_step(curve, steps, "max_slope"), 3), round((4 * 8) ** 0.5 - 1, 3)
    (4.657, 4.657)
    >>> emergence_step(curve, steps, "steepest")
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: method must be one of ('halfway', 'max_slope'), got 'steepest'.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "halfway":
        return crossing(curve, steps, 0.5)
    y, s = _curve(curve, steps)
    if y.size < 2 or y[-1] == y[0]:
        return math.nan
    x = np.log1p(s)
    slope = np.sign(y[-1] - y[0]) * np.diff(y) / np.diff(x)
    k = int(np.argmax(slope))
    return float(np.expm1((x[k] + x[k + 1]) / 2))


def transition_window(curve: Any, steps: Any, window: tuple[float, float] = WINDOW
                      ) -> tuple[float, float]:
    """(start, end) steps: the crossings of ``window[0]`` and ``window[1]`` of the net change.

    One jump from step 0 to step 99 (``log(step + 1)`` from 0 to ``log(100)``):

    >>> [round(s, 2) for s in transition_window([0.0, 1.0], [0, 99])]
    [1.51, 38.81]
    >>> round(100 ** 0.2 - 1, 2), round(100 ** 0.8 - 1, 2)
    (1.51, 38.81)
    """
    lo, hi = window
    if not 0.0 < lo < hi <= 1.0:
        raise InputError(f"window must be two fractions 0 < lo < hi <= 1, got {window!r}.")
    return crossing(curve, steps, lo), crossing(curve, steps, hi)


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as in Spearman's rho)."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(a.size, dtype=np.float64)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else math.nan


def correlation(x: Any, y: Any) -> dict[str, float]:
    """Pearson and Spearman correlation of two equal-size arrays (pairs with a NaN dropped);
    ``n`` is the number of pairs used. NaN with fewer than 3 pairs.

    >>> c = correlation([1, 2, 3, np.nan], [2, 4, 7, 0])          # the NaN pair is dropped
    >>> c["n"], c["spearman"], bool(np.isclose(c["pearson"], np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1]))
    (3.0, 1.0, True)
    >>> correlation([1, 2], [2, 1])["pearson"]
    nan
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"x and y differ in size: {a.size} vs {b.size}.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3:
        return {"pearson": math.nan, "spearman": math.nan, "n": float(a.size)}
    return {"pearson": _pearson(a, b), "spearman": _pearson(_ranks(a), _ranks(b)),
            "n": float(a.size)}


@dataclass(frozen=True)
class EmergenceResult:
    """Emergence steps and transition windows of a structure and a behaviour metric per run,
    and how the two correlate.

    ``structure_steps``/``behaviour_steps``: (runs,); ``structure_windows``/``behaviour_windows``:
    (runs, 2) start and end steps; ``structure_change``/``behaviour_change``: (runs,) net change
    (last minus first checkpoint), to tell a real transition from noise.
    ``pearson``/``spearman``: over all (run, checkpoint) pairs; ``per_run_*``: the same per run;
    ``steps_pearson``/``steps_spearman``: of the two emergence steps across runs.

    A score that jumps while the loss drops, both halfway at step ``10 ** 1.5 - 1``:

    >>> from mechscope.dynamics import DynamicsResult
    >>> score = np.array([0.0, 0.1, 0.9, 1.0]).reshape(1, 4, 1, 1)   # (runs, checkpoints, layers, heads)
    >>> loss = np.array([3.0, 2.9, 1.0, 0.9]).reshape(1, 4, 1)       # (runs, checkpoints, metrics)
    >>> result = DynamicsResult(["seed0"], [0], np.array([0, 9, 99, 999]), score, 0 * score,
    ...                         loss, ["repeated_loss"])
    >>> e = result.emergence()
    >>> e.structure_steps.round(2).tolist(), e.ratio.tolist(), e.coincide.tolist()
    ([30.62], [1.0], [True])
    >>> e.structure_windows.shape, round(e.pearson, 3), e.steps_pearson      # one run: no spread
    ((1, 2), -0.998, nan)
    """

    runs: list[str]
    structure: str
    behaviour: str
    method: str
    structure_steps: np.ndarray
    behaviour_steps: np.ndarray
    structure_windows: np.ndarray
    behaviour_windows: np.ndarray
    structure_change: np.ndarray
    behaviour_change: np.ndarray
    pearson: float
    spearman: float
    n_points: int
    per_run_pearson: np.ndarray
    per_run_spearman: np.ndarray
    steps_pearson: float
    steps_spearman: float

    @property
    def ratio(self) -> np.ndarray:
        """``structure_steps / behaviour_steps`` per run (1: they change at the same step)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.structure_steps / self.behaviour_steps

    @property
    def coincide(self) -> np.ndarray:
        """Per run: each metric's emergence step lies inside the other's transition window."""
        s, b = self.structure_steps, self.behaviour_steps
        sw, bw = self.structure_windows, self.behaviour_windows
        return ((bw[:, 0] <= s) & (s <= bw[:, 1]) & (sw[:, 0] <= b) & (b <= sw[:, 1]))

    def to_pandas(self):  # noqa: ANN201
        """One row per run: emergence steps, windows, net changes, ratio and correlations."""
        import pandas as pd

        return pd.DataFrame({
            f"{self.structure} step": self.structure_steps,
            f"{self.behaviour} step": self.behaviour_steps,
            f"{self.structure} window": [tuple(w) for w in self.structure_windows.tolist()],
            f"{self.behaviour} window": [tuple(w) for w in self.behaviour_windows.tolist()],
            f"{self.structure} change": self.structure_change,
            f"{self.behaviour} change": self.behaviour_change,
            "ratio": self.ratio,
            "coincide": self.coincide,
            "pearson": self.per_run_pearson,
            "spearman": self.per_run_spearman,
        }, index=pd.Index(self.runs, name="run"))

    def summary(self) -> str:
        def at(step: float, window: np.ndarray, change: float) -> str:
            if not math.isfinite(step):
                return "never (no net change)"
            return (f"at step {step:.0f} (window {window[0]:.0f}-{window[1]:.0f}, "
                    f"change {change:+.3g})")

        def r(value: float) -> str:
            return f"{value:+.3f}" if math.isfinite(value) else "n/a"

        lines = [f"emergence ({self.method}) of {self.structure} vs {self.behaviour}:"]
        for i, run in enumerate(self.runs):
            lines.append(
                f"  {run}: {self.structure} "
                f"{at(self.structure_steps[i], self.structure_windows[i], self.structure_change[i])}, "
                f"{self.behaviour} "
                f"{at(self.behaviour_steps[i], self.behaviour_windows[i], self.behaviour_change[i])}")
        lines.append(f"  over {self.n_points} (run, checkpoint) pairs: Pearson "
                     f"{r(self.pearson)}, Spearman {r(self.spearman)}")
        if math.isfinite(self.steps_pearson):
            lines.append(f"  emergence steps across runs: Pearson {r(self.steps_pearson)}, "
                         f"Spearman {r(self.steps_spearman)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def emergence(result: DynamicsResult, structure: str = "induction",
              behaviour: str = "repeated_loss", method: str = "halfway",
              window: tuple[float, float] = WINDOW) -> EmergenceResult:
    """Emergence steps of ``structure`` and ``behaviour`` per run, and their correlations.

    ``structure`` and ``behaviour`` are any names `DynamicsResult.curve` accepts (per-head and
    per-neuron metrics are summarised by their best unit at each checkpoint).

    >>> from mechscope.dynamics import DynamicsResult
    >>> steps = np.array([0, 9, 99, 999])
    >>> score = np.zeros((2, 4, 1, 2)); score[:, 2:, 0, 1] = 1.0   # head 1 appears at step 99
    >>> score[1, 1, 0, 1] = 1.0                                      # seed 1: already at step 9
    >>> result = DynamicsResult(["seed0", "seed1"], [0, 1], steps, score, 0 * score,
    ...                         1.0 - score.max(axis=(2, 3))[..., None], ["repeated_loss"])
    >>> e = emergence(result, "induction", "repeated_loss")
    >>> e.structure_steps.round(2).tolist(), bool((e.structure_steps == e.behaviour_steps).all())
    ([30.62, 2.16], True)
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    s_curves = result.curve(structure)
    b_curves = result.curve(behaviour)
    steps = result.steps
    s_steps = np.array([emergence_step(c, steps, method) for c in s_curves])
    b_steps = np.array([emergence_step(c, steps, method) for c in b_curves])
    s_win = np.array([transition_window(c, steps, window) for c in s_curves]).reshape(-1, 2)
    b_win = np.array([transition_window(c, steps, window) for c in b_curves]).reshape(-1, 2)
    pooled = correlation(s_curves, b_curves)
    per_run = [correlation(s, b) for s, b in zip(s_curves, b_curves, strict=True)]
    across = correlation(s_steps, b_steps)
    return EmergenceResult(
        runs=list(result.runs), structure=structure, behaviour=behaviour, method=method,
        structure_steps=s_steps, behaviour_steps=b_steps, structure_windows=s_win,
        behaviour_windows=b_win, structure_change=s_curves[:, -1] - s_curves[:, 0],
        behaviour_change=b_curves[:, -1] - b_curves[:, 0], pearson=pooled["pearson"],
        spearman=pooled["spearman"], n_points=int(pooled["n"]),
        per_run_pearson=np.array([c["pearson"] for c in per_run]),
        per_run_spearman=np.array([c["spearman"] for c in per_run]),
        steps_pearson=across["pearson"], steps_spearman=across["spearman"],
    )
