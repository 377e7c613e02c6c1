"""Linear probes, the control task and amnesic projection against independent references.

References: numpy gradient descent (logistic), numpy least squares (ridge), activations from
plain ``register_forward_hook`` on ``model.hf``, and the projection done by a forward hook.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope.analysis.collect import collect
from mechscope.analysis.directions import MIN_PER_CLASS
from mechscope.analysis.probes import (
    ProbeResult,
    _train_test,
    control_labels,
    fit,
    predict,
    probe,
    project_out,
    projected_run,
    split,
)
from mechscope.datasets.generators import sentiment
from mechscope.datasets.labelled import labelled_texts
from mechscope.errors import InputError
from tests.helpers import model_fingerprint


def _blobs(n: int, d: int, k: int, seed: int, gap: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.standard_normal((k, d)) * gap
    return centres[y] + rng.standard_normal((n, d)), y


def _gd_softmax(x: np.ndarray, y: np.ndarray, k: int, l2: float, binary: bool, steps: int = 20000,
                lr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Plain full-batch gradient descent on the same objective (an independent reference)."""
    n, d = x.shape
    free = 1 if binary else k
    w, b = np.zeros((free, d)), np.zeros(free)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        z = x @ w.T + b
        z = np.hstack([np.zeros((n, 1)), z]) if binary else z
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot)[:, k - free:] / n
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(0)
    return w, b


def test_logistic_binary_matches_gradient_descent():
    x, y = _blobs(40, 5, 2, seed=0, gap=0.7)
    w, b = fit(x, y, 2, "logistic", 0.1)
    w_ref, b_ref = _gd_softmax(x, y, 2, 0.1, binary=True)
    assert np.abs(w[0]).max() == 0 and b[0] == 0
    np.testing.assert_allclose(w[1], w_ref[0], atol=1e-6)
    np.testing.assert_allclose(b[1], b_ref[0], atol=1e-6)
    acc = np.mean(predict(x, w, b) == y)
    assert acc == np.mean(((x @ w_ref[0] + b_ref[0]) > 0) == y)


def test_logistic_multiclass_matches_gradient_descent():
    x, y = _blobs(60, 4, 3, seed=1, gap=1.0)
    w, b = fit(x, y, 3, "logistic", 0.1)
    w_ref, b_ref = _gd_softmax(x, y, 3, 0.1, binary=False)
    np.testing.assert_allclose(w, w_ref, atol=1e-6)
    np.testing.assert_allclose(b - b[0], b_ref - b_ref[0], atol=1e-6)  # biases: up to a common shift


def test_logistic_more_features_than_examples_matches_full_space():
    # the span reduction is exact: same weights as gradient descent in all 30 dimensions
    x, y = _blobs(12, 30, 2, seed=2, gap=0.3)
    w, b = fit(x, y, 2, "logistic", 0.5)
    w_ref, b_ref = _gd_softmax(x, y, 2, 0.5, binary=True, steps=20000, lr=0.2)
    np.testing.assert_allclose(w[1], w_ref[0], atol=1e-6)
    np.testing.assert_allclose(b[1], b_ref[0], atol=1e-6)


def test_ridge_matches_least_squares():
    x, y = _blobs(30, 6, 3, seed=3)
    alpha = 2.0
    w, b = fit(x, y, 3, "ridge", alpha)
    # independent: least squares on [x, 1] with sqrt(alpha) * I rows for the weights only
    a = np.hstack([x, np.ones((30, 1))])
    pen = np.hstack([np.sqrt(alpha) * np.eye(6), np.zeros((6, 1))])
    sol = np.linalg.lstsq(np.vstack([a, pen]), np.vstack([np.eye(3)[y], np.zeros((6, 3))]), rcond=None)[0]
    np.testing.assert_allclose(w, sol[:6].T, atol=1e-10)
    np.testing.assert_allclose(b, sol[6], atol=1e-10)


def test_separable_probe_is_perfect_and_control_is_near_chance():
    x, y = _blobs(200, 8, 2, seed=4, gap=4.0)
    train, test = split(y, 0.25, 0)
    accs, ctrls = [], []
    for seed in range(10):
        types = [str(i) for i in range(len(y))]                      # each text its own type
        ctrl = control_labels(types, y, seed)
        accs.append(_train_test(x, y, train, test, 2, "logistic", 1e-2)[2].mean())
        ctrls.append(_train_test(x, ctrl, train, test, 2, "logistic", 1e-2)[2].mean())
    assert min(accs) == 1.0
    assert 0.4 < np.mean(ctrls) < 0.6


def test_control_labels_are_per_word_type():
    types = ["a", "b", "c", "a", "b", "c", "a"]
    out = control_labels(types, np.array([0, 1, 0, 1, 0, 1, 0]), 3)
    for t in set(types):
        assert len({int(out[i]) for i in range(len(types)) if types[i] == t}) == 1
    assert len(set(out.tolist())) == 2


