"""How exact patching packs its patched copies into forward passes under a memory budget.

A *copy* is one patched run: one layer, one column (a position, or a head). Copies are run
``(layer, column)`` in order and cut into *chunks* of at most ``max_copies`` copies; each chunk is
one trace whose batch grows layer by layer (see `mechscope.interventions.patching`), so a chunk
covering layers ``a..b`` computes layers before ``a`` once, for the corrupt run alone.

>>> plan = plan_chunks([0, 1, 2], n_columns=4, max_copies=5)
>>> [[(layer, cols) for layer, cols in chunk] for chunk in plan]
[[(0, [0, 1, 2, 3]), (1, [0])], [(1, [1, 2, 3]), (2, [0, 1])], [(2, [2, 3])]]
"""

from __future__ import annotations

#: Bytes one float of activation takes in the estimate below is the model's parameter size;
#: these are the per-token multipliers of the widths kept alive at the widest point of a layer.
_RESID_COPIES = 6  # hidden state, residual, normed input, attention output, q/k/v
_MLP_COPIES = 3  # gate, up, activation (llama); fc and activation (gpt2, neox)
_SCORES_COPIES = 2  # attention scores and probabilities (eager) / workspace (sdpa)
_LOGIT_COPIES = 3  # final-position logits, softmax / log-softmax inside a metric


def bytes_per_copy(n_tokens: int, d_model: int, d_mlp: int, n_heads: int, vocab: int,
                   element_size: int = 4) -> int:
    """A conservative estimate of the memory one patched copy adds to a batched forward pass.

    >>> bytes_per_copy(9, 576, 1536, 9, 49152) // 1000   # SmolLM2-135M, a 9-token prompt
    885
    """
    per_token = _RESID_COPIES * d_model + _MLP_COPIES * d_mlp + _SCORES_COPIES * n_heads * n_tokens
    return element_size * n_tokens * per_token + 4 * _LOGIT_COPIES * vocab


def max_copies(budget_mb: float, per_copy: int) -> int:
    """How many copies fit in ``budget_mb`` (at least one: a single copy always runs).

    >>> max_copies(1, 300_000)
    3
    """
    return max(1, int(budget_mb * 1_000_000) // max(1, per_copy))


def plan_chunks(layers: list[int], n_columns: int, max_copies: int) -> list[list[tuple[int, list[int]]]]:
    """Cut the ``len(layers) * n_columns`` copies, in (layer, column) order, into chunks.

    Each chunk is a list of ``(layer, columns)`` with layers ascending; no chunk holds more than
    ``max_copies`` copies, and consecutive layers share a chunk whenever they fit.
    """
    if max_copies < 1:
        raise ValueError("max_copies must be at least 1")
    chunks: list[list[tuple[int, list[int]]]] = []
    current: list[tuple[int, list[int]]] = []
    room = max_copies
    for layer in layers:
        columns = list(range(n_columns))
        while columns:
            take, columns = columns[:room], columns[room:]
            current.append((layer, take))
            room -= len(take)
            if room == 0:
                chunks.append(current)
                current, room = [], max_copies
    if current:
        chunks.append(current)
    return chunks
