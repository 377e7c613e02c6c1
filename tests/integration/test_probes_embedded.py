"""Probes and word arithmetic on the embedded SmolLM2-135M (measured values in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from mechscope.analysis.directions import analogy
from mechscope.analysis.probes import probe, project_out
from mechscope.datasets.generators import sentiment
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded


@pytest.mark.parametrize("a, b, c, answer, excluded, included", [
    # measured ranks of the answer among tokens by cosine to E[a] - E[b] + E[c] on SmolLM2's
    # (tied) embedding matrix: with the three inputs left out (the usual report) and kept in
    (" king", " man", " woman", " queen", 1, 1),        # nearest even with " king" kept in
    (" Berlin", " Germany", " Japan", " Tokyo", 1, 2),   # " Berlin" itself first when kept
    (" walking", " walk", " swim", " swimming", 1, 2),
    (" brother", " man", " woman", " sister", 1, 2),
    (" Paris", " France", " Italy", " Rome", 66, 68),    # fails: 'Italy', 'Paris', ' Italians', ' Milan' first
])
def test_word_analogies(embedded, a, b, c, answer, excluded, included):
    assert analogy(embedded, a, b, c, answer=answer).answer_rank == excluded
    assert analogy(embedded, a, b, c, answer=answer, exclude_inputs=False).answer_rank == included


def test_king_man_woman_queen(embedded):
    an = analogy(embedded, " king", " man", " woman", answer=" queen", top_k=10)
    assert an.tokens[:3] == (" queen", " Queen", " princess") and an.answer_cosine > an.cosines[1]


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

    # amnesic: project the layer-15 probe direction out of the residual after block 15 (8 test texts).
    # measured: probes at 15 / 29 fall from 1.0 / 1.0 to 0.5 / 0.5 (chance); a random direction
    # leaves 0.875 / 0.875; the task (" good"/" happy" beats " bad"/" sad") goes 0.875 -> 0.625
    # (random direction: 0.75): one or two texts of eight, too few to call the task effect real.
    before = model_fingerprint(embedded)
    am = project_out(embedded, res, 15, data)
    assert model_fingerprint(embedded) == before
    assert am.probe_layers == (15, embedded.n_layers - 1)
    assert np.all(am.probe_after <= 0.625) and np.all(am.probe_random >= 0.75)
    assert am.task_before == 0.875 and am.task_after <= am.task_before
