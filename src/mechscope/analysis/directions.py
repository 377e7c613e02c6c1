"""Concept directions over a labelled dataset, and word arithmetic on the embedding matrix.

`concept_directions`: at one layer, the difference of class means (``classes[-1]`` minus the
rest) and the top-k principal components of the activations (centred over all texts), with
each text's projection on both. `analogy`: ``a - b + c`` on the input embedding matrix, the
nearest tokens by cosine, and the rank of an expected answer (``" king" - " man" + " woman"``
-> ``" queen"``?).

>>> import mechscope
>>> from mechscope.datasets.labelled import labelled_texts
>>> model = mechscope.tiny_model("llama")
>>> cd = concept_directions(model, labelled_texts(["animals", "code"], n_per_class=6), layer=1, k=2)
>>> cd.components.shape == (2, model.d_model), cd.scores.shape, cd.mean_projection.shape
(True, (12, 2), (12,))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model
from ..validate import as_int, check_model, check_top_k
from .store import ActivationStore

#: The fewest examples a class may have (at least one held out and two to train on).
MIN_PER_CLASS = 4


@dataclass(frozen=True)
class Labelled:
    """Texts, their labels (class indices into ``classes``) and word types for the control.

    >>> d = labelled({"no": ["a b"] * 4, "yes": ["c d"] * 4})
    >>> d.classes, d.y.tolist()[:5], d.control_unit
    (('no', 'yes'), [0, 0, 0, 0, 1], 'text')
    """

    texts: list[str]
    y: np.ndarray
    classes: tuple[str, ...]
    word_types: list[str]
    control_unit: str


def labelled(dataset: Any, labels: Any = None, word_types: Any = None, verb: str = "probe") -> Labelled:
    """Read a labelled dataset: ``{label: [texts]}`` (`labelled_texts`), or texts / a dataset with
    ``.texts`` (and ``.metadata``) plus ``labels=`` (a list, or a metadata column; default the
    ``label`` or ``sentiment`` column). Checks alignment, two classes, `MIN_PER_CLASS`.

    >>> from mechscope.datasets.generators import sentiment
    >>> d = labelled(sentiment(16, seed=1))
    >>> d.classes, d.control_unit, len(d.texts)
    (('negative', 'positive'), 'adjective', 16)
    """
    meta: dict[str, Any] = {}
    if isinstance(dataset, dict):
        if labels is not None:
            raise InputError(f"{verb}: a {{label: [texts]}} dict carries its labels; drop labels=.")
        texts = [t for v in dataset.values() for t in v]
        raw = [str(k) for k, v in dataset.items() for _ in v]
    else:
        if hasattr(dataset, "texts") and not isinstance(dataset, str):
            meta = dict(getattr(dataset, "metadata", {}) or {})
            dataset = dataset.texts
        if isinstance(dataset, str) or not isinstance(dataset, Sequence):
            raise InputError(f"{verb} needs a labelled dataset: {{label: [texts]}}, or a list of texts "
                             f"with labels=, got {type(dataset).__name__}.")
        texts = list(dataset)
        if labels is None:
            labels = next((k for k in ("label", "sentiment") if k in meta), None)
            if labels is None:
                raise InputError(f"{verb}: give labels= (one per text, or a metadata column name).")
        if isinstance(labels, str):
            if labels not in meta:
                raise InputError(f"{verb}: the dataset has no metadata column {labels!r} (it has {sorted(meta)}).")
            labels = meta[labels]
        raw = [str(v) for v in labels]
    if len(raw) != len(texts):
        raise InputError(f"{verb}: {len(raw)} labels for {len(texts)} texts: give exactly one label per text.")
    if not all(isinstance(t, str) for t in texts):
        raise InputError(f"{verb}: every text must be a str.")
    classes = tuple(sorted(set(raw)))
    if len(classes) < 2:
        raise InputError(f"{verb}: every example has the label {classes[0] if classes else None!r}: a probe "
                         "needs at least two classes.")
    counts = {c: raw.count(c) for c in classes}
    few = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
    if few:
        raise InputError(f"{verb}: too few examples in {few}: each class needs at least {MIN_PER_CLASS} "
                         "(some held out for testing, the rest to train on).")
    y = np.array([classes.index(v) for v in raw], dtype=np.int64)
    if word_types is None and "adjective" in meta:
        word_types = "adjective"
    unit = "text" if word_types is None else (word_types if isinstance(word_types, str) else "word_types")
    if isinstance(word_types, str):
        if word_types not in meta:
            raise InputError(f"{verb}: the dataset has no metadata column {word_types!r} for word_types.")
        word_types = meta[word_types]
    types = [str(i) for i in range(len(texts))] if word_types is None else [str(w) for w in word_types]
    if len(types) != len(texts):
        raise InputError(f"{verb}: {len(types)} word types for {len(texts)} texts: give one per text.")
    return Labelled(texts=texts, y=y, classes=classes, word_types=types, control_unit=unit)


def features(source: Model | ActivationStore, texts: list[str], site: str, layers: Any, position: Any,
             verb: str = "probe") -> tuple[list[int], dict[int, np.ndarray], str]:
    """(layers, {layer: (texts, width) float64}, model name): collected now or read from a store.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> layers, feats, name = features(model, ["a b", "c"], "resid", [1], "last")
    >>> layers, feats[1].shape == (2, model.d_model)
    ([1], True)
    """
    from .collect import collect

    if isinstance(source, ActivationStore):
        if source.reduce == "all" or len(source) != source.n_examples:
            raise InputError(f"{verb}: the store has {len(source)} rows for {source.n_examples} texts; collect "
                             "one row per text (reduce='last', 'mean' or one position).")
        if source.n_examples != len(texts):
            raise InputError(f"{verb}: the store holds {source.n_examples} texts but the dataset has "
                             f"{len(texts)}: they must be the same texts, in order.")
        chosen = source.layers if layers is None else ([layers] if isinstance(layers, int) else list(layers))
        missing = [lay for lay in chosen if lay not in source.layers]
        if missing:
            raise InputError(f"{verb}: layers {missing} are not in the store (it has {source.layers}).")
        return chosen, {lay: source.get(site, lay).astype(np.float64) for lay in chosen}, source.model_name
    model = check_model(source, verb)
    chosen = model.check_layers(layers)
    if position in ("last", "mean"):
        kw: dict[str, Any] = {"reduce": position}
    elif isinstance(position, int) and not isinstance(position, bool):
        kw = {"reduce": "positions", "positions": position}
    else:
        raise InputError(f"{verb}: position must be 'last', 'mean' or an int token index, got {position!r}.")
    store = collect(model, texts, sites=[site], layers=chosen, progress=False, **kw)
    return chosen, {lay: store.get(site, lay).astype(np.float64) for lay in chosen}, model.name


@dataclass(frozen=True)
class ConceptDirections:
    """Directions of a labelled dataset at one ``layer`` of ``site``.

    ``mean_difference`` (width,): mean activation of ``classes[-1]`` minus the mean of the other
    texts (not normalised); ``mean_projection`` (texts,): each text's activation, centred on
    the overall mean, projected on its unit vector. ``components`` (k, width): unit principal
    directions, ``explained_variance`` (k,): the fraction of the total variance each explains;
    ``scores`` (texts, k): each text's coordinates on them. ``labels`` (texts,) index ``classes``;
    ``texts``: the texts, in order (empty when built without them). ``.show()`` plots them.

    >>> import mechscope
    >>> from mechscope.datasets.labelled import labelled_texts
    >>> model = mechscope.tiny_model("gpt2")
    >>> cd = concept_directions(model, labelled_texts(["cities", "french"], n_per_class=5), layer=0)
    >>> list(cd.to_pandas().columns)[:3], bool(cd.explained_variance.sum() <= 1.0 + 1e-6)
    (['label', 'mean_projection', 'pc1'], True)
    """

    layer: int
    site: str
    classes: tuple[str, ...]
    labels: np.ndarray
    mean_difference: np.ndarray
    mean_projection: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    scores: np.ndarray
    model_name: str
    texts: tuple[str, ...] = ()

    def show(self, texts: Any = None, **kwargs: Any) -> Any:
        """A `~mechscope.widgets.projection.ProjectionScatter` of the texts on two axes
        (``axes=("mean_projection", "pc1")`` by default; any of mean_projection, pc1..pck).
        ``texts``: one per text (strings or token lists); default the texts computed on.

        >>> import mechscope
        >>> from mechscope.datasets.labelled import labelled_texts
        >>> cd = concept_directions(mechscope.tiny_model("llama"), labelled_texts(["animals", "code"], n_per_class=4),
        ...                         layer=0, k=2)
        >>> w = cd.show(axes=("pc1", "pc2"))
        >>> w.n_points, w.text(0) == cd.texts[0]
        (8, True)
        """
        from ..widgets.projection import ProjectionScatter

        return ProjectionScatter.from_directions(self, texts, **kwargs)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per text: its label, its projection on the mean difference and on each PC."""
        import pandas as pd

        cols = {f"pc{i + 1}": self.scores[:, i] for i in range(self.scores.shape[1])}
        return pd.DataFrame({"label": [self.classes[i] for i in self.labels],
                             "mean_projection": self.mean_projection, **cols})


