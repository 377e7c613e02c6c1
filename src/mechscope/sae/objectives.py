"""Training objectives of `mechscope.sae.train`: one forward + loss per architecture.

Every objective takes the trainable tensors ``p`` (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``,
``log_threshold`` and ``W_skip`` where used), a normalised batch ``x`` (rows, d_in) and its
target ``y`` (rows, d_out; ``y is x`` for a sparse autoencoder) and answers a `Step`: the loss to
minimise and the numbers the trainer logs. ``mse`` is the squared error summed over the
output dimensions and averaged over rows (so with inputs scaled to ``E||x||^2 = d_in`` it is
``d_out`` times the fraction of variance unexplained).

- ``topk``: the ``k`` largest ReLU'd pre-activations per row (Gao et al. 2024). ``sparse=True``:
  decoded with `torch.nn.functional.embedding_bag` and the encoder's gradient taken as a sparse
  product over the kept (and AuxK) latents only; ``False``: dense matmuls throughout.
- ``batchtopk``: the ``k * rows`` largest over the whole batch (Bussmann et al. 2024); the
  smallest kept activation feeds a running threshold, so the dictionary is saved as JumpReLU.
- ``jumprelu``: ``pre * H(pre - theta)`` with straight-through gradients for ``theta`` through
  a rectangle kernel of width ``bandwidth`` and an L0 penalty (Rajamanoharan et al. 2024).
- ``relu``: ReLU with an L1 penalty weighted by decoder row norms (Anthropic, April 2024).

``topk`` and ``batchtopk`` add the AuxK loss (Gao et al. 2024): the ``k_aux`` largest
pre-activations among dead latents reconstruct the residual error ``y - y_hat``, weighted 1/32.

>>> import torch
>>> p = {"W_enc": torch.rand(4, 8), "b_enc": torch.zeros(8), "W_dec": torch.randn(8, 4),
...      "b_dec": torch.zeros(4)}
>>> x = torch.rand(5, 4)  # positive: every pre-activation is, so each row keeps k
>>> s = objective("topk", p, x, x, k=2, dead=torch.zeros(8, dtype=torch.bool), k_aux=4)
>>> s.l0, tuple(s.fired.shape)
(2.0, (8,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: Architectures `mechscope.sae.train` trains (``batchtopk`` is saved as ``jumprelu``).
TRAIN_ARCHITECTURES = ("topk", "batchtopk", "jumprelu", "relu")
#: Weight of the AuxK loss (Gao et al. 2024).
AUX_COEFFICIENT = 1.0 / 32.0


@dataclass
class Step:
    """One batch's loss (a scalar tensor with gradients) and what the trainer logs.

    >>> Step(torch.tensor(1.0), 1.0, 0.5, 3.0, 0.0, torch.zeros(2, dtype=torch.bool)).mse
    1.0
    """

    loss: torch.Tensor
    mse: float
    fvu: float
    l0: float
    aux_loss: float
    fired: torch.Tensor  # (d_sae,) bool: which latents fired in this batch
    min_kept: float | None = None  # batchtopk: smallest kept activation


def _skip(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | float:
    return x @ p["W_skip"] if "W_skip" in p else 0.0


def _fvu(err: torch.Tensor, y: torch.Tensor) -> float:
    total = (y - y.mean(dim=0)).pow(2).sum()
    return float(err.pow(2).sum() / total.clamp_min(1e-12))


def _aux(p: dict[str, torch.Tensor], pre: Any, err: torch.Tensor, dead: torch.Tensor,
         k_aux: int) -> torch.Tensor:
    """AuxK: the top ``k_aux`` dead latents reconstruct the residual ``err`` (detached)."""
    n_dead = int(dead.sum())
    if n_dead == 0 or k_aux < 1:
        return err.new_zeros(())
    k = min(k_aux, n_dead)
    dense = pre.dense if isinstance(pre, _SparsePre) else pre
    masked = torch.where(dead, dense.detach(), torch.full_like(dense, -torch.inf))
    indices = masked.topk(k, dim=-1, sorted=False).indices
    values = torch.relu(pre.gather(indices) if isinstance(pre, _SparsePre) else dense.gather(-1, indices))
    rec = torch.nn.functional.embedding_bag(indices, p["W_dec"], per_sample_weights=values, mode="sum")
    target = err.detach()
    denom = (target - target.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-12)
    loss = (rec - target).pow(2).sum(dim=-1).mean() / denom
    return torch.nan_to_num(loss, nan=0.0)


def _finish(p: dict[str, torch.Tensor], pre: Any, y: torch.Tensor, y_hat: torch.Tensor,
            extra: torch.Tensor, l0: float, fired: torch.Tensor, dead: torch.Tensor | None,
            k_aux: int, min_kept: float | None = None) -> Step:
    err = y - y_hat
    mse = err.pow(2).sum(dim=-1).mean()
    aux = _aux(p, pre, err, dead, k_aux) if dead is not None else err.new_zeros(())
    loss = mse + extra + AUX_COEFFICIENT * aux
    return Step(loss, float(mse.detach()), _fvu(err.detach(), y), l0, float(aux.detach()), fired, min_kept)


class _GatherPre(torch.autograd.Function):
    """``(x @ W_enc + b_enc).gather(-1, indices)`` from pre-activations computed without autograd,
    with the encoder's gradient as a sparse product: O(rows * m * d_in) instead of
    O(rows * d_sae * d_in) for m selected latents per row."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor, pre: torch.Tensor,
                indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, indices)
        ctx.d_sae = w_enc.shape[1]
        return pre.gather(-1, indices)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, indices = ctx.saved_tensors
        rows = torch.arange(len(x)).repeat_interleave(indices.shape[-1])
        g = torch.sparse_coo_tensor(torch.stack([indices.reshape(-1), rows]), grad.reshape(-1),
                                    (ctx.d_sae, len(x)), check_invariants=False).coalesce()
        grad_w = torch.sparse.mm(g, x).T
        grad_b = torch.zeros(ctx.d_sae, dtype=grad.dtype).index_add_(0, indices.reshape(-1), grad.reshape(-1))
        return None, grad_w, grad_b, None, None


