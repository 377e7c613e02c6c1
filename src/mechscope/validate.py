"""The one set of argument checks every public function uses: one meaning of each argument.

- ``layers=``, ``positions=`` and unit indices (``neurons``, ``heads``): an int or a list of
  ints; negative indices count from the end (Python's rule, ``-1`` is the last); anything
  outside ``-n..n-1``, a duplicate, an empty list or a non-int is an `InputError`. Lists come
  back non-negative and in model order (ascending), whatever order they were given in.
- ``top_k``: the number of top tokens, an int in 1..`MAX_TOP_K` (clipped to the vocabulary).
- the model argument: a mechscope `Model` (``mechscope.load(...)``), checked first.

Every check runs before any forward pass and raises `InputError` saying what was wrong and
how to fix it.

>>> index_list([-1, 0], 4, "layers", "layer")
[0, 3]
>>> index_list(2, 4, "layers", "layer")
[2]
>>> index_list([1, -3], 4, "layers", "layer")
Traceback (most recent call last):
...
mechscope.errors.InputError: layers [1, -3] names the same layer twice (1).
>>> check_top_k(500, vocab_size=10_000)
Traceback (most recent call last):
...
mechscope.errors.InputError: top_k must be an int in 1..100, got 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .models.model import Model

#: Most top tokens any result reports per row.
MAX_TOP_K = 100


def check_model(model: Any, verb: str, argument: str = "its first argument") -> Model:
    """``model`` if it is a mechscope `Model`, else an `InputError` naming ``verb``."""
    from .models.model import Model

    if not isinstance(model, Model):
        raise InputError(
            f"{verb} needs a mechscope Model as {argument} (model = mechscope.load(...)), "
            f"got {type(model).__name__}."
        )
    return model


def as_int(value: Any, what: str) -> int:
    """``value`` as a Python int (numpy ints accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{what} must be an int, got {type(value).__name__} {value!r}.")
    return int(value)


def index(value: Any, count: int, what: str, unit: str, where: str = "there are") -> int:
    """One index into ``count`` ``unit``s, negative counting from the end; returned non-negative."""
    i = as_int(value, what)
    if not -count <= i < count:
        raise InputError(
            f"{unit} {i} is out of range: {where} {count} {unit}s (0..{count - 1}; "
            f"negative indices count from the end, down to {-count})."
        )
    return i % count


def index_list(values: Any, count: int, what: str, unit: str, where: str = "there are") -> list[int]:
    """An int or a list of ints as ascending non-negative indices; duplicates and empty refused."""
    if isinstance(values, int | np.integer) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray | range):
        raise InputError(f"{what} must be an int or a list of ints, got {values!r}.")
    out = [index(v, count, what, unit, where) for v in values]
    if not out:
        raise InputError(f"{what} is empty: give at least one {unit}.")
    if len(set(out)) != len(out):
        twice = sorted({i for i in out if out.count(i) > 1})
        raise InputError(
            f"{what} {list(values)} names the same {unit} twice "
            f"({', '.join(map(str, twice))})."
        )
    return sorted(out)


def check_top_k(top_k: Any, vocab_size: int) -> int:
    """``top_k`` as an int in 1..`MAX_TOP_K`, clipped to ``vocab_size``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or not 1 <= top_k <= MAX_TOP_K:
        raise InputError(f"top_k must be an int in 1..{MAX_TOP_K}, got {top_k!r}.")
    return min(int(top_k), int(vocab_size))


def check_positive(value: Any, what: str, unit: str = "") -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
            or not np.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number{f' of {unit}' if unit else ''}, got {value!r}.")
    return float(value)


def prompt_list(model: Model, prompts: Any, what: str) -> list[str]:
    """A non-empty list of prompts, each checked by ``model.to_tokens``."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise InputError(f"{what} must be a non-empty list of prompts, got {prompts!r}.")
    for p in prompts:
        model.to_tokens(p)  # raises a clear InputError for a bad prompt
    return list(prompts)
