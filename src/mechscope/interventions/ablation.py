"""`ablate`: knock out neurons, attention heads or whole layers and see what the model predicts.

A *target* names what to knock out (small frozen objects, checked against the model before
any forward pass):

- ``neurons(layer, [i, j])``: MLP neurons (post-nonlinearity, the input of the MLP's down
  projection), ``d_mlp`` of them per layer;
- ``heads(layer, [h])``: attention heads (their slice of the input of the attention output
  projection, ``d_head`` wide each);
- ``layer(layer, site="mlp" | "attn")``: a whole MLP or attention output.

Indices follow Python's rule: negative indices count from the end (``neurons(-1, [-1])`` is
the last neuron of the last layer); anything outside ``-n..n-1`` is an `InputError`.

Methods (say which one a claim survives; see the science notes on fragile edits):

- ``"zero"``: the activation is set to 0;
- ``"mean"``: the activation is set to its mean over every token position of the
  ``reference`` prompts (run as one left-padded batch; padding excluded by the attention
  mask), the same vector at every position;
- ``"resample"``: one reference prompt with at least as many tokens as the prompt is drawn
  with ``numpy.random.default_rng(seed)`` (torch's global RNG is not touched), and the
  activation at each position is the one the model computes at that position on the first
  ``n`` tokens of the drawn prompt. Every call draws afresh from ``seed``, so results do not
  depend on call order.

Nothing is installed on the model: each forward pass is one nnsight trace with the edit
inside it, so the model is exactly as before after every call, also after an exception.
The clean and the ablated run of ``ablate(model, prompt, ...)`` are two rows of one trace
(one request when the model is remote).

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> r = mechscope.ablate(model, "The cat sat on the", mechscope.neurons(1, [0, 5]))
>>> r.method, r.target
('zero', 'neurons L1 [0, 5]')
>>> r.clean_logits.shape == r.ablated_logits.shape == (model.vocab_size,)
True
>>> with mechscope.ablate(model, target=mechscope.heads(0, [1]), method="mean",
...                       reference=["The dog ran", "A bird sang in the tree"]) as ablated:
...     logits = ablated.logits("The cat sat on the")
>>> logits.shape == (model.vocab_size,)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..datasets.pairs import is_dataset
from ..errors import InputError
from ..models.model import Model
from ..models.sites import site as get_site
from ..models.trace import save
from ..validate import as_int, check_model, check_top_k, index_list, prompt_list
from .ablation_results import AblationResult, ablation_result
from .metrics import BoundMetric, Metric, as_metric

if TYPE_CHECKING:
    from .ablation_batch import AblationEffect

METHODS = ("zero", "mean", "resample")
_LAYER_SITES = ("mlp", "attn")


# ---- targets -------------------------------------------------------------------------------
def _as_indices(values: Any, what: str) -> tuple[int, ...]:
    """An int or a list of ints as given (ranges are checked against a model by `Target.resolve`)."""
    if isinstance(values, int | np.integer) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray | range):
        raise InputError(f"{what} must be an int or a list of ints, got {values!r}.")
    out = tuple(as_int(v, what) for v in values)
    if not out:
        raise InputError(f"{what} is empty: name at least one.")
    return out


@dataclass(frozen=True)
class Target:
    """What to ablate: ``kind`` is "neurons", "heads" or "layer"; built by `neurons`, `heads`, `layer`.

    ``indices`` are as given (negative allowed); `resolve` checks them against a model.

    >>> import mechscope
    >>> t = mechscope.neurons(1, [0, 5])
    >>> t, str(t)
    (Target(kind='neurons', layer=1, indices=(0, 5), site=''), 'neurons L1 [0, 5]')
    >>> t == Target("neurons", 1, (0, 5)), str(mechscope.layer(0, "attn"))
    (True, 'attn L0')
    """

    kind: str
    layer: int
    indices: tuple[int, ...] = ()
    site: str = ""

    def __str__(self) -> str:
        if self.kind == "layer":
            return f"{self.site} L{self.layer}"
        return f"{self.kind} L{self.layer} {list(self.indices)}"

    def resolve(self, model: Model) -> _Resolved:
        """Check ranges against ``model`` and return the site and columns to edit."""
        layer = model.check_layer(self.layer)
        if self.kind == "layer":
            return _Resolved(site=self.site, layer=layer, cols=None, width=model.d_model,
                             desc=f"{self.site} L{layer}")
        unit = get_site(self.kind).unit
        norm = index_list(list(self.indices), model.units(self.kind),
                          f"{self.kind} at layer {layer}", unit)
        if self.kind == "neurons":
            cols = torch.tensor(norm, dtype=torch.long)
        else:
            d = model.d_head
            cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in norm])
        return _Resolved(site=self.kind, layer=layer, cols=cols, width=model.width(self.kind),
                         desc=f"{self.kind} L{layer} {norm}")


@dataclass(frozen=True)
class _Resolved:
    site: str  # "neurons", "heads" (a slice of them) or "mlp" / "attn" (the whole output)
    layer: int
    cols: torch.Tensor | None  # None = every column
    width: int
    desc: str

    @property
    def n_cols(self) -> int:
        return self.width if self.cols is None else int(self.cols.numel())


def neurons(layer: int, indices: Sequence[int] | int) -> Target:
    """MLP neurons ``indices`` at ``layer`` (post-nonlinearity; negative indices count from the end).

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")              # 2 layers of 128 neurons
    >>> mechscope.ablate(model, "The cat", mechscope.neurons(-1, [-1])).target
    'neurons L1 [127]'
    >>> mechscope.ablate(model, "The cat", mechscope.neurons(0, [128]))
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: neuron 128 is out of range: there are 128 neurons (0..127; ...
    """
    return Target("neurons", as_int(layer, "layer"), _as_indices(indices, "neuron indices"))


def heads(layer: int, indices: Sequence[int] | int) -> Target:
    """Attention heads ``indices`` at ``layer`` (negative indices count from the end).

    Each head is its ``d_head``-wide slice of the input of the attention output projection.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")              # 4 heads per layer
    >>> mechscope.ablate(model, "The cat", mechscope.heads(0, [1, -1])).target
    'heads L0 [1, 3]'
    >>> mechscope.ablate(model, "The cat", mechscope.heads(0, 4))
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: head 4 is out of range: there are 4 heads (0..3; ...
    """
    return Target("heads", as_int(layer, "layer"), _as_indices(indices, "head indices"))


def layer(layer: int, site: str = "mlp") -> Target:
    """The whole output of the MLP (``site="mlp"``) or attention (``site="attn"``) at ``layer``.

    Zero-ablating it equals a plain forward hook that returns zeros from that module:

    >>> import mechscope, numpy as np, torch
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.ablate(model, "The cat sat", mechscope.layer(1, "mlp"))
    >>> hook = model.hf.model.layers[1].mlp.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    >>> try:
    ...     expected = model.hf(model.to_tokens("The cat sat")).logits[0, -1].detach().numpy()
    ... finally:
    ...     hook.remove()
    >>> r.target, bool(np.allclose(r.ablated_logits, expected, atol=1e-5))
    ('mlp L1', True)
    """
    site = get_site(site, allowed=_LAYER_SITES, verb="layer").name
    return Target("layer", as_int(layer, "layer"), (), site)


# ---- the edit inside a trace -----------------------------------------------------------------
def _mean_activation(model: Model, spec: _Resolved, reference: list[str]) -> torch.Tensor:
    """Mean of the target's columns over every non-padding position of ``reference``: (n_cols,)."""
    enc = model.encode(reference)
    ref = model.at(spec.site, spec.layer)
    cols = spec.cols
    with model.trace(enc):
        act = ref.read()
        acts = save(act if cols is None else act[:, :, cols])
    mask = enc["attention_mask"].bool()
    return acts.float()[mask].mean(0).to(acts.dtype)


def _draw_reference(model: Model, reference: list[str], n: int, seed: int) -> tuple[int, torch.Tensor]:
    lengths = [int(model.to_tokens(p).shape[1]) for p in reference]
    eligible = [i for i, k in enumerate(lengths) if k >= n]
    if not eligible:
        raise InputError(
            f"resample ablation needs a reference prompt at least as long as the prompt ({n} "
            f"tokens); the reference prompts have {lengths} tokens. Add longer ones."
        )
    pick = eligible[int(np.random.default_rng(seed).integers(len(eligible)))]
    return pick, model.to_tokens(reference[pick])[:, :n]


def _ablated_logits(model: Model, ids: torch.Tensor, spec: _Resolved, method: str,
                    mean: torch.Tensor | None, ref_ids: torch.Tensor | None,
                    with_clean: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Final-position logits (clean, ablated) of one prompt in one trace.

    Rows: [clean] (if ``with_clean``), ablated, [resample reference] -- all the same length,
    so there is no padding. The edit writes the ablated row in place.
    """
    rows = [ids] * (2 if with_clean else 1) + ([ref_ids] if ref_ids is not None else [])
    batch = torch.cat(rows)
    row = 1 if with_clean else 0
    ref = model.at(spec.site, spec.layer)
    unembed = model.logits()
    cols = spec.cols
    if method == "zero":
        value: torch.Tensor | None = torch.zeros(())
    elif method == "mean":
        value = mean
    else:
        value = None  # resample: read from the last row inside the trace
    with model.trace(batch):
        act = ref.read()
        if value is None:
            value = act[-1] if cols is None else act[-1][:, cols]
            value = value.clone()
        if cols is None:
            act[row] = value
        else:
            act[row, :, cols] = value
        logits = save(unembed.all()[:, -1])
    logits = logits.float()
    return (logits[0] if with_clean else None), logits[row]


# ---- public API ----------------------------------------------------------------------------
@dataclass(eq=False)
class Ablated:
    """A model seen through one ablation: every call runs a trace with the ablation inside.

    Returned by ``ablate(model, target=..., ...)`` without a prompt; use it as a context
    manager. The model itself is never modified, so leaving the block (normally or by an
    exception) leaves it exactly as before; calls after the block raise `InputError`.

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("llama")
    >>> with mechscope.ablate(model, target=mechscope.neurons(0, [3, 7])) as ablated:
    ...     logits = ablated.logits("The cat")                      # (vocab,)
    ...     full = ablated.result("The cat")
    >>> logits.shape == (model.vocab_size,), bool(np.allclose(logits, full.ablated_logits, atol=1e-5))
    (True, True)
    >>> ablated.logits("The cat")
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: this ablation's `with` block has ended; open a new one with mechscope.ablate(...).
    """

    model: Model
    spec: _Resolved
    method: str
    reference: list[str]
    seed: int
    metric: Metric | BoundMetric | None = None
    top_k: int = 10
    _mean: torch.Tensor | None = field(default=None, repr=False)
    _open: bool = field(default=True, repr=False)

    def __enter__(self) -> Ablated:
        self._open = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._open = False

    @property
    def target(self) -> str:
        return self.spec.desc

    def _check_open(self) -> None:
        if not self._open:
            raise InputError("this ablation's `with` block has ended; open a new one with mechscope.ablate(...).")

    def _mean_value(self) -> torch.Tensor | None:
        if self.method == "mean" and self._mean is None:
            self._mean = _mean_activation(self.model, self.spec, self.reference)
        return self._mean

    def _run(self, prompt: str, with_clean: bool):
        self._check_open()
        ids = self.model.to_tokens(prompt)
        picked, ref_ids = None, None
        if self.method == "resample":
            picked, ref_ids = _draw_reference(self.model, self.reference, ids.shape[1], self.seed)
        clean, ablated = _ablated_logits(self.model, ids, self.spec, self.method,
                                         self._mean_value(), ref_ids, with_clean)
        return ids, picked, clean, ablated

    def logits(self, prompt: str) -> np.ndarray:
        """Final-position next-token logits of ``prompt`` under the ablation, shape (vocab,)."""
        return self._run(prompt, with_clean=False)[3].numpy().astype(np.float32)

    def metric_value(self, prompt: str, metric: Metric | BoundMetric | None = None) -> float:
        """``metric`` (default: the one given to `ablate`) on the ablated run of ``prompt``."""
        m = metric if metric is not None else self.metric
        if m is None:
            raise InputError("give a metric, e.g. mechscope.metrics.logit_diff(' Paris', ' Rome').")
        bound = as_metric(m, self.model)
        _, _, clean, ablated = self._run(prompt, with_clean=bound.needs_clean)
        return float(bound(ablated[None], None if clean is None else clean[None])[0])

    def result(self, prompt: str, metric: Metric | BoundMetric | None = None) -> AblationResult:
        """The full `AblationResult` (clean and ablated in one trace) for ``prompt``."""
        m = metric if metric is not None else self.metric
        bound = None if m is None else as_metric(m, self.model)
        ids, picked, clean, ablated = self._run(prompt, with_clean=True)
        return ablation_result(self.model, prompt, ids, self.spec, self.method, clean, ablated, bound,
                       self.reference, picked, self.seed, self.top_k)


def ablate(model: Model, prompt: str | None = None, target: Target | None = None, *,
           method: str = "zero", reference: Sequence[str] | None = None,
           metric: Metric | BoundMetric | None = None, seed: int = 0,
           top_k: int = 10, progress: bool = True) -> AblationResult | Ablated | AblationEffect:
    """Ablate ``target`` on ``prompt`` and compare the next-token prediction with the clean run.

    Without a prompt, returns an `Ablated` view for a ``with`` block whose ``.logits(p)``,
    ``.metric_value(p, metric)`` and ``.result(p)`` calls all run ablated.
    ``reference`` (a list of prompts) is required for ``method="mean"`` and ``"resample"``.
    ``top_k`` (1..100) is how many top tokens are recorded before and after.

    With a dataset instead of one prompt (a `mechscope.datasets.Prompts` or `PromptPairs`, or a
    list of texts) every text is ablated in left-padded batches and the result is an
    `AblationEffect` (``per_example`` metric changes, their mean and bootstrap interval); the
    metric defaults to a `PromptPairs`' per-example ``logit_diff(answer, wrong)``, or to
    ``kl_to_clean()`` for plain texts.

    >>> import mechscope
    >>> from mechscope.metrics import prob
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.ablate(model, "The cat sat", mechscope.neurons(0, [1]), method="resample",
    ...                      reference=["A dog ran home today"], metric=prob(" the"))
    >>> r.method, r.resampled_from, r.ablated_logits.shape == (model.vocab_size,)
    ('resample', 0, True)
    >>> mechscope.ablate(model, "The cat", mechscope.neurons(0, [1]), method="mean")
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: method='mean' needs reference=[prompts...] to take activations from.
    """
    check_model(model, "ablate")
    if not isinstance(target, Target):
        raise InputError(
            "target must be mechscope.neurons(layer, [i, ...]), mechscope.heads(layer, [h, ...]) "
            f"or mechscope.layer(layer, site='mlp'|'attn'), got {target!r}."
        )
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    seed = as_int(seed, "seed")
    top_k = check_top_k(top_k, model.vocab_size)
    spec = target.resolve(model)
    if method == "zero":
        if reference is not None:
            raise InputError("reference prompts are only used by method='mean' or 'resample'.")
        refs: list[str] = []
    else:
        if reference is None:
            raise InputError(f"method={method!r} needs reference=[prompts...] to take activations from.")
        refs = prompt_list(model, reference, "reference")
    bound = None if metric is None else as_metric(metric, model)
    if is_dataset(prompt):
        from .ablation_batch import ablate_dataset

        return ablate_dataset(model, prompt, spec, method, refs, bound, seed, progress=progress)
    view = Ablated(model, spec, method, refs, seed, bound, top_k)
    if prompt is None:
        return view
    model.to_tokens(prompt)  # validate before any forward pass
    return view.result(prompt)
