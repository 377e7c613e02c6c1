"""Intervening on dictionary features: steer, clamp and ablate latents during generation.

An edit acts on a dictionary's latents ``f`` (batch, positions, d_sae) at every position
and every generation step, spliced in with the error term (`mechscope.sae.splice`): the
output site gets ``decode(edit(f)) + (target - decode(f))``, so only the edited latents
change the pass and, since decoding is linear, the site moves by exactly

- `steer` ``(features, alpha)``: ``f[..., i] += alpha`` -> ``+ alpha * W_dec[i]`` per
  feature (a unit-norm decoder row moves the site by ``alpha`` in L2 norm);
- `clamp` ``(features, value)``: ``f[..., i] = value`` -> ``+ (value - f_i) * W_dec[i]``;
  ``where="everywhere"`` (default; Templeton et al. 2024 clamp at every position) or
  ``where="active"`` (only where the feature fires, ``f_i > 0``);
- `ablate` ``(features)``: ``f[..., i] = 0`` -> ``- f_i * W_dec[i]``.

Edits compose: a list is applied in order. `feature_generate` is greedy decoding with the
edits (`mechscope.interventions.steering.greedy_loop`: one pass of the whole sequence per
token, no KV cache), `feature_generate_sweep` one generation per steering strength,
`feature_playground` the `SteeringPlayground` widget (default vs steered side by side, one
strength slider), and `side_effects` what else an edit changes: the next-token
cross-entropy and KL on held-out texts (``"turn up dog: what else breaks?"``) with bootstrap
intervals over texts, and the edited prompts' own next-token distribution.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
>>> g = feature_generate(model, sae, "The cat", steer([3, 7], 6.0), max_new_tokens=3)
>>> len(g.new_ids), g.coefficient, g.layer
(3, 6.0, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from ..interventions.steering import (
    Generation,
    SteeringSweep,
    _check_count,
    _coef_list,
    greedy_loop,
)
from ..models.model import Model, left_padded
from ..stats import bootstrap
from ..validate import as_int, check_model, prompt_list
from .dictionary import SAE
from .evaluation import _ce, _log_probs, _masks, _token_rows
from .splice import Splice, check_fits, spliced_logits

if TYPE_CHECKING:
    from ..widgets.steering_playground import SteeringPlayground

KINDS = ("steer", "clamp", "ablate")
WHERE = ("everywhere", "active")


@dataclass(frozen=True)
class FeatureEdit:
    """One edit of some latents: ``kind`` ("steer", "clamp" or "ablate"), ``features``
    (latent indices), ``value`` (alpha for a steer, the clamp value, 0 for an ablation),
    ``where`` ("everywhere" or "active": which positions a clamp sets). Build with `steer`,
    `clamp` or `ablate`; `apply` edits a latent tensor (..., d_sae).

    >>> import torch
    >>> steer([1], 2.0).apply(torch.zeros(1, 3))
    tensor([[0., 2., 0.]])
    >>> clamp([0, 2], 5.0, where="active").apply(torch.tensor([[1.0, 1.0, 0.0]]))
    tensor([[5., 1., 0.]])
    """

    kind: str
    features: tuple[int, ...]
    value: float
    where: str = "everywhere"

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """The edited copy of latents ``f`` (..., d_sae)."""
        idx = list(self.features)
        out = f.clone()
        if self.kind == "steer":
            out[..., idx] = out[..., idx] + self.value
        elif self.where == "active":
            cur = out[..., idx]
            out[..., idx] = torch.where(cur > 0, torch.full_like(cur, self.value), cur)
        else:
            out[..., idx] = self.value
        return out

    def check(self, sae: SAE) -> FeatureEdit:
        """Itself, after checking every feature index fits ``sae`` (`InputError` naming d_sae)."""
        d = sae.cfg.d_sae
        for i in self.features:
            if not 0 <= i < d:
                raise InputError(f"feature {i} is out of range: this dictionary has d_sae={d} latents "
                                 f"(indices 0..{d - 1}).")
        return self

    def __str__(self) -> str:
        what = {"steer": f"{self.value:+g}", "clamp": f"={self.value:g} ({self.where})", "ablate": "=0"}
        return f"{self.kind} {list(self.features)} {what[self.kind]}"


def _features(features: Any) -> tuple[int, ...]:
    if isinstance(features, int | np.integer) and not isinstance(features, bool):
        features = [features]
    if isinstance(features, str | bytes) or not isinstance(features, Sequence | np.ndarray | range):
        raise InputError(f"features must be a latent index or a list of them, got {features!r}.")
    out = tuple(as_int(i, "a feature index") for i in features)
    if not out:
        raise InputError("the feature list is empty: give at least one latent index.")
    if any(i < 0 for i in out):
        raise InputError(f"feature indices must be >= 0, got {list(out)}.")
    if len(set(out)) != len(out):
        raise InputError(f"features {list(out)} name a latent twice.")
    return out


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not np.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}.")
    return float(value)


def steer(features: Any, alpha: float) -> FeatureEdit:
    """Add ``alpha`` to each feature's latent: ``+ alpha * W_dec[i]`` at the output site.

    >>> steer([4, 2], 3).features, steer(4, -1.5).value
    ((4, 2), -1.5)
    """
    return FeatureEdit("steer", _features(features), _finite(alpha, "alpha"))


def clamp(features: Any, value: float, *, where: str = "everywhere") -> FeatureEdit:
    """Set each feature's latent to ``value``: at every position (``where="everywhere"``,
    Templeton et al.) or only where it fires (``where="active"``).

    >>> clamp([1], 10.0).where
    'everywhere'
    """
    if where not in WHERE:
        raise InputError(f"where must be one of {WHERE}, got {where!r}.")
    return FeatureEdit("clamp", _features(features), _finite(value, "the clamp value"), where)


def ablate(features: Any) -> FeatureEdit:
    """Set each feature's latent to 0 everywhere (zero ablation of the features).

    >>> str(ablate([5, 6]))
    'ablate [5, 6] =0'
    """
    return FeatureEdit("ablate", _features(features), 0.0)


def edit_list(sae: SAE, edits: Any) -> tuple[FeatureEdit, ...]:
    """``edits`` (one `FeatureEdit`, a list, or None / [] for none) checked against ``sae``.

    >>> from mechscope.sae import SAE
    >>> edit_list(SAE.random(4, 8), [steer(9, 1.0)])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: feature 9 is out of range: this dictionary has d_sae=8 latents (indices 0..7).
    """
    if not isinstance(sae, SAE):
        raise InputError(f"needs a mechscope.sae.SAE dictionary, got {type(sae).__name__}.")
    if edits is None:
        return ()
    if isinstance(edits, FeatureEdit):
        edits = [edits]
    if not isinstance(edits, Sequence) or isinstance(edits, str):
        raise InputError(f"edits must be a FeatureEdit (steer, clamp, ablate) or a list of them, got {edits!r}.")
    for e in edits:
        if not isinstance(e, FeatureEdit):
            raise InputError(f"edits must be FeatureEdits (steer, clamp, ablate), got {type(e).__name__}.")
    return tuple(e.check(sae) for e in edits)


def edited_splice(sae: SAE, edits: Any) -> Splice:
    """The `Splice` (error term on) that applies ``edits`` to ``sae``'s latents, in order.

    >>> from mechscope.sae import SAE
    >>> edited_splice(SAE.random(4, 8), [steer(1, 2.0), ablate(3)]).error_term
    True
    """
    chosen = edit_list(sae, edits)

    def edit(f: torch.Tensor) -> torch.Tensor:
        for e in chosen:
            f = e.apply(f)
        return f

    return Splice(sae, error_term=True, edit=edit if chosen else None)


def _strength(edits: tuple[FeatureEdit, ...]) -> float:
    """A one-number label: a single steer's alpha, 0 for no edit, NaN otherwise."""
    if not edits:
        return 0.0
    if len(edits) == 1 and edits[0].kind == "steer":
        return edits[0].value
    return float("nan")


