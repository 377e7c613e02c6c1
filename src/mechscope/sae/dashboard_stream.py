"""The running state behind `mechscope.sae.dashboard.dashboards`: one batch of activations at a
time, never a (tokens x d_sae) array over the whole corpus.

Per feature it keeps: the count of tokens where it fires (> 0), a histogram of log10 of its
positive activations on fixed edges (`HIST_EDGES`), its running maximum, a top-``n_top`` list
(value, global token index, the activations of the ``window`` tokens either side) merged batch
by batch with `torch.topk`, and per band of the running maximum (``n_quantiles`` equal
intervals of ``(0, max]``, SAEDashboard's "interval groups") a priority sample of
``per_quantile`` tokens: each (token, feature) pair gets a fixed pseudo-random key (a hash of
the two indices, so a resumed run draws the same), and a band keeps the tokens of smallest key
among those in it. When the running maximum grows, the kept samples are re-banded under the
new maximum and merged with the batch's candidates (exact when the maximum is reached in the
first batch; otherwise a band may miss tokens seen and dropped before the maximum moved).

>>> import numpy as np
>>> s = StreamState(n_features=2, n_top=2, n_quantiles=2, per_quantile=1, window=1)
>>> acts = np.array([[0.0, 1.0], [2.0, 0.5], [1.0, 0.0]], np.float32)
>>> s.update(acts, np.array([0, 0, 1]), 0)
>>> s.count.tolist(), s.top_index.tolist()
([2, 2], [[1, 2], [0, 1]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: Edges of the log10 activation histogram (50 bins, 10^-4 .. 10^4; values outside are clipped in).
HIST_EDGES = np.linspace(-4.0, 4.0, 51)

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)


def priority_keys(token: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random key in [0, 1) per (global token index, feature index) pair.

    >>> float(priority_keys(np.array([3]), np.array([5]))[0]) == float(priority_keys(np.array([3]), np.array([5]))[0])
    True
    """
    with np.errstate(over="ignore"):
        x = token.astype(np.uint64) * _M1 + feature.astype(np.uint64) * _M2 + np.uint64(1)
        x ^= x >> np.uint64(31)
        x *= _M2
        x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class StreamState:
    """What the pass keeps per feature (see the module docstring); `arrays` / `from_arrays` for
    a checkpoint."""

    FIELDS = ("count", "hist", "max", "top_value", "top_index", "top_window", "q_value", "q_index", "q_key",
              "q_window")

    def __init__(self, n_features: int, n_top: int, n_quantiles: int, per_quantile: int, window: int) -> None:
        f, w = n_features, 2 * window + 1
        self.n_top, self.n_q, self.per_q, self.window = n_top, n_quantiles, per_quantile, window
        self.count = np.zeros(f, np.int64)
        self.hist = np.zeros((f, len(HIST_EDGES) - 1), np.int64)
        self.max = np.zeros(f, np.float32)
        self.top_value = np.full((f, n_top), -np.inf, np.float32)
        self.top_index = np.full((f, n_top), -1, np.int64)
        self.top_window = np.full((f, n_top, w), np.nan, np.float32)
        slots = n_quantiles * per_quantile
        self.q_value = np.zeros((f, slots), np.float32)
        self.q_index = np.full((f, slots), -1, np.int64)
        self.q_key = np.full((f, slots), np.inf, np.float64)
        self.q_window = np.full((f, slots, w), np.nan, np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as named numpy arrays (for safetensors)."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def load_arrays(self, arrays: dict[str, Any]) -> None:
        """Restore the state from `arrays`' output."""
        for name in self.FIELDS:
            setattr(self, name, np.asarray(arrays[name]).astype(getattr(self, name).dtype))

    def update(self, acts: np.ndarray, text_of: np.ndarray, start: int) -> None:
        """Add one batch: ``acts`` (tokens, features) of real tokens in corpus order, ``text_of``
        (tokens,) the text each belongs to, ``start`` the global index of its first token."""
        n = len(acts)
        if not n:
            return
        windows = self._window_index(text_of)
        active = acts > 0
        self.count += active.sum(0)
        self._histogram(acts, active)
        self.max = np.maximum(self.max, acts.max(0))
        self._top(acts, windows, start)
        self._bands(acts, active, windows, start)

    def _window_index(self, text_of: np.ndarray) -> np.ndarray:
        """(tokens, 2w+1) row index of each neighbour in the batch, -1 outside the token's text."""
        n = len(text_of)
        off = np.arange(-self.window, self.window + 1)
        idx = np.arange(n)[:, None] + off[None, :]
        clipped = np.clip(idx, 0, n - 1)
        ok = (idx >= 0) & (idx < n) & (text_of[clipped] == text_of[:, None])
        return np.where(ok, clipped, -1)

    def _gather(self, acts: np.ndarray, rows: np.ndarray, feats: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Activations of feature ``feats`` over the window of each token ``rows`` (NaN outside)."""
        w = windows[rows]
        out = acts[np.maximum(w, 0), feats[..., None]]
        return np.where(w >= 0, out, np.nan).astype(np.float32)

    def _histogram(self, acts: np.ndarray, active: np.ndarray) -> None:
        tok, feat = np.nonzero(active)
        if not len(tok):
            return
        nb = len(HIST_EDGES) - 1
        b = np.floor((np.log10(acts[tok, feat]) - HIST_EDGES[0]) / (HIST_EDGES[1] - HIST_EDGES[0]))
        b = np.clip(b, 0, nb - 1).astype(np.int64)
        self.hist += np.bincount(feat * nb + b, minlength=self.hist.size).reshape(self.hist.shape)

    def _top(self, acts: np.ndarray, windows: np.ndarray, start: int) -> None:
        k = min(self.n_top, len(acts))
        vals, rows = torch.topk(torch.from_numpy(acts.T), k, dim=1)
        rows_np = rows.numpy()
        feats = np.broadcast_to(np.arange(acts.shape[1])[:, None], rows_np.shape)
        win = self._gather(acts, rows_np, feats, windows)
        value = np.concatenate([self.top_value, vals.numpy()], axis=1)
        index = np.concatenate([self.top_index, rows_np + start], axis=1)
        # ties: the earlier token first (topk on value, then a stable order on the index)
        order = np.lexsort((index, -value), axis=1)[:, :self.n_top]
        self.top_value = np.take_along_axis(value, order, 1)
        self.top_index = np.take_along_axis(index, order, 1)
        self.top_window = np.take_along_axis(np.concatenate([self.top_window, win], 1), order[..., None], 1)

    def _band(self, value: np.ndarray, feat: np.ndarray) -> np.ndarray:
        m = self.max[feat]
        b = np.ceil(value / np.where(m > 0, m, 1) * self.n_q).astype(np.int64) - 1
        return np.clip(b, 0, self.n_q - 1)

    def _bands(self, acts: np.ndarray, active: np.ndarray, windows: np.ndarray, start: int) -> None:
        tok, feat = np.nonzero(active)
        key = priority_keys(tok + start, feat)
        group = feat * self.n_q + self._band(acts[tok, feat], feat)
        keep = _smallest_per_group(group, key, self.per_q)
        tok, feat, key = tok[keep], feat[keep], key[keep]
        cand_value = acts[tok, feat]
        cand_window = self._gather(acts, tok, feat, windows)
        f_old, s_old = np.nonzero(self.q_index >= 0)
        old_value = self.q_value[f_old, s_old]
        value = np.concatenate([old_value, cand_value])
        feats = np.concatenate([f_old, feat])
        index = np.concatenate([self.q_index[f_old, s_old], tok + start])
        keys = np.concatenate([self.q_key[f_old, s_old], key])
        window = np.concatenate([self.q_window[f_old, s_old], cand_window])
        band = self._band(value, feats)
        keep = _smallest_per_group(feats * self.n_q + band, keys, self.per_q)
        self.q_index.fill(-1)
        self.q_key.fill(np.inf)
        self.q_value.fill(0)
        self.q_window.fill(np.nan)
        feats, band, keep_keys = feats[keep], band[keep], keys[keep]
        group = feats * self.n_q + band
        slot = band * self.per_q + _rank_in_group(group, keep_keys)
        self.q_value[feats, slot] = value[keep]
        self.q_index[feats, slot] = index[keep]
        self.q_key[feats, slot] = keep_keys
        self.q_window[feats, slot] = window[keep]


def _smallest_per_group(group: np.ndarray, key: np.ndarray, p: int) -> np.ndarray:
    """Indices of the ``p`` smallest keys of each group."""
    if not len(group):
        return np.zeros(0, np.int64)
    order = np.lexsort((key, group))
    g = group[order]
    first = np.r_[0, np.nonzero(np.diff(g))[0] + 1]
    rank = np.arange(len(g)) - np.repeat(first, np.diff(np.r_[first, len(g)]))
    return order[rank < p]


def _rank_in_group(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each element's rank by key within its group."""
    order = np.lexsort((key, group))
    g = group[order]
    first = np.r_[0, np.nonzero(np.diff(g))[0] + 1] if len(g) else np.zeros(0, np.int64)
    rank = np.empty(len(g), np.int64)
    rank[order] = np.arange(len(g)) - np.repeat(first, np.diff(np.r_[first, len(g)]))
    return rank


__all__ = ["StreamState", "priority_keys", "HIST_EDGES"]
