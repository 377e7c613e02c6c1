"""Per-checkpoint metrics that work on any mechscope Model: head structure and behaviour.

All of them are read from one probe: ``n_seqs`` sequences of ``span_len`` random distinct
tokens repeated ``n_repeats`` times (after a BOS token when the tokenizer has one).

Structure, per (layer, head), from the attention pattern ``A[b, h, i, j]`` (query ``i``,
key ``j``: the softmax weights, read as the attention module's second output in an nnsight
trace; the model is switched to eager attention for that trace and switched back after):

- **induction score**: the mean of ``A[i, j + 1]`` over query positions ``i`` whose token
  occurred before, where ``j`` is its most recent previous occurrence, i.e. the attention
  from a repeated token to the token right after its previous occurrence (positions with
  ``j + 1 == i``, a token repeated immediately, are left out). A perfect induction head
  scores 1; a head attending uniformly to the ``i + 1`` positions it sees scores the mean of
  ``1 / (i + 1)`` over those queries, near 0 (0.04 on the default probe).
- **previous-token score**: the mean of ``A[i, i - 1]`` over all positions ``i >= 1``.

Neurons, per (layer, neuron), optionally: the class-selectivity index of
`mechscope.selectivity` on labelled texts (see `neuron_selectivity`).

Behaviour, from the next-token losses (nats) on the same probe:

- ``first_loss``: mean loss on targets whose token has not occurred earlier in the sequence;
- ``repeated_loss``: mean loss on the targets an induction head can predict: the token after
  each induction query above (a repeated token ``i`` whose earlier occurrence ``j`` was
  followed by ``j + 1``; in the probe that is every token of a repeat but its first);
- ``icl_score``: Olsson et al.'s in-context learning score, the loss at a late target
  position minus the loss at an early one (they use tokens 500 and 50 of 512; here the last
  target and the one 10% into the sequence, averaged over the probe's sequences). Negative
  means later tokens are predicted better.

A user metric is any ``fn(model) -> float``.

>>> import numpy as np
>>> tokens = np.array([[9, 1, 2, 3, 1, 2, 3]])            # BOS, span (1 2 3), repeat
>>> perfect = np.zeros((1, 1, 7, 7)); perfect[..., 0, 0] = 1
>>> for i, j in enumerate(induction_targets(tokens)[0]):
...     perfect[0, 0, i, j if j >= 0 else 0] = 1
>>> induction_score(perfect, tokens).round(3).tolist()
[1.0]
>>> prev = np.zeros((1, 1, 7, 7)); prev[..., 0, 0] = 1
>>> prev[0, 0, np.arange(1, 7), np.arange(6)] = 1       # every position attends to i - 1
>>> prev_token_score(prev).tolist(), induction_score(prev, tokens).tolist()
([1.0], [0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..analysis.selectivity import selectivity
from ..errors import InputError
from ..models.model import Model
from ..models.trace import save

#: Behaviour metrics every checkpoint gets.
BEHAVIOUR = ("first_loss", "repeated_loss", "icl_score")


# ---- scoring hand-made or measured patterns --------------------------------------------------
def induction_targets(tokens: np.ndarray) -> np.ndarray:
    """For each (sequence, position i): ``j + 1`` where ``j`` is the most recent earlier position
    holding the same token, or -1 when there is none or when ``j + 1 == i``.

    ``tokens``: (batch, positions); returns the same shape.

    >>> induction_targets(np.array([[9, 1, 2, 3, 1, 2, 3], [5, 5, 5, 6, 5, 0, 0]])).tolist()
    [[-1, -1, -1, -1, 2, 3, 4], [-1, -1, -1, -1, 3, -1, -1]]
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise InputError(f"tokens must be (batch, positions), got shape {tokens.shape}.")
    targets = np.full(tokens.shape, -1, dtype=np.int64)
    for b, row in enumerate(tokens.tolist()):
        last: dict[int, int] = {}
        for i, tok in enumerate(row):
            j = last.get(tok)
            if j is not None and j + 1 < i:
                targets[b, i] = j + 1
            last[tok] = i
    return targets


