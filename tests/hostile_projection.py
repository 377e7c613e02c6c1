"""`ProjectionScatter` built from a real tiny-model `ConceptDirections` with hostile strings
everywhere it shows text.

``make(title)`` computes concept directions on a tiny Llama over two topics, then puts entries
of `tests.hostile.CATALOGUE` into every displayed string: the class names (legend, tooltip,
text chips), every text's tokens (tooltip and token panel), the axis names, the value name and
the title; per-token values (one NaN, drawn hatched) colour the tokens, two points are selected.

>>> w = make("</script><b>t</b>")
>>> w.title, w.n_points, w.selected
('</script><b>t</b>', 8, [0, 5])
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tests.hostile import CATALOGUE, pick


def make(title: str) -> Any:
    """A hostile `ProjectionScatter`: 8 points of 2 hostile classes, hostile tokens and values."""
    import mechscope
    from mechscope.analysis.directions import concept_directions
    from mechscope.datasets.labelled import labelled_texts
    from mechscope.widgets.projection import ProjectionScatter

    model = mechscope.tiny_model("llama", n_layers=2)
    cd = concept_directions(model, labelled_texts(["animals", "code"], n_per_class=4), layer=1, k=2)
    cd = dataclasses.replace(cd, classes=(CATALOGUE[2], CATALOGUE[9]))
    tokens = [pick(3, 3 * i) for i in range(len(cd.labels))]
    values = [np.array([float(cd.mean_projection[i]), -1.0, 2.0], np.float32) for i in range(len(tokens))]
    values[0][1] = np.nan
    w = ProjectionScatter.from_directions(cd, tokens, axes=("mean_projection", "pc1"), token_values=values,
                                          title=title, value_name=CATALOGUE[0])
    w.x_name, w.y_name = CATALOGUE[1], CATALOGUE[11]
    w.selected = [0, 5]
    return w
