"""What every circuit verb checks first, and the equal-length batches it runs over.

Edges are scored and patched position by position, so each example's clean and corrupt texts
must have the same number of tokens (as in IOI with single-token names). Examples of different
lengths are batched separately, so no padding enters any run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import PromptPairs
from ..errors import InputError
from ..interventions.metrics import Metric, as_metric
from ..validate import as_int, check_model
from .graph import ComponentGraph, check_family


@dataclass(frozen=True)
class Batch:
    """Rows ``examples`` (B,) of the dataset: clean and corrupt ids (B, P)."""

    examples: np.ndarray
    clean: torch.Tensor
    corrupt: torch.Tensor


@dataclass(frozen=True)
class Prepared:
    """A checked circuit job: the model, its graph, the bound metric and the batches."""

    model: Any
    graph: ComponentGraph
    metric: Any
    batches: list[Batch]
    n: int

    def metric_of(self, batch: Batch, clean_logits: torch.Tensor) -> Any:
        """``logits (B, vocab) -> (B,)`` for this batch's examples."""
        rows = torch.as_tensor(batch.examples)
        return lambda logits: self.metric(logits, clean_logits, rows)

    def rows(self) -> Iterator[Batch]:
        yield from self.batches


def prepare(model: Any, pairs: Any, verb: str, *, metric: Metric | Any = None, batch_size: Any = 8) -> Prepared:
    """Check ``model`` and ``pairs`` for ``verb`` and cut the dataset into equal-length batches."""
    model = check_model(model, verb)
    if not isinstance(pairs, PromptPairs):
        raise InputError(f"{verb} needs prompt pairs (mechscope.datasets.pairs(...) or a generator such as "
                         f"mechscope.datasets.ioi(...)), got {type(pairs).__name__}.")
    size = as_int(batch_size, "batch_size")
    if size < 1:
        raise InputError(f"batch_size must be at least 1, got {size}.")
    if model.remote:
        raise InputError(f"{verb} runs locally: it needs gradients and per-edge writes in one process "
                         "(load the model without remote=...).")
    check_family(model)
    bound = pairs.metric(model) if metric is None else as_metric(metric, model)
    tok = pairs.tokenize(model)
    for i, (c, k) in enumerate(zip(tok.clean_ids, tok.corrupt_ids, strict=True)):
        if len(c) != len(k):
            raise InputError(f"example {i} has {len(c)} clean and {len(k)} corrupt tokens: edges are patched "
                             "position by position, so each pair needs the same token length "
                             "(pick names or words that are one token each).")
    lengths = np.array([len(c) for c in tok.clean_ids])
    batches = []
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        for start in range(0, len(idx), size):
            rows = idx[start:start + size]
            batches.append(Batch(rows, torch.tensor([tok.clean_ids[i] for i in rows]),
                                 torch.tensor([tok.corrupt_ids[i] for i in rows])))
    return Prepared(model, ComponentGraph.of(model), bound, batches, len(pairs))


def embeddings(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """The embedding module's output for ``ids`` (B, P, d)."""
    with torch.no_grad():
        return model.hf_module_at(model.adapter.embed_path)(ids)
