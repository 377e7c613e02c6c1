"""Models: loading, architecture adapters, tiny test models.

`load` (the embedded model, a local directory, a hub id, or a model you built), `Model`
(sizes, tokens, validation), `ADAPTERS` (one `Adapter` per architecture family, keyed by the
Hugging Face ``model_type``) and `tiny_model` (random test models built in milliseconds):

>>> import mechscope
>>> from mechscope.models import ADAPTERS, tiny_model
>>> model = tiny_model("gpt2")
>>> model.adapter is ADAPTERS["gpt2"], (model.n_layers, model.d_model, model.n_heads)
(True, (2, 64, 4))
>>> wrapped = mechscope.load(model.hf, tokenizer=model.tokenizer)   # wrap an HF model
>>> wrapped.str_tokens("The cat") == model.str_tokens("The cat")
True
"""

from .adapters import ADAPTERS, Adapter
from .load import load
from .model import Model
from .tiny import tiny_model

__all__ = ["ADAPTERS", "Adapter", "Model", "load", "tiny_model"]
