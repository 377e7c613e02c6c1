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

Quantisation (one optional key, ``scale``, for any integer wire dtype): ``encode_array(x, "uint8",
quantize=True)`` sends ``code = round((x - offset) / step)`` with the finite range split into
253 levels (65,533 for uint16) and the top three codes reserved for NaN, +inf and -inf. Both
decoders (this one and ``js/lib/codec.ts``) return float32 ``offset + step * code``, so every
finite value comes back within ``step / 2``.

>>> q = encode_array([[0.0, 0.5], [np.nan, 2.52]], "uint8", quantize=True)
>>> q["dtype"], q["scale"]
('uint8', {'offset': 0.0, 'step': 0.01, 'nan_code': 255, 'posinf_code': 254, 'neginf_code': 253})
>>> bytes(q["data"]).hex()
'0032fffc'
>>> decode_array(q).tolist()
[[0.0, 0.5], [nan, 2.5199999809265137]]
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import InputError

#: dtypes the JS decoder understands (little-endian).
WIRE_DTYPES = ("float32", "float16", "uint8", "int32", "uint16")

#: wire dtypes ``encode_array(..., quantize=True)`` can produce.
QUANTIZED_DTYPES = ("uint8", "uint16")


def encode_array(array: Any, dtype: str = "float32", *, quantize: bool = False) -> dict[str, Any]:
    """Encode an array for a widget trait: C-contiguous little-endian ``dtype`` bytes.

    With ``quantize=True`` (``dtype`` "uint8" or "uint16") the values are mapped linearly onto
    integer codes over their finite range and the result carries a ``scale`` ``{offset, step,
    nan_code, posinf_code, neginf_code}`` (see the module doc); decoders give float32 back.

    >>> import numpy as np
    >>> enc = encode_array(np.array([[1.5, -2.0, np.nan]]), "float16")
    >>> enc["dtype"], enc["shape"], enc["data"].nbytes
    ('float16', [1, 3], 6)
    >>> back = decode_array(enc)
    >>> back.dtype, back.shape, back.tolist()
    (dtype('float16'), (1, 3), [[1.5, -2.0, nan]])
    >>> encode_array(["a"])
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: expected a numeric array, got dtype <U1.
    """
    if dtype not in WIRE_DTYPES:
        raise InputError(f"wire dtype must be one of {WIRE_DTYPES}, got {dtype!r}.")
    arr = np.asarray(array)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"expected a numeric array, got dtype {arr.dtype}.")
    if quantize:
        codes, scale = _quantize(arr, dtype)
        return {**encode_array(codes, dtype), "scale": scale}
    # np.asarray(order="C"), not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
    wire = np.asarray(arr.astype(np.dtype(dtype).newbyteorder("<"), copy=False), order="C")
    return {"dtype": dtype, "shape": [int(s) for s in wire.shape], "data": memoryview(wire.tobytes())}