def concept_directions(source: Model | ActivationStore, dataset: Any, *, layer: int, labels: Any = None,
                       site: str = "resid", position: str | int = "last", k: int = 3) -> ConceptDirections:
    """Difference of means and the top-``k`` principal components at ``layer`` over ``dataset``.

    ``source`` and ``dataset`` as for `mechscope.analysis.probes.probe` (one row per text,
    collected now or from a store). PCA is the SVD of the centred (texts, width) matrix.

    >>> import mechscope, numpy as np
    >>> from mechscope.datasets.labelled import labelled_texts
    >>> model = mechscope.tiny_model("llama")
    >>> data = labelled_texts(["animals", "numbers"], n_per_class=5)
    >>> cd = concept_directions(model, data, layer=0, k=2)
    >>> bool(np.allclose(cd.components @ cd.components.T, np.eye(2), atol=1e-5))
    True
    """
    data = labelled(dataset, labels, None, "concept_directions")
    k = as_int(k, "k")
    if not 1 <= k <= len(data.texts):
        raise InputError(f"k must be between 1 and the number of texts ({len(data.texts)}), got {k}.")
    if isinstance(source, ActivationStore):
        layer = as_int(layer, "layer")
    else:
        layer = check_model(source, "concept_directions").check_layer(layer)
    _, feats, name = features(source, data.texts, site, [layer], position, "concept_directions")
    x = feats[layer]
    pos = data.y == len(data.classes) - 1
    diff = x[pos].mean(0) - x[~pos].mean(0)
    xc = x - x.mean(0)
    unit = diff / max(float(np.linalg.norm(diff)), 1e-30)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(k, vt.shape[0])
    total = float((s ** 2).sum()) or 1.0
    return ConceptDirections(layer=layer, site=site, classes=data.classes, labels=data.y,
                             mean_difference=diff.astype(np.float32), mean_projection=(xc @ unit).astype(np.float32),
                             components=vt[:k].astype(np.float32),
                             explained_variance=(s[:k] ** 2 / total).astype(np.float32),
                             scores=(xc @ vt[:k].T).astype(np.float32), model_name=name,
                             texts=tuple(data.texts))


