"""Steering: a contrastive direction in the residual stream, added during greedy generation.

- `steering_vector(model, positive, negative, layer)`: mean residual at the output of block
  ``layer`` over every non-padding position of the ``positive`` prompts, minus the same mean
  for ``negative`` (each list is one left-padded batch; pads are excluded by the attention
  mask).
- `generate(model, prompt, steer=vec, coefficient=c, max_new_tokens=n)`: greedy decoding
  with ``c * vec`` added to the residual at the output of block ``vec.layer``, at every
  position, at every step. ``coefficient=0`` (or ``steer=None``) is plain greedy decoding.
- `steering_sweep(model, prompt, vec, coefficients=[...])`: generations side by side.
- `steering_playground(model, prompt, vec)` (or ``vec.playground(model, prompt)``): a widget
  with a coefficient slider that re-runs `generate` as it moves (see
  `mechscope.widgets.steering_playground`); ``should_stop=`` lets it cancel a generation
  between tokens.

Generation is a loop of single forward passes (one nnsight trace each, no KV cache) that
re-reads the whole sequence: simple, exact (every position is steered in every step, as if
the model had been edited), deterministic, and the same code runs locally, with
``remote="local"`` and on NDIF. Decoding stops after ``max_new_tokens`` or at an
end-of-sequence token (the model's ``generation_config.eos_token_id``), like Hugging Face's
``generate(do_sample=False)``.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
>>> vec.vector.shape == (model.d_model,), vec.layer
(True, 1)
>>> g = mechscope.generate(model, "The cat", steer=vec, coefficient=0.0, max_new_tokens=3)
>>> len(g.new_ids) <= 3
True
>>> sweep = mechscope.steering_sweep(model, "The cat", vec, coefficients=[-4, 0, 4], max_new_tokens=3)
>>> list(sweep.to_pandas()["coefficient"])
[-4.0, 0.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..datasets.pairs import is_dataset
from ..errors import GenerationCancelled, InputError
from ..models.model import Model
from ..models.trace import save
from ..validate import check_model, prompt_list
from .metrics import as_metric

if TYPE_CHECKING:
    from ..widgets.steering_playground import SteeringPlayground
    from .steering_batch import SteeringEffect


__all__ = ["GenerationCancelled", "Generation", "SteeringSweep", "SteeringVector", "generate",
           "steering_playground", "steering_sweep", "steering_vector"]


@dataclass(frozen=True)
class SteeringVector:
    """A direction in the residual stream after block ``layer`` (``d_model`` numbers).

    ``norm`` is its L2 norm; ``resid_norm`` the median L2 norm of the residual itself at that
    layer over the prompts' tokens (for scale: a coefficient c moves the residual by
    ``c * norm``). The prompts, ``skip_first`` and the model name record where it came from.
    ``vector`` has shape ``(d_model,)`` (float32).

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
    >>> vec.vector.shape == (model.d_model,), bool(np.isclose(vec.norm, np.linalg.norm(vec.vector)))
    (True, True)
    >>> vec
    SteeringVector(layer=1, d_model=64, norm=..., 1 positive vs 1 negative prompts, model='tiny-llama-seed0')
    """

    vector: np.ndarray
    layer: int
    norm: float
    resid_norm: float
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    model_name: str
    skip_first: bool = False

    def __repr__(self) -> str:
        return (f"SteeringVector(layer={self.layer}, d_model={self.vector.shape[0]}, "
                f"norm={self.norm:.4g}, resid_norm={self.resid_norm:.4g}, "
                f"{len(self.positive)} positive vs {len(self.negative)} negative prompts, "
                f"model={self.model_name!r})")

    def playground(self, model: Model, prompt: str, **kwargs: Any) -> SteeringPlayground:
        """`steering_playground(model, prompt, self, **kwargs)`: a slider that re-generates."""
        return steering_playground(model, prompt, self, **kwargs)


def _mean_resid(model: Model, prompts: list[str], layer: int,
                skip_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean residual over the chosen non-pad positions, their residual norms) for one list."""
    enc = model.encode(prompts)
    ref = model.at("resid", layer)
    with model.trace(enc):
        resid = save(ref.read())
    mask = enc["attention_mask"].bool()
    if skip_first:
        mask = mask & (mask.long().cumsum(dim=1) > 1)  # drop each prompt's first real token
    if not mask.any():
        raise InputError("skip_first=True leaves no tokens: give prompts of at least two tokens.")
    acts = resid.float()[mask]
    return acts.mean(0), acts.norm(dim=-1)


