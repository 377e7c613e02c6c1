"""The result of `mechscope.ablate` on one prompt: logits and top tokens with and without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.model import Model
from .metrics import BoundMetric


# ---- results -------------------------------------------------------------------------------
def _top(logits: np.ndarray, top_k: int) -> np.ndarray:
    return np.argsort(-logits, kind="stable")[:top_k]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


@dataclass(frozen=True)
class AblationResult:
    """Final-position logits (and a metric) of one prompt with and without an ablation.

    ``clean_logits``/``ablated_logits``: ``(vocab,)``. ``top_clean``/``top_ablated`` are the
    ``top_k`` most likely next tokens (ids in ``top_clean_ids``/``top_ablated_ids``, ``(top_k,)``)
    before and after; ``clean_metric``/``ablated_metric`` are None when no metric was given.

    >>> import mechscope, numpy as np
    >>> from mechscope.metrics import logit_diff
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.ablate(model, "The cat sat on the", mechscope.heads(0, [1, 2]),
    ...                      metric=logit_diff(" the", " of"), top_k=3)
    >>> r.metric_change == r.ablated_metric - r.clean_metric, len(r.top_clean)
    (True, 3)
    >>> int(np.argmax(r.ablated_logits)) == int(r.top_ablated_ids[0])
    True
    >>> list(r.to_pandas().columns)[:4]
    ['token', 'token_id', 'clean_logit', 'ablated_logit']
    """

    prompt: str
    tokens: list[str]
    target: str
    method: str
    clean_logits: np.ndarray
    ablated_logits: np.ndarray
    top_clean_ids: np.ndarray
    top_ablated_ids: np.ndarray
    top_clean: list[str]
    top_ablated: list[str]
    metric_name: str | None
    clean_metric: float | None
    ablated_metric: float | None
    model_name: str
    reference: tuple[str, ...] = ()
    resampled_from: int | None = None
    seed: int = 0

    @property
    def metric_change(self) -> float | None:
        """ablated - clean metric (None without a metric)."""
        if self.clean_metric is None or self.ablated_metric is None:
            return None
        return self.ablated_metric - self.clean_metric

    def _token_table(self) -> tuple[np.ndarray, list[str]]:
        ids = list(dict.fromkeys([*self.top_clean_ids.tolist(), *self.top_ablated_ids.tolist()]))
        names = dict(zip(self.top_clean_ids.tolist(), self.top_clean, strict=True))
        names.update(zip(self.top_ablated_ids.tolist(), self.top_ablated, strict=True))
        labels = [names[i] for i in ids]
        return np.asarray(ids, dtype=np.int64), labels

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per token in either top list: logits and probabilities before/after."""
        import pandas as pd

        ids, labels = self._token_table()
        pc, pa = _softmax(self.clean_logits), _softmax(self.ablated_logits)
        return pd.DataFrame({
            "token": labels,
            "token_id": ids,
            "clean_logit": self.clean_logits[ids],
            "ablated_logit": self.ablated_logits[ids],
            "logit_change": self.ablated_logits[ids] - self.clean_logits[ids],
            "clean_prob": pc[ids],
            "ablated_prob": pa[ids],
        })

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap: rows clean / ablated / change, columns the top tokens before and after."""
        from ..widgets.heatmap import Heatmap

        ids, labels = self._token_table()
        clean, abl = self.clean_logits[ids], self.ablated_logits[ids]
        metric = ""
        if self.metric_name is not None:
            metric = f"; {self.metric_name}: {self.clean_metric:.4g} -> {self.ablated_metric:.4g}"
        return Heatmap(
            np.stack([clean, abl, abl - clean]),
            row_labels=["clean", f"{self.method}-ablated", "change"],
            col_labels=labels,
            title=f"{self.model_name}: {self.method} ablation of {self.target}{metric}",
            value_label="next-token logit",
            colorscale="diverging",
        )


def ablation_result(model: Model, prompt: str, ids: torch.Tensor, spec: Any, method: str,
            clean: torch.Tensor, ablated: torch.Tensor, metric: BoundMetric | None,
            reference: list[str], picked: int | None, seed: int, top_k: int) -> AblationResult:
    cm = am = None
    if metric is not None:
        cm = float(metric(clean[None], clean[None])[0])
        am = float(metric(ablated[None], clean[None])[0])
    c, a = clean.numpy().astype(np.float32), ablated.numpy().astype(np.float32)
    tc, ta = _top(c, top_k), _top(a, top_k)
    dec = model.tokenizer.decode
    return AblationResult(
        prompt=prompt, tokens=[dec([i]) for i in ids[0].tolist()], target=spec.desc,
        method=method, clean_logits=c, ablated_logits=a, top_clean_ids=tc, top_ablated_ids=ta,
        top_clean=[dec([int(i)]) for i in tc], top_ablated=[dec([int(i)]) for i in ta],
        metric_name=None if metric is None else metric.name, clean_metric=cm, ablated_metric=am,
        model_name=model.name, reference=tuple(reference), resampled_from=picked, seed=seed,
    )
