"""mechscope.dynamics metrics on a real LM: the embedded SmolLM2-135M has induction heads.

`measure` takes any list of checkpoints; here one loaded `Model` (the embedded model as its
own single checkpoint). A trained LM must show what the metrics are for: some head attends
from a repeated token to the token after its earlier occurrence (induction score well above
the ~0.03 of a uniform head), and its loss on the repeat is far below its loss on the first
occurrence (~3 vs ~15 nats: a 135M model copies spans of rare tokens imperfectly). The model is left exactly as it was (sdpa attention, weights, hooks, RNG).
"""

from __future__ import annotations

import numpy as np
import pytest

from mechscope import dynamics
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded


def test_embedded_model_has_induction_heads(embedded):
    before = model_fingerprint(embedded)
    attn = embedded.hf.config._attn_implementation
    result = dynamics.measure({"smollm2": [embedded]}, steps=[0], n_seqs=8, span_len=20,
                              progress=False)
    assert embedded.hf.config._attn_implementation == attn
    assert model_fingerprint(embedded) == before
    assert result.induction.shape == (1, 1, embedded.n_layers, embedded.n_heads)
    scores = result.induction[0, 0]
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert scores.max() > 0.5  # real induction heads
    assert np.median(scores) < 0.2  # most heads are something else
    assert result.prev_token[0, 0].max() > 0.5  # and previous-token heads
    beh = dict(zip(result.metric_names, result.behaviour[0, 0].tolist(), strict=True))
    # random tokens are unpredictable (~15 nats for a 49k vocabulary); their repeat is copied
    assert beh["first_loss"] > 10 and beh["repeated_loss"] < beh["first_loss"] - 8
    assert beh["icl_score"] < -8
