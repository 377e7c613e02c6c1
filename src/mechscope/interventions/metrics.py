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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError

Token = str | int


@dataclass(frozen=True)
class BoundMetric:
    """A metric whose tokens are resolved to ids for one model; call it on (batch, vocab) logits.

    Returns one value per row, shape ``(batch,)``; a 1-D ``(vocab,)`` input counts as one row.
    A metric with ``needs_clean`` (`kl_to_clean`) also takes the clean run's logits.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> m = logit_diff(5, 7).bind(model)
    >>> logits = torch.zeros(model.vocab_size); logits[5] = 2.0
    >>> m(logits).tolist()
    [2.0]
    >>> kl_to_clean().bind(model)(logits)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: metric kl_to_clean() needs the clean run's logits.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    needs_clean: bool = False
    higher_is_clean: bool = True
    #: True when the tokens differ per dataset example (`answer_logit_diff`): ``fn`` then also
    #: takes the example index of each row.
    per_example: bool = False

    def __call__(self, logits: torch.Tensor, clean_logits: torch.Tensor | None = None,
                 examples: torch.Tensor | None = None) -> torch.Tensor:
        """One value per row of ``logits`` (batch, vocab); ``examples`` (batch,) says which
        dataset example each row is (used by per-example metrics; default: row i = example i)."""
        if logits.ndim == 1:
            logits = logits[None]
        if self.needs_clean and clean_logits is None:
            raise InputError(f"metric {self.name} needs the clean run's logits.")
        clean = None if clean_logits is None else clean_logits.float()
        if self.per_example:
            rows = torch.arange(logits.shape[0]) if examples is None else examples
            return self.fn(logits.float(), clean, rows)  # type: ignore[call-arg]
        return self.fn(logits.float(), clean)


@dataclass(frozen=True)
class Metric:
    """An unbound metric: token strings are checked against a model's tokenizer in `bind`.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> m = logit_diff(" the", " of")
    >>> m.name, m.tokens
    ("logit_diff(' the', ' of')", (' the', ' of'))
    >>> prob(" Paris").bind(model)          # two tokens in this tokenizer
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: ' Paris' is 2 tokens [' Pa', 'ris'], not one. ...
    """

    name: str
    tokens: tuple[Token, ...]
    make: Callable[[list[int]], Callable[..., torch.Tensor]]
    needs_clean: bool = False
    higher_is_clean: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)
    per_example: bool = False

    def bind(self, model: Any) -> BoundMetric:
        ids = [self._token_id(model, i) for i in range(len(self.tokens))]
        return BoundMetric(self.name, self.make(ids), self.needs_clean, self.higher_is_clean,
                           self.per_example)

    def _token_id(self, model: Any, i: int) -> int:
        try:
            return int(model.to_single_token(self.tokens[i]))
        except InputError as err:
            if not self.per_example:
                raise
            n = len(self.tokens) // 2
            raise InputError(f"example {i % n}: its {'answer' if i < n else 'wrong'} token: {err}") from None


def logit_diff(good: Token, bad: Token) -> Metric:
    """logit[good] - logit[bad] at the final position (e.g. " Paris" vs " Rome").

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> good, bad = model.to_single_token(" the"), model.to_single_token(" of")
    >>> logits = torch.randn(2, model.vocab_size)           # (batch, vocab)
    >>> values = logit_diff(" the", " of").bind(model)(logits)
    >>> bool(torch.equal(values, logits[:, good] - logits[:, bad]))
    True
    """
    def make(ids: list[int]):
        g, b = ids
        return lambda logits, _clean: logits[:, g] - logits[:, b]
    return Metric(f"logit_diff({good!r}, {bad!r})", (good, bad), make)


def answer_logit_diff(answers: Sequence[Token], wrongs: Sequence[Token],
                      name: str = "logit_diff(answer, wrong)") -> Metric:
    """logit[answers[i]] - logit[wrongs[i]] on the rows of example i: a dataset's default metric.

    Binding checks every token is one token, naming the example that is not.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> m = answer_logit_diff([5, 6], [7, 8]).bind(model)
    >>> logits = torch.randn(3, model.vocab_size)                  # (rows, vocab)
    >>> rows = torch.tensor([1, 0, 1])                             # the example of each row
    >>> expected = torch.stack([logits[0, 6] - logits[0, 8], logits[1, 5] - logits[1, 7],
    ...                         logits[2, 6] - logits[2, 8]])
    >>> bool(torch.equal(m(logits, examples=rows), expected))
    True
    >>> answer_logit_diff([" the"], [" Paris"]).bind(model)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: example 0: its wrong token: ' Paris' is 2 tokens [' Pa', 'ris'], not one. ...
    """
    if len(answers) != len(wrongs) or not answers:
        raise InputError(f"answer_logit_diff needs one wrong token per answer, got {len(answers)} "
                         f"answers and {len(wrongs)} wrong tokens.")

    def make(ids: list[int]):
        n = len(ids) // 2
        good, bad = torch.tensor(ids[:n]), torch.tensor(ids[n:])

        def fn(logits: torch.Tensor, _clean: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
            picked = torch.arange(logits.shape[0])
            return logits[picked, good[rows]] - logits[picked, bad[rows]]
        return fn
    return Metric(name, (*answers, *wrongs), make, per_example=True)


def prob(token: Token) -> Metric:
    """Softmax probability of ``token`` at the final position.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> logits = torch.randn(2, model.vocab_size)
    >>> values = prob(9).bind(model)(logits)              # a token id works too
    >>> bool(torch.allclose(values, torch.softmax(logits, dim=-1)[:, 9]))
    True
    """
    def make(ids: list[int]):
        (t,) = ids
        return lambda logits, _clean: torch.softmax(logits, dim=-1)[:, t]
    return Metric(f"prob({token!r})", (token,), make)


def logprob(token: Token) -> Metric:
    """Log-probability of ``token`` at the final position.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> logits = torch.randn(2, model.vocab_size)
    >>> lp, p = logprob(" the").bind(model), prob(" the").bind(model)
    >>> bool(torch.allclose(lp(logits), p(logits).log(), atol=1e-5))
    True
    """
    def make(ids: list[int]):
        (t,) = ids
        return lambda logits, _clean: torch.log_softmax(logits, dim=-1)[:, t]
    return Metric(f"logprob({token!r})", (token,), make)


def kl_to_clean() -> Metric:
    """KL(clean || run) of the final-position next-token distributions (0 = same as clean).

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> kl = kl_to_clean().bind(model)
    >>> clean, run = torch.randn(1, model.vocab_size), torch.randn(1, model.vocab_size)
    >>> p, q = torch.log_softmax(clean, -1), torch.log_softmax(run, -1)
    >>> bool(torch.allclose(kl(run, clean), (p.exp() * (p - q)).sum(-1)))
    True
    >>> kl(clean, clean).abs().item() < 1e-6, kl.needs_clean
    (True, True)
    """
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
