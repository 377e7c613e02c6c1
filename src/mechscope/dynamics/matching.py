"""Matching dictionary features by decoder cosine: an optimal one-to-one assignment in numpy.

`assignment` solves the linear assignment problem (the Hungarian algorithm in its
shortest-augmenting-path form, Jonker-Volgenant style potentials: O(n^2 m) for n rows and m
columns, vectorised over the columns); `match_features` pairs the features of two dictionaries
so that the summed decoder cosine is largest, and calls a pair "matched" when its cosine reaches
``threshold``.

Why 0.7 by default: it is the cosine Paulo & Belrose (2025, "Sparse autoencoders trained on the
same data learn different features") use to call a latent shared between seeds, so the shares
measured here compare with their ~30% at 131k latents. It is well above what two random unit
vectors reach in high dimension (about 1 / sqrt(d)), but not in a tiny residual stream, where
the optimal assignment of random dictionaries can reach it: compare with the random baseline
of `mechscope.dynamics.feature_tracking.cross_seed_share`.

>>> import numpy as np
>>> dec = np.random.default_rng(0).normal(size=(6, 8))
>>> m = match_features(dec, dec[[2, 0, 1, 5, 4, 3]])
>>> m.pairs[:, 1].tolist(), bool(m.matched.all())
([1, 2, 0, 5, 4, 3], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

THRESHOLD = 0.7
BASELINES = ("anisotropic", "isotropic")

__all__ = ["THRESHOLD", "CrossSeedShare", "FeatureMatch", "assignment", "check_threshold", "cosine_matrix",
           "cross_seed_share", "match_features"]


def assignment(cost: Any) -> np.ndarray:
    """The column assigned to each row so the summed ``cost`` is smallest (one-to-one).

    ``cost``: (n, m) finite reals. Returns (min(n, m), 2) int pairs ``(row, col)`` by increasing
    row; with n > m every column gets a row and some rows stay unassigned.

    >>> assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]]).tolist()
    [[0, 1], [1, 0], [2, 2]]
    """
    a = np.asarray(cost, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise InputError(f"cost must be a non-empty 2-D matrix, got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise InputError("cost has NaN or infinite entries; assignment needs finite costs.")
    if a.shape[0] > a.shape[1]:
        flipped = assignment(a.T)[:, ::-1]
        return flipped[np.argsort(flipped[:, 0])].copy()
    col_of_row = _hungarian(a)
    return np.stack([np.arange(a.shape[0]), col_of_row], axis=1)


def _hungarian(a: np.ndarray) -> np.ndarray:
    """Shortest augmenting paths with row/column potentials u, v (n <= m); column per row."""
    n, m = a.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)    # p[j]: row (1-based) owning column j; column 0 is virtual
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = a[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            j1 = int(np.argmin(np.where(free, minv[1:], np.inf))) + 1
            delta = minv[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col = np.empty(n, dtype=np.int64)
    owned = np.nonzero(p[1:])[0]
    col[p[1:][owned] - 1] = owned
    return col


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float in (0, 1], or an `InputError` saying so.

    >>> check_threshold(0.7)
    0.7
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating) \
            or not 0 < float(threshold) <= 1:
        raise InputError(f"threshold is a decoder cosine in (0, 1] above which two features match "
                         f"(default {THRESHOLD}), got {threshold!r}.")
    return float(threshold)


def _decoder(dec: Any, name: str) -> np.ndarray:
    """(d_sae, d_in) float64 rows of unit norm, from an array, a tensor or an object with W_dec."""
    dec = getattr(dec, "W_dec", dec)
    if hasattr(dec, "detach"):
        dec = dec.detach().cpu().numpy()
    w = np.asarray(dec, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape or not np.isfinite(w).all():
        raise InputError(f"{name} must be a finite (d_sae, d_in) decoder matrix (or an SAE), got shape "
                         f"{w.shape}.")
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError(f"{name} has an all-zero decoder row; cosines are undefined for it.")
    return w / norms


def cosine_matrix(dec_a: Any, dec_b: Any) -> np.ndarray:
    """(d_sae_a, d_sae_b) cosines between the decoder rows of two dictionaries of one width d_in.

    >>> cosine_matrix([[1, 0], [0, 2]], [[3, 0]]).tolist()
    [[1.0], [0.0]]
    """
    a, b = _decoder(dec_a, "dec_a"), _decoder(dec_b, "dec_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"the decoders live in different spaces (d_in {a.shape[1]} vs {b.shape[1]}); "
                         "match dictionaries trained on the same site.")
    return a @ b.T


@dataclass(frozen=True)
class FeatureMatch:
    """The optimal one-to-one pairing of two dictionaries' features.

    ``pairs``: (n, 2) int ``(feature in a, feature in b)``, n = min of the widths, by feature of
    a; ``cosine``: (n,) their decoder cosines; ``matched``: (n,) ``cosine >= threshold``.

    >>> m = match_features([[1, 0], [0, 1]], [[0, 1], [0.6, 0.8]])
    >>> m.pairs.tolist(), m.cosine.round(2).tolist(), m.matched.tolist(), m.n_matched
    ([[0, 1], [1, 0]], [0.6, 1.0], [False, True], 1)
    """

    pairs: np.ndarray
    cosine: np.ndarray
    matched: np.ndarray
    threshold: float

    @property
    def n_matched(self) -> int:
        return int(self.matched.sum())

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per pair: ``a``, ``b``, ``cosine``, ``matched``."""
        import pandas as pd

        return pd.DataFrame({"a": self.pairs[:, 0], "b": self.pairs[:, 1], "cosine": self.cosine,
                             "matched": self.matched})

    def __repr__(self) -> str:
        return (f"FeatureMatch({self.n_matched}/{len(self.cosine)} pairs with cosine >= {self.threshold}, "
                f"mean cosine {float(self.cosine.mean()):.3f})")


