"""Toy models trained from scratch on CPU, to see mechanisms where the answer is known.

`superposition` trains the ReLU output model of Elhage et al. (2022), "Toy models of
superposition", over a sweep of feature sparsities and seeds (`SuperpositionResult`).

>>> from mechscope.toys import superposition
>>> res = superposition(n_features=3, n_hidden=2, sparsities=(0.0,), seeds=(0,), steps=5,
...                     batch=8, progress_bar=False)
>>> res.W.shape
(1, 1, 2, 3)
"""

from .superposition import SuperpositionResult, feature_geometry, superposition

__all__ = ["SuperpositionResult", "feature_geometry", "superposition"]
