"""`selectivity`: which MLP neurons prefer one class of text, and how strongly.

For every neuron: its mean activation per class (over all non-padding tokens of the class's
texts), a class-selectivity index ``(mu_max - mu_rest) / (mu_max + mu_rest)`` where
``mu_rest`` is the mean of the other classes' means, and its top activating texts with
per-token activations.

Negative activations: SiLU/GELU neurons are often slightly negative, and the index is only
defined for non-negative activity. Each neuron's activations are therefore measured from its
floor, the lowest activation it takes on any token of the dataset (``floor``), before the
index is computed; a neuron that never moves off its floor gets index 0. (Clipping at 0
instead would call a neuron whose class means are all about -0.05 perfectly selective when one
of them is +0.01.) ``class_means`` keeps the raw, unshifted means.

>>> import mechscope
>>> from mechscope.datasets import labelled_texts
>>> model = mechscope.tiny_model("gpt2")
>>> sel = mechscope.selectivity(model, labelled_texts(n_per_class=4), layer=1)
>>> sel.index.shape == (model.d_mlp,)
True
>>> bool(((sel.index >= 0) & (sel.index <= 1)).all())
True

Is a selective neuron needed? ``effect_metric=`` ablates each of the ``effect_top`` most
selective neurons (one at a time, through `mechscope.ablate`) on ``effect_prompts`` and stores
the mean metric change (ablated - clean) per neuron in ``ablation_effect`` (NaN for neurons
not ablated), so the widget can plot selectivity against causal importance:

>>> from mechscope.metrics import kl_to_clean
>>> sel = mechscope.selectivity(model, labelled_texts(n_per_class=2), layer=1,
...                             effect_metric=kl_to_clean(), effect_top=3)
>>> int((~np.isnan(sel.ablation_effect)).sum()), sel.ablation_metric
(3, 'kl_to_clean() after zero ablation')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.model import Model
from ..models.sites import site as get_site
from ..models.trace import save
from ..validate import as_int, check_model

_SITES = ("neurons", "resid", "attn", "mlp")


@dataclass(frozen=True)
class TopExample:
    """One text and its per-token activations of one neuron."""

    text: str
    label: str
    tokens: list[str]
    activations: np.ndarray

    @property
    def peak(self) -> float:
        return float(self.activations.max())


@dataclass(frozen=True)
class SelectivityResult:
    """Per-neuron class means (classes x neurons), selectivity index and top examples.

    ``class_means[class, neuron]``: ``(n_classes, n_neurons)``; ``index``, ``preferred`` and
    ``floor``: ``(n_neurons,)``; ``token_acts[i]``: ``(n_tokens of texts[i], n_neurons)``.

    >>> import mechscope, numpy as np
    >>> from mechscope.datasets import labelled_texts
    >>> model = mechscope.tiny_model("gpt2")
    >>> sel = mechscope.selectivity(model, labelled_texts(["animals", "code"], n_per_class=3), layer=0)
    >>> sel.class_means.shape == (2, model.d_mlp), sel.n_neurons == model.d_mlp
    (True, True)
    >>> top = sel.ranked(3)                                  # most selective first
    >>> bool((np.diff(sel.index[top]) <= 0).all())
    True
    >>> ex = sel.top_examples(int(top[0]), n=2)[0]           # its highest-peaking text
    >>> ex.activations.shape == (len(ex.tokens),), list(sel.to_pandas().columns)[:2]
    (True, ['selectivity', 'preferred'])
    """

    classes: list[str]
    class_means: np.ndarray
    index: np.ndarray
    preferred: np.ndarray
    texts: list[str]
    text_labels: list[str]
    text_tokens: list[list[str]]
    token_acts: list[np.ndarray]
    layer: int
    site: str
    model_name: str
    floor: np.ndarray | None = None
    ablation_effect: np.ndarray | None = None
    ablation_metric: str | None = None

    @property
    def n_neurons(self) -> int:
        return int(self.index.shape[0])

    def ranked(self, n: int = 20) -> np.ndarray:
        """Neuron indices, most selective first."""
        return np.argsort(-self.index, kind="stable")[:n]

    def top_examples(self, neuron: int, n: int = 5) -> list[TopExample]:
        """The ``n`` texts where ``neuron`` peaks highest, with its per-token activations."""
        if not -self.n_neurons <= neuron < self.n_neurons:
            raise InputError(f"neuron {neuron} is out of range 0..{self.n_neurons - 1}.")
        peaks = np.array([acts[:, neuron].max() for acts in self.token_acts])
        order = np.argsort(-peaks, kind="stable")[:n]
        return [TopExample(self.texts[i], self.text_labels[i], self.text_tokens[i],
                           self.token_acts[i][:, neuron].copy()) for i in order]

    def to_pandas(self):  # noqa: ANN201
        """One row per neuron: index, preferred class, and each class's mean."""
        import pandas as pd

        frame = pd.DataFrame(self.class_means.T, columns=[f"mean[{c}]" for c in self.classes])
        frame.insert(0, "preferred", [self.classes[i] if np.isfinite(x) else None
                                      for i, x in zip(self.preferred, self.index, strict=True)])
        frame.insert(0, "selectivity", self.index)
        if self.ablation_effect is not None:
            frame["ablation_effect"] = self.ablation_effect
        frame.index.name = "neuron"
        return frame

    def show(self, **kwargs):  # noqa: ANN201
        """`Selectivity` widget: index histogram, ranked neurons, class means and top examples."""
        from ..widgets.selectivity import Selectivity

        return Selectivity(self, **kwargs)