def match_features(dec_a: Any, dec_b: Any, threshold: float = THRESHOLD) -> FeatureMatch:
    """Pair the features of two dictionaries one to one, maximising the summed decoder cosine.

    ``dec_a``, ``dec_b``: (d_sae_a, d_in) and (d_sae_b, d_in) decoders (arrays, tensors or
    `mechscope.sae.SAE` objects; rows are normalised here). ``threshold``: the cosine in (0, 1]
    from which a pair counts as matched. Returns a `FeatureMatch`.

    >>> import mechscope
    >>> from mechscope.sae.dictionary import SAE
    >>> m = match_features(SAE.random(8, 16, seed=0), SAE.random(8, 16, seed=0))
    >>> m.n_matched, round(float(m.cosine.min()), 6)
    (16, 1.0)
    """
    threshold = check_threshold(threshold)
    cos = cosine_matrix(dec_a, dec_b)
    pairs = assignment(-cos)
    c = cos[pairs[:, 0], pairs[:, 1]]
    return FeatureMatch(pairs, c, c >= threshold, threshold)


@dataclass(frozen=True)
class CrossSeedShare:
    """How many features dictionaries trained with different seeds share.

    ``share``: the fraction of seed 0's features matched (cosine at or above ``threshold`` in the
    optimal assignment) in every other seed; ``pair_share``: (n_seeds, n_seeds), row i's features
    matched in column j's dictionary; ``mean_cosine``: (n_seeds, n_seeds) mean assigned cosine;
    ``baseline``: (n_random,) the same ``share`` for random Gaussian dictionaries of the same
    shapes (what chance gives at this width and dimension; ``baseline_kind``: their rows'
    covariance, see `cross_seed_share`); ``seeds``: labels.

    >>> import numpy as np
    >>> dec = np.random.default_rng(0).normal(size=(16, 32))
    >>> r = cross_seed_share([dec, dec[::-1], dec[::2].repeat(2, 0)], n_random=4)
    >>> r.share, r.pair_share.shape, r.baseline.shape, bool(r.baseline_mean < 0.5)
    (0.5, (3, 3), (4,), True)
    """

    share: float
    pair_share: np.ndarray
    mean_cosine: np.ndarray
    baseline: np.ndarray
    threshold: float
    seeds: list[str]
    baseline_kind: str = "anisotropic"

    @property
    def baseline_mean(self) -> float:
        return float(self.baseline.mean()) if self.baseline.size else float("nan")

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per ordered pair of seeds: ``a``, ``b``, ``share``, ``mean_cosine``."""
        import pandas as pd

        n = len(self.seeds)
        return pd.DataFrame([{"a": self.seeds[i], "b": self.seeds[j], "share": float(self.pair_share[i, j]),
                              "mean_cosine": float(self.mean_cosine[i, j])}
                             for i in range(n) for j in range(n) if i != j])

    def show(self, title: str | None = None) -> Any:
        """A `mechscope.widgets.Heatmap` of ``pair_share``."""
        from ..widgets.heatmap import Heatmap

        return Heatmap(self.pair_share, row_labels=self.seeds, col_labels=self.seeds,
                       title=title or f"features shared across seeds (cos >= {self.threshold}); "
                                      f"random dictionaries: {self.baseline_mean:.2f}")

    def __repr__(self) -> str:
        return (f"CrossSeedShare({len(self.seeds)} seeds: {self.share:.3f} of seed {self.seeds[0]}'s features "
                f"in every other, {self.baseline_kind} random baseline {self.baseline_mean:.3f}, cos >= {self.threshold})")


def _shared_in_all(decs: list[np.ndarray], threshold: float) -> float:
    """Fraction of decs[0]'s features matched in every other decoder."""
    found = np.ones(len(decs[0]), dtype=bool)
    for other in decs[1:]:
        m = match_features(decs[0], other, threshold)
        hit = np.zeros(len(decs[0]), dtype=bool)
        hit[m.pairs[m.matched, 0]] = True
        found &= hit
    return float(found.mean())


