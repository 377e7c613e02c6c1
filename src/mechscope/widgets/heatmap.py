"""`Heatmap`: a labelled 2-D array drawn on canvas, with colour scale and hover tooltip.

>>> import numpy as np
>>> w = Heatmap(np.random.rand(3, 4), row_labels=["L0", "L1", "L2"], col_labels=list("abcd"))
>>> w.shape
(3, 4)

Small maps travel as float32 (hover shows exact values). Above `QUANTIZE_ABOVE` cells the values
are quantised to uint8 through the codec's ``scale`` (1 byte a cell, 4x less than float32; a
1000 x 1000 map is 1 MB on the wire, 1.33 MB as base64 in the offline snapshot): hover values are
then within half a step of the truth (the tooltip and text/plain say so) and the exact
min / max / mean stay in `Heatmap.stats`. uint16 is used instead when ``vmin``/``vmax`` make the
colour range narrower than the data, so the drawn range always gets at least 252 levels.

>>> x = np.linspace(0, 1, 300 * 400).reshape(300, 400)
>>> big = Heatmap(x)
>>> big.values["dtype"], big.values["shape"], round(big.quantization_step, 6)
('uint8', [300, 400], 0.003968)
>>> bool(np.abs(big.array - x).max() <= big.quantization_step / 2 + 1e-7)  # + float32 rounding
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array, encode_array
from .traits import ArrayTrait

#: Colour scales the front end knows.
COLORSCALES = ("viridis", "magma", "diverging")

#: Above this many cells (after any pooling) the values are sent quantised (see the module doc).
QUANTIZE_ABOVE = 65_536

#: Largest array accepted before pooling in Python (cells). Above it the array is mean-pooled
#: to at most MAX_SIDE x MAX_SIDE blocks and the pooling is stated in the title and summary.
MAX_SIDE = 2048


def _pool_mean(values: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Mean-pool a 2-D array into blocks so neither side exceeds ``max_side`` (NaN-aware)."""
    rows, cols = values.shape
    fr, fc = -(-rows // max_side), -(-cols // max_side)
    if fr == 1 and fc == 1:
        return values, (1, 1)
    pr, pc = -(-rows // fr) * fr, -(-cols // fc) * fc
    padded = np.full((pr, pc), np.nan, dtype=np.float64)
    padded[:rows, :cols] = values
    blocks = padded.reshape(pr // fr, fr, pc // fc, fc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        pooled = np.nanmean(blocks, axis=(1, 3))
    return pooled, (fr, fc)


def _block_labels(labels: list[str], factor: int) -> list[str]:
    """One label per pooled block: "first..last" (a block of one keeps its own label)."""
    if factor == 1:
        return labels
    ends = [min(i + factor, len(labels)) - 1 for i in range(0, len(labels), factor)]
    return [labels[i] if i == end else f"{labels[i]}..{labels[end]}"
            for i, end in zip(range(0, len(labels), factor), ends, strict=True)]


def _interval(ci_low: Any, ci_high: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The optional per-cell interval as float64 arrays of ``shape`` (None when neither is given)."""
    if ci_low is None and ci_high is None:
        return None
    if ci_low is None or ci_high is None:
        raise InputError("Heatmap needs both ci_low and ci_high for an interval, or neither.")
    out = []
    for name, bound in (("ci_low", ci_low), ("ci_high", ci_high)):
        if hasattr(bound, "detach") and hasattr(bound, "cpu"):
            bound = bound.detach().cpu().float().numpy()
        try:
            b = np.asarray(bound, dtype=np.float64)
        except (ValueError, TypeError):
            raise InputError(f"Heatmap {name} must be an array of numbers like values, "
                             f"got a {type(bound).__name__}.") from None
        if b.shape != shape:
            raise InputError(f"Heatmap {name} must have the shape of values {shape}, got {b.shape}.")
        out.append(b)
    low, high = out
    with np.errstate(invalid="ignore"):
        bad = int(np.count_nonzero(low > high))
    if bad:
        raise InputError(f"Heatmap ci_low is above ci_high in {bad} cell(s).")
    return low, high


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Exact summary of the array as given: finite min / max / mean and the non-finite counts."""
    finite = np.isfinite(values)
    n = int(np.count_nonzero(finite))
    if n == values.size:  # the usual case: no masks, no copies
        return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
                "nan": 0, "posinf": 0, "neginf": 0}
    f = values[finite]
    return {
        "min": float(f.min()) if n else None,
        "max": float(f.max()) if n else None,
        "mean": float(f.mean()) if n else None,
        "nan": int(np.count_nonzero(np.isnan(values))),
        "posinf": int(np.count_nonzero(values == np.inf)),
        "neginf": int(np.count_nonzero(values == -np.inf)),
    }


#: Cells named with their interval in text/plain.
STRONGEST = 3


def _strongest(values: np.ndarray, bounds: list[np.ndarray], rl: list[str], cl: list[str]) -> str:
    """The STRONGEST cells by |value| (finite only) as "row | 'col' value [low, high]"."""
    flat = np.abs(values).ravel()
    order = [k for k in np.argsort(-np.where(np.isfinite(flat), flat, -1.0), kind="stable")[:STRONGEST]
             if np.isfinite(flat[k])]
    cols = values.shape[1]
    return ", ".join(
        f"{rl[k // cols]} | {cl[k % cols]!r} {values.flat[k]:.4g} [{bounds[0].flat[k]:.4g}, {bounds[1].flat[k]:.4g}]"
        for k in order) or "no finite values"


def _wire_dtype(n_cells: int, lo: float | None, hi: float | None, quantize: bool | None,
                colorscale: str, vmin: float | None, vmax: float | None) -> str:
    """float32, or a quantised uint8 / uint16 that keeps >= 252 levels inside the colour range.

    ``lo``/``hi``: the finite range of the values to send (None when none is finite).
    """
    if quantize is False or (quantize is None and n_cells <= QUANTIZE_ABOVE):
        return "float32"
    if lo is None or hi is None:
        return "uint8"
    c_lo, c_hi = lo, hi
    if colorscale == "diverging":  # as js/lib/colors.ts valueRange: symmetric about 0
        m = max(abs(lo), abs(hi))
        c_lo, c_hi = -m, m
    c_lo = c_lo if vmin is None else vmin
    c_hi = c_hi if vmax is None else vmax
    data_span, colour_span = hi - lo, c_hi - c_lo
    if data_span <= colour_span or colour_span <= 0:
        return "uint8"
    return "uint16" if data_span / colour_span * 252 <= 65_532 else "float32"


class Heatmap(MechscopeWidget):
    """Canvas heatmap of a 2-D array with row/column labels (rendered as text, never HTML).

    Parameters: ``values`` (rows x cols, any real dtype; NaN/inf drawn in a distinct grey),
    ``row_labels``/``col_labels`` (strings), ``title``, ``colorscale`` ("viridis", "magma" or
    "diverging", centred on 0), optional ``vmin``/``vmax``, ``quantize`` (None: quantise above
    `QUANTIZE_ABOVE` cells; True / False to force it either way), optional ``ci_low``/``ci_high``
    (an interval per cell, the shape of ``values``; always sent as float32, mean-pooled like the
    values when the map is pooled) described by ``ci_label`` (e.g. "95% CI, n=100"): the tooltip
    then reads "value [low, high] (ci_label)" and text/plain gives the strongest cells' intervals.

    Maps with more cells than canvas pixels are drawn mean-pooled and can be zoomed: drag a
    rectangle, or focus the map and use + / - (or the wheel), arrows, Shift+arrows to pan and 0
    to reset; the view is re-pooled at every zoom until each cell has its own pixels.

    >>> import numpy as np
    >>> w = Heatmap(np.eye(2), row_labels=["L0", "L1"], col_labels=["a", "b"], title="eye")
    >>> w.values["dtype"], w.values["shape"], w.stats["max"]
    ('float32', [2, 2], 1.0)
    >>> print(w.summary())
    Heatmap 'eye': 2 x 2 value, range 0..1
    columns: a, b
    >>> ci = Heatmap(np.eye(2), ci_low=np.eye(2) - 0.1, ci_high=np.eye(2) + 0.1, ci_label="95% CI, n=8")
    >>> print(ci.summary().splitlines()[-1])
    strongest (95% CI, n=8): 0 | '0' 1 [0.9, 1.1], 1 | '1' 1 [0.9, 1.1], 0 | '1' 0 [-0.1, 0.1]
    >>> Heatmap(np.zeros(3))
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: Heatmap needs a 2-D array (rows x cols), got shape (3,).
    """

    _esm = STATIC / "heatmap.js"

    values = ArrayTrait("float32")
    """Encoded array {dtype, shape, data[, scale]}: float32, or quantised uint8/uint16 (see `codec`)."""
    row_labels = t.List(t.Unicode()).tag(sync=True)
    """One label per row (e.g. layer names)."""
    col_labels = t.List(t.Unicode()).tag(sync=True)
    """One label per column (e.g. tokens, shown as text)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the map."""
    value_label = t.Unicode("value").tag(sync=True)
    """What a cell's number means (shown in the tooltip and colour bar)."""
    colorscale = t.Enum(COLORSCALES, default_value="viridis").tag(sync=True)
    """Colour scale name."""
    vmin = t.Float(allow_none=True).tag(sync=True)
    """Lower end of the colour scale (default: the finite minimum)."""
    vmax = t.Float(allow_none=True).tag(sync=True)
    """Upper end of the colour scale (default: the finite maximum)."""
    pooled = t.List(t.Int(), default_value=[1, 1]).tag(sync=True)
    """Rows and columns averaged into each sent cell (1, 1 when nothing was pooled)."""
    hovered = t.List(t.Int(), default_value=[]).tag(sync=True)
    """[row, col] under the pointer, set by the front end (empty when none)."""
    stats = t.Dict().tag(sync=True)
    """Exact statistics of the array as given: min, max, mean (finite cells), nan, posinf, neginf."""
    ci_low = ArrayTrait("float32", optional=True)
    """Lower end of each cell's interval, float32 like `values` (pooled like it); {} when none."""
    ci_high = ArrayTrait("float32", optional=True)
    """Upper end of each cell's interval; {} when none."""
    ci_label = t.Unicode("").tag(sync=True)
    """What the interval is (e.g. "95% CI, n=100"), shown after it in the tooltip."""

    def __init__(self, values: Any, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, *, title: str = "",
                 value_label: str = "value", colorscale: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None,
                 quantize: bool | None = None, ci_low: Any = None, ci_high: Any = None,
                 ci_label: str = "interval") -> None:
        if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch: grad, any device, bfloat16
            values = values.detach().cpu()
            values = (values.float() if values.is_floating_point() else values).numpy()
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError) as err:
            raise InputError(
                f"Heatmap needs a 2-D array of numbers; this {type(values).__name__} is not one "
                f"({err}). Nested lists need rows of equal length."
            ) from None
        if arr.ndim != 2:
            raise InputError(f"Heatmap needs a 2-D array (rows x cols), got shape {arr.shape}.")
        if arr.size == 0:
            raise InputError(f"Heatmap got an empty array of shape {arr.shape}.")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise InputError(f"Heatmap needs real numbers, got dtype {arr.dtype}.")
        if colorscale not in COLORSCALES:
            raise InputError(f"colorscale must be one of {COLORSCALES}, got {colorscale!r}.")
        rows, cols = arr.shape
        rl = [str(x) for x in (row_labels if row_labels is not None else range(rows))]
        cl = [str(x) for x in (col_labels if col_labels is not None else range(cols))]
        if len(rl) != rows or len(cl) != cols:
            raise InputError(
                f"labels do not match the array: {rows}x{cols} values, {len(rl)} row labels, "
                f"{len(cl)} column labels."
            )
        if quantize not in (None, True, False):
            raise InputError(f"quantize must be None (automatic), True or False, got {quantize!r}.")
        interval = _interval(ci_low, ci_high, arr.shape)
        source = arr.astype(np.float64, copy=False)  # read only, never written
        stats = _stats(source)
        pooled, (fr, fc) = _pool_mean(source, MAX_SIDE)
        lo, hi = stats["min"], stats["max"]
        if (fr, fc) != (1, 1):
            rl, cl = _block_labels(rl, fr), _block_labels(cl, fc)
            title = f"{title} (mean-pooled {fr}x{fc} from {rows}x{cols})".strip()
            finite = pooled[np.isfinite(pooled)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        self._source_shape = (rows, cols)
        bounds = [_pool_mean(b, MAX_SIDE)[0] for b in interval] if interval else None
        self._strongest = _strongest(pooled, bounds, rl, cl) if bounds else ""
        wire = _wire_dtype(pooled.size, lo, hi, quantize, colorscale, vmin, vmax)
        super().__init__(
            values=encode_array(pooled, wire, quantize=wire != "float32"), row_labels=rl,
            col_labels=cl, title=title, value_label=value_label, colorscale=colorscale,
            vmin=vmin, vmax=vmax, pooled=[fr, fc], stats=stats,
            ci_low=encode_array(bounds[0], "float32") if bounds else {},
            ci_high=encode_array(bounds[1], "float32") if bounds else {},
            ci_label=str(ci_label) if bounds else "",
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the array as given (before any pooling)."""
        return self._source_shape

    @property
    def array(self) -> np.ndarray:
        """The array as the front end decodes it (float32; pooled if it was too large, and
        dequantised, so within `quantization_step` / 2 of the truth, if it was quantised)."""
        return decode_array(self.values)

    @property
    def quantization_step(self) -> float | None:
        """The quantisation step of the sent values, or None when they are sent as float32."""
        scale = self.values.get("scale")
        return float(scale["step"]) if scale else None

    def summary(self) -> str:
        st = self.stats
        rng = f"{st['min']:.4g}..{st['max']:.4g}" if st.get("min") is not None else "no finite values"
        rows, cols = self._source_shape
        shape = self.values["shape"]
        head = f"Heatmap {self.title!r}: {rows} x {cols} {self.value_label}, range {rng}"
        special = [f"{st[k]} {name}" for k, name in (("nan", "NaN"), ("posinf", "+inf"), ("neginf", "-inf"))
                   if st.get(k)]
        if special:
            head += f" ({', '.join(special)}: drawn grey)"
        if self.pooled != [1, 1]:
            head += f", mean-pooled {self.pooled[0]}x{self.pooled[1]} to {shape[0]} x {shape[1]}"
        step = self.quantization_step
        if step is not None:
            head += f"\nvalues sent quantised to {self.values['dtype']}"
            if st.get("mean") is None:
                head += " (no finite values)"
            elif step == 0:
                head += " (exact: every finite value is the same)"
            else:
                head += (f" (step {step:.3g}: shown values within +/-{step / 2:.3g}); "
                         f"exact mean {st['mean']:.4g}")
        labels = ", ".join(self.col_labels[:12]) + (" ..." if len(self.col_labels) > 12 else "")
        text = f"{head}\ncolumns: {labels}"
        if self._strongest:
            label = f" ({self.ci_label})" if self.ci_label else ""
            text += f"\nstrongest{label}: {self._strongest}"
        return text
