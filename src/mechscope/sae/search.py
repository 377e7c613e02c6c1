"""Finding features with no external service: by a text, by two sets of texts, by a token.

- `top_features(sae, model, text)`: the latents most active on one text, ranked by their
  maximum and by their mean activation over its tokens;
- `separating_features(sae, model, texts_a, texts_b)`: latents whose per-text mean activation
  differs between two sets of texts (the text is the unit: its tokens are not independent):
  difference of means, firing rates, Welch's t and AUROC per latent, and permutation p-values
  (shuffling which set each text is in) with the family-wise error over all ``d_sae`` latents
  controlled by the max-``|t|`` permutation method (Westfall & Young): with thousands of latents
  some separate two small sets by chance, and ``p_fwer`` says which do not;
- `promoting_features(sae, model, token)`: latents whose decoder row, read through the
  unembedding (the direct path only), most raises the token's logit.

``skip_first=True`` (the default) leaves each text's first token out: many models park an
"attention sink" there whose huge activations would top every list.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
>>> top = top_features(sae, model, "the cat sat on the mat", k=3)
>>> top.by_max.shape, bool(top.max_value[0] >= top.max_value[-1])
((3,), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model, _check_unicode, left_padded
from ..models.trace import save
from ..validate import as_int, check_model
from .dictionary import SAE
from .splice import check_fits


def _check(sae: SAE, model: Model, verb: str, k: Any) -> int:
    check_model(model, verb, "its second argument")
    if not isinstance(sae, SAE):
        raise InputError(f"{verb} needs a mechscope.sae.SAE dictionary first, got {type(sae).__name__}.")
    check_fits(sae, model)
    k = as_int(k, "k")
    if k < 1:
        raise InputError(f"k must be at least 1 (more than d_sae={sae.cfg.d_sae} gives all latents), got {k}.")
    return min(k, sae.cfg.d_sae)


def _rows(model: Model, texts: Any, what: str, context: int, skip_first: bool) -> list[list[int]]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(f"{what} must be a list of strings, got {type(texts).__name__}.")
    if not texts:
        raise InputError(f"{what} is empty: give at least one text.")
    rows = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or text == "":
            raise InputError(f"{what}[{i}] must be a non-empty string, got {text!r}.")
        _check_unicode(text, f"{what}[{i}]")
        ids = list(model.tokenizer(text, add_special_tokens=True)["input_ids"][:context])
        if len(ids) < 1 + int(skip_first):
            raise InputError(f"{what}[{i}] ({text!r}) is one token, and skip_first=True leaves its first "
                             "token out: give a longer text or skip_first=False.")
        rows.append(ids)
    return rows


def _latents(sae: SAE, model: Model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dictionary's latents (batch, positions, d_sae) at its input site, one trace."""
    ref = model.at(sae.cfg.site, sae.cfg.layer)
    with model.trace(inputs):
        x = save(ref.read())
    with torch.no_grad():
        return sae.encode(x.float())


def _kept(inputs: dict[str, torch.Tensor], skip_first: bool) -> torch.Tensor:
    att = inputs["attention_mask"].bool()
    return att & (att.long().cumsum(dim=1) > 1) if skip_first else att


