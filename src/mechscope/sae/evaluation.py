"""`evaluate`: what the field reports about a dictionary, measured on a model and texts.

For each dictionary, over every real (non-padding) token of ``texts`` (each cut to
``context`` tokens):

- sparsity: ``l0`` (mean active latents per token) and its histogram; ``density`` (per latent,
  the fraction of tokens it fires on), ``dead_fraction`` (latents that never fire here),
  ``dense_fraction`` (latents on more than `DENSE` of tokens), the histogram of log10 density;
- reconstruction of the output site: ``fvu`` = sum ||y - y_hat||^2 / sum ||y - mean(y)||^2
  without each text's first token (attention-sink outliers dominate it otherwise; the usual
  sparsify/SAELens pitfall), ``fvu_with_first`` with it, ``explained_variance`` = 1 - fvu,
  ``l2_ratio`` = mean ||y_hat|| / ||y|| (below 1: shrinkage), ``cosine`` mean cos(y, y_hat);
- the model with the dictionary spliced in (`mechscope.sae.splice`, no error term; each text's
  first token left alone unless ``splice_first=True``, as for the ablations): next-token
  cross-entropy ``ce_clean``, ``ce_sae``, and with the output site zero-ablated (``ce_zero``)
  or mean-ablated (``ce_mean``, the mean over these tokens); ``ce_recovered`` =
  (ce_zero - ce_sae) / (ce_zero - ce_clean) (SAELens's "CE loss score"),
  ``ce_recovered_mean`` the same against mean ablation, ``delta_ce`` = ce_sae - ce_clean;
  ``kl`` = mean KL(clean || spliced) per token, ``kl_zero`` for zero ablation, ``kl_score`` =
  (kl_zero - kl) / kl_zero.

Intervals (95%, bootstrap over texts, fixed seed): ``ce_recovered_ci``, ``fvu_ci``, ``delta_ce_ci``.
Passes per batch: one clean, then per dictionary one spliced and one zero-ablated, then (a
second loop, once the mean is known) one mean-ablated.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> sae = SAE.random(model.d_model, 64, architecture="topk", k=8, layer=1, model=model.name)
>>> ev = evaluate(sae, model, ["the cat sat on the mat", "one two three four"], progress=False)
>>> round(ev.l0, 3), 0 <= ev.dead_fraction <= 1, ev.n_tokens
(8.0, True, 25)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model, left_padded
from ..models.sites import execution_order
from ..models.sites import site as get_site
from ..models.trace import save
from ..progress import progress as progress_bar
from ..stats import bootstrap
from ..validate import as_int, check_model
from .dictionary import SAE
from .splice import Splice, check_fits, first_tokens, spliced_logits

#: A latent firing on more than this fraction of tokens counts as dense.
DENSE = 0.1
#: Bins of the log10 density histogram: [-8, 0] in steps of 0.25 (never firing: left out).
DENSITY_EDGES = np.arange(-8.0, 0.01, 0.25)


@dataclass(frozen=True)
class SAEEvaluation:
    """One dictionary's numbers (see the module docstring for each); ``per_text`` holds the
    per-text sums the intervals resample (columns `PER_TEXT`).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> ev = evaluate(SAE.random(model.d_model, 16, layer=0), model, ["a b c d e"], progress=False)
    >>> ev.per_text.shape, "ce_recovered" in ev.to_pandas().columns
    ((1, 7), True)
    """

    name: str
    n_texts: int
    n_tokens: int
    l0: float
    l0_histogram: np.ndarray
    fvu: float
    fvu_with_first: float
    explained_variance: float
    l2_ratio: float
    cosine: float
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_mean: float
    ce_recovered: float
    ce_recovered_mean: float
    delta_ce: float
    kl: float
    kl_zero: float
    kl_score: float
    dead_fraction: float
    dense_fraction: float
    density: np.ndarray
    density_histogram: np.ndarray
    ce_recovered_ci: tuple[float, float]
    fvu_ci: tuple[float, float]
    delta_ce_ci: tuple[float, float]
    per_text: np.ndarray = field(repr=False)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row: every scalar number, by name."""
        import pandas as pd

        return pd.DataFrame([self.summary()], index=[self.name])

    def summary(self) -> dict[str, float]:
        """The scalar numbers as a dict."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, float | int) and k != "name"}

    def __str__(self) -> str:
        lo, hi = self.ce_recovered_ci
        return (f"{self.name}: L0 {self.l0:.1f}, FVU {self.fvu:.3f} (with first token {self.fvu_with_first:.3f}), "
                f"CE recovered {self.ce_recovered:.1%} [{lo:.1%}, {hi:.1%}] (vs mean ablation "
                f"{self.ce_recovered_mean:.1%}), delta CE {self.delta_ce:+.3f}, KL {self.kl:.3f}, "
                f"dead {self.dead_fraction:.1%}, dense {self.dense_fraction:.1%} over {self.n_tokens} tokens")


#: Per-text sums kept for the intervals, in this column order: summed token CE clean, spliced,
#: zero- and mean-ablated, next-token count; squared error and variance (around the mean) of
#: the output site over tokens bar the first.
PER_TEXT = ("ce_clean", "ce_sae", "ce_zero", "ce_mean", "n_ce", "sq_err", "variance")


class _Acc:
    """Running sums for one dictionary over the evaluation texts."""

    def __init__(self, sae: SAE, n_texts: int) -> None:
        c = sae.cfg
        self.fires = np.zeros(c.d_sae, np.int64)
        self.l0_counts = np.zeros(c.d_sae + 1, np.int64)
        self.per_text = np.zeros((n_texts, len(PER_TEXT)), np.float64)
        self.sums = {"later": np.zeros(c.d_out, np.float64), "all": np.zeros(c.d_out, np.float64)}
        self.sq = {"later": 0.0, "all": 0.0}
        self.err = {"later": 0.0, "all": 0.0}
        self.n = {"later": 0, "all": 0}
        self.l2 = 0.0
        self.cos = 0.0
        self.kl = 0.0
        self.kl_zero = 0.0
        self.mean = torch.zeros(c.d_out)
        self.key_in = f"{get_site(c.site).name}.{c.layer}"
        self.key_out = f"{get_site(c.site_out).name}.{c.layer_out}"


def evaluate(saes: SAE | Sequence[SAE], model: Model, texts: Sequence[str], *, context: int = 128,
             batch_size: int = 8, splice_first: bool = False, progress: bool = True) -> Any:
    """Evaluate one dictionary (-> `SAEEvaluation`) or several (-> a list, one clean pass shared).

    ``texts``: strings (e.g. held-out corpus documents), each cut to its first ``context``
    tokens; texts of fewer than 2 tokens are skipped. ``splice_first``: also replace each text's
    first token (default: left as the model computes it, in the spliced and the ablated runs
    alike; see `mechscope.sae.splice`). Each dictionary must fit ``model``
    (`mechscope.sae.splice.check_fits`), which is checked before any forward pass.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("gpt2")
    >>> a, b = SAE.random(model.d_model, 16, layer=0), SAE.random(model.d_model, 16, layer=1)
    >>> [round(e.fvu_ci[0], 3) <= round(e.fvu, 3) for e in evaluate([a, b], model, ["a b c", "d e f g"], progress=False)]
    [True, True]
    """
    single = isinstance(saes, SAE)
    dicts: list[SAE] = [saes] if isinstance(saes, SAE) else list(saes)
    model = check_model(model, "evaluate")
    if not dicts or not all(isinstance(s, SAE) for s in dicts):
        raise InputError("evaluate needs an SAE or a non-empty list of them.")
    for s in dicts:
        check_fits(s, model)
    rows = _token_rows(model, texts, as_int(context, "context"))
    batch_size = as_int(batch_size, "batch_size")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    accs = [_Acc(s, len(rows)) for s in dicts]
    pad = int(model.tokenizer.pad_token_id)
    batches = [(start, left_padded(rows[start:start + batch_size], pad))
               for start in range(0, len(rows), batch_size)]
    with progress_bar(total=2 * len(batches), desc="evaluate", unit="batch", enabled=bool(progress)) as bar:
        for start, inputs in batches:
            _first_pass(model, dicts, accs, inputs, start, splice_first)
            bar.update(1)
        for acc in accs:
            acc.mean = torch.from_numpy((acc.sums["later"] / max(acc.n["later"], 1)).astype(np.float32))
        for start, inputs in batches:
            for acc in accs:
                _mean_pass(model, acc, inputs, start, splice_first)
            bar.update(1)
    results = [_result(s, a) for s, a in zip(dicts, accs, strict=True)]
    return results[0] if single else results


def _token_rows(model: Model, texts: Sequence[str], context: int) -> list[list[int]]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError("texts must be a list of strings (e.g. held-out corpus documents).")
    if context < 2:
        raise InputError(f"context must be at least 2 tokens (a token and the one it predicts), got {context}.")
    rows = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is a {type(text).__name__}, not a string.")
        ids = model.tokenizer(text, add_special_tokens=True)["input_ids"][:context]
        if len(ids) >= 2:
            rows.append(list(ids))
    if not rows:
        raise InputError("no text has two tokens or more: give longer texts to evaluate on.")
    return rows


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def _masks(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next-token mask (b, t-1), real tokens (b, t), real tokens bar each text's first (b, t))."""
    att = inputs["attention_mask"].bool()
    later = att & (att.long().cumsum(dim=1) > 1)
    return (att[:, :-1] & att[:, 1:]).float(), att, later


