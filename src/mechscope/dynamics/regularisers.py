"""Regularisers that act on a model's internals during `mechscope.dynamics.train`.

`selectivity_regulariser` is the class-selectivity regulariser of Leavitt & Morcos (2020,
"Selectivity considered harmful"): the training loss becomes
``task loss - alpha * mean selectivity index`` over the MLP neurons of one layer, the index
computed on each training batch (`batch_selectivity`). ``alpha < 0`` discourages class
selectivity, ``alpha > 0`` encourages it.

A unit's activation on an example is its mean over the example's token positions (the
analogue of the paper's spatial mean over a convolutional feature map). GELU and SiLU units
can be negative while the index needs non-negative activity, so, as in
`mechscope.selectivity`, activations are measured from the unit's floor: the lowest
per-example activation in the batch.

>>> import torch
>>> acts = torch.tensor([[[2.0, 1.0]], [[0.0, 1.0]]])   # (batch 2, positions 1, units 2)
>>> batch_selectivity(acts, torch.tensor([0, 1])).tolist()   # unit 0 fires for class 0 only
[1.0, 0.0]
>>> reg = selectivity_regulariser(layer=0, alpha=-1.0)
>>> float(reg.loss(acts, torch.tensor([0, 1])))              # -alpha * mean index
0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError

#: Where a regulariser can read activations.
SITES = ("neurons",)
EPS = 1e-7


def batch_selectivity(acts: torch.Tensor, labels: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Class-selectivity index of every unit on one batch, differentiable: shape (units,).

    ``acts``: (batch, positions, units) or (batch, units); ``labels``: (batch,) class ids.
    Per unit: ``a`` = per-example activation (mean over positions) minus its batch minimum;
    ``mu_c`` = mean of ``a`` over the examples of class ``c`` (classes absent from the batch
    are left out); index ``(mu_max - mu_rest) / (mu_max + mu_rest + eps)`` with ``mu_max`` the
    largest class mean and ``mu_rest`` the mean of the other classes' means. 0 means the same
    mean activation for every class, 1 activity for one class only. A batch of one class
    has no selectivity to measure: index 0.

    >>> acts = torch.tensor([[1.0, 3.0], [1.0, 1.0], [1.0, 1.0]])   # (batch 3, units 2)
    >>> [round(x, 3) for x in batch_selectivity(acts, torch.tensor([0, 1, 2])).tolist()]
    [0.0, 1.0]
    """
    if acts.ndim == 3:
        acts = acts.mean(dim=1)
    if acts.ndim != 2 or labels.shape != acts.shape[:1]:
        raise InputError(f"need acts (batch, [positions,] units) and labels (batch,); got "
                         f"{tuple(acts.shape)} and {tuple(labels.shape)}.")
    a = acts - acts.min(dim=0).values
    present = torch.unique(labels)
    if present.numel() < 2:
        return torch.zeros(acts.shape[1], dtype=acts.dtype)
    mu = torch.stack([a[labels == c].mean(dim=0) for c in present])  # (classes, units)
    mu_max = mu.max(dim=0).values
    mu_rest = (mu.sum(dim=0) - mu_max) / (mu.shape[0] - 1)
    return (mu_max - mu_rest) / (mu_max + mu_rest + eps)


def _blocks(hf: torch.nn.Module) -> Any:
    inner = getattr(hf, "model", None)
    inner = inner if inner is not None else getattr(hf, "transformer", None)
    blocks = getattr(inner, "layers", None)
    blocks = blocks if blocks is not None else getattr(inner, "h", None)
    if blocks is None:
        raise InputError(f"cannot find the layers of a {type(hf).__name__}; regularisers take "
                         "the Llama and GPT-2 models of mechscope.dynamics.build_model.")
    return blocks


def _down(block: torch.nn.Module) -> torch.nn.Module:
    """The MLP's output projection: its input is the neuron activations."""
    mlp: Any = block.mlp
    return mlp.down_proj if hasattr(mlp, "down_proj") else mlp.c_proj


