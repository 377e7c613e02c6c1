"""`features_on`: which dictionary features fire on each token of one prompt (the prompt-centric
view of `mechscope.sae.dashboard`).

>>> import mechscope
>>> from mechscope.sae import SAE
>>> m = mechscope.tiny_model("llama")
>>> p = features_on(SAE.random(m.d_model, 16, layer=1), m, "the cat sat", top=4)
>>> p.features.shape == (len(p.tokens), 4), p.values.dtype
(True, dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..validate import as_int, check_model
from .dictionary import SAE
from .splice import check_fits


@dataclass(frozen=True)
class PromptFeatures:
    """Per token of ``tokens``: ``features`` (tokens, top) the most active features (-1 where
    fewer than ``top`` fire) and ``values`` their activations (0 there), highest first.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> p = features_on(SAE.random(m.d_model, 16, layer=1), m, "a b", top=2)
    >>> list(p.to_pandas().columns)
    ['position', 'token', 'rank', 'feature', 'activation']
    """

    prompt: str
    tokens: list[str]
    features: np.ndarray
    values: np.ndarray
    d_sae: int
    site: str
    layer: int

    def __repr__(self) -> str:
        return f"PromptFeatures({len(self.tokens)} tokens, top {self.features.shape[1]} of {self.d_sae} features)"

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per (token, rank) with a firing feature."""
        import pandas as pd

        rows = [(t, self.tokens[t], r, int(self.features[t, r]), float(self.values[t, r]))
                for t in range(len(self.tokens)) for r in range(self.features.shape[1]) if self.features[t, r] >= 0]
        return pd.DataFrame(rows, columns=["position", "token", "rank", "feature", "activation"])

    def show(self, dashboards: Any = None, **kwargs: Any) -> Any:
        """`mechscope.widgets.feature_dashboard.FeatureDashboard` in prompt mode: the token row,
        a token's features on click, and a feature's card when ``dashboards`` (a
        `mechscope.sae.dashboard.FeatureDashboards` of the same dictionary) is given.

        >>> import mechscope
        >>> from mechscope.sae import SAE
        >>> m = mechscope.tiny_model("llama")
        >>> features_on(SAE.random(m.d_model, 16, layer=1), m, "a b c").show().prompt_ids["shape"]
        [3]
        """
        from ..widgets.feature_dashboard import FeatureDashboard

        return FeatureDashboard(dashboards, prompt=self, **kwargs)


def features_on(sae: SAE, model: Model, prompt: str, *, top: int = 5) -> PromptFeatures:
    """The ``top`` most active features of ``sae`` at each token of ``prompt``.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> m = mechscope.tiny_model("llama")
    >>> features_on(SAE.random(m.d_model, 16, layer=1), m, "a b", top=0)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: top must be between 1 and d_sae=16, got 0.
    """
    model = check_model(model, "features_on")
    if not isinstance(sae, SAE):
        raise InputError(f"features_on needs an SAE, got {type(sae).__name__}.")
    check_fits(sae, model)
    top = as_int(top, "top")
    if not 1 <= top <= sae.cfg.d_sae:
        raise InputError(f"top must be between 1 and d_sae={sae.cfg.d_sae}, got {top}.")
    ids = model.to_tokens(prompt)
    ref = model.at(sae.cfg.site, sae.cfg.layer)
    with model.trace(ids) as tracer:
        x = save(ref.read().clone())
        tracer.stop()
    with torch.no_grad():
        f = sae.encode(x[0].float())
    vals, idx = torch.topk(f, top, dim=1)
    fired = vals > 0
    return PromptFeatures(prompt=prompt, tokens=model.decode_tokens(ids),
                          features=torch.where(fired, idx, -1).numpy().astype(np.int32),
                          values=torch.where(fired, vals, 0).numpy().astype(np.float32),
                          d_sae=sae.cfg.d_sae, site=sae.cfg.site, layer=sae.cfg.layer)


__all__ = ["features_on", "PromptFeatures"]
