"""`ProjectionScatter`: texts as points on two axes (e.g. a concept direction and a PC), by class.

Thousands of points drawn on one canvas, coloured by their class (a legend names the classes,
the axes carry their names and ranges). Hovering a point shows its class and text; a click
selects a point, dragging a rectangle selects every point inside it (shift adds to the
selection), arrow keys move to the nearest point in that direction. The selected points' texts
appear below, token by token, coloured by optional per-token values (the shared token-text
code of `TokenText`). ``selected`` syncs both ways.

Wire format: coordinates and class indices as binary arrays; the texts flattened as token ids
into one ``vocab`` (each distinct token string sent once) with ``offsets`` (a plain string is
one token), and optional per-token values over the flattened tokens.

>>> import numpy as np
>>> w = ProjectionScatter([0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [0, 1, 1], ["no", "yes"],
...                       ["a cat", "a dog", "the dog"], x_name="d", y_name="pc1")
>>> w.n_points, w.vocab, w.text(2)
(3, ['a cat', 'a dog', 'the dog'], 'the dog')
>>> w.selected = [2, 0]
>>> w.selected_texts()
['the dog', 'a cat']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError

if TYPE_CHECKING:
    from ..analysis.directions import ConceptDirections

#: At most this many points, and this many tokens over all texts.
MAX_POINTS = 200_000
MAX_TOKENS = 400_000


def _coords(name: str, values: Any, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers (one coordinate per point), got {type(values).__name__}.") from None
    if arr.ndim != 1 or not arr.size:
        raise InputError(f"{name} must be a non-empty 1-D array (one coordinate per point), got shape {arr.shape}.")
    if n is not None and arr.size != n:
        raise InputError(f"{name} has {arr.size} values but x has {n}: give one coordinate per point.")
    if arr.size > MAX_POINTS:
        raise InputError(f"{arr.size} points; ProjectionScatter draws at most {MAX_POINTS}: pass fewer.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InputError(f"{name} is NaN or infinite at {bad.size} points (first: {bad[:5].tolist()}); "
                         "a point needs finite coordinates: drop those points or fill them in.")
    return arr.astype(np.float32)


def _labels(labels: Any, classes: Any, n: int) -> tuple[np.ndarray, list[str]]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not len(classes):
        raise InputError("classes must be a non-empty list of class names.")
    names = [str(c) for c in classes]
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise InputError(f"labels must be one class index per point, shape ({n},), got {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"labels must be integer class indices into classes, got dtype {arr.dtype}.")
    out = np.flatnonzero((arr < 0) | (arr >= len(names)))
    if out.size:
        raise InputError(f"label {int(arr[out[0]])} at point {int(out[0])} is out of range: labels index "
                         f"classes, 0..{len(names) - 1} ({len(names)} classes).")
    return arr.astype(np.int64), names


def _texts(texts: Any, n: int, token_values: Any) -> tuple[list[list[str]], np.ndarray | None]:
    """Each text as a list of tokens (a plain string is one token), and the values flattened."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"texts must be a list of {n} texts (strings, or lists of token strings).")
    if len(texts) != n:
        raise InputError(f"{len(texts)} texts for {n} points: give exactly one text per point.")
    out: list[list[str]] = []
    for i, x in enumerate(texts):
        toks = [x] if isinstance(x, str) else x
        if isinstance(toks, bytes) or not isinstance(toks, Sequence) or not all(isinstance(s, str) for s in toks):
            raise InputError(f"text {i} must be a string or a list of token strings, got {type(x).__name__}.")
        out.append(list(toks))
    if sum(map(len, out)) > MAX_TOKENS:
        raise InputError(f"{sum(map(len, out))} tokens in all; ProjectionScatter shows at most {MAX_TOKENS}.")
    if token_values is None:
        return out, None
    if isinstance(token_values, (str, bytes)) or not isinstance(token_values, Sequence) or len(token_values) != n:
        raise InputError(f"token_values must hold one array per text ({n} texts).")
    parts = []
    for i, (v, toks) in enumerate(zip(token_values, out, strict=True)):
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f"token_values, text {i}: expected numbers, got {type(v).__name__}.") from None
        if arr.shape != (len(toks),):
            raise InputError(f"token_values, text {i}: {len(toks)} tokens but values of shape {arr.shape}; "
                             "give one value per token (pass each text as its list of tokens).")
        parts.append(arr)
    return out, np.concatenate(parts)


