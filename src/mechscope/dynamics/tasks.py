"""Synthetic training task: repeated random token spans, where induction heads pay off.

`InductionTask` samples sequences ``<bos> s s s ...``: a span ``s`` of distinct random tokens,
repeated until the sequence is full. The span length is drawn per sequence, so the only way
to predict a repeat is by content (find the previous occurrence of the current token and copy
the token after it: what an induction head does), not by a fixed positional offset. Tokens in
a first occurrence are unpredictable (loss about ``log(vocab_size)``); repeats become
predictable once induction heads form, which happens in a sudden drop of the loss, a phase
change (Olsson et al., 2022, "In-context Learning and Induction Heads").

The vocabulary is ``t0 .. t{V-1}`` plus ``<bos>``; `task_tokenizer` builds a word-level fast
tokenizer for it, so trained models load as ordinary mechscope Models.

>>> import torch
>>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
>>> batch = task.sample(4, torch.Generator().manual_seed(0))
>>> tuple(batch.shape), int(batch[0, 0]) == task.bos_id
((4, 13), True)
>>> tok = task_tokenizer(task.vocab_size)
>>> tok("t3 t1 t3")["input_ids"] == [task.bos_id, 3, 1, 3]
True
>>> texts = task.labelled_texts(n_per_class=2, span=3)
>>> sorted(texts), len(texts["repeated"][0].split())
(['fresh', 'repeated'], 6)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError

BOS = "<bos>"


@dataclass(frozen=True)
class InductionTask:
    """Sequences of a random span repeated to fill ``seq_len`` tokens (after a ``<bos>``).

    - ``vocab_size``: number of ordinary tokens ``t0..t{V-1}`` (``<bos>`` has id ``V``);
    - ``seq_len``: tokens after ``<bos>``;
    - ``min_span``/``max_span``: the span length is uniform in this range, per sequence; span
      tokens are distinct, so every repeated token has one unambiguous previous occurrence.

    >>> import torch
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> batch = task.sample(2, torch.Generator().manual_seed(0))      # (n, seq_len + 1)
    >>> batch.shape, task.bos_id, task.n_tokens
    (torch.Size([2, 13]), 16, 17)
    >>> body = batch[0, 1:]                                           # one span, repeated
    >>> any(torch.equal(body[n:], body[:-n]) for n in range(task.min_span, task.max_span + 1))
    True
    >>> InductionTask(vocab_size=4, seq_len=12, min_span=3, max_span=5)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: max_span 5 exceeds vocab_size 4: span tokens are distinct, ...
    """

    vocab_size: int = 64
    seq_len: int = 48
    min_span: int = 6
    max_span: int = 16

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "min_span", "max_span"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be an int, got {value!r}.")
        if not 2 <= self.min_span <= self.max_span:
            raise InputError(f"need 2 <= min_span <= max_span, got {self.min_span}, {self.max_span}.")
        if self.max_span > self.vocab_size:
            raise InputError(
                f"max_span {self.max_span} exceeds vocab_size {self.vocab_size}: span tokens are "
                "distinct, so a span cannot be longer than the vocabulary."
            )
        if self.seq_len < 2 * self.max_span:
            raise InputError(
                f"seq_len {self.seq_len} is shorter than two spans of max_span {self.max_span}: "
                "every sequence must repeat its span at least once."
            )

    @property
    def bos_id(self) -> int:
        return self.vocab_size

    @property
    def n_tokens(self) -> int:
        """Size of the model's vocabulary (ordinary tokens plus ``<bos>``)."""
        return self.vocab_size + 1

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences, shape (n, seq_len + 1), each starting with ``<bos>``."""
        spans = torch.randint(self.min_span, self.max_span + 1, (n, 1), generator=generator)
        perms = torch.rand(n, self.vocab_size, generator=generator).argsort(dim=-1)
        index = torch.arange(self.seq_len)[None, :] % spans
        body = perms.gather(1, index)
        bos = torch.full((n, 1), self.bos_id, dtype=torch.long)
        return torch.cat([bos, body], dim=1)

    def labelled_texts(self, n_per_class: int = 16, span: int | None = None,
                       seed: int = 0) -> dict[str, list[str]]:
        """Two classes of texts for neuron selectivity (`mechscope.selectivity`):

        ``"repeated"``: a span of ``span`` distinct tokens written twice; ``"fresh"``: ``2 * span``
        distinct tokens, no repeat. Same length, same token statistics, only the repeat differs.
        ``span`` defaults to ``max_span`` (at most half the vocabulary).
        """
        span = span if span is not None else min(self.max_span, self.vocab_size // 2)
        if not 1 <= 2 * span <= self.vocab_size or n_per_class < 1:
            raise InputError(f"need n_per_class >= 1 and 1 <= span <= vocab_size / 2 "
                             f"({self.vocab_size // 2}); got n_per_class={n_per_class}, span={span}.")
        rng = np.random.default_rng(seed)
        out: dict[str, list[str]] = {"repeated": [], "fresh": []}
        for _ in range(n_per_class):
            rep = rng.choice(self.vocab_size, size=span, replace=False)
            out["repeated"].append(" ".join(f"t{i}" for i in np.concatenate([rep, rep])))
            fresh = rng.choice(self.vocab_size, size=2 * span, replace=False)
            out["fresh"].append(" ".join(f"t{i}" for i in fresh))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": "induction", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InductionTask:
        return cls(**{k: v for k, v in data.items() if k != "name"})


def task_tokenizer(vocab_size: int) -> Any:
    """A word-level fast tokenizer over ``t0 .. t{vocab_size-1}`` and ``<bos>`` (prepended).

    Text is whitespace-separated token names; decoding one id gives its name (``"t7"``).

    >>> tok = task_tokenizer(16)
    >>> tok("t7 t2")["input_ids"], tok.decode([7]), tok.bos_token_id
    ([16, 7, 2], 't7', 16)
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    vocab[BOS] = vocab_size
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=BOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab_size)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=BOS
    )
