"""`ArrayTrait`: the one trait type for arrays a widget sends to its front end.

Its value is the codec's encoded array ``{dtype, shape, data[, scale]}`` (see `codec`), synced
as a binary buffer. Assign either an encoded dict (from `encode_array`, e.g. quantised) or any
numeric array, which is encoded as the trait's ``dtype``. Bad values raise `TraitInputError`
(an `InputError`). The offline snapshot finds a widget's arrays from this type
(`array_traits`), so an array trait can never be left out of it.

>>> import numpy as np
>>> import traitlets as t
>>> class Demo(t.HasTraits):
...     ids = ArrayTrait("int32", help="token ids")
>>> d = Demo(ids=np.array([2**24 + 1, 7]))
>>> d.ids["dtype"], d.ids["shape"], decode_array(d.ids).tolist()
('int32', [2], [16777217, 7])
>>> Demo(ids=np.array(["a"]))
Traceback (most recent call last):
...
mechscope.widgets.traits.TraitInputError: ids: expected a numeric array, got dtype <U1.
>>> array_traits(Demo)
['ids']
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..errors import InputError
from .codec import check_encoded, decode_array, encode_array, to_json_safe

__all__ = ["ArrayTrait", "TraitInputError", "array_traits", "decode_array"]


class TraitInputError(InputError, t.TraitError):
    """A widget trait refused a value: an `InputError` that traitlets also knows as its own."""


class ArrayTrait(t.TraitType[dict[str, Any], Any]):
    """An encoded array, synced to the front end as a binary buffer (``sync=True`` always).

    ``dtype``: the wire dtype a plain array is encoded as. ``optional``: ``{}`` (no array) is
    allowed too, e.g. a target probability a lens without a target does not have.
    """

    info_text = "an encoded array {dtype, shape, data} or a numeric array"

    def __init__(self, dtype: str = "float32", *, optional: bool = False, **kwargs: Any) -> None:
        super().__init__(default_value={}, **kwargs)
        self.dtype = dtype
        self.optional = optional
        self.tag(sync=True)

    def validate(self, obj: Any, value: Any) -> dict[str, Any]:
        what = self.name or "array"
        if isinstance(value, dict) and not value:
            if self.optional:
                return {}
            raise TraitInputError(f"{what} needs an array; {{}} (no array) is not allowed here.")
        try:
            if isinstance(value, dict):
                return check_encoded(value, what)
            return encode_array(value, self.dtype)
        except InputError as err:
            message = str(err)
            raise TraitInputError(message if message.startswith(what) else f"{what}: {message}") from None

    @staticmethod
    def snapshot_json(value: dict[str, Any]) -> dict[str, Any]:
        """The value as JSON for the offline snapshot (``data`` as base64 text; {} stays {})."""
        return to_json_safe(value) if value and not isinstance(value["data"], str) else value


def array_traits(obj: t.HasTraits | type[t.HasTraits]) -> list[str]:
    """Names of the `ArrayTrait` traits of a widget (class or instance), sorted."""
    traits = obj.class_traits() if isinstance(obj, type) else obj.traits()
    return sorted(name for name, trait in traits.items() if isinstance(trait, ArrayTrait))
