"""`Dynamics`: structure and behaviour over training, one small multiple per seed.

Panels, top to bottom: one curve panel per run (shared axes: the structure metric's best unit
on the left scale, the behaviour metric on the right, step on a log(step + 1) axis, transition
windows shaded, emergence steps dashed); a step slider; one heatmap per run of the structure
metric (layers x heads, or layers x neurons) at the slider's step, on one shared colour scale;
the emergence-step scatter across runs (one point per run, transition windows as error bars,
the diagonal where both emerge together) with the correlations.

Keyboard: the slider moves with the arrow keys, Page Up/Down, Home and End; a focused curve
panel moves the step with Left/Right (Home/End); a focused heatmap moves a cell cursor with the
arrows and shows its value; a focused scatter cycles through the runs with the arrows.

>>> import numpy as np
>>> from mechscope.dynamics import DynamicsResult
>>> steps = np.array([0, 10, 100, 1000])
>>> score = np.array([[0.0, 0.1, 0.8, 0.9]])
>>> result = DynamicsResult(
...     runs=["seed0"], seeds=[0], steps=steps,
...     induction=np.broadcast_to(score[:, :, None, None], (1, 4, 2, 3)).copy(),
...     prev_token=np.zeros((1, 4, 2, 3)),
...     behaviour=np.stack([4 - 4 * score, 4 - 4 * score, -score], axis=-1),
...     metric_names=["first_loss", "repeated_loss", "icl_score"])
>>> w = Dynamics(result)
>>> w.step, w.structure_name, w.behaviour_name
(1000, 'induction', 'repeated_loss')
>>> w.step = 90                    # the nearest checkpoint
>>> w.step_index, w.step
(2, 100)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError

if TYPE_CHECKING:
    from ..dynamics.emergence_steps import EmergenceResult
    from ..dynamics.measurement import DynamicsResult


def _at(step: float) -> str:
    return f"at step {step:.0f}" if math.isfinite(step) else "never (no net change)"


def _r(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else "n/a"


def _num(value: float) -> float | None:
    """A float for JSON state (NaN/inf become None: JSON has no NaN)."""
    return float(value) if math.isfinite(value) else None


class Dynamics(MechscopeWidget):
    """Training dynamics of a `DynamicsResult`: per-run curves, a step slider driving per-run
    heatmaps of a per-unit structure metric, and the emergence-step scatter.

    Parameters: ``result`` (a `mechscope.dynamics.DynamicsResult`), ``structure`` (a per-unit
    metric: "induction", "prev_token" or "selectivity"), ``behaviour`` (any behaviour metric,
    e.g. "repeated_loss"), ``method`` ("halfway" or "max_slope", see
    `mechscope.dynamics.emergence_steps`), ``step`` (training step shown first: the nearest
    checkpoint; default the last), ``vmin``/``vmax`` (heatmap colour range, shared by every
    run and step; default 0 to the largest value anywhere in the array), ``title``.

    >>> import mechscope
    >>> from mechscope.dynamics import measure
    >>> models = [mechscope.tiny_model("llama", seed=s) for s in (0, 1)]  # two "checkpoints"
    >>> w = Dynamics(measure(models, steps=[0, 100], n_seqs=2, span_len=3, progress=False), step=0)
    >>> w.step, w.structure["shape"], w.heatmap.shape  # (runs, checkpoints, layers, heads)
    (0, [1, 2, 2, 4], (1, 2, 4))
    >>> print(w.summary().splitlines()[0])
    Dynamics 'Training dynamics: induction vs repeated_loss (1 runs)': induction (2 layers x 4 heads, ...
    """

    _esm = STATIC / "dynamics.js"

    runs = t.List(t.Unicode()).tag(sync=True)
    """Run labels, one curve panel and one heatmap each (e.g. "seed0")."""
    steps = ArrayTrait("float32")
    """Encoded (checkpoints,) training step of every checkpoint."""
    structure = ArrayTrait("float32")
    """Encoded (runs, checkpoints, rows, cols) per-unit structure metric (the heatmaps)."""
    row_labels = t.List(t.Unicode()).tag(sync=True)
    """Heatmap row labels (layers, "L0")."""
    col_labels = t.List(t.Unicode()).tag(sync=True)
    """Heatmap column labels (heads "H0" or neurons "N0")."""
    structure_name = t.Unicode("").tag(sync=True)
    """Name of the structure metric."""
    behaviour_name = t.Unicode("").tag(sync=True)
    """Name of the behaviour metric."""
    structure_curve = ArrayTrait("float32")
    """Encoded (runs, checkpoints) structure metric of the best unit at each checkpoint."""
    behaviour_curve = ArrayTrait("float32")
    """Encoded (runs, checkpoints) behaviour metric."""
    emergence_steps = ArrayTrait("float32")
    """Encoded (runs, 2) emergence step of [structure, behaviour] (NaN: no change)."""
    windows = ArrayTrait("float32")
    """Encoded (runs, 2, 2) transition windows [[structure start, end], [behaviour start, end]]."""
    stats = t.Dict().tag(sync=True)
    """Correlations: pearson, spearman, n (pairs), steps_pearson, steps_spearman (None: NaN)."""
    method = t.Unicode("halfway").tag(sync=True)
    """How emergence steps were found ("halfway" or "max_slope")."""
    step_index = t.Int(0).tag(sync=True)
    """Index of the checkpoint the heatmaps show (the slider's position)."""
    vmin = t.Float(0.0).tag(sync=True)
    """Lower end of the heatmaps' shared colour scale."""
    vmax = t.Float(1.0).tag(sync=True)
    """Upper end of the heatmaps' shared colour scale."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""

    def __init__(self, result: DynamicsResult, structure: str = "induction",
                 behaviour: str = "repeated_loss", *, method: str = "halfway",
                 step: int | None = None, vmin: float | None = None, vmax: float | None = None,
                 title: str | None = None) -> None:
        from ..dynamics.measurement import DynamicsResult

        if not isinstance(result, DynamicsResult):
            raise InputError(f"Dynamics takes a mechscope.dynamics.DynamicsResult (from "
                             f"dynamics.measure), got {type(result).__name__}.")
        if structure not in result.structure_names:
            raise InputError(f"structure must be a per-unit metric, one of "
                             f"{result.structure_names}; got {structure!r}.")
        if behaviour not in result.metric_names:
            raise InputError(f"behaviour must be one of {result.metric_names}, got {behaviour!r}.")
        values, rows, cols = result.units(structure)
        em: EmergenceResult = result.emergence(structure, behaviour, method)
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 1.0
        lo = 0.0 if vmin is None else float(vmin)
        hi = (top if top > lo else lo + 1.0) if vmax is None else float(vmax)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"need finite vmin < vmax, got {vmin!r}, {vmax!r}.")
        self._em = em
        super().__init__(
            runs=[str(r) for r in result.runs],
            steps=result.steps,
            structure=values,
            row_labels=rows, col_labels=cols, structure_name=structure, behaviour_name=behaviour,
            structure_curve=result.curve(structure),
            behaviour_curve=result.curve(behaviour),
            emergence_steps=np.stack([em.structure_steps, em.behaviour_steps], axis=1),
            windows=np.stack([em.structure_windows, em.behaviour_windows], axis=1),
            stats={"pearson": _num(em.pearson), "spearman": _num(em.spearman), "n": em.n_points,
                   "steps_pearson": _num(em.steps_pearson),
                   "steps_spearman": _num(em.steps_spearman)},
            method=method, step_index=len(result.steps) - 1, vmin=lo, vmax=hi,
            title=title if title is not None else
            f"Training dynamics: {structure} vs {behaviour} ({len(result.runs)} runs)",
        )
        if step is not None:
            self.step = step

    @t.validate("step_index")
    def _check_step_index(self, proposal: Any) -> int:
        n = len(self.step_values)
        value = int(proposal["value"])
        if not 0 <= value < n:
            raise TraitInputError(f"step_index {value} is out of range 0..{n - 1} ({n} checkpoints).")
        return value

    # ---- Python-side accessors ----------------------------------------------------------
    @property
    def step_values(self) -> np.ndarray:
        """Training steps of the checkpoints (int)."""
        if not self.steps:
            return np.zeros(0, dtype=np.int64)
        return decode_array(self.steps).astype(np.int64)

    @property
    def step(self) -> int:
        """Training step shown in the heatmaps; setting it picks the nearest checkpoint
        (in log(step + 1))."""
        return int(self.step_values[self.step_index])

    @step.setter
    def step(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer | float):
            raise InputError(f"step must be a number, got {value!r}.")
        if not value >= 0:
            raise InputError(f"step must be >= 0, got {value!r}.")
        x = np.log1p(self.step_values.astype(np.float64))
        self.step_index = int(np.argmin(np.abs(x - math.log1p(float(value)))))

    @property
    def emergence(self) -> EmergenceResult:
        """The emergence analysis drawn in the curves and the scatter."""
        return self._em

    @property
    def heatmap(self) -> np.ndarray:
        """(runs, rows, cols) structure metric at the current step, as drawn."""
        return decode_array(self.structure)[:, self.step_index]

    def summary(self) -> str:
        em = self._em
        steps = self.step_values
        rows, cols = len(self.row_labels), len(self.col_labels)
        unit = "heads" if self.col_labels[:1] == ["H0"] else "units"
        lines = [f"Dynamics {self.title!r}: {self.structure_name} ({rows} layers x {cols} "
                 f"{unit}, best unit per checkpoint) vs {self.behaviour_name}, {len(self.runs)} "
                 f"runs x {len(steps)} checkpoints (steps {steps[0]}..{steps[-1]})"]
        for r, run in enumerate(self.runs):
            lines.append(f"  {run}: {self.structure_name} emerges {_at(em.structure_steps[r])}, "
                         f"{self.behaviour_name} {_at(em.behaviour_steps[r])} ({em.method})")
        lines.append(f"  correlation over {em.n_points} (run, checkpoint) pairs: Pearson "
                     f"{_r(em.pearson)}, Spearman {_r(em.spearman)}")
        if math.isfinite(em.steps_pearson):
            lines.append(f"  emergence steps across runs: Pearson {_r(em.steps_pearson)}")
        lines.append(f"  heatmaps show step {self.step}")
        return "\n".join(lines)
