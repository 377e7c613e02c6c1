"""`FeatureDashboard`: browse the features of a dictionary (`mechscope.sae.dashboard.FeatureDashboards`).

A feature list (search by index, sort by index, density or max activation) and, for the
selected feature: its log10 activation histogram (canvas), its top and bottom logit effects as
bars, its top activating examples and its quantile bands (tokens coloured by activation, the
example's own token outlined; hover a token for its activation), and its decoder-cosine
neighbours (click one to go to it). Everything travels as binary arrays (token indices as
uint16, activations as float16), so the offline snapshot browses every feature it holds; it
holds at most ``max_features`` (default `MAX_FEATURES`, ~5 MB of state) and says so when it
leaves some out.

>>> import mechscope
>>> from mechscope.sae import SAE
>>> from mechscope.sae.dashboard import dashboards
>>> m = mechscope.tiny_model("llama")
>>> w = FeatureDashboard(dashboards(SAE.random(m.d_model, 16, layer=1), m, ["the cat sat"], progress=False))
>>> w.top_tokens["shape"], w.selected, w.note
([16, 20, 11], 0, '')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import encode_array
from .traits import ArrayTrait

#: At most this many features travel (and go into the offline snapshot): ~4.7 KB each.
MAX_FEATURES = 1024


def _tokens(a: np.ndarray, n_vocab: int) -> dict[str, Any]:
    """Vocabulary indices shifted by one (0: outside the text) as uint16 (int32 for huge vocabularies)."""
    return encode_array(a.astype(np.int64) + 1, "uint16" if n_vocab < 65535 else "int32")


def dashboard_arrays(d: Any, rows: np.ndarray) -> dict[str, Any]:
    """The widget's array traits for rows ``rows`` of a `FeatureDashboards`.

    >>> import mechscope, numpy as np
    >>> from mechscope.sae import SAE
    >>> from mechscope.sae.dashboard import dashboards
    >>> m = mechscope.tiny_model("llama")
    >>> a = dashboard_arrays(dashboards(SAE.random(m.d_model, 8, layer=0), m, ["a b"], progress=False), np.arange(3))
    >>> a["q_acts"]["dtype"], a["q_acts"]["shape"]
    ('float16', [3, 10, 5, 11])
    """
    nv = len(d.vocab)
    logit_ids = np.concatenate([d.logit_top_ids[rows], d.logit_bottom_ids[rows]], axis=1)
    return {
        "features": encode_array(d.features[rows], "int32"),
        "density": encode_array(d.density[rows], "float32"),
        "max_act": encode_array(d.max_act[rows], "float32"),
        "histogram": encode_array(d.histogram[rows], "int32"),
        "top_value": encode_array(d.top_value[rows], "float32"),
        "top_tokens": _tokens(d.top_tokens[rows], nv),
        "top_acts": encode_array(d.top_acts[rows], "float16"),
        "q_value": encode_array(d.q_value[rows], "float16"),
        "q_tokens": _tokens(d.q_tokens[rows], nv),
        "q_acts": encode_array(d.q_acts[rows], "float16"),
        "logit_ids": _tokens(logit_ids, nv),
        "logit_values": encode_array(np.concatenate([d.logit_top[rows], d.logit_bottom[rows]], axis=1), "float32"),
        "neighbours": encode_array(d.neighbours[rows], "int32"),
        "neighbour_cos": encode_array(d.neighbour_cos[rows], "float32"),
        "hist_edges": encode_array(np.asarray(d.meta.get("hist_edges", np.linspace(-4, 4, 51))), "float32"),
    }


def _check_inputs(dashboards: Any, prompt: Any, max_features: Any) -> Any:
    from ..sae.dashboard import FeatureDashboards
    from ..sae.dashboard_prompt import PromptFeatures

    if prompt is not None and not isinstance(prompt, PromptFeatures):
        raise InputError(f"prompt must be PromptFeatures (mechscope.sae.dashboard.features_on(...)), "
                         f"got {type(prompt).__name__}.")
    if dashboards is None and prompt is not None:
        return _no_dashboards(prompt)
    if not isinstance(dashboards, FeatureDashboards):
        raise InputError(f"FeatureDashboard takes FeatureDashboards (mechscope.sae.dashboard.dashboards(...)), "
                         f"got {type(dashboards).__name__}.")
    if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
        raise InputError(f"max_features must be a positive int, got {max_features!r}.")
    return dashboards


def _no_dashboards(prompt: Any) -> Any:
    """Empty dashboards (no feature carried) for a prompt view without them."""
    from ..sae.dashboard import FeatureDashboards

    z = np.zeros
    return FeatureDashboards(
        features=z(0, np.int32), n_tokens=0, density=z(0, np.float32), max_act=z(0, np.float32),
        histogram=z((0, 50), np.int64), top_value=z((0, 1), np.float32), top_text=z((0, 1), np.int32),
        top_pos=z((0, 1), np.int32), top_tokens=z((0, 1, 1), np.int32), top_acts=z((0, 1, 1), np.float32),
        q_value=z((0, 1, 1), np.float32), q_text=z((0, 1, 1), np.int32), q_pos=z((0, 1, 1), np.int32),
        q_tokens=z((0, 1, 1, 1), np.int32), q_acts=z((0, 1, 1, 1), np.float32), logit_top_ids=z((0, 1), np.int64),
        logit_top=z((0, 1), np.float32), logit_bottom_ids=z((0, 1), np.int64), logit_bottom=z((0, 1), np.float32),
        neighbours=z((0, 1), np.int32), neighbour_cos=z((0, 1), np.float32), vocab=[],
        meta={"site": prompt.site, "layer": prompt.layer})


def _rows(d: Any, prompt: Any, features: Any, max_features: int) -> np.ndarray:
    """Rows of ``d`` to carry: ``features``, else the prompt's firing features, else the first ones."""
    if features is None and prompt is not None:
        fired = sorted(set(prompt.features[prompt.features >= 0].tolist()) & set(d.features.tolist()))
        features = fired[:max_features]
    if features is None:
        return np.arange(min(len(d.features), max_features))
    items = [features] if isinstance(features, int | np.integer) else list(features)
    if len(items) > max_features:
        raise InputError(f"{len(items)} features asked for; at most max_features={max_features} travel "
                         "(the offline snapshot's size): pass fewer or raise max_features.")
    return np.array([d.row(f) for f in items], np.int64)