def _ce(logp: torch.Tensor, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> np.ndarray:
    """Per-text summed next-token cross-entropy over ``mask`` (batch, positions - 1)."""
    nll = -logp.gather(-1, inputs["input_ids"][:, 1:, None])[..., 0]
    return (nll * mask).sum(dim=1).numpy()


def _kl(clean: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((clean.exp() * (clean - other)).sum(-1) * mask).sum())


def _first_pass(model: Model, dicts: list[SAE], accs: list[_Acc], inputs: dict[str, torch.Tensor],
                start: int, splice_first: bool) -> None:
    ce_mask, real, later = _masks(inputs)
    values, logits = _clean_values(model, accs, inputs)
    clean = _log_probs(logits)
    rows = slice(start, start + len(ce_mask))
    for sae, acc in zip(dicts, accs, strict=True):
        _reconstruction(sae, acc, values[acc.key_in].float(), values[acc.key_out].float(), real, later, rows)
        acc.per_text[rows, 0] = _ce(clean, inputs, ce_mask)
        acc.per_text[rows, 4] = ce_mask.sum(dim=1).numpy()
        spliced = _log_probs(spliced_logits(model, [Splice(sae, splice_first=splice_first)], inputs))
        acc.per_text[rows, 1] = _ce(spliced, inputs, ce_mask)
        acc.kl += _kl(clean, spliced, ce_mask)
        zeroed, _ = _ablated(model, acc.key_out, inputs, torch.zeros(sae.cfg.d_out), splice_first)
        acc.per_text[rows, 2] = _ce(zeroed, inputs, ce_mask)
        acc.kl_zero += _kl(clean, zeroed, ce_mask)


def _mean_pass(model: Model, acc: _Acc, inputs: dict[str, torch.Tensor], start: int, splice_first: bool) -> None:
    ce_mask, _, later = _masks(inputs)
    rows = slice(start, start + len(ce_mask))
    logp, y = _ablated(model, acc.key_out, inputs, acc.mean, splice_first)
    acc.per_text[rows, 3] = _ce(logp, inputs, ce_mask)
    dev = ((y.float() - acc.mean) ** 2).sum(-1) * later
    acc.per_text[rows, 6] = dev.sum(dim=1).numpy()


def _ablated(model: Model, key: str, inputs: dict[str, torch.Tensor], value: torch.Tensor,
             splice_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs with site ``key`` ("mlp.3") replaced by ``value`` (each text's first token too
    only if ``splice_first``), and its clean value."""
    name, layer = key.rsplit(".", 1)
    ref = model.at(name, int(layer))
    unembed = model.logits()
    keep = first_tokens(inputs)[..., None] & (not splice_first)
    with model.trace(inputs):
        y = ref.read()
        clean = save(y.clone())
        ref.write(torch.where(keep, y, torch.zeros_like(y) + value.to(y.dtype)))
        logits = save(unembed.all())
    return _log_probs(logits), clean


def _clean_values(model: Model, accs: list[_Acc], inputs: dict[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One clean trace: each dictionary's input and output site values, and the logits."""
    keys = {k for a in accs for k in (a.key_in, a.key_out)}
    order = execution_order((int(k.rsplit(".", 1)[1]), k.rsplit(".", 1)[0]) for k in keys)
    refs = [model.at(name, layer) for layer, name in order]
    unembed = model.logits()
    saved = []
    with model.trace(inputs):
        for ref in refs:
            saved.append(save(ref.read().clone()))
        logits = save(unembed.all())
    return {f"{name}.{layer}": v for (layer, name), v in zip(order, saved, strict=True)}, logits


def _reconstruction(sae: SAE, acc: _Acc, x: torch.Tensor, y: torch.Tensor, real: torch.Tensor,
                    later: torch.Tensor, rows: slice) -> None:
    """Sparsity and reconstruction sums of one batch (tokens selected by the masks)."""
    with torch.no_grad():
        f = sae.encode(x)
        y_hat = sae.decode(f, x if sae.cfg.kind == "skip_transcoder" else None)
    active = (f[real] > 0)
    acc.fires += active.sum(0).numpy()
    acc.l0_counts += np.bincount(active.sum(1).numpy(), minlength=len(acc.l0_counts))
    err = ((y - y_hat) ** 2).sum(-1)
    for part, mask in (("all", real), ("later", later)):
        acc.sums[part] += y[mask].double().sum(0).numpy()
        acc.sq[part] += float((y[mask].double() ** 2).sum())
        acc.err[part] += float(err[mask].double().sum())
        acc.n[part] += int(mask.sum())
    acc.per_text[rows, 5] = (err * later).sum(dim=1).numpy()
    norm_y, norm_hat = y[real].norm(dim=-1), y_hat[real].norm(dim=-1)
    acc.l2 += float((norm_hat / norm_y.clamp_min(1e-12)).sum())
    acc.cos += float(torch.nn.functional.cosine_similarity(y[real], y_hat[real], dim=-1).sum())


def _fvu(acc: _Acc, part: str) -> float:
    n = max(acc.n[part], 1)
    variance = acc.sq[part] - float((acc.sums[part] ** 2).sum()) / n
    return acc.err[part] / variance if variance > 0 else float("nan")


def _ratio(r: np.ndarray) -> float:
    ce = r[:, :4].sum(0) / max(r[:, 4].sum(), 1)
    return float((ce[2] - ce[1]) / (ce[2] - ce[0]))


def _result(sae: SAE, acc: _Acc) -> SAEEvaluation:
    r = acc.per_text
    n_tok = acc.n["all"]
    n_ce = max(r[:, 4].sum(), 1)
    ce = r[:, :4].sum(0) / n_ce
    density = (acc.fires / max(n_tok, 1)).astype(np.float32)
    alive = density[density > 0]
    hist, _ = np.histogram(np.log10(alive), bins=DENSITY_EDGES) if alive.size else (np.zeros(len(DENSITY_EDGES) - 1), None)
    ce_rec, ce_lo, ce_hi = bootstrap(r, _ratio)
    _, fvu_lo, fvu_hi = bootstrap(r, lambda t: t[:, 5].sum() / t[:, 6].sum())
    _, dce_lo, dce_hi = bootstrap(r, lambda t: (t[:, 1].sum() - t[:, 0].sum()) / max(t[:, 4].sum(), 1))
    fvu = _fvu(acc, "later")
    kl = acc.kl / n_ce
    kl_zero = acc.kl_zero / n_ce
    c = sae.cfg
    name = f"{c.kind} {c.architecture} {c.site}@{c.layer}" + (f" (k={c.k})" if c.k else "")
    return SAEEvaluation(
        name=name, n_texts=len(r), n_tokens=n_tok, l0=float(acc.fires.sum() / max(n_tok, 1)),
        l0_histogram=acc.l0_counts, fvu=fvu, fvu_with_first=_fvu(acc, "all"), explained_variance=1 - fvu,
        l2_ratio=acc.l2 / max(n_tok, 1), cosine=acc.cos / max(n_tok, 1),
        ce_clean=float(ce[0]), ce_sae=float(ce[1]), ce_zero=float(ce[2]), ce_mean=float(ce[3]),
        ce_recovered=ce_rec, ce_recovered_mean=float((ce[3] - ce[1]) / (ce[3] - ce[0])),
        delta_ce=float(ce[1] - ce[0]), kl=kl, kl_zero=kl_zero,
        kl_score=(kl_zero - kl) / kl_zero if kl_zero > 0 else float("nan"),
        dead_fraction=float((density == 0).mean()), dense_fraction=float((density > DENSE).mean()),
        density=density, density_histogram=np.asarray(hist, np.int64),
        ce_recovered_ci=(ce_lo, ce_hi), fvu_ci=(fvu_lo, fvu_hi), delta_ce_ci=(dce_lo, dce_hi), per_text=r)


__all__ = ["evaluate", "SAEEvaluation", "DENSE", "PER_TEXT"]
