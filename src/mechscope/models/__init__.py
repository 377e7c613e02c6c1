"""Models: loading, architecture adapters, tiny test models."""

from .adapters import ADAPTERS, Adapter
from .load import load
from .model import Model
from .tiny import tiny_model

__all__ = ["ADAPTERS", "Adapter", "Model", "load", "tiny_model"]