def steering_vector(model: Model, positive: Sequence[str], negative: Sequence[str],
                    layer: int, *, skip_first: bool = False) -> SteeringVector:
    """mean(residual after block ``layer`` | positive) - mean(... | negative), over all tokens.

    ``skip_first=True`` leaves out each prompt's first token. Many models park a huge
    "attention sink" vector there (SmolLM2-135M: norm ~24,000 at layer 12, against ~140 for
    other tokens); when the two lists have different numbers of tokens it does not cancel in
    the difference of means and can dominate the vector (there: norm 96 with it, 22 without).
    Returns a `SteeringVector` whose ``vector`` is ``(d_model,)``.

    With one prompt per side it is the difference of the two mean residuals, which a plain
    forward pass gives too (block 0's output is Hugging Face's ``hidden_states[1]``):

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=0)
    >>> def mean_resid(prompt):
    ...     out = model.hf(model.to_tokens(prompt), output_hidden_states=True)
    ...     return out.hidden_states[1][0].mean(0).detach().numpy()      # (d_model,)
    >>> bool(np.allclose(vec.vector, mean_resid("good great fine") - mean_resid("bad awful sad"), atol=1e-5))
    True
    """
    check_model(model, "steering_vector")
    layer = model.check_layer(layer)
    pos = prompt_list(model, positive, "positive")
    neg = prompt_list(model, negative, "negative")
    mp, np_ = _mean_resid(model, pos, layer, bool(skip_first))
    mn, nn_ = _mean_resid(model, neg, layer, bool(skip_first))
    vec = (mp - mn).numpy().astype(np.float32)
    return SteeringVector(
        vector=vec, layer=layer, norm=float(np.linalg.norm(vec)),
        resid_norm=float(torch.cat([np_, nn_]).median()), positive=tuple(pos), negative=tuple(neg),
        model_name=model.name, skip_first=bool(skip_first),
    )


def _as_vector(model: Model, steer: object, layer: int | None) -> tuple[torch.Tensor, int]:
    if isinstance(steer, SteeringVector):
        vec: Any = steer.vector
        lay = steer.layer if layer is None else layer
    elif isinstance(steer, np.ndarray | torch.Tensor | list | tuple):
        if layer is None:
            raise InputError("a raw steering array needs layer=...; or pass a SteeringVector.")
        vec, lay = steer, layer
    else:
        raise InputError(f"steer must be a SteeringVector (mechscope.steering_vector) or an array, got {steer!r}.")
    t = torch.as_tensor(np.asarray(vec, dtype=np.float32))
    if t.shape != (model.d_model,):
        raise InputError(
            f"the steering vector has shape {tuple(t.shape)} but {model.name}'s residual stream "
            f"has d_model={model.d_model}: it was made for another model."
        )
    if not torch.isfinite(t).all():
        raise InputError("the steering vector contains NaN or inf.")
    return t, model.check_layer(lay)