class _SparsePre:
    """Pre-activations for topk with sparse gradients: ``gather(indices)`` gives the selected
    ones with autograd (main top-k and AuxK alike)."""

    def __init__(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> None:
        self.p, self.x = p, x
        with torch.no_grad():
            self.dense = x @ p["W_enc"] + p["b_enc"]

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        return _GatherPre.apply(self.x, self.p["W_enc"], self.p["b_enc"], self.dense, indices)


def _topk(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, k: int, dead: torch.Tensor,
          k_aux: int, sparse: bool = True, **_: Any) -> Step:
    if sparse:
        pre_s = _SparsePre(p, x)
        indices = torch.relu(pre_s.dense).topk(k, dim=-1, sorted=False).indices
        values = torch.relu(pre_s.gather(indices))
        y_hat = torch.nn.functional.embedding_bag(indices, p["W_dec"], per_sample_weights=values, mode="sum")
        y_hat = y_hat + p["b_dec"] + _skip(p, x)
        fired = torch.zeros(pre_s.dense.shape[-1], dtype=torch.bool)
        fired[indices[values.detach() > 0]] = True
        l0 = float((values.detach() > 0).sum(dim=-1).float().mean())
        return _finish(p, pre_s, y, y_hat, x.new_zeros(()), l0, fired, dead, k_aux)
    pre = x @ p["W_enc"] + p["b_enc"]
    values, indices = torch.relu(pre).topk(k, dim=-1, sorted=False)
    y_hat = torch.zeros_like(pre).scatter(-1, indices, values) @ p["W_dec"] + p["b_dec"] + _skip(p, x)
    fired = torch.zeros(pre.shape[-1], dtype=torch.bool)
    fired[indices[values.detach() > 0]] = True
    l0 = float((values.detach() > 0).sum(dim=-1).float().mean())
    return _finish(p, pre, y, y_hat, pre.new_zeros(()), l0, fired, dead, k_aux)


def _batchtopk(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, k: int, dead: torch.Tensor,
               k_aux: int, **_: Any) -> Step:
    pre = x @ p["W_enc"] + p["b_enc"]
    act = torch.relu(pre)
    flat = act.reshape(-1)
    values, indices = flat.topk(min(k * len(x), flat.numel()), sorted=False)
    f = torch.zeros_like(flat).scatter(0, indices, values).reshape(act.shape)
    y_hat = f @ p["W_dec"] + p["b_dec"] + _skip(p, x)
    kept = values.detach()
    positive = kept[kept > 0]
    min_kept = float(positive.min()) if len(positive) else None
    on = f.detach() > 0
    return _finish(p, pre, y, y_hat, pre.new_zeros(()), float(on.sum(dim=-1).float().mean()), on.any(dim=0),
                   dead, k_aux, min_kept)


class _Step(torch.autograd.Function):
    """``H(pre - theta)`` with a rectangle-kernel pseudo-derivative for ``theta`` only."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = ((pre - theta).abs() < eps / 2).to(pre.dtype) / eps
        return None, -(grad * kernel).sum(dim=0), None


class _JumpReLU(torch.autograd.Function):
    """``pre * H(pre - theta)``: the usual gradient for ``pre``, the kernel's for ``theta``."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        gate = (pre > theta).to(pre.dtype)
        kernel = ((pre - theta).abs() < eps / 2).to(pre.dtype) / eps
        return grad * gate, -(grad * theta * kernel).sum(dim=0), None


def _jumprelu(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, sparsity: float,
              bandwidth: float, **_: Any) -> Step:
    pre = torch.relu(x @ p["W_enc"] + p["b_enc"])
    theta = p["log_threshold"].exp()
    f = _JumpReLU.apply(pre, theta, bandwidth)
    y_hat = f @ p["W_dec"] + p["b_dec"] + _skip(p, x)
    l0_soft = _Step.apply(pre, theta, bandwidth).sum(dim=-1).mean()
    on = f.detach() > 0
    return _finish(p, pre, y, y_hat, sparsity * l0_soft, float(on.sum(dim=-1).float().mean()), on.any(dim=0),
                   None, 0)


def _relu(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, sparsity: float, **_: Any) -> Step:
    f = torch.relu(x @ p["W_enc"] + p["b_enc"])
    y_hat = f @ p["W_dec"] + p["b_dec"] + _skip(p, x)
    l1 = (f * p["W_dec"].norm(dim=1)).sum(dim=-1).mean()
    on = f.detach() > 0
    return _finish(p, f, y, y_hat, sparsity * l1, float(on.sum(dim=-1).float().mean()), on.any(dim=0), None, 0)


_OBJECTIVES: dict[str, Callable[..., Step]] = {"topk": _topk, "batchtopk": _batchtopk, "jumprelu": _jumprelu, "relu": _relu}


def objective(architecture: str, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              **options: Any) -> Step:
    """The loss and logged numbers of one batch for ``architecture`` (see the module docstring).

    Options: ``k``, ``dead`` (d_sae,) bool and ``k_aux`` (topk, batchtopk), ``sparse`` (topk:
    sparse decoding), ``sparsity`` (the L0 or L1 coefficient) and ``bandwidth`` (jumprelu).

    >>> import torch
    >>> p = {"W_enc": torch.eye(3), "b_enc": torch.zeros(3), "W_dec": torch.eye(3),
    ...      "b_dec": torch.zeros(3)}
    >>> round(objective("relu", p, torch.ones(2, 3), torch.ones(2, 3), sparsity=0.0).mse, 6)
    0.0
    """
    return _OBJECTIVES[architecture](p, x, y, **options)


def project_decoder_grad(w_dec: torch.Tensor) -> None:
    """Remove from ``w_dec.grad`` the component parallel to each (unit-norm) decoder row.

    >>> w = torch.nn.Parameter(torch.eye(2)); w.grad = torch.ones(2, 2)
    >>> project_decoder_grad(w); w.grad.tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    if w_dec.grad is None:
        return
    with torch.no_grad():
        dot = (w_dec.grad * w_dec).sum(dim=1, keepdim=True)
        w_dec.grad -= dot * w_dec


def renormalise_decoder(w_dec: torch.Tensor) -> None:
    """Scale every decoder row back to unit norm (in place).

    >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]])); renormalise_decoder(w); w.tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    with torch.no_grad():
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def geometric_median(points: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """Weiszfeld's estimate of the geometric median of (n, d) points, from their mean.

    >>> geometric_median(torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]])).abs().max() < 0.1
    tensor(True)
    """
    guess = points.mean(dim=0)
    for _ in range(iterations):
        dist = (points - guess).norm(dim=1).clamp_min(1e-6)
        weights = 1.0 / dist
        guess = (weights[:, None] * points).sum(dim=0) / weights.sum()
    return guess


__all__ = ["TRAIN_ARCHITECTURES", "Step", "objective", "project_decoder_grad", "renormalise_decoder",
           "geometric_median"]