def selectivity_index(class_means: np.ndarray, floor: np.ndarray | float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(index, preferred class) per neuron from (classes, neurons) means measured from ``floor``.

    A neuron whose class means or floor are not all finite (NaN/inf activations) gets index NaN
    -- not 0, which would read as "not selective"; its preferred class means nothing
    (`SelectivityResult.to_pandas` shows None there).

    >>> index, preferred = selectivity_index(np.array([[1.0, 1.0, np.nan], [0.0, 1.0, 1.0]]))
    >>> index.tolist(), preferred.tolist()[:2]
    ([1.0, 0.0, nan], [0, 0])
    """
    bad = ~np.isfinite(np.asarray(class_means - floor, dtype=np.float64)).all(axis=0)
    mu = np.clip(np.nan_to_num(class_means - floor, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    preferred = mu.argmax(axis=0)
    mu_max = mu.max(axis=0)
    n_classes = mu.shape[0]
    mu_rest = (mu.sum(axis=0) - mu_max) / max(n_classes - 1, 1)
    denom = mu_max + mu_rest
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(denom > 0, (mu_max - mu_rest) / denom, 0.0)
    index[bad] = np.nan
    return index.astype(np.float32), preferred


def selectivity(model: Model, examples: Mapping[str, Sequence[str]], layer: int, *,
                site: str = "neurons", batch_size: int = 16, effect_metric: Any = None,
                effect_prompts: Sequence[str] | None = None, effect_top: int = 20,
                effect_method: str = "zero", effect_reference: Sequence[str] | None = None,
                ) -> SelectivityResult:
    """Class selectivity of every unit of ``site`` at ``layer``: "neurons" (MLP neurons, the
    default) or a d_model-wide site ("resid", "attn", "mlp": the module outputs, per dimension).

    With ``effect_metric`` (a `mechscope.metrics` metric, e.g. ``kl_to_clean()``), the
    ``effect_top`` most selective neurons are each ablated (``effect_method``: "zero", "mean"
    or "resample"; the last two draw from ``effect_reference``, default: all example texts) on
    ``effect_prompts`` (default: every example text) and the mean metric change is stored in
    ``ablation_effect``. Only MLP neurons can be ablated this way (site "neurons").
    Returns a `SelectivityResult`: ``index`` has one entry per unit, ``(d_mlp,)`` for
    "neurons" and ``(d_model,)`` for the other sites.

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("gpt2")
    >>> examples = {"fruit": ["apple pear", "plum fig"], "tools": ["saw drill", "hammer"]}
    >>> sel = mechscope.selectivity(model, examples, layer=1, site="resid")
    >>> sel.classes, sel.index.shape == (model.d_model,)
    (['fruit', 'tools'], True)
    >>> acts = np.concatenate(sel.token_acts[:2])            # every token of the "fruit" texts
    >>> bool(np.allclose(sel.class_means[0], acts.mean(axis=0), atol=1e-5))
    True
    """
    check_model(model, "selectivity")
    site = get_site(site, allowed=_SITES, verb="selectivity").name
    if effect_metric is not None:
        if site != "neurons":
            raise InputError("effect_metric ablates MLP neurons: use site='neurons'.")
        if as_int(effect_top, "effect_top") < 1:
            raise InputError(f"effect_top must be a positive int, got {effect_top!r}.")
        if effect_method not in ("zero", "mean", "resample"):
            raise InputError(f"effect_method must be 'zero', 'mean' or 'resample', got {effect_method!r}.")
        from ..interventions.metrics import as_metric

        effect_metric = as_metric(effect_metric, model)  # a bad token fails here, before any run
    if not isinstance(examples, Mapping) or len(examples) < 2:
        raise InputError("examples must map at least two class labels to lists of texts.")
    layer = model.check_layer(layer)
    texts: list[str] = []
    labels: list[str] = []
    for label, items in examples.items():
        if isinstance(items, str) or not len(items):
            raise InputError(f"class {label!r} needs a non-empty list of texts.")
        for text in items:
            model.to_tokens(text)  # validates every text before any forward pass
            texts.append(text)
            labels.append(str(label))
    classes = [str(c) for c in examples]
    ref = model.at(site, layer)

    token_acts: list[np.ndarray] = []
    text_tokens: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        enc = model.encode(batch)
        with model.trace(enc):
            acts = save(ref.read())
        mask = enc["attention_mask"].bool()
        for row in range(len(batch)):
            keep = mask[row]
            token_acts.append(acts[row][keep].float().cpu().numpy())
            text_tokens.append(model.decode_tokens(enc["input_ids"][row][keep]))

    width = token_acts[0].shape[1]
    sums = np.zeros((len(classes), width), dtype=np.float64)
    counts = np.zeros(len(classes), dtype=np.int64)
    for acts, label in zip(token_acts, labels, strict=True):
        c = classes.index(label)
        sums[c] += acts.sum(axis=0)
        counts[c] += acts.shape[0]
    class_means = (sums / counts[:, None]).astype(np.float32)
    floor = np.min([acts.min(axis=0) for acts in token_acts], axis=0).astype(np.float32)
    index, preferred = selectivity_index(class_means, floor)
    effect, effect_name = None, None
    if effect_metric is not None:
        prompts = list(effect_prompts) if effect_prompts is not None else texts
        for text in prompts:
            model.to_tokens(text)
        reference = None if effect_method == "zero" else list(effect_reference or texts)
        effect = _ablation_effects(model, layer, np.argsort(-index, kind="stable")[:effect_top],
                                   width, prompts, effect_metric, effect_method, reference)
        effect_name = f"{effect_metric.name} after {effect_method} ablation"
    return SelectivityResult(
        classes=classes, class_means=class_means, index=index, preferred=preferred,
        texts=texts, text_labels=labels, text_tokens=text_tokens, token_acts=token_acts,
        layer=layer, site=site, model_name=model.name, floor=floor,
        ablation_effect=effect, ablation_metric=effect_name,
    )


def _ablation_effects(model: Model, layer: int, neurons_: np.ndarray, width: int,
                      prompts: list[str], metric: Any, method: str,
                      reference: list[str] | None) -> np.ndarray:
    """Mean (ablated - clean) metric over ``prompts`` for each neuron, one at a time; NaN elsewhere."""
    from ..interventions.ablation import Ablated, ablate, neurons
    from ..progress import progress as progress_bar

    effect = np.full(width, np.nan, dtype=np.float32)
    for n in progress_bar(neurons_.tolist(), desc=f"ablating L{layer} neurons", unit="neuron"):
        view = ablate(model, None, neurons(layer, [n]), method=method, reference=reference,
                      metric=metric)
        assert isinstance(view, Ablated)  # no prompt: the reusable ablated view
        changes = [view.result(text).metric_change for text in prompts]
        effect[n] = float(np.mean([c for c in changes if c is not None]))
    return effect