def _eos_ids(model: Model) -> set[int]:
    eos = getattr(getattr(model.hf, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = model.tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"max_new_tokens must be a positive int, got {n!r}.")
    return int(n)


def _coef(c: object) -> float:
    if isinstance(c, bool) or not isinstance(c, int | float | np.integer | np.floating) or not np.isfinite(c):
        raise InputError(f"a coefficient must be a finite number, got {c!r}.")
    return float(c)


def _coef_list(coefficients: object) -> tuple[float, ...]:
    if isinstance(coefficients, str) or not isinstance(coefficients, Sequence | np.ndarray) or len(coefficients) == 0:
        raise InputError(f"coefficients must be a non-empty list of numbers, got {coefficients!r}.")
    return tuple(_coef(c) for c in coefficients)


@dataclass(frozen=True)
class Generation:
    """A greedy continuation of ``prompt``: ``text`` (new tokens decoded), ``new_ids``, ``new_tokens``.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> g = mechscope.generate(model, "The cat", max_new_tokens=3)
    >>> len(g.new_ids) == len(g.new_tokens) == 3, str(g) == g.text
    (True, True)
    >>> g.coefficient, g.layer, g.stopped_at_eos                # unsteered, no EOS reached
    (0.0, None, False)
    """

    prompt: str
    text: str
    new_ids: tuple[int, ...]
    new_tokens: tuple[str, ...]
    coefficient: float
    layer: int | None
    stopped_at_eos: bool

    def __str__(self) -> str:
        return self.text


def greedy_loop(model: Model, ids: torch.Tensor, next_token: Callable[[torch.Tensor], int],
                max_new_tokens: int, should_stop: Callable[[], bool] | None = None) -> tuple[list[int], bool]:
    """The greedy decoding loop every generator shares: ``next_token(ids)`` (one forward pass
    of the whole (1, n) sequence, no KV cache) picks each new token; stops after
    ``max_new_tokens``, at the context length or at an end-of-sequence token; ``should_stop``
    is asked before each pass (`GenerationCancelled` when it says True). Returns (new ids,
    stopped at EOS).

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama")
    >>> greedy_loop(model, model.to_tokens("The cat"), lambda ids: 5, 3)
    ([5, 5, 5], False)
    """
    eos = _eos_ids(model)
    limit = model.max_positions
    new: list[int] = []
    for _ in range(max_new_tokens):
        if limit is not None and ids.shape[1] >= limit:
            break
        if should_stop is not None and should_stop():
            raise GenerationCancelled(f"generation cancelled after {len(new)} of {max_new_tokens} tokens.")
        token = int(next_token(ids))
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]], dtype=ids.dtype)], dim=1)
        if token in eos:
            return new, True
    return new, False


def _greedy(model: Model, ids: torch.Tensor, delta: torch.Tensor | None, layer: int,
            max_new_tokens: int, should_stop: Callable[[], bool] | None = None) -> tuple[list[int], bool]:
    ref = model.at("resid", layer)
    unembed = model.logits()

    def step(ids: torch.Tensor) -> int:
        with model.trace(ids):
            if delta is not None:
                resid = ref.read()
                resid[:] = resid + delta
            nxt = save(unembed.all()[0, -1].argmax(-1))
        return int(nxt)

    return greedy_loop(model, ids, step, max_new_tokens, should_stop)


def generate(model: Model, prompt: str, *, steer: SteeringVector | np.ndarray | None = None,
             coefficient: float = 1.0, max_new_tokens: int = 20, layer: int | None = None,
             should_stop: Callable[[], bool] | None = None) -> Generation:
    """Greedy continuation of ``prompt``, with ``coefficient * steer`` added at ``steer.layer``.

    ``steer=None`` or ``coefficient=0`` is plain greedy decoding (the same tokens as Hugging
    Face's ``generate(do_sample=False)``). ``layer`` overrides the vector's layer (required
    for a raw array). ``should_stop`` is called before each forward pass (never during one);
    when it returns True, generation stops and `GenerationCancelled` is raised.

    Unsteered, it gives Hugging Face's greedy tokens:

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> ids = model.to_tokens("The cat")                                 # (1, n_tokens)
    >>> g = mechscope.generate(model, "The cat", max_new_tokens=3)
    >>> hf = model.hf.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    >>> g.new_ids == tuple(hf[0, ids.shape[1]:].tolist())
    True
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=0)
    >>> steered = mechscope.generate(model, "The cat", steer=vec, coefficient=8.0, max_new_tokens=3)
    >>> steered.layer, steered.coefficient
    (0, 8.0)
    """
    check_model(model, "generate")
    c = _coef(coefficient)
    n = _check_count(max_new_tokens)
    ids = model.to_tokens(prompt)
    delta, lay = None, model.n_layers - 1
    if steer is not None:
        vec, lay = _as_vector(model, steer, layer)
        if c != 0.0:
            dtype = model.hf.dtype
            delta = (c * vec).to(dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32)
    elif layer is not None:
        raise InputError("layer= is only meaningful with steer=...")
    if should_stop is not None and not callable(should_stop):
        raise InputError(f"should_stop must be a callable returning a bool, got {should_stop!r}.")
    new, stopped = _greedy(model, ids, delta, lay, n, should_stop)
    dec = model.tokenizer.decode
    return Generation(
        prompt=prompt, text=dec(new), new_ids=tuple(new), new_tokens=tuple(dec([i]) for i in new),
        coefficient=c if steer is not None else 0.0, layer=lay if steer is not None else None,
        stopped_at_eos=stopped,
    )


