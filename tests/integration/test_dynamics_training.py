"""The default training run forms induction heads in a phase change (slow: ~20-60 s on 2 cores).

One seed the notebook does not use (3), default task, model and schedule: the best head's
induction score rises by more than 0.5, the repeated-token loss falls by more than 2 nats, each
one's emergence step lies inside the other's transition window, and reloading the last
checkpoint gives the same metrics as measuring the run.
"""

from __future__ import annotations

import numpy as np
import pytest

from mechscope import dynamics

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_default_run_has_an_induction_phase_change(tmp_path):
    runs = dynamics.train(seeds=(3,), out_dir=tmp_path, progress=False)
    assert runs.steps[0] == 0 and runs.steps[-1] == 600 and len(runs.steps) == 27
    result = dynamics.measure(runs, progress=False)
    em = result.emergence("induction", "repeated_loss")
    assert em.structure_change[0] > 0.5, em.summary()
    assert em.behaviour_change[0] < -2.0, em.summary()
    assert em.coincide[0], em.summary()
    assert 50 < em.structure_steps[0] < 500, em.summary()
    assert em.pearson < -0.9, em.summary()
    # the induction head sits in layer 1 and a previous-token head in layer 0
    last = result.induction[0, -1]
    assert np.unravel_index(last.argmax(), last.shape)[0] == 1
    prev = result.prev_token[0, -1]
    assert np.unravel_index(prev.argmax(), prev.shape)[0] == 0
    # the first occurrence stays unpredictable: its loss ends near log(64) = 4.16
    assert result.curve("first_loss")[0, -1] > 3.5
    # the training loss at the end reflects the copyable half of each sequence
    assert runs.train_loss[0, -20:].mean() < 2.5
