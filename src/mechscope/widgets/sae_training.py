"""`TrainingMonitor`: a sparse dictionary's training curves, live while `mechscope.sae.train` runs.

Four small line charts against tokens seen: loss, L0 (latents per row), FVU (fraction of
variance unexplained) and the dead fraction, one line per seed; hover a chart for the nearest
point's values. ``train(..., monitor=True)`` displays one and refreshes it at most every 0.5 s;
``TrainResult.show()`` gives the finished curves (whose offline snapshot needs no kernel).
Each seed's curve is thinned to at most `MAX_POINTS` evenly spaced steps (the last kept).

>>> import numpy as np
>>> hist = {"tokens": np.array([[4.0, 8.0, 12.0]]), "loss": np.array([[3.0, 2.0, 1.0]]),
...         "l0": np.full((1, 3), 4.0), "fvu": np.array([[0.9, 0.5, 0.3]]),
...         "dead_fraction": np.zeros((1, 3))}
>>> w = TrainingMonitor.from_history((0,), hist, title="demo")
>>> print(w.summary())
TrainingMonitor 'demo': 1 seed(s), 3 points
seed 0: 12 tokens, loss 1, L0 4, FVU 0.3, dead 0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait

#: Points kept per seed and curve.
MAX_POINTS = 1000
#: History keys drawn, in panel order, and their panel titles.
CURVES = (("loss", "loss"), ("l0", "L0"), ("fvu", "FVU"), ("dead_fraction", "dead fraction"))


def _thin(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(np.int64))


class TrainingMonitor(MechscopeWidget):
    """Training curves (loss, L0, FVU, dead fraction vs tokens), one line per seed.

    >>> w = TrainingMonitor.from_history((0, 1), None)
    >>> w.seeds, w.tokens["shape"]
    ([0, 1], [0])
    """

    _esm = STATIC / "sae_training.js"

    seed_index = ArrayTrait("int32")
    """Encoded int32 (points,): which seed (index into ``seeds``) each point belongs to."""
    tokens = ArrayTrait("float32")
    """Encoded float32 (points,): tokens seen at each point."""
    loss = ArrayTrait("float32")
    """Encoded float32 (points,): training loss."""
    l0 = ArrayTrait("float32")
    """Encoded float32 (points,): mean latents active per row."""
    fvu = ArrayTrait("float32")
    """Encoded float32 (points,): fraction of variance unexplained."""
    dead_fraction = ArrayTrait("float32")
    """Encoded float32 (points,): fraction of latents dead."""
    seeds = t.List(t.Int()).tag(sync=True)
    """The seed of each line."""
    title = t.Unicode("").tag(sync=True)
    """Title above the charts (rendered as text)."""
    hovered = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    """What is under the pointer: [curve, seed, point index], from the front end."""

    def __init__(self, seeds: Sequence[int], *, title: str = "", **arrays: Any) -> None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise InputError("TrainingMonitor needs at least one seed.")
        empty = {k: np.zeros(0, np.float32) for k in ("tokens", *(c for c, _ in CURVES))}
        empty["seed_index"] = np.zeros(0, np.int32)
        super().__init__(seeds=seeds, title=str(title), **{**empty, **arrays})

    @classmethod
    def from_history(cls, seeds: Sequence[int], history: dict[str, np.ndarray] | None, *,
                     title: str = "") -> TrainingMonitor:
        """A monitor of ``history`` (a `TrainResult.history`: (n_seeds, n_steps) arrays), or an
        empty one for a run about to start (``history=None``)."""
        w = cls(seeds, title=title)
        if history is not None:
            w.set_histories([{k: np.asarray(v[i]) for k, v in history.items()} for i in range(len(w.seeds))])
        return w

    def set_histories(self, histories: Sequence[dict[str, Any] | None]) -> None:
        """Replace the curves: one history (name -> values by step) per seed, None for a seed
        not started yet."""
        if len(histories) != len(self.seeds):
            raise InputError(f"set_histories needs one history per seed ({len(self.seeds)}), got {len(histories)}.")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("seed_index", "tokens", *(c for c, _ in CURVES))}
        for i, hist in enumerate(histories):
            if not hist:
                continue
            tokens = np.asarray(hist["tokens"], dtype=np.float64)
            keep = _thin(len(tokens))
            parts["seed_index"].append(np.full(len(keep), i, np.int32))
            parts["tokens"].append(tokens[keep])
            for name, _ in CURVES:
                parts[name].append(np.asarray(hist[name], dtype=np.float64)[keep])
        with self.hold_sync():
            for name, chunks in parts.items():
                dtype = np.int32 if name == "seed_index" else np.float32
                setattr(self, name, np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype))

    def summary(self) -> str:
        seed_of = decode_array(self.seed_index)
        lines = [f"TrainingMonitor {self.title!r}: {len(self.seeds)} seed(s), {len(seed_of)} points"]
        tokens = decode_array(self.tokens)
        values = {name: decode_array(getattr(self, name)) for name, _ in CURVES}
        for i, seed in enumerate(self.seeds):
            idx = np.flatnonzero(seed_of == i)
            if not len(idx):
                lines.append(f"seed {seed}: not started")
                continue
            j = idx[-1]
            lines.append(f"seed {seed}: {tokens[j]:.0f} tokens, loss {values['loss'][j]:.3g}, "
                         f"L0 {values['l0'][j]:.3g}, FVU {values['fvu'][j]:.3g}, "
                         f"dead {values['dead_fraction'][j]:.3g}")
        return "\n".join(lines)


__all__ = ["TrainingMonitor", "MAX_POINTS", "CURVES"]
