"""Probes and word arithmetic on the embedded SmolLM2-135M (measured values in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from mechscope.analysis.directions import analogy
from mechscope.analysis.probes import probe
from mechscope.datasets.generators import sentiment

pytestmark = pytest.mark.embedded


def test_king_man_woman_queen(embedded):
    an = analogy(embedded, " king", " man", " woman", answer=" queen", top_k=10)
    # measured: " queen" is the nearest token (rank 1, the three inputs left out), then " Queen"
    assert an.answer_rank == 1
    assert an.tokens[0] == " queen"


def test_sentiment_probe_per_layer_with_control(embedded):
    data = sentiment(32, seed=1)
    res = probe(embedded, data, layers=[0, 15, -1])
    # measured (n_test=8 held-out texts): accuracy 0.875 / 1.0 / 1.0 at layers 0 / 15 / 29, control
    # (random label per adjective) 0.625 at each: selectivity 0.25 / 0.375 / 0.375. Intervals are wide
    # at this n (layer 0: 0.625..1.0); at n=48 (12 test texts) layer 0 was 0.42 and layer 29 1.0.
    assert res.layers == (0, 15, embedded.n_layers - 1) and res.n_test == 8
    assert res.control_unit == "adjective"
    assert res.accuracy[-1] >= 0.875
    assert np.all(res.ci_low <= res.accuracy) and np.all(res.accuracy <= res.ci_high)
    np.testing.assert_allclose(res.selectivity, res.accuracy - res.control, atol=1e-6)
    print(res.to_pandas().to_string())
