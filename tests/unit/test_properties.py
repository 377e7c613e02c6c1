"""Property-based tests (hypothesis): any prompt, position, layer or widget input either works
and gives a result of the right shape, or fails with mechscope's InputError saying what was
wrong -- never a raw tokenizer / numpy / torch error, and never a changed model.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mechscope
from mechscope import InputError
from mechscope.metrics import logit_diff
from mechscope.models import tiny_model
from mechscope.widgets import Heatmap, decode_array
from tests.helpers import model_fingerprint
from tests.hostile import CATALOGUE

MODEL = tiny_model("llama")
PROMPT = "the cat sat on the mat"
N_TOKENS = len(MODEL.str_tokens(PROMPT))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: any text: every Unicode category including lone surrogates and controls, plus the hostile
#: catalogue, mixed
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.sampled_from(CATALOGUE), min_size=1, max_size=3).map(" ".join),
)


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@SETTINGS
@given(prompt=TEXT)
def test_any_prompt_gives_activations_or_a_clear_input_error(prompt: str) -> None:
    before = model_fingerprint(MODEL)
    try:
        result = mechscope.activations(MODEL, prompt)
    except InputError as err:
        message = str(err)
        assert message.startswith("the prompt"), message
        if prompt == "":
            assert "empty" in message
        elif not _valid_unicode(prompt):
            assert "lone surrogate" in message and "encode('utf-8'" in message
        else:
            assert "tokens long" in message or "produced no tokens" in message, message
    else:
        assert prompt and _valid_unicode(prompt)
        assert result.values.shape == (MODEL.n_layers, len(result.tokens))
        assert all(isinstance(t, str) for t in result.tokens)
        assert np.isfinite(result.values).all()
    assert model_fingerprint(MODEL) == before  # weights, hooks, tokenizer, RNG


@SETTINGS
@given(token=TEXT)
def test_any_metric_token_binds_or_fails_clearly(token: str) -> None:
    try:
        bound = logit_diff(token, " of").bind(MODEL)
    except InputError as err:
        message = str(err)
        assert ("not one" in message or "lone surrogate" in message or "non-empty" in message), message
    else:
        ids = MODEL.tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and bound is not None


@SETTINGS
@given(positions=st.lists(st.integers(-12, 12), min_size=1, max_size=4))
def test_positions_index_the_python_way_or_fail_clearly(positions: list[int]) -> None:
    n = N_TOKENS
    metric = logit_diff(" the", " of")
    before = model_fingerprint(MODEL)
    try:
        result = mechscope.patch(MODEL, PROMPT, "the dog sat on the mat", metric, site="resid",
                                 positions=positions, layers=[0], progress=False)
    except InputError as err:
        message = str(err)
        out_of_range = [p for p in positions if not -n <= p < n]
        if out_of_range:
            assert re.search(rf"position {out_of_range[0]} is out of range: there are {n} positions", message), message
            assert "negative indices count from the end" in message
        else:
            assert len({p % n for p in positions}) < len(positions)
            assert "names the same position twice" in message, message
    else:
        assert all(-n <= p < n for p in positions)
        assert result.positions == sorted(p % n for p in positions)  # columns in prompt order
        assert result.values.shape == (1, len(positions))
    assert model_fingerprint(MODEL) == before  # weights, hooks, tokenizer, RNG


@SETTINGS
@given(layers=st.lists(st.integers(-5, 5), min_size=1, max_size=3, unique=True))
def test_layers_index_the_python_way_or_fail_clearly(layers: list[int]) -> None:
    n = MODEL.n_layers
    try:
        result = mechscope.activations(MODEL, PROMPT, layers=layers)
    except InputError as err:
        message = str(err)
        bad = [x for x in layers if not -n <= x < n]
        if bad:
            assert f"layer {bad[0]} is out of range: this model has {n} layers" in message, message
        else:
            assert len({x % n for x in layers}) < len(layers), message
    else:
        assert result.layers == sorted(x % n for x in layers)  # model order
        assert result.values.shape[0] == len(layers)


DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.uint8, np.bool_])


@st.composite
def matrices(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(DTYPES)
    shape = draw(st.tuples(st.integers(1, 30), st.integers(1, 30)))
    if np.dtype(dtype).kind == "f":
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True)
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


@SETTINGS
@given(values=matrices(), label=TEXT.filter(_valid_unicode))
def test_heatmap_takes_any_real_matrix_and_keeps_every_value(values: np.ndarray, label: str) -> None:
    rows, cols = values.shape
    w = Heatmap(values, [label] * rows, [f"{label}{i}" for i in range(cols)], title=label)
    wire = decode_array(w.values)
    assert wire.shape == values.shape  # small maps are never pooled
    as_float = values.astype(np.float64)
    # float64 beyond float32's range becomes +-inf on the wire, as float32 would store it
    with np.errstate(over="ignore"):
        want = as_float.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(wire), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(wire[finite], want[finite], rtol=1e-6)
    assert (wire[np.isposinf(want)] == np.inf).all() and (wire[np.isneginf(want)] == -np.inf).all()
    assert w.stats["nan"] == int(np.isnan(as_float).sum())
    snapshot = w.offline_html()
    assert snapshot is not None
    state = re.search(r"const state = (\{.*?\});\n", snapshot, flags=re.S)
    assert state is not None
    assert "<" not in state.group(1) and "\u2028" not in state.group(1)
    assert json.loads(state.group(1))["title"] == label


@SETTINGS
@given(bad=st.one_of(
    st.lists(st.lists(st.floats(), min_size=1, max_size=3), min_size=2, max_size=3).filter(
        lambda rows: len({len(r) for r in rows}) > 1),  # ragged
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=4, max_side=3)),
    hnp.arrays(np.float32, st.tuples(st.integers(1, 5))),
    hnp.arrays(np.complex64, (2, 2)),
    hnp.arrays(np.dtype("U3"), (2, 2)),
    st.just(np.zeros((0, 4))),
))
def test_heatmap_rejects_what_is_not_a_real_matrix_clearly(bad: object) -> None:
    with pytest.raises(InputError, match=r"Heatmap (needs|got)"):
        Heatmap(bad)


@SETTINGS
@given(vector=hnp.arrays(np.float32, st.integers(1, 80)))
def test_steering_vector_of_any_wrong_size_is_refused_before_generation(vector: np.ndarray) -> None:
    assume(vector.shape[0] != MODEL.d_model)
    before = model_fingerprint(MODEL)
    with pytest.raises(InputError, match=rf"{vector.shape[0]}.*{MODEL.d_model}|{MODEL.d_model}.*{vector.shape[0]}"):
        mechscope.generate(MODEL, "the cat", steer=vector, layer=0, max_new_tokens=2)
    assert model_fingerprint(MODEL) == before  # weights, hooks, tokenizer, RNG