@dataclass(frozen=True)
class SteeringSweep:
    """Greedy generations of one prompt, one per coefficient (0 = unsteered).

    ``generations[i]`` is the `Generation` at ``coefficients[i]``.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=0)
    >>> sweep = mechscope.steering_sweep(model, "The cat", vec, coefficients=[0, 8], max_new_tokens=3)
    >>> sweep.coefficients, sweep.layer, sweep.vector_norm == vec.norm
    ((0.0, 8.0), 0, True)
    >>> list(sweep.to_pandas().columns)
    ['coefficient', 'shift_norm', 'text', 'n_tokens', 'stopped_at_eos']
    """

    prompt: str
    coefficients: tuple[float, ...]
    generations: tuple[Generation, ...]
    layer: int
    vector_norm: float
    model_name: str

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per coefficient: the continuation, its token count and whether it hit EOS."""
        import pandas as pd

        return pd.DataFrame({
            "coefficient": list(self.coefficients),
            "shift_norm": [abs(c) * self.vector_norm for c in self.coefficients],
            "text": [g.text for g in self.generations],
            "n_tokens": [len(g.new_ids) for g in self.generations],
            "stopped_at_eos": [g.stopped_at_eos for g in self.generations],
        })

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap: one row per coefficient, one column per generated position, cells show
        whether the token differs from the unsteered (or first) generation; tokens in labels."""
        from ..widgets.heatmap import Heatmap

        base_i = self.coefficients.index(0.0) if 0.0 in self.coefficients else 0
        base = self.generations[base_i].new_ids
        width = max(1, max(len(g.new_ids) for g in self.generations))
        values = np.full((len(self.generations), width), np.nan)
        for r, g in enumerate(self.generations):
            for j, tok in enumerate(g.new_ids):
                values[r, j] = float(j >= len(base) or tok != base[j])
        rows = [f"{c:+g}: {g.text[:60]!r}" for c, g in zip(self.coefficients, self.generations, strict=True)]
        return Heatmap(
            values, row_labels=rows, col_labels=[str(j) for j in range(width)],
            title=f"{self.model_name}: steering at L{self.layer} (|v|={self.vector_norm:.3g}) of {self.prompt!r}",
            value_label=f"token differs from coefficient {self.coefficients[base_i]:+g}",
            colorscale="viridis", vmin=0.0, vmax=1.0,
        )