def _ranked(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first; ties to the lower index."""
    return np.argsort(-values, kind="stable")[:k]


@dataclass(frozen=True)
class TopFeatures:
    """The latents most active on ``text``: ``by_max`` (k,) ranked by their maximum over the
    counted tokens (``max_value``, at token ``max_position``), ``by_mean`` (k,) by their mean
    (``mean_value``); ``activations`` (n_tokens, k): each ``by_max`` latent at every token
    (the first too, even when it is not counted); ``tokens`` the text's tokens.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> t = top_features(SAE.random(model.d_model, 16, layer=0), model, "one two three", k=2)
    >>> list(t.to_pandas().columns)
    ['feature_by_max', 'max', 'at_token', 'feature_by_mean', 'mean']
    """

    text: str
    tokens: tuple[str, ...]
    by_max: np.ndarray
    max_value: np.ndarray
    max_position: np.ndarray
    by_mean: np.ndarray
    mean_value: np.ndarray
    activations: np.ndarray = field(repr=False)
    skip_first: bool = True

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per rank: the latent by max (its max and the token there) and by mean."""
        import pandas as pd

        return pd.DataFrame({"feature_by_max": self.by_max, "max": self.max_value,
                             "at_token": [self.tokens[p] for p in self.max_position],
                             "feature_by_mean": self.by_mean, "mean": self.mean_value})

    def __repr__(self) -> str:
        return (f"TopFeatures({len(self.by_max)} of {len(self.tokens)} tokens: by max "
                f"{self.by_max[:5].tolist()}, by mean {self.by_mean[:5].tolist()})")


def top_features(sae: SAE, model: Model, text: str, k: int = 10, *, skip_first: bool = True) -> TopFeatures:
    """The ``k`` latents with the largest maximum and the largest mean activation over the
    tokens of ``text`` (its first token left out unless ``skip_first=False``).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("gpt2")
    >>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
    >>> t = top_features(sae, model, "the cat sat on the mat", k=4)
    >>> t.activations.shape == (len(t.tokens), 4), len(t.tokens) == len(model.str_tokens("the cat sat on the mat"))
    (True, True)
    """
    k = _check(sae, model, "top_features", k)
    ids = model.to_tokens(text)
    if skip_first and ids.shape[1] < 2:
        raise InputError(f"the text {text!r} is one token, and skip_first=True leaves its first token out: "
                         "give a longer text or skip_first=False.")
    f = _latents(sae, model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})[0].numpy()
    counted = f[1:] if skip_first else f
    maxes, means = counted.max(0), counted.mean(0)
    by_max, by_mean = _ranked(maxes, k), _ranked(means, k)
    pos = counted[:, by_max].argmax(0) + int(skip_first)
    return TopFeatures(text=text, tokens=tuple(model.decode_tokens(ids)), by_max=by_max, max_value=maxes[by_max],
                       max_position=pos, by_mean=by_mean, mean_value=means[by_mean],
                       activations=f[:, by_max].astype(np.float32), skip_first=bool(skip_first))


def _per_text(sae: SAE, model: Model, rows: list[list[int]], skip_first: bool,
              batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean activation, firing rate) per text and latent, each (n_texts, d_sae), float64."""
    pad = int(model.tokenizer.pad_token_id)
    means, rates = [], []
    for s in range(0, len(rows), batch_size):
        inputs = left_padded(rows[s:s + batch_size], pad)
        f = _latents(sae, model, inputs).double()
        keep = _kept(inputs, skip_first).double()[..., None]
        n = keep.sum(1)
        means.append(((f * keep).sum(1) / n).numpy())
        rates.append((((f > 0).double() * keep).sum(1) / n).numpy())
    return np.concatenate(means), np.concatenate(rates)


def _welch(sum_a: np.ndarray, sq_a: np.ndarray, sum_b: np.ndarray, sq_b: np.ndarray,
           na: int, nb: int) -> np.ndarray:
    """Welch's t from per-group sums and sums of squares (any leading shape); 0 for 0/0."""
    ma, mb = sum_a / na, sum_b / nb
    va = np.maximum(sq_a - na * ma ** 2, 0) / (na - 1)
    vb = np.maximum(sq_b - nb * mb ** 2, 0) / (nb - 1)
    se = np.sqrt(va / na + vb / nb)
    diff = ma - mb
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 1e-12 * (np.abs(ma) + np.abs(mb) + 1e-30), diff / se, np.sign(diff) * np.inf)
    return np.where(np.abs(diff) <= 1e-12 * (np.abs(ma) + np.abs(mb)), 0.0, t)