def _quantize(arr: np.ndarray, dtype: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Integer codes and their ``scale``: the finite range in ``2**bits - 3`` levels, top 3 reserved."""
    if dtype not in QUANTIZED_DTYPES:
        raise InputError(f"quantize=True needs an integer wire dtype {QUANTIZED_DTYPES}, got {dtype!r}.")
    if np.iscomplexobj(arr):
        raise InputError(f"expected real numbers to quantise, got dtype {arr.dtype}.")
    x = np.asarray(arr, dtype=np.float64)  # no copy when it is float64 already; never written
    top = int(np.iinfo(np.dtype(dtype)).max)  # 255 or 65535
    nan_code, posinf_code, neginf_code = top, top - 1, top - 2
    levels = top - 2  # codes 0 .. top - 3 hold finite values
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    if all_finite:
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    else:
        lo, hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 0.0)
    step = (hi - lo) / (levels - 1)
    if not np.isfinite(step):  # a range wider than float64 (e.g. -1e308..1e308)
        raise InputError(f"cannot quantise values spanning {lo:g}..{hi:g}: the range overflows float64.")
    scaled = np.subtract(x, lo)
    if step > 0:
        scaled /= step
    else:
        scaled[...] = 0.0
    if not all_finite:
        scaled[~finite] = 0.0
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, levels - 1, out=scaled)
    codes = scaled.astype(dtype)
    if not all_finite:
        codes[np.isnan(x)] = nan_code
        codes[x == np.inf] = posinf_code
        codes[x == -np.inf] = neginf_code
    scale = {"offset": lo, "step": step, "nan_code": nan_code, "posinf_code": posinf_code,
             "neginf_code": neginf_code}
    return codes, scale


def decode_array(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of `encode_array` (also accepts base64 text for ``data``, as in saved state).

    An array with a ``scale`` decodes to float32 ``offset + step * code`` (reserved codes to
    NaN / +inf / -inf), exactly as ``js/lib/codec.ts`` decodes it.

    >>> import base64
    >>> import numpy as np
    >>> enc = encode_array(np.arange(4).reshape(2, 2), "int32")
    >>> saved = {**enc, "data": base64.b64encode(bytes(enc["data"])).decode()}  # as in saved state
    >>> out = decode_array(saved)
    >>> out.dtype, out.shape, out.tolist()
    (dtype('int32'), (2, 2), [[0, 1], [2, 3]])
    >>> decode_array(encode_array([0.0, 1.0, np.inf], "uint8", quantize=True)).tolist()
    [0.0, 1.0, inf]
    """
    data = encoded["data"]
    if isinstance(data, str):
        data = base64.b64decode(data)
    arr = np.frombuffer(bytes(data), dtype=np.dtype(encoded["dtype"]).newbyteorder("<"))
    arr = arr.reshape(encoded["shape"]).astype(np.dtype(encoded["dtype"]))
    scale = encoded.get("scale")
    if scale is None:
        return arr
    out = float(scale["offset"]) + float(scale["step"]) * arr.astype(np.float64)
    for key, special in (("nan_code", np.nan), ("posinf_code", np.inf), ("neginf_code", -np.inf)):
        if scale.get(key) is not None:
            out[arr == scale[key]] = special
    return out.astype(np.float32)


def check_encoded(value: Any, what: str = "array") -> dict[str, Any]:
    """``value`` if it is an encoded array (as `encode_array` makes); else an `InputError` naming ``what``.

    Checks the wire dtype, the shape (non-negative ints), that ``data`` is bytes (or base64
    text, as in saved state) of exactly ``prod(shape) * itemsize`` bytes, and ``scale``'s keys.
    """
    if not isinstance(value, dict) or not {"dtype", "shape", "data"} <= value.keys():
        raise InputError(f"{what} must be an encoded array {{dtype, shape, data}} from encode_array "
                         f"(or a numeric array), got {type(value).__name__}.")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in WIRE_DTYPES:
        raise InputError(f"{what}: wire dtype must be one of {WIRE_DTYPES}, got {dtype!r}.")
    if not isinstance(shape, list | tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise InputError(f"{what}: shape must be a list of non-negative ints, got {shape!r}.")
    if isinstance(data, str):
        return value  # base64 text (saved widget state): its length is checked when decoded
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"{what}: data must be bytes (a memoryview), got {type(data).__name__}.")
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    got = memoryview(data).nbytes
    if got != want:
        raise InputError(f"{what}: {got} bytes of data for shape {list(shape)} of {dtype} "
                         f"(needs {want}); encode it with encode_array.")
    scale = value.get("scale")
    if scale is not None and (not isinstance(scale, dict) or not {"offset", "step"} <= scale.keys()):
        raise InputError(f"{what}: scale must be {{offset, step, ...}} from encode_array(quantize=True), "
                         f"got {scale!r}.")
    return value


def to_json_safe(encoded: dict[str, Any]) -> dict[str, Any]:
    """The encoded array with ``data`` as base64 text (for the offline HTML snapshot)."""
    return {**encoded, "data": base64.b64encode(bytes(encoded["data"])).decode("ascii")}
