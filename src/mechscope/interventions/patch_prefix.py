"""Exact prefix reuse for the patched traces of `mechscope.patch`.

Attention is causal, so every position of a patched copy before the first token where the
clean and corrupt texts differ (``d``) computes exactly what the corrupt run computes there: the
tokens agree, and a patch at such a position (clean and corrupt position equal) writes the clean
activation, which is the corrupt one. A patched trace therefore runs positions ``d..n-1`` only,
attending to the corrupt run's keys and values at positions ``< d``; those come from the clean
run (the same tokens up to ``d``), kept in a `DynamicCache` while it runs.

- `prefix_length`: ``d`` for a group: the first differing position of any of its examples, at most
  the first corrupt position patched from another clean position (role patching of texts of
  unequal lengths), at most ``n_corrupt - 1`` (the last position is always computed); 0 when
  the model runs remotely (the keys and values would travel with every request), uses an
  attention other than "sdpa" / "eager", or a sliding window shorter than the text.
- `Prefix`: the cached keys and values, and the inputs of the tail run: ids ``[:, d:]``,
  position ids ``d..n-1``, and an explicit additive causal mask of batch ONE, shape
  ``(1, 1, n - d, n)``. The batch grows mid-forward (copies are appended at each patched layer),
  so a mask built by the model for the G input rows would not broadcast; a batch-1 mask does,
  and a 4-D mask is used by every attention implementation as given. The extra
  ``logits_to_keep`` (the final position: all that is unembedded anyway) also makes nnsight pass
  the encoding to the model whole instead of splitting it per row.
- `_PrefixLayer`: a cache layer whose prefix is indexed per row: row ``r`` of the running batch
  belongs to example ``r % G``. It never grows: the tail's keys and values are only appended
  for the attention of this forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

_ENABLED = [True]


@contextmanager
def disabled() -> Iterator[None]:
    """Inside the block `mechscope.patch` runs every position of every copy (the path without
    prefix reuse; tests and benchmarks compare against it)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def _model_allows(model: Any, n_corrupt: int) -> bool:
    if model.remote is not False:
        return False
    config = model.hf.config
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    window = getattr(config, "sliding_window", None)
    return not (isinstance(window, int) and window < n_corrupt)


def prefix_length(model: Any, group: Any) -> int:
    """``d``, the positions every copy of ``group`` (a `PatchGroup`) shares with its corrupt run."""
    clean, corrupt = group.clean, group.corrupt
    n_corrupt = int(corrupt.shape[1])
    if not _ENABLED[-1] or not _model_allows(model, n_corrupt):
        return 0
    common = min(int(clean.shape[1]), n_corrupt)
    differs = clean[:, :common] != corrupt[:, :common]
    first = torch.where(differs.any(dim=1), differs.int().argmax(dim=1),
                        torch.full((differs.shape[0],), common))
    d = min(int(first.min()), n_corrupt - 1)
    moved = group.pos_clean != group.pos_corrupt
    if bool(moved.any()):
        d = min(d, int(group.pos_corrupt[moved].min()))
    return max(d, 0)


def idle_columns(group: Any, site: str, d: int) -> list[int]:
    """The position-site columns that patch, in every example, a position before ``d``: their
    cells are the corrupt metric exactly, and no copy is run for them."""
    if site == "heads" or d == 0:
        return []
    below = (group.pos_corrupt < d).all(dim=0)
    return [int(c) for c in torch.nonzero(below).flatten()]


class _PrefixLayer(DynamicLayer):
    """One layer's prefix keys / values (G, kv_heads, d, d_head), indexed per row (``r % G``)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values, self.is_initialized = keys, values, True
        self.device = keys.device

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keys is not None and self.values is not None
        g_count = int(self.keys.shape[0])
        batch = int(key_states.shape[0])
        if batch == g_count:
            keys, values = self.keys, self.values
        else:
            rows = torch.arange(batch, device=self.keys.device) % g_count
            keys, values = self.keys[rows], self.values[rows]
        return (torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2))


@dataclass(frozen=True)
class Prefix:
    """The first ``length`` positions' keys and values of a group, one (G, kv_heads, length,
    d_head) pair per layer."""

    length: int
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @staticmethod
    def from_cache(cache: DynamicCache, length: int) -> Prefix:
        """The first ``length`` positions of a cache filled by a run of the clean texts."""
        layers: list[Any] = list(cache.layers)
        keys = [layer.keys[:, :, :length].clone() for layer in layers]
        values = [layer.values[:, :, :length].clone() for layer in layers]
        return Prefix(length, keys, values)

    def trace_inputs(self, corrupt: torch.Tensor, dtype: torch.dtype) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the encoding, the forward keywords) of the tail run of ``corrupt`` (G, n)."""
        d, n = self.length, int(corrupt.shape[1])
        q = n - d
        mask = torch.zeros(1, 1, q, n, dtype=dtype)
        future = torch.ones(q, q, dtype=torch.bool).triu(1)
        mask[0, 0, :, d:].masked_fill_(future, torch.finfo(dtype).min)
        encoding = {"input_ids": corrupt[:, d:], "attention_mask": mask,
                    "position_ids": torch.arange(d, n)[None], "logits_to_keep": torch.tensor([q - 1])}
        cache = Cache(layers=[_PrefixLayer(k, v) for k, v in zip(self.keys, self.values, strict=True)])
        return encoding, {"cache": cache, "use_cache": True}