def _auroc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a text of set a scores above one of set b) + half the ties, per column (ranks)."""
    pooled = np.concatenate([a, b])
    order = np.argsort(pooled, axis=0, kind="stable")
    ranks = np.empty_like(pooled)
    np.put_along_axis(ranks, order, np.arange(1, len(pooled) + 1, dtype=np.float64)[:, None], axis=0)
    for j in range(pooled.shape[1]):  # average ranks of ties, only where a column has ties
        col = pooled[:, j]
        if len(np.unique(col)) < len(col):
            _, inv, counts = np.unique(col, return_inverse=True, return_counts=True)
            starts = np.cumsum(counts) - counts
            ranks[:, j] = (starts + (counts + 1) / 2)[inv]
    na, nb = len(a), len(b)
    return (ranks[:na].sum(0) - na * (na + 1) / 2) / (na * nb)


def _permutation_p(x: np.ndarray, na: int, t: np.ndarray, n_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-latent permutation p, family-wise max-``|t|`` p) from ``n_perm`` relabellings of the texts."""
    n = len(x)
    rng = np.random.default_rng(seed)
    sq = x ** 2
    total, total_sq = x.sum(0), sq.sum(0)
    raw = np.zeros(x.shape[1], np.int64)
    fwer = np.zeros(x.shape[1], np.int64)
    obs = np.abs(t)
    for start in range(0, n_perm, 64):
        m = min(64, n_perm - start)
        pick = np.zeros((m, n))
        for r in range(m):
            pick[r, rng.permutation(n)[:na]] = 1.0
        sa, qa = pick @ x, pick @ sq
        tp = np.abs(_welch(sa, qa, total - sa, total_sq - qa, na, n - na))
        raw += (tp >= obs - 1e-12).sum(0)
        fwer += (tp.max(1)[:, None] >= obs - 1e-12).sum(0)
    return (raw + 1) / (n_perm + 1), (fwer + 1) / (n_perm + 1)


