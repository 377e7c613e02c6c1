"""Widgets: take results (never models) and draw them on canvas; one TS module each in js/widgets."""

from .codec import decode_array, encode_array
from .dynamics import Dynamics
from .heatmap import Heatmap
from .logit_lens import LogitLens
from .patching_map import PatchingMap
from .selectivity import Selectivity
from .steering_playground import SteeringPlayground

__all__ = ["Dynamics", "Heatmap", "LogitLens", "PatchingMap", "Selectivity", "SteeringPlayground", "decode_array", "encode_array"]
