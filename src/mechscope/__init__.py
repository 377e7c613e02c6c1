"""mechscope: a microscope for language models that lives in Jupyter.

Data flows one way: models -> interventions -> analysis -> widgets.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> result = mechscope.activations(model, "hello world")
>>> result.values.shape == (model.n_layers, len(result.tokens))
True
"""

from .analysis.activations import ActivationsResult, activations
from .analysis.logit_lens import LogitLensResult, logit_lens
from .analysis.selectivity import SelectivityResult, selectivity
from .errors import InputError, MechscopeError, ModelLoadError, RemoteError, UnsupportedArchitectureError
from .models import Model, load, tiny_model

__version__ = "0.1.0"

__all__ = [
    "ActivationsResult",
    "InputError",
    "LogitLensResult",
    "MechscopeError",
    "Model",
    "ModelLoadError",
    "RemoteError",
    "SelectivityResult",
    "UnsupportedArchitectureError",
    "activations",
    "load",
    "logit_lens",
    "selectivity",
    "tiny_model",
]
