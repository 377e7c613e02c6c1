"""Sparse dictionary features: sparse autoencoders and transcoders on a model's sites.

`SAE` (one dictionary; `mechscope.sae.dictionary`), with its maths in torch and numpy.

>>> import mechscope
>>> sae = mechscope.sae.SAE.random(d_in=16, d_sae=64, architecture="topk", k=8)
>>> sae.cfg.d_sae
64
"""

from .dictionary import ARCHITECTURES, KINDS, SAE, SAEConfig

__all__ = ["SAE", "SAEConfig", "ARCHITECTURES", "KINDS"]
