"""Dynamics widget, Python side: state (arrays through the codec, shapes, emergence and
correlation as computed by mechscope.dynamics), the step slider's trait and its validation,
input errors, text/plain summary and the escaped offline HTML snapshot."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from mechscope import dynamics
from mechscope.dynamics import DynamicsResult
from mechscope.errors import InputError
from mechscope.widgets.codec import decode_array
from mechscope.widgets.dynamics import Dynamics
from mechscope.widgets.traits import array_traits

HOSTILE = "</script><img src=x onerror=alert(1)>"


def sigmoid(steps, centre, lo, hi, width=0.2):
    x = np.log1p(steps)
    return lo + (hi - lo) / (1 + np.exp(-(x - np.log1p(centre)) / width))


def make_result(centres=(150, 200, 300), runs=("seed0", "seed1", HOSTILE), d_mlp=0):
    steps = np.array(dynamics.log_schedule(600, 30))
    n = len(steps)
    ind = np.full((3, n, 2, 4), 0.04)
    beh = np.zeros((3, n, 3))
    for r, c in enumerate(centres):
        ind[r, :, 1, r] = sigmoid(steps, c, 0.04, 0.9)
        beh[r, :, 0] = 4.2
        beh[r, :, 1] = sigmoid(steps, c, 4.1, 0.1)
        beh[r, :, 2] = beh[r, :, 1] - 4.2
    extra = {}
    if d_mlp:
        extra = dict(selectivity=np.random.default_rng(0).random((3, n, 1, d_mlp)).astype(np.float32),
                     selectivity_layers=[1], selectivity_classes=["repeated", "fresh"])
    return DynamicsResult(runs=list(runs), seeds=[0, 1, 2], steps=steps,
                          induction=ind.astype(np.float32),
                          prev_token=np.full_like(ind, 0.1, dtype=np.float32),
                          behaviour=beh.astype(np.float32), metric_names=list(dynamics.BEHAVIOUR),
                          **extra)


def snapshot_state(widget) -> dict:
    match = re.search(r"const state = (\{.*?\});\n", widget.offline_html())
    assert match, "state not found in the snapshot"
    return json.loads(match.group(1))


def test_state_is_the_result_through_the_codec():
    result = make_result()
    w = result.show()
    assert isinstance(w, Dynamics)
    assert w.runs == result.runs and w.structure_name == "induction"
    assert w.behaviour_name == "repeated_loss" and w.method == "halfway"
    for name in array_traits(w):
        assert getattr(w, name)["dtype"] == "float32"
    np.testing.assert_array_equal(decode_array(w.steps), result.steps)
    np.testing.assert_array_equal(decode_array(w.structure), result.induction)
    np.testing.assert_array_equal(decode_array(w.structure_curve), result.curve("induction"))
    np.testing.assert_array_equal(decode_array(w.behaviour_curve), result.curve("repeated_loss"))
    assert w.row_labels == ["L0", "L1"] and w.col_labels == ["H0", "H1", "H2", "H3"]
    em = result.emergence()
    steps = decode_array(w.emergence_steps)
    np.testing.assert_allclose(steps[:, 0], em.structure_steps, rtol=1e-6)
    np.testing.assert_allclose(steps[:, 1], em.behaviour_steps, rtol=1e-6)
    windows = decode_array(w.windows)
    assert windows.shape == (3, 2, 2)
    np.testing.assert_allclose(windows[:, 0], em.structure_windows, rtol=1e-6)
    np.testing.assert_allclose(windows[:, 1], em.behaviour_windows, rtol=1e-6)
    assert w.stats["pearson"] == pytest.approx(em.pearson) and w.stats["n"] == 81
    assert w.stats["steps_pearson"] == pytest.approx(em.steps_pearson)
    # one colour scale for every run and step: 0 to the largest value anywhere
    assert (w.vmin, w.vmax) == (0.0, pytest.approx(float(result.induction.max())))
    # the heatmaps at the current (last) step
    assert w.step == 600 and w.step_index == len(result.steps) - 1
    np.testing.assert_array_equal(w.heatmap, result.induction[:, -1])


def test_step_slider_trait():
    w = Dynamics(make_result(), step=200)
    steps = w.step_values.tolist()
    assert w.step == 198 and steps[w.step_index] == 198  # nearest checkpoint in log(step + 1)
    w.step_index = 0
    assert w.step == 0
    w.step = 10_000
    assert w.step == 600
    with pytest.raises(InputError, match="step_index 99 is out of range 0..26"):
        w.step_index = 99
    with pytest.raises(InputError, match="step must be >= 0"):
        w.step = -1
    np.testing.assert_array_equal(w.heatmap, make_result().induction[:, -1])


def test_other_metrics_and_selectivity():
    result = make_result(d_mlp=6)
    w = result.show("selectivity", "first_loss", method="max_slope", vmax=0.5, title="t")
    assert w.col_labels == [f"N{i}" for i in range(6)] and w.row_labels == ["L1"]
    assert decode_array(w.structure).shape == (3, 27, 1, 6)
    assert w.method == "max_slope" and w.vmax == 0.5 and w.title == "t"
    # a flat behaviour curve never emerges: NaN steps, and no correlation (None in JSON state)
    assert np.isnan(decode_array(w.emergence_steps)[:, 1]).all()
    assert w.stats["steps_pearson"] is None
    assert json.dumps(w.stats)  # JSON-safe
    assert "first_loss never (no net change)" in w.summary()
    assert "Pearson n/a" in w.summary()


@pytest.mark.parametrize("kwargs, message", [
    (dict(structure="repeated_loss"), "structure must be a per-unit metric"),
    (dict(structure="selectivity"), "structure must be a per-unit metric"),
    (dict(behaviour="induction"), "behaviour must be one of"),
    (dict(method="median"), "method must be one of"),
    (dict(vmin=1.0, vmax=0.0), "need finite vmin < vmax"),
])
def test_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        Dynamics(make_result(), **kwargs)


def test_rejects_other_inputs_and_inconsistent_results():
    with pytest.raises(InputError, match="takes a mechscope.dynamics.DynamicsResult"):
        Dynamics(np.zeros((3, 3)))  # type: ignore[arg-type]
    good = make_result()
    with pytest.raises(InputError, match="behaviour has shape"):
        dataclasses.replace(good, metric_names=["a"])
    with pytest.raises(InputError, match="prev_token has shape"):
        dataclasses.replace(good, prev_token=good.prev_token[:, :3])
    with pytest.raises(InputError, match="steps must be 1-D and increasing"):
        dataclasses.replace(good, steps=good.steps[::-1].copy())


def test_summary_and_escaped_offline_snapshot():
    w = Dynamics(make_result())
    text = w.summary()
    assert "3 runs x 27 checkpoints (steps 0..600)" in text
    assert "seed1: induction emerges at step 200, repeated_loss at step 200" in text
    assert "Pearson -1.000" in text and "heatmaps show step 600" in text
    html = w.offline_html()
    assert 'data-mechscope-widget="dynamics"' in html
    assert HOSTILE not in html and "<img" not in html
    assert html.count("</script>") == 1
    state = snapshot_state(w)
    assert state["runs"][2] == HOSTILE  # the escaped JSON decodes to the literal label
    assert isinstance(state["structure"]["data"], str)  # base64 in the snapshot
    data, _ = w._repr_mimebundle_()
    assert data["text/plain"] == text and "<script" not in data["text/html"]
