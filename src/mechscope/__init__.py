"""mechscope: a microscope for language models that lives in Jupyter.

Data flows one way: models -> interventions -> analysis -> widgets.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> result = mechscope.activations(model, "hello world")
>>> result.values.shape == (model.n_layers, len(result.tokens))
True
"""

from . import dynamics
from .analysis.activations import ActivationsResult, activations
from .analysis.logit_lens import LogitLensResult, logit_lens
from .analysis.selectivity import SelectivityResult, selectivity
from .errors import (
    InputError,
    MechscopeError,
    ModelLoadError,
    RemoteError,
    UnsupportedArchitectureError,
)
from .interventions.ablation import Ablated, AblationResult, Target, ablate, heads, layer, neurons
from .interventions.patching import CellPatch, PatchingResult, patch, patch_cell
from .interventions.steering import (
    Generation,
    GenerationCancelled,
    SteeringSweep,
    SteeringVector,
    generate,
    steering_playground,
    steering_sweep,
    steering_vector,
)
from .models import Model, load, tiny_model
from .publish import PublishReport, export_html, publish

__version__ = "0.1.0"

__all__ = [
    "Ablated",
    "AblationResult",
    "CellPatch",
    "ActivationsResult",
    "Generation",
    "GenerationCancelled",
    "InputError",
    "LogitLensResult",
    "MechscopeError",
    "Model",
    "ModelLoadError",
    "PatchingResult",
    "PublishReport",
    "RemoteError",
    "SelectivityResult",
    "SteeringSweep",
    "SteeringVector",
    "Target",
    "UnsupportedArchitectureError",
    "ablate",
    "dynamics",
    "activations",
    "export_html",
    "generate",
    "heads",
    "layer",
    "load",
    "logit_lens",
    "neurons",
    "patch",
    "patch_cell",
    "publish",
    "selectivity",
    "steering_playground",
    "steering_sweep",
    "steering_vector",
    "tiny_model",
]
