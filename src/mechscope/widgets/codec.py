"""The one binary codec shared by every widget: arrays cross to JS as dtype + shape + bytes.

``encode_array`` produces ``{"dtype", "shape", "data"}`` where ``data`` is a memoryview
(ipywidgets sends it as a binary buffer, never JSON). ``js/lib/codec.ts`` decodes it.

>>> import numpy as np
>>> x = np.arange(6, dtype=np.float64).reshape(2, 3)
>>> enc = encode_array(x)
>>> enc["dtype"], enc["shape"]
('float32', [2, 3])
>>> decode_array(enc).tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import InputError

#: dtypes the JS decoder understands (little-endian).
WIRE_DTYPES = ("float32", "float16", "uint8", "int32", "uint16")


def encode_array(array: Any, dtype: str = "float32") -> dict[str, Any]:
    """Encode an array for a widget trait: C-contiguous little-endian ``dtype`` bytes."""
    if dtype not in WIRE_DTYPES:
        raise InputError(f"wire dtype must be one of {WIRE_DTYPES}, got {dtype!r}.")
    arr = np.asarray(array)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"expected a numeric array, got dtype {arr.dtype}.")
    # np.asarray(order="C"), not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
    wire = np.asarray(arr.astype(np.dtype(dtype).newbyteorder("<"), copy=False), order="C")
    return {"dtype": dtype, "shape": [int(s) for s in wire.shape], "data": memoryview(wire.tobytes())}


def decode_array(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of `encode_array` (also accepts base64 text for ``data``, as in saved state)."""
    data = encoded["data"]
    if isinstance(data, str):
        data = base64.b64decode(data)
    arr = np.frombuffer(bytes(data), dtype=np.dtype(encoded["dtype"]).newbyteorder("<"))
    return arr.reshape(encoded["shape"]).astype(np.dtype(encoded["dtype"]))


def to_json_safe(encoded: dict[str, Any]) -> dict[str, Any]:
    """The encoded array with ``data`` as base64 text (for the offline HTML snapshot)."""
    return {**encoded, "data": base64.b64encode(bytes(encoded["data"])).decode("ascii")}
