"""The widget codec: arrays cross to JS as {dtype, shape, data} little-endian C-order bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from mechscope import InputError
from mechscope.widgets.codec import WIRE_DTYPES, decode_array, encode_array, to_json_safe

SAMPLES = {
    "float32": np.array([[0.0, -1.5, 3.25], [np.nan, np.inf, -np.inf]], dtype=np.float32),
    "float16": np.array([[0.0, -1.5, 65504.0], [np.nan, 1e-4, -2.0]], dtype=np.float16),
    "uint8": np.array([[0, 1, 255], [7, 128, 254]], dtype=np.uint8),
    "int32": np.array([[0, -1, 2**31 - 1], [-(2**31), 12345, -7]], dtype=np.int32),
    "uint16": np.array([[0, 1, 65535], [256, 4096, 9]], dtype=np.uint16),
}


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # NaN == NaN here


@pytest.mark.parametrize("dtype", WIRE_DTYPES)
def test_round_trip_every_wire_dtype(dtype):
    x = SAMPLES[dtype]
    enc = encode_array(x, dtype)
    assert enc["dtype"] == dtype and enc["shape"] == [2, 3]
    assert isinstance(enc["data"], memoryview)
    assert len(enc["data"]) == x.size * np.dtype(dtype).itemsize
    # The bytes are little-endian C order, whatever the host.
    np.testing.assert_array_equal(np.frombuffer(bytes(enc["data"]), np.dtype(dtype).newbyteorder("<")),
                                  x.ravel())
    _same(decode_array(enc), x)
    _same(decode_array(to_json_safe(enc)), x)  # base64 text, as in the offline snapshot
    assert isinstance(to_json_safe(enc)["data"], str)


def test_float64_is_sent_as_float32_by_default():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    enc = encode_array(x)
    assert enc["dtype"] == "float32"
    _same(decode_array(enc), x.astype(np.float32))


@pytest.mark.parametrize("view", [
    lambda x: x[:, ::2],  # strided
    lambda x: x.T,  # Fortran order
    lambda x: x[::-1, 1:],  # negative stride
], ids=["strided", "transposed", "reversed"])
def test_non_contiguous_input(view):
    x = view(np.arange(40, dtype=np.float32).reshape(5, 8))
    assert not x.flags.c_contiguous
    enc = encode_array(x)
    assert enc["shape"] == list(x.shape)
    _same(decode_array(enc), np.ascontiguousarray(x))


@pytest.mark.parametrize("source", [">f4", ">f8", ">i4", ">u2"])
def test_big_endian_input(source):
    x = np.arange(-6, 6).reshape(3, 4).astype(source)
    assert x.dtype.byteorder == ">"
    for wire in ("float32", "int32"):
        enc = encode_array(x, wire)
        want = x.astype(wire)
        assert bytes(enc["data"]) == want.astype(np.dtype(wire).newbyteorder("<")).tobytes()
        _same(decode_array(enc), want)


def test_shapes_bool_and_lists():
    _same(decode_array(encode_array(np.float32(2.5))), np.array(2.5, dtype=np.float32))
    _same(decode_array(encode_array(np.zeros((0, 3)))), np.zeros((0, 3), np.float32))
    _same(decode_array(encode_array(np.ones((2, 1, 3)))), np.ones((2, 1, 3), np.float32))
    _same(decode_array(encode_array([True, False], "uint8")), np.array([1, 0], np.uint8))
    _same(decode_array(encode_array([[1, 2], [3, 4]], "int32")), np.array([[1, 2], [3, 4]], np.int32))


@pytest.mark.parametrize("dtype", ["float64", "int64", "int8", "<f4", "bool", "", None])
def test_bad_wire_dtype(dtype):
    with pytest.raises(InputError, match=r"wire dtype must be one of \('float32'"):
        encode_array(np.zeros(3), dtype)


@pytest.mark.parametrize("array", [
    np.array(["a", "b"]),
    np.array([{"x": 1}, None], dtype=object),
    [[1, "two"]],
    np.array([np.datetime64("2020-01-01")]),
], ids=["str", "object", "mixed-list", "datetime"])
def test_non_numeric_array(array):
    with pytest.raises(InputError, match="expected a numeric array, got dtype"):
        encode_array(array)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # float64 beyond float32 -> inf
@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=hnp.floating_dtypes(sizes=(32, 64), endianness="="),
                  shape=hnp.array_shapes(max_dims=3, max_side=5)))
def test_float_round_trip_property(x):
    _same(decode_array(encode_array(x)), x.astype(np.float32))