def feature_generate(model: Model, sae: SAE, prompt: str, edits: Any, *, max_new_tokens: int = 20,
                     should_stop: Callable[[], bool] | None = None) -> Generation:
    """Greedy continuation of ``prompt`` with ``edits`` on ``sae``'s latents at every position
    and step (error term on). A `Generation`: ``coefficient`` is a single steer's alpha (0 for
    no edit, NaN for other edits), ``layer`` the dictionary's output layer.

    With no edit it is plain greedy decoding, the same tokens as `mechscope.generate`:

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 32, layer=0, model=model.name)
    >>> plain = mechscope.generate(model, "The cat", max_new_tokens=4)
    >>> feature_generate(model, sae, "The cat", [], max_new_tokens=4).new_ids == plain.new_ids
    True
    """
    check_model(model, "feature_generate")
    chosen = edit_list(sae, edits)
    check_fits(sae, model)
    n = _check_count(max_new_tokens)
    ids = model.to_tokens(prompt)
    if should_stop is not None and not callable(should_stop):
        raise InputError(f"should_stop must be a callable returning a bool, got {should_stop!r}.")
    splice = [edited_splice(sae, chosen)]

    def step(seq: torch.Tensor) -> int:
        logits = spliced_logits(model, splice, {"input_ids": seq, "attention_mask": torch.ones_like(seq)})
        return int(logits[0, -1].argmax(-1))

    new, stopped = greedy_loop(model, ids, step, n, should_stop)
    dec = model.tokenizer.decode
    return Generation(prompt=prompt, text=dec(new), new_ids=tuple(new), new_tokens=tuple(dec([i]) for i in new),
                      coefficient=_strength(chosen), layer=sae.cfg.layer_out, stopped_at_eos=stopped)


