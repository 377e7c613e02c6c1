"""A model whose activations go NaN/inf: every analysis returns, every widget shows the
non-finite values as such (counted, drawn grey), nothing crashes and nothing reads as a number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.metrics import logit_diff
from mechscope.widgets import decode_array

PROMPT, CORRUPT = "the cat sat on the", "the dog sat on the"


@pytest.fixture(scope="module")
def broken():
    """A tiny llama whose layer-1 MLP writes +inf into the residual (NaN from then on)."""
    model = mechscope.tiny_model("llama", n_layers=3)
    with torch.no_grad():
        model.hf.model.layers[1].mlp.down_proj.weight[0, :] = float("inf")
    return model


def test_activations_keep_nan_and_the_heatmap_counts_it(broken):
    result = mechscope.activations(broken, PROMPT)
    assert np.isfinite(result.values[0]).all() and np.isnan(result.values[1:]).all()
    w = result.show()
    n_bad = int((~np.isfinite(result.values)).sum())
    assert w.stats["nan"] == n_bad
    assert f"{n_bad} NaN: drawn grey" in w.summary()
    assert np.isnan(decode_array(w.values)[1:]).all()
    assert w.offline_html() is not None


def test_logit_lens_probabilities_go_nan_and_the_widget_still_builds(broken):
    lens = mechscope.logit_lens(broken, PROMPT, target=" the")
    assert np.isfinite(lens.top_probs[0]).all() and np.isnan(lens.top_probs[1:]).all()
    w = lens.show()
    assert w.offline_html() is not None


def test_patching_metric_nan_is_shown_not_normalised(broken):
    result = mechscope.patch(broken, PROMPT, CORRUPT, logit_diff(" the", " of"), progress=False)
    assert np.isnan(result.clean_metric) and np.isnan(result.values).all()
    w = result.show()
    assert w.offline_html() is not None


def test_selectivity_of_nan_neurons_is_nan_not_zero(broken):
    result = mechscope.selectivity(broken, {"a": ["the cat", "the mat"], "b": ["a dog", "a log"]}, layer=2)
    assert np.isnan(result.class_means).all()
    assert np.isnan(result.index).all(), "a NaN neuron must not read as 'not selective' (0)"
    frame = result.to_pandas()
    assert frame["preferred"].isna().all()
    w = result.show()
    assert w.offline_html() is not None
