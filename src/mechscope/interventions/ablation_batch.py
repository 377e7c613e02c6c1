"""Ablation over a dataset: the same target knocked out on every prompt, batched, with intervals.

`ablate(model, dataset, target, ...)` lands here for a `Prompts`, a `PromptPairs` (its clean
texts, and by default its per-example ``logit_diff(answer, wrong)``) or a list of texts. The
texts run in left-padded batches (`Model.encode`): rows ``[clean; ablated]`` (+ the drawn
reference of each example for ``"resample"``, padded like its example so positions line up),
so every example's clean and ablated run share one trace, and each value equals the
single-prompt `ablate` of that text (for ``"resample"``, example i draws its reference as
``ablate(..., seed=seed + i)`` does, so the examples draw independently). `compare_ablations` runs zero, mean and resample (over
several seeds) on the same prompts and reports every effect and every paired difference with
its interval: does a claim survive every baseline?

>>> import mechscope
>>> from mechscope.datasets import prompts
>>> model = mechscope.tiny_model("llama")
>>> data = prompts(["The cat sat on the", "A dog ran", "hello world"])
>>> effect = mechscope.ablate(model, data, mechscope.heads(0, [1]))     # kl_to_clean by default
>>> effect.per_example.shape, effect.n, bool(effect.ci_low <= effect.value <= effect.ci_high)
((3,), 3, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import PromptPairs, Prompts
from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..stats import OverExamples, summarize
from .metrics import BoundMetric, kl_to_clean

#: Texts per padded batch (each batch runs 2 or 3 rows per text).
BATCH_SIZE = 16


@dataclass(frozen=True)
class AblationEffect(OverExamples):
    """One ablation over ``n`` texts: the metric clean and ablated per example (``(n,)`` each),
    ``per_example`` = ablated - clean, its mean ``value`` and `ci_level` bootstrap interval.

    >>> import mechscope, numpy as np
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> e = mechscope.ablate(model, ["The cat sat", "A dog ran to the"], mechscope.neurons(0, [1]),
    ...                      metric=logit_diff(" the", " of"), progress=False)
    >>> e.per_example.shape, bool(np.allclose(e.per_example, e.ablated_per_example - e.clean_per_example))
    ((2,), True)
    >>> e.to_pandas().columns.tolist()
    ['example', 'text', 'clean', 'ablated', 'change']
    """

    target: str
    method: str
    metric_name: str
    texts: tuple[str, ...]
    clean_per_example: np.ndarray
    ablated_per_example: np.ndarray
    per_example: np.ndarray
    value: float
    ci_low: float
    ci_high: float
    model_name: str
    seed: int = 0
    ci_level: float = 0.95
    dataset_name: str = "prompts"
    reference: tuple[str, ...] = field(default=(), repr=False)

    @property
    def values(self) -> np.ndarray:
        """The mean change as a 0-d array (what single-number results call ``values``)."""
        return np.asarray(self.value, dtype=np.float32)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per example: text, clean, ablated, change."""
        import pandas as pd

        return pd.DataFrame({"example": np.arange(self.n), "text": list(self.texts),
                             "clean": self.clean_per_example, "ablated": self.ablated_per_example,
                             "change": self.per_example})

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap: rows clean / ablated / change, one column per example and a last "mean"
        column with its bootstrap interval on hover (the change's is ``ci_low`` / ``ci_high``;
        clean and ablated summarised the same way). A single example's interval is its value."""
        from ..widgets.heatmap import Heatmap

        rows = np.stack([self.clean_per_example, self.ablated_per_example, self.per_example])
        s = summarize(rows[:2].T, level=self.ci_level)
        mean = np.append(s.mean, np.float32(self.value))[:, None]
        low = np.append(s.ci_low, np.float32(self.ci_low))[:, None]
        high = np.append(s.ci_high, np.float32(self.ci_high))[:, None]
        return Heatmap(np.hstack([rows, mean]),
                       row_labels=["clean", f"{self.method}-ablated", "change"],
                       col_labels=[f"#{i}" for i in range(self.n)] + ["mean"],
                       title=(f"{self.model_name}: {self.method} ablation of {self.target}, "
                              f"{self.metric_name} change {self.value:.4g} "
                              f"[{self.ci_low:.4g}, {self.ci_high:.4g}] over {self.n} examples"),
                       value_label=self.metric_name, colorscale="diverging",
                       ci_low=np.hstack([rows, low]), ci_high=np.hstack([rows, high]),
                       ci_label=(f"{round(self.ci_level * 100)}% CI, n={self.n} in the mean "
                                 "column; one example: its value"))

    def __repr__(self) -> str:
        return (f"AblationEffect({self.method} {self.target}, {self.metric_name} change "
                f"{self.value:.4g} [{self.ci_low:.4g}, {self.ci_high:.4g}] ({self.ci_level:.0%} CI), "
                f"n={self.n})")