@dataclass(frozen=True)
class Analogy:
    """Nearest tokens to ``a - b + c`` in the input embedding matrix.

    ``tokens`` / ``ids`` / ``cosines`` (top_k each): the nearest tokens by cosine similarity,
    best first, leaving out the three input tokens by default (as is usual: ``a`` itself is
    often the nearest). ``answer_rank``: 1-based rank of ``answer`` among all other tokens (None without
    an answer); ``answer_cosine`` its cosine.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> an = analogy(model, "a", "b", "c", answer="d", top_k=3)
    >>> len(an.tokens), an.answer_rank >= 1
    (3, True)
    """

    a: str
    b: str
    c: str
    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    cosines: np.ndarray
    answer: str | None
    answer_rank: int | None
    answer_cosine: float | None

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per nearest token: rank, token, id, cosine."""
        import pandas as pd

        return pd.DataFrame({"rank": range(1, len(self.tokens) + 1), "token": list(self.tokens),
                             "id": list(self.ids), "cosine": self.cosines})


def analogy(model: Model, a: str, b: str, c: str, *, answer: str | None = None, top_k: int = 10,
            exclude_inputs: bool = True) -> Analogy:
    """Word arithmetic ``E[a] - E[b] + E[c]`` on ``model``'s input embedding matrix (vocab, d_model).

    Each word must be one token for the model (mind the leading space: ``" king"`` is the
    word inside a sentence). Returns an `Analogy`: the ``top_k`` nearest tokens by cosine (the
    three inputs excluded unless ``exclude_inputs=False``: ``a`` itself is then often first)
    and the rank of ``answer``.

    >>> import mechscope
    >>> model = mechscope.tiny_model("gpt2")
    >>> an = analogy(model, "a", "b", "c", top_k=2)
    >>> an.answer_rank is None, "a" in an.tokens
    (True, False)
    """
    check_model(model, "analogy")
    top_k = check_top_k(top_k, model.vocab_size)
    ids = [model.to_single_token(w) for w in (a, b, c)]
    target = None if answer is None else model.to_single_token(answer)
    weight = model.hf_module_at(model.adapter.embed_path).weight
    assert isinstance(weight, torch.Tensor)
    emb = weight.detach().double()                                       # (vocab, d_model)
    query = emb[ids[0]] - emb[ids[1]] + emb[ids[2]]
    cos = (emb @ query) / (emb.norm(dim=1) * query.norm()).clamp(min=1e-30)
    if not isinstance(exclude_inputs, bool):
        raise InputError(f"exclude_inputs must be True or False, got {exclude_inputs!r}.")
    if exclude_inputs:
        cos[ids] = -torch.inf
    order = torch.argsort(cos, descending=True)
    top = order[:top_k].tolist()
    rank = None if target is None else int((order == target).nonzero()[0, 0]) + 1
    return Analogy(a=a, b=b, c=c, tokens=tuple(model.decode_tokens(top)), ids=tuple(top),
                   cosines=cos[top].numpy().astype(np.float32), answer=answer, answer_rank=rank,
                   answer_cosine=None if target is None else float(cos[target]))