@dataclass(frozen=True)
class SeparatingFeatures:
    """Per latent (d_sae,) over texts: ``mean_a``/``mean_b`` (mean of the per-text mean
    activations), ``diff`` (a - b), ``rate_a``/``rate_b`` (mean per-text firing rate), ``t``
    (Welch), ``auroc`` (how well one text's mean activation tells a from b; 0.5 = not at all),
    ``p_raw`` (permutation p of that latent alone) and ``p_fwer`` (adjusted for testing all
    d_sae latents: the share of relabellings whose largest ``|t|`` over every latent reaches this
    one's; the smallest possible is 1 / (n_permutations + 1)). ``top`` (k,): latents by ``|t|``.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sep = separating_features(SAE.random(model.d_model, 16, layer=1), model, ["a b c", "a c b"],
    ...                           ["x y z", "z y x"], k=3, n_permutations=50)
    >>> sep.top.shape, list(sep.to_pandas().columns)[:3]
    ((3,), ['feature', 'mean_a', 'mean_b'])
    """

    top: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    diff: np.ndarray
    rate_a: np.ndarray
    rate_b: np.ndarray
    t: np.ndarray
    auroc: np.ndarray
    p_raw: np.ndarray
    p_fwer: np.ndarray
    n_a: int
    n_b: int
    n_permutations: int
    labels: tuple[str, str] = ("a", "b")

    def significant(self, level: float = 0.05) -> np.ndarray:
        """Latents with ``p_fwer <= level``, by ``|t|`` (family-wise error over all latents <= level)."""
        hits = np.flatnonzero(self.p_fwer <= level)
        return hits[np.argsort(-np.abs(self.t[hits]), kind="stable")]

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per ``top`` latent with every per-latent number."""
        import pandas as pd

        i = self.top
        return pd.DataFrame({"feature": i, "mean_a": self.mean_a[i], "mean_b": self.mean_b[i], "diff": self.diff[i],
                             "rate_a": self.rate_a[i], "rate_b": self.rate_b[i], "t": self.t[i],
                             "auroc": self.auroc[i], "p_raw": self.p_raw[i], "p_fwer": self.p_fwer[i]})

    def __repr__(self) -> str:
        return (f"SeparatingFeatures({self.labels[0]!r} ({self.n_a} texts) vs {self.labels[1]!r} ({self.n_b}): "
                f"top {self.top[:5].tolist()}, {len(self.significant())} with p_fwer <= 0.05 of "
                f"{len(self.t)} latents, {self.n_permutations} permutations)")


def separating_features(sae: SAE, model: Model, texts_a: Sequence[str], texts_b: Sequence[str], k: int = 10, *,
                        skip_first: bool = True, context: int = 128, batch_size: int = 8,
                        n_permutations: int = 1000, seed: int = 0,
                        labels: tuple[str, str] = ("a", "b")) -> SeparatingFeatures:
    """Latents that separate ``texts_a`` from ``texts_b`` (at least 2 texts each; each cut to
    ``context`` tokens), ranked by ``|Welch t|`` of the per-text mean activations, with permutation
    p-values (``n_permutations`` relabellings from ``seed``; see `SeparatingFeatures`).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 16, layer=1, model=model.name)
    >>> sep = separating_features(sae, model, ["good fine", "great nice"], ["bad sad", "awful grim"], k=2,
    ...                           n_permutations=20)
    >>> bool(((sep.p_fwer >= sep.p_raw) & (sep.p_raw > 0)).all()), sep.n_a
    (True, 2)
    """
    k = _check(sae, model, "separating_features", k)
    context, batch_size = as_int(context, "context"), as_int(batch_size, "batch_size")
    n_perm = as_int(n_permutations, "n_permutations")
    if context < 1 or batch_size < 1 or n_perm < 1:
        raise InputError(f"context, batch_size and n_permutations must be >= 1, got {context}, {batch_size}, {n_perm}.")
    rows_a = _rows(model, texts_a, "texts_a", context, bool(skip_first))
    rows_b = _rows(model, texts_b, "texts_b", context, bool(skip_first))
    for rows, what in ((rows_a, "texts_a"), (rows_b, "texts_b")):
        if len(rows) < 2:
            raise InputError(f"{what} has {len(rows)} text: a t-statistic over texts needs at least 2 per set.")
    a, ra = _per_text(sae, model, rows_a, bool(skip_first), batch_size)
    b, rb = _per_text(sae, model, rows_b, bool(skip_first), batch_size)
    na, nb = len(a), len(b)
    t = _welch(a.sum(0), (a ** 2).sum(0), b.sum(0), (b ** 2).sum(0), na, nb)
    p_raw, p_fwer = _permutation_p(np.concatenate([a, b]), na, t, n_perm, as_int(seed, "seed"))
    score = np.nan_to_num(np.abs(t), posinf=np.finfo(np.float64).max)
    f32 = np.float32
    return SeparatingFeatures(
        top=_ranked(score, k), mean_a=a.mean(0).astype(f32), mean_b=b.mean(0).astype(f32),
        diff=(a.mean(0) - b.mean(0)).astype(f32), rate_a=ra.mean(0).astype(f32), rate_b=rb.mean(0).astype(f32),
        t=t.astype(f32), auroc=_auroc(a, b).astype(f32), p_raw=p_raw, p_fwer=p_fwer, n_a=na, n_b=nb,
        n_permutations=n_perm, labels=(str(labels[0]), str(labels[1])))


@dataclass(frozen=True)
class PromotingFeatures:
    """Latents whose direct logit effect most raises ``token``: ``features`` (k,), their
    ``logit_effect`` on it (``W_dec[i] . W_U[token]``, after the final norm's gain when
    folded), ``centred`` (minus the mean effect over the vocabulary: what a softmax sees),
    ``token_rank`` (how many tokens the latent raises more; 0 = the token is its top one),
    ``top_tokens`` (k, n_top): each latent's most promoted tokens; ``effects`` (d_sae,) all latents.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> p = promoting_features(SAE.random(model.d_model, 16), model, model.decode_tokens([7])[0], k=2)
    >>> p.token_id, list(p.to_pandas().columns)
    (7, ['feature', 'logit_effect', 'centred', 'token_rank', 'top_tokens'])
    """

    token: str
    token_id: int
    features: np.ndarray
    logit_effect: np.ndarray
    centred: np.ndarray
    token_rank: np.ndarray
    top_tokens: tuple[tuple[str, ...], ...]
    effects: np.ndarray = field(repr=False)
    folded_norm: bool = True

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per latent: its effect on the token, centred, the token's rank, its top tokens."""
        import pandas as pd

        return pd.DataFrame({"feature": self.features, "logit_effect": self.logit_effect, "centred": self.centred,
                             "token_rank": self.token_rank, "top_tokens": [list(t) for t in self.top_tokens]})

    def __repr__(self) -> str:
        return f"PromotingFeatures({self.token!r} (id {self.token_id}): {self.features[:5].tolist()})"