def dataset_texts(model: Model, data: Any,
                  metric: BoundMetric | None) -> tuple[tuple[str, ...], BoundMetric, str]:
    """The texts of a dataset or list (each checked, an error naming its example), the metric
    (``metric``, else a `PromptPairs`' per-example logit_diff(answer, wrong), else
    ``kl_to_clean()``), and the dataset's name."""
    default: BoundMetric | None = None
    if isinstance(data, PromptPairs):
        texts, default, name = data.clean, data.metric(model), data.name
    elif isinstance(data, Prompts):
        texts, name = data.texts, data.name
    else:
        texts, name = tuple(data), "prompts"
    if not texts:
        raise InputError("the list of prompts is empty: give at least one.")
    for i, text in enumerate(texts):
        try:
            model.to_tokens(text)
        except InputError as err:
            raise InputError(f"example {i}: {err}") from None
    chosen = metric if metric is not None else default
    return texts, chosen if chosen is not None else kl_to_clean().bind(model), name


def _padded_reference(model: Model, reference: list[str], enc: dict[str, torch.Tensor],
                      seed: int, examples: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """For each row of ``enc`` (example ``examples[row]``): a reference drawn as the
    single-prompt ``ablate(..., seed=seed + example)`` draws it (so examples draw independently),
    cut to the row's length and padded like the row (input ids, (batch, width)); the picks."""
    from .ablation import _draw_reference

    ids = torch.full_like(enc["input_ids"], int(model.tokenizer.pad_token_id))
    picks = []
    for row, mask in enumerate(enc["attention_mask"].bool()):
        n = int(mask.sum())
        pick, ref_ids = _draw_reference(model, reference, n, seed + int(examples[row]))
        ids[row, mask] = ref_ids[0]
        picks.append(pick)
    return ids, picks


def _batch_metric(model: Model, spec: Any, method: str, texts: Sequence[str], metric: BoundMetric,
                  examples: torch.Tensor, mean: torch.Tensor | None, reference: list[str],
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, ablated) metric of each text of one padded batch, from one trace."""
    enc = model.encode(list(texts))
    b = len(texts)
    blocks = [enc] * 2
    if method == "resample":
        ref_ids, _ = _padded_reference(model, reference, enc, seed, examples)
        blocks.append({**enc, "input_ids": ref_ids})
    batch = {k: torch.cat([blk[k] for blk in blocks]) for k in enc}
    ref = model.at(spec.site, spec.layer)
    unembed = model.logits()
    cols = spec.cols
    value = torch.zeros(()) if method == "zero" else mean
    with model.trace(batch):
        act = ref.read()
        if value is None:  # resample: the reference rows' own activations, position by position
            value = (act[2 * b:] if cols is None else act[2 * b:][:, :, cols]).clone()
        if cols is None:
            act[b:2 * b] = value
        else:
            act[b:2 * b, :, cols] = value
        logits = save(unembed.all()[:, -1])
    logits = logits.float()
    clean, ablated = logits[:b], logits[b:2 * b]
    return metric(clean, clean, examples), metric(ablated, clean, examples)


def ablate_dataset(model: Model, data: Any, spec: Any, method: str, reference: list[str],
                   metric: BoundMetric | None, seed: int, *, progress: bool = True) -> AblationEffect:
    """`ablate` over every text of ``data`` (see the module docstring)."""
    from ..progress import progress as progress_bar
    from .ablation import _mean_activation

    texts, bound, name = dataset_texts(model, data, metric)
    mean = _mean_activation(model, spec, reference) if method == "mean" else None
    clean = np.empty(len(texts), dtype=np.float32)
    ablated = np.empty(len(texts), dtype=np.float32)
    for start in progress_bar(range(0, len(texts), BATCH_SIZE), desc=f"{method}-ablating {spec.desc}",
                              enabled=progress):
        rows = torch.arange(start, min(start + BATCH_SIZE, len(texts)))
        c, a = _batch_metric(model, spec, method, texts[start:start + BATCH_SIZE], bound, rows,
                             mean, reference, seed)
        clean[rows.numpy()], ablated[rows.numpy()] = c.numpy(), a.numpy()
    change = ablated - clean
    s = summarize(change)
    return AblationEffect(
        target=spec.desc, method=method, metric_name=bound.name, texts=tuple(texts),
        clean_per_example=clean, ablated_per_example=ablated, per_example=change,
        value=float(s.mean), ci_low=float(s.ci_low), ci_high=float(s.ci_high),
        model_name=model.name, seed=seed, ci_level=s.level, dataset_name=name,
        reference=tuple(reference))


@dataclass(frozen=True)
class AblationComparison:
    """One target under several baselines on the same prompts: ``effects[i]`` (labelled
    ``labels[i]``), and every paired difference ``difference[i, j]`` = mean over examples of
    (effect i - effect j) with its bootstrap interval ``difference_low`` / ``difference_high``,
    each (k, k).

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> c = mechscope.compare_ablations(model, ["The cat sat", "A dog ran"], mechscope.heads(1, [0]),
    ...                                 reference=["The quick brown fox"], methods=("zero", "mean"),
    ...                                 progress=False)
    >>> c.labels, c.difference.shape, float(c.difference[0, 0])
    (('zero', 'mean'), (2, 2), 0.0)
    >>> c.to_pandas().columns.tolist()
    ['baseline', 'change', 'ci_low', 'ci_high', 'n']
    """

    effects: tuple[AblationEffect, ...]
    labels: tuple[str, ...]
    difference: np.ndarray
    difference_low: np.ndarray
    difference_high: np.ndarray

    def survives(self) -> bool:
        """True when every baseline's interval excludes 0 on the same side: the effect's sign
        does not depend on the baseline."""
        signs = {int(np.sign(e.ci_low)) if e.ci_low * e.ci_high > 0 else 0 for e in self.effects}
        return len(signs) == 1 and 0 not in signs

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per baseline: mean change, interval, n."""
        import pandas as pd

        return pd.DataFrame({"baseline": list(self.labels), "change": [e.value for e in self.effects],
                             "ci_low": [e.ci_low for e in self.effects],
                             "ci_high": [e.ci_high for e in self.effects],
                             "n": [e.n for e in self.effects]})

    def differences(self):  # noqa: ANN201 - pandas is imported lazily
        """Long table of the paired differences: baseline a, baseline b, mean, interval."""
        import pandas as pd

        k = len(self.labels)
        rows = [(self.labels[i], self.labels[j], self.difference[i, j], self.difference_low[i, j],
                 self.difference_high[i, j]) for i in range(k) for j in range(k) if i < j]
        return pd.DataFrame(rows, columns=["a", "b", "a_minus_b", "ci_low", "ci_high"])

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap of the paired differences (row - column) between baselines."""
        from ..widgets.heatmap import Heatmap

        first = self.effects[0]
        return Heatmap(self.difference, row_labels=list(self.labels), col_labels=list(self.labels),
                       title=(f"{first.model_name}: {first.target}, paired differences of "
                              f"{first.metric_name} change (row - column), n={first.n}"),
                       value_label="mean difference", colorscale="diverging",
                       ci_low=self.difference_low, ci_high=self.difference_high,
                       ci_label=f"{round(first.ci_level * 100)}% CI, n={first.n}")

    def __repr__(self) -> str:
        parts = ", ".join(f"{lab} {e.value:.3g} [{e.ci_low:.3g}, {e.ci_high:.3g}]"
                          for lab, e in zip(self.labels, self.effects, strict=True))
        return f"AblationComparison({self.effects[0].target}: {parts}; survives={self.survives()})"


def compare_ablations(model: Model, data: Any, target: Any, *, reference: Sequence[str],
                      metric: Any = None, seeds: Sequence[int] = (0, 1, 2),
                      methods: Sequence[str] = ("zero", "mean", "resample"),
                      progress: bool = True) -> AblationComparison:
    """`ablate` ``target`` on every text of ``data`` under each of ``methods`` (resample once
    per seed of ``seeds``) and compare: does the claim survive every baseline?

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> texts = ["The cat sat on the", "A dog ran to the", "hello world", "the end of the"]
    >>> c = mechscope.compare_ablations(model, texts, mechscope.heads(0, [1]),
    ...                                 reference=["The quick brown fox jumps over it"], seeds=(0, 1),
    ...                                 progress=False)
    >>> c.labels, c.difference.shape
    (('zero', 'mean', 'resample (seed 0)', 'resample (seed 1)'), (4, 4))
    >>> float(c.difference[0, 1]) == float((c.effects[0].per_example - c.effects[1].per_example).mean())
    True
    """
    from .ablation import ablate

    effects, labels = [], []
    for method in methods:
        for seed in (seeds if method == "resample" else (0,)):
            kwargs: dict[str, Any] = {} if method == "zero" else {"reference": reference}
            effect = ablate(model, data, target, method=method, metric=metric, seed=seed,
                            progress=progress, **kwargs)
            assert isinstance(effect, AblationEffect)
            effects.append(effect)
            labels.append(f"resample (seed {seed})" if method == "resample" else method)
    k = len(effects)
    diff = np.zeros((k, k), dtype=np.float32)
    low, high = np.zeros_like(diff), np.zeros_like(diff)
    for i in range(k):
        for j in range(k):
            s = summarize(effects[i].per_example - effects[j].per_example)
            diff[i, j], low[i, j], high[i, j] = float(s.mean), float(s.ci_low), float(s.ci_high)
    return AblationComparison(tuple(effects), tuple(labels), diff, low, high)
