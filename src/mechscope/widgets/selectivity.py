"""`Selectivity`: a layer's selectivity histogram, ranked neurons and one neuron in detail.

Takes a `SelectivityResult`. Per-neuron arrays travel through the codec; the top examples
(tokens + activations, windowed around the peak) are precomputed in Python for the ``top_n``
most selective neurons only, so the state stays small whatever the dataset size.

>>> import numpy as np
>>> from mechscope.analysis.selectivity import SelectivityResult, selectivity_index
>>> means = np.array([[1.0, 0.2, 0.5], [0.1, 0.2, 0.5]])
>>> index, preferred = selectivity_index(means)
>>> acts = [np.array([[1.0, 0.2, 0.5]]), np.array([[0.1, 0.3, 0.5]])]
>>> res = SelectivityResult(classes=["a", "b"], class_means=means, index=index,
...     preferred=preferred, texts=["x", "y"], text_labels=["a", "b"],
...     text_tokens=[["x"], ["y"]], token_acts=acts, layer=0, site="mlp", model_name="toy")
>>> w = Selectivity(res, top_n=2)
>>> w.shape, w.selected
((2, 3), 0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..analysis.selectivity import SelectivityResult
from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array
from .traits import ArrayTrait, TraitInputError


def _int_arg(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"{name} must be an int in {lo}..{hi}, got {value!r}.")
    return value


def _validate(result: Any) -> tuple[int, int]:
    if not isinstance(result, SelectivityResult):
        raise InputError(
            f"Selectivity takes a SelectivityResult (from mechscope.selectivity), got {type(result).__name__}."
        )
    means = np.asarray(result.class_means)
    if means.ndim != 2 or means.shape[0] < 2 or means.shape[1] == 0:
        raise InputError(f"class_means must be (classes >= 2, neurons >= 1), got shape {means.shape}.")
    n_classes, n = means.shape
    if len(result.classes) != n_classes:
        raise InputError(f"{len(result.classes)} class names for {n_classes} rows of class_means.")
    for name in ("index", "preferred", "floor", "ablation_effect"):
        arr = getattr(result, name)
        if arr is not None and np.shape(arr) != (n,):
            raise InputError(f"{name} must have shape ({n},) (one per neuron), got {np.shape(arr)}.")
    pref = np.asarray(result.preferred)
    if not np.issubdtype(pref.dtype, np.integer) or ((pref < 0) | (pref >= n_classes)).any():
        raise InputError(f"preferred must hold class indices in 0..{n_classes - 1}.")
    m = len(result.texts)
    if not (len(result.text_labels) == len(result.text_tokens) == len(result.token_acts) == m):
        raise InputError(
            f"texts ({m}), text_labels ({len(result.text_labels)}), text_tokens "
            f"({len(result.text_tokens)}) and token_acts ({len(result.token_acts)}) must align."
        )
    for i, (toks, acts) in enumerate(zip(result.text_tokens, result.token_acts, strict=True)):
        if np.shape(acts) != (len(toks), n):
            raise InputError(
                f"token_acts[{i}] must be (tokens={len(toks)}, neurons={n}), got {np.shape(acts)}."
            )
    unknown = sorted(set(result.text_labels) - set(result.classes))
    if unknown:
        raise InputError(f"text labels {unknown[:5]} are not among the classes {result.classes}.")
    return n_classes, n


class Selectivity(MechscopeWidget):
    """Histogram of selectivity indices, ranked neurons, and the selected neuron's detail.

    Click a histogram bar, a list entry or (when ``ablation_effect`` is present) a point of
    the selectivity-vs-ablation scatter to select a neuron; its class means and top examples
    (tokens highlighted by activation) appear beside. ``selected`` syncs both ways.

    >>> import mechscope
    >>> from mechscope.datasets import labelled_texts
    >>> sel = mechscope.selectivity(mechscope.tiny_model("llama"), labelled_texts(n_per_class=2), layer=0)
    >>> w = Selectivity(sel, top_n=5, n_examples=2)
    >>> w.shape == (len(sel.classes), sel.n_neurons), w.index["dtype"], w.ex_tokens["shape"][:2]
    (True, 'float16', [5, 2])
    >>> w.selected == int(sel.ranked(1)[0])  # the most selective neuron
    True
    """

    _esm = STATIC / "selectivity.js"

    index = ArrayTrait("float16")
    """Encoded float16 (neurons,) selectivity index (NaN drawn apart)."""
    class_means = ArrayTrait("float32")
    """Encoded float32 (classes, neurons) raw mean activation per class."""
    preferred = ArrayTrait("int32")
    """Encoded int32 (neurons,) index of each neuron's preferred class."""
    floor = ArrayTrait("float32", optional=True)
    """Encoded float32 (neurons,) activation floor the index is measured from ({} if unknown)."""
    ablation_effect = ArrayTrait("float32", optional=True)
    """Encoded float32 (neurons,) effect of ablating each neuron ({} when not measured)."""
    ablation_metric = t.Unicode("").tag(sync=True)
    """What ``ablation_effect`` measures (axis label)."""
    classes = t.List(t.Unicode()).tag(sync=True)
    """Class names (rendered as text)."""
    ex_neurons = ArrayTrait("int32")
    """Encoded int32 (M,) the M most selective neurons, most selective first, with examples."""
    ex_tokens = ArrayTrait("int32")
    """Encoded int32 (M, E, W) indices into ``ex_vocab`` of each example window (-1 = none)."""
    ex_acts = ArrayTrait("float16")
    """Encoded float16 (M, E, W) the neuron's activation on each token of the window."""
    ex_class = ArrayTrait("int32")
    """Encoded int32 (M, E) class index of each example text (-1 = no example)."""
    ex_offset = ArrayTrait("int32")
    """Encoded int32 (M, E) where the window starts in its text (tokens)."""
    ex_length = ArrayTrait("int32")
    """Encoded int32 (M, E) the whole text's length in tokens."""
    ex_vocab = t.List(t.Unicode()).tag(sync=True)
    """De-duplicated token strings the example windows use."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""
    selected = t.Int(0).tag(sync=True)
    """The selected neuron (set by clicks in the front end, or from Python)."""

    def __init__(self, result: SelectivityResult, *, top_n: int = 50, n_examples: int = 5,
                 window: int = 40, title: str | None = None) -> None:
        n_classes, n = _validate(result)
        top_n = min(_int_arg("top_n", top_n, 1, 1000), n)
        n_examples = min(_int_arg("n_examples", n_examples, 1, 20), len(result.texts))
        window = _int_arg("window", window, 4, 512)
        index = np.asarray(result.index, dtype=np.float64)
        ranked = np.argsort(-np.where(np.isnan(index), -np.inf, index), kind="stable")[:top_n]
        ex = self._examples(result, ranked, n_examples, window)
        self._result = result
        has_ablation = result.ablation_effect is not None
        super().__init__(
            index=index,
            class_means=result.class_means,
            preferred=result.preferred,
            floor=result.floor if result.floor is not None else {},
            ablation_effect=result.ablation_effect if has_ablation else {},
            ablation_metric=str(result.ablation_metric or "ablation effect") if has_ablation else "",
            classes=[str(c) for c in result.classes],
            title=title if title is not None else
            f"{result.model_name} layer {result.layer} {result.site}: class selectivity",
            selected=int(ranked[0]), **ex,
        )

    @staticmethod
    def _examples(result: SelectivityResult, ranked: np.ndarray, n_ex: int,
                  window: int) -> dict[str, Any]:
        """Top examples of the ranked neurons as padded (M, E, W) arrays + one token vocabulary."""
        m = len(ranked)
        lengths = [len(toks) for toks in result.text_tokens]
        w = max(1, min(window, max(lengths)))
        tok_idx = np.full((m, n_ex, w), -1, dtype=np.int64)
        acts = np.zeros((m, n_ex, w), dtype=np.float32)
        cls = np.full((m, n_ex), -1, dtype=np.int64)
        offset = np.zeros((m, n_ex), dtype=np.int64)
        length = np.zeros((m, n_ex), dtype=np.int64)
        # peaks[i, j]: text i's highest activation of ranked neuron j (NaN never wins)
        peaks = np.full((len(result.token_acts), m), -np.inf, dtype=np.float32)
        for i, x in enumerate(result.token_acts):
            if len(x):
                sub = np.asarray(x, dtype=np.float32)[:, ranked]
                peaks[i] = np.where(np.isnan(sub), -np.inf, sub).max(axis=0)
        vocab: dict[str, int] = {}
        for j, neuron in enumerate(ranked):
            order = np.argsort(-peaks[:, j], kind="stable")[:n_ex]
            for e, i in enumerate(order):
                seq = np.asarray(result.token_acts[i], dtype=np.float32)[:, neuron]
                n_tok = len(seq)
                if n_tok == 0:
                    continue
                start = 0
                if n_tok > w:
                    peak = int(np.argmax(np.where(np.isnan(seq), -np.inf, seq)))
                    start = max(0, min(peak - w // 2, n_tok - w))
                span = slice(start, min(start + w, n_tok))
                toks = result.text_tokens[i][span]
                tok_idx[j, e, :len(toks)] = [vocab.setdefault(str(s), len(vocab)) for s in toks]
                acts[j, e, :len(toks)] = seq[span]
                cls[j, e] = result.classes.index(result.text_labels[i])
                offset[j, e], length[j, e] = start, n_tok
        return {
            "ex_neurons": ranked, "ex_tokens": tok_idx, "ex_acts": acts, "ex_class": cls,
            "ex_offset": offset, "ex_length": length,
            "ex_vocab": list(vocab),
        }

    @t.validate("selected")
    def _check_selected(self, proposal: Any) -> int:
        value = proposal["value"]
        n = self.class_means["shape"][1] if self.class_means else 0
        if n and not 0 <= value < n:
            raise TraitInputError(f"selected must be a neuron in 0..{n - 1}, got {value}.")
        return value

    @property
    def shape(self) -> tuple[int, int]:
        """(classes, neurons), the shape of ``class_means``."""
        return tuple(self.class_means["shape"])  # type: ignore[return-value]

    def summary(self) -> str:
        n_classes, n = self.shape
        index = decode_array(self.index).astype(np.float32)
        finite = index[np.isfinite(index)]
        ranked = decode_array(self.ex_neurons)[:8]
        pref = decode_array(self.preferred)
        top = ", ".join(f"n{k} {index[k]:.2f} ({self.classes[pref[k]]})" for k in ranked)
        stats = (f"median {np.median(finite):.3f}, {(finite > 0.5).sum()} above 0.5"
                 if finite.size else "no finite values")
        lines = [
            f"Selectivity {self.title!r}: {n} neurons x {n_classes} classes "
            f"({', '.join(self.classes)}); index {stats}",
            f"most selective: {top}",
        ]
        if self.ablation_effect:
            eff = decode_array(self.ablation_effect)
            ok = np.isfinite(eff) & np.isfinite(index)
            if ok.sum() > 2 and np.std(eff[ok]) > 0 and np.std(index[ok]) > 0:
                r = float(np.corrcoef(index[ok], eff[ok])[0, 1])
                lines.append(f"{self.ablation_metric}: correlation with selectivity r = {r:.2f}")
            else:
                lines.append(f"{self.ablation_metric} present")
        return "\n".join(lines)
