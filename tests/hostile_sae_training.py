"""The `TrainingMonitor` widget from a real `mechscope.sae.train` run on tiny llama's residual
stream (two seeds), titled with a hostile string (the title is the only text it displays
besides numbers).

>>> from tests.hostile import CATALOGUE
>>> w = make(CATALOGUE[1])
>>> w.title == CATALOGUE[1], w.seeds
(True, [0, 1])
"""

from __future__ import annotations

from mechscope.analysis.collect import collect
from mechscope.models.tiny import tiny_model
from mechscope.sae.train import train
from mechscope.widgets.sae_training import TrainingMonitor


def make(title: str) -> TrainingMonitor:
    """The monitor of a TopK SAE (16 latents, k=2, seeds 0 and 1, 3 epochs) trained on tiny
    llama's layer-0 residual over six short texts, titled ``title``."""
    store = collect(tiny_model("llama"), ["the cat sat on the mat", "a b c d e f g", "one two three four"] * 2,
                    layers=[0], progress=False)
    res = train(store, layer=0, d_sae=16, k=2, batch_size=8, epochs=3, seeds=(0, 1), progress=False)
    return res.show(title=title)