def feature_generate_sweep(model: Model, sae: SAE, prompt: str, features: Any,
                           alphas: Sequence[float] = (-10, -5, 0, 5, 10), *,
                           max_new_tokens: int = 20) -> SteeringSweep:
    """`feature_generate` with `steer` ``(features, alpha)`` once per alpha: a `SteeringSweep`
    (``vector_norm`` = the norm of the features' summed decoder rows, ``layer`` the output layer).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
    >>> sweep = feature_generate_sweep(model, sae, "The cat", [3], alphas=[0, 8], max_new_tokens=2)
    >>> sweep.coefficients, round(sweep.vector_norm, 4)
    ((0.0, 8.0), 1.0)
    """
    check_model(model, "feature_generate_sweep")
    coefs = _coef_list(alphas)
    first = edit_list(sae, steer(features, coefs[0]))[0]
    check_fits(sae, model)
    _check_count(max_new_tokens)
    model.to_tokens(prompt)
    gens = tuple(feature_generate(model, sae, prompt, [] if c == 0 else steer(first.features, c),
                                  max_new_tokens=max_new_tokens) for c in coefs)
    gens = tuple(Generation(**{**g.__dict__, "coefficient": c}) for g, c in zip(gens, coefs, strict=True))
    norm = float(sae.W_dec.detach()[list(first.features)].sum(0).norm())
    return SteeringSweep(prompt=prompt, coefficients=coefs, generations=gens, layer=sae.cfg.layer_out,
                         vector_norm=norm, model_name=model.name)


