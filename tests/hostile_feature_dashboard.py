"""`FeatureDashboard` (prompt mode, with cards) built from real tiny-model dashboards with hostile
strings everywhere it shows text.

``make(title)`` computes `mechscope.sae.dashboard.dashboards` of a random dictionary on a tiny
Llama and `features_on` a prompt, then replaces every vocabulary string (example tokens, logit
tokens) and every prompt token with entries of `tests.hostile.CATALOGUE`, and sets the title.

>>> w = make("</script><b>t</b>")
>>> w.title, w.prompt_ids["shape"][0] > 0, all(v in CATALOGUE for v in w.vocab)
('</script><b>t</b>', True, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.hostile import CATALOGUE, pick  # noqa: F401 - CATALOGUE: the doctest


def make(title: str) -> Any:
    """A hostile `FeatureDashboard`: a 24-feature dictionary, a 6-token prompt (its firing features
    carried), every string from the catalogue."""
    import mechscope
    from mechscope.sae import SAE
    from mechscope.sae.dashboard import dashboards, features_on
    from mechscope.widgets.feature_dashboard import FeatureDashboard

    model = mechscope.tiny_model("llama", n_layers=2)
    sae = SAE.random(model.d_model, 24, layer=1, model=model.name, seed=1)
    d = dashboards(sae, model, ["the cat sat on the mat", "one two three four", "a dog ran far"], n_top=5,
                   progress=False)
    d = dataclasses.replace(d, vocab=pick(len(d.vocab), 3))
    p = features_on(sae, model, "the cat ran", top=4)
    p = dataclasses.replace(p, tokens=pick(len(p.tokens), 5))
    return FeatureDashboard(d, prompt=p, title=title)