@dataclass(frozen=True)
class SelectivityRegulariser:
    """``-alpha * mean class-selectivity index`` of the neurons at ``layer``, per batch.

    Made by `selectivity_regulariser` (which checks its arguments); `check` checks it against a
    model, `loss` gives the term added to the training loss.

    >>> reg = selectivity_regulariser(1, 0.5)
    >>> reg.to_dict()
    {'kind': 'selectivity', 'layer': 1, 'alpha': 0.5, 'site': 'neurons'}
    """

    layer: int
    alpha: float
    site: str = "neurons"

    needs_labels = True

    def check(self, hf: torch.nn.Module) -> None:
        """Raise `InputError` unless ``hf`` has neurons at ``layer``."""
        n_layers = len(_blocks(hf))
        if not -n_layers <= self.layer < n_layers:
            raise InputError(f"selectivity regulariser: layer {self.layer} is out of range; the "
                             f"model has {n_layers} layers (0..{n_layers - 1}).")
        down: Any = _down(_blocks(hf)[self.layer])
        width = down.in_features if hasattr(down, "in_features") else down.weight.shape[0]
        if width == 0:
            raise InputError("selectivity regulariser: the model is attention-only (d_mlp=0) and "
                             "has no neurons; train with d_mlp > 0.")

    def module(self, hf: torch.nn.Module) -> torch.nn.Module:
        """The module whose input holds the neuron activations (batch, positions, d_mlp)."""
        return _down(_blocks(hf)[self.layer])

    def loss(self, acts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``-alpha * batch_selectivity(acts, labels).mean()`` (a scalar tensor)."""
        return -self.alpha * batch_selectivity(acts, labels).mean()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "selectivity", "layer": self.layer, "alpha": self.alpha, "site": self.site}


def selectivity_regulariser(layer: int, alpha: float, site: str = "neurons") -> SelectivityRegulariser:
    """A class-selectivity regulariser for `mechscope.dynamics.train` (``regularisers=[...]``).

    ``layer``: the MLP layer whose neurons are regularised (negative counts from the end);
    ``alpha``: finite weight, ``< 0`` discourages selectivity, ``> 0`` encourages it;
    ``site``: "neurons" (the MLP's hidden units).

    >>> selectivity_regulariser(0, -1)
    SelectivityRegulariser(layer=0, alpha=-1.0, site='neurons')
    >>> selectivity_regulariser(0, float("nan"))
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: alpha must be a finite number (< 0 discourages selectivity, > 0 encourages it), got nan.
    """
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InputError(f"layer must be an int (an MLP layer of the model), got {layer!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise InputError("alpha must be a finite number (< 0 discourages selectivity, > 0 "
                         f"encourages it), got {alpha!r}.")
    if site not in SITES:
        raise InputError(f"site must be one of {SITES}, got {site!r}.")
    return SelectivityRegulariser(int(layer), float(alpha), site)


def check_regularisers(regularisers: Sequence[Any] | None, hf: torch.nn.Module,
                       task: Any) -> list[SelectivityRegulariser]:
    """The regularisers as a list, each checked against the model and the task."""
    if regularisers is None:
        return []
    if isinstance(regularisers, SelectivityRegulariser):
        regularisers = [regularisers]
    regs = list(regularisers)
    for reg in regs:
        if not isinstance(reg, SelectivityRegulariser):
            raise InputError(f"regularisers must be made by selectivity_regulariser(layer, alpha), "
                             f"got {type(reg).__name__}.")
        if not hasattr(task, "labels"):
            raise InputError(f"a selectivity regulariser needs classes; {type(task).__name__} "
                             "has none. Train on a ClassificationTask.")
        reg.check(hf)
    return regs


@contextmanager
def captured(hf: torch.nn.Module, regs: Sequence[SelectivityRegulariser]
             ) -> Iterator[list[torch.Tensor | None]]:
    """Inside: ``slots[i]`` holds regulariser ``i``'s activations of the latest forward pass.

    The hooks are removed on the way out, even after an exception.
    """
    slots: list[torch.Tensor | None] = [None] * len(regs)
    handles = []
    try:
        for i, reg in enumerate(regs):
            def hook(_module: Any, args: Any, i: int = i) -> None:
                slots[i] = args[0]
            handles.append(reg.module(hf).register_forward_pre_hook(hook))
        yield slots
    finally:
        for handle in handles:
            handle.remove()


def regularisation(regs: Sequence[SelectivityRegulariser], slots: Sequence[torch.Tensor | None],
                   labels: torch.Tensor | None) -> torch.Tensor | float:
    """Sum of the regularisers' losses on the captured activations (0.0 when there are none)."""
    total: torch.Tensor | float = 0.0
    for reg, acts in zip(regs, slots, strict=True):
        if acts is None or labels is None:
            raise InputError("a regulariser saw no activations or no labels in this step.")
        total = total + reg.loss(acts, labels)
    return total
