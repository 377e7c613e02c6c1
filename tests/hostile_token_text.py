"""`TokenText` built from real tiny-model activations with hostile strings everywhere it shows text.

``make(title)`` reads a tiny Llama's neuron activations for two prompts, then puts entries of
`tests.hostile.CATALOGUE` into every displayed string: the tokens, the per-text labels, the
value row names, the score label and the title (plus NaN / inf values, drawn hatched).

>>> w = make("</script><b>t</b>")
>>> w.title, w.n_texts, len(w.rows)
('</script><b>t</b>', 2, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.hostile import CATALOGUE, pick


def make(title: str) -> Any:
    """A hostile `TokenText`: 2 texts, 2 value rows (one a tiny model's neuron, one diverging)."""
    import mechscope
    from mechscope.widgets.token_text import TokenText

    model = mechscope.tiny_model("llama", n_layers=2)
    results = [mechscope.activations(model, p, site="neurons", neuron=3) for p in ("the cat sat", "a dog ran far")]
    tokens = [pick(len(r.tokens), 4 * i) for i, r in enumerate(results)]
    act = [np.asarray(r.values[-1], dtype=np.float32) for r in results]
    signed = [a - float(np.mean(a)) for a in act]
    act[0] = act[0].copy()
    act[0][0] = np.nan
    signed[1] = signed[1].copy()
    signed[1][-1] = np.inf
    return TokenText(tokens, {CATALOGUE[2]: act, CATALOGUE[9]: signed}, labels=pick(2, 6),
                     scores=[float(np.nanmax(a)) for a in act], score_label=CATALOGUE[0], title=title)
