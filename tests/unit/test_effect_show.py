"""The dataset effects' widgets carry their bootstrap intervals (shown on hover): ablation
(`AblationEffect`, `AblationComparison`) and steering (`SteeringEffect`) over several texts."""

from __future__ import annotations

import numpy as np
import pytest

import mechscope
from mechscope.metrics import logit_diff
from mechscope.stats import summarize
from mechscope.widgets.codec import decode_array

TEXTS = ["The cat sat on the", "A dog ran to the", "hello world", "the end of the", "The cat ran"]
METRIC = logit_diff(" the", " of")


def _interval(widget):
    return decode_array(widget.ci_low), decode_array(widget.ci_high)


def test_ablation_effect_shows_its_interval_in_the_mean_column(tiny_llama):
    e = mechscope.ablate(tiny_llama, TEXTS, mechscope.heads(0, [1]), metric=METRIC, progress=False)
    w = e.show()
    low, high = _interval(w)
    assert w.shape == (3, e.n + 1) and w.col_labels[-1] == "mean"
    assert low[2, -1] == np.float32(e.ci_low) and high[2, -1] == np.float32(e.ci_high)
    assert w.array[2, -1] == pytest.approx(e.value, abs=1e-6)
    both = summarize(np.stack([e.clean_per_example, e.ablated_per_example], axis=1))
    np.testing.assert_array_equal(low[:2, -1], both.ci_low)
    np.testing.assert_array_equal(high[:2, -1], both.ci_high)
    rows = np.stack([e.clean_per_example, e.ablated_per_example, e.per_example]).astype(np.float32)
    np.testing.assert_array_equal(low[:, :-1], rows)  # one example: its value
    np.testing.assert_array_equal(high[:, :-1], rows)
    assert w.ci_label == f"95% CI, n={e.n} in the mean column; one example: its value"
    assert "strongest (95% CI" in w.summary()


def test_ablation_comparison_shows_the_paired_difference_intervals(tiny_llama):
    c = mechscope.compare_ablations(tiny_llama, TEXTS, mechscope.heads(0, [1]), metric=METRIC,
                                    reference=["The quick brown fox jumps over the lazy dog"],
                                    seeds=(0,), progress=False)
    w = c.show()
    low, high = _interval(w)
    np.testing.assert_array_equal(low, c.difference_low.astype(np.float32))
    np.testing.assert_array_equal(high, c.difference_high.astype(np.float32))
    assert w.ci_label == f"95% CI, n={c.effects[0].n}"


def test_steering_effect_shows_its_interval_in_the_mean_row(tiny_llama):
    vec = mechscope.steering_vector(tiny_llama, ["good great fine"], ["bad awful sad"], layer=0)
    e = mechscope.steering_sweep(tiny_llama, TEXTS, vec, coefficients=[-3, 0, 3], metric=METRIC)
    w = e.show()
    low, high = _interval(w)
    assert w.shape == (e.n + 1, 3) and w.row_labels[-1] == "mean"
    np.testing.assert_array_equal(low[-1], e.ci_low.astype(np.float32))
    np.testing.assert_array_equal(high[-1], e.ci_high.astype(np.float32))
    np.testing.assert_allclose(w.array[-1], e.values, atol=1e-6)
    np.testing.assert_array_equal(low[:-1], e.per_example.astype(np.float32))
    np.testing.assert_array_equal(high[:-1], e.per_example.astype(np.float32))
    assert w.ci_label == f"95% CI, n={e.n} in the mean row; one example: its value"