def steering_sweep(model: Model, prompt: str | Any, steer: SteeringVector,
                   coefficients: Sequence[float] = (-4, -2, 0, 2, 4), *, max_new_tokens: int = 20,
                   metric: Any = None) -> SteeringSweep | SteeringEffect:
    """`generate` once per coefficient (each an exact, separate greedy run).

    With a dataset (`mechscope.datasets`, or a list of texts) the evaluation is the next-token
    ``metric`` of every prompt at every coefficient instead (default: a `PromptPairs`'
    per-example ``logit_diff(answer, wrong)``, else ``kl_to_clean()`` against the unsteered
    run), batched: a `SteeringEffect` with ``per_example`` (n, coefficients), means and intervals.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
    >>> sweep = mechscope.steering_sweep(model, "The cat", vec, coefficients=[-4, 0], max_new_tokens=2)
    >>> [g.coefficient for g in sweep.generations]
    [-4.0, 0.0]
    >>> sweep.generations[1].new_ids == mechscope.generate(model, "The cat", max_new_tokens=2).new_ids
    True
    """
    check_model(model, "steering_sweep")
    if not isinstance(steer, SteeringVector):
        raise InputError(f"steering_sweep needs a SteeringVector (mechscope.steering_vector), got {steer!r}.")
    coefs = _coef_list(coefficients)
    vec, layer = _as_vector(model, steer, None)
    _check_count(max_new_tokens)
    if is_dataset(prompt):
        from .steering_batch import steering_effect

        bound = None if metric is None else as_metric(metric, model)
        return steering_effect(model, prompt, vec, layer, coefs, bound)
    if metric is not None:
        raise InputError("metric= is for a dataset; one prompt's sweep compares generations.")
    model.to_tokens(prompt)
    gens = tuple(generate(model, prompt, steer=steer, coefficient=c, max_new_tokens=max_new_tokens)
                 for c in coefs)
    return SteeringSweep(prompt=prompt, coefficients=coefs, generations=gens, layer=steer.layer,
                         vector_norm=steer.norm, model_name=model.name)


def steering_playground(model: Model, prompt: str, steer: SteeringVector, *,
                        coefficients: Sequence[float] = (-4, -2, 0, 2, 4), max_new_tokens: int = 20,
                        min_coefficient: float = -8.0, max_coefficient: float = 8.0, step: float = 0.5,
                        title: str | None = None) -> SteeringPlayground:
    """A widget: coefficient slider, prompt box, unsteered vs steered text side by side.

    ``coefficients`` (sorted, with 0 added: the unsteered baseline) are generated now
    (`steering_sweep`) and travel in the widget's state, so an exported notebook (no kernel)
    snaps its slider to them. With a kernel, moving the slider between ``min_coefficient`` and
    ``max_coefficient`` (``step`` apart) or submitting a new prompt re-runs `generate` with the
    same settings in a background thread: a newer request cancels an older one between
    tokens, results are cached per (prompt, coefficient), and the thread pauses while a
    notebook cell runs, so it never traces the model at the same time as your code.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
    >>> w = vec.playground(model, "The cat", coefficients=[-2, 2], max_new_tokens=3)
    >>> w.coefficients
    [-2.0, 0.0, 2.0]
    >>> seq = w.request(coefficient=1.5)
    >>> w.wait(timeout=60)
    True
    >>> w.result("The cat", 1.5).new_ids == mechscope.generate(
    ...     model, "The cat", steer=vec, coefficient=1.5, max_new_tokens=3).new_ids
    True
    >>> w.close()
    """
    from ..widgets.steering_playground import SteeringPlayground

    check_model(model, "steering_playground")
    if not isinstance(prompt, str):
        raise InputError(f"steering_playground takes one prompt (a str), got {type(prompt).__name__}; "
                         "evaluate a dataset with steering_sweep(model, dataset, vec).")
    coefs = sorted(set(_coef_list(coefficients)) | {0.0})
    sweep = steering_sweep(model, prompt, steer, coefficients=coefs, max_new_tokens=max_new_tokens)
    assert isinstance(sweep, SteeringSweep)
    n = int(max_new_tokens)

    def regenerate(text: str, coefficient: float, should_stop: Callable[[], bool]) -> Generation:
        return generate(model, text, steer=steer, coefficient=coefficient, max_new_tokens=n,
                        should_stop=should_stop)

    return SteeringPlayground(sweep, generator=regenerate, min_coefficient=min_coefficient,
                              max_coefficient=max_coefficient, step=step, title=title,
                              max_new_tokens=n)