def _axis(cd: ConceptDirections, name: str) -> tuple[np.ndarray, str]:
    k = cd.scores.shape[1]
    choices = ["mean_projection"] + [f"pc{i + 1}" for i in range(k)]
    if name == "mean_projection":
        return cd.mean_projection, f"mean difference ({cd.classes[-1]} - rest)"
    if isinstance(name, str) and name in choices:
        i = int(name[2:]) - 1
        return cd.scores[:, i], f"{name} ({100 * float(cd.explained_variance[i]):.1f}% var)"
    raise InputError(f"axis {name!r} is not one of {choices}.")


class ProjectionScatter(MechscopeWidget):
    """Points on two axes, coloured by class; hover for a point's text, select to read the texts.

    ``x``, ``y`` (n,): finite coordinates. ``labels`` (n,): class indices into ``classes``.
    ``texts``: one per point, a string or a list of token strings; ``token_values`` (optional):
    one array per text with a value per token (e.g. each token's projection on the direction),
    colouring the selected texts' tokens. ``selected``: point indices.

    >>> w = ProjectionScatter([0, 1], [0, 1], [0, 1], ["a", "b"], [["x", "y"], ["z"]],
    ...                       token_values=[[0.5, -1.0], [2.0]], title="demo")
    >>> w.offsets["shape"], w.value_name
    ([3], 'value')
    >>> ProjectionScatter([0, 1], [0], [0, 1], ["a", "b"], ["p", "q"])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: y has 1 values but x has 2: give one coordinate per point.
    """

    _esm = STATIC / "projection.js"

    x = ArrayTrait("float32")
    """Encoded float32 (n,) each point's x coordinate."""
    y = ArrayTrait("float32")
    """Encoded float32 (n,) each point's y coordinate."""
    labels = ArrayTrait("int32")
    """Encoded int32 (n,) each point's class, an index into ``classes``."""
    token_ids = ArrayTrait("int32")
    """Encoded int32 (T,) every text's tokens one after another, as indices into ``vocab``."""
    offsets = ArrayTrait("int32")
    """Encoded int32 (n + 1,) where each text starts in ``token_ids`` (the last: T)."""
    token_values = ArrayTrait("float32", optional=True)
    """Encoded float32 (T,) a value per token colouring the selected texts ({} for none)."""
    vocab = t.List(t.Unicode()).tag(sync=True)
    """The distinct token strings, each once (rendered as text)."""
    classes = t.List(t.Unicode()).tag(sync=True)
    """The class names, in label order (rendered as text, in the legend)."""
    x_name = t.Unicode("x").tag(sync=True)
    """The x axis's name."""
    y_name = t.Unicode("y").tag(sync=True)
    """The y axis's name."""
    value_name = t.Unicode("value").tag(sync=True)
    """What ``token_values`` are."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""
    selected = t.List(t.Int()).tag(sync=True)
    """The selected points' indices (set by clicks and drags in the front end, or from Python)."""

    def __init__(self, x: Any, y: Any, labels: Any, classes: Sequence[str], texts: Sequence[Any], *,
                 token_values: Any = None, x_name: str = "x", y_name: str = "y", value_name: str = "value",
                 title: str = "", selected: Sequence[int] = ()) -> None:
        xs = _coords("x", x, None)
        ys = _coords("y", y, xs.size)
        lab, names = _labels(labels, classes, xs.size)
        toks, flat = _texts(texts, xs.size, token_values)
        vocab: dict[str, int] = {}
        ids = np.array([vocab.setdefault(tok, len(vocab)) for x_ in toks for tok in x_], dtype=np.int64)
        super().__init__(x=xs, y=ys, labels=lab, token_ids=ids,
                         offsets=np.concatenate([[0], np.cumsum([len(x_) for x_ in toks])]).astype(np.int64),
                         token_values={} if flat is None else flat, vocab=list(vocab), classes=names,
                         x_name=str(x_name), y_name=str(y_name), value_name=str(value_name), title=str(title))
        self.selected = list(selected)

    @classmethod
    def from_directions(cls, cd: ConceptDirections, texts: Sequence[Any] | None = None, *,
                        axes: tuple[str, str] = ("mean_projection", "pc1"), token_values: Any = None,
                        title: str | None = None, **kwargs: Any) -> ProjectionScatter:
        """A `ConceptDirections`' texts on two of its axes: ``"mean_projection"`` or ``"pc1"`` ..
        ``"pck"``. ``texts``: one per text (a string or its tokens); default the texts the result
        was computed on.

        >>> import mechscope
        >>> from mechscope.analysis.directions import concept_directions
        >>> from mechscope.datasets.labelled import labelled_texts
        >>> cd = concept_directions(mechscope.tiny_model("llama"), labelled_texts(["animals", "code"], n_per_class=4),
        ...                         layer=1, k=2)
        >>> w = ProjectionScatter.from_directions(cd, axes=("pc1", "pc2"))
        >>> w.n_points, w.classes, w.x_name.startswith("pc1 (")
        (8, ['animals', 'code'], True)
        """
        from ..analysis.directions import ConceptDirections

        if not isinstance(cd, ConceptDirections):
            raise InputError(f"from_directions takes a ConceptDirections (from concept_directions), got "
                             f"{type(cd).__name__}.")
        if isinstance(axes, str) or not isinstance(axes, Sequence) or len(axes) != 2:
            raise InputError(f"axes must be two axis names, e.g. ('mean_projection', 'pc1'), got {axes!r}.")
        (xs, xn), (ys, yn) = _axis(cd, axes[0]), _axis(cd, axes[1])
        chosen = list(cd.texts) if texts is None else texts
        if texts is None and not chosen:
            raise InputError("this ConceptDirections carries no texts: pass texts= (one per example).")
        return cls(xs, ys, cd.labels, cd.classes, chosen, token_values=token_values, x_name=xn, y_name=yn,
                   title=title if title is not None else f"{cd.model_name}: {cd.site} layer {cd.layer}", **kwargs)

    @t.validate("selected")
    def _check_selected(self, proposal: Any) -> list[int]:
        value = list(proposal["value"])
        n = self.n_points
        bad = [i for i in value if not 0 <= i < n]
        if bad:
            raise TraitInputError(f"selected must hold point indices in 0..{n - 1}, got {bad[0]}.")
        return list(dict.fromkeys(value))

    @property
    def n_points(self) -> int:
        """How many points are drawn."""
        return int(self.x["shape"][0]) if self.x else 0

    def text_tokens(self, i: int) -> list[str]:
        """Point ``i``'s text as its token strings."""
        off = decode_array(self.offsets)
        return [self.vocab[k] for k in decode_array(self.token_ids)[off[i]:off[i + 1]]]

    def text(self, i: int) -> str:
        """Point ``i``'s text (its tokens joined)."""
        return "".join(self.text_tokens(i))

    def selected_texts(self) -> list[str]:
        """The selected points' texts, in selection order."""
        return [self.text(i) for i in self.selected]

    def summary(self) -> str:
        xs, ys, lab = decode_array(self.x), decode_array(self.y), decode_array(self.labels)
        counts = ", ".join(f"{c!r} {int((lab == k).sum())}" for k, c in enumerate(self.classes))
        lines = [f"ProjectionScatter {self.title!r}: {self.n_points} points; classes {counts}",
                 f"x {self.x_name!r}: {xs.min():.4g}..{xs.max():.4g}; y {self.y_name!r}: {ys.min():.4g}..{ys.max():.4g}"]
        for k, c in enumerate(self.classes):
            m = lab == k
            if m.any():
                lines.append(f"{c!r}: mean x {xs[m].mean():.4g}, mean y {ys[m].mean():.4g}")
        if self.selected:
            lines.append(f"selected {len(self.selected)}: " + ", ".join(repr(self.text(i)[:60]) for i in self.selected[:5]))
        return "\n".join(lines)
