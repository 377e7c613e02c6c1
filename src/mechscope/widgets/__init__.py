"""Widgets: take results (never models) and draw them on canvas; one TS module each in js/widgets."""

from .codec import decode_array, encode_array
from .heatmap import Heatmap

__all__ = ["Heatmap", "decode_array", "encode_array"]
