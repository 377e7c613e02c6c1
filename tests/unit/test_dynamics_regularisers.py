"""mechscope.dynamics regularisers: the batch selectivity index against numpy, the
regulariser's gradient sign, bad input refused before training (nothing written), an
interrupted run resuming to bitwise the same checkpoints, a folder holding another run
refused, and the sweep's result and widget. Models of a few thousand parameters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mechscope.dynamics import InductionTask, build_model, task_tokenizer, train
from mechscope.dynamics import training as training_module
from mechscope.dynamics.checkpoints import list_checkpoints
from mechscope.dynamics.classification import (
    ClassificationTask,
    SelectivitySweep,
    evaluate,
    selectivity_sweep,
)
from mechscope.dynamics.regularisers import batch_selectivity, captured, selectivity_regulariser
from mechscope.errors import InputError
from tests.helpers import model_fingerprint

TASK = ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=64, n_test=48)
ARCH = dict(family="gpt2", n_layers=2, d_model=16, n_heads=2, d_mlp=12)
RUN = dict(seeds=(0,), **ARCH, steps=9, batch_size=16, checkpoints=[0, 2, 5, 9], progress=False)


def numpy_selectivity(acts: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    a = acts.mean(axis=1)
    a = a - a.min(axis=0)
    means = np.array([a[labels == c].mean(axis=0) for c in np.unique(labels)])
    out = np.empty(a.shape[1])
    for u in range(a.shape[1]):
        top = int(np.argmax(means[:, u]))
        rest = np.delete(means[:, u], top).mean()
        out[u] = (means[top, u] - rest) / (means[top, u] + rest + eps)
    return out


def test_batch_selectivity_equals_numpy():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(30, 5, 7)) + rng.integers(0, 3, size=(30, 1, 1))
    labels = rng.integers(0, 4, size=30)
    got = batch_selectivity(torch.tensor(acts), torch.tensor(labels)).numpy()
    np.testing.assert_allclose(got, numpy_selectivity(acts, labels), rtol=0, atol=1e-10)
    # one class in the batch: nothing to be selective about
    assert batch_selectivity(torch.tensor(acts), torch.zeros(30, dtype=torch.long)).abs().max() == 0


def test_evaluate_reads_the_neurons_like_a_plain_hook():
    hf = build_model(TASK, seed=1, **ARCH)
    tokens, labels = TASK.split("test"), TASK.labels(TASK.split("test"))
    seen = []
    handle = hf.transformer.h[1].mlp.act.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        logits = hf(tokens).logits[:, -1, :3]
    handle.remove()
    wrapped = SimpleNamespace(hf=hf, tokenizer=task_tokenizer(TASK.vocab_size))
    before = model_fingerprint(wrapped)
    acc, index = evaluate(hf, TASK)
    assert model_fingerprint(wrapped) == before
    np.testing.assert_allclose(index[1], numpy_selectivity(seen[0].numpy(), labels.numpy()), atol=1e-5)
    assert acc == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


@pytest.mark.parametrize("alpha", [-1.0, 1.0])
def test_the_regulariser_moves_selectivity_its_way(alpha):
    hf = build_model(TASK, seed=0, **ARCH).train()
    tokens = TASK.split("train")
    labels = TASK.labels(tokens)
    reg = selectivity_regulariser(0, alpha)
    opt = torch.optim.Adam(hf.parameters(), lr=1e-2)
    values = []
    with captured(hf, [reg]) as slots:
        for _ in range(6):
            hf(tokens)
            acts = slots[0]
            assert acts is not None
            values.append(float(batch_selectivity(acts.detach(), labels).mean()))
            opt.zero_grad()
            reg.loss(acts, labels).backward()
            opt.step()
    assert not hf.transformer.h[0].mlp.c_proj._forward_pre_hooks  # hooks removed
    change = values[-1] - values[0]
    assert change * alpha > 0, values
    assert abs(change) > 0.02


def test_bad_input_is_refused_before_training(tmp_path):
    cases = [
        (dict(regularisers=[selectivity_regulariser(5, 1.0)]),
         "layer 5 is out of range; the model has 2 layers"),
        (dict(regularisers=[selectivity_regulariser(0, 1.0)], d_mlp=0, family="llama"),
         "attention-only"),
        (dict(regularisers=["selectivity"]), "made by selectivity_regulariser"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            train(TASK, **{**RUN, "out_dir": tmp_path / "e", **kwargs})
    with pytest.raises(InputError, match="needs classes; InductionTask has none"):
        train(InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
              **{**RUN, "out_dir": tmp_path / "e"}, regularisers=[selectivity_regulariser(0, 1)])
    assert not (tmp_path / "e").exists()
    for alpha in (float("nan"), float("inf"), -float("inf"), "1"):
        with pytest.raises(InputError, match="alpha must be a finite number"):
            selectivity_regulariser(0, alpha)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"site must be one of \('neurons',\), got 'heads'"):
        selectivity_regulariser(0, 1.0, site="heads")
    with pytest.raises(InputError, match="layer 3 is out of range; the model has 1 layers"):
        selectivity_sweep([0.0, 1.0], seeds=(0,), task=TASK, layer=3, n_layers=1,
                          out_dir=tmp_path / "s", progress=False)
    with pytest.raises(InputError, match="alphas must be distinct"):
        selectivity_sweep([1, 1.0], task=TASK, out_dir=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def _files(run_dir):
    """{step: (metadata, {name: raw bytes of the tensor})} of every checkpoint (safetensors
    writes its header keys in no fixed order, so the files are compared by content)."""
    from safetensors import safe_open

    out = {}
    for c in list_checkpoints(run_dir):
        with safe_open(str(c.path), framework="pt") as f:
            out[c.step] = (f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()})  # noqa: SIM118
    return out


@pytest.mark.parametrize("stop_at", [5, 9])
def test_an_interrupted_run_resumes_to_the_same_checkpoints(tmp_path, monkeypatch, stop_at):
    kw = dict(**RUN, regularisers=[selectivity_regulariser(1, -0.5)])
    straight = train(TASK, out_dir=tmp_path / "straight", **kw)
    real = training_module.save_checkpoint

    def crash(run_dir, model, step, dtype="float32"):
        if step == stop_at:
            raise KeyboardInterrupt
        return real(run_dir, model, step, dtype)

    monkeypatch.setattr(training_module, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        train(TASK, out_dir=tmp_path / "cut", **kw)
    monkeypatch.setattr(training_module, "save_checkpoint", real)
    cut = tmp_path / "cut" / "seed0"
    assert [c.step for c in list_checkpoints(cut)] == [s for s in (0, 2, 5) if s < stop_at]
    assert (cut / training_module.RESUME_FILE).is_file()
    resumed = train(TASK, out_dir=tmp_path / "cut", **kw)
    assert _files(cut) == _files(straight.run_dirs[0])  # every checkpoint, bit for bit
    np.testing.assert_array_equal(resumed.train_loss, straight.train_loss)
    assert not (cut / training_module.RESUME_FILE).exists()  # a finished run keeps weights only
    with pytest.raises(InputError, match="already holds checkpoints; pass overwrite=True"):
        train(TASK, out_dir=tmp_path / "cut", **kw)


def test_a_folder_holding_another_run_is_refused(tmp_path, monkeypatch):
    real = training_module.save_checkpoint

    def crash(run_dir, model, step, dtype="float32"):
        if step == 5:
            raise KeyboardInterrupt
        return real(run_dir, model, step, dtype)

    monkeypatch.setattr(training_module, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        train(TASK, out_dir=tmp_path, **RUN)
    monkeypatch.setattr(training_module, "save_checkpoint", real)
    before = _files(tmp_path / "seed0")
    other = [dict(lr=1e-3), dict(regularisers=[selectivity_regulariser(0, 1.0)]),
             dict(task=ClassificationTask(vocab_size=12, n_classes=3, seq_len=8, n_train=64,
                                          n_test=48, signal=0.5))]
    for change in other:
        kw = {**RUN, "task": TASK, **change}
        with pytest.raises(InputError, match=r"seed0 holds another run: its settings differ in "
                                             r"\['(lr|regularisers|task)'\].*overwrite=True"):
            train(out_dir=tmp_path, **kw)
    assert _files(tmp_path / "seed0") == before  # nothing lost
    replaced = train(TASK, out_dir=tmp_path, overwrite=True, **{**RUN, "lr": 1e-3})
    assert [c.step for c in replaced.checkpoints(0)] == [0, 2, 5, 9]


def test_the_sweep_result_and_its_widget(tmp_path):
    sweep = selectivity_sweep([-1.0, 0.0, 1.0], seeds=(0, 1), task=TASK, layer=1, **ARCH,
                              steps=6, batch_size=16, n_checkpoints=3, out_dir=tmp_path,
                              progress=False)
    assert isinstance(sweep, SelectivitySweep) and sweep.alphas == [-1.0, 0.0, 1.0]
    assert sweep.accuracy.shape == (3, 2, len(sweep.steps))
    assert sweep.unit_selectivity.shape == (3, 2, len(sweep.steps), 12)
    # the last checkpoint's numbers are evaluate() of that checkpoint
    from mechscope.dynamics.classification import _last

    acc, index = evaluate(_last(tmp_path / "alpha+1" / "seed1"), TASK)
    assert sweep.accuracy[2, 1, -1] == pytest.approx(acc)
    np.testing.assert_allclose(sweep.unit_selectivity[2, 1, -1], index[1])
    table = sweep.table()
    assert list(table["alpha"]) == [-1.0, 0.0, 1.0]
    assert (table["accuracy_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["accuracy_high"]).all()
    assert sweep.to_pandas().shape == (6, 5)
    widget = sweep.show()
    assert widget.runs[0] == "alpha=-1 seed0" and len(widget.runs) == 6
    assert widget.structure["shape"] == [6, len(sweep.steps), 1, 12]


def test_an_interrupted_multi_seed_run_keeps_its_finished_seeds(tmp_path, monkeypatch):
    kw = {**RUN, "seeds": (0, 1)}
    straight = train(TASK, out_dir=tmp_path / "straight", **kw)
    real = training_module.save_checkpoint
    calls = []

    def crash(run_dir, model, step, dtype="float32"):
        calls.append(step)
        if len(calls) == 7:  # seed 1's step 2
            raise KeyboardInterrupt
        return real(run_dir, model, step, dtype)

    monkeypatch.setattr(training_module, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        train(TASK, out_dir=tmp_path / "cut", **kw)
    monkeypatch.setattr(training_module, "save_checkpoint", real)
    resumed = train(TASK, out_dir=tmp_path / "cut", **kw)
    for i in (0, 1):
        assert _files(resumed.run_dirs[i]) == _files(straight.run_dirs[i])
    np.testing.assert_allclose(resumed.train_loss, straight.train_loss, atol=1e-5)
    np.testing.assert_array_equal(resumed.train_loss[1], straight.train_loss[1])
