"""Activation patching on the embedded SmolLM2-135M-Instruct (offline; ~40 s on 2 cores).

Exact patching equals plain torch hooks at every site, and the residual sweep localises the
fact as causal-tracing papers report: subject tokens carry it in early and middle layers, the
final token in late layers.
"""

from __future__ import annotations

import numpy as np
import pytest

import mechscope
from mechscope.metrics import logit_diff
from tests.helpers import model_fingerprint
from tests.reference_hooks import reference_patching

pytestmark = pytest.mark.embedded

CLEAN = "The Eiffel Tower is in the city of"
CORRUPT = "The Colosseum is in the city of"
SUBJECT = (1, 2, 3)  # ' E' 'iffel' ' Tower' / ' Col' 'osse' 'um'
LAYERS = [0, 14, 29]  # the reference runs one forward per cell, so a few layers


@pytest.fixture(scope="module")
def metric():
    return logit_diff(" Paris", " Rome")


@pytest.fixture(scope="module")
def sweep(embedded, metric):
    return mechscope.patch(embedded, CLEAN, CORRUPT, metric, progress=False)


def _diff(model):
    paris, rome = model.to_single_token(" Paris"), model.to_single_token(" Rome")
    return lambda logits, _clean: float(logits[paris] - logits[rome])


def test_prompts_have_the_same_length(embedded):
    clean, corrupt = embedded.str_tokens(CLEAN), embedded.str_tokens(CORRUPT)
    assert len(clean) == len(corrupt) == 9
    assert clean[1:4] == [" E", "iffel", " Tower"] and corrupt[1:4] == [" Col", "osse", "um"]


@pytest.mark.parametrize("site", ["resid", "attn", "mlp", "heads"])
def test_exact_equals_torch_hooks_reference(embedded, metric, site):
    before = model_fingerprint(embedded)
    r = mechscope.patch(embedded, CLEAN, CORRUPT, metric, site=site, layers=LAYERS, progress=False)
    ref, ref_clean, ref_corrupt = reference_patching(embedded, CLEAN, CORRUPT, _diff(embedded),
                                                     site=site, layers=LAYERS)
    np.testing.assert_allclose(r.values, ref, atol=1e-4, rtol=0)
    assert r.clean_metric == pytest.approx(ref_clean, abs=1e-4)
    assert r.corrupt_metric == pytest.approx(ref_corrupt, abs=1e-4)
    assert model_fingerprint(embedded) == before


def test_residual_sweep_localises_the_fact(sweep):
    assert sweep.values.shape == (30, 9) and sweep.n_forward_passes == 2
    assert sweep.clean_metric > 2 and sweep.corrupt_metric < -5  # Paris vs Rome, both ways
    norm = sweep.normalized()
    top = norm.argmax(axis=1)
    assert all(top[layer] in SUBJECT for layer in range(0, 16)), top
    assert all(top[layer] == 8 for layer in range(25, 30)), top
    assert norm[:16, list(SUBJECT)].max(axis=1).min() > 0.5  # a strong effect, not noise
    assert norm[29, 8] == pytest.approx(1.0, abs=1e-4)  # the last residual decides the logits


def test_attribution_agrees_in_late_layers(embedded, metric, sweep):
    a = mechscope.patch(embedded, CLEAN, CORRUPT, metric, method="attribution", progress=False)
    assert a.approximation
    assert a.corrupt_metric == pytest.approx(sweep.corrupt_metric, abs=1e-3)
    overall = np.corrcoef(a.values.ravel(), sweep.values.ravel())[0, 1]
    late = np.corrcoef(a.values[21:].ravel(), sweep.values[21:].ravel())[0, 1]
    assert overall > 0.5 and late > 0.9, (overall, late)