def cross_seed_share(dicts: Any, *, run: int = 0, threshold: float = THRESHOLD, n_random: int = 20,
                     baseline: str = "anisotropic", seed: int = 0) -> CrossSeedShare:
    """The share of features found by every dictionary seed, against random dictionaries.

    ``dicts``: a sequence of two or more (d_sae, d_in) decoders (arrays, tensors, SAEs) or an
    (n_seeds, d_sae, d_in) array, seed 0 first; or a
    `mechscope.dynamics.feature_tracking.TrainingDictionaries` (its ``run``'s last checkpoint).
    ``n_random``: random dictionary sets for the baseline (``seed``: their generator), their rows
    Gaussian with the second moment of all the given decoder rows (``baseline="anisotropic"``:
    chance in the directions the dictionaries use, the harder null when activations are
    low-rank) or isotropic (``"isotropic"``). Returns a `CrossSeedShare`.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> dec = rng.normal(size=(32, 64))
    >>> r = cross_seed_share([dec, dec + 0.1 * rng.normal(size=dec.shape)], n_random=3)
    >>> r.share, float(r.pair_share[1, 0]), r.baseline.tolist()
    (1.0, 1.0, [0.0, 0.0, 0.0])
    """
    threshold = check_threshold(threshold)
    if hasattr(dicts, "final"):
        dicts = dicts.final(run)
    decs = [_decoder(d, f"dicts[{i}]") for i, d in enumerate(dicts)]
    if len(decs) < 2:
        raise InputError(f"cross_seed_share needs two or more dictionaries (one per seed), got {len(decs)}.")
    if len({d.shape for d in decs}) != 1:
        raise InputError(f"the dictionaries differ in shape {[d.shape for d in decs]}; compare one width.")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise InputError(f"n_random must be a non-negative int (0: no baseline), got {n_random!r}.")
    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {BASELINES}, got {baseline!r}.")
    n = len(decs)
    pair, cos = np.eye(n), np.ones((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                m = match_features(decs[i], decs[j], threshold)
                pair[i, j], cos[i, j] = m.n_matched / len(decs[i]), float(m.cosine.mean())
    draw = _random_rows(decs, baseline, np.random.default_rng(seed))
    chance = np.array([_shared_in_all([draw() for _ in range(n)], threshold) for _ in range(n_random)])
    return CrossSeedShare(_shared_in_all(decs, threshold), pair, cos, chance, threshold,
                          [str(i) for i in range(n)], baseline)


def _random_rows(decs: list[np.ndarray], baseline: str, rng: np.random.Generator) -> Any:
    """A function drawing one random (d_sae, d_in) dictionary for the baseline."""
    shape = decs[0].shape
    if baseline == "isotropic":
        return lambda: rng.normal(size=shape)
    rows = np.concatenate(decs)
    root = np.linalg.cholesky(rows.T @ rows / len(rows) + 1e-9 * np.eye(shape[1]))
    return lambda: rng.normal(size=shape) @ root.T
