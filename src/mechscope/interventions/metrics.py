"""Metrics on next-token logits: what a patch or an ablation is measured by.

A metric is built from token strings or ids (``logit_diff(" Paris", " Rome")``), bound to a
model with ``.bind(model)`` (which checks every token is exactly one token, before any
forward pass), and then called on logits at the final position, shape (batch, vocab), giving
one number per batch row. It runs inside a trace too, so only scalars leave a remote run.

>>> import torch, mechscope
>>> from mechscope.metrics import logit_diff
>>> model = mechscope.tiny_model("llama")
>>> m = logit_diff(5, 7).bind(model)
>>> logits = torch.zeros(2, model.vocab_size); logits[:, 5] = 3.0
>>> m(logits).tolist()
[3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError

Token = str | int


@dataclass(frozen=True)
class BoundMetric:
    """A metric whose tokens are resolved to ids for one model; call it on (batch, vocab) logits."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    needs_clean: bool = False
    higher_is_clean: bool = True

    def __call__(self, logits: torch.Tensor, clean_logits: torch.Tensor | None = None) -> torch.Tensor:
        if logits.ndim == 1:
            logits = logits[None]
        if self.needs_clean and clean_logits is None:
            raise InputError(f"metric {self.name} needs the clean run's logits.")
        return self.fn(logits.float(), None if clean_logits is None else clean_logits.float())


@dataclass(frozen=True)
class Metric:
    """An unbound metric: token strings are checked against a model's tokenizer in `bind`."""

    name: str
    tokens: tuple[Token, ...]
    make: Callable[[list[int]], Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]]
    needs_clean: bool = False
    higher_is_clean: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)

    def bind(self, model: Any) -> BoundMetric:
        ids = [model.to_single_token(tok) for tok in self.tokens]
        return BoundMetric(self.name, self.make(ids), self.needs_clean, self.higher_is_clean)


def logit_diff(good: Token, bad: Token) -> Metric:
    """logit[good] - logit[bad] at the final position (e.g. " Paris" vs " Rome")."""
    def make(ids: list[int]):
        g, b = ids
        return lambda logits, _clean: logits[:, g] - logits[:, b]
    return Metric(f"logit_diff({good!r}, {bad!r})", (good, bad), make)


def prob(token: Token) -> Metric:
    """Softmax probability of ``token`` at the final position."""
    def make(ids: list[int]):
        (t,) = ids
        return lambda logits, _clean: torch.softmax(logits, dim=-1)[:, t]
    return Metric(f"prob({token!r})", (token,), make)


def logprob(token: Token) -> Metric:
    """Log-probability of ``token`` at the final position."""
    def make(ids: list[int]):
        (t,) = ids
        return lambda logits, _clean: torch.log_softmax(logits, dim=-1)[:, t]
    return Metric(f"logprob({token!r})", (token,), make)


def kl_to_clean() -> Metric:
    """KL(clean || run) of the final-position next-token distributions (0 = same as clean)."""
    def make(_ids: list[int]):
        def fn(logits: torch.Tensor, clean: torch.Tensor | None) -> torch.Tensor:
            assert clean is not None
            p = torch.log_softmax(clean, dim=-1)
            q = torch.log_softmax(logits, dim=-1)
            return (p.exp() * (p - q)).sum(-1)
        return fn
    return Metric("kl_to_clean()", (), make, needs_clean=True, higher_is_clean=False)


def as_metric(metric: Metric | BoundMetric, model: Any) -> BoundMetric:
    """Bind ``metric`` to ``model`` (a clear error for anything that is not a metric)."""
    if isinstance(metric, BoundMetric):
        return metric
    if isinstance(metric, Metric):
        return metric.bind(model)
    raise InputError(
        f"metric must come from mechscope.metrics (logit_diff, prob, logprob, kl_to_clean), got {metric!r}."
    )