def test_split_is_stratified():
    y = np.array([0] * 8 + [1] * 12)
    train, test = split(y, 0.25, 0)
    assert sorted(np.r_[train, test].tolist()) == list(range(20))
    assert (y[test] == 0).sum() == 2 and (y[test] == 1).sum() == 3


def _hook_rows(model, texts, layers):
    """Last-token output of each decoder block, from plain forward hooks, one text at a time."""
    out = {lay: [] for lay in layers}
    for text in texts:
        seen = {}
        handles = [model.hf_module("resid", lay).register_forward_hook(
            lambda _m, _i, o, lay=lay, seen=seen: seen.__setitem__(lay, (o[0] if isinstance(o, tuple) else o)[0, -1]))
            for lay in layers]
        try:
            with torch.no_grad():
                model.hf(model.to_tokens(text))
        finally:
            for h in handles:
                h.remove()
        for lay in layers:
            out[lay].append(seen[lay].double().numpy())
    return {lay: np.stack(v) for lay, v in out.items()}


def test_probe_equals_fit_on_hook_activations(tiny):
    data = labelled_texts(["animals", "code"], n_per_class=8, seed=0)
    before = model_fingerprint(tiny)
    res = probe(tiny, data, layers=[0, -1], seed=2)
    assert model_fingerprint(tiny) == before
    texts = data["animals"] + data["code"]
    y = np.array([0] * 8 + [1] * 8)
    rows = _hook_rows(tiny, texts, [0, tiny.n_layers - 1])
    train, test = split(y, 0.25, 2)
    for i, lay in enumerate(res.layers):
        w, b, ok = _train_test(rows[lay], y, train, test, 2, "logistic", 1e-2)
        np.testing.assert_allclose(res.weights[i], w, atol=1e-4, rtol=1e-4)
        assert res.correct[:, i].tolist() == ok.tolist()
        assert res.accuracy[i] == pytest.approx(ok.mean())
        assert res.ci_low[i] <= res.accuracy[i] <= res.ci_high[i]
        assert np.linalg.norm(res.directions[i]) == pytest.approx(1.0, abs=1e-6)
    assert res.selectivity == pytest.approx(res.accuracy - res.control)


def test_probe_from_store_equals_probe_from_model(tiny_llama):
    data = sentiment(16, seed=1)
    store = collect(tiny_llama, data, layers=[0, 1], reduce="last", progress=False)
    a = probe(store, data, kind="ridge")
    b = probe(tiny_llama, data, layers=[0, 1], kind="ridge")
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)
    assert a.accuracy.tolist() == b.accuracy.tolist() and a.control_unit == "adjective"


def test_result_show_direction_and_frame(tiny_llama):
    res = probe(tiny_llama, labelled_texts(["animals", "code"], n_per_class=8), layers=[0, 1])
    assert isinstance(res, ProbeResult)
    w = res.show()
    assert w.shape == (2, 2) and w.ci_low is not None
    np.testing.assert_allclose(w.array, np.stack([res.accuracy, res.control]))
    vec = res.direction(1)
    assert vec.vector.shape == (tiny_llama.d_model,) and vec.norm == pytest.approx(1.0, abs=1e-6)
    g = mechscope.generate(tiny_llama, "The cat", steer=vec, coefficient=4.0, max_new_tokens=2)
    assert g.layer == 1
    assert list(res.to_pandas()["layer"]) == [0, 1]
    with pytest.raises(InputError, match="layer 3 was not probed"):
        res.direction(3)


def _count_forwards(model):
    calls = []
    handle = model.hf.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("dataset, kwargs, message", [
    ({"a": ["x y"] * 5}, {}, "every example has the label 'a': a probe needs at least two classes"),
    ({"a": ["x y"] * 5, "b": ["z w"] * 3}, {}, f"too few examples in {{'b': 3}}: each class needs at least "
                                             f"{MIN_PER_CLASS}"),
    (["a b"] * 8, {"labels": [0, 1] * 3}, "6 labels for 8 texts: give exactly one label per text"),
    ({"a": ["x y"] * 4, "b": ["z w"] * 4}, {"layers": [7]}, "layer 7 is out of range"),
    ({"a": ["x y"] * 4, "b": ["z w"] * 4}, {"kind": "svm"}, "kind must be one of"),
    ({"a": ["x y"] * 4, "b": ["z w"] * 4}, {"test_fraction": 1.5}, "test_fraction must be a number between"),
    (["a b"] * 8, {}, "give labels="),
])
def test_bad_input_before_any_forward_pass(tiny_llama, dataset, kwargs, message):
    calls, handle = _count_forwards(tiny_llama)
    try:
        with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
            probe(tiny_llama, dataset, **kwargs)
    finally:
        handle.remove()
    assert calls == []


