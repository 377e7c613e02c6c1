"""mechscope's calls run on a real NDIF stack (``remote="http://127.0.0.1:PORT"``) and give
what the same weights give locally.

The stack (tests/ndif/stack.py) is ndif 0.1.2 from PyPI on 127.0.0.1. Departures from
production: the model actor runs on CPU (test-only BaseModelDeployment subclass), Ray
advertises one logical GPU, ndif runs on Python 3.11 (--ignore-requires-python), moto stands
in for the object store, no auth. The server has no mechscope installed, as on NDIF.

Each test runs one public call on the remote model and on the same weights loaded locally
and compares: values to 1e-5 (server and client run the same float32 CPU kernels), token
ids exactly. Each result is also checked to carry the planted API key nowhere (repr, pickle).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mechscope
from mechscope.metrics import kl_to_clean, logit_diff
from tests.ndif.conftest import KEY

CLEAN = "The cat sat on the"
CORRUPT = "The dog sat on the"
GOOD, BAD = " the", " of"
REFERENCE = ["The dog ran far away today", "A bird sang", "Le chat est sur la table. Bonjour"]
POS = ["good great fine day", "happy joy", "The cat is very good and happy today"]
NEG = ["bad awful sad", "The dog is terrible", "sad"]
ATOL = 1e-5


def _no_key(result: object) -> None:
    assert KEY not in repr(result)
    assert KEY.encode() not in pickle.dumps(result)


def _assert_remote_model(model: mechscope.Model, host: str) -> None:
    assert model.remote is True and model.info["remote_host"] == host
    assert next(model.hf.parameters()).device.type == "meta"  # the weights stay on NDIF


@pytest.mark.parametrize("site,neuron", [("resid", None), ("neurons", 3), ("attn", None)])
def test_activations(remote_model, local_model, ndif_stack, site, neuron):
    _assert_remote_model(remote_model, ndif_stack.host)
    remote = mechscope.activations(remote_model, CLEAN, site=site, neuron=neuron)
    local = mechscope.activations(local_model, CLEAN, site=site, neuron=neuron)
    assert remote.tokens == local.tokens
    np.testing.assert_allclose(remote.values, local.values, atol=ATOL, rtol=0)
    _no_key(remote)


def test_logit_lens(remote_model, local_model):
    remote = mechscope.logit_lens(remote_model, CLEAN, top_k=5, target=GOOD)
    local = mechscope.logit_lens(local_model, CLEAN, top_k=5, target=GOOD)
    np.testing.assert_array_equal(remote.top_ids, local.top_ids)
    np.testing.assert_allclose(remote.top_probs, local.top_probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(remote.target_prob, local.target_prob, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(remote.target_rank, local.target_rank)
    _no_key(remote)


@pytest.mark.parametrize("site,method", [("resid", "exact"), ("heads", "exact"),
                                         ("mlp", "exact"), ("resid", "attribution")])
def test_patch(remote_model, local_model, site, method):
    remote = mechscope.patch(remote_model, CLEAN, CORRUPT, logit_diff(GOOD, BAD), site=site,
                             method=method, progress=False)
    local = mechscope.patch(local_model, CLEAN, CORRUPT, logit_diff(GOOD, BAD), site=site,
                            method=method, progress=False)
    assert remote.values.shape == local.values.shape
    np.testing.assert_allclose(remote.values, local.values, atol=ATOL, rtol=0)
    assert remote.clean_metric == pytest.approx(local.clean_metric, abs=ATOL)
    assert remote.corrupt_metric == pytest.approx(local.corrupt_metric, abs=ATOL)
    assert remote.approximation == (method == "attribution")
    _no_key(remote)


def test_patch_cell_with_kl(remote_model, local_model):
    remote = mechscope.patch_cell(remote_model, CLEAN, CORRUPT, kl_to_clean(), "resid", 1, 2)
    local = mechscope.patch_cell(local_model, CLEAN, CORRUPT, kl_to_clean(), "resid", 1, 2)
    assert remote.value == pytest.approx(local.value, abs=ATOL)
    assert remote.clean_metric == pytest.approx(local.clean_metric, abs=ATOL)
    _no_key(remote)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
@pytest.mark.parametrize("target", ["heads", "neurons", "layer"])
def test_ablate(remote_model, local_model, method, target):
    t = {"heads": mechscope.heads(1, [0, 2]), "neurons": mechscope.neurons(0, [1, 5, 9]),
         "layer": mechscope.layer(1, "mlp")}[target]
    ref = None if method == "zero" else REFERENCE
    kw = dict(method=method, reference=ref, seed=3, metric=logit_diff(GOOD, BAD))
    remote = mechscope.ablate(remote_model, CLEAN, t, **kw)
    local = mechscope.ablate(local_model, CLEAN, t, **kw)
    np.testing.assert_allclose(remote.clean_logits, local.clean_logits, atol=ATOL, rtol=0)
    np.testing.assert_allclose(remote.ablated_logits, local.ablated_logits, atol=ATOL, rtol=0)
    assert np.abs(local.ablated_logits - local.clean_logits).max() > 1e-4  # it did something
    assert list(remote.top_ablated_ids) == list(local.top_ablated_ids)
    assert remote.ablated_metric == pytest.approx(local.ablated_metric, abs=ATOL)
    _no_key(remote)


def test_steering_vector_and_generate(remote_model, local_model):
    remote_vec = mechscope.steering_vector(remote_model, POS, NEG, layer=1)
    local_vec = mechscope.steering_vector(local_model, POS, NEG, layer=1)
    np.testing.assert_allclose(remote_vec.vector, local_vec.vector, atol=ATOL, rtol=0)
    assert remote_vec.norm == pytest.approx(local_vec.norm, abs=ATOL)
    plain_r = mechscope.generate(remote_model, "The cat", max_new_tokens=4)
    plain_l = mechscope.generate(local_model, "The cat", max_new_tokens=4)
    assert plain_r.new_ids == plain_l.new_ids
    steered_r = mechscope.generate(remote_model, "The cat", steer=remote_vec, coefficient=20,
                                   max_new_tokens=4)
    steered_l = mechscope.generate(local_model, "The cat", steer=local_vec, coefficient=20,
                                   max_new_tokens=4)
    assert steered_r.new_ids == steered_l.new_ids
    assert steered_l.new_ids != plain_l.new_ids  # the steering changed the continuation
    for result in (remote_vec, plain_r, steered_r):
        _no_key(result)
