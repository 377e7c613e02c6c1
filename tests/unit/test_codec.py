"""The widget codec: arrays cross to JS as {dtype, shape, data} little-endian C-order bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mechscope import InputError
from mechscope.widgets.codec import (
    QUANTIZED_DTYPES,
    WIRE_DTYPES,
    decode_array,
    encode_array,
    to_json_safe,
)

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


# ---- quantisation: the optional ``scale`` ------------------------------------------------------

SPECIALS = np.array([np.nan, np.inf, -np.inf])


def _quantised(x: np.ndarray, dtype: str) -> tuple[dict, np.ndarray]:
    enc = encode_array(x, dtype, quantize=True)
    return enc, decode_array(enc)


def _assert_within_half_step(x: np.ndarray, enc: dict, back: np.ndarray) -> None:
    step = enc["scale"]["step"]
    finite = np.isfinite(x)
    err = np.abs(back[finite].astype(np.float64) - x[finite])
    # step / 2 from rounding to a code, plus the float32 the decoders return
    bound = step / 2 * (1 + 1e-9) + np.abs(x[finite]) * 2.0**-24 + 2.0**-149
    assert np.all(err <= bound), float((err - bound).max())


@pytest.mark.parametrize("dtype, levels", [("uint8", 253), ("uint16", 65533)])
def test_quantised_round_trip_error_and_special_codes(dtype, levels):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(40, 50))
    x.ravel()[[7, 123, 999]] = SPECIALS  # one NaN, one +inf, one -inf
    enc, back = _quantised(x, dtype)
    top = np.iinfo(dtype).max
    assert set(enc) == {"dtype", "shape", "data", "scale"}
    assert enc["dtype"] == dtype and enc["shape"] == [40, 50]
    assert len(enc["data"]) == x.size * np.dtype(dtype).itemsize  # 1 or 2 bytes a cell
    finite = x[np.isfinite(x)]
    assert enc["scale"] == {"offset": finite.min(), "step": (finite.max() - finite.min()) / (levels - 1),
                            "nan_code": top, "posinf_code": top - 1, "neginf_code": top - 2}
    codes = np.frombuffer(bytes(enc["data"]), np.dtype(dtype).newbyteorder("<")).reshape(x.shape)
    assert codes.ravel()[[7, 123, 999]].tolist() == [top, top - 1, top - 2]
    assert codes[np.isfinite(x)].min() == 0 and codes[np.isfinite(x)].max() == levels - 1
    assert back.dtype == np.float32 and back.shape == x.shape
    _assert_within_half_step(x, enc, back)
    # NaN, +inf and -inf come back distinctly, where they were
    assert np.isnan(back.ravel()[7]) and back.ravel()[123] == np.inf and back.ravel()[999] == -np.inf
    assert np.array_equal(np.isfinite(back), np.isfinite(x))
    # the extremes are exact up to float32 (code 0 is the offset itself)
    assert back[np.isfinite(x)].min() == np.float32(finite.min())
    # the base64 form (offline snapshot, saved widget state) keeps the scale and decodes the same
    safe = to_json_safe(enc)
    assert safe["scale"] == enc["scale"] and isinstance(safe["data"], str)
    _same(decode_array(safe), back)


def test_quantised_uint8_is_4x_smaller_than_float32():
    x = np.random.default_rng(1).normal(size=(1000, 1000))
    assert len(encode_array(x)["data"]) == 4 * len(encode_array(x, "uint8", quantize=True)["data"]) == 4_000_000


def test_quantised_constant_all_nan_and_empty_arrays():
    enc, back = _quantised(np.full((3, 2), -1.25), "uint8")
    assert enc["scale"]["step"] == 0.0 and enc["scale"]["offset"] == -1.25
    _same(back, np.full((3, 2), -1.25, np.float32))  # exact
    enc, back = _quantised(np.array([np.nan, np.inf, -np.inf, np.nan]), "uint16")
    assert bytes(enc["data"]) == np.array([65535, 65534, 65533, 65535], "<u2").tobytes()
    _same(back, np.array([np.nan, np.inf, -np.inf, np.nan], np.float32))
    enc, back = _quantised(np.zeros((0, 4)), "uint8")
    _same(back, np.zeros((0, 4), np.float32))
    _same(_quantised(np.array([[True, False]]), "uint8")[1], np.array([[1.0, 0.0]], np.float32))


def test_unquantised_encoding_is_unchanged():
    # existing widgets (logit_lens, selectivity, patching_map, ...) keep the plain format
    enc = encode_array(np.arange(4.0), "float16")
    assert set(enc) == {"dtype", "shape", "data"}
    assert "scale" not in to_json_safe(enc)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_quantize_needs_an_unsigned_integer_wire_dtype(dtype):
    with pytest.raises(InputError, match=r"quantize=True needs an integer wire dtype \('uint8', 'uint16'\), "
                                         f"got '{dtype}'"):
        encode_array(np.zeros(3), dtype, quantize=True)


def test_quantize_rejects_complex_and_overflowing_ranges():
    with pytest.raises(InputError, match="expected real numbers to quantise, got dtype complex128"):
        encode_array(np.ones(2, dtype=complex), "uint8", quantize=True)
    with pytest.raises(InputError, match=r"cannot quantise values spanning -1e\+308\.\.1e\+308: the range overflows"):
        encode_array(np.array([-1e308, 1e308]), "uint8", quantize=True)


def test_a_scale_on_any_wire_dtype_decodes_generically():
    # the mechanism is not tied to uint8/uint16: any encoded array may carry a scale
    enc = {**encode_array(np.array([0, 3, -1, 7]), "int32"),
           "scale": {"offset": 10.0, "step": 0.5, "nan_code": 7}}
    _same(decode_array(enc), np.array([10.0, 11.5, 9.5, np.nan], np.float32))


@settings(max_examples=80, deadline=None)
@given(x=hnp.arrays(dtype=np.float64, shape=hnp.array_shapes(max_dims=2, max_side=12),
                    elements=st.one_of(st.floats(-1e30, 1e30),  # decoders return float32
                                       st.sampled_from([np.nan, np.inf, -np.inf]))),
       dtype=st.sampled_from(QUANTIZED_DTYPES))
def test_quantised_round_trip_property(x, dtype):
    enc, back = _quantised(x, dtype)
    _assert_within_half_step(x, enc, back)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    np.testing.assert_array_equal(np.isposinf(back), np.isposinf(x))
    np.testing.assert_array_equal(np.isneginf(back), np.isneginf(x))


# ---- integers stay exact, in Python and in js/lib/codec.ts --------------------------------
BIG_IDS = np.array([[2**24 + 1, 2**31 - 1], [-(2**31), 16_777_219]], dtype=np.int64)


def test_int32_ids_above_2_24_round_trip_exactly():
    enc = encode_array(BIG_IDS, "int32")
    back = decode_array(enc)
    assert back.dtype == np.int32 and back.tolist() == BIG_IDS.tolist()
    assert decode_array(to_json_safe(enc)).tolist() == BIG_IDS.tolist()
    assert float(np.float32(2**24 + 1)) != 2**24 + 1  # what a float32 decoder would have lost


def test_the_ts_decoder_gives_integers_exactly(tmp_path):
    """js/lib/codec.ts, bundled by esbuild and run by node: int32 / uint16 / uint8 decode to
    integer arrays with every value exact; int64 is refused with a clear error."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    esbuild = root / "node_modules" / ".bin" / "esbuild"
    node = shutil.which("node")
    assert node and esbuild.exists(), "node and `npm install` (esbuild) are needed for the JS codec check"
    out = tmp_path / "codec.mjs"
    subprocess.run([str(esbuild), str(root / "js" / "lib" / "codec.ts"), "--bundle", "--format=esm",
                    f"--outfile={out}"], check=True, capture_output=True)
    cases = {"int32": BIG_IDS, "uint16": np.array([0, 65535, 4097]), "uint8": np.array([0, 255, 7])}
    payload = {k: to_json_safe(encode_array(v, k)) for k, v in cases.items()}
    script = tmp_path / "check.mjs"
    script.write_text(
        f"import {{ decode }} from {json.dumps(out.as_uri())};\n"
        "const cases = JSON.parse(process.argv[2]);\n"
        "const res = {};\n"
        "for (const [k, enc] of Object.entries(cases)) {\n"
        "  const d = decode({ ...enc, data: Buffer.from(enc.data, 'base64') });\n"
        "  res[k] = { type: d.values.constructor.name, values: Array.from(d.values), shape: d.shape };\n"
        "}\n"
        "try { decode({ dtype: 'int64', shape: [1], data: new Uint8Array(8) }); res.int64 = 'decoded'; }\n"
        "catch (e) { res.int64 = String(e.message); }\n"
        "console.log(JSON.stringify(res));\n", encoding="utf-8")
    run = subprocess.run([node, str(script), json.dumps(payload)], check=True, capture_output=True, text=True)
    res = json.loads(run.stdout)
    assert res["int32"] == {"type": "Int32Array", "values": BIG_IDS.ravel().tolist(), "shape": [2, 2]}
    assert res["uint16"]["type"] == "Uint16Array" and res["uint16"]["values"] == [0, 65535, 4097]
    assert res["uint8"]["type"] == "Uint8Array" and res["uint8"]["values"] == [0, 255, 7]
    assert "int64 is not a wire dtype" in res["int64"] and "encode as int32" in res["int64"]


