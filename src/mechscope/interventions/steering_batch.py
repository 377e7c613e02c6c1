"""Steering evaluated over a dataset: the next-token metric of every prompt at every coefficient.

`steering_sweep(model, dataset, vec, coefficients)` lands here for a `PromptPairs` (metric:
each example's ``logit_diff(answer, wrong)``), `Prompts` or a list of texts (metric:
``kl_to_clean()`` against the unsteered run, unless one is given). Each padded batch of texts
runs once with one block of rows per coefficient, ``coefficient * vector`` added to the
residual stream after block ``vector.layer`` at every position, as `generate` steers.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
>>> e = mechscope.steering_sweep(model, ["The cat", "A day was"], vec, coefficients=[-2, 0, 2])
>>> e.per_example.shape, e.coefficients, [round(float(v), 6) for v in e.values][1]
((2, 3), (-2.0, 0.0, 2.0), 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..models.model import Model
from ..models.trace import save
from ..stats import OverExamples, summarize
from .ablation_batch import BATCH_SIZE, dataset_texts
from .metrics import BoundMetric


@dataclass(frozen=True)
class SteeringEffect(OverExamples):
    """``per_example[i, c]``: the metric of example i with ``coefficients[c]`` times the vector
    added, (n, coefficients); ``values`` the mean per coefficient with its bootstrap interval.

    >>> import mechscope
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good day"], ["bad day"], layer=0)
    >>> e = mechscope.steering_sweep(model, ["The cat", "A dog ran"], vec, coefficients=[0, 4],
    ...                              metric=logit_diff(" the", " of"))
    >>> e.per_example.shape, e.values.shape, e.metric_name
    ((2, 2), (2,), "logit_diff(' the', ' of')")
    """

    per_example: np.ndarray
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    coefficients: tuple[float, ...]
    layer: int
    metric_name: str
    model_name: str
    dataset_name: str
    texts: tuple[str, ...] = field(repr=False, default=())
    ci_level: float = 0.95

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """Long format: one row per (example, coefficient)."""
        return self.long_frame(coefficient=list(self.coefficients))

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap: one row per example and a last "mean" row with its bootstrap interval
        (``ci_low`` / ``ci_high``) on hover, one column per coefficient. A single example's
        interval is its value."""
        from ..widgets.heatmap import Heatmap

        per = np.asarray(self.per_example, dtype=np.float32)
        return Heatmap(np.vstack([per, self.values[None]]),
                       row_labels=[f"#{i}" for i in range(self.n)] + ["mean"],
                       col_labels=[f"{c:+g}" for c in self.coefficients], value_label=self.metric_name,
                       title=(f"{self.model_name}: steering at L{self.layer}, {self.metric_name} "
                              f"per example ({self.n} of {self.dataset_name!r})"),
                       colorscale="diverging",
                       ci_low=np.vstack([per, self.ci_low[None]]),
                       ci_high=np.vstack([per, self.ci_high[None]]),
                       ci_label=(f"{round(self.ci_level * 100)}% CI, n={self.n} in the mean row; "
                                 "one example: its value"))

    def __repr__(self) -> str:
        parts = ", ".join(f"{c:+g}: {v:.3g} [{lo:.3g}, {hi:.3g}]" for c, v, lo, hi in
                          zip(self.coefficients, self.values, self.ci_low, self.ci_high, strict=True))
        return f"SteeringEffect(L{self.layer}, {self.metric_name}, n={self.n}; {parts})"


def steering_effect(model: Model, data: Any, vec: torch.Tensor, layer: int,
                    coefficients: tuple[float, ...], metric: BoundMetric | None) -> SteeringEffect:
    """See the module docstring; ``vec`` (d_model,) and the coefficients are checked already."""
    texts, bound, name = dataset_texts(model, data, metric)
    k = len(coefficients)
    deltas = torch.tensor(coefficients, dtype=torch.float32)[:, None] * vec.float()[None]  # (k, d)
    ref = model.at("resid", layer)
    unembed = model.logits()
    out = np.empty((len(texts), k), dtype=np.float32)
    for start in range(0, len(texts), BATCH_SIZE):
        rows = torch.arange(start, min(start + BATCH_SIZE, len(texts)))
        enc = model.encode(list(texts[start:start + BATCH_SIZE]))
        b = len(rows)
        batch = {key: torch.cat([value] * (k + 1)) for key, value in enc.items()}  # + unsteered
        add = torch.cat([torch.zeros(b, vec.shape[0]), deltas.repeat_interleave(b, dim=0)])
        with model.trace(batch):
            resid = ref.read()
            resid[:] = resid + add[:, None, :].to(resid.dtype)
            logits = save(unembed.all()[:, -1])
        logits = logits.float()
        clean = logits[:b]
        for c in range(k):
            out[rows.numpy(), c] = bound(logits[(c + 1) * b:(c + 2) * b], clean, rows).numpy()
    s = summarize(out)
    return SteeringEffect(per_example=out, values=s.mean, ci_low=s.ci_low, ci_high=s.ci_high,
                          coefficients=coefficients, layer=layer, metric_name=bound.name,
                          model_name=model.name, dataset_name=name, texts=tuple(texts),
                          ci_level=s.level)
