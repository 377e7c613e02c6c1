"""Rows for `mechscope.sae.train`, streamed from an `ActivationStore`.

Memory: one shard (``collect``'s default is ~64 MB) is in memory at a time, never the whole
store. Each epoch visits the shards in an order drawn from ``(seed, epoch)`` and permutes the
rows of each shard with the same generator; rows left over at a shard's end carry into the next
shard's batches, and the epoch's last incomplete batch is dropped (every batch has
``batch_size`` rows, so a step means the same everywhere). So the shuffle is as good as a shard
is large: rows from two shards meet only across a boundary (a store in memory is one shard,
shuffled fully). The order depends only on the seed, the epoch and the store, so a resumed run
replays it exactly. Rows at position 0 (each text's first token, an attention-sink outlier)
are left out unless ``keep_first``.

>>> import mechscope
>>> from mechscope.analysis.collect import collect
>>> store = collect(mechscope.tiny_model("llama"), ["a b c d", "e f g"], layers=[0], progress=False)
>>> rows = Rows(store, "resid.0", "resid.0", keep_first=False)
>>> rows.n_rows == int((store.position != 0).sum()), len(list(rows.epoch(2, seed=0, epoch=0))) == rows.n_rows // 2
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..analysis.store import ActivationStore
from ..errors import InputError


class Rows:
    """The (x, y) rows of one store: input key ``key_in``, target key ``key_out`` (equal for a
    sparse autoencoder), as float32, shard by shard."""

    def __init__(self, store: ActivationStore, key_in: str, key_out: str, *, keep_first: bool) -> None:
        self.store = store
        self.key_in, self.key_out = key_in, key_out
        self.keep_first = keep_first
        if store.memory is not None:
            self.sizes = [store.n_rows]
        else:
            self.sizes = [int(s["rows"]) for s in store.manifest["shards"]]
        position = store.position
        self.keep = np.ones(len(position), dtype=bool) if keep_first else position != 0
        self.n_rows = int(self.keep.sum())

    @property
    def n_shards(self) -> int:
        return len(self.sizes)

    def shard(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shard ``i``'s kept rows: x, y (float32) and their row numbers in the store."""
        start = sum(self.sizes[:i])
        rows = np.arange(start, start + self.sizes[i])
        keep = self.keep[start:start + self.sizes[i]]
        if self.store.memory is not None:
            x, y = self.store.memory[self.key_in], self.store.memory[self.key_out]
        else:
            from safetensors import safe_open

            assert self.store.directory is not None
            path = self.store.directory / self.store.manifest["shards"][i]["file"]
            with safe_open(str(path), framework="numpy") as f:
                x = f.get_tensor(self.key_in)
                y = x if self.key_out == self.key_in else f.get_tensor(self.key_out)
        same = y is x
        x = np.asarray(x[keep], dtype=np.float32)
        return x, (x if same else np.asarray(y[keep], dtype=np.float32)), rows[keep]

    def check_and_scale(self) -> tuple[float, float]:
        """One pass over every shard: `InputError` naming the first non-finite row; the scales
        ``sqrt(E||x||^2 / d_in)`` of the inputs and the targets."""
        sums = [0.0, 0.0]
        for i in range(self.n_shards):
            x, y, rows = self.shard(i)
            for arr, key in ((x, self.key_in), (y, self.key_out)):
                bad = ~np.isfinite(arr).all(axis=1)
                if bad.any():
                    row = int(rows[np.argmax(bad)])
                    raise InputError(
                        f"the store's {key} activations hold NaN or infinite values ({int(bad.sum())} rows "
                        f"in shard {i}; first at row {row}: example {int(self.store.example[row])}, "
                        f"position {int(self.store.position[row])}). Collect again (dtype='float32' if "
                        "float16 overflowed) or leave those texts out.")
            sums[0] += float(np.square(x, dtype=np.float64).sum())
            sums[1] += float(np.square(y, dtype=np.float64).sum())
            if y is x:
                sums[1] = sums[0]
        n = max(self.n_rows, 1)
        scales = []
        for total, width in ((sums[0], self.store.width(self.key_in.rsplit(".", 1)[0])),
                             (sums[1], self.store.width(self.key_out.rsplit(".", 1)[0]))):
            value = float(np.sqrt(total / n / width))
            scales.append(value if value > 0 else 1.0)
        return scales[0], scales[1]

    def batches_per_epoch(self, batch_size: int) -> int:
        return self.n_rows // batch_size

    def epoch(self, batch_size: int, *, seed: int, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's (x, y) batches of ``batch_size`` rows, in the order ``(seed, epoch)`` gives."""
        rng = np.random.default_rng([int(seed), int(epoch)])
        order = rng.permutation(self.n_shards)
        carry_x: np.ndarray | None = None
        carry_y: np.ndarray | None = None
        for i in order.tolist():
            x, y, _ = self.shard(i)
            perm = rng.permutation(len(x))
            same = y is x
            x = x[perm]
            y = x if same else y[perm]
            if carry_x is not None and carry_y is not None and len(carry_x):
                x_new = np.concatenate([carry_x, x])
                y = x_new if same else np.concatenate([carry_y, y])
                x = x_new
            n_full = len(x) // batch_size * batch_size
            for start in range(0, n_full, batch_size):
                yield x[start:start + batch_size], y[start:start + batch_size]
            carry_x, carry_y = x[n_full:], y[n_full:]


__all__ = ["Rows"]
