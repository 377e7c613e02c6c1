"""`corpus_dashboards`: the dashboards of every feature of a shipped dictionary of the embedded
model (`mechscope.sae.shipped.available`), computed once over a fixed slice of the project's
corpus (`mechscope.corpus.load`) and cached.

The slice and the dashboard settings are `CONFIG`. The cache is one folder per dictionary and
settings, ``shipped.cache_dir() / "dashboards" / "<name>-<key>"``, where ``key`` hashes
`CONFIG`, the dictionary's weights, the model's name and the slice's texts: while the pass
runs it holds `mechscope.sae.dashboard.dashboards`'s checkpoint (an interrupted run resumes
from the last batch and gives the same numbers), then the finished dashboards (safetensors +
JSON). A later call with the same key reads them back without tokenising or running the model.

>>> import mechscope
>>> corpus_dashboards(mechscope.tiny_model("llama"))
Traceback (most recent call last):
...
mechscope.errors.InputError: corpus_dashboards('resid-15') needs the embedded SmolLM2-135M-Instruct (model = mechscope.load()), not tiny-llama-seed0; for another model pass a dictionary of its own as name=.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.model import Model
from ..validate import as_int, check_model
from .dashboard import FeatureDashboards, dashboards
from .dictionary import SAE
from .splice import check_fits

#: The corpus slice (the first ``n_texts`` documents of ``split`` in the corpus's fixed order,
#: each cut to ``max_chars`` characters, then to ``context`` tokens) and the dashboard settings.
#: About 100k tokens; changing any value changes the cache key.
CONFIG: dict[str, Any] = {
    "split": "train", "n_texts": 2250, "max_chars": 800, "context": 64, "batch_size": 16,
    "n_top": 20, "n_quantiles": 10, "per_quantile": 5, "window": 5, "n_logits": 10, "n_neighbours": 10,
}
_DASHBOARD_ARGS = ("context", "batch_size", "n_top", "n_quantiles", "per_quantile", "window", "n_logits",
                   "n_neighbours")


def corpus_dashboards(model: Model, name: Any = "resid-15", *, n_texts: int | None = None, progress: bool = True,
                      cache_dir: Any = None, corpus_dir: Any = None) -> FeatureDashboards:
    """Dashboards of all features of the shipped dictionary ``name`` (``"resid-8"``,
    ``"resid-15"``, ``"resid-22"``, ``"transcoder-15"``) over `CONFIG`'s corpus slice (``n_texts``
    overrides its document count), computed once and cached under ``cache_dir`` (default
    ``mechscope.sae.shipped.cache_dir() / "dashboards"``). ``name`` may also be an `SAE` of
    your own for ``model``; ``corpus_dir``: where the corpus is (default `mechscope.corpus.load`'s).

    Returns a `mechscope.sae.dashboard.FeatureDashboards` with one row per feature:
    ``d.show(selected=123)`` is the dashboard widget on feature 123 (its offline HTML carries at
    most 1,024 features), ``d.feature(123)`` its card, and
    ``features_on(sae, model, prompt).show(d)`` the prompt view, where clicking a feature opens
    its dashboard::

        model = mechscope.load()
        d = mechscope.sae.corpus_dashboards(model, "resid-15")       # ~100k tokens; then cached
        d.show(selected=123)
        mechscope.sae.features_on(mechscope.sae.embedded(model, 15), model, "The cat sat").show(d)

    >>> import mechscope, tempfile
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> corpus_dashboards(m, "resid-3")
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: no shipped dictionary named 'resid-3': available are ['resid-15', 'resid-22', 'resid-8', 'transcoder-15'] (or pass an SAE of your own as name=).
    >>> corpus_dashboards(m, SAE.random(m.d_model, 8, layer=1), corpus_dir=tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: the corpus is not built in ...: run `make corpus` (or `python -m mechscope.corpus`) first.
    """
    from ..corpus import load as load_corpus

    model = check_model(model, "corpus_dashboards")
    sae, label = _dictionary(model, name)
    n = CONFIG["n_texts"] if n_texts is None else as_int(n_texts, "n_texts")
    if n < 1:
        raise InputError(f"n_texts must be at least 1, got {n}.")
    if not isinstance(progress, bool):
        raise InputError(f"progress must be True or False, got {progress!r}.")
    settings = {**CONFIG, "n_texts": n}
    texts = load_corpus(settings["split"], cache_dir=corpus_dir).texts(n=n, max_chars=settings["max_chars"])
    key = _key(sae, model, settings, texts)
    out = _root(cache_dir) / f"{label}-{key[:16]}"
    done = _cached(out, key)
    if done is not None:
        return done
    result = dashboards(sae, model, texts, out_dir=out, progress=progress,
                        **{k: settings[k] for k in _DASHBOARD_ARGS})
    result = dataclasses.replace(result, meta={**result.meta, "dictionary": label, "corpus_key": key,
                                               "corpus": {**settings, "n_texts": len(texts)}})
    result.save(out)
    return result


def _dictionary(model: Model, name: Any) -> tuple[SAE, str]:
    """The dictionary to build dashboards of and the label of its cache folder; checks first."""
    from . import shipped
    from .formats import load

    if isinstance(name, SAE):
        check_fits(name, model)
        return name, f"own-{re.sub(r'[^A-Za-z0-9_]+', '_', name.cfg.site)}-{name.cfg.layer}"
    have = shipped.available()
    if not isinstance(name, str) or name not in have:
        raise InputError(f"no shipped dictionary named {name!r}: available are {have} (or pass an SAE of your own "
                         "as name=).")
    wanted = shipped.CONFIG["model"]
    if wanted not in str(model.name):
        raise InputError(f"corpus_dashboards({name!r}) needs the embedded {wanted} (model = mechscope.load()), "
                         f"not {model.name}; for another model pass a dictionary of its own as name=.")
    return load(shipped.WEIGHTS / name, model=model), name


def _key(sae: SAE, model: Model, settings: dict[str, Any], texts: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([settings, sae.cfg.to_dict(), model.name], sort_keys=True, default=str).encode())
    for name, w in sorted(sae.weights().items()):
        h.update(name.encode() + np.ascontiguousarray(w).tobytes())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def _root(cache_dir: Any) -> Path:
    from . import shipped

    return Path(cache_dir) if cache_dir is not None else shipped.cache_dir() / "dashboards"


def _cached(out: Path, key: str) -> FeatureDashboards | None:
    """The finished dashboards in ``out`` if they were made for ``key``, else None."""
    if not (out / "dashboards.json").is_file():
        return None
    try:
        done = FeatureDashboards.load(out)
    except (InputError, ValueError):  # a broken file: build again
        return None
    return done if done.meta.get("corpus_key") == key else None


__all__ = ["corpus_dashboards", "CONFIG"]
