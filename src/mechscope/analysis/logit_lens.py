"""`logit_lens`: decode every layer's residual stream with the final norm and unembedding.

Top-k tokens (and an optional target token's probability and rank) are computed inside the
trace, layer by layer, in chunks of positions, so a long prompt never materialises a
layers x positions x vocab array: only (layers, positions, k) leaves the model.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> lens = mechscope.logit_lens(model, "hello world", top_k=3, target=" the")
>>> lens.top_ids.shape == (model.n_layers, len(lens.tokens), 3)
True
>>> bool((lens.target_rank >= 0).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ..datasets.pairs import is_dataset
from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..validate import check_model, check_top_k

if TYPE_CHECKING:
    from .over_dataset import DatasetReading

#: Positions decoded at once per layer (bounds the transient positions x vocab block).
CHUNK = 64


@dataclass(frozen=True)
class LogitLensResult:
    """Per (layer, position): the top-k next-token predictions read off the residual stream.

    ``top_ids``/``top_probs``/``top_tokens``: (layers, positions, k). With a target token,
    ``target_prob`` and ``target_rank`` (0 = top-1): (layers, positions).

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("llama")
    >>> lens = mechscope.logit_lens(model, "The cat sat", top_k=3, target=" the")
    >>> lens.target_prob.shape == lens.target_rank.shape == (model.n_layers, len(lens.tokens))
    True
    >>> bool((np.diff(lens.top_probs, axis=-1) <= 0).all())        # most likely first
    True
    >>> list(lens.to_pandas().columns)
    ['layer', 'position', 'input_token', 'rank', 'token', 'token_id', 'prob']
    """

    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: np.ndarray
    tokens: list[str]
    layers: list[int]
    prompt: str
    model_name: str
    target: str | None = None
    target_id: int | None = None
    target_prob: np.ndarray | None = None
    target_rank: np.ndarray | None = None

    def to_pandas(self):  # noqa: ANN201
        """Long format: one row per (layer, position, rank)."""
        import pandas as pd

        n_layers, n_pos, k = self.top_ids.shape
        layer, pos, rank = np.meshgrid(self.layers, np.arange(n_pos), np.arange(k), indexing="ij")
        frame = pd.DataFrame({
            "layer": layer.ravel(), "position": pos.ravel(),
            "input_token": np.asarray(self.tokens, dtype=object)[pos.ravel()],
            "rank": rank.ravel(), "token": self.top_tokens.ravel(),
            "token_id": self.top_ids.ravel(), "prob": self.top_probs.ravel(),
        })
        return frame

    def show(self, **kwargs):  # noqa: ANN201
        """`LogitLens` widget: each cell's top-1 token, coloured by probability (or the target's)."""
        from ..widgets.logit_lens import LogitLens

        return LogitLens(self, **kwargs)


def logit_lens(model: Model, prompt: str | Any, *, top_k: int = 5, target: str | int | None = None,
               layers: list[int] | None = None,
               roles: list[str] | None = None) -> LogitLensResult | DatasetReading:
    """Apply the final norm and unembedding to each layer's residual output (block output).

    ``layers``: an int or a list (default all; negative count from the end; see
    `mechscope.validate`); ``top_k``: 1..100 top tokens per cell; ``target``: a single token
    whose probability and rank are kept per cell. Returns a `LogitLensResult`:
    ``top_ids[layer, position, rank]``, shape ``(n_layers, n_positions, top_k)``.

    With a dataset (`mechscope.datasets`, or a list of texts): the lens probability of
    ``target`` (default for a `PromptPairs`: each example's answer) at each example's
    ``roles``, in padded batches: a `DatasetReading` (n, layers, roles) with mean and interval.

    At the last layer the lens is the model's own output (Hugging Face's logits):

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> lens = mechscope.logit_lens(model, "The cat sat", top_k=3)
    >>> logits = model.hf(model.to_tokens("The cat sat")).logits[0]      # (positions, vocab)
    >>> bool((lens.top_ids[-1, :, 0] == logits.argmax(-1).numpy()).all())
    True
    """
    check_model(model, "logit_lens")
    top_k = check_top_k(top_k, model.vocab_size)
    chosen = model.check_layers(layers)
    if is_dataset(prompt):
        from .over_dataset import logit_lens_over

        return logit_lens_over(model, prompt, layers=chosen, target=target, roles=roles)
    if roles is not None:
        raise InputError("roles= is for a dataset (mechscope.datasets); one prompt has positions.")
    prompt = cast(str, prompt)  # bytes are decoded (and checked) by to_tokens
    target_id = model.to_single_token(target) if target is not None else None
    ids = model.to_tokens(prompt)
    n = int(ids.shape[1])
    tokens = model.decode_tokens(ids)
    norm = model.envoy_at(model.adapter.final_norm_path)
    unembed = model.envoy_at(model.adapter.unembed_path)
    refs = [model.at("resid", layer) for layer in chosen]

    with model.trace(ids):
        per_layer = []
        for ref in refs:
            resid = ref.read()
            idx_chunks, prob_chunks, tprob_chunks, trank_chunks = [], [], [], []
            for start in range(0, n, CHUNK):
                logits = unembed(norm(resid[:, start:start + CHUNK])).float()[0]
                probs = torch.softmax(logits, dim=-1)
                top = torch.topk(probs, top_k, dim=-1)
                idx_chunks.append(top.indices)
                prob_chunks.append(top.values)
                if target_id is not None:
                    tp = probs[:, target_id]
                    tprob_chunks.append(tp)
                    trank_chunks.append((probs > tp[:, None]).sum(-1))
            entry = [torch.cat(idx_chunks), torch.cat(prob_chunks)]
            if target_id is not None:
                entry += [torch.cat(tprob_chunks), torch.cat(trank_chunks)]
            per_layer.append(entry)
        saved = save(per_layer)

    top_ids = np.stack([e[0].cpu().numpy() for e in saved]).astype(np.int64)
    top_probs = np.stack([e[1].cpu().numpy() for e in saved]).astype(np.float32)
    vocab = {int(i): model.tokenizer.decode([int(i)]) for i in np.unique(top_ids)}
    top_tokens = np.vectorize(vocab.__getitem__, otypes=[object])(top_ids)
    target_prob = target_rank = None
    if target_id is not None:
        target_prob = np.stack([e[2].cpu().numpy() for e in saved]).astype(np.float32)
        target_rank = np.stack([e[3].cpu().numpy() for e in saved]).astype(np.int64)
    return LogitLensResult(
        top_ids=top_ids, top_probs=top_probs, top_tokens=top_tokens, tokens=tokens,
        layers=chosen, prompt=prompt, model_name=model.name,
        target=None if target is None else str(target), target_id=target_id,
        target_prob=target_prob, target_rank=target_rank,
    )