def promoting_features(sae: SAE, model: Model, token: str | int, k: int = 10, *, fold_norm: bool = True,
                       n_top: int = 5) -> PromotingFeatures:
    """The ``k`` latents whose decoder row, through the unembedding, most raises ``token``'s
    logit (a single token, e.g. ``" dog"``, or an id). The direct path only: what the row
    adds to the residual read straight off by the unembedding (later layers ignored);
    ``fold_norm`` multiplies by the final norm's gain first (``fold_norm=False``: ``W_dec @
    W_U.T`` as SAELens dashboards do). The dictionary must write ``d_model``-wide vectors.

    >>> import mechscope, torch
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> sae = SAE.random(model.d_model, 16, layer=1, model=model.name)
    >>> tid = model.to_single_token(model.decode_tokens([42])[0])
    >>> with torch.no_grad():
    ...     _ = sae.W_dec[5].copy_(model.hf.lm_head.weight[tid] / model.hf.lm_head.weight[tid].norm())
    >>> int(promoting_features(sae, model, tid, k=3).features[0])
    5
    """
    k = _check(sae, model, "promoting_features", k)
    tid = model.to_single_token(token)
    n_top = as_int(n_top, "n_top")
    if not 1 <= n_top <= 100:
        raise InputError(f"n_top must be an int in 1..100, got {n_top}.")
    if sae.cfg.d_out != model.d_model:
        raise InputError(f"promoting_features reads decoder rows through the unembedding, so the dictionary must "
                         f"write d_model={model.d_model}-wide vectors; it writes {sae.cfg.site_out} "
                         f"({sae.cfg.d_out} wide).")
    with torch.no_grad():
        weight: torch.Tensor = getattr(model.hf_module_at(model.adapter.unembed_path), "weight")  # noqa: B009
        w_u = weight.detach().float()  # (vocab, d_model)
        gain = getattr(model.hf_module_at(model.adapter.final_norm_path), "weight", None)
        if fold_norm and gain is not None:
            w_u = w_u * gain.detach().float()
        w_dec = sae.W_dec.detach().float()
        effects = (w_dec @ w_u[tid]).numpy()
        feats = _ranked(effects, k)
        rows = w_dec[torch.as_tensor(feats)] @ w_u.T  # (k, vocab)
        centred = (rows[:, tid] - rows.mean(1)).numpy()
        rank = (rows > rows[:, tid:tid + 1]).sum(1).numpy()
        best = torch.argsort(-rows, dim=1, stable=True)[:, :n_top]
    tops = tuple(tuple(model.decode_tokens(r)) for r in best)
    return PromotingFeatures(token=model.decode_tokens([tid])[0], token_id=tid, features=feats,
                             logit_effect=effects[feats].astype(np.float32), centred=centred.astype(np.float32),
                             token_rank=rank.astype(np.int64), top_tokens=tops, effects=effects.astype(np.float32),
                             folded_norm=bool(fold_norm and gain is not None))


__all__ = ["PromotingFeatures", "SeparatingFeatures", "TopFeatures", "promoting_features", "separating_features",
           "top_features"]
