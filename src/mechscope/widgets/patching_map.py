"""`PatchingMap`: a `PatchingResult` as a layers x positions (or heads) map, click to re-run a cell.

Takes a `PatchingResult` (never a model). Cells are coloured on a diverging scale centred on
0: normalised (0 = corrupt, 1 = clean) or raw (metric minus the corrupt run's metric); a
control switches. A click (or Enter on the keyboard cursor) selects a cell. When the widget was
given a ``rerun`` function (``result.show(model=model)`` builds one through
`mechscope.interventions.patching.cell_rerun`) the front end sends a ``{"kind": "select", "id",
"cell"}`` request (the one request mechanism, `mechscope.widgets.requests`): Python sets
``selected``, re-runs that one patch and replies through ``detail`` (naming the request's id as
``client_id``) with the metric and the top next tokens before and after. Without one (or in the
offline HTML snapshot) the front end sets ``selected`` itself and a click still shows the cell's
value; setting ``selected`` from Python (or `PatchingMap.select`) re-runs as a click does.

A result over a dataset (``per_example`` set, `mechscope.datasets`) shows the mean over its
examples with the bootstrap interval on hover, an example picker (``example``: -1 for the mean,
else the example drawn) and, beside the map, the spread of a clicked cell over the examples;
see `mechscope.widgets.patching_examples` for what travels and the fallback for huge datasets.

>>> import numpy as np
>>> from mechscope.interventions.patching import PatchingResult
>>> r = PatchingResult(values=np.array([[0.0, 0.5], [1.0, 2.0]]), clean_metric=2.0,
...     corrupt_metric=0.0, clean_tokens=["a", "b"], corrupt_tokens=["a", "c"], layers=[0, 1],
...     columns=[0, 1], positions=[0, 1], site="resid", method="exact", metric_name="m",
...     clean_prompt="ab", corrupt_prompt="ac", model_name="toy")
>>> w = PatchingMap(r)
>>> w.shape, w.col_labels, w.live
((2, 2), ['a', 'b/c'], False)
>>> w.array.tolist()
[[0.0, 0.25], [0.5, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ..interventions.patching import CellPatch, PatchingResult, TopTokens
from ._base import STATIC, MechscopeWidget
from .codec import decode_array, encode_array
from .patching_examples import (
    SNAPSHOT_PER_EXAMPLE,
    dataset_traits,
    example_map,
    interval_text,
    rerun_normalized,
)
from .requests import Requests
from .traits import ArrayTrait, TraitInputError

#: Largest map drawn cell by cell (the front end scrolls wide maps; nothing is pooled, since
#: every cell can be clicked). Patch fewer layers or positions for anything larger.
MAX_ROWS = 2048
MAX_COLS = 8000
#: Up to this many cells the values travel as float32; above it as float16 (half the bytes).
FLOAT32_MAX_CELLS = 16384
_FLOAT16_MAX = 65000.0

Rerun = Callable[[int, int], CellPatch]


def _finite(x: float) -> float | None:
    """``x`` as a float, or None when NaN/inf (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _validate(result: Any) -> tuple[int, int]:
    if not isinstance(result, PatchingResult):
        raise InputError(
            f"PatchingMap takes a PatchingResult (from mechscope.patch), got {type(result).__name__}."
        )
    values = np.asarray(result.values)
    if values.ndim != 2 or values.size == 0:
        raise InputError(f"values must be a non-empty (layers, columns) array, got shape {values.shape}.")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise InputError(f"values must be real numbers, got dtype {values.dtype}.")
    rows, cols = values.shape
    if len(result.layers) != rows or len(result.columns) != cols:
        raise InputError(
            f"labels do not match the values: {rows} x {cols} cells, but {len(result.layers)} "
            f"layers and {len(result.columns)} columns."
        )
    if result.site != "heads" and result.column_names is not None:
        if any(not 0 <= c < len(result.column_names) for c in result.columns):
            raise InputError(f"columns {list(result.columns)[:8]} must index the roles {result.column_names}.")
    elif result.site != "heads":
        n = len(result.clean_tokens)
        if len(result.corrupt_tokens) != n or any(not 0 <= c < n for c in result.columns):
            raise InputError(
                f"columns {list(result.columns)[:8]} must be positions of the {n} clean and "
                f"corrupt tokens ({len(result.clean_tokens)} clean, {len(result.corrupt_tokens)} corrupt)."
            )
    if rows > MAX_ROWS or cols > MAX_COLS:
        raise InputError(
            f"a {rows} x {cols} patching map is too large to draw cell by cell (at most "
            f"{MAX_ROWS} layers x {MAX_COLS} columns); patch a subset (layers=, positions=)."
        )
    per = result.per_example
    if per is not None and (np.ndim(per) != 3 or np.shape(per)[1:] != (rows, cols) or not np.shape(per)[0]):
        raise InputError(f"per_example must be (examples, {rows}, {cols}) like values, got shape {np.shape(per)}.")
    return rows, cols


def _heads_positions(result: PatchingResult) -> str:
    """The positions every head was patched at, as text ("all", a list, or role names)."""
    if result.per_example is not None and result.column_names:
        return ", ".join(result.column_names)
    if result.per_example is not None and not result.positions:
        return "all"
    return result._positions_text()


def _top_dict(top: TopTokens) -> dict[str, Any]:
    return {"tokens": [str(s) for s in top.tokens], "ids": [int(i) for i in top.ids],
            "logits": [_finite(x) for x in top.logits], "probs": [_finite(x) for x in top.probs]}


class PatchingMap(Requests, MechscopeWidget):
    """Patching heatmap: rows are layers (first on top), columns are positions or heads.

    ``rerun(row, col) -> CellPatch`` (optional; see `PatchingResult.show`) re-runs one cell when
    it is clicked. Hover or arrow keys show a cell's value; Enter or a click selects it.

    >>> import mechscope
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.patch(model, "The cat sat", "The dog sat", logit_diff(" the", " of"), progress=False)
    >>> w = PatchingMap(r)
    >>> w.shape == (model.n_layers, len(r.clean_tokens)), w.effect["dtype"], w.col_labels[1], w.live
    (True, 'float32', ' cat/ dog', False)
    >>> print(w.summary())
    PatchingMap 'tiny-llama-seed0: exact patching of resid': 2 layers x ... positions, ...
    """

    _esm = STATIC / "patching_map.js"
    _request_handlers = {"select": "_on_select_request"}  # noqa: RUF012 - read only
    #: The colour scale (always diverging, centred on 0).
    colorscale = "diverging"

    effect = ArrayTrait("float32")
    """Encoded (layers, columns) ``values - corrupt_metric``: float32, or float16 above
    FLOAT32_MAX_CELLS cells (NaN/inf kept)."""
    clean_metric = t.Float(None, allow_none=True).tag(sync=True)
    """The metric on the clean run (None if not finite)."""
    corrupt_metric = t.Float(None, allow_none=True).tag(sync=True)
    """The metric on the corrupt run (None if not finite); raw cells are measured from it."""
    metric_name = t.Unicode("").tag(sync=True)
    """What the metric is, e.g. "logit_diff(' Paris', ' Rome')"."""
    row_labels = t.List(t.Unicode()).tag(sync=True)
    """One label per layer row ("L3")."""
    col_labels = t.List(t.Unicode()).tag(sync=True)
    """Axis label per column: the clean token ("clean/corrupt" where they differ) or "H2"."""
    col_clean = t.List(t.Unicode()).tag(sync=True)
    """Clean token of each position column (empty for heads); rendered as text."""
    col_corrupt = t.List(t.Unicode()).tag(sync=True)
    """Corrupt token of each position column (empty for heads); rendered as text."""
    columns = t.List(t.Int()).tag(sync=True)
    """The position (or head) number of each column."""
    column_kind = t.Enum(("position", "head", "role"), default_value="position").tag(sync=True)
    """"position", "head", or "role" (a dataset patched by role: columns index ``col_labels``)."""
    positions_text = t.Unicode("").tag(sync=True)
    """For heads: the positions each head was patched at ("all" or a list)."""
    clean_prompt = t.Unicode("").tag(sync=True)
    """The clean prompt (text)."""
    corrupt_prompt = t.Unicode("").tag(sync=True)
    """The corrupt prompt (text)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the map."""
    note = t.Unicode("").tag(sync=True)
    """What an approximate (attribution) map means; empty for exact patching."""
    normalized = t.Bool(True).tag(sync=True)
    """Colour by the normalised effect (True) or the raw ``values - corrupt_metric`` (False)."""
    can_normalize = t.Bool(True).tag(sync=True)
    """False when clean and corrupt give the same metric (nothing to normalise by)."""
    live = t.Bool(False).tag(sync=True)
    """True when Python can re-run a clicked cell (a ``rerun`` function was given)."""
    selected = t.List(t.Int(), default_value=[]).tag(sync=True)
    """[row, col] of the selected cell (set by clicks / Enter in the front end, or from Python)."""
    hovered = t.List(t.Int(), default_value=[]).tag(sync=True)
    """[row, col] under the pointer or keyboard cursor, set by the front end."""
    n_examples = t.Int(0).tag(sync=True)
    """How many examples the map averages (0: one prompt pair, none of the dataset traits)."""
    ci_level = t.Float(0.95).tag(sync=True)
    """The level of the bootstrap intervals."""
    dataset_name = t.Unicode("").tag(sync=True)
    """The dataset's name (text)."""
    ci_low = ArrayTrait("float32", optional=True)
    """(layers, columns) lower end of the interval of the mean metric ({} for one prompt pair)."""
    ci_high = ArrayTrait("float32", optional=True)
    """(layers, columns) upper end of the interval of the mean metric."""
    norm_mean = ArrayTrait("float32", optional=True)
    """(layers, columns) mean of the per-example normalised effects ({} when none normalises)."""
    norm_low = ArrayTrait("float32", optional=True)
    """(layers, columns) lower end of its interval ({} above MAX_PER_EXAMPLE values)."""
    norm_high = ArrayTrait("float32", optional=True)
    """(layers, columns) upper end of its interval."""
    per_example = ArrayTrait("float32", optional=True)
    """(examples, layers, columns) metric of every example ({} above MAX_PER_EXAMPLE values)."""
    clean_per_example = ArrayTrait("float32", optional=True)
    """(examples,) the clean run's metric of every example."""
    corrupt_per_example = ArrayTrait("float32", optional=True)
    """(examples,) the corrupt run's metric of every example."""
    example_texts = t.List(t.Unicode()).tag(sync=True)
    """Each example's clean text, truncated (the picker's labels; rendered as text)."""
    examples_note = t.Unicode("").tag(sync=True)
    """Why per-example values were not sent (empty when they were)."""
    example = t.Int(-1).tag(sync=True)
    """The example drawn: -1 for the mean over examples (set by the picker, or from Python)."""
    detail = t.Dict().tag(sync=True)
    """Python's reply to a selection: ``{"kind": "rerun", "cell": [row, col], "client_id",
    "value", "before", "after", "clean", ...}`` or ``{"kind": "error", "cell", "client_id",
    "message"}``; {} when none. ``client_id`` is the id of the front end's request (None for a
    selection made from Python)."""

    def __init__(self, result: PatchingResult, *, normalized: bool = True,
                 rerun: Rerun | None = None, title: str | None = None) -> None:
        rows, cols = _validate(result)
        if rerun is not None and not callable(rerun):
            raise InputError(f"rerun must be a function (row, col) -> CellPatch, got {type(rerun).__name__}.")
        values = np.asarray(result.values, dtype=np.float64)
        effect = values - float(result.corrupt_metric)
        extra: dict[str, Any] = {}
        if result.per_example is not None:
            extra, can_normalize = dataset_traits(result)
        else:
            try:
                result.normalized()
                can_normalize = True
            except InputError:
                can_normalize = False
        finite = np.abs(effect[np.isfinite(effect)])
        small = values.size <= FLOAT32_MAX_CELLS or (finite.size and finite.max() > _FLOAT16_MAX)
        heads = result.site == "heads"
        roles = not heads and result.column_names is not None
        self._result = result
        self._rerun = rerun
        self._last: CellPatch | None = None
        self._client_id: int | None = None  # the request being answered (None: from Python)
        approx = " (approximation)" if result.approximation else ""
        where = f", positions {_heads_positions(result)}" if heads else ""
        if result.per_example is not None:
            approx += f", mean of {result.n} examples"
        super().__init__(
            effect=encode_array(effect, "float32" if small else "float16"),
            clean_metric=_finite(result.clean_metric), corrupt_metric=_finite(result.corrupt_metric),
            metric_name=str(result.metric_name),
            row_labels=[f"L{layer}" for layer in result.layers],
            col_labels=[str(s) for s in result.column_labels],
            col_clean=[] if heads or roles else [str(result.clean_tokens[p]) for p in result.columns],
            col_corrupt=[] if heads or roles else [str(result.corrupt_tokens[p]) for p in result.columns],
            columns=[int(c) for c in result.columns],
            column_kind="role" if roles else result.column_kind,
            positions_text=_heads_positions(result) if heads else "",
            clean_prompt=str(result.clean_prompt), corrupt_prompt=str(result.corrupt_prompt),
            title=title if title is not None else
            f"{result.model_name}: {result.method} patching of {result.site}{where}{approx}",
            note=str(result.note), normalized=bool(normalized) and can_normalize,
            can_normalize=can_normalize, live=rerun is not None, **extra,
        )
        assert (rows, cols) == self.shape
        self._listen_for_requests()

    # ---- validation and the click round trip -------------------------------------------
    @t.validate("normalized")
    def _check_normalized(self, proposal: Any) -> bool:
        value = bool(proposal["value"])
        if value and not self.can_normalize:
            raise TraitInputError(
                "this map cannot be normalised: the clean and corrupt runs give the same metric."
            )
        return value

    @t.validate("example")
    def _check_example(self, proposal: Any) -> int:
        value = int(proposal["value"])
        n = self.n_examples if self.per_example else 0
        if value != -1 and not 0 <= value < n:
            what = (f"0..{n - 1} (an example)" if n else
                    "nothing else: " + ("per-example values were not sent" if self.n_examples
                                        else "this map is one prompt pair"))
            raise TraitInputError(f"example must be -1 (the mean) or {what}, got {value}.")
        return value

    @t.validate("selected")
    def _check_selected(self, proposal: Any) -> list[int]:
        value = list(proposal["value"])
        if not value:
            return value
        rows, cols = self.shape
        if len(value) != 2 or not (0 <= value[0] < rows and 0 <= value[1] < cols):
            raise TraitInputError(f"selected must be [] or [row, col] inside the {rows} x {cols} map, got {value}.")
        return value

    @t.observe("selected")
    def _on_selected(self, change: dict[str, Any]) -> None:
        self._answer(list(change["new"]))

    def _on_select_request(self, content: dict[str, Any], client_id: int | None) -> None:
        """A ``{"kind": "select", "id", "cell": [row, col]}`` request: select the cell (a cell
        selected already is answered again, naming this request) and reply in ``detail``."""
        cell: Any = content.get("cell")  # checked by the trait's validation
        self._client_id = client_id
        try:
            if isinstance(cell, list) and cell and cell == self.selected:
                self._answer(cell)
            else:
                self.selected = cell
        except t.TraitError as err:
            self.detail = {"kind": "error", "cell": cell if isinstance(cell, list) else [],
                           "client_id": client_id, "message": str(err)}
        finally:
            self._client_id = None

    def _answer(self, cell: list[int]) -> None:
        """Re-run ``cell`` (when a ``rerun`` was given) and publish the reply in ``detail``."""
        if not cell or self._rerun is None:
            self._last = None
            self.detail = {}
            return
        row, col = cell
        try:
            patched = self._rerun(row, col)
        except Exception as err:  # shown beside the map; a comm handler would swallow it
            self._last = None
            self.detail = {"kind": "error", "cell": [row, col], "client_id": self._client_id,
                           "message": f"{type(err).__name__}: {err}"}
            return
        self._last = patched
        self.detail = self._detail(row, col, patched)

    def _detail(self, row: int, col: int, p: CellPatch) -> dict[str, Any]:
        span = p.clean_metric - p.corrupt_metric
        norm = (p.value - p.corrupt_metric) / span if self.can_normalize and span else None
        if p.per_example is not None:  # the mean of per-example normalised effects, as the map
            norm = rerun_normalized(p.per_example, self._result) if self.can_normalize else None
        dataset = {} if p.per_example is None else {
            "n": int(np.size(p.per_example)), "example": int(p.example),
            "example_text": (self.example_texts[p.example] if 0 <= p.example < len(self.example_texts)
                             else f"example {p.example}"),
        }
        return {**dataset,
            "kind": "rerun", "cell": [row, col], "client_id": self._client_id,
            "layer": int(p.layer), "column": int(p.column),
            "column_kind": p.column_kind, "positions": [int(x) for x in p.positions],
            "metric_name": p.metric_name, "value": _finite(p.value),
            "sweep_value": _finite(self._result.values[row, col]),
            "normalized": None if norm is None else _finite(norm),
            "clean_metric": _finite(p.clean_metric), "corrupt_metric": _finite(p.corrupt_metric),
            "approximation": bool(self._result.approximation),
            "before": _top_dict(p.before), "after": _top_dict(p.after), "clean": _top_dict(p.clean),
        }

    def select(self, row: int, col: int) -> CellPatch | None:
        """Select cell (row, col) as a click does; return its re-run (None without ``rerun``).

        A failed re-run raises here (in the front end it is shown beside the map instead).
        """
        self.selected = [int(row), int(col)]
        if self.detail.get("kind") == "error":
            raise InputError(f"re-running cell ({row}, {col}) failed: {self.detail['message']}")
        return self._last

    # ---- reading the map ---------------------------------------------------------------
    @property
    def result(self) -> PatchingResult:
        """The PatchingResult drawn."""
        return self._result

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, columns)."""
        return tuple(self.effect["shape"])  # type: ignore[return-value]

    @property
    def array(self) -> np.ndarray:
        """What the cells show now (float32): normalised, or ``values - corrupt_metric`` (raw);
        over a dataset the mean over examples, or example ``example``'s map."""
        if self.n_examples and self.example >= 0:
            return example_map(decode_array(self.per_example), decode_array(self.clean_per_example),
                               decode_array(self.corrupt_per_example), self.example, self.normalized)
        if self.n_examples and self.normalized:
            return decode_array(self.norm_mean).astype(np.float32)
        effect = decode_array(self.effect).astype(np.float64)
        if self.normalized:
            effect = effect / (float(self._result.clean_metric) - float(self._result.corrupt_metric))
        return effect.astype(np.float32)

    @property
    def value_label(self) -> str:
        """What a cell's number means in the current mode."""
        if self.normalized:
            return f"{self.metric_name}, normalised (0 = corrupt, 1 = clean)"
        return f"{self.metric_name} - corrupt"

    @property
    def vmax(self) -> float:
        """Upper end of the colour scale: the largest ``|cell|`` (the scale is symmetric around 0)."""
        arr = self.array
        finite = np.abs(arr[np.isfinite(arr)])
        bound = float(finite.max()) if finite.size else 1.0
        return bound if bound > 0 else 1.0

    @property
    def vmin(self) -> float:
        """Lower end of the colour scale, ``-vmax``."""
        return -self.vmax

    # ---- representations ---------------------------------------------------------------
    def _cell_name(self, row: int, col: int) -> str:
        if self.column_kind == "head":
            return f"{self.row_labels[row]} {self.col_labels[col]}"
        if self.column_kind == "role":
            return f"{self.row_labels[row]} role {self.col_labels[col]!r}"
        return f"{self.row_labels[row]} position {self.columns[col]} {self.col_labels[col]!r}"

    def summary(self) -> str:
        rows, cols = self.shape
        arr = self.array
        kind = "heads" if self.column_kind == "head" else "positions"
        clean = "n/a" if self.clean_metric is None else f"{self.clean_metric:.4g}"
        corrupt = "n/a" if self.corrupt_metric is None else f"{self.corrupt_metric:.4g}"
        mode = "normalised, 0 = corrupt, 1 = clean" if self.normalized else "raw, metric - corrupt"
        lines = [
            f"PatchingMap {self.title!r}: {rows} layers x {cols} {kind}, {self.metric_name}: "
            f"clean {clean}, corrupt {corrupt} (cells {mode})",
            ("example 0: " if self.n_examples else "")
            + f"clean prompt {self.clean_prompt!r}; corrupt prompt {self.corrupt_prompt!r}",
        ]
        if self.n_examples:
            lines += self._dataset_lines()
        flat = np.where(np.isfinite(arr), np.abs(arr), -np.inf).ravel()
        top = [int(i) for i in np.argsort(-flat, kind="stable")[:5] if np.isfinite(flat[i])]
        if top:
            lines.append("strongest cells: " + ", ".join(
                f"{self._cell_name(*divmod(i, cols))} {self._cell_text(i, float(arr.ravel()[i]))}" for i in top))
        if self.note:
            lines.append(f"approximation: {self.note}")
        lines.append("click a cell to re-run that patch and compare top tokens" if self.live
                     else "re-running a clicked cell needs result.show(model=model) in a live kernel")
        if self.selected and self.detail.get("kind") == "rerun":
            d = self.detail
            after = ", ".join(f"{tok!r}" for tok in d["after"]["tokens"][:5])
            lines.append(f"selected {self._cell_name(*self.selected)}: re-run {d['value']:.4g}; "
                         f"top tokens after: {after}")
        return "\n".join(lines)

    def _dataset_lines(self) -> list[str]:
        level = f"{self.ci_level:.0%}"
        name = f" of {self.dataset_name!r}" if self.dataset_name else ""
        lines = [f"mean of n={self.n_examples} examples{name}; intervals: {level} bootstrap CI over examples"
                 + ("" if self.normalized else " (of the patched metric)")]
        if self.example >= 0:
            lines.append(f"showing example {self.example} ({self.example_texts[self.example]!r}), not the mean")
        if self.examples_note:
            lines.append(self.examples_note)
        return lines

    def _cell_text(self, flat_index: int, shown: float) -> str:
        """A strongest cell's number: with its interval when the map shows a dataset's mean."""
        if not self.n_examples or self.example >= 0:
            return f"{shown:.3g}"
        if self.normalized and self.norm_low:
            lo, hi = decode_array(self.norm_low).ravel(), decode_array(self.norm_high).ravel()
            return interval_text(shown, float(lo[flat_index]), float(hi[flat_index]))
        if self.ci_low:
            lo, hi = decode_array(self.ci_low).ravel(), decode_array(self.ci_high).ravel()
            metric = float(self._result.values.ravel()[flat_index])
            return f"{shown:.3g} (metric {interval_text(metric, float(lo[flat_index]), float(hi[flat_index]))})"
        return f"{shown:.3g}"

    @classmethod
    def offline_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """Marked offline: no kernel answers clicks in the HTML snapshot."""
        state["live"] = False
        state["offline"] = True
        if state.get("detail", {}).get("cell") != state.get("selected"):
            state["detail"] = {}
        per = state.get("per_example")
        if per and int(np.prod(per["shape"])) > SNAPSHOT_PER_EXAMPLE:
            state.update(per_example={}, example_texts=[], example=-1, examples_note=(
                f"per-example values left out of this snapshot ({int(np.prod(per['shape'])):,} > "
                f"{SNAPSHOT_PER_EXAMPLE:,}): the mean and its interval only"))
        return state