# ---- ArrayTrait: the one array trait type ------------------------------------------------
def test_array_trait_validates_with_input_errors():
    import traitlets

    from mechscope.widgets.traits import ArrayTrait, TraitInputError

    class W(traitlets.HasTraits):
        ids = ArrayTrait("int32")
        extra = ArrayTrait("float32", optional=True)

    w = W(ids=[1, 2, 3], extra={})
    assert w.ids["dtype"] == "int32" and decode_array(w.ids).tolist() == [1, 2, 3]
    bad = [
        (["a"], r"ids: expected a numeric array, got dtype <U1"),
        ({"dtype": "int64", "shape": [1], "data": memoryview(b"\0" * 8)}, r"ids: wire dtype must be one of"),
        ({**encode_array([1, 2], "int32"), "shape": [3]}, r"ids: 8 bytes of data for shape \[3\] of int32 \(needs 12\)"),
        ({"dtype": "int32", "shape": [-1], "data": b""}, r"ids: shape must be a list of non-negative ints"),
        ({}, r"ids needs an array; \{\} \(no array\) is not allowed here"),
        ("text", r"ids must be an encoded array|ids: expected a numeric array"),
    ]
    for value, message in bad:
        with pytest.raises(InputError, match=message) as err:
            w.ids = value
        assert isinstance(err.value, TraitInputError) and isinstance(err.value, traitlets.TraitError)


