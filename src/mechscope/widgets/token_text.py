"""`TokenText`: texts drawn token by token, each token's background coloured by a value.

Several texts (top-example lists, prompts, a dataset's texts) with one value per token, under
one or more named value rows ("neuron 14:377", "probe score", "loss") the front end switches
between. Each row has one colour scale shared by every text: diverging blue-white-red centred
at 0 when its values have both signs, sequential otherwise (white to red when no value is
negative, blue to white when none is positive); a colour bar shows the range, and hovering a
token shows its text, its value and its text index and position.

Wire format (one binary array for all values): the texts are *flattened*, ragged, with
offsets. ``token_ids[offsets[i]:offsets[i + 1]]`` are text i's tokens (indices into ``vocab``,
each distinct token string sent once) and ``values[r, offsets[i]:offsets[i + 1]]`` their
values in row r; NaN / inf are drawn hatched grey. No padding travels.

>>> import numpy as np
>>> w = TokenText([["The", " cat"], ["A", " dog", " ran"]],
...               {"probe": [np.array([0.5, -1.0]), np.array([0.0, 2.0, 1.0])]})
>>> w.offsets["shape"], w.values["shape"], w.vocab
([3], [1, 5], ['The', ' cat', 'A', ' dog', ' ran'])
>>> w.text_values(1, "probe").tolist()
[0.0, 2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import traitlets as t

from ..analysis.activations import ActivationsResult
from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError

#: At most this many tokens over all texts (one element each: 50,000 tokens draw in ~2.6 s and
#: recolour in ~1 s in headless Chromium), and this many value rows.
MAX_TOKENS = 100_000
MAX_ROWS = 64


def _token_lists(tokens: Any) -> list[list[str]]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence) or not len(tokens):
        raise InputError("tokens must be a non-empty list of texts, each a list of token strings "
                         "(e.g. [['The', ' cat'], ['A', ' dog']]).")
    out = []
    for i, toks in enumerate(tokens):
        if isinstance(toks, (str, bytes)) or not isinstance(toks, Sequence):
            raise InputError(f"text {i}: tokens must be a list of strings, got {type(toks).__name__}.")
        bad = [k for k, tok in enumerate(toks) if not isinstance(tok, str)]
        if bad:
            raise InputError(f"text {i}: token {bad[0]} is {type(toks[bad[0]]).__name__}, not a string.")
        out.append(list(toks))
    total = sum(map(len, out))
    if total > MAX_TOKENS:
        raise InputError(f"{total} tokens in all; TokenText shows at most {MAX_TOKENS}: pass fewer texts.")
    return out


def _one_row(name: str, per_text: Any, lengths: list[int], names: list[str]) -> np.ndarray:
    """One value row's values flattened (float32), checked against each text's length."""
    n = len(lengths)
    if isinstance(per_text, np.ndarray) and per_text.ndim == 2:
        if per_text.shape[0] != n or per_text.shape[1] < max(lengths):
            raise InputError(f"values {name!r}: a padded array must be (texts={n}, width >= {max(lengths)}), "
                             f"got {per_text.shape}.")
        arr = per_text.astype(np.float32)
        for i, length in enumerate(lengths):
            if not np.isnan(arr[i, length:]).all():
                raise InputError(f"values {name!r}, {names[i]}: {length} tokens but finite values after "
                                 f"position {length - 1}; pad with NaN or pass one array per text.")
        return np.concatenate([arr[i, :length] for i, length in enumerate(lengths)])
    if isinstance(per_text, (str, bytes)) or not isinstance(per_text, Sequence) or len(per_text) != n:
        got = len(per_text) if isinstance(per_text, Sequence) else type(per_text).__name__
        raise InputError(f"values {name!r} must hold one array per text ({n} texts), got {got}.")
    parts = []
    for i, (v, length) in enumerate(zip(per_text, lengths, strict=True)):
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f"values {name!r}, {names[i]}: expected numbers, got {type(v).__name__}.") from None
        if arr.shape != (length,):
            raise InputError(f"values {name!r}, {names[i]}: {length} tokens but values of shape "
                             f"{arr.shape}; give one value per token.")
        parts.append(arr)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _value_rows(values: Any, lengths: list[int], names: list[str]) -> tuple[list[str], np.ndarray]:
    if isinstance(values, Mapping):
        rows = dict(values)
    elif isinstance(values, (np.ndarray, Sequence)) and not isinstance(values, (str, bytes)):
        rows = {"value": values}
    else:
        raise InputError(f"values must be a dict of row name -> one array per text, a list of arrays or a "
                         f"(texts, width) array; got {type(values).__name__}.")
    if not rows or len(rows) > MAX_ROWS:
        raise InputError(f"values needs 1..{MAX_ROWS} named rows, got {len(rows)}.")
    for key in rows:
        if not isinstance(key, str):
            raise InputError(f"value row names must be strings, got {key!r}.")
    return list(rows), np.stack([_one_row(k, v, lengths, names) for k, v in rows.items()])


def _scale(values: np.ndarray) -> tuple[str, float, float]:
    """What js/lib/tokentext.ts autoScale picks: (kind, lo, hi)."""
    finite = values[np.isfinite(values)].astype(np.float64)
    if not finite.size:
        return "sequential", 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0 < hi:
        m = max(-lo, hi)
        return "diverging", -m, m
    return "sequential", lo, hi if hi > lo else lo + 1.0


class TokenText(MechscopeWidget):
    """Texts drawn token by token with each token's background coloured by its value.

    ``tokens``: one list of token strings per text. ``values``: a dict of row name -> one 1-D
    array per text (length = that text's tokens), or a (texts, width) array padded with NaN, or
    just a list of arrays (one row named "value"). ``labels`` / ``scores``: an optional label and
    number shown before each text (e.g. a top example's class and peak). ``row``: the value row
    shown (index into ``rows``; a menu switches it).

    >>> import numpy as np
    >>> w = TokenText([["a", "b"], ["c"]], {"act": [np.array([1.0, 2.0]), np.array([3.0])],
    ...     "loss": [np.array([0.1, 0.2]), np.array([0.3])]}, labels=["x", "y"], title="demo")
    >>> w.rows, w.labels, w.row
    (['act', 'loss'], ['x', 'y'], 0)
    >>> TokenText([["a", "b"]], [np.array([1.0])])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: values 'value', text 0: 2 tokens but values of shape (1,); give one value per token.
    """

    _esm = STATIC / "token_text.js"

    token_ids = ArrayTrait("int32")
    """Encoded int32 (T,) every text's tokens one after another, as indices into ``vocab``."""
    offsets = ArrayTrait("int32")
    """Encoded int32 (texts + 1,) where each text starts in ``token_ids`` (the last: T)."""
    values = ArrayTrait("float32")
    """Encoded float32 (rows, T) each value row over the flattened tokens (NaN drawn hatched)."""
    scores = ArrayTrait("float32", optional=True)
    """Encoded float32 (texts,) a number shown before each text ({} for none)."""
    vocab = t.List(t.Unicode()).tag(sync=True)
    """The distinct token strings, each once (rendered as text)."""
    rows = t.List(t.Unicode()).tag(sync=True)
    """Names of the value rows (rendered as text)."""
    labels = t.List(t.Unicode()).tag(sync=True)
    """A label per text, or [] for none (rendered as text)."""
    score_label = t.Unicode("score").tag(sync=True)
    """What ``scores`` are (shown before each score)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""
    row = t.Int(0).tag(sync=True)
    """The value row shown (set by the menu in the front end, or from Python)."""

    def __init__(self, tokens: Sequence[Sequence[str]], values: Any, *, labels: Sequence[str] | None = None,
                 scores: Any = None, score_label: str = "score", title: str = "", row: int = 0) -> None:
        toks = _token_lists(tokens)
        lengths = [len(x) for x in toks]
        n = len(toks)
        names = [f"text {i}" + (f" ({labels[i]!r})" if labels is not None and i < len(labels) else "")
                 for i in range(n)]
        row_names, flat = _value_rows(values, lengths, names)
        if labels is not None and len(labels) != n:
            raise InputError(f"{len(labels)} labels for {n} texts; give one label per text (or none).")
        if scores is not None and np.shape(scores) != (n,):
            raise InputError(f"scores must be one number per text, shape ({n},), got {np.shape(scores)}.")
        vocab: dict[str, int] = {}
        ids = np.array([vocab.setdefault(tok, len(vocab)) for x in toks for tok in x], dtype=np.int64)
        super().__init__(
            token_ids=ids, offsets=np.concatenate([[0], np.cumsum(lengths)]), values=flat,
            scores={} if scores is None else np.asarray(scores, dtype=np.float32),
            vocab=list(vocab), rows=row_names, labels=[str(x) for x in labels] if labels is not None else [],
            score_label=str(score_label), title=str(title), row=row,
        )

    @classmethod
    def from_activations(cls, results: ActivationsResult | Sequence[ActivationsResult], *,
                         title: str | None = None) -> TokenText:
        """One text per `ActivationsResult` (its prompt's tokens), one value row per layer.

        >>> import mechscope
        >>> model = mechscope.tiny_model("llama")
        >>> r = mechscope.activations(model, "The cat sat", site="neurons", neuron=3)
        >>> w = TokenText.from_activations(r)
        >>> w.rows, w.n_texts
        (['L0 neurons unit 3', 'L1 neurons unit 3'], 1)
        """
        items = [results] if isinstance(results, ActivationsResult) else list(results)
        if not items or not all(isinstance(r, ActivationsResult) for r in items):
            raise InputError("TokenText.from_activations takes an ActivationsResult (from mechscope.activations) "
                             "or a list of them.")
        first = items[0]
        for i, r in enumerate(items):
            if (r.layers, r.site, r.quantity) != (first.layers, first.site, first.quantity):
                raise InputError(f"result {i} reads {r.site} {r.quantity} at layers {r.layers}, result 0 "
                                 f"{first.site} {first.quantity} at {first.layers}: pass results of one reading.")
        values = {f"L{layer} {first.site} {first.quantity}": [np.asarray(r.values)[k] for r in items]
                  for k, layer in enumerate(first.layers)}
        return cls([r.tokens for r in items], values, labels=[r.prompt for r in items] if len(items) > 1 else None,
                   title=title if title is not None else f"{first.model_name}: {first.site} {first.quantity}")

    @t.validate("row")
    def _check_row(self, proposal: Any) -> int:
        value = proposal["value"]
        n = len(self.rows) or (self.values["shape"][0] if self.values else 0)
        if n and not 0 <= value < n:
            raise TraitInputError(f"row must be a value row in 0..{n - 1}, got {value}.")
        return value

    @property
    def n_texts(self) -> int:
        """How many texts are drawn."""
        return int(self.offsets["shape"][0]) - 1

    def text_values(self, i: int, row: str | int = 0) -> np.ndarray:
        """Text ``i``'s values in ``row`` (a name or an index), as float32 (its tokens,)."""
        r = self.rows.index(row) if isinstance(row, str) else row
        off = decode_array(self.offsets)
        return decode_array(self.values)[r, off[i]:off[i + 1]]

    def text_tokens(self, i: int) -> list[str]:
        """Text ``i``'s token strings."""
        off = decode_array(self.offsets)
        return [self.vocab[k] for k in decode_array(self.token_ids)[off[i]:off[i + 1]]]

    def summary(self) -> str:
        values = decode_array(self.values)
        off = decode_array(self.offsets)
        lines = [f"TokenText {self.title!r}: {self.n_texts} texts, {int(off[-1])} tokens, "
                 f"{len(self.rows)} value rows"]
        for name, vals in zip(self.rows, values, strict=True):
            kind, lo, hi = _scale(vals)
            line = f"{name}: {kind} {lo:.4g}..{hi:.4g}"
            ok = np.isfinite(vals)
            if ok.any():
                k = int(np.flatnonzero(ok)[np.argmax(vals[ok])])
                i = int(np.searchsorted(off, k, side="right") - 1)
                line += f"; max {vals[k]:.4g} at text {i} position {k - off[i]} {self.text_tokens(i)[k - off[i]]!r}"
            lines.append(line)
        return "\n".join(lines)
