"""Splicing dictionaries into a model's forward pass, with or without the error term.

A `Splice` replaces the value at a dictionary's output site (``site_out`` at ``layer_out``)
with what the dictionary makes of its input (``site`` at ``layer``):

- ``error_term=False``: the reconstruction ``x_hat = decode(encode(x))`` alone (what CE loss
  recovered measures);
- ``error_term=True``: ``decode(edit(f)) + (target - decode(f))``: the part the dictionary
  does not explain is added back, so with no ``edit`` the model runs exactly as it would
  (up to float error) and with an ``edit`` only the edited latents change the pass (the
  SAELens convention; Marks et al. 2024 call ``target - x_hat`` the error node).

``splice_first=False`` leaves each text's first real token as the model computes it: its
residual is an attention sink hundreds of times the norm of the others (SmolLM2: ~660 against
~100 in the middle layers), dictionaries are trained without it, and replacing it breaks
every later position's attention (Gemma Scope and SAELens evaluations skip it the same way).

``edit`` maps the latents (batch, positions, d_sae) to new latents: a steer, a clamp, an
ablation (`mechscope.sae.interventions` builds them). For a sparse autoencoder ``target`` is
``x``; for a transcoder it is the MLP's real output.

`spliced_logits(model, splices, inputs)` runs one trace with every splice applied (in the
order the forward pass reaches them) and returns the logits at every position.

>>> import mechscope, torch
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
>>> enc = model.encode(["the cat sat"])
>>> same = spliced_logits(model, [Splice(sae, error_term=True)], enc)
>>> with model.trace(enc):
...     clean = mechscope.models.trace.save(model.logits().all())
>>> bool(torch.allclose(same, clean, atol=1e-4))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.model import Model
from ..models.sites import STAGES, execution_order
from ..models.sites import site as get_site
from ..models.trace import save
from .dictionary import SAE

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Splice:
    """One dictionary spliced in: ``sae``, whether the error term is added back, an optional
    ``edit`` of its latents (see the module docstring).

    >>> from mechscope.sae import SAE
    >>> Splice(SAE.random(4, 8)).error_term
    False
    """

    sae: SAE
    error_term: bool = False
    edit: Edit | None = None
    splice_first: bool = True

    def value(self, x: torch.Tensor, target: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """What the output site gets, given the input ``x`` and the real ``target`` there;
        ``first`` (batch, positions) marks each text's first token (kept as ``target`` unless
        ``splice_first``)."""
        out = self._spliced(x, target)
        if first is not None and not self.splice_first:
            out = torch.where(first[..., None], target, out)
        return out

    def _spliced(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        f = sae.encode(x.float())
        skip = x.float() if sae.cfg.kind == "skip_transcoder" else None
        recon = sae.decode(f, skip)
        if self.edit is None and not self.error_term:
            return recon.to(target.dtype)
        new = recon if self.edit is None else sae.decode(_checked_edit(self.edit, f), skip)
        out = new + (target.float() - recon) if self.error_term else new
        return out.to(target.dtype)


def first_tokens(inputs: Any) -> torch.Tensor:
    """(batch, positions) True at each row's first real token (left padding respected).

    >>> import torch
    >>> first_tokens({"input_ids": torch.zeros(2, 3), "attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]])}).tolist()
    [[True, False, False], [False, True, False]]
    """
    ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
    mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
    if mask is None:
        mask = torch.ones(ids.shape[:2], dtype=torch.long)
    mask = mask.long()
    return (mask.cumsum(dim=1) == 1) & mask.bool()


def _checked_edit(edit: Edit, f: torch.Tensor) -> torch.Tensor:
    out = edit(f)
    if not isinstance(out, torch.Tensor) or out.shape != f.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"a latent edit must return a tensor shaped like its input {tuple(f.shape)}, got {got}.")
    return out


def check_fits(sae: SAE, model: Model) -> None:
    """`InputError` unless ``sae`` reads and writes sites of ``model`` of its widths.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> check_fits(SAE.random(7, 8, layer=0, model="other"), mechscope.tiny_model("llama"))
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: the dictionary reads 7-wide vectors (resid at layer 0, trained on 'other') but resid at layer 0 of tiny-llama-seed0 is 64 wide: load the dictionary made for this model and site.
    """
    cfg = sae.cfg
    for name, layer, width, what in ((cfg.site, cfg.layer, cfg.d_in, "reads"),
                                     (cfg.site_out, cfg.layer_out, cfg.d_out, "writes")):
        site = get_site(name, allowed=tuple(s for s in STAGES if s not in ("pattern", "heads")),
                        verb="a dictionary")
        layer = model.check_layer(layer)
        have = model.width(site)
        if have != width:
            trained = f", trained on {cfg.model!r}" if cfg.model else ""
            raise InputError(f"the dictionary {what} {width}-wide vectors ({name} at layer {layer}{trained}) "
                             f"but {name} at layer {layer} of {model.name} is {have} wide: load the "
                             "dictionary made for this model and site.")


def _plan(model: Model, splices: Sequence[Splice]) -> list[tuple[Splice, Any, Any]]:
    """(splice, input ref, output ref or None when it is the input) in forward-pass order."""
    outs: set[tuple[int, str]] = set()
    for sp in splices:
        if not isinstance(sp, Splice):
            raise InputError(f"splices must be Splice objects, got {type(sp).__name__}.")
        check_fits(sp.sae, model)
        c = sp.sae.cfg
        key = (c.layer_out, get_site(c.site_out).name)
        if key in outs:
            raise InputError(f"two dictionaries write {key[1]} at layer {key[0]}: splice one per site.")
        outs.add(key)
    by_input = {(sp.sae.cfg.layer, get_site(sp.sae.cfg.site).name): sp for sp in splices}
    if len(by_input) != len(splices):
        raise InputError("two dictionaries read the same site: splice one per site.")
    plan = []
    for layer, name in execution_order(by_input):
        sp = by_input[(layer, name)]
        c = sp.sae.cfg
        out = (c.layer_out, get_site(c.site_out).name)
        same = out == (layer, name)
        if not same and execution_order([(layer, name), out])[0] != (layer, name):
            raise InputError(f"the dictionary reads {name} at layer {layer} after the {out[1]} at layer "
                             f"{out[0]} it writes: a dictionary must write where the pass comes later.")
        plan.append((sp, model.at(name, layer), None if same else model.at(c.site_out, c.layer_out)))
    return plan


def spliced_logits(model: Model, splices: Sequence[Splice], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (batch, positions, vocab) of one pass of ``inputs`` with every splice applied.

    Each dictionary's output must come before the next one's input in the forward pass (one
    dictionary per site; a transcoder's output is its own layer's MLP).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> tc = SAE.random(model.d_model, 32, kind="transcoder", layer=0)
    >>> spliced_logits(model, [Splice(tc)], model.encode(["a b c"])).shape[-1] == model.vocab_size
    True
    """
    plan = _plan(model, splices)
    unembed = model.logits()
    first = first_tokens(inputs)
    with model.trace(inputs):
        for sp, ref_in, ref_out in plan:
            x = ref_in.read()
            if ref_out is None:
                ref_in.write(sp.value(x, x, first))
            else:
                ref_out.write(sp.value(x, ref_out.read(), first))
        logits = save(unembed.all())
    return logits


__all__ = ["Splice", "check_fits", "spliced_logits", "first_tokens", "Edit"]
