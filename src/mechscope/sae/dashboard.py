"""`dashboards`: a feature dashboard (SAEDashboard / Neuronpedia style) for every latent of a
dictionary, computed in one streaming pass over a corpus and cached.

Per feature: ``density`` (fraction of tokens where it fires, > 0), ``max_act``, a 50-bin
histogram of log10 of its positive activations (`HIST_EDGES`), the ``n_top`` top activating
tokens with ``window`` tokens of context either side (the context's activations too), and
``n_quantiles`` bands of equal width over ``(0, max_act]`` with ``per_quantile`` sampled tokens
each (see `mechscope.sae.dashboard_stream` for the sampling); logit effects: the decoder row
through the unembedding, ``W_dec[f] * g @ W_U.T`` where ``g`` is the final norm's weight when
the model has one (folded like TransformerLens's ``fold_ln``, which SAELens dashboards inherit;
the norm's centering and scale are left out, so only the ranking and relative sizes mean much),
the ``n_logits`` most positive and most negative tokens; and the ``n_neighbours`` features of
highest decoder cosine. Each text is cut to ``context`` tokens; a leading BOS token is left out
(attention-sink outliers would fill every top list).

Memory: one batch of (tokens, d_sae) activations at a time. With ``out_dir`` the running state
is checkpointed after each batch (atomic writes), so an interrupted run continues where it
stopped and gives the same numbers; the finished dashboards are saved there and loaded again by
a later call with the same inputs.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> sae = SAE.random(model.d_model, 32, layer=1, model=model.name)
>>> d = dashboards(sae, model, ["the cat sat on the mat", "one two three"], n_top=3, progress=False)
>>> d.top_value.shape, d.q_value.shape, d.logit_top_ids.shape
((32, 3), (32, 10, 5), (32, 10))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model, left_padded
from ..models.trace import save
from ..progress import progress as progress_bar
from ..validate import as_int, check_model
from .dashboard_io import load_arrays, read_json, save_arrays, write_json
from .dashboard_prompt import PromptFeatures, features_on
from .dashboard_stream import HIST_EDGES, StreamState
from .dictionary import SAE
from .splice import check_fits

#: Called after each batch with the number of batches done (tests interrupt a run through it).
AFTER_BATCH: list[Callable[[int], None]] = []


@dataclass(frozen=True)
class FeatureCard:
    """One feature's dashboard: numbers and, for each example, its tokens (strings) and their
    activations (NaN outside the text).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> card = dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c d"], n_top=2, progress=False).feature(3)
    >>> card.index, len(card.top_tokens) <= 2, card.histogram.shape, len(card.logit_top)
    (3, True, (50,), 10)
    """

    index: int
    density: float
    max_act: float
    histogram: np.ndarray
    top_values: np.ndarray
    top_tokens: list[list[str]]
    top_acts: np.ndarray
    quantile_values: np.ndarray
    quantile_tokens: list[list[list[str]]]
    logit_top: list[tuple[str, float]]
    logit_bottom: list[tuple[str, float]]
    neighbours: list[tuple[int, float]]


@dataclass(frozen=True)
class FeatureDashboards:
    """Every feature's dashboard as plain arrays, features first (see the module docstring).

    ``features`` (n,) the dictionary's indices of the rows; ``top_*`` (n, n_top[, 2w+1]);
    ``q_*`` (n, n_quantiles, per_quantile[, 2w+1]), value 0 and index -1 for an empty slot;
    ``*_tokens`` indices into ``vocab`` (-1 outside the text), ``*_acts`` the activations over
    the window (NaN outside); ``*_text`` / ``*_pos`` where each example is in ``texts``.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> d = dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c d"], features=[1, 5], progress=False)
    >>> d.features.tolist(), list(d.to_pandas().columns[:3])
    ([1, 5], ['density', 'max_act', 'n_fired'])
    """

    features: np.ndarray
    n_tokens: int
    density: np.ndarray
    max_act: np.ndarray
    histogram: np.ndarray
    top_value: np.ndarray
    top_text: np.ndarray
    top_pos: np.ndarray
    top_tokens: np.ndarray
    top_acts: np.ndarray
    q_value: np.ndarray
    q_text: np.ndarray
    q_pos: np.ndarray
    q_tokens: np.ndarray
    q_acts: np.ndarray
    logit_top_ids: np.ndarray
    logit_top: np.ndarray
    logit_bottom_ids: np.ndarray
    logit_bottom: np.ndarray
    neighbours: np.ndarray
    neighbour_cos: np.ndarray
    vocab: list[str] = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"FeatureDashboards({len(self.features)} features over {self.n_tokens} tokens, "
                f"{int((self.density == 0).sum())} dead)")

    def row(self, index: int) -> int:
        """The row of dictionary feature ``index`` (an `InputError` if it was not computed).

        >>> import mechscope
        >>> from mechscope.sae import SAE
        >>> m = mechscope.tiny_model("llama")
        >>> dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c"], features=[4, 6], progress=False).row(6)
        1
        """
        hits = np.nonzero(self.features == index)[0] if isinstance(index, int | np.integer) else []
        if not len(hits):
            shown = f"0..{int(self.features.max())}" if len(self.features) == int(self.features.max()) + 1 else \
                "the indices in .features"
            raise InputError(f"feature {index!r} is not in these dashboards ({len(self.features)} features): "
                             f"pick one of {shown}.")
        return int(hits[0])

    def feature(self, index: int) -> FeatureCard:
        """Dictionary feature ``index``'s `FeatureCard`.

        >>> import mechscope
        >>> from mechscope.sae import SAE
        >>> m = mechscope.tiny_model("llama")
        >>> d = dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c"], progress=False)
        >>> d.feature(2).index, len(d.feature(2).neighbours)
        (2, 7)
        """
        r = self.row(index)

        def toks(ids: np.ndarray) -> list[str]:
            return ["" if i < 0 else self.vocab[i] for i in ids.tolist()]

        filled = self.top_text[r] >= 0
        return FeatureCard(
            index=int(self.features[r]), density=float(self.density[r]), max_act=float(self.max_act[r]),
            histogram=self.histogram[r], top_values=self.top_value[r][filled],
            top_tokens=[toks(t) for t in self.top_tokens[r][filled]], top_acts=self.top_acts[r][filled],
            quantile_values=self.q_value[r], quantile_tokens=[[toks(t) for t in band] for band in self.q_tokens[r]],
            logit_top=[(self.vocab[i], float(v)) for i, v in zip(self.logit_top_ids[r], self.logit_top[r], strict=True)],
            logit_bottom=[(self.vocab[i], float(v))
                          for i, v in zip(self.logit_bottom_ids[r], self.logit_bottom[r], strict=True)],
            neighbours=[(int(i), float(c)) for i, c in zip(self.neighbours[r], self.neighbour_cos[r], strict=True)])

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per feature: density, max activation, tokens fired on, top logit token, nearest neighbour."""
        import pandas as pd

        return pd.DataFrame({
            "density": self.density, "max_act": self.max_act,
            "n_fired": np.rint(self.density * self.n_tokens).astype(np.int64),
            "top_logit": [self.vocab[i] for i in self.logit_top_ids[:, 0]] if self.logit_top_ids.size else "",
            "neighbour": self.neighbours[:, 0] if self.neighbours.size else -1,
        }, index=pd.Index(self.features, name="feature"))

    def save(self, directory: Any) -> Path:
        """Write ``dashboards.safetensors`` + ``dashboards.json`` (no pickle) into ``directory``.

        >>> import mechscope, tempfile
        >>> from mechscope.sae import SAE
        >>> m = mechscope.tiny_model("llama")
        >>> d = dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c"], progress=False)
        >>> FeatureDashboards.load(d.save(tempfile.mkdtemp())).n_tokens == d.n_tokens
        True
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("vocab", "meta", "n_tokens")}
        save_arrays(out / "dashboards.safetensors", arrays)
        write_json(out / "dashboards.json", {"n_tokens": self.n_tokens, "vocab": self.vocab, "meta": self.meta})
        return out

    @classmethod
    def load(cls, directory: Any) -> FeatureDashboards:
        """Read what `save` wrote (an `InputError` if ``directory`` holds no dashboards).

        >>> import tempfile
        >>> FeatureDashboards.load(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        mechscope.errors.InputError: no feature dashboards in ...: expected dashboards.safetensors and dashboards.json written by FeatureDashboards.save.
        """
        d = Path(directory)
        if not (d / "dashboards.safetensors").is_file() or not (d / "dashboards.json").is_file():
            raise InputError(f"no feature dashboards in {d}: expected dashboards.safetensors and dashboards.json "
                             "written by FeatureDashboards.save.")
        info = read_json(d / "dashboards.json")
        return cls(n_tokens=int(info["n_tokens"]), vocab=list(info["vocab"]), meta=dict(info["meta"]),
                   **load_arrays(d / "dashboards.safetensors"))

    def show(self, **kwargs: Any) -> Any:
        """The `mechscope.widgets.feature_dashboard.FeatureDashboard` widget of these dashboards
        (``kwargs``: its ``features``, ``max_features``, ``selected``, ``title``).

        >>> import mechscope
        >>> from mechscope.sae import SAE
        >>> m = mechscope.tiny_model("llama")
        >>> dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b c"], progress=False).show(selected=3).selected
        3
        """
        from ..widgets.feature_dashboard import FeatureDashboard

        return FeatureDashboard(self, **kwargs)


def _rows(model: Model, texts: Any, context: int) -> list[list[int]]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError("texts must be a list of strings (e.g. mechscope.corpus.load('train') documents).")
    bos = model.tokenizer.bos_token_id
    rows = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is a {type(text).__name__}, not a string.")
        ids = list(model.tokenizer(text, add_special_tokens=True)["input_ids"][:context + 1])
        if bos is not None and ids and ids[0] == bos:
            ids = ids[1:]
        rows.append(ids[:context])
    if not any(rows):
        raise InputError("no text has a token: give non-empty texts to build dashboards from.")
    return rows


def _features(features: Any, d_sae: int) -> np.ndarray:
    if features is None:
        return np.arange(d_sae)
    items = [features] if isinstance(features, int | np.integer) else list(features)
    out = []
    for f in items:
        if not isinstance(f, int | np.integer) or isinstance(f, bool) or not 0 <= int(f) < d_sae:
            raise InputError(f"feature {f!r} is out of range: this dictionary has features 0..{d_sae - 1}.")
        out.append(int(f))
    if not out or len(set(out)) != len(out):
        raise InputError("features must be a non-empty list of distinct feature indices (or None for all).")
    return np.array(sorted(out), np.int64)


def _batch_acts(model: Model, sae: SAE, ref: Any, rows: list[list[int]], feats: torch.Tensor | None) -> np.ndarray:
    """(real tokens, features) activations of one batch, in text order; the trace stops after the site."""
    inputs = left_padded(rows, int(model.tokenizer.pad_token_id))
    with model.trace(inputs) as tracer:
        x = save(ref.read().clone())
        tracer.stop()
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        f = sae.encode(x[real].float())
    return (f if feats is None else f[:, feats]).numpy().astype(np.float32, copy=False)


def dashboards(sae: SAE, model: Model, texts: Sequence[str], *, features: Any = None, context: int = 64,
               n_top: int = 20, n_quantiles: int = 10, per_quantile: int = 5, window: int = 5,
               n_logits: int = 10, n_neighbours: int = 10, batch_size: int = 8, out_dir: Any = None,
               progress: bool = True) -> FeatureDashboards:
    """Dashboards of ``features`` (default all) of ``sae`` over ``texts`` (see the module docstring).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b"], features=[9], progress=False)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: feature 9 is out of range: this dictionary has features 0..7.
    """
    model = check_model(model, "dashboards")
    if not isinstance(sae, SAE):
        raise InputError(f"dashboards needs an SAE, got {type(sae).__name__}.")
    check_fits(sae, model)
    feats = _features(features, sae.cfg.d_sae)
    sizes = {k: as_int(v, k) for k, v in dict(context=context, n_top=n_top, n_quantiles=n_quantiles,
                                               per_quantile=per_quantile, batch_size=batch_size,
                                               n_logits=n_logits, n_neighbours=n_neighbours).items()}
    for k, v in sizes.items():
        if v < 1:
            raise InputError(f"{k} must be at least 1, got {v}.")
    window = as_int(window, "window")
    if window < 0:
        raise InputError(f"window must be 0 or more tokens, got {window}.")
    rows = _rows(model, texts, sizes["context"])
    key = _fingerprint(sae, model, rows, feats, sizes, window)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / "dashboards.json").is_file():
        done = FeatureDashboards.load(out)
        if done.meta.get("fingerprint") == key:
            return done
    state = StreamState(len(feats), sizes["n_top"], sizes["n_quantiles"], sizes["per_quantile"], window)
    _stream(sae, model, rows, feats, state, sizes["batch_size"], out, key, progress)
    result = _result(sae, model, rows, feats, state, sizes, window, key)
    if out is not None:
        result.save(out)
        for name in ("state.safetensors", "state.json"):
            (out / name).unlink(missing_ok=True)
    return result


def _fingerprint(sae: SAE, model: Model, rows: list[list[int]], feats: np.ndarray, sizes: dict[str, int],
                 window: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([sae.cfg.to_dict(), model.name, sizes, window], sort_keys=True, default=str).encode())
    for name, w in sorted(sae.weights().items()):
        h.update(name.encode() + np.ascontiguousarray(w).tobytes())
    h.update(feats.tobytes())
    for r in rows:
        h.update(np.asarray(r, np.int64).tobytes() + b"|")
    return h.hexdigest()


def _stream(sae: SAE, model: Model, rows: list[list[int]], feats: np.ndarray, state: StreamState,
            batch_size: int, out: Path | None, key: str, progress: bool) -> None:
    """The one pass: batches of texts in order, resumed from ``out``'s checkpoint if it matches."""
    lengths = np.array([len(r) for r in rows])
    starts = np.r_[0, np.cumsum(lengths)]
    batches = [(b, min(b + batch_size, len(rows))) for b in range(0, len(rows), batch_size)]
    done = 0
    if out is not None and (out / "state.json").is_file():
        info = read_json(out / "state.json")
        if info.get("fingerprint") == key:
            state.load_arrays(load_arrays(out / "state.safetensors"))
            done = int(info["batches"])
    ref = model.at(sae.cfg.site, sae.cfg.layer)
    sel = None if len(feats) == sae.cfg.d_sae else torch.from_numpy(feats)
    with progress_bar(total=len(batches), initial=done, desc="dashboards", unit="batch", enabled=bool(progress)) as bar:
        for i in range(done, len(batches)):
            a, b = batches[i]
            kept = [r for r in rows[a:b] if r]
            if kept:
                acts = _batch_acts(model, sae, ref, kept, sel)
                text_of = np.repeat(np.arange(a, b), lengths[a:b])
                state.update(acts, text_of, int(starts[a]))
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                save_arrays(out / "state.safetensors", state.arrays())
                write_json(out / "state.json", {"fingerprint": key, "batches": i + 1})
            bar.update(1)
            for hook in AFTER_BATCH:
                hook(i + 1)


def _result(sae: SAE, model: Model, rows: list[list[int]], feats: np.ndarray, state: StreamState,
            sizes: dict[str, int], window: int, key: str) -> FeatureDashboards:
    flat = np.concatenate([np.asarray(r, np.int64) for r in rows])
    lengths = np.array([len(r) for r in rows])
    starts = np.r_[0, np.cumsum(lengths)]
    text_of = np.repeat(np.arange(len(rows)), lengths)
    n_tok = int(len(flat))
    top_ids, top_v, bot_ids, bot_v = logit_effects(sae, model, feats, sizes["n_logits"])
    nb, nb_cos = decoder_neighbours(sae, feats, sizes["n_neighbours"])
    used = [flat, top_ids.ravel(), bot_ids.ravel()]
    q, p = sizes["n_quantiles"], sizes["per_quantile"]
    shape_q = (len(feats), q, p)

    def where(index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ok = index >= 0
        safe = np.where(ok, index, 0)
        text = np.where(ok, text_of[safe] if n_tok else 0, -1)
        pos = np.where(ok, safe - starts[np.maximum(text, 0)], -1)
        off = np.arange(-window, window + 1)
        g = safe[..., None] + off
        inside = ok[..., None] & (g >= 0) & (g < n_tok)
        gc = np.clip(g, 0, max(n_tok - 1, 0))
        inside &= text_of[gc] == text[..., None]
        return text.astype(np.int32), pos.astype(np.int32), np.where(inside, flat[gc], -1)

    fired = state.top_value > 0  # a token where the feature does not fire is no example of it
    top_text, top_pos, top_tok = where(np.where(fired, state.top_index, -1))
    q_text, q_pos, q_tok = where(state.q_index)
    ids = np.unique(np.concatenate(used))
    remap = {int(t): k for k, t in enumerate(ids.tolist())}
    vocab = model.decode_tokens(ids) if len(ids) else []

    def to_vocab(a: np.ndarray) -> np.ndarray:
        return np.vectorize(lambda t: remap.get(int(t), -1), otypes=[np.int32])(a) if a.size else a.astype(np.int32)

    return FeatureDashboards(
        features=feats.astype(np.int32), n_tokens=n_tok, density=(state.count / max(n_tok, 1)).astype(np.float32),
        max_act=state.max.astype(np.float32), histogram=state.hist,
        top_value=np.where(fired, state.top_value, 0).astype(np.float32), top_text=top_text, top_pos=top_pos,
        top_tokens=to_vocab(top_tok), top_acts=np.where(fired[..., None], state.top_window, np.nan),
        q_value=state.q_value.reshape(shape_q), q_text=q_text.reshape(shape_q), q_pos=q_pos.reshape(shape_q),
        q_tokens=to_vocab(q_tok).reshape(*shape_q, -1), q_acts=state.q_window.reshape(*shape_q, -1),
        logit_top_ids=to_vocab(top_ids), logit_top=top_v, logit_bottom_ids=to_vocab(bot_ids), logit_bottom=bot_v,
        neighbours=nb, neighbour_cos=nb_cos, vocab=vocab,
        meta={"fingerprint": key, "site": sae.cfg.site, "layer": sae.cfg.layer, "d_sae": sae.cfg.d_sae,
              "model": model.name, "window": window, "hist_edges": HIST_EDGES.tolist(), **sizes})


def unembedding(model: Model) -> torch.Tensor:
    """(vocab, d_model) ``W_U`` with the final norm's weight folded in (``W_U * g``) when it has one.

    >>> import mechscope
    >>> tuple(unembedding(mechscope.tiny_model("llama")).shape)
    (400, 64)
    """
    weight: Any = model.hf_module_at(model.adapter.unembed_path).weight
    w_u = weight.detach().float()
    gamma = getattr(model.hf_module_at(model.adapter.final_norm_path), "weight", None)
    return w_u * gamma.detach().float()[None, :] if gamma is not None else w_u


def logit_effects(sae: SAE, model: Model, feats: np.ndarray, n: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top and bottom ``n`` (model token ids, values) of ``W_dec[feats] @ unembedding(model).T``.

    >>> import mechscope, numpy as np
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> ids, vals, _, low = logit_effects(SAE.random(m.d_model, 8, layer=0), m, np.arange(8), 3)
    >>> ids.shape, bool((vals[:, 0] >= vals[:, 1]).all() and (low[:, 0] <= low[:, 1]).all())
    ((8, 3), True)
    """
    w_u = unembedding(model)
    if sae.cfg.d_out != w_u.shape[1]:  # the decoder does not write model-wide vectors
        empty = np.zeros((len(feats), 0))
        return empty.astype(np.int64), empty.astype(np.float32), empty.astype(np.int64), empty.astype(np.float32)
    with torch.no_grad():
        eff = sae.W_dec.detach().float()[torch.from_numpy(feats)] @ w_u.T
    n = min(n, eff.shape[1])
    top = torch.topk(eff, n, dim=1)
    bot = torch.topk(eff, n, dim=1, largest=False)
    return top.indices.numpy(), top.values.numpy(), bot.indices.numpy(), bot.values.numpy()


def decoder_neighbours(sae: SAE, feats: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, n) the nearest other features by decoder cosine, and the cosines.

    >>> import numpy as np
    >>> from mechscope.sae import SAE
    >>> idx, cos = decoder_neighbours(SAE.random(4, 6), np.arange(6), 2)
    >>> idx.shape, bool((cos[:, 0] >= cos[:, 1]).all())
    ((6, 2), True)
    """
    w = sae.W_dec.detach().float()
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = min(n, w.shape[0] - 1)
    idx, cos = [], []
    for chunk in np.array_split(feats, max(1, len(feats) // 1024)):
        t = torch.from_numpy(chunk)
        sim = w[t] @ w.T
        sim[torch.arange(len(t)), t] = -float("inf")
        top = torch.topk(sim, n, dim=1)
        idx.append(top.indices.numpy().astype(np.int32))
        cos.append(top.values.numpy().astype(np.float32))
    return np.concatenate(idx), np.concatenate(cos)


__all__ = ["dashboards", "FeatureDashboards", "FeatureCard", "logit_effects", "decoder_neighbours", "unembedding",
           "HIST_EDGES", "features_on", "PromptFeatures"]