def feature_playground(model: Model, sae: SAE, prompt: str, features: Any, *,
                       alphas: Sequence[float] = (-10, 0, 10), max_new_tokens: int = 20,
                       min_alpha: float = -40.0, max_alpha: float = 40.0, step: float = 1.0,
                       title: str | None = None) -> SteeringPlayground:
    """`SteeringPlayground`: default (alpha 0) vs steered text side by side, with one slider
    for alpha (every feature in ``features`` is steered by it). ``alphas`` (with 0 added) are
    generated now and travel in the widget (the offline snapshot snaps to them); with a
    kernel the slider re-runs `feature_generate` in the background.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
    >>> w = feature_playground(model, sae, "The cat", [3], alphas=[5], max_new_tokens=2)
    >>> w.coefficients
    [0.0, 5.0]
    >>> seq = w.request(coefficient=-3.0)
    >>> w.wait(timeout=60)
    True
    >>> w.result("The cat", -3.0).new_ids == feature_generate(model, sae, "The cat", steer(3, -3.0),
    ...                                                         max_new_tokens=2).new_ids
    True
    >>> w.close()
    """
    from ..widgets.steering_playground import SteeringPlayground

    check_model(model, "feature_playground")
    if not isinstance(prompt, str):
        raise InputError(f"feature_playground takes one prompt (a str), got {type(prompt).__name__}.")
    coefs = sorted(set(_coef_list(alphas)) | {0.0})
    sweep = feature_generate_sweep(model, sae, prompt, features, alphas=coefs, max_new_tokens=max_new_tokens)
    feats = _features(features)
    n = int(max_new_tokens)

    def regenerate(text: str, alpha: float, should_stop: Callable[[], bool]) -> Generation:
        g = feature_generate(model, sae, text, [] if alpha == 0 else steer(feats, alpha),
                             max_new_tokens=n, should_stop=should_stop)
        return Generation(**{**g.__dict__, "coefficient": float(alpha)})

    c = sae.cfg
    name = title if title is not None else (
        f"{model.name}: features {list(feats)} of the {c.kind} at {c.site_out}@{c.layer_out} (alpha slider)")
    return SteeringPlayground(sweep, generator=regenerate, min_coefficient=min_alpha, max_coefficient=max_alpha,
                              step=step, title=name, max_new_tokens=n)


@dataclass(frozen=True)
class SideEffects:
    """What an edit changes besides its target (see `side_effects`). Per token over the texts:
    ``ce_clean``, ``ce_edited``, ``delta_ce`` (edited - clean, nats) and ``kl`` (mean
    KL(clean || edited)), each with a 95% bootstrap interval over texts (``*_ci``);
    ``per_text`` (n_texts, 4): summed clean CE, edited CE, KL, token count. For the edited
    ``prompts``: ``prompt_kl`` (n_prompts,) at the last position, ``prompt_top_clean`` /
    ``prompt_top_edited`` (the argmax tokens), and ``promoted`` / ``promoted_logprob``: the
    tokens whose mean log-probability over the prompts rose most, and by how much.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
    >>> fx = side_effects(model, sae, [], ["a b c d", "one two three"])
    >>> abs(fx.delta_ce) < 1e-4, fx.n_texts, list(fx.to_pandas().columns)[:2]
    (True, 2, ['ce_clean', 'ce_edited'])
    """

    edits: tuple[str, ...]
    n_texts: int
    n_tokens: int
    ce_clean: float
    ce_edited: float
    delta_ce: float
    delta_ce_ci: tuple[float, float]
    kl: float
    kl_ci: tuple[float, float]
    prompts: tuple[str, ...] = ()
    prompt_kl: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    prompt_top_clean: tuple[str, ...] = ()
    prompt_top_edited: tuple[str, ...] = ()
    promoted: tuple[str, ...] = ()
    promoted_logprob: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    per_text: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row: the held-out numbers and their intervals."""
        import pandas as pd

        return pd.DataFrame([{"ce_clean": self.ce_clean, "ce_edited": self.ce_edited, "delta_ce": self.delta_ce,
                              "delta_ce_low": self.delta_ce_ci[0], "delta_ce_high": self.delta_ce_ci[1],
                              "kl": self.kl, "kl_low": self.kl_ci[0], "kl_high": self.kl_ci[1],
                              "n_texts": self.n_texts, "n_tokens": self.n_tokens}],
                            index=["; ".join(self.edits) or "no edit"])

    def __repr__(self) -> str:
        lo, hi = self.delta_ce_ci
        return (f"SideEffects({'; '.join(self.edits) or 'no edit'}: delta CE {self.delta_ce:+.4f} "
                f"[{lo:+.4f}, {hi:+.4f}], KL {self.kl:.4f} over {self.n_texts} texts / {self.n_tokens} tokens)")


def _text_sums(model: Model, splice: Splice, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """(batch, 4): summed clean CE, edited CE, KL(clean || edited), next-token count per text."""
    ce_mask, _, _ = _masks(inputs)
    clean = _log_probs(spliced_logits(model, [], inputs))
    edited = _log_probs(spliced_logits(model, [splice], inputs))
    kl = ((clean.exp() * (clean - edited)).sum(-1) * ce_mask).sum(1).numpy()
    return np.stack([_ce(clean, inputs, ce_mask), _ce(edited, inputs, ce_mask), kl,
                     ce_mask.sum(1).numpy()], axis=1).astype(np.float64)


def _prompt_effects(model: Model, splice: Splice, prompts: list[str], top: int) -> dict[str, Any]:
    enc = model.encode(prompts)
    clean = torch.log_softmax(spliced_logits(model, [], enc)[:, -1].float(), -1)
    edited = torch.log_softmax(spliced_logits(model, [splice], enc)[:, -1].float(), -1)
    kl = (clean.exp() * (clean - edited)).sum(-1).numpy().astype(np.float32)
    shift = (edited - clean).mean(0)
    order = torch.argsort(-shift, stable=True)[:top]
    dec = model.decode_tokens
    return {"prompts": tuple(prompts), "prompt_kl": kl,
            "prompt_top_clean": tuple(dec(clean.argmax(-1))), "prompt_top_edited": tuple(dec(edited.argmax(-1))),
            "promoted": tuple(dec(order)), "promoted_logprob": shift[order].numpy().astype(np.float32)}


def side_effects(model: Model, sae: SAE, edits: Any, texts: Sequence[str], *, prompts: Sequence[str] | None = None,
                 context: int = 128, batch_size: int = 8, top: int = 10) -> SideEffects:
    """The cost of ``edits``: next-token CE and KL on ``texts`` (held-out text, e.g.
    ``mechscope.corpus.load("heldout")``; each cut to ``context`` tokens, texts under 2 tokens
    skipped, tokenized like `mechscope.sae.evaluate`), clean model vs the edited splice (error
    term on: with no edit the two agree to float error), intervals by bootstrap over texts;
    and, with ``prompts``, the edit's effect on their next-token distribution.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
    >>> fx = side_effects(model, sae, steer(3, 20.0), ["a b c d", "one two three"], prompts=["The cat"], top=3)
    >>> fx.kl > 0, fx.delta_ce_ci[0] <= fx.delta_ce <= fx.delta_ce_ci[1], len(fx.promoted)
    (True, True, 3)
    """
    check_model(model, "side_effects")
    chosen = edit_list(sae, edits)
    check_fits(sae, model)
    rows = _token_rows(model, texts, as_int(context, "context"))
    size = as_int(batch_size, "batch_size")
    if size < 1:
        raise InputError(f"batch_size must be at least 1, got {size}.")
    top = as_int(top, "top")
    if not 1 <= top <= 100:
        raise InputError(f"top must be an int in 1..100, got {top}.")
    plist = prompt_list(model, prompts, "prompts") if prompts is not None else []
    splice = edited_splice(sae, chosen)
    pad = int(model.tokenizer.pad_token_id)
    per = np.concatenate([_text_sums(model, splice, left_padded(rows[s:s + size], pad))
                          for s in range(0, len(rows), size)])

    def per_token(col: int) -> Callable[[np.ndarray], float]:
        return lambda r: float(r[:, col].sum() / max(r[:, 3].sum(), 1))

    dce, dlo, dhi = bootstrap(per, lambda r: (r[:, 1].sum() - r[:, 0].sum()) / max(r[:, 3].sum(), 1))
    kl, klo, khi = bootstrap(per, per_token(2))
    extra = _prompt_effects(model, splice, plist, min(top, model.vocab_size)) if plist else {}
    return SideEffects(edits=tuple(str(e) for e in chosen), n_texts=len(per), n_tokens=int(per[:, 3].sum()),
                       ce_clean=per_token(0)(per), ce_edited=per_token(1)(per), delta_ce=dce, delta_ce_ci=(dlo, dhi),
                       kl=kl, kl_ci=(klo, khi), per_text=per, **extra)


__all__ = ["FeatureEdit", "SideEffects", "ablate", "clamp", "edit_list", "edited_splice", "feature_generate",
           "feature_generate_sweep", "feature_playground", "side_effects", "steer"]
