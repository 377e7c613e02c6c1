"""`mechscope.patch`: equals a plain torch-hooks reference, batches, validates first, leaves the model as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import InputError
from mechscope.interventions import patch_prefix
from mechscope.interventions._batching import plan_chunks
from mechscope.interventions.metrics import BoundMetric
from mechscope.metrics import kl_to_clean, logit_diff, prob
from tests.helpers import model_fingerprint
from tests.reference_hooks import reference_attribution, reference_patching

CLEAN = "The cat sat on the"
CORRUPT = "The dog sat on the"
GOOD, BAD = " the", " of"
SITES = ("resid", "attn", "mlp", "heads")


def _ids(model):
    return model.to_single_token(GOOD), model.to_single_token(BAD)


def _diff(model):
    g, b = _ids(model)
    return lambda logits, _clean: float(logits[g] - logits[b])


def _diff_t(model):
    g, b = _ids(model)
    return lambda logits, _clean: logits[g] - logits[b]


def _run(model, **kw):
    kw.setdefault("progress", False)
    return mechscope.patch(model, CLEAN, CORRUPT, logit_diff(GOOD, BAD), **kw)


# ---- exactness against plain torch hooks ---------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_exact_equals_torch_hooks_reference(tiny, site):
    before = model_fingerprint(tiny)
    r = _run(tiny, site=site)
    ref, ref_clean, ref_corrupt = reference_patching(tiny, CLEAN, CORRUPT, _diff(tiny), site=site)
    np.testing.assert_allclose(r.values, ref, atol=1e-4, rtol=0)
    assert r.clean_metric == pytest.approx(ref_clean, abs=1e-4)
    assert r.corrupt_metric == pytest.approx(ref_corrupt, abs=1e-4)
    assert np.abs(ref - ref_corrupt).max() > 1e-3  # patching did something
    assert r.n_forward_passes == 2  # the clean run + one batched trace of every copy
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_positions_subset_equals_reference(tiny_llama, site):
    r = _run(tiny_llama, site=site, positions=[-1, 1, 3])
    ref, _, _ = reference_patching(tiny_llama, CLEAN, CORRUPT, _diff(tiny_llama), site=site,
                                   positions=[1, 3, -1])
    assert r.positions == [1, 3, len(r.clean_tokens) - 1]
    np.testing.assert_allclose(r.values, ref, atol=1e-4, rtol=0)
    if site == "resid":
        assert r.columns == r.positions and r.values.shape == (2, 3)
    else:
        assert r.columns == list(range(tiny_llama.n_heads))


def test_layers_subset(tiny_llama):
    r = _run(tiny_llama, layers=[-1])
    full = _run(tiny_llama)
    assert r.layers == [1]
    np.testing.assert_allclose(r.values, full.values[1:], atol=1e-6)


@pytest.mark.parametrize("budget", [1e-9, 0.02, 0.05])
def test_memory_budget_splits_passes_not_values(tiny_llama, budget):
    full = _run(tiny_llama)
    r = _run(tiny_llama, memory_budget_mb=budget)
    np.testing.assert_allclose(r.values, full.values, atol=1e-5)
    assert r.corrupt_metric == pytest.approx(full.corrupt_metric, abs=1e-5)
    assert r.n_forward_passes > 2
    if budget == 1e-9:  # at least one copy per pass, never zero
        # position 0 comes before the first differing token: its copies need no pass at all
        assert r.n_forward_passes == 1 + r.values.size - r.values.shape[0]
        with patch_prefix.disabled():
            assert _run(tiny_llama, memory_budget_mb=budget).n_forward_passes == 1 + r.values.size


def test_plan_covers_every_cell_once():
    for layers, cols, cap in [([0, 1, 2], 5, 1), ([0, 3], 7, 4), ([1], 3, 100), ([0, 1, 2, 3], 2, 3)]:
        chunks = plan_chunks(layers, cols, cap)
        cells = [(layer, c) for chunk in chunks for layer, cs in chunk for c in cs]
        assert cells == [(layer, c) for layer in layers for c in range(cols)]
        assert all(sum(len(cs) for _, cs in chunk) <= cap for chunk in chunks)
        for chunk in chunks:
            assert [layer for layer, _ in chunk] == sorted({layer for layer, _ in chunk})


def test_last_layer_last_position_restores_clean(tiny):
    # The final residual at the final position alone decides the next-token logits.
    r = _run(tiny)
    assert r.values[-1, -1] == pytest.approx(r.clean_metric, abs=1e-5)
    np.testing.assert_allclose(r.values[-1, :-1], r.corrupt_metric, atol=1e-5)


def test_kl_to_clean_metric(tiny_llama):
    r = mechscope.patch(tiny_llama, CLEAN, CORRUPT, kl_to_clean(), progress=False)
    assert r.clean_metric == pytest.approx(0.0, abs=1e-6)
    assert r.corrupt_metric > 0
    assert r.values[-1, -1] == pytest.approx(0.0, abs=1e-5)
    n = r.normalized()
    assert n[-1, -1] == pytest.approx(1.0, abs=1e-4)
    ref, _, _ = reference_patching(
        tiny_llama, CLEAN, CORRUPT,
        lambda lg, cl: float((torch.softmax(cl, -1) * (torch.log_softmax(cl, -1) - torch.log_softmax(lg, -1))).sum()),
    )
    np.testing.assert_allclose(r.values, ref, atol=1e-5)


# ---- attribution ---------------------------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_attribution_equals_hand_gradient(tiny, site):
    before = model_fingerprint(tiny)
    a = _run(tiny, site=site, method="attribution")
    ref = reference_attribution(tiny, CLEAN, CORRUPT, _diff_t(tiny), site=site)
    np.testing.assert_allclose(a.values, ref, atol=1e-4, rtol=0)
    assert a.approximation and "first-order" in a.note
    assert a.method == "attribution" and a.n_forward_passes == 1  # clean + corrupt rows, one pass
    exact = _run(tiny, site=site)
    assert a.corrupt_metric == pytest.approx(exact.corrupt_metric, abs=1e-5)
    assert a.clean_metric == pytest.approx(exact.clean_metric, abs=1e-5)
    assert model_fingerprint(tiny) == before  # requires_grad restored, no .grad left behind


def test_attribution_tracks_exact_on_tiny(tiny_llama):
    exact = _run(tiny_llama).values.ravel()
    approx = _run(tiny_llama, method="attribution").values.ravel()
    assert np.corrcoef(exact, approx)[0, 1] > 0.9


def test_attribution_fills_no_parameter_grads_and_restores_flags(tiny_llama):
    params = list(tiny_llama.hf.parameters())
    params[0].requires_grad_(False)  # a mixed state must come back exactly
    try:
        flags = [p.requires_grad for p in params]
        _run(tiny_llama, method="attribution", site="heads")
        assert [p.requires_grad for p in params] == flags
        assert all(p.grad is None for p in params)
    finally:
        params[0].requires_grad_(True)


def test_attribution_under_no_grad(tiny_llama):
    with torch.no_grad():
        a = _run(tiny_llama, method="attribution")
    assert np.isfinite(a.values).all()


# ---- remote path, model state, failures ----------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "attribution"])
@pytest.mark.parametrize("site", ["resid", "heads"])
def test_remote_local_equals_local(tiny_llama, site, method):
    local = _run(tiny_llama, site=site, method=method)
    tiny_llama.remote = "local"
    try:
        sim = _run(tiny_llama, site=site, method=method)
    finally:
        tiny_llama.remote = False
    np.testing.assert_allclose(sim.values, local.values, atol=1e-6)
    assert sim.clean_metric == pytest.approx(local.clean_metric, abs=1e-6)
    assert sim.corrupt_metric == pytest.approx(local.corrupt_metric, abs=1e-6)


def _raising_metric(exc: BaseException) -> BoundMetric:
    def fn(logits, _clean):
        if logits.shape[0] > 1:  # only on the batched, patched run
            raise exc
        return logits[:, 5] - logits[:, 7]
    return BoundMetric("raises", fn)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
@pytest.mark.parametrize("site", ["resid", "attn", "heads"])
def test_model_unchanged_after_exception_mid_trace(tiny, site, exc):
    before = model_fingerprint(tiny)
    good = _run(tiny, site=site)
    with pytest.raises(type(exc)):
        mechscope.patch(tiny, CLEAN, CORRUPT, _raising_metric(exc), site=site, progress=False)
    assert model_fingerprint(tiny) == before
    again = _run(tiny, site=site)  # and the model still works the same
    np.testing.assert_array_equal(again.values, good.values)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_model_unchanged_after_exception_in_attribution(tiny_llama, exc):
    def fn(logits, _clean):
        if torch.is_grad_enabled() and logits.requires_grad:
            raise exc
        return logits[:, 5] - logits[:, 7]

    before = model_fingerprint(tiny_llama)
    with pytest.raises(type(exc)):
        mechscope.patch(tiny_llama, CLEAN, CORRUPT, BoundMetric("raises", fn), method="attribution",
                        progress=False)
    assert model_fingerprint(tiny_llama) == before


def test_progress_bar(tiny_llama, capsys):
    mechscope.patch(tiny_llama, CLEAN, CORRUPT, logit_diff(GOOD, BAD), progress=True)
    assert "patching resid" in capsys.readouterr().err
    mechscope.patch(tiny_llama, CLEAN, CORRUPT, logit_diff(GOOD, BAD), progress=False)
    assert capsys.readouterr().err == ""


# ---- validation before any forward pass ----------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"site": "neurons"}, "site must be one of"),
    ({"method": "fast"}, "method must be one of"),
    ({"positions": [99]}, "position 99 is out of range"),
    ({"positions": [1, 1]}, "names the same position twice"),
    ({"positions": []}, "positions is empty"),
    ({"positions": ["1"]}, "positions must be an int"),
    ({"layers": [2]}, "layer 2 is out of range"),
    ({"memory_budget_mb": 0}, "memory_budget_mb must be a positive"),
    ({"memory_budget_mb": float("nan")}, "memory_budget_mb must be a positive"),
])
def test_bad_arguments_rejected_before_forward(tiny_llama, forward_counter, kwargs, message):
    with pytest.raises(InputError, match=message):
        _run(tiny_llama, **kwargs)
    assert forward_counter == []


def test_multi_token_metric_rejected_before_forward(tiny_llama, forward_counter):
    word = "Mechanistic"
    assert len(tiny_llama.tokenizer(word, add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(InputError, match="not one. Metrics need single tokens"):
        mechscope.patch(tiny_llama, CLEAN, CORRUPT, logit_diff(word, BAD), progress=False)
    with pytest.raises(InputError, match="mechscope.metrics"):
        mechscope.patch(tiny_llama, CLEAN, CORRUPT, "logit_diff", progress=False)
    assert forward_counter == []


def test_different_token_lengths_show_both_tokenisations(tiny_llama, forward_counter):
    with pytest.raises(InputError) as err:
        mechscope.patch(tiny_llama, CLEAN, "The big dog sat on the", logit_diff(GOOD, BAD))
    msg = str(err.value)
    assert "same number of tokens" in msg
    assert str(tiny_llama.str_tokens(CLEAN)) in msg
    assert str(tiny_llama.str_tokens("The big dog sat on the")) in msg
    assert forward_counter == []


@pytest.mark.parametrize("clean, corrupt", [("", CORRUPT), (CLEAN, 3), (None, CORRUPT)])
def test_bad_prompts(tiny_llama, clean, corrupt):
    with pytest.raises(InputError):
        mechscope.patch(tiny_llama, clean, corrupt, logit_diff(GOOD, BAD))


def test_not_a_model(tiny_llama):
    with pytest.raises(InputError, match="needs a mechscope Model"):
        mechscope.patch(tiny_llama.hf, CLEAN, CORRUPT, logit_diff(GOOD, BAD))


# ---- the result object -------------------------------------------------------------------------
def test_result_fields_normalized_pandas_show(tiny_llama):
    r = _run(tiny_llama)
    assert r.site == "resid" and r.method == "exact" and not r.approximation and r.note == ""
    assert r.metric_name == "logit_diff(' the', ' of')"
    assert r.clean_tokens == tiny_llama.str_tokens(CLEAN)
    assert r.corrupt_tokens == tiny_llama.str_tokens(CORRUPT)
    assert r.column_labels[1] == " cat/ dog" and r.column_labels[0] == "The"
    n = r.normalized()
    expect = (r.values - r.corrupt_metric) / (r.clean_metric - r.corrupt_metric)
    np.testing.assert_allclose(n, expect, rtol=1e-5, atol=1e-5)
    assert n[-1, -1] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(dataclass_frozen_error()):
        r.site = "mlp"  # type: ignore[misc]
    df = r.to_pandas()
    assert df.shape == r.values.shape
    assert list(df.index) == r.layers
    assert df.columns.names == ["position", "clean_token", "corrupt_token"]
    w = r.show()
    assert w.shape == r.values.shape and w.colorscale == "diverging"
    assert w.vmin == -w.vmax
    assert w.col_labels == r.column_labels and w.row_labels == ["L0", "L1"]
    assert "exact patching of resid" in w.title
    assert "exact resid" in repr(r)


def test_heads_result_labels(tiny_llama):
    r = _run(tiny_llama, site="heads", positions=[2])
    assert r.column_labels == ["H0", "H1", "H2", "H3"]
    assert list(r.to_pandas().columns) == [0, 1, 2, 3]
    assert "positions [2]" in r.show().title


def test_normalized_refuses_when_clean_equals_corrupt(tiny_llama):
    r = mechscope.patch(tiny_llama, CLEAN, CLEAN, prob(GOOD), progress=False)
    np.testing.assert_allclose(r.values, r.clean_metric, atol=1e-6)
    with pytest.raises(InputError, match="no effect to normalise"):
        r.normalized()
    w = r.show()  # falls back to values - corrupt
    assert "- corrupt" in w.value_label


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError
