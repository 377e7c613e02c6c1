"""`Heatmap`: a labelled 2-D array drawn on canvas, with colour scale and hover tooltip.

>>> import numpy as np
>>> w = Heatmap(np.random.rand(3, 4), row_labels=["L0", "L1", "L2"], col_labels=list("abcd"))
>>> w.shape
(3, 4)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import MechscopeWidget
from .codec import decode_array, encode_array

#: Colour scales the front end knows.
COLORSCALES = ("viridis", "magma", "diverging")

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


class Heatmap(MechscopeWidget):
    """Canvas heatmap of a 2-D array with row/column labels (rendered as text, never HTML).

    Parameters: ``values`` (rows x cols, any real dtype; NaN/inf drawn in a distinct grey),
    ``row_labels``/``col_labels`` (strings), ``title``, ``colorscale`` ("viridis", "magma" or
    "diverging", centred on 0), optional ``vmin``/``vmax``.
    """

    _bundle = "heatmap"
    _array_traits = ("values",)

    values = t.Dict().tag(sync=True)
    """Encoded float32 array {dtype, shape, data} (see `codec`)."""
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

    def __init__(self, values: Any, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, *, title: str = "",
                 value_label: str = "value", colorscale: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None) -> None:
        arr = np.asarray(values)
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
        pooled, (fr, fc) = _pool_mean(arr.astype(np.float64), MAX_SIDE)
        if (fr, fc) != (1, 1):
            rl, cl = _block_labels(rl, fr), _block_labels(cl, fc)
            title = f"{title} (mean-pooled {fr}x{fc} from {rows}x{cols})".strip()
        self._source_shape = (rows, cols)
        super().__init__(
            values=encode_array(pooled, "float32"), row_labels=rl, col_labels=cl, title=title,
            value_label=value_label, colorscale=colorscale, vmin=vmin, vmax=vmax,
            pooled=[fr, fc],
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the array as given (before any pooling)."""
        return self._source_shape

    @property
    def array(self) -> np.ndarray:
        """The array as sent to the front end (float32, pooled if it was too large)."""
        return decode_array(self.values)

    def summary(self) -> str:
        arr = self.array
        finite = arr[np.isfinite(arr)]
        rng = f"{finite.min():.4g}..{finite.max():.4g}" if finite.size else "no finite values"
        rows, cols = self._source_shape
        head = f"Heatmap {self.title!r}: {rows} x {cols} {self.value_label}, range {rng}"
        if self.pooled != [1, 1]:
            head += f", mean-pooled {self.pooled[0]}x{self.pooled[1]} to {arr.shape[0]} x {arr.shape[1]}"
        labels = ", ".join(self.col_labels[:12]) + (" ..." if len(self.col_labels) > 12 else "")
        return f"{head}\ncolumns: {labels}"
