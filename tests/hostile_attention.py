"""The `AttentionPatterns` widget built from a real tiny-llama `attention` result, with strings
from the hostile catalogue in every text it displays: tokens, score names, the induction
source and the title.

>>> from tests.hostile import CATALOGUE
>>> w = make(CATALOGUE[1])
>>> w.title == CATALOGUE[1], w.tokens[0] == CATALOGUE[0], w.score == CATALOGUE[2]
(True, True, True)
"""

from __future__ import annotations

import dataclasses

from mechscope.analysis.attention import attention
from mechscope.models.tiny import tiny_model
from mechscope.widgets.attention import AttentionPatterns
from tests.hostile import CATALOGUE, pick


def make(title: str) -> AttentionPatterns:
    """AttentionPatterns of tiny llama (3 layers x 4 heads) on a 16-token prompt whose tokens,
    score names and induction source are catalogue entries, titled ``title``."""
    att = attention(tiny_model("llama", n_layers=3), "the cat sat, the cat")
    att = dataclasses.replace(att, tokens=pick(len(att.tokens)), score_names=pick(4, 2),
                              induction_source=CATALOGUE[11], model_name=CATALOGUE[3])
    return AttentionPatterns(att, score=CATALOGUE[2], title=title)
