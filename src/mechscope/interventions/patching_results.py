"""Results of `mechscope.patch` and `mechscope.patch_cell`: plain frozen objects.

`PatchingResult` holds the layers x columns map (``.values``, ``.normalized()``,
``.to_pandas()``, ``.show()``); `CellPatch` one re-run cell with the top tokens before and
after (`TopTokens`).
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..models.model import Model
from .metrics import BoundMetric, Metric

if TYPE_CHECKING:
    from ..widgets.patching_map import PatchingMap


# ---- result ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchingResult:
    """``values[i, j]``: the metric on the corrupt run with layer ``layers[i]``, column ``j`` patched.

    Columns are positions (``columns`` holds their indices) for ``resid``/``attn``/``mlp``, and
    heads for ``heads`` (patched at ``positions`` together). ``clean_metric`` and
    ``corrupt_metric`` are the unpatched runs; `normalized` maps them to 1 and 0.
    ``approximation`` is True for ``method="attribution"`` (``note`` says what that means).
    ``metric`` is the bound metric itself (for re-running a cell, see `cell_rerun`).
    """

    values: np.ndarray
    clean_metric: float
    corrupt_metric: float
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    layers: list[int]
    columns: list[int]
    positions: list[int]
    site: str
    method: str
    metric_name: str
    clean_prompt: str
    corrupt_prompt: str
    model_name: str
    approximation: bool = False
    note: str = ""
    n_forward_passes: int = 0
    #: the metric the cells were measured with (bound to the model), kept so that a widget can
    #: re-run one cell (`cell_rerun`); None for results not made by `patch`.
    metric: BoundMetric | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling keeps every field, and the metric when it pickles: metrics built by
        `mechscope.metrics` hold closures, so an unpickled result re-runs cells only with
        ``.show(model=..., metric=...)``. (``copy.deepcopy`` keeps the metric as it is.)"""
        state = dict(self.__dict__)
        if state.get("metric") is not None:
            try:
                pickle.dumps(state["metric"])
            except Exception:
                state["metric"] = None
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> PatchingResult:
        fields = {k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "metric"}
        return type(self)(**fields, metric=self.metric)

    @property
    def column_kind(self) -> str:
        """"head" for ``site="heads"``, else "position"."""
        return "head" if self.site == "heads" else "position"

    @property
    def column_labels(self) -> list[str]:
        """Heads as "H0", "H1", ...; positions as their clean token ("clean/corrupt" where they differ)."""
        if self.site == "heads":
            return [f"H{h}" for h in self.columns]
        labels = []
        for p in self.columns:
            c, k = self.clean_tokens[p], self.corrupt_tokens[p]
            labels.append(c if c == k else f"{c}/{k}")
        return labels

    def normalized(self) -> np.ndarray:
        """``(values - corrupt_metric) / (clean_metric - corrupt_metric)``: 0 = corrupt, 1 = clean."""
        span = self.clean_metric - self.corrupt_metric
        if not np.isfinite(span) or abs(span) <= 1e-9 * max(1.0, abs(self.clean_metric)):
            raise InputError(
                f"the clean and corrupt runs give the same {self.metric_name} "
                f"({self.clean_metric:.6g} vs {self.corrupt_metric:.6g}), so there is no "
                "effect to normalise by; use .values, or pick a metric the prompts disagree on."
            )
        return ((self.values.astype(np.float64) - self.corrupt_metric) / span).astype(np.float32)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """A DataFrame of ``values``: one row per layer, one column per position (or head)."""
        import pandas as pd

        if self.site == "heads":
            columns = pd.Index(self.columns, name="head")
        else:
            columns = pd.MultiIndex.from_arrays(
                [self.columns, [self.clean_tokens[p] for p in self.columns],
                 [self.corrupt_tokens[p] for p in self.columns]],
                names=["position", "clean_token", "corrupt_token"],
            )
        return pd.DataFrame(self.values, index=pd.Index(self.layers, name="layer"), columns=columns)

    def show(self, normalized: bool = True, *, model: Model | None = None,
             metric: Metric | BoundMetric | None = None, top_k: int = 5) -> PatchingMap:
        """`PatchingMap` widget: layers x positions (or heads) on a diverging scale centred at 0.

        With ``normalized=True`` (default) cells are `normalized` (1 = as clean); if clean and
        corrupt agree, or with ``normalized=False``, cells are ``values - corrupt_metric`` (a
        control in the widget switches). With ``model=`` (the model the result came from), a
        click on a cell re-runs that one patch exactly through `patch_cell` and shows the
        ``top_k`` next tokens before and after beside the map; ``metric=`` is needed only for
        results that do not carry theirs.
        """
        from ..widgets.patching_map import PatchingMap
        from .patching import cell_rerun

        rerun = None if model is None else cell_rerun(self, model, metric=metric, top_k=top_k)
        return PatchingMap(self, normalized=normalized, rerun=rerun)

    def _positions_text(self) -> str:
        n = len(self.clean_tokens)
        return "all" if self.positions == list(range(n)) else str(self.positions)

    def __repr__(self) -> str:
        rows, cols = self.values.shape
        approx = ", approximation" if self.approximation else ""
        return (f"PatchingResult({self.method} {self.site}, {rows} layers x {cols} "
                f"{self.column_kind}s, {self.metric_name}: clean {self.clean_metric:.4g}, "
                f"corrupt {self.corrupt_metric:.4g}{approx})")


@dataclass(frozen=True)
class TopTokens:
    """The ``k`` most likely next tokens of one run, most likely first."""

    ids: list[int]
    tokens: list[str]
    logits: list[float]
    probs: list[float]


@dataclass(frozen=True)
class CellPatch:
    """One patched cell re-run on its own (`patch_cell`): the metric and the top next tokens.

    ``value`` is the metric with ``site`` at ``layer`` patched at ``column`` (a position, or a
    head patched at ``positions``): the same number as that cell of `patch`'s result.
    ``before`` is the corrupt run, ``after`` the patched one, ``clean`` the clean run.
    """

    site: str
    layer: int
    column: int
    positions: list[int]
    metric_name: str
    value: float
    clean_metric: float
    corrupt_metric: float
    before: TopTokens
    after: TopTokens
    clean: TopTokens

    @property
    def column_kind(self) -> str:
        """"head" for ``site="heads"``, else "position"."""
        return "head" if self.site == "heads" else "position"
