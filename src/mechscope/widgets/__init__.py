"""Widgets: take results (never models) and draw them on canvas; one TS module each in js/widgets.

Build one from a result (``result.show()`` does the same); its text/plain is a summary of what it
draws and its text/html an offline snapshot that needs no kernel.

>>> import mechscope
>>> from mechscope.widgets import LogitLens
>>> model = mechscope.tiny_model("llama")
>>> w = LogitLens(mechscope.logit_lens(model, "hello world", top_k=3))
>>> w._repr_mimebundle_()[0]["text/plain"].startswith("LogitLens 'logit lens: tiny-llama-seed0'")
True
>>> LogitLens(model)
Traceback (most recent call last):
    ...
mechscope.errors.InputError: LogitLens takes a LogitLensResult (from mechscope.logit_lens), got Model.
"""

from .attention import AttentionPatterns
from .circuit_graph import CircuitGraph, GraphData
from .codec import decode_array, encode_array
from .dynamics import Dynamics
from .feature_dashboard import FeatureDashboard
from .heatmap import Heatmap
from .logit_lens import LogitLens
from .patching_map import PatchingMap
from .projection import ProjectionScatter
from .sae_training import TrainingMonitor
from .selectivity import Selectivity
from .steering_playground import SteeringPlayground
from .superposition import Superposition
from .token_text import TokenText

__all__ = ["AttentionPatterns", "CircuitGraph", "Dynamics", "FeatureDashboard", "Heatmap", "LogitLens", "PatchingMap", "ProjectionScatter", "Selectivity", "SteeringPlayground", "Superposition", "TokenText", "TrainingMonitor", "decode_array", "encode_array", "GraphData"]
