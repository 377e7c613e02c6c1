"""mechscope: a microscope for language models that lives in Jupyter.

Data flows one way: models -> interventions -> analysis -> widgets.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> result = mechscope.activations(model, "hello world")
>>> result.values.shape == (model.n_layers, len(result.tokens))
True
"""

from importlib import import_module
from typing import Any

from .analysis.activations import ActivationsResult, activations
from .analysis.attention import AttentionResult, attention
from .analysis.collect import collect
from .analysis.directions import Analogy, ConceptDirections, analogy, concept_directions
from .analysis.logit_lens import LogitLensResult, logit_lens
from .analysis.over_dataset import DatasetReading
from .analysis.polysemantic import PolysemanticResult, polysemantic
from .analysis.probes import AmnesicResult, ProbeResult, probe, project_out
from .analysis.selectivity import SelectivityResult, selectivity
from .analysis.store import ActivationStore
from .errors import (
    GenerationCancelled,
    InputError,
    MechscopeError,
    ModelLoadError,
    RemoteError,
    UnsupportedArchitectureError,
)
from .interventions.ablation import Ablated, AblationResult, Target, ablate, heads, layer, neurons
from .interventions.ablation_batch import AblationComparison, AblationEffect, compare_ablations
from .interventions.patching import CellPatch, PatchingResult, patch, patch_cell
from .interventions.steering import (
    Generation,
    SteeringSweep,
    SteeringVector,
    generate,
    steering_playground,
    steering_sweep,
    steering_vector,
)
from .interventions.steering_batch import SteeringEffect
from .models import Model, load, tiny_model

__version__ = "0.1.0"

#: Public submodules, imported on first use (``mechscope.metrics.logit_diff`` works after a
#: plain ``import mechscope``, and ``import mechscope`` stays as fast as before).
SUBMODULES = ("analysis", "circuits", "corpus", "datasets", "dynamics", "errors", "interventions", "metrics", "models",
              "publish", "sae", "toys", "validate", "widgets")
#: Names of `mechscope.publish` also offered at the top level, imported on first use.
_FROM_PUBLISH = ("PublishReport", "export_html", "publish_site")


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return import_module(f".{name}", __name__)
    if name in _FROM_PUBLISH:
        return getattr(import_module(".publish", __name__), name)
    raise AttributeError(f"module 'mechscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES) | set(_FROM_PUBLISH))

__all__ = [*SUBMODULES, *_FROM_PUBLISH,
    "ActivationStore",
    "AmnesicResult",
    "Analogy",
    "AttentionResult",
    "ConceptDirections",
    "PolysemanticResult",
    "ProbeResult",
    "analogy",
    "attention",
    "concept_directions",
    "polysemantic",
    "probe",
    "project_out",
    "Ablated",
    "AblationComparison",
    "AblationEffect",
    "AblationResult",
    "CellPatch",
    "DatasetReading",
    "ActivationsResult",
    "Generation",
    "GenerationCancelled",
    "InputError",
    "LogitLensResult",
    "MechscopeError",
    "Model",
    "ModelLoadError",
    "PatchingResult",
    "RemoteError",
    "SelectivityResult",
    "SteeringEffect",
    "SteeringSweep",
    "SteeringVector",
    "Target",
    "UnsupportedArchitectureError",
    "ablate",
    "collect",
    "compare_ablations",
    "activations",
    "generate",
    "heads",
    "layer",
    "load",
    "logit_lens",
    "neurons",
    "patch",
    "patch_cell",
    "selectivity",
    "steering_playground",
    "steering_sweep",
    "steering_vector",
    "tiny_model",
]
