"""`Superposition`: a toy model's W^T W, its per-feature norms, and the phase diagram.

Takes a `SuperpositionResult` (from `mechscope.toys.superposition`). Every model's ``W^T W``
and per-feature norms, superposition and dimensionality travel through the codec (the whole
sweep is small: sparsities x seeds x n^2 floats), so switching sparsity or seed needs no kernel.

>>> from mechscope.toys import superposition
>>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0, 0.9), seeds=(0, 1),
...                     steps=5, batch=8, progress_bar=False)
>>> w = Superposition(res)
>>> w.gram["shape"], w.dim_mean["shape"], w.sparsity_index
([2, 2, 3, 3], [2, 3], 0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ..toys.superposition import SuperpositionResult
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError


def _index(name: str, value: Any, count: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < count:
        raise InputError(f"{name} must be an int in 0..{count - 1}, got {value!r}.")
    return int(value)


class Superposition(MechscopeWidget):
    """Toy model of superposition: ``W^T W`` (diverging colours) of the selected model, one bar
    per feature (length ``||W_i||``, colour its superposition, black = a dimension of its own),
    and the phase diagram (features x sparsity, colour the feature's dimensionality averaged
    over seeds). Select a sparsity (the select control, or click a phase-diagram column) and a
    seed; hover any cell or bar for its numbers.

    >>> from mechscope.toys import superposition
    >>> res = superposition(n_features=4, n_hidden=2, sparsities=(0.0, 0.99), seeds=(0,),
    ...                     steps=5, batch=8, progress_bar=False)
    >>> w = Superposition(res, sparsity_index=1, title="demo")
    >>> print(w.summary())
    Superposition 'demo': 4 features in 2 dims, 2 sparsities x 1 seeds
    selected S=0.99 seed 0: ... of 4 features with norm > 0.5, loss ...
    """

    _esm = STATIC / "superposition.js"

    gram = ArrayTrait("float32")
    """Encoded float32 (sparsities, seeds, n, n) ``W^T W`` of every model."""
    norms = ArrayTrait("float32")
    """Encoded float32 (sparsities, seeds, n) ``||W_i||`` per feature."""
    superposition = ArrayTrait("float32")
    """Encoded float32 (sparsities, seeds, n) ``sum_{j != i} (Ŵ_i . W_j)^2`` per feature."""
    dimensionality = ArrayTrait("float32")
    """Encoded float32 (sparsities, seeds, n) feature dimensionality (NaN for a zero column)."""
    dim_mean = ArrayTrait("float32")
    """Encoded float32 (sparsities, n) dimensionality, mean over seeds."""
    dim_low = ArrayTrait("float32")
    """Encoded float32 (sparsities, n) lower end of the bootstrap interval over seeds."""
    dim_high = ArrayTrait("float32")
    """Encoded float32 (sparsities, n) upper end of the bootstrap interval over seeds."""
    norm_mean = ArrayTrait("float32")
    """Encoded float32 (sparsities, n) ``||W_i||``, mean over seeds."""
    loss = ArrayTrait("float32")
    """Encoded float32 (sparsities, seeds) each model's loss on fresh samples."""
    importance = ArrayTrait("float32")
    """Encoded float32 (n,) each feature's importance in the loss."""
    sparsities = t.List(t.Float()).tag(sync=True)
    """The sparsity S of each row of the sweep."""
    seeds = t.List(t.Int()).tag(sync=True)
    """The seed of each column of the sweep."""
    feature_labels = t.List(t.Unicode()).tag(sync=True)
    """One label per feature (rendered as text)."""
    n_hidden = t.Int(1).tag(sync=True)
    """Hidden dimensions m."""
    sparsity_index = t.Int(0).tag(sync=True)
    """The selected sparsity (index into ``sparsities``; the front end sets it too)."""
    seed_index = t.Int(0).tag(sync=True)
    """The selected seed (index into ``seeds``; the front end sets it too)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""
    hovered = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    """What is under the pointer: [panel, row, col] ("gram", "bars" or "phase"), from the front end."""

    def __init__(self, result: SuperpositionResult, *, sparsity_index: int = 0, seed_index: int = 0,
                 feature_labels: list[str] | None = None, title: str | None = None) -> None:
        if not isinstance(result, SuperpositionResult):
            raise InputError("Superposition takes a SuperpositionResult (from "
                             f"mechscope.toys.superposition), got {type(result).__name__}.")
        n_sp, n_seed, m, n = result.W.shape
        labels = [f"f{i}" for i in range(n)] if feature_labels is None else [str(x) for x in feature_labels]
        if len(labels) != n:
            raise InputError(f"feature_labels must give one label per feature ({n}), got {len(labels)}.")
        dim = result.summary("dimensionality")
        norm = result.summary("norms")
        self._result = result
        super().__init__(
            gram=result.gram(), norms=result.norms, superposition=result.superposition,
            dimensionality=result.dimensionality, dim_mean=dim.mean, dim_low=dim.ci_low,
            dim_high=dim.ci_high, norm_mean=norm.mean, loss=result.loss,
            importance=result.importance, sparsities=[float(s) for s in result.sparsities],
            seeds=[int(s) for s in result.seeds], feature_labels=labels, n_hidden=int(m),
            sparsity_index=_index("sparsity_index", sparsity_index, n_sp),
            seed_index=_index("seed_index", seed_index, n_seed),
            title=title if title is not None else
            f"toy model of superposition: {n} features in {m} dims, importance "
            f"{result.importance[1] if n > 1 else 1.0:.2g}^i",
        )

    @t.validate("sparsity_index", "seed_index")
    def _check_index(self, proposal: Any) -> int:
        value, name = proposal["value"], proposal["trait"].name
        count = len(self.sparsities if name == "sparsity_index" else self.seeds)
        if count and not 0 <= value < count:
            raise TraitInputError(f"{name} must be in 0..{count - 1}, got {value}.")
        return value

    def summary(self) -> str:
        n_sp, n_seed, n = self.norms["shape"]
        i, k = self.sparsity_index, self.seed_index
        norms = decode_array(self.norms)[i, k]
        loss = decode_array(self.loss)[i, k]
        return "\n".join([
            f"Superposition {self.title!r}: {n} features in {self.n_hidden} dims, "
            f"{n_sp} sparsities x {n_seed} seeds",
            f"selected S={self.sparsities[i]:g} seed {self.seeds[k]}: {int((norms > 0.5).sum())} "
            f"of {n} features with norm > 0.5, loss {loss:.3g}",
        ])