def test_the_snapshot_finds_array_traits_from_their_type():
    import base64
    import json
    import re

    from mechscope.widgets import Heatmap
    from mechscope.widgets.traits import ArrayTrait, array_traits

    class Extra(Heatmap):
        mask = ArrayTrait("uint8", optional=True)

    w = Extra(np.eye(2))
    w.mask = np.array([1, 0, 0, 1])
    assert array_traits(w) == ["ci_high", "ci_low", "mask", "values"]  # the optional intervals too
    match = re.search(r"^  const state = (.*);$", w.offline_html() or "", flags=re.M)
    assert match
    state = json.loads(match.group(1))
    assert base64.b64decode(state["mask"]["data"]) == bytes([1, 0, 0, 1])
    assert isinstance(state["values"]["data"], str)
    assert '"mask","values"' in (w.offline_html() or "")  # the runtime decodes both


def test_a_missing_bundle_fails_when_the_widget_is_made():
    from mechscope.errors import MechscopeError
    from mechscope.widgets._base import STATIC, MechscopeWidget

    class Nowhere(MechscopeWidget):  # defining it is fine (importing mechscope never fails)
        _esm = STATIC / "no_such_widget.js"

    with pytest.raises(MechscopeError, match=r"no_such_widget widget's JavaScript bundle is missing .*npm run build"):
        Nowhere()
