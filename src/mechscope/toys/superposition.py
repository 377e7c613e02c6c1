"""`superposition`: the ReLU output toy model of Elhage et al. (2022), swept over sparsity.

The model maps ``n_features`` sparse inputs through ``n_hidden`` < ``n_features`` dimensions
and back, ``x' = ReLU(W^T W x + b)`` with ``W`` (n_hidden, n_features), and is trained on the
importance-weighted squared error ``mean_batch mean_i I_i (x_i - x'_i)^2`` (the published
notebook's loss), importance ``I_i = importance_decay ** i``. Each feature is present with
probability ``1 - S`` (S the *sparsity*) with a value uniform in [0, 1], independently.

Every (sparsity, seed) pair is one model; all of them train together as one batch of models
(``torch.bmm``), each with its own Adam state, so they do not interact. A seed fixes the
initial ``W`` (Xavier normal, ``b = 0``) and the data stream; the same seed gives the same
initial weights and the same random numbers at every sparsity (a feature is present where one
shared uniform draw is below ``1 - S``), so models across sparsity differ only by sparsity,
and a model does not depend on which other sparsities or seeds share the sweep.

What the result measures per feature ``i`` (`feature_geometry`), with ``W_i`` column ``i`` and
``Ŵ_i = W_i / ||W_i||``: its norm ``||W_i||`` (~1 represented, ~0 dropped), its
*superposition* ``sum_{j != i} (Ŵ_i . W_j)^2`` (0 when it has a dimension of its own) and its
*dimensionality* ``D_i = ||W_i||^2 / sum_j (Ŵ_i . W_j)^2`` (1: a dedicated dimension;
1/2: an antipodal pair; 2/5: a pentagon; ~0: dropped; NaN only for an exactly zero column).

Measured here (the defaults: n = 20, m = 5, decay 0.7, 3 seeds, 10,000 steps, batch 1024,
lr 1e-3; benchmarks/superposition.py, 200 s on 2 cores; features with norm > 0.5 per seed):

- phase change: S=0: [5, 5, 5] features, each D = 1.00 (dedicated), the rest norm ~0;
  S=0.5: [5, 5, 6] (superposition starts in one seed, mean D of the represented 0.83..1.0);
  S=0.7: [7, 8, 7], D 0.62..0.71; S=0.9: [9, 9, 9], D 0.56; S=0.99: [12, 11, 13], D 0.38..0.44;
  S=0.999: [13, 13, 13], D 0.37. ``dims_per_feature`` falls from 1.0 to 0.33. So the change
  from ~m dedicated features to superposition sits between S=0.5 and S=0.7 here.
- antipodal pair (n=2, m=1, uniform importance): for S >= 0.5 seeds 0 and 2 give
  W_1 = -W_2 (D = 0.50 each); seed 1 stays at every sparsity in a local minimum with W_2 ~ +0.4
  (D 0.86 / 0.14, higher loss). At S=0 one feature is kept (D ~0.97 / 0.03 in seed 0).
  Over 20 seeds at S=0.99 only 10 (50%) find the pair; the others stay stuck.
- pentagon (n=5, m=2, uniform importance): S=0.7: two antipodal pairs and one dropped feature
  (all seeds); S=0.8 to 0.99: five features at norm 1.03..1.17, D = 0.400 each (seeds 0..2).
  Over 20 seeds the pentagon forms in 35% at S=0.8 and 90% at S=0.9; the others keep two
  antipodal pairs and a half-dropped fifth feature, at a higher loss (0.0075 vs 0.0052).
  At S=0 the five features share the plane without a clean structure (a nearly flat loss: any
  plane is about as good with equal importances).

>>> res = superposition(n_features=4, n_hidden=2, sparsities=(0.0, 0.9), seeds=(0, 1),
...                     steps=20, batch=16, progress_bar=False)
>>> res.W.shape, res.norms.shape, res.loss.shape
((2, 2, 2, 4), (2, 2, 4), (2, 2))
>>> frame = res.to_pandas()
>>> len(frame), list(frame.columns[:4])
(16, ['sparsity', 'seed', 'feature', 'importance'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..progress import progress
from ..stats import Summary, summarize
from ..validate import check_positive

#: Sparsities swept by default: dense to 1 feature in 1,000 present.
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)

_MEASURES = ("norms", "superposition", "dimensionality", "loss", "dims_per_feature")


@dataclass(frozen=True)
class SuperpositionResult:
    """Trained toy models, sparsity first, seeds second (``S`` sparsities, ``K`` seeds).

    ``W`` (S, K, n_hidden, n_features), ``b`` (S, K, n_features); per feature ``norms``,
    ``superposition``, ``dimensionality`` (S, K, n_features); ``loss`` (S, K) on a fresh
    evaluation batch; ``dims_per_feature`` (S, K) is ``n_hidden / ||W||_F^2`` (the paper's
    "dimensions per feature"); ``importance`` (n_features,). `summary` gives the mean over seeds
    with a bootstrap interval.

    >>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0,), seeds=(0, 1, 2),
    ...                     steps=10, batch=8, progress_bar=False)
    >>> s = res.summary("norms")
    >>> s.mean.shape, s.n
    ((1, 3), 3)
    >>> res.n_features, res.n_hidden, res.represented().shape
    (3, 2, (1, 3))
    """

    sparsities: np.ndarray
    seeds: list[int]
    importance: np.ndarray
    W: np.ndarray
    b: np.ndarray
    norms: np.ndarray
    superposition: np.ndarray
    dimensionality: np.ndarray
    loss: np.ndarray
    dims_per_feature: np.ndarray
    steps: int
    batch: int
    lr: float

    @property
    def n_features(self) -> int:
        """Number of input features (n)."""
        return int(self.W.shape[3])

    @property
    def n_hidden(self) -> int:
        """Number of hidden dimensions (m)."""
        return int(self.W.shape[2])

    def gram(self) -> np.ndarray:
        """``W^T W`` per model, (S, K, n_features, n_features).

        >>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0,), seeds=(0,),
        ...                     steps=2, batch=4, progress_bar=False)
        >>> res.gram().shape
        (1, 1, 3, 3)
        """
        return np.einsum("skhi,skhj->skij", self.W, self.W)

    def summary(self, measure: str) -> Summary:
        """Mean over seeds with a bootstrap interval of ``measure`` (one of ``norms``,
        ``superposition``, ``dimensionality``, ``loss``, ``dims_per_feature``); arrays shaped
        like one seed's values, e.g. (S, n_features).

        >>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0, 0.5), seeds=(0, 1),
        ...                     steps=2, batch=4, progress_bar=False)
        >>> res.summary("loss").mean.shape
        (2,)
        """
        if measure not in _MEASURES:
            raise InputError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}.")
        return summarize(np.moveaxis(np.asarray(getattr(self, measure)), 1, 0))

    def represented(self, threshold: float = 0.5) -> np.ndarray:
        """How many seeds represent each feature (norm > ``threshold``), (S, n_features).

        >>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0,), seeds=(0,),
        ...                     steps=2, batch=4, progress_bar=False)
        >>> int(res.represented(threshold=0.0).sum())
        3
        """
        return (self.norms > threshold).sum(axis=1)

    def to_pandas(self):  # noqa: ANN201
        """One row per (sparsity, seed, feature): importance, norm, superposition,
        dimensionality, bias and the model's loss.

        >>> res = superposition(n_features=2, n_hidden=1, sparsities=(0.9,), seeds=(0,),
        ...                     steps=2, batch=4, progress_bar=False)
        >>> frame = res.to_pandas()
        >>> frame["sparsity"].tolist(), frame[["seed", "feature"]].values.tolist()
        ([0.9, 0.9], [[0, 0], [0, 1]])
        """
        import pandas as pd

        s, k, n = self.norms.shape
        grid = np.meshgrid(np.arange(s), np.arange(k), np.arange(n), indexing="ij")
        si, ki, fi = (g.ravel() for g in grid)
        return pd.DataFrame({
            "sparsity": self.sparsities[si], "seed": np.asarray(self.seeds)[ki], "feature": fi,
            "importance": self.importance[fi], "norm": self.norms.ravel(),
            "superposition": self.superposition.ravel(),
            "dimensionality": self.dimensionality.ravel(), "bias": self.b.ravel(),
            "loss": self.loss[si, ki],
        })

    def show(self, **kwargs: Any):  # noqa: ANN201
        """`Superposition` widget: W^T W, per-feature norms and the phase diagram.

        >>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0, 0.9), seeds=(0,),
        ...                     steps=2, batch=4, progress_bar=False)
        >>> res.show().sparsity_index
        0
        """
        from ..widgets.superposition import Superposition

        return Superposition(self, **kwargs)


def feature_geometry(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(norms, superposition, dimensionality) per feature of ``W`` (..., n_hidden, n_features).

    >>> W = np.array([[1.0, -1.0, 0.0]])          # an antipodal pair and a dropped feature
    >>> norms, sup, dim = feature_geometry(W)
    >>> norms.tolist(), sup.tolist(), dim[:2].tolist(), bool(np.isnan(dim[2]))
    ([1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5], True)
    """
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=-2)
    unit = W / np.where(norms > 0, norms, 1.0)[..., None, :]
    overlap = np.einsum("...hi,...hj->...ij", unit, W) ** 2     # (Ŵ_i . W_j)^2, rows i
    total = overlap.sum(axis=-1)
    sup = total - np.diagonal(overlap, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dim = np.where(total > 0, norms ** 2 / np.where(total > 0, total, 1.0), np.nan)
    return norms, sup, dim


def _check(n_features: Any, n_hidden: Any, importance_decay: Any, sparsities: Any,
           seeds: Any, steps: Any, batch: Any, lr: Any) -> tuple[np.ndarray, list[int]]:
    for name, value in (("n_features", n_features), ("n_hidden", n_hidden), ("steps", steps),
                        ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(f"{name} must be a positive int, got {value!r}.")
    check_positive(importance_decay, "importance_decay")
    check_positive(lr, "lr")
    sp = np.asarray(sparsities, dtype=np.float64).ravel() if isinstance(sparsities, Sequence | np.ndarray) else None
    if sp is None or sp.size == 0 or not np.all((sp >= 0) & (sp < 1)):
        raise InputError(f"sparsities must be a non-empty list of numbers in [0, 1), got {sparsities!r}.")
    if not isinstance(seeds, Sequence) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be a non-empty list of distinct ints >= 0, got {seeds!r}.")
    return sp, [int(s) for s in seeds]


def _draw(gens: list[torch.Generator], present: torch.Tensor, batch: int, n: int) -> torch.Tensor:
    """(S*K, batch, n) features: per seed one value draw and one presence draw shared by all
    sparsities (``present``: (S, 1, 1, 1) probabilities 1 - S)."""
    vals = torch.stack([torch.rand(batch, n, generator=g) for g in gens])     # (K, B, n)
    keep = torch.stack([torch.rand(batch, n, generator=g) for g in gens])
    x = torch.where(keep[None] < present, vals[None], 0.0)                   # (S, K, B, n)
    return x.reshape(-1, batch, n)


def superposition(n_features: int = 20, n_hidden: int = 5, importance_decay: float = 0.7,
                  sparsities: Sequence[float] = SPARSITIES, seeds: Sequence[int] = (0, 1, 2),
                  steps: int = 10_000, batch: int = 1024, lr: float = 1e-3, *,
                  eval_batch: int = 8192, progress_bar: bool = True) -> SuperpositionResult:
    """Train the ReLU output toy model at every sparsity x seed on CPU (see module docstring).

    ``sparsities``: S values in [0, 1) (probability a feature is absent); ``seeds``: distinct
    ints; ``steps`` Adam steps of ``batch`` samples at learning rate ``lr``; the loss is then
    measured on ``eval_batch`` fresh samples. Deterministic for given arguments.

    >>> res = superposition(n_features=5, n_hidden=2, importance_decay=1.0, sparsities=(0.0,),
    ...                     seeds=(0,), steps=300, batch=64, progress_bar=False)
    >>> int(res.represented()[0, 0] <= 5), res.importance.tolist()
    (1, [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    sp, seed_list = _check(n_features, n_hidden, importance_decay, sparsities, seeds, steps,
                           batch, lr)
    n, m, n_sp, n_seed = int(n_features), int(n_hidden), len(sp), len(seed_list)
    importance = torch.tensor(float(importance_decay)) ** torch.arange(n, dtype=torch.float32)
    inits = []
    for s in seed_list:
        w = torch.empty(m, n)
        torch.nn.init.xavier_normal_(w, generator=torch.Generator().manual_seed(s))
        inits.append(w)
    W = torch.stack(inits)[None].expand(n_sp, -1, -1, -1).reshape(-1, m, n).clone().requires_grad_()
    b = torch.zeros(n_sp * n_seed, 1, n, requires_grad=True)
    present = torch.tensor(1.0 - sp, dtype=torch.float32).reshape(-1, 1, 1, 1)
    gens = [torch.Generator().manual_seed(10_000 + s) for s in seed_list]
    opt = torch.optim.Adam([W, b], lr=lr)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        hidden = torch.bmm(x, W.transpose(1, 2))                 # (models, B, m)
        out = torch.relu(torch.bmm(hidden, W) + b)
        return (importance * (x - out) ** 2).mean(dim=(1, 2))    # (models,)

    for _ in progress(range(steps), desc="superposition", unit="step", enabled=progress_bar):
        opt.zero_grad(set_to_none=True)
        loss_of(_draw(gens, present, batch, n)).sum().backward()
        opt.step()
    with torch.no_grad():
        final = loss_of(_draw(gens, present, eval_batch, n)).reshape(n_sp, n_seed).numpy()
    Wn = W.detach().reshape(n_sp, n_seed, m, n).numpy().astype(np.float64)
    norms, sup, dim = feature_geometry(Wn)
    return SuperpositionResult(
        sparsities=sp, seeds=seed_list, importance=importance.numpy().astype(np.float64),
        W=Wn.astype(np.float32), b=b.detach().reshape(n_sp, n_seed, n).numpy(),
        norms=norms.astype(np.float32), superposition=sup.astype(np.float32),
        dimensionality=dim.astype(np.float32), loss=final.astype(np.float64),
        dims_per_feature=(m / (Wn ** 2).sum(axis=(2, 3))).astype(np.float32),
        steps=int(steps), batch=int(batch), lr=float(lr))
