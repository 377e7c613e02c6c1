"""`LogitLens`: a layers x positions grid of each cell's top-1 token, coloured by probability.

Takes a `LogitLensResult` (never a model). Top-k ids travel as int32 and probabilities as
float16 through the codec, with one de-duplicated list of the token strings they use.

>>> import numpy as np
>>> from mechscope.analysis.logit_lens import LogitLensResult
>>> ids = np.array([[[1, 2]], [[2, 1]]])
>>> lens = LogitLensResult(top_ids=ids, top_probs=np.array([[[.6, .3]], [[.9, .1]]]),
...     top_tokens=np.array([[["a", "b"]], [["b", "a"]]], dtype=object), tokens=["x"],
...     layers=[0, 1], prompt="x", model_name="toy")
>>> w = LogitLens(lens)
>>> w.shape, w.vocab
((2, 1), ['a', 'b'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..analysis.logit_lens import LogitLensResult
from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError

#: Colour modes the front end knows: top-1 probability, the target's probability or its rank.
COLOR_MODES = ("top1", "target_prob", "target_rank")

#: Most top-k entries per cell sent to the front end (the tooltip lists them).
MAX_K = 20


def _validate(result: Any, k: int | None) -> int:
    if not isinstance(result, LogitLensResult):
        raise InputError(
            f"LogitLens takes a LogitLensResult (from mechscope.logit_lens), got {type(result).__name__}."
        )
    ids, probs = np.asarray(result.top_ids), np.asarray(result.top_probs)
    toks = np.asarray(result.top_tokens, dtype=object)
    if ids.ndim != 3 or ids.shape[0] == 0 or ids.shape[1] == 0 or ids.shape[2] == 0:
        raise InputError(f"top_ids must be a non-empty (layers, positions, k) array, got shape {ids.shape}.")
    if probs.shape != ids.shape or toks.shape != ids.shape:
        raise InputError(
            f"top_ids {ids.shape}, top_probs {probs.shape} and top_tokens {toks.shape} must have one shape."
        )
    if not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any() or (ids >= 2**31).any():
        raise InputError("top_ids must hold non-negative integer token ids below 2**31.")
    if not np.issubdtype(probs.dtype, np.number) or np.iscomplexobj(probs):
        raise InputError(f"top_probs must be real numbers, got dtype {probs.dtype}.")
    n_layers, n_pos, n_k = ids.shape
    if len(result.layers) != n_layers or len(result.tokens) != n_pos:
        raise InputError(
            f"labels do not match the arrays: {n_layers} layers x {n_pos} positions, but "
            f"{len(result.layers)} layer labels and {len(result.tokens)} input tokens."
        )
    for name in ("target_prob", "target_rank"):
        arr = getattr(result, name)
        if arr is not None and np.shape(arr) != (n_layers, n_pos):
            raise InputError(f"{name} must have shape {(n_layers, n_pos)}, got {np.shape(arr)}.")
    if k is None:
        return min(n_k, MAX_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InputError(f"top_k must be an int in 1..{MAX_K}, got {k!r}.")
    return min(k, n_k)


class LogitLens(MechscopeWidget):
    """Logit lens grid: rows are layers (last on top), columns are input positions.

    Each cell shows its top-1 token (when cells are big enough) and is coloured by the top-1
    probability, the target token's probability or its rank (log scale); a select control
    switches. Hover or arrow keys show the cell's top-k tokens. NaN/inf are drawn grey.

    >>> import mechscope
    >>> lens = mechscope.logit_lens(mechscope.tiny_model("llama"), "hello world", top_k=3, target=" the")
    >>> w = LogitLens(lens)
    >>> w.shape == (2, len(lens.tokens)), w.top_ids["dtype"], w.top_probs["dtype"], w.color_mode
    (True, 'int32', 'float16', 'target_prob')
    >>> print(w.summary())
    LogitLens 'logit lens: tiny-llama-seed0': 2 layers x ... positions, top-3; prompt 'hello world'
    ...
    """

    _esm = STATIC / "logit_lens.js"

    top_ids = ArrayTrait("int32")
    """Encoded int32 (layers, positions, k) token ids, most probable first."""
    top_probs = ArrayTrait("float16")
    """Encoded float16 (layers, positions, k) probabilities matching ``top_ids``."""
    vocab_ids = ArrayTrait("int32")
    """Encoded int32 (V,) the distinct token ids used by ``top_ids``, sorted."""
    vocab = t.List(t.Unicode()).tag(sync=True)
    """The token string of each id in ``vocab_ids`` (rendered as text, never HTML)."""
    tokens = t.List(t.Unicode()).tag(sync=True)
    """Input tokens, one per position (column labels)."""
    layer_labels = t.List(t.Unicode()).tag(sync=True)
    """One label per layer row (e.g. "L3")."""
    target = t.Unicode(None, allow_none=True).tag(sync=True)
    """The target token, or None when the lens had no target."""
    target_prob = ArrayTrait("float32", optional=True)
    """Encoded float32 (layers, positions) target probability ({} without a target)."""
    target_rank = ArrayTrait("int32", optional=True)
    """Encoded int32 (layers, positions) target rank, 0 = top-1 ({} without a target)."""
    color_mode = t.Enum(COLOR_MODES, default_value="top1").tag(sync=True)
    """What colours a cell: "top1", "target_prob" or "target_rank" (the front end switches it)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the grid."""
    hovered = t.List(t.Int(), default_value=[]).tag(sync=True)
    """[layer row, position] under the pointer or keyboard cursor, set by the front end."""

    def __init__(self, result: LogitLensResult, *, color_mode: str | None = None,
                 top_k: int | None = None, title: str | None = None) -> None:
        k = _validate(result, top_k)
        has_target = result.target_prob is not None and result.target_rank is not None
        if color_mode is None:
            color_mode = "target_prob" if has_target else "top1"
        if color_mode not in COLOR_MODES:
            raise InputError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}.")
        if color_mode != "top1" and not has_target:
            raise InputError(
                f"color_mode {color_mode!r} needs a target: run mechscope.logit_lens(..., target=...)."
            )
        ids = np.asarray(result.top_ids)[:, :, :k].astype(np.int64)
        probs = np.asarray(result.top_probs, dtype=np.float64)[:, :, :k]
        toks = np.asarray(result.top_tokens, dtype=object)[:, :, :k]
        vocab_ids, first = np.unique(ids.ravel(), return_index=True)
        vocab = [str(toks.ravel()[i]) for i in first]
        self._result = result
        super().__init__(
            top_ids=ids, top_probs=probs, vocab_ids=vocab_ids, vocab=vocab,
            tokens=[str(x) for x in result.tokens],
            layer_labels=[f"L{i}" for i in result.layers],
            target=None if not has_target else str(result.target),
            target_prob=result.target_prob if has_target else {},
            target_rank=result.target_rank if has_target else {},
            color_mode=color_mode,
            title=title if title is not None else f"logit lens: {result.model_name}",
        )

    @t.validate("color_mode")
    def _check_mode(self, proposal: Any) -> str:
        mode = proposal["value"]
        if mode != "top1" and not self.target_prob:
            raise TraitInputError(f"color_mode {mode!r} needs a target; this lens has none.")
        return mode

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, positions)."""
        return tuple(self.top_ids["shape"][:2])  # type: ignore[return-value]

    @property
    def k(self) -> int:
        """Top-k entries per cell sent to the front end."""
        return int(self.top_ids["shape"][2])

    def summary(self) -> str:
        n_layers, n_pos = self.shape
        ids = decode_array(self.top_ids)
        probs = decode_array(self.top_probs).astype(np.float32)
        names = dict(zip(decode_array(self.vocab_ids).tolist(), self.vocab, strict=True))
        head = (f"LogitLens {self.title!r}: {n_layers} layers x {n_pos} positions, top-{self.k}; "
                f"prompt {self._result.prompt!r}")
        last = [f"{self.layer_labels[r]}: {names[int(ids[r, -1, 0])]!r} ({probs[r, -1, 0]:.3g})"
                for r in range(n_layers)][-6:]
        lines = [head, "top-1 at the last position, by layer: " + ", ".join(last)]
        if self.target is not None:
            rank = decode_array(self.target_rank)[:, -1]
            hit = np.flatnonzero(rank == 0)
            where = f"first top-1 at {self.layer_labels[hit[0]]}" if hit.size else "never top-1"
            lines.append(f"target {self.target!r} at the last position: {where}, final rank {int(rank[-1])}")
        return "\n".join(lines)