def _check_patterns(patterns: np.ndarray) -> np.ndarray:
    patterns = np.asarray(patterns, dtype=np.float64)
    if patterns.ndim < 4 or patterns.shape[-1] != patterns.shape[-2]:
        raise InputError("patterns must be (..., batch, heads, queries, keys) with as many keys "
                         f"as queries, got shape {patterns.shape}.")
    return patterns


def induction_score(patterns: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Mean attention from each repeated token to the token after its previous occurrence.

    ``patterns``: (..., batch, heads, queries, keys); ``tokens``: (batch, positions).
    Returns (..., heads). NaN if no position has a previous occurrence.

    >>> tokens = np.array([[9, 1, 2, 3, 1, 2, 3]])                  # BOS, span, repeat
    >>> targets = induction_targets(tokens)[0]                      # [-1 -1 -1 -1  2  3  4]
    >>> patterns = np.zeros((1, 2, 7, 7)); patterns[..., 0] = 1     # both heads attend to BOS
    >>> patterns[0, 1, 4:] = 0; patterns[0, 1, [4, 5, 6], targets[4:]] = 1  # head 1 induces
    >>> induction_score(patterns, tokens).tolist()
    [0.0, 1.0]
    """
    patterns = _check_patterns(patterns)
    targets = induction_targets(tokens)
    if patterns.shape[-4] != targets.shape[0] or patterns.shape[-1] != targets.shape[1]:
        raise InputError(f"patterns {patterns.shape} do not match tokens {targets.shape}: "
                         "need (..., batch, heads, positions, positions).")
    b_idx, q_idx = np.nonzero(targets >= 0)
    if b_idx.size == 0:
        return np.full(patterns.shape[:-4] + patterns.shape[-3:-2], np.nan)
    k_idx = targets[b_idx, q_idx]
    picked = patterns[..., b_idx, :, q_idx, k_idx]  # (cells, ..., heads) by numpy's rule
    return np.moveaxis(picked, 0, -1).mean(axis=-1)


def prev_token_score(patterns: np.ndarray) -> np.ndarray:
    """Mean attention from each position ``i >= 1`` to ``i - 1``.

    ``patterns``: (..., batch, heads, queries, keys). Returns (..., heads).

    Uniform causal attention scores the mean of ``1 / (i + 1)``:

    >>> n = 5
    >>> uniform = np.tril(np.ones((n, n))); uniform /= uniform.sum(-1, keepdims=True)  # (q, k)
    >>> score = prev_token_score(uniform[None, None])           # batch 1, heads 1 -> (heads,)
    >>> bool(np.isclose(score[0], np.mean([1 / (i + 1) for i in range(1, n)])))
    True
    """
    patterns = _check_patterns(patterns)
    if patterns.shape[-1] < 2:
        raise InputError("a previous-token score needs at least 2 positions.")
    diag = np.diagonal(patterns, offset=-1, axis1=-2, axis2=-1)  # (..., batch, heads, n-1)
    return diag.mean(axis=-1).mean(axis=-2)


def behaviour_masks(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, repeated) boolean masks over the loss positions (batch, positions - 1).

    ``losses[:, t]`` is the loss of predicting token ``t + 1`` at position ``t``: ``first``
    marks targets never seen before in the sequence, ``repeated`` the predictions made at an
    induction query (see the module doc).
    """
    tokens = np.asarray(tokens)
    targets = induction_targets(tokens)
    first = np.zeros(tokens.shape, dtype=bool)
    for b, row in enumerate(tokens.tolist()):
        seen: set[int] = set()
        for i, tok in enumerate(row):
            first[b, i] = tok not in seen
            seen.add(tok)
    return first[:, 1:], (targets >= 0)[:, :-1]


def behaviour_from_losses(losses: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
    """``first_loss``, ``repeated_loss`` and ``icl_score`` from losses (batch, positions - 1).

    ``losses[:, t]`` is the loss of predicting ``tokens[:, t + 1]``; see the module doc.

    >>> tokens = np.array([[9, 1, 2, 3, 1, 2, 3]])           # BOS, span (1 2 3), repeat
    >>> losses = np.array([[3.0, 3.0, 3.0, 2.0, 1.0, 1.0]])  # predicting tokens 1..6
    >>> behaviour_from_losses(losses, tokens)
    {'first_loss': 3.0, 'repeated_loss': 1.0, 'icl_score': -2.0}
    """
    losses = np.asarray(losses, dtype=np.float64)
    tokens = np.asarray(tokens)
    if losses.shape != (tokens.shape[0], tokens.shape[1] - 1):
        raise InputError(f"losses {losses.shape} do not match tokens {tokens.shape}: need "
                         "(batch, positions - 1).")
    first_mask, repeated_mask = behaviour_masks(tokens)
    n_targets = losses.shape[1]
    early = max(0, int(round(0.1 * n_targets)) - 1)
    return {
        "first_loss": float(losses[first_mask].mean()) if first_mask.any() else math.nan,
        "repeated_loss": float(losses[repeated_mask].mean()) if repeated_mask.any() else math.nan,
        "icl_score": float(losses[:, -1].mean() - losses[:, early].mean()),
    }


# ---- the probe -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RepeatProbe:
    """Token ids (n_seqs, positions) of repeated random spans, with the settings that made them.

    >>> import mechscope
    >>> probe = repeat_probe(mechscope.tiny_model("llama"), n_seqs=2, span_len=3)
    >>> probe.tokens.shape, probe.n_positions, probe.has_bos    # no BOS token in this tokenizer
    ((2, 6), 6, False)
    """

    tokens: np.ndarray
    span_len: int
    n_repeats: int
    seed: int
    has_bos: bool

    @property
    def n_positions(self) -> int:
        return int(self.tokens.shape[1])


def repeat_probe(model: Model, *, n_seqs: int = 32, span_len: int = 20, n_repeats: int = 2,
                 seed: int = 0) -> RepeatProbe:
    """Repeated random spans drawn from ``model``'s ordinary (non-special) tokens.

    Each span has distinct tokens; the tokenizer's BOS token (if any) is prepended. ``tokens``
    has shape ``(n_seqs, [1 +] span_len * n_repeats)``.

    >>> import mechscope
    >>> from mechscope.dynamics import InductionTask, build_model, task_tokenizer
    >>> task = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    >>> model = mechscope.load(build_model(task, n_layers=1, d_model=16, n_heads=2),
    ...                        tokenizer=task_tokenizer(task.vocab_size))
    >>> tokens = repeat_probe(model, n_seqs=3, span_len=4, n_repeats=3).tokens
    >>> tokens.shape, bool((tokens[:, 0] == task.bos_id).all())          # BOS + 3 x 4 tokens
    ((3, 13), True)
    >>> bool((tokens[:, 1:5] == tokens[:, 5:9]).all() and (tokens[:, 1:5] == tokens[:, 9:]).all())
    True
    """
    for name, value, low in (("n_seqs", n_seqs, 1), ("span_len", span_len, 2),
                             ("n_repeats", n_repeats, 2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}.")
    tok = model.tokenizer
    special = set(getattr(tok, "all_special_ids", []) or [])
    pool = np.array([i for i in range(min(model.vocab_size, len(tok))) if i not in special])
    if pool.size < span_len:
        raise InputError(f"{model.name} has {pool.size} ordinary tokens, fewer than span_len "
                         f"{span_len}; lower span_len.")
    rng = np.random.default_rng(seed)
    spans = np.stack([rng.choice(pool, size=span_len, replace=False) for _ in range(n_seqs)])
    body = np.tile(spans, (1, n_repeats))
    bos = getattr(tok, "bos_token_id", None)
    if bos is not None:
        body = np.concatenate([np.full((n_seqs, 1), bos), body], axis=1)
    limit = model.max_positions
    if limit is not None and body.shape[1] > limit:
        raise InputError(f"the probe is {body.shape[1]} tokens long but {model.name} accepts "
                         f"{limit}; lower span_len or n_repeats.")
    return RepeatProbe(tokens=body.astype(np.int64), span_len=int(span_len),
                       n_repeats=int(n_repeats), seed=seed, has_bos=bos is not None)


# ---- reading a model -------------------------------------------------------------------------
def attention_and_losses(model: Model, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Attention patterns (layers, batch, heads, q, k) and next-token losses (batch, positions - 1)
    of ``model`` on ``tokens``, from one nnsight trace.

    Attention weights exist only in eager attention (sdpa and flash kernels never form them):
    the model is switched to eager for this trace and back to what it was afterwards.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> tokens = repeat_probe(model, n_seqs=2, span_len=3).tokens             # (2, 6)
    >>> patterns, losses = attention_and_losses(model, tokens)
    >>> patterns.shape, losses.shape
    ((2, 2, 4, 6, 6), (2, 5))
    >>> bool(np.allclose(patterns.sum(-1), 1, atol=1e-5))                      # softmax rows
    True
    >>> ids = torch.as_tensor(tokens)
    >>> bool(np.isclose(losses.mean(), model.hf(ids, labels=ids).loss.item(), atol=1e-5))
    True
    """
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    refs = [model.at("pattern", layer) for layer in range(model.n_layers)]
    unembed = model.logits()
    with model.eager_attention():
        with model.trace(ids):
            saved = [ref.read() for ref in refs]
            saved.append(unembed.all())
            saved = save(saved)
    if any(p is None for p in saved[:-1]):
        raise InputError(f"{model.name}'s attention modules returned no weights even with eager "
                         "attention; this architecture cannot give attention patterns.")
    patterns = torch.stack([p.float() for p in saved[:-1]]).cpu().numpy()
    logits = saved[-1].float()
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    ).reshape(ids.shape[0], -1)
    return patterns, losses.cpu().numpy()


def neuron_selectivity(model: Model, examples: Mapping[str, Sequence[str]],
                       layers: Sequence[int]) -> np.ndarray:
    """Class-selectivity index (layers, d_mlp) of every MLP neuron at ``layers``.

    One `mechscope.selectivity` per layer (index in [0, 1]; see that module for its definition).

    >>> import mechscope
    >>> from mechscope.datasets import labelled_texts
    >>> model = mechscope.tiny_model("gpt2")
    >>> examples = labelled_texts(["animals", "code"], n_per_class=2)
    >>> index = neuron_selectivity(model, examples, [0, 1])
    >>> index.shape == (2, model.d_mlp)
    True
    >>> bool(np.array_equal(index[1], mechscope.selectivity(model, examples, 1).index))
    True
    """
    return np.stack([selectivity(model, examples, layer).index for layer in layers]).astype(np.float32)


UserMetrics = Mapping[str, Callable[[Model], float]] | Sequence[Callable[[Model], float]] | None


def user_metrics(metrics: UserMetrics) -> list[tuple[str, Callable[[Model], float]]]:
    """``[(name, fn)]`` from a ``{name: fn}`` mapping or a list of functions (named by
    ``__name__``), checked: callables, distinct names, none of `BEHAVIOUR`."""
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        pairs = [(str(k), fn) for k, fn in metrics.items()]
    elif isinstance(metrics, Sequence) and not isinstance(metrics, str):
        pairs = [(getattr(fn, "__name__", f"metric{i}"), fn) for i, fn in enumerate(metrics)]
    elif callable(metrics):
        pairs = [(getattr(metrics, "__name__", "metric0"), metrics)]
    else:
        raise InputError("metrics must be {name: fn(model) -> float} or a list of such functions, "
                         f"got {type(metrics).__name__}.")
    for name, fn in pairs:
        if not callable(fn):
            raise InputError(f"user metric {name!r} is {type(fn).__name__}, not a function "
                             "fn(model) -> float.")
    names = [name for name, _ in pairs]
    if set(names) & set(BEHAVIOUR) or len(set(names)) != len(names) or "<lambda>" in names:
        raise InputError(f"user metric names must be distinct and not one of {BEHAVIOUR}; got "
                         f"{names}. Name lambdas with a dict: metrics={{'name': fn}}.")
    return pairs


@dataclass(frozen=True)
class CheckpointMetrics:
    """Everything measured on one checkpoint.

    ``induction``/``prev_token``: (layers, heads); ``behaviour``: ``{name: value}``;
    ``selectivity``: (selectivity layers, d_mlp) or None.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> probe = repeat_probe(model, n_seqs=2, span_len=3)
    >>> m = checkpoint_metrics(model, probe)
    >>> m.induction.shape == m.prev_token.shape == (model.n_layers, model.n_heads)
    True
    >>> patterns, _ = attention_and_losses(model, probe.tokens)
    >>> bool(np.allclose(m.prev_token, prev_token_score(patterns), atol=1e-6)), m.selectivity
    (True, None)
    """

    induction: np.ndarray  # (layers, heads)
    prev_token: np.ndarray  # (layers, heads)
    behaviour: dict[str, float]
    selectivity: np.ndarray | None = None  # (selectivity layers, d_mlp)


def checkpoint_metrics(model: Model, probe: RepeatProbe, metrics: UserMetrics = None, *,
                       batch_size: int = 32,
                       neuron_examples: Mapping[str, Sequence[str]] | None = None,
                       neuron_layers: Sequence[int] = ()) -> CheckpointMetrics:
    """All metrics of one model on ``probe`` (``batch_size`` probe sequences per trace).

    ``metrics`` adds user metrics (``{name: fn(model) -> float}``) to ``behaviour``:

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> probe = repeat_probe(model, n_seqs=4, span_len=3)
    >>> m = checkpoint_metrics(model, probe, {"layers": lambda mdl: mdl.n_layers}, batch_size=2)
    >>> sorted(m.behaviour), m.behaviour["layers"]
    (['first_loss', 'icl_score', 'layers', 'repeated_loss'], 2.0)
    >>> whole = checkpoint_metrics(model, probe)                 # one trace of 4 sequences
    >>> bool(np.allclose(m.induction, whole.induction, atol=1e-5))
    True
    """
    pairs = user_metrics(metrics)
    tokens = probe.tokens
    ind_sum: Any = 0.0
    prev_sum: Any = 0.0
    ind_n = prev_n = 0
    losses = []
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size]
        patterns, chunk_losses = attention_and_losses(model, chunk)
        n_cells = int((induction_targets(chunk) >= 0).sum())
        if n_cells:
            ind_sum = ind_sum + induction_score(patterns, chunk) * n_cells
            ind_n += n_cells
        prev_sum = prev_sum + prev_token_score(patterns) * chunk.shape[0]
        prev_n += chunk.shape[0]
        losses.append(chunk_losses)
    shape = (model.n_layers, model.n_heads)
    induction = np.asarray(ind_sum / ind_n) if ind_n else np.full(shape, np.nan)
    behaviour = behaviour_from_losses(np.concatenate(losses), tokens)
    for name, fn in pairs:
        value = fn(model)
        try:
            behaviour[name] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"user metric {name!r} returned {type(value).__name__} {value!r}, "
                             "not a number.") from None
    sel = (neuron_selectivity(model, neuron_examples, neuron_layers)
           if neuron_examples is not None else None)
    return CheckpointMetrics(induction=induction.astype(np.float32),
                             prev_token=np.asarray(prev_sum / prev_n).astype(np.float32),
                             behaviour=behaviour, selectivity=sel)