def _hook_projection(model, texts, u, layer, read_layers):
    """The same edit with a plain forward hook: h - (h . u) u on block ``layer``'s output."""
    u_t = torch.as_tensor(u / np.linalg.norm(u), dtype=torch.float32)

    def edit(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h - (h @ u_t).unsqueeze(-1) * u_t
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = model.hf_module("resid", layer).register_forward_hook(edit)
    try:
        rows = _hook_rows(model, texts, read_layers)
        logits = []
        with torch.no_grad():
            for t in texts:
                logits.append(model.hf(model.to_tokens(t)).logits[0, -1].double().numpy())
    finally:
        handle.remove()
    return rows, np.stack(logits)


def test_projection_equals_torch_hook(tiny):
    texts = ["The cat sat on the mat", "Hello", "one two three four"]
    u = np.random.default_rng(0).standard_normal(tiny.d_model)
    last = tiny.n_layers - 1
    ids = tiny.to_single_token(tiny.decode_tokens([5])[0]), tiny.to_single_token(tiny.decode_tokens([9])[0])
    answers = ([ids[0]] * 3, [ids[1]] * 3)
    before = model_fingerprint(tiny)
    rows, diff = projected_run(tiny, texts, u, 0, [0, last], answers, batch_size=2)
    assert model_fingerprint(tiny) == before
    ref_rows, ref_logits = _hook_projection(tiny, texts, u, 0, [0, last])
    for lay in (0, last):
        np.testing.assert_allclose(rows[lay], ref_rows[lay], atol=1e-5)
    np.testing.assert_allclose(diff, ref_logits[:, ids[0]] - ref_logits[:, ids[1]], atol=1e-5)
    assert np.abs(rows[0] @ (u / np.linalg.norm(u))).max() < 1e-5
    plain, _ = projected_run(tiny, texts, None, 0, [last])
    assert np.abs(plain[last] - rows[last]).max() > 1e-4          # the edit changed later layers


def test_project_out_restores_model_after_an_exception(tiny_llama):
    data = sentiment(16, seed=1)
    res = probe(tiny_llama, data, layers=[0, 1])
    before = model_fingerprint(tiny_llama)
    clean = project_out(tiny_llama, res, 0, data)

    def stop(done, total):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        project_out(tiny_llama, res, 0, data, batch_size=1, progress=stop)
    assert model_fingerprint(tiny_llama) == before
    again = project_out(tiny_llama, res, 0, data)
    assert again.probe_after.tolist() == clean.probe_after.tolist()
    assert again.probe_before.tolist() == res.accuracy.tolist()     # unedited: the probe's own test accuracy
    assert np.isnan(again.task_before)                               # ' good' is not one tiny token


def test_project_out_checks(tiny_llama):
    data = sentiment(16, seed=1)
    res = probe(tiny_llama, data, layers=[1])
    with pytest.raises(InputError, match="layer 0 was not probed"):
        project_out(tiny_llama, res, 0, data)
    with pytest.raises(InputError, match="pass the same dataset"):
        project_out(tiny_llama, res, 1, sentiment(20, seed=1))
    with pytest.raises(InputError, match="needs the ProbeResult"):
        project_out(tiny_llama, np.ones(64), 1, data)


def test_project_out_with_an_explicit_direction(tiny_llama):
    data = sentiment(16, seed=1)
    res = probe(tiny_llama, data, layers=[0, 1])
    same = project_out(tiny_llama, res, 0, data, direction=res.direction(0))
    default = project_out(tiny_llama, res, 0, data)
    assert same.probe_after.tolist() == default.probe_after.tolist()
    with pytest.raises(InputError, match=r"non-zero \(d_model,\) = \(64,\) vector"):
        project_out(tiny_llama, res, 0, data, direction=np.zeros(3))
    mean_probe = probe(tiny_llama, data, layers=[0], position="mean")
    assert mean_probe.position == "mean"
    with pytest.raises(InputError, match="needs a last-token probe"):
        project_out(tiny_llama, mean_probe, 0, data)


def test_show_keeps_hostile_class_names_as_text(tiny_llama):
    from tests.hostile import CATALOGUE

    data = {CATALOGUE[0]: ["The cat sat", "A dog ran", "The owl", "A fox"],
            CATALOGUE[2]: ["x = 1", "def f(): pass", "import os", "y = 2"]}
    res = probe(tiny_llama, data, layers=[0])
    w = res.show()
    assert CATALOGUE[0] in w.title and CATALOGUE[2] in w.title
    html = w.offline_html()
    assert html is not None
    for s in (CATALOGUE[0], CATALOGUE[2]):
        assert s not in html, s
    assert html.count("</script>") == 1 and "<img" not in html


def test_store_checks(tiny_llama):
    data = sentiment(16, seed=1)
    every = collect(tiny_llama, data, layers=[0], reduce="all", progress=False)
    with pytest.raises(InputError, match="collect one row per text"):
        probe(every, data)
    last = collect(tiny_llama, data, layers=[0], reduce="last", progress=False)
    with pytest.raises(InputError, match="the store holds 16 texts but the dataset has 20"):
        probe(last, sentiment(20, seed=1))
    with pytest.raises(InputError, match=r"layers \[1\] are not in the store"):
        probe(last, data, layers=[1])
    with pytest.raises(InputError, match="site must be one of"):
        probe(last, data, site="mlp")
