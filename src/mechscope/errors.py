"""Exceptions raised by mechscope. Every message says what was wrong and how to fix it."""

from __future__ import annotations


class MechscopeError(Exception):
    """Base class for every error mechscope raises on purpose."""


class ModelLoadError(MechscopeError):
    """A model could not be found or loaded."""


class UnsupportedArchitectureError(MechscopeError):
    """No architecture adapter knows this model's module tree."""


class InputError(MechscopeError, ValueError):
    """A prompt, index, token or array given by the user is not valid."""


class RemoteError(MechscopeError):
    """NDIF could not be reached, refused the request, or did not answer in time."""


class GenerationCancelled(MechscopeError):
    """`mechscope.generate` stopped early because its ``should_stop`` callback returned True."""
