"""Heatmap widget, Python side (no browser): validation, pooling, text/plain and the offline HTML."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import mechscope.widgets._base as base
from mechscope import InputError
from mechscope.widgets.codec import decode_array
from mechscope.widgets.heatmap import MAX_SIDE, QUANTIZE_ABOVE, Heatmap

HOSTILE = [
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</ScRiPt ><IMG SRC=y>",
    "<!--",
    "a\u2028b\u2029c",
    "&amp; \"quotes\" 'single'",
]


def _html(widget: Heatmap) -> str | None:
    return widget.offline_html()


def _state_in(snapshot: str) -> dict:
    match = re.search(r"^  const state = (.*);$", snapshot, flags=re.M)
    assert match, "the snapshot inlines its state"
    return json.loads(match.group(1))


# ---- validation -----------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    (np.zeros(5), r"needs a 2-D array \(rows x cols\), got shape \(5,\)"),
    (np.zeros((2, 3, 4)), r"needs a 2-D array \(rows x cols\), got shape \(2, 3, 4\)"),
    (np.float32(1.0), r"got shape \(\)"),
    (np.zeros((0, 4)), r"empty array of shape \(0, 4\)"),
    (np.array([["a", "b"]]), "needs real numbers, got dtype <U1"),
    (np.ones((2, 2), dtype=complex), "needs real numbers, got dtype complex128"),
    (np.array([[None, 1]], dtype=object), "needs real numbers, got dtype object"),
])
def test_bad_values(values, message):
    with pytest.raises(InputError, match=message):
        Heatmap(values)


@pytest.mark.parametrize("rows, cols", [(["a"], list("xyz")), (list("ab"), list("xy")), ([], [])])
def test_labels_must_match_the_shape(rows, cols):
    msg = f"labels do not match the array: 2x3 values, {len(rows)} row labels, {len(cols)} column labels."
    with pytest.raises(InputError, match=re.escape(msg)):
        Heatmap(np.zeros((2, 3)), row_labels=rows, col_labels=cols)


def test_bad_colorscale():
    with pytest.raises(InputError, match=r"colorscale must be one of \('viridis', 'magma', 'diverging'\)"):
        Heatmap(np.zeros((2, 2)), colorscale="jet")


def test_defaults_and_label_coercion():
    w = Heatmap(np.arange(6).reshape(2, 3), col_labels=[10, 11, 12])
    assert w.row_labels == ["0", "1"] and w.col_labels == ["10", "11", "12"]
    assert w.shape == (2, 3) and w.pooled == [1, 1]
    assert w.values["dtype"] == "float32" and w.values["shape"] == [2, 3]
    np.testing.assert_array_equal(w.array, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert Heatmap(np.eye(2, dtype=bool)).array.tolist() == [[1.0, 0.0], [0.0, 1.0]]


# ---- pooling ----------------------------------------------------------------------------
def test_tall_array_is_mean_pooled():
    rng = np.random.default_rng(0)
    rows, cols = 2 * MAX_SIDE + 4, 5  # 3 rows per block; the last block holds 2 rows
    assert rows % 3 == 2
    x = rng.normal(size=(rows, cols))
    w = Heatmap(x, row_labels=[f"r{i}" for i in range(rows)], col_labels=list("abcde"), title="big")
    n_blocks = -(-rows // 3)
    assert w.pooled == [3, 1]
    assert w.shape == (rows, cols)  # as given
    assert w.array.shape == (n_blocks, cols) and n_blocks <= MAX_SIDE
    expected = np.stack([x[i:i + 3].mean(axis=0) for i in range(0, rows, 3)])
    np.testing.assert_allclose(w.array, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.array[-1], x[-2:].mean(axis=0), rtol=1e-6)  # partial block: its own mean
    assert w.title == f"big (mean-pooled 3x1 from {rows}x{cols})"
    assert w.row_labels[0] == "r0..r2" and w.row_labels[-1] == f"r{rows - 2}..r{rows - 1}"
    assert len(w.row_labels) == n_blocks and w.col_labels == list("abcde")
    assert f"{rows} x {cols}" in w.summary() and f"mean-pooled 3x1 to {n_blocks} x {cols}" in w.summary()


def test_wide_array_is_mean_pooled_and_keeps_nan_aware_means():
    cols = MAX_SIDE + 1  # 2 columns per block
    x = np.arange(2 * cols, dtype=np.float64).reshape(2, cols)
    x[0, 0] = np.nan  # ignored inside its block...
    x[1, 0] = x[1, 1] = np.nan  # ...unless the whole block is NaN
    w = Heatmap(x)
    assert w.pooled == [1, 2] and w.array.shape == (2, -(-cols // 2))
    assert w.array[0, 0] == np.float32(x[0, 1])
    assert np.isnan(w.array[1, 0])
    assert w.array[0, 1] == np.float32((x[0, 2] + x[0, 3]) / 2)
    assert w.title == f"(mean-pooled 1x2 from 2x{cols})"
    assert w.row_labels == ["0", "1"]  # the axis that was not pooled keeps its labels
    assert w.col_labels[0] == "0..1" and w.col_labels[-1] == str(cols - 1)  # a block of one


def test_exactly_max_side_is_not_pooled():
    w = Heatmap(np.zeros((MAX_SIDE, 2)))
    assert w.pooled == [1, 1] and w.array.shape == (MAX_SIDE, 2) and w.title == ""


# ---- non-finite values and text/plain ---------------------------------------------------------
def test_nan_and_inf_are_accepted():
    x = np.array([[np.nan, np.inf, -np.inf], [1.0, -2.0, 0.5]])
    w = Heatmap(x, row_labels=["L0", "L1"], col_labels=list("abc"), title="t", value_label="norm")
    np.testing.assert_array_equal(w.array, x.astype(np.float32))
    assert w.summary() == ("Heatmap 't': 2 x 3 norm, range -2..1 (1 NaN, 1 +inf, 1 -inf: drawn grey)\n"
                           "columns: a, b, c")
    assert "no finite values" in Heatmap(np.full((2, 2), np.nan)).summary()
    assert _html(w) is not None


def test_text_plain_summary():
    w = Heatmap(np.arange(30).reshape(2, 15), title="acts", value_label="resid norm")
    data, _ = w._repr_mimebundle_()
    assert data["text/plain"] == w.summary() == repr(w)
    assert data["text/plain"].startswith("Heatmap 'acts': 2 x 15 resid norm, range 0..29\ncolumns: 0, 1, ")
    assert data["text/plain"].endswith(", 11 ...")  # long label lists are cut
    assert "application/vnd.jupyter.widget-view+json" in data


# ---- offline HTML snapshot ---------------------------------------------------------------------
def test_hostile_labels_cannot_escape_the_snapshot():
    x = np.arange(len(HOSTILE) * 2, dtype=float).reshape(2, len(HOSTILE))
    w = Heatmap(x, row_labels=HOSTILE[:2], col_labels=HOSTILE, title=HOSTILE[0], value_label=HOSTILE[1])
    snapshot = _html(w)
    assert snapshot is not None
    lower = snapshot.lower()
    assert lower.count("</script") == 1 and lower.rstrip().endswith("</script>")  # only our own tag
    assert lower.count("<script") == 1
    assert "<img" not in lower and "<!--" not in snapshot
    script = snapshot[snapshot.index("<script"):]  # raw U+2028/9 would end a JS string early
    assert "\u2028" not in script and "\u2029" not in script
    # The labels survive intact once the JSON is parsed (escaped, not mangled).
    state = _state_in(snapshot)
    assert state["col_labels"] == HOSTILE and state["row_labels"] == HOSTILE[:2]
    assert state["title"] == HOSTILE[0] and state["value_label"] == HOSTILE[1]
    assert state["values"]["dtype"] == "float32" and isinstance(state["values"]["data"], str)
    assert "esm" not in state and not any(k.startswith("_") for k in state)
    assert 'data-mechscope-widget="heatmap"' in snapshot


def test_snapshot_is_absent_above_the_size_limit(monkeypatch):
    w = Heatmap(np.random.default_rng(1).normal(size=(64, 64)))
    assert _html(w) is not None
    monkeypatch.setattr(base, "FALLBACK_MAX_BYTES", 4096)
    assert w.offline_html() is None
    data, _ = w._repr_mimebundle_()
    assert "<script" not in data["text/html"] and data["text/plain"] == w.summary()


def test_snapshot_is_absent_for_a_really_large_map():
    assert base.FALLBACK_MAX_BYTES == 8 * 1024 * 1024
    # 1500 x 1500 float32 is 9 MB of bytes, 12 MB as base64: over the limit, under MAX_SIDE.
    # (quantised it is 2.25 MB, 3 MB as base64; even MAX_SIDE x MAX_SIDE as uint8 fits: 5.6 MB)
    w = Heatmap(np.ones((1500, 1500), dtype=np.float32), quantize=False)
    assert w.pooled == [1, 1] and w.values["dtype"] == "float32"
    assert w.offline_html() is None
    data, _ = w._repr_mimebundle_()
    assert data["text/plain"].startswith("Heatmap '': 1500 x 1500 value")


# ---- the wire format: float32 for small maps, quantised above QUANTIZE_ABOVE cells -------------
def test_encoding_is_picked_by_size():
    assert QUANTIZE_ABOVE == 65_536
    small = Heatmap(np.random.default_rng(2).normal(size=(256, 256)))  # exactly the threshold
    assert small.values["dtype"] == "float32" and "scale" not in small.values
    assert small.quantization_step is None and "quantised" not in small.summary()
    big = Heatmap(np.random.default_rng(2).normal(size=(257, 256)))
    assert big.values["dtype"] == "uint8" and big.values["shape"] == [257, 256]
    assert len(big.values["data"]) == 257 * 256  # one byte a cell
    assert big.quantization_step == big.values["scale"]["step"] > 0
    # forced either way
    assert Heatmap(np.zeros((300, 300)), quantize=False).values["dtype"] == "float32"
    assert Heatmap(np.arange(6.0).reshape(2, 3), quantize=True).values["dtype"] == "uint8"
    with pytest.raises(InputError, match=r"quantize must be None \(automatic\), True or False, got 'yes'"):
        Heatmap(np.zeros((2, 2)), quantize="yes")


def test_quantised_values_are_within_half_a_step_and_specials_survive():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 300))
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    w = Heatmap(x)
    step = w.quantization_step
    assert step == pytest.approx((np.nanmax(x[np.isfinite(x)]) - np.nanmin(x[np.isfinite(x)])) / 252)
    finite = np.isfinite(x)
    assert np.abs(w.array[finite] - x[finite]).max() <= step / 2 + 1e-6
    assert np.isnan(w.array[0, 0]) and w.array[1, 1] == np.inf and w.array[2, 2] == -np.inf


def test_stats_are_exact_and_text_plain_says_values_are_quantised():
    x = np.linspace(-1.0, 3.0, 500 * 200).reshape(500, 200)
    x[7, 7] = np.nan
    w = Heatmap(x, title="acts", value_label="resid norm")
    finite = x[np.isfinite(x)]
    assert w.stats == {"min": -1.0, "max": 3.0, "mean": float(finite.mean()), "nan": 1, "posinf": 0,
                       "neginf": 0}
    step = w.quantization_step
    assert step == pytest.approx(4.0 / 252)
    lines = w.summary().splitlines()
    assert lines[0] == "Heatmap 'acts': 500 x 200 resid norm, range -1..3 (1 NaN: drawn grey)"
    assert lines[1] == (f"values sent quantised to uint8 (step {step:.3g}: shown values within "
                        f"+/-{step / 2:.3g}); exact mean {finite.mean():.4g}")
    assert lines[2].startswith("columns: 0, 1, 2")
    const = Heatmap(np.full((300, 300), 2.5))
    assert const.quantization_step == 0 and np.all(const.array == 2.5)
    assert "quantised to uint8 (exact: every finite value is the same)" in const.summary()
    assert "quantised to uint8 (no finite values)" in Heatmap(np.full((300, 300), np.nan)).summary()


@pytest.mark.parametrize("kwargs, wire", [
    ({}, "uint8"),
    ({"colorscale": "diverging"}, "uint8"),  # colour range -m..m holds the data range
    ({"vmin": -10.0, "vmax": 10.0}, "uint8"),  # wider than the data: still >= 252 levels inside
    ({"vmin": 0.0, "vmax": 0.5}, "uint16"),  # 1/8 of the data range: uint8 would leave ~32 levels
    ({"vmin": 0.0, "vmax": 1e-4}, "float32"),  # even uint16 would leave < 252 levels
])
def test_a_narrow_colour_range_keeps_its_colour_resolution(kwargs, wire):
    x = np.linspace(-1.0, 3.0, 300 * 300).reshape(300, 300)
    w = Heatmap(x, **kwargs)
    assert w.values["dtype"] == wire
    if wire != "float32":
        lo = kwargs.get("vmin", -3.0 if kwargs.get("colorscale") == "diverging" else -1.0)
        hi = kwargs.get("vmax", 3.0)
        assert (hi - lo) / w.quantization_step >= 252  # levels inside the drawn colour range


def test_1000_by_1000_offline_snapshot_is_under_2_mb_and_carries_the_scale():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 1000)).astype(np.float32)
    w = Heatmap(x, title="big")
    snapshot = _html(w)
    assert snapshot is not None, "the 1M-cell map must keep its offline snapshot"
    size = len(snapshot.encode("utf-8"))
    assert size < 2_000_000, size  # 1 MB of codes is 1.33 MB as base64, plus the ESM
    assert size < base.FALLBACK_MAX_BYTES
    state = _state_in(snapshot)
    assert state["values"]["dtype"] == "uint8" and state["values"]["scale"] == w.values["scale"]
    assert state["stats"] == w.stats
    np.testing.assert_array_equal(decode_array(state["values"]), w.array)  # what the page decodes


# ---- per-cell intervals ------------------------------------------------------------------
def test_intervals_travel_as_float32_binary_and_default_to_none():
    x = np.array([[0.5, -2.0, 1.0], [0.25, 3.0, np.nan]])
    w = Heatmap(x, ci_low=x - 0.1, ci_high=x + 0.2, ci_label="95% CI, n=100")
    for name, want in (("ci_low", x - 0.1), ("ci_high", x + 0.2)):
        enc = getattr(w, name)
        assert enc["dtype"] == "float32" and enc["shape"] == [2, 3] and isinstance(enc["data"], bytes | memoryview)
        np.testing.assert_array_equal(decode_array(enc), want.astype(np.float32))
    assert w.ci_label == "95% CI, n=100"
    state = _state_in(_html(w))  # in the offline snapshot: base64 of the float32 bytes, never a JSON list
    assert isinstance(state["ci_low"]["data"], str)
    np.testing.assert_array_equal(decode_array(state["ci_high"]), decode_array(w.ci_high))
    plain = Heatmap(x)
    assert plain.ci_low == {} and plain.ci_high == {} and plain.ci_label == ""
    assert "strongest" not in plain.summary()
    assert _state_in(_html(plain))["ci_low"] == {}


def test_intervals_are_validated():
    x = np.zeros((2, 3))
    with pytest.raises(InputError, match=re.escape("Heatmap ci_low must have the shape of values (2, 3), got (3, 2).")):
        Heatmap(x, ci_low=np.zeros((3, 2)), ci_high=x)
    with pytest.raises(InputError, match=re.escape("Heatmap ci_high must have the shape of values (2, 3), got (6,).")):
        Heatmap(x, ci_low=x, ci_high=np.zeros(6))
    with pytest.raises(InputError, match="needs both ci_low and ci_high for an interval, or neither"):
        Heatmap(x, ci_low=x)
    with pytest.raises(InputError, match=re.escape("Heatmap ci_low must be an array of numbers like values, got a list")):
        Heatmap(x, ci_low=[["a", "b", "c"], ["d", "e", "f"]], ci_high=x)
    with pytest.raises(InputError, match=re.escape("Heatmap ci_low is above ci_high in 1 cell(s).")):
        Heatmap(x, ci_low=np.array([[1.0, 0, np.nan], [0, 0, 0]]), ci_high=x)  # NaN bounds are allowed


def test_summary_names_the_strongest_cells_with_their_interval():
    x = np.array([[0.5, -2.0, 1.0], [0.25, 3.0, np.nan]])
    w = Heatmap(x, row_labels=["L0", "L1"], col_labels=["a", "<b>", "c"], title="t",
                ci_low=x - 0.125, ci_high=x + 0.5, ci_label="95% CI, n=100")
    assert w.summary().splitlines()[-1] == (
        "strongest (95% CI, n=100): L1 | '<b>' 3 [2.875, 3.5], L0 | '<b>' -2 [-2.125, -1.5], L0 | 'c' 1 [0.875, 1.5]")
    assert w.summary().splitlines()[:2] == Heatmap(x, row_labels=["L0", "L1"], col_labels=["a", "<b>", "c"],
                                                   title="t").summary().splitlines()
    none = Heatmap(np.full((2, 2), np.nan), ci_low=np.zeros((2, 2)), ci_high=np.zeros((2, 2)), ci_label="")
    assert none.summary().splitlines()[-1] == "strongest: no finite values"


def test_intervals_are_mean_pooled_like_the_values():
    rows = 2 * MAX_SIDE + 2  # pooled 3x1
    x = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    w = Heatmap(x, ci_low=x - 1, ci_high=x + 1)
    assert w.pooled == [3, 1] and w.ci_low["shape"] == w.values["shape"] == w.ci_high["shape"]
    np.testing.assert_allclose(decode_array(w.ci_low), w.array - 1, rtol=1e-6)
    np.testing.assert_allclose(decode_array(w.ci_high), w.array + 1, rtol=1e-6)


def test_dataset_reading_show_passes_its_interval():
    from mechscope.analysis.over_dataset import DatasetReading

    per = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    mean = per.mean(0)
    r = DatasetReading(per_example=per, values=mean, ci_low=mean - 1, ci_high=mean + 2, layers=[0, 1, 2],
                       roles=["END", "subj"], quantity="norm", site="resid_post", model_name="m", dataset_name="d")
    w = r.show()
    np.testing.assert_array_equal(decode_array(w.ci_low), (mean - 1).astype(np.float32))
    np.testing.assert_array_equal(decode_array(w.ci_high), (mean + 2).astype(np.float32))
    assert w.ci_label == "95% CI, n=4"
    assert w.summary().splitlines()[-1].startswith("strongest (95% CI, n=4): L2 | 'subj' 14 [13, 16]")


def test_a_live_display_carries_no_data_only_a_placeholder():
    """Each array travels once: the live bundle's text/html names the model, holds no state."""
    w = Heatmap(np.random.default_rng(0).normal(size=(300, 300)).astype(np.float32), title=HOSTILE[0])
    data, _ = w._repr_mimebundle_()
    page = data["text/html"]
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert f'data-mechscope-model="{w.model_id}"' in page and 'data-mechscope-widget="heatmap"' in page
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert len(page) < len(w.summary()) * 2 + 300  # the escaped summary and one div