def _prompt_traits(prompt: Any, vocab: list[str]) -> dict[str, Any]:
    """The prompt's token indices (+1, into ``vocab``, extended in place), features and values."""
    where = {tok: i for i, tok in enumerate(vocab)}
    ids = []
    for tok in prompt.tokens:
        if tok not in where:
            where[tok] = len(vocab)
            vocab.append(tok)
        ids.append(where[tok])
    return {"prompt_ids": _tokens(np.array(ids, np.int64), len(vocab)),
            "prompt_features": encode_array(prompt.features, "int32"),
            "prompt_values": encode_array(prompt.values, "float32"),
            "prompt_token": int(np.argmax(prompt.values[:, 0])) if len(prompt.tokens) else -1}


class FeatureDashboard(MechscopeWidget):
    """The dashboards of `mechscope.sae.dashboard.FeatureDashboards` ``dashboards`` (see the
    module docstring). ``features``: which dictionary features to carry (default: the first
    ``max_features``, or with ``prompt`` those firing on it); ``selected``: the feature shown
    first (a dictionary index). ``prompt``: a `mechscope.sae.dashboard_prompt.PromptFeatures`
    for the prompt-centric mode (``dashboards`` may then be None: feature lists without cards).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> from mechscope.sae.dashboard import dashboards
    >>> m = mechscope.tiny_model("llama")
    >>> d = dashboards(SAE.random(m.d_model, 16, layer=1), m, ["the cat sat"], progress=False)
    >>> w = FeatureDashboard(d, max_features=4, selected=2)
    >>> w.note
    'showing 4 of 16 features (0..3); pass features=[...] to pick others'
    >>> FeatureDashboard(d, selected=40)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: selected=40 is not among the features shown: pick one of them (e.g. 0).
    """

    _esm = STATIC / "feature_dashboard.js"

    features = ArrayTrait("int32")
    """Encoded int32 (n,) the dictionary index of each row."""
    density = ArrayTrait("float32")
    """Encoded float32 (n,) fraction of tokens each feature fires on."""
    max_act = ArrayTrait("float32")
    """Encoded float32 (n,) each feature's largest activation."""
    histogram = ArrayTrait("int32")
    """Encoded int32 (n, bins) counts of log10 activation per bin of ``hist_edges``."""
    hist_edges = ArrayTrait("float32")
    """Encoded float32 (bins + 1,) the histogram's log10 edges."""
    top_value = ArrayTrait("float32")
    """Encoded float32 (n, n_top) top activations (0: empty slot)."""
    top_tokens = ArrayTrait("uint16")
    """Encoded (n, n_top, 2w+1) vocabulary index + 1 of each context token (0: outside the text)."""
    top_acts = ArrayTrait("float16")
    """Encoded float16 (n, n_top, 2w+1) the feature's activation on each context token."""
    q_value = ArrayTrait("float16")
    """Encoded float16 (n, bands, per_band) each band sample's activation."""
    q_tokens = ArrayTrait("uint16")
    """Encoded (n, bands, per_band, 2w+1) context tokens of the band samples (as ``top_tokens``)."""
    q_acts = ArrayTrait("float16")
    """Encoded float16 (n, bands, per_band, 2w+1) activations over those contexts."""
    logit_ids = ArrayTrait("uint16")
    """Encoded (n, 2 * n_logits) vocabulary index + 1 of the top then the bottom logit tokens."""
    logit_values = ArrayTrait("float32")
    """Encoded float32 (n, 2 * n_logits) their logit effects."""
    neighbours = ArrayTrait("int32")
    """Encoded int32 (n, n_neighbours) dictionary indices of the nearest features by decoder cosine."""
    neighbour_cos = ArrayTrait("float32")
    """Encoded float32 (n, n_neighbours) their cosines."""
    prompt_ids = ArrayTrait("uint16", optional=True)
    """Prompt mode: encoded (T,) vocabulary index + 1 of the prompt's tokens ({} otherwise)."""
    prompt_features = ArrayTrait("int32", optional=True)
    """Prompt mode: encoded int32 (T, top) each token's most active features (-1: none)."""
    prompt_values = ArrayTrait("float32", optional=True)
    """Prompt mode: encoded float32 (T, top) their activations."""
    prompt_token = t.Int(-1).tag(sync=True)
    """Prompt mode: the token whose features are listed (-1: none)."""
    vocab = t.List(t.Unicode()).tag(sync=True)
    """The token strings the index arrays point into (rendered as text)."""
    n_tokens = t.Int(0).tag(sync=True)
    """Tokens the dashboards were computed over."""
    title = t.Unicode("").tag(sync=True)
    """Title shown above the dashboard."""
    note = t.Unicode("").tag(sync=True)
    """Shown under the title: which features were left out ("" when none)."""
    selected = t.Int(0).tag(sync=True)
    """The dictionary index of the feature shown."""

    def __init__(self, dashboards: Any = None, *, prompt: Any = None, features: Any = None,
                 max_features: int = MAX_FEATURES, selected: int | None = None, title: str | None = None,
                 **kwargs: Any) -> None:
        d = _check_inputs(dashboards, prompt, max_features)
        rows = _rows(d, prompt, features, max_features)
        shown = d.features[rows]
        fired = prompt.features[prompt.features >= 0] if prompt is not None else np.zeros(0, np.int64)
        first = int(shown[0]) if len(shown) else int(fired[0]) if len(fired) else 0
        if prompt is not None and selected is None and len(fired):
            first = int(prompt.features.flat[int(np.argmax(prompt.values))])
        chosen = first if selected is None else selected
        if chosen not in set(shown.tolist()) | set(fired.tolist()) and (len(shown) or selected is not None):
            raise InputError(f"selected={chosen!r} is not among the features shown: pick one of them (e.g. {first}).")
        total = len(d.features)
        note = "" if len(rows) == total or prompt is not None else (
            f"showing {len(rows)} of {total} features ({shown[0]}..{shown[-1]}); pass features=[...] to pick others"
            if features is None else f"showing {len(rows)} chosen features of {total}")
        if prompt is not None and dashboards is None:
            note = "no dashboards given: pass show(dashboards=...) for each feature's card"
        vocab = list(d.vocab)
        extra = _prompt_traits(prompt, vocab) if prompt is not None else {}
        meta = d.meta
        super().__init__(**dashboard_arrays(d, rows), **extra, vocab=vocab,
                         n_tokens=int(d.n_tokens), note=note, selected=int(chosen),
                         title=title if title is not None else
                         f"features of {meta.get('site', '?')}@{meta.get('layer', '?')} ({meta.get('model', '')})",
                         **kwargs)

    def summary(self) -> str:
        n = self.features["shape"][0]
        mode = f", prompt of {self.prompt_ids['shape'][0]} tokens" if self.prompt_ids else ""
        return (f"FeatureDashboard: {n} features over {self.n_tokens} tokens{mode}, feature {self.selected} shown "
                f"- {self.title}")


__all__ = ["FeatureDashboard", "dashboard_arrays", "MAX_FEATURES"]
