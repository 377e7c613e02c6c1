"""`attention`: every head's attention probabilities on a prompt, and what each head does.

The probabilities ``A[layer, head, query, key]`` are site "pattern" (the attention module's
second output), read for all chosen layers in ONE trace with the model switched to eager
attention (`Model.eager_attention`: sdpa / flash kernels never form the weights; the
implementation the model had is restored afterwards, also after an error). Grouped-query
models give one pattern per *query* head, as their attention module does.

Per-head scores, each a mean over the query positions where it is defined (NaN where none is):

- ``previous_token``: ``A[i, i - 1]`` over ``i >= 1``;
- ``first_token``: ``A[i, 0]`` over ``i >= 1`` (position 0 can only attend to itself);
- ``duplicate_token``: the attention from ``i`` summed over the earlier positions ``j < i``
  holding the same token, over the queries that have one;
- ``induction``: the attention from ``i`` summed over the positions ``k < i`` right after an
  earlier occurrence of token ``i`` (``tokens[k - 1] == tokens[i]``, ``k - 1 < i``), over the
  queries that have one. A prompt with no repeated token has no induction query; then (by
  default, ``induction_probe=None``) the induction score is measured on a second trace of
  `PROBE_SEQS` sequences of `PROBE_SPAN` random distinct ordinary tokens repeated twice
  (seed 0), and ``induction_source`` says so.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> att = attention(model, "the cat sat on the mat")
>>> att.patterns.shape == (2, 4, len(att.tokens), len(att.tokens)), att.score_names
(True, ['previous_token', 'duplicate_token', 'induction', 'first_token'])
>>> bool(np.allclose(att.patterns.sum(-1), 1, atol=1e-5)), att.induction_source
(True, 'prompt')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import is_dataset
from ..datasets.pairs import prompts as as_prompts
from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..stats import OverExamples, summarize
from ..validate import check_model, index_list

SCORES = ("previous_token", "duplicate_token", "induction", "first_token")
#: The induction probe (used when no prompt repeats a token): sequences x span length.
PROBE_SEQS = 8
PROBE_SPAN = 20
#: Texts per padded batch over a dataset.
BATCH_SIZE = 16
#: Over a dataset, every example's patterns are kept when they hold at most this many values.
KEEP_ALL_MAX = 4_000_000


@dataclass(frozen=True)
class AttentionResult(OverExamples):
    """Attention patterns and per-head scores.

    ``patterns``: float32 (layers, heads, query, key) of the first (or only) prompt, whose
    tokens are ``tokens``; ``example_patterns``: every example's, when small enough (else
    None); ``scores``: the mean over examples (scores, layers, heads), in ``score_names``
    order, with its bootstrap interval ``ci_low`` / ``ci_high``; ``per_example``: (examples,
    scores, layers, heads). ``layers`` / ``heads``: which ones the arrays hold.

    >>> import mechscope
    >>> att = attention(mechscope.tiny_model("gpt2"), ["a b a b", "x y"], layers=[1])
    >>> att.per_example.shape, att.score("previous_token").shape, att.n
    ((2, 4, 1, 4), (1, 4), 2)
    >>> att.to_pandas().columns.tolist()
    ['layer', 'head', 'score', 'value', 'ci_low', 'ci_high']
    """

    patterns: np.ndarray
    tokens: list[str]
    layers: list[int]
    heads: list[int]
    score_names: list[str]
    scores: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    per_example: np.ndarray
    texts: list[str]
    example_tokens: list[list[str]]
    example_patterns: list[np.ndarray] | None
    induction_source: str
    model_name: str

    def score(self, name: str) -> np.ndarray:
        """The mean score ``name`` (one of ``score_names``) per (layer, head)."""
        if name not in self.score_names:
            raise InputError(f"score must be one of {self.score_names}, got {name!r}.")
        return self.scores[self.score_names.index(name)]

    def top_heads(self, name: str, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` highest-scoring heads for ``name``: (layer, head, score), NaN last."""
        values = self.score(name)
        order = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=None, kind="stable")[:k]
        return [(self.layers[i // values.shape[1]], self.heads[i % values.shape[1]],
                 float(values.flat[i])) for i in order]

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """Long format: one row per (layer, head, score) with the mean and its interval."""
        import pandas as pd

        s, nl, nh = self.scores.shape
        grid = np.meshgrid(np.arange(s), np.arange(nl), np.arange(nh), indexing="ij")
        return pd.DataFrame({
            "layer": np.asarray(self.layers)[grid[1].ravel()],
            "head": np.asarray(self.heads)[grid[2].ravel()],
            "score": np.asarray(self.score_names, dtype=object)[grid[0].ravel()],
            "value": self.scores.ravel(), "ci_low": self.ci_low.ravel(),
            "ci_high": self.ci_high.ravel()})

    def show(self, **kwargs: Any):  # noqa: ANN201
        """`AttentionPatterns` widget: the layer x head grid, one map in full, the scores."""
        from ..widgets.attention import AttentionPatterns

        return AttentionPatterns(self, **kwargs)

    def __repr__(self) -> str:
        nl, nh, q, _ = self.patterns.shape
        return (f"AttentionResult({self.model_name!r}, {self.n} example(s), {nl} layers x "
                f"{nh} heads, {q} tokens)")


def head_scores(patterns: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """The four `SCORES` (scores, ...) of ``patterns`` (..., query, key) on token ``ids``.

    >>> ids = [5, 1, 2, 3, 1, 2, 3]                             # BOS, "1 2 3" twice
    >>> prev = np.zeros((7, 7)); prev[0, 0] = 1; prev[np.arange(1, 7), np.arange(6)] = 1
    >>> head_scores(prev, ids).round(3).tolist()                # a previous-token head
    [1.0, 0.0, 0.0, 0.167]
    """
    p = np.asarray(patterns, dtype=np.float64)
    tok = np.asarray(ids)
    n = tok.shape[0]
    nan = np.full(p.shape[:-2], np.nan)
    if n < 2:
        return np.stack([nan] * len(SCORES))
    prev = np.diagonal(p, offset=-1, axis1=-2, axis2=-1).mean(-1)
    first = p[..., 1:, 0].mean(-1)
    earlier = np.tril(np.ones((n, n), dtype=bool), k=-1)            # key j < query i
    same = (tok[:, None] == tok[None, :]) & earlier                  # same token, earlier
    after = np.zeros((n, n), dtype=bool)                             # key k: tok[k-1] == tok[i]
    after[:, 1:] = (tok[:, None] == tok[None, :-1]) & earlier[:, 1:]
    return np.stack([prev, _masked_mean(p, same, nan), _masked_mean(p, after, nan), first])


def _masked_mean(p: np.ndarray, mask: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """Mean over the queries with any masked key of the attention summed over those keys."""
    rows = mask.any(-1)
    if not rows.any():
        return nan
    return (p * mask).sum(-1)[..., rows].mean(-1)


def _probe_ids(model: Model) -> tuple[torch.Tensor, int]:
    """`PROBE_SEQS` sequences: [BOS] + a span of distinct random ordinary tokens, twice."""
    tok = model.tokenizer
    special = set(getattr(tok, "all_special_ids", []) or [])
    pool = np.array([i for i in range(min(model.vocab_size, len(tok))) if i not in special])
    span = min(PROBE_SPAN, pool.size, ((model.max_positions or 2 * PROBE_SPAN + 1) - 1) // 2)
    rng = np.random.default_rng(0)
    body = np.stack([np.tile(rng.choice(pool, size=span, replace=False), 2)
                     for _ in range(PROBE_SEQS)])
    bos = getattr(tok, "bos_token_id", None)
    if bos is not None:
        body = np.concatenate([np.full((PROBE_SEQS, 1), bos), body], axis=1)
    return torch.as_tensor(body, dtype=torch.long), int(span)


def _read_patterns(model: Model, refs: list[Any], inputs: Any, heads: list[int]) -> np.ndarray:
    """(layers, batch, heads, query, key) float32 from ONE trace under eager attention."""
    with model.eager_attention():
        with model.trace(inputs):
            saved = save([ref.read()[:, heads] for ref in refs])
    if any(p is None for p in saved):
        raise InputError(f"{model.name}'s attention modules returned no weights even with eager "
                         "attention; this architecture cannot give attention patterns.")
    return torch.stack([p.float() for p in saved]).cpu().numpy()


def check_patterns_possible(model: Model) -> None:
    """`InputError` unless ``model`` can switch to eager attention (which forms the weights)."""
    hf: Any = model.hf
    if not callable(getattr(hf, "set_attn_implementation", None)) or \
            not hasattr(getattr(hf, "config", None), "_attn_implementation"):
        raise InputError(
            f"{model.name} cannot give attention patterns: its Hugging Face model has no "
            "set_attn_implementation / config._attn_implementation, so it cannot be switched to "
            "eager attention (the only kind that forms attention probabilities). Load it with "
            "a transformers version that supports attn_implementation='eager'.")


def attention(model: Model, prompt: str | Any, layers: Any = None, heads: Any = None, *,
              induction_probe: bool | None = None) -> AttentionResult:
    """Attention probabilities of ``heads`` at ``layers`` (None = all) on ``prompt`` and
    per-head scores (see the module doc). ``prompt``: one text, a list of texts or a
    `mechscope.datasets` `Prompts` / `PromptPairs` (their clean texts); ``induction_probe``:
    True always, False never, None (default) only when no prompt repeats a token, measures
    the induction score on repeated random tokens instead. Returns an `AttentionResult`:
    ``patterns`` (layers, heads, query, key), ``scores`` (4, layers, heads).

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> att = attention(model, "one two one two", layers=-1, heads=[0, 2])
    >>> ids = model.to_tokens("one two one two")
    >>> with model.eager_attention():
    ...     ref = model.hf(ids, output_attentions=True).attentions[-1][0, [0, 2]].detach()
    >>> bool(np.allclose(att.patterns[0], ref.numpy(), atol=1e-5)), att.layers, att.heads
    (True, [1], [0, 2])
    """
    check_model(model, "attention")
    chosen = model.check_layers(layers)
    head_ids = index_list(range(model.n_heads) if heads is None else heads, model.n_heads,
                          "heads", "head", where="this model has")
    if induction_probe not in (None, True, False):
        raise InputError(f"induction_probe must be None, True or False, got {induction_probe!r}.")
    many = is_dataset(prompt)
    if many:
        if isinstance(prompt, Sequence) and not prompt:
            raise InputError("attention needs at least one prompt, got an empty list.")
        texts = list(as_prompts(prompt).texts)
    else:
        texts = [prompt]
    ids = [model.to_tokens(text)[0] for text in texts]  # every text checked before any run
    check_patterns_possible(model)
    refs = [model.at("pattern", layer) for layer in chosen]

    per_patterns: list[np.ndarray] = []
    for start in range(0, len(texts), BATCH_SIZE):
        batch = texts[start:start + BATCH_SIZE]
        inputs = ids[start][None] if len(batch) == 1 else model.encode(batch)
        read = _read_patterns(model, refs, inputs, head_ids)
        for row in range(len(batch)):
            n = int(ids[start + row].shape[0])
            per_patterns.append(np.ascontiguousarray(read[:, row, :, -n:, -n:]))  # left padding
    per_example = np.stack([head_scores(p, i.tolist()) for p, i in zip(per_patterns, ids, strict=True)])
    summary = summarize(per_example)
    mean, low, high = summary.mean.copy(), summary.ci_low.copy(), summary.ci_high.copy()
    k = SCORES.index("induction")
    no_repeats = bool(np.isnan(per_example[:, k]).all())
    source = "prompt"
    if induction_probe or (induction_probe is None and no_repeats):
        probe, span = _probe_ids(model)
        read = _read_patterns(model, refs, probe, head_ids)
        probe_scores = np.stack([head_scores(read[:, b], probe[b].tolist())[k]
                                 for b in range(probe.shape[0])])
        s = summarize(probe_scores)
        mean[k], low[k], high[k] = s.mean, s.ci_low, s.ci_high
        source = f"repeated random tokens ({PROBE_SEQS} sequences of {span} tokens x 2)"
    small = sum(p.size for p in per_patterns) <= KEEP_ALL_MAX
    return AttentionResult(
        patterns=per_patterns[0], tokens=model.decode_tokens(ids[0]), layers=chosen,
        heads=head_ids, score_names=list(SCORES), scores=mean, ci_low=low, ci_high=high,
        per_example=per_example.astype(np.float32), texts=[str(t) for t in texts],
        example_tokens=[model.decode_tokens(i) for i in ids],
        example_patterns=per_patterns if many and small else None,
        induction_source=source, model_name=model.name)
