"""mechscope.dynamics.circuits: edge scores over the checkpoints of tiny training runs.

Shapes and labels, scores equal to `edge_attribution` run on the checkpoint directly, the
metric against plain HF logits, head roles against `dynamics.measure`'s scores, formation
steps against `crossing`, the Heatmap view, and the input errors (raised before any model is
measured or scored). Runs are a few thousand parameters trained for 4 steps: seconds in all.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mechscope import dynamics
from mechscope.circuits import edge_attribution
from mechscope.datasets import pairs as make_pairs
from mechscope.dynamics import InductionTask, crossing, emergence_step, load_checkpoint
from mechscope.dynamics import circuits as dc
from mechscope.dynamics.circuits import (
    TrainingCircuits,
    answer_logprob,
    circuits_over_training,
    induction_pairs,
)
from mechscope.errors import InputError

SMALL = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return dynamics.train(SMALL, seeds=(0, 1), n_layers=2, d_model=16, n_heads=2, steps=4,
                          n_checkpoints=3, out_dir=tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="module")
def tc(runs) -> TrainingCircuits:
    return circuits_over_training(runs, n_pairs=4, steps=2, n_edges=5, progress=False)


def test_shapes_and_labels(runs, tc):
    n_ckpt = len(runs.steps)
    assert tc.steps.tolist() == runs.steps
    assert tc.runs == ["seed0", "seed1"] and tc.seeds == [0, 1]
    assert tc.graph.n_edges == 46 and tc.edge_labels == tc.graph.edge_names()
    assert tc.scores.shape == tc.in_circuit.shape == (2, n_ckpt, 46)
    assert np.isfinite(tc.scores).all()
    assert (tc.in_circuit.sum(-1) >= 5).all()
    assert np.allclose(tc.loss, tc.dynamics.curve("repeated_loss"))
    frame = tc.to_pandas()
    assert len(frame) == 2 * n_ckpt * 46
    row = frame.iloc[46 + 7]  # seed 0, second checkpoint, edge 7
    assert (row.run, row.step, row.edge) == ("seed0", runs.steps[1], tc.edge_labels[7])
    assert row.score == pytest.approx(float(tc.scores[0, 1, 7]))
    assert tc.edge("L0H1", "L1KV0.k").shape == (2, n_ckpt)
    assert tc.circuit(1, runs.steps[-1]).edges.tolist() == tc.in_circuit[1, -1].tolist()


def test_scores_equal_edge_attribution_on_the_checkpoint(runs, tc):
    ckpt = runs.checkpoints(1)[1]
    model = load_checkpoint(ckpt)
    direct = edge_attribution(model, tc.pairs, "eap-ig", steps=2, metric=answer_logprob(tc.pairs),
                              batch_size=len(tc.pairs), progress=False)
    np.testing.assert_allclose(tc.scores[1, 1], direct.scores, rtol=1e-5, atol=1e-6)
    assert tc.in_circuit[1, 1].tolist() == direct.circuit(n_edges=5).edges.tolist()


def test_metric_is_the_answer_logprob_of_plain_hf_logits(runs):
    data = induction_pairs(SMALL, 3, seed=1)
    model = load_checkpoint(runs.checkpoints(0)[-1])
    ids = torch.tensor([model.to_tokens(t)[0].tolist() for t in data.clean])
    with torch.no_grad():
        logits = model.hf(ids).logits[:, -1]
    answers = [int(a[1:]) for a in data.answer]  # "t7" is token id 7
    expected = torch.log_softmax(logits, -1)[torch.arange(3), answers]
    assert torch.allclose(answer_logprob(data).bind(model)(logits), expected)


def test_induction_pairs_repeat_only_in_the_clean_text():
    data = induction_pairs(SMALL, 8, seed=0)
    assert len(data) == 8 and len({len(c.split()) for c in data.clean + data.corrupt}) == 1
    for clean, corrupt, answer in zip(data.clean, data.corrupt, data.answer, strict=True):
        c, k = clean.split(), corrupt.split()
        span = (len(c) + 1) // 2
        assert span == SMALL.max_span and c[span:] == c[:span - 1] == k[span:]
        assert answer == c[span - 1] and not set(k[:span]) & set(c[:span])


def test_heads_and_prev_edge_follow_measure(tc):
    for r, ((lp, hp), (li, hi)) in enumerate(tc.heads):
        ind, prev = tc.dynamics.induction[r, -1], tc.dynamics.prev_token[r, -1]
        assert li >= 1 and ind[li, hi] == ind[1:].max()
        assert lp < li and prev[lp, hp] == prev[:li].max()
        name = tc.prev_edges[r]
        assert name == f"L{lp}H{hp} -> L{li}KV{hi}.k"  # 2 heads, 2 kv heads: one head per group
        assert np.array_equal(tc.prev_to_induction()[r], tc.scores[r, :, tc.edge_labels.index(name)])


def test_formation_step_is_the_crossing_of_the_edge_support(tc):
    rising = np.linspace(0.0, -1.0, len(tc.steps))
    scores = tc.scores.copy()
    for r, name in enumerate(tc.prev_edges):
        scores[r, :, tc.edge_labels.index(name)] = rising if r == 0 else -rising  # seed 1 fades
    f = dataclasses.replace(tc, scores=scores).formation_step(0.5)
    assert f.edge_steps[0] == pytest.approx(crossing(-rising, tc.steps, 0.5))
    assert np.isnan(f.edge_steps[1])  # its support never grows: no formation step
    loss = tc.dynamics.curve("repeated_loss")
    assert f.loss_steps.tolist() == [emergence_step(row, tc.dynamics.steps) for row in loss]
    assert f.to_pandas().edge.tolist() == tc.prev_edges
    with pytest.raises(InputError, match="threshold is a fraction"):
        tc.formation_step(0.0)


def test_show_is_a_heatmap_of_scores(tc):
    w = tc.show(top=3)
    assert w.shape == (2 * 4, len(tc.steps))
    assert w.row_labels[0] == f"seed0: {tc.prev_edges[0]}"
    assert np.allclose(w.array[0], tc.prev_to_induction()[0])


def test_every_keeps_the_last_checkpoint(runs):
    part = circuits_over_training(runs.run_dirs[:1], n_pairs=2, method="eap", n_edges=3, every=2,
                                  progress=False)
    assert part.steps.tolist() == runs.steps[::2] + ([runs.steps[-1]] if len(runs.steps) % 2 == 0 else [])
    assert part.scores.shape == (1, len(part.steps), 46)


@pytest.fixture
def nothing_runs(monkeypatch):
    def boom(*_, **__):
        raise AssertionError("measured or scored before the input error")
    monkeypatch.setattr(dc, "measure", boom)
    monkeypatch.setattr(dc, "edge_attribution", boom)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_edges": 0}, "n_edges must be at least 1, got 0"),
    ({"every": 0}, "every must be at least 1"),
    ({"n_pairs": 0}, "n_pairs must be at least 1"),
    ({"method": "acdc"}, r"method must be one of \('eap', 'eap-ig'\)"),
    ({"n_edges": 10_000}, "n_edges must be between 1 and 46"),
    ({"pairs": ["t1 t2"]}, "pairs must be PromptPairs"),
])
def test_bad_arguments_raise_before_any_work(runs, nothing_runs, kwargs, message):
    with pytest.raises(InputError, match=message):
        circuits_over_training(runs, progress=False, **kwargs)


def test_bad_sources_name_the_fix(runs, tmp_path, nothing_runs):
    with pytest.raises(InputError, match="needs training runs.*non-empty list"):
        circuits_over_training([])
    with pytest.raises(InputError, match=r"not a training run directory.*dynamics.train\(out_dir"):
        circuits_over_training(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(InputError, match=r"has no checkpoints yet.*train it with"):
        circuits_over_training([tmp_path])
    other = dynamics.train(SMALL, seeds=(5,), n_layers=2, d_model=16, n_heads=2, steps=2,
                           checkpoints=[0, 2], out_dir=tmp_path / "other", progress=False)
    with pytest.raises(InputError, match="every run needs the same steps"):
        circuits_over_training([runs.run_dirs[0], other.run_dirs[0]])
    unequal = make_pairs([{"clean": "t1 t2 t3", "corrupt": "t1 t2", "answer": "t4", "wrong": "t5"}])
    with pytest.raises(InputError, match="same token length"):
        circuits_over_training(runs, pairs=unequal)


def test_one_layer_has_no_k_composition_edge(tmp_path):
    one = dynamics.train(SMALL, seeds=(0,), n_layers=1, d_model=16, n_heads=2, steps=2,
                         checkpoints=[0, 2], out_dir=tmp_path, progress=False)
    tc = circuits_over_training(one, n_pairs=2, method="eap", n_edges=2, progress=False)
    assert tc.scores.shape == (1, 2, tc.graph.n_edges)
    with pytest.raises(InputError, match="needs at least 2 layers"):
        tc.prev_to_induction()
    assert tc.show(top=2).shape == (2, 2)  # no prev-token edge row, only the top edges
