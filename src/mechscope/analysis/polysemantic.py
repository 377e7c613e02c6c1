"""`polysemantic`: MLP neurons whose top activating contexts fall into unrelated topic groups.

Method (every number is over the texts given, for one layer):

1. `mechscope.collect` reads site "neurons" (the MLP's hidden units) and "resid_pre" (the
   residual stream *entering* the block, which the neuron reads but does not write) at
   ``layer`` for every token of every text. Each text's first token is left out of the ranking
   (``skip_first``): many models park a huge "attention sink" activation there.
2. Each neuron's **top contexts**: the ``top_k`` texts with its largest activation, one
   context per text (the token where it peaks), so one long text cannot fill the list.
3. **Topic labels** (the dataset's own labels, e.g. `mechscope.datasets.labelled_texts`'s
   topics) of the top contexts give ``topic_counts``; ``entropy``: their Shannon entropy in
   bits (0 = all one topic; log2(topics) = evenly spread). A topic is **over-represented**
   when its count is improbably high for ``top_k`` texts drawn at random from the dataset:
   ``topic_p`` is the exact hypergeometric tail P(count >= observed) and a topic counts when
   ``topic_p < alpha / topics`` (Bonferroni over topics); ``n_topics``: how many do.
   ``kind``: "polysemantic" (``n_topics >= 2``: the top contexts fall into two or more topics,
   each beyond chance), "monosemantic" (one) or "unselective" (none).
4. **Shuffled-label baseline**: the texts' labels are permuted ``n_shuffles`` times (fixed
   seed) and step 3 repeated on the same top contexts: ``baseline_entropy`` is each neuron's
   mean shuffled entropy; ``baseline_fraction`` below the rate of "polysemantic" it gives.
5. **Groups independent of the neuron**: the top contexts' residuals (mean over all collected
   tokens subtracted, then unit length) are clustered by spherical k-means into
   ``n_clusters`` groups (deterministic: the first centre is the top context, each next the
   context least similar to the centres so far); ``silhouette`` (cosine distance) says how
   separate the groups are (-1..1), ``cluster_topics`` each group's majority topic.

``fraction`` is the share of analysed neurons that are polysemantic, with a bootstrap
interval over neurons (`mechscope.stats.summarize`); ``baseline_fraction`` the same share
under each shuffle (mean, and 2.5-97.5 percentiles over shuffles): the rate the criterion
gives when topic and text are unrelated. ``mono_fraction`` / ``baseline_mono_fraction``: the
same for monosemantic neurons. Neurons are ranked polysemantic first, by the count of their
second most over-represented topic (how strongly the second group is there), then entropy.

>>> import mechscope
>>> from mechscope.datasets.labelled import labelled_texts
>>> model = mechscope.tiny_model("llama")
>>> data = labelled_texts(["animals", "cities", "code"], n_per_class=6)
>>> res = polysemantic(model, data, layer=1, neurons=range(8), top_k=6, n_shuffles=50)
>>> res.top_examples.shape, res.topic_counts.shape, res.topics
((8, 6), (8, 3), ['animals', 'cities', 'code'])
>>> set(res.kind) <= {"monosemantic", "polysemantic", "unselective"}
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.model import Model
from ..stats import summarize
from ..validate import as_int, index_list
from .collect import collect
from .store import ActivationStore

KINDS = ("polysemantic", "monosemantic", "unselective")
_KMEANS_STEPS = 25


@dataclass(frozen=True)
class PolysemanticResult:
    """Top contexts of MLP neurons at one layer, their topics, clusters and scores.

    Per analysed neuron (rows of every array, in ``neurons`` order): ``top_examples`` /
    ``top_positions`` / ``top_values`` (neurons, top_k) which text, token and activation each
    top context is (highest first), ``peak_tokens`` the token strings there; ``clusters``
    (neurons, top_k) its k-means group;
    ``topic_counts`` and ``topic_p`` (neurons, topics); ``entropy``, ``baseline_entropy``,
    ``silhouette`` (neurons,); ``n_topics`` (neurons,) int; ``kind`` and ``cluster_topics``
    (one list per neuron). ``order``: indices into ``neurons``, most polysemantic first
    (see the module docstring). ``fraction`` etc.: see the
    module docstring. ``texts`` / ``labels`` / ``text_tokens`` / ``context_values`` (texts,
    tokens) float32 padded with NaN: what `show` draws (``context_values`` only for the
    neurons' top texts: (neurons, top_k, width)).

    >>> import mechscope
    >>> from mechscope.datasets.labelled import labelled_texts
    >>> res = polysemantic(mechscope.tiny_model("llama"), labelled_texts(["code", "french"], 5),
    ...                    layer=0, neurons=[3, 7], top_k=4, n_shuffles=20)
    >>> res.to_pandas().columns.tolist()[:4], len(res.to_pandas())
    (['neuron', 'kind', 'entropy', 'baseline_entropy'], 2)
    >>> res.show(neuron=7).n_texts
    4
    """

    layer: int
    neurons: np.ndarray
    topics: list[str]
    top_examples: np.ndarray
    top_positions: np.ndarray
    top_values: np.ndarray
    peak_tokens: list[list[str]]
    clusters: np.ndarray
    topic_counts: np.ndarray
    entropy: np.ndarray
    baseline_entropy: np.ndarray
    topic_p: np.ndarray
    n_topics: np.ndarray
    silhouette: np.ndarray
    kind: list[str]
    cluster_topics: list[list[str]]
    order: np.ndarray
    fraction: float
    fraction_ci: tuple[float, float]
    baseline_fraction: float
    baseline_fraction_ci: tuple[float, float]
    mono_fraction: float
    baseline_mono_fraction: float
    texts: list[str]
    labels: list[str]
    text_tokens: list[list[str]]
    context_values: np.ndarray
    top_k: int
    n_clusters: int
    alpha: float
    n_shuffles: int
    context: int | None
    model_name: str

    def ranked(self, kind: str | None = None) -> list[int]:
        """Neuron indices (model numbering) most polysemantic first; ``kind`` keeps one kind."""
        if kind is not None and kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS} or None, got {kind!r}.")
        return [int(self.neurons[i]) for i in self.order if kind is None or self.kind[i] == kind]

    def groups(self, neuron: int) -> dict[int, list[tuple[str, str, float]]]:
        """``{cluster: [(topic, text, activation), ...]}`` of one neuron's top contexts."""
        row = self._row(neuron)
        out: dict[int, list[tuple[str, str, float]]] = {}
        for k in range(self.top_k):
            ex = int(self.top_examples[row, k])
            out.setdefault(int(self.clusters[row, k]), []).append(
                (self.labels[ex], self.texts[ex], float(self.top_values[row, k])))
        return dict(sorted(out.items()))

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per neuron in ``order``: kind, entropy, baseline, p, topics, silhouette."""
        import pandas as pd

        o = self.order
        frame = pd.DataFrame({
            "neuron": self.neurons[o], "kind": np.asarray(self.kind, dtype=object)[o],
            "entropy": self.entropy[o], "baseline_entropy": self.baseline_entropy[o],
            "n_topics": self.n_topics[o],
            "silhouette": self.silhouette[o], "peak": self.top_values[o, 0],
            "peak_tokens": [len(set(self.peak_tokens[i])) for i in o]})
        for j, topic in enumerate(self.topics):
            frame[f"n_{topic}"] = self.topic_counts[o, j]
        for j, topic in enumerate(self.topics):
            frame[f"p_{topic}"] = self.topic_p[o, j]
        return frame

    def show(self, neuron: int | None = None, **kwargs: Any):  # noqa: ANN201
        """`TokenText` of one neuron's top contexts (default: the most polysemantic), grouped by
        cluster (label "cluster c · topic"), each token coloured by the neuron's activation."""
        from ..widgets.token_text import TokenText

        row = int(self.order[0]) if neuron is None else self._row(neuron)
        ks = sorted(range(self.top_k), key=lambda k: (int(self.clusters[row, k]), k))
        toks, vals, labels = [], [], []
        for k in ks:
            ex, pos = int(self.top_examples[row, k]), int(self.top_positions[row, k])
            tokens = self.text_tokens[ex]
            lo, hi = 0, len(tokens)
            if self.context is not None:
                lo, hi = max(0, pos - self.context), min(hi, pos + self.context + 1)
            toks.append(tokens[lo:hi])
            vals.append(self.context_values[row, k, lo:hi])
            labels.append(f"cluster {int(self.clusters[row, k])} · {self.labels[ex]} · peak at {pos}")
        n = int(self.neurons[row])
        kwargs.setdefault("title", f"{self.model_name}: L{self.layer} neuron {n} ({self.kind[row]}), "
                                   f"top {self.top_k} contexts by cluster")
        return TokenText(toks, {f"L{self.layer} neuron {n}": vals}, labels=labels,
                         scores=self.top_values[row, ks], score_label="peak", **kwargs)

    def _row(self, neuron: int) -> int:
        hits = np.flatnonzero(self.neurons == neuron)
        if isinstance(neuron, bool) or not hits.size:
            raise InputError(f"neuron {neuron!r} was not analysed; choose one of {self.neurons.tolist()[:10]}"
                             f"{'...' if len(self.neurons) > 10 else ''}.")
        return int(hits[0])

    def __repr__(self) -> str:
        return (f"PolysemanticResult({self.model_name!r}, L{self.layer}, {len(self.neurons)} neurons, "
                f"top {self.top_k}: {self.fraction:.3f} polysemantic vs {self.baseline_fraction:.3f} "
                f"shuffled)")


# ---- checks ---------------------------------------------------------------------------------------
def _texts_and_labels(texts: Any, labels: Any) -> tuple[list[str], list[str]]:
    """Texts and one topic label per text, from ``{topic: [texts]}`` or a list and ``labels``."""
    if isinstance(texts, Mapping):
        if labels is not None:
            raise InputError("texts is a {topic: [texts]} dict, which carries its labels: leave labels=None.")
        pairs = [(str(x), str(topic)) for topic, group in texts.items() for x in group]
        out, labs = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        if hasattr(texts, "texts") and not isinstance(texts, str | bytes):
            texts = texts.texts
        if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
            raise InputError("texts must be a {topic: [texts]} dict (e.g. labelled_texts(...)) or a list of "
                             f"texts with labels=; got {type(texts).__name__}.")
        if labels is None or isinstance(labels, str | bytes) or not isinstance(labels, Sequence):
            raise InputError("a list of texts needs labels=: one topic label per text (or pass a "
                             "{topic: [texts]} dict).")
        out, labs = list(texts), [str(x) for x in labels]
        if len(labs) != len(out):
            raise InputError(f"{len(labs)} labels for {len(out)} texts: give one topic label per text.")
    if len(set(labs)) < 2:
        raise InputError(f"polysemantic needs texts of at least 2 topics, got {sorted(set(labs))}.")
    return out, labs


def _settings(top_k: Any, n_clusters: Any, n_texts: int, alpha: Any,
              n_shuffles: Any) -> tuple[int, int, float, int]:
    k = as_int(top_k, "top_k")
    c = as_int(n_clusters, "n_clusters")
    s = as_int(n_shuffles, "n_shuffles")
    if c < 2:
        raise InputError(f"n_clusters must be at least 2, got {c}.")
    if k <= c:
        raise InputError(f"top_k must be larger than n_clusters={c} (each group needs contexts), got {k}.")
    if n_texts < k:
        raise InputError(f"top_k={k} top contexts (one per text) but only {n_texts} texts: too few texts; "
                         f"give at least {k} texts or a smaller top_k.")
    if s < 10:
        raise InputError(f"n_shuffles must be at least 10 for a baseline, got {s}.")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise InputError(f"alpha must be a number between 0 and 1 (e.g. 0.05), got {alpha!r}.")
    return k, c, float(alpha), s


def _store(model_or_store: Any, texts: list[str], layer: Any, progress: Any) -> tuple[ActivationStore, int]:
    if isinstance(model_or_store, ActivationStore):
        store = model_or_store
        if store.reduce != "all" or not {"neurons", "resid_pre"} <= set(store.sites):
            raise InputError("the store must be collect(..., sites=['neurons', 'resid_pre'], reduce='all'); "
                             f"got sites {store.sites}, reduce {store.reduce!r}.")
        if store.n_examples != len(texts) or not store.complete:
            raise InputError(f"the store holds {store.n_examples} texts, {len(texts)} given: pass the texts "
                             "it was collected from, in the same order.")
        if layer not in store.layers:
            raise InputError(f"layer {layer!r} is not in the store (layers {store.layers}).")
        return store, int(layer)
    if not isinstance(model_or_store, Model):
        raise InputError("polysemantic takes a mechscope Model (mechscope.load(...)) or an ActivationStore "
                         f"from mechscope.collect, got {type(model_or_store).__name__}.")
    chosen = model_or_store.check_layer(layer)
    return collect(model_or_store, texts, sites=["neurons", "resid_pre"], layers=[chosen],
                   progress=progress), chosen


# ---- the measurement ------------------------------------------------------------------------------
def polysemantic(model_or_store: Model | ActivationStore, texts: Any, *, layer: int,
                 labels: Sequence[str] | None = None, neurons: Any = None, top_k: int = 20,
                 n_clusters: int = 2, context: int | None = None, alpha: float = 0.05, n_shuffles: int = 200, skip_first: bool = True, seed: int = 0,
                 progress: Any = False) -> PolysemanticResult:
    """Rank the MLP neurons at ``layer`` by how many unrelated topics their top contexts span.

    ``texts``: ``{topic: [texts]}`` (`mechscope.datasets.labelled_texts`) or a list with
    ``labels=`` (one topic per text). ``model_or_store``: a `Model` (activations collected here)
    or an `ActivationStore` of these texts with sites "neurons" and "resid_pre", reduce "all".
    ``neurons``: which to analyse (default all). ``top_k``: top contexts per neuron (one per
    text). ``context``: tokens shown each side of the peak by `PolysemanticResult.show` (None:
    the whole text). The rest: see the module docstring. Returns a `PolysemanticResult`.

    >>> import mechscope
    >>> from mechscope.datasets.labelled import labelled_texts
    >>> model = mechscope.tiny_model("gpt2")
    >>> res = polysemantic(model, labelled_texts(["animals", "numbers"], 4), layer=-1, top_k=3,
    ...                    n_shuffles=20)
    >>> len(res.neurons) == model.d_mlp, res.layer, res.top_values.shape[1]
    (True, 1, 3)
    >>> polysemantic(model, ["a cat", "a dog"], labels=["animals"], layer=0)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: 1 labels for 2 texts: give one topic label per text.
    """
    text_list, labs = _texts_and_labels(texts, labels)
    k, c, alpha, n_shuf = _settings(top_k, n_clusters, len(text_list), alpha, n_shuffles)
    if context is not None and as_int(context, "context") < 0:
        raise InputError(f"context must be None or a number of tokens >= 0, got {context!r}.")
    if isinstance(model_or_store, Model):
        model_or_store.check_layer(layer)
        width = model_or_store.d_mlp
        for text in text_list:
            model_or_store.to_tokens(text)  # every text checked before any forward pass
    elif isinstance(model_or_store, ActivationStore) and "neurons" in model_or_store.sites:
        width = model_or_store.width("neurons")
    else:
        width = 0
    chosen = None if neurons is None else index_list(neurons, width, "neurons", "neuron", where="this layer has")
    store, layer = _store(model_or_store, text_list, layer, progress)
    acts = np.asarray(store.get("neurons", layer), dtype=np.float32)
    units = np.arange(acts.shape[1]) if chosen is None else np.asarray(chosen)
    acts = acts[:, units]
    example, position = store.example, store.position
    rankable = acts.copy()
    if skip_first:
        rankable[position == 0] = -np.inf
    top_rows = _top_rows(rankable, example, len(text_list), k)                  # (neurons, k) row ids
    topic_names = sorted(set(labs))
    label_ids = np.asarray([topic_names.index(x) for x in labs])
    top_ex = example[top_rows]
    entropy, counts = _entropy(label_ids[top_ex], len(topic_names))
    tails = _tails(np.bincount(label_ids, minlength=len(topic_names)), k)        # (topics, k + 1)
    cut = alpha / len(topic_names)
    topic_p = np.take_along_axis(tails, counts.T, axis=1).T
    n_topics = (topic_p < cut).sum(-1)
    kinds = [KINDS[0] if t >= 2 else KINDS[1] if t == 1 else KINDS[2] for t in n_topics.tolist()]
    rng = np.random.default_rng(seed)
    null_h, null_n = [], []
    for _ in range(n_shuf):
        h, cs = _entropy(rng.permutation(label_ids)[top_ex], len(topic_names))
        null_h.append(h)
        null_n.append((np.take_along_axis(tails, cs.T, axis=1).T < cut).sum(-1))
    null_frac = np.mean(np.stack(null_n) >= 2, axis=1)
    second = -np.sort(-np.where(topic_p < cut, counts, 0), axis=1)[:, 1]
    clusters, silhouette = _cluster(np.asarray(store.get("resid_pre", layer), dtype=np.float32), top_rows, c)
    poly = np.array([x == "polysemantic" for x in kinds], dtype=np.float64)
    frac = summarize(poly[:, None])
    order = np.lexsort((-entropy, -second, np.asarray([KINDS.index(x) for x in kinds])))
    tokens = _text_tokens(store, len(text_list))
    return PolysemanticResult(
        layer=layer, neurons=units.astype(np.int64), topics=topic_names, top_examples=top_ex,
        top_positions=position[top_rows], top_values=acts[top_rows, np.arange(len(units))[:, None]],
        peak_tokens=[[store.tokens[r] for r in row] for row in top_rows.tolist()],
        clusters=clusters, topic_counts=counts, entropy=entropy, baseline_entropy=np.mean(null_h, axis=0),
        topic_p=topic_p, n_topics=n_topics, silhouette=silhouette, kind=kinds,
        cluster_topics=[[_majority(label_ids[top_ex[i][clusters[i] == g]], topic_names) for g in range(c)]
                        for i in range(len(units))],
        order=order, fraction=float(frac.mean[0]), fraction_ci=(float(frac.ci_low[0]), float(frac.ci_high[0])),
        baseline_fraction=float(null_frac.mean()),
        baseline_fraction_ci=(float(np.percentile(null_frac, 2.5)), float(np.percentile(null_frac, 97.5))),
        mono_fraction=float((n_topics == 1).mean()),
        baseline_mono_fraction=float(np.mean(np.stack(null_n) == 1)),
        texts=[str(x) for x in text_list], labels=labs, text_tokens=tokens,
        context_values=_context_values(acts, example, position, top_rows, tokens, skip_first),
        context=context,
        top_k=k, n_clusters=c, alpha=alpha, n_shuffles=n_shuf, model_name=store.model_name)


def _top_rows(acts: np.ndarray, example: np.ndarray, n_texts: int, k: int) -> np.ndarray:
    """(neurons, k) row index of each neuron's peak in each of its ``k`` top texts."""
    best = np.full((n_texts, acts.shape[1]), -np.inf, dtype=np.float32)
    best_row = np.zeros((n_texts, acts.shape[1]), dtype=np.int64)
    starts = np.searchsorted(example, np.arange(n_texts + 1))                  # rows are in text order
    for ex in range(n_texts):
        rows = np.arange(starts[ex], starts[ex + 1])
        if rows.size:
            arg = np.argmax(acts[rows], axis=0)
            best_row[ex] = rows[arg]
            best[ex] = acts[rows[arg], np.arange(acts.shape[1])]
    if np.isinf(best).all(0).any():
        raise InputError("a text has no token left to rank (one-token texts with skip_first=True): "
                         "give longer texts or skip_first=False.")
    top_texts = np.argsort(-best, axis=0, kind="stable")[:k].T                 # (neurons, k)
    return best_row[top_texts, np.arange(acts.shape[1])[:, None]]


def _entropy(label_ids: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Entropy in bits of the labels along the last axis, and the label counts."""
    counts = (label_ids[..., None] == np.arange(n_labels)).sum(-2)
    p = counts / counts.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)
    return h, counts


def _tails(sizes: np.ndarray, k: int) -> np.ndarray:
    """(topics, k + 1): P(count >= c) of a topic with ``sizes[t]`` of the texts among ``k`` drawn
    at random without replacement (hypergeometric, exact)."""
    from math import comb

    total = int(sizes.sum())
    out = np.zeros((len(sizes), k + 1))
    for t, size in enumerate(sizes.tolist()):
        pmf = [comb(size, x) * comb(total - size, k - x) / comb(total, k) for x in range(k + 1)]
        out[t] = np.minimum(np.cumsum(pmf[::-1])[::-1], 1.0)
    return out


def _cluster(resid: np.ndarray, top_rows: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (deterministic farthest-point start) of each neuron's top contexts'
    centred, unit residuals: (neurons, k) cluster ids and (neurons,) mean cosine silhouette."""
    x = resid - resid.mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    emb = x[top_rows]                                                          # (neurons, k, d)
    gram = np.einsum("nid,njd->nij", emb, emb)
    n, k = top_rows.shape
    centres = [np.zeros(n, dtype=np.int64)]
    for _ in range(1, c):
        sims = np.max(np.stack([gram[np.arange(n), ci] for ci in centres]), axis=0)   # (n, k)
        centres.append(np.argmin(sims, axis=1))
    assign = np.argmax(np.stack([gram[np.arange(n), ci] for ci in centres], axis=-1), axis=-1)
    for _ in range(_KMEANS_STEPS):
        onehot = (assign[..., None] == np.arange(c)).astype(np.float64)        # (n, k, c)
        s = gram @ onehot                                                      # sum of sims to members
        norm = np.sqrt(np.maximum(np.einsum("nkc,nkc->nc", onehot, s), 1e-12))
        new = np.argmax(np.where(onehot.sum(1, keepdims=True) > 0, s / norm[:, None], -np.inf), axis=-1)
        if np.array_equal(new, assign):
            break
        assign = new
    return assign, _silhouette(1.0 - gram, assign, c)


def _silhouette(dist: np.ndarray, assign: np.ndarray, c: int) -> np.ndarray:
    """Mean silhouette per neuron; a context alone in its cluster scores 0 (Rousseeuw)."""
    onehot = (assign[..., None] == np.arange(c)).astype(np.float64)
    size = onehot.sum(1)                                                       # (n, c)
    total = dist @ onehot                                                      # (n, k, c)
    own = np.take_along_axis(total, assign[..., None], -1)[..., 0]
    own_size = np.take_along_axis(size, assign, -1)
    a = own / np.maximum(own_size - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        other = np.where((onehot == 0) & (size[:, None, :] > 0), total / size[:, None, :], np.inf)
    b = other.min(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((own_size > 1) & np.isfinite(b), (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return s.mean(-1)


def _majority(ids: np.ndarray, names: list[str]) -> str:
    return names[int(np.bincount(ids, minlength=len(names)).argmax())] if ids.size else ""


def _text_tokens(store: ActivationStore, n_texts: int) -> list[list[str]]:
    strings = store.tokens
    out: list[list[str]] = [[] for _ in range(n_texts)]
    for ex, tok in zip(store.example.tolist(), strings, strict=True):
        out[ex].append(tok)
    return out


def _context_values(acts: np.ndarray, example: np.ndarray, position: np.ndarray, top_rows: np.ndarray,
                    tokens: list[list[str]], skip_first: bool) -> np.ndarray:
    """(neurons, k, width) each top text's activations; NaN on a skipped first token and as padding."""
    out = np.full(top_rows.shape + (max(map(len, tokens)),), np.nan, dtype=np.float32)
    starts = np.searchsorted(example, np.arange(len(tokens) + 1))            # rows are in text order
    cols = np.arange(top_rows.shape[0])
    for j in range(top_rows.shape[1]):
        for ex in np.unique(example[top_rows[:, j]]).tolist():
            who = cols[example[top_rows[:, j]] == ex]
            rows = np.arange(starts[ex], starts[ex + 1])
            vals = acts[rows][:, who].T                                         # (who, tokens)
            if skip_first:
                vals[:, position[rows] == 0] = np.nan
            out[who[:, None], j, position[rows][None, :]] = vals
    return out
