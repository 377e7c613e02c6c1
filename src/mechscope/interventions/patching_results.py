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
    ``values`` has shape ``(len(layers), len(columns))``.

    >>> import mechscope
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.patch(model, "The cat sat on the", "The dog sat on the",
    ...                     logit_diff(" the", " of"), progress=False)
    >>> r.values.shape == (model.n_layers, len(r.clean_tokens)), r.column_labels[:2]
    (True, ['The', ' cat/ dog'])
    >>> round(float(r.normalized()[-1, -1]), 4)          # 1 = as clean, 0 = as corrupt
    1.0
    >>> r.to_pandas().shape == r.values.shape
    True
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
    #: over a dataset (`mechscope.datasets`): the metric of every example and cell,
    #: (n_examples, layers, columns), examples first; ``values`` is their mean.
    per_example: np.ndarray | None = field(default=None, repr=False)
    #: over a dataset: the clean and the corrupt metric of every example, (n_examples,).
    clean_per_example: np.ndarray | None = field(default=None, repr=False)
    corrupt_per_example: np.ndarray | None = field(default=None, repr=False)
    #: over a dataset: the `ci_level` bootstrap interval of the mean over examples, like ``values``.
    ci_low: np.ndarray | None = field(default=None, repr=False)
    ci_high: np.ndarray | None = field(default=None, repr=False)
    ci_level: float = 0.95
    #: role names when columns are roles ("S1", "IO", "END"): ``columns`` then index them.
    column_names: list[str] | None = None
    dataset_name: str | None = None
    #: the dataset itself (`mechscope.datasets.PromptPairs`), so a widget can re-run a cell on it.
    dataset: Any = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        """How many examples the values are averaged over (1 for one prompt pair)."""
        return 1 if self.per_example is None else int(self.per_example.shape[0])

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
        if self.column_names is not None:
            return list(self.column_names)
        labels = []
        for p in self.columns:
            c, k = self.clean_tokens[p], self.corrupt_tokens[p]
            labels.append(c if c == k else f"{c}/{k}")
        return labels

    def normalized(self) -> np.ndarray:
        """``(values - corrupt_metric) / (clean_metric - corrupt_metric)``: 0 = corrupt, 1 = clean.

        Over a dataset each example is normalised by its own clean and corrupt runs and the
        result is the mean of those (examples whose runs agree are left out); see
        `normalized_per_example`.
        """
        if self.per_example is not None:
            from ..stats import nanmean

            return nanmean(self.normalized_per_example().astype(np.float64)).astype(np.float32)
        span = self.clean_metric - self.corrupt_metric
        if not np.isfinite(span) or abs(span) <= 1e-9 * max(1.0, abs(self.clean_metric)):
            raise InputError(
                f"the clean and corrupt runs give the same {self.metric_name} "
                f"({self.clean_metric:.6g} vs {self.corrupt_metric:.6g}), so there is no "
                "effect to normalise by; use .values, or pick a metric the prompts disagree on."
            )
        return ((self.values.astype(np.float64) - self.corrupt_metric) / span).astype(np.float32)

    def normalized_per_example(self) -> np.ndarray:
        """Each example normalised by its own runs, (n_examples, layers, columns); NaN for an
        example whose clean and corrupt runs agree."""
        if self.per_example is None or self.clean_per_example is None or self.corrupt_per_example is None:
            return self.normalized()[None]
        clean = self.clean_per_example.astype(np.float64)[:, None, None]
        corrupt = self.corrupt_per_example.astype(np.float64)[:, None, None]
        span = clean - corrupt
        flat = ~np.isfinite(span) | (np.abs(span) <= 1e-9 * np.maximum(1.0, np.abs(clean)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (self.per_example.astype(np.float64) - corrupt) / np.where(flat, np.nan, span)
        return out.astype(np.float32)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One prompt pair: one row per layer, one column per position (or head).

        Over a dataset: long format, one row per (example, layer, column) with the raw
        ``value`` and the per-example ``normalized`` value.
        """
        import pandas as pd

        if self.per_example is not None:
            n, rows, cols = self.per_example.shape
            example, layer, column = np.meshgrid(np.arange(n), self.layers, np.arange(cols), indexing="ij")
            return pd.DataFrame({
                "example": example.ravel(), "layer": layer.ravel(),
                "column": np.asarray(self.column_labels, dtype=object)[column.ravel()],
                "value": self.per_example.ravel(),
                "normalized": self.normalized_per_example().ravel(),
            })
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
        if self.per_example is not None:
            approx += f", mean of {self.n} examples of {self.dataset_name!r}"
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

    >>> import mechscope
    >>> from mechscope.interventions.patching import patch_cell
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> cell = patch_cell(model, "The cat sat on the", "The dog sat on the",
    ...                   logit_diff(" the", " of"), "resid", -1, -1, top_k=3)
    >>> cell.layer, cell.column, cell.column_kind, len(cell.after.tokens)
    (1, 6, 'position', 3)
    >>> cell.after.ids == cell.clean.ids, abs(cell.value - cell.clean_metric) < 1e-5
    (True, True)
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
    #: over a dataset: the cell's metric for every example, (n_examples,); ``value`` is the mean,
    #: the top tokens are those of example ``example``.
    per_example: np.ndarray | None = field(default=None, repr=False)
    example: int = 0
    #: the role name when the column is a role of a dataset ("S2", "END").
    column_name: str | None = None

    @property
    def column_kind(self) -> str:
        """"head" for ``site="heads"``, else "position"."""
        return "head" if self.site == "heads" else "position"
