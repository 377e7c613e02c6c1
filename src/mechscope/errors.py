"""Exceptions raised by mechscope. Every message says what was wrong and how to fix it.

All of them derive from `MechscopeError`, so one ``except`` clause catches any of them:

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> try:
...     model.to_tokens("")
... except mechscope.MechscopeError as err:
...     print(type(err).__name__, "-", err)
InputError - the prompt is empty: give at least one token of text.
"""

from __future__ import annotations


class MechscopeError(Exception):
    """Base class for every error mechscope raises on purpose.

    >>> [cls.__name__ for cls in MechscopeError.__subclasses__()]
    ['ModelLoadError', 'UnsupportedArchitectureError', 'InputError', 'RemoteError', 'GenerationCancelled']
    """


class ModelLoadError(MechscopeError):
    """A model could not be found or loaded.

    >>> import mechscope
    >>> mechscope.load("./no/such/model")
    Traceback (most recent call last):
        ...
    mechscope.errors.ModelLoadError: no model at './no/such/model': that path does not exist. ...
    """


class UnsupportedArchitectureError(MechscopeError):
    """No architecture adapter knows this model's module tree.

    The message lists the known model types and the model's module tree:

    >>> import mechscope, torch
    >>> from mechscope.models.tiny import tiny_tokenizer
    >>> try:
    ...     mechscope.load(torch.nn.Linear(2, 2), tokenizer=tiny_tokenizer())
    ... except UnsupportedArchitectureError as err:
    ...     print(str(err).splitlines()[0])
    mechscope cannot map Linear: no adapter is registered for model_type=None.
    """


class InputError(MechscopeError, ValueError):
    """A prompt, index, token or array given by the user is not valid.

    It is also a `ValueError`, so code that already catches those keeps working:

    >>> import mechscope
    >>> try:
    ...     mechscope.neurons(0, [])
    ... except ValueError as err:
    ...     print(type(err).__name__, "-", err)
    InputError - neuron indices is empty: name at least one.
    """


class RemoteError(MechscopeError):
    """NDIF could not be reached, refused the request, or did not answer in time.

    The message names the host and the two settings to check (a closed local port here):

    >>> from mechscope.models.remote import preflight
    >>> try:
    ...     preflight("http://127.0.0.1:9", timeout=2.0)
    ... except RemoteError as err:
    ...     print(err)
    NDIF at http://127.0.0.1:9 could not be reached (...).
    Check the host (environment variable NDIF_HOST: ...) and the API key (NDIF_API_KEY: ...). ...
    """


class GenerationCancelled(MechscopeError):
    """`mechscope.generate` stopped early because its ``should_stop`` callback returned True.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> try:
    ...     mechscope.generate(model, "The cat", max_new_tokens=5, should_stop=lambda: True)
    ... except GenerationCancelled as err:
    ...     print(err)
    generation cancelled after 0 of 5 tokens.
    """
