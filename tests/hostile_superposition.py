"""The `Superposition` widget built from a real (small) toy-model sweep, with strings from the
hostile catalogue in every text it displays (feature labels and the title).

>>> from tests.hostile import CATALOGUE
>>> w = make(CATALOGUE[1])
>>> w.title == CATALOGUE[1], w.feature_labels[0] == CATALOGUE[0]
(True, True)
"""

from __future__ import annotations

from itertools import cycle, islice

from mechscope.toys import superposition
from mechscope.widgets.superposition import Superposition
from tests.hostile import CATALOGUE


def make(title: str) -> Superposition:
    """A Superposition widget (6 features in 2 dims, 2 sparsities x 2 seeds) whose feature
    labels are catalogue entries and whose title is ``title``."""
    res = superposition(n_features=6, n_hidden=2, sparsities=(0.0, 0.95), seeds=(0, 1),
                        steps=200, batch=64, progress_bar=False)
    labels = list(islice(cycle(CATALOGUE), 6))
    return Superposition(res, feature_labels=labels, title=title, sparsity_index=1)
