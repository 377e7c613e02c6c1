"""`mechscope.dynamics.matching` and `feature_tracking`: the numpy Hungarian algorithm equals brute
force, planted dictionaries (permuted, noised) are matched back exactly, timeline counts on
hand-built decoder sequences (a feature born, one dying, one splitting into two), the cross-seed
share and its random baseline, caching (a second call trains nothing), and bad input raises
InputError with a message saying what to do."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mechscope import dynamics
from mechscope.dynamics import feature_tracking as ft
from mechscope.dynamics.feature_tracking import (
    TrainingDictionaries,
    dictionaries_over_training,
    feature_timeline,
)
from mechscope.dynamics.matching import assignment, cross_seed_share, match_features
from mechscope.errors import InputError


def brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))


def test_hungarian_equals_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(150):
        n, m = (int(x) for x in rng.integers(1, 7, 2))
        cost = rng.normal(size=(n, m))
        if trial % 3 == 0:
            cost = np.round(cost)  # ties
        pairs = assignment(cost)
        assert pairs.shape == (min(n, m), 2)
        assert len(set(pairs[:, 0])) == len(set(pairs[:, 1])) == min(n, m)
        assert cost[pairs[:, 0], pairs[:, 1]].sum() == pytest.approx(brute_force(cost), abs=1e-9)


def test_planted_dictionaries_matched_back_exactly():
    rng = np.random.default_rng(1)
    dec = rng.normal(size=(200, 48))
    perm = rng.permutation(200)
    noisy = dec[perm] + 0.05 * rng.normal(size=dec.shape)
    m = match_features(torch.tensor(dec), noisy * 3.0)  # scale does not matter, tensors accepted
    assert (perm[m.pairs[:, 1]] == np.arange(200)).all()
    assert m.matched.all() and m.cosine.min() > 0.9
    # against the independent computation of the cosines
    unit = lambda w: w / np.linalg.norm(w, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(m.cosine, (unit(dec) * unit(noisy[m.pairs[:, 1]])).sum(1), atol=1e-12)


def test_timeline_counts_on_hand_built_decoders():
    e = np.eye(8)
    split_a, split_b = e[2] + 0.6 * e[3], e[2] - 0.6 * e[3]  # cos with e[2]: 0.857, with each other 0.47
    before = np.stack([e[0], e[1], e[2]])          # e[1] will die, e[2] will split
    after = np.stack([e[0], split_a, split_b, e[5]])  # e[5] is born
    later = after[[3, 0, 1, 2]]                     # the same features in another order
    tl = feature_timeline([[before, after, later], [before, before, before]], steps=[0, 10, 20])
    assert tl.counts["matched"][0].tolist() == [2, 4]   # e0 and e2 (to one of its halves); then all
    assert tl.counts["born"][0].tolist() == [1, 0]
    assert tl.counts["died"][0].tolist() == [1, 0]
    assert tl.counts["split"][0].tolist() == [1, 0]
    assert tl.counts["merged"][0].tolist() == [0, 0]
    assert tl.counts["matched"][1].tolist() == [3, 3] and tl.counts["born"][1].sum() == 0
    frame = tl.to_pandas()
    assert len(frame) == 4 and frame.loc[0, "step_to"] == 10 and frame.loc[0, "born"] == 1
    widget = tl.show()
    assert widget.values["shape"] == [10, 2]
    assert "born 2" not in repr(tl) and "born 1" in repr(tl)


def test_cross_seed_share_and_random_baseline():
    rng = np.random.default_rng(2)
    dec = rng.normal(size=(64, 32))
    same = dec[rng.permutation(64)] + 0.05 * rng.normal(size=dec.shape)
    half = np.concatenate([dec[:32], rng.normal(size=(32, 32))])
    r = cross_seed_share([dec, same, half], n_random=5)
    assert r.share == pytest.approx(0.5, abs=2 / 64)   # the first half, found in both
    assert r.pair_share[0, 1] == 1.0 and r.pair_share.shape == (3, 3)
    assert r.baseline.shape == (5,) and r.baseline_mean < 0.1
    assert set(r.to_pandas().columns) == {"a", "b", "share", "mean_cosine"}
    # in a tiny space random dictionaries do match: why the baseline is reported
    assert cross_seed_share(rng.normal(size=(2, 64, 3)), n_random=5).baseline_mean > 0.5
    # decoders in a 3-dim subspace of 32: the anisotropic null draws there, the isotropic one does not
    low_rank = rng.normal(size=(2, 64, 3)) @ rng.normal(size=(3, 32))
    assert cross_seed_share(low_rank, n_random=5).baseline_mean > 0.5
    assert cross_seed_share(low_rank, n_random=5, baseline="isotropic").baseline_mean < 0.1
    with pytest.raises(InputError, match=r"baseline must be one of \('anisotropic', 'isotropic'\)"):
        cross_seed_share(low_rank, baseline="uniform")


def test_bad_input_raises_input_error(tmp_path):
    with pytest.raises(InputError, match=r"threshold is a decoder cosine in \(0, 1\]"):
        match_features(np.eye(3), np.eye(3), threshold=0)
    with pytest.raises(InputError, match="threshold"):
        feature_timeline([[np.eye(3), np.eye(3)]], threshold=1.5)
    with pytest.raises(InputError, match="different spaces"):
        match_features(np.eye(3), np.eye(4))
    with pytest.raises(InputError, match="two or more dictionaries"):
        cross_seed_share([np.eye(3)])
    with pytest.raises(InputError, match="run_dirs is empty"):
        dictionaries_over_training([], layer=0)
    with pytest.raises(InputError, match="not a training run directory"):
        dictionaries_over_training([tmp_path], layer=0)
    with pytest.raises(InputError, match="one list of two or more checkpoint decoders"):
        feature_timeline([[np.eye(3)]])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    task = dynamics.InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
    return dynamics.train(task, seeds=(0, 1), n_layers=1, d_model=16, n_heads=2, steps=6, checkpoints=[0, 3, 6],
                          out_dir=tmp_path_factory.mktemp("runs"), progress=False)


def test_dictionaries_cached_second_call_trains_nothing(runs, monkeypatch, tmp_path):
    calls = []
    real = ft.train_sae

    def counting(*args, **kwargs):
        calls.append(kwargs["seeds"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "train_sae", counting)
    opts = {"layer": 0, "d_sae": 8, "k": 2, "n_tokens": 96, "epochs": 1, "batch_size": 32, "cache_dir": tmp_path,
            "progress": False}
    first = dictionaries_over_training(runs, **opts)
    assert len(calls) == 2 * 3 * 2                     # runs x checkpoints x dictionary seeds
    assert len(set(calls)) == 12                       # no two dictionaries share an initialisation
    files = sorted(tmp_path.rglob("step_*.npz"))
    stamps = [f.stat().st_mtime_ns for f in files]
    second = dictionaries_over_training(runs.run_dirs, **opts)
    assert len(calls) == 12 and [f.stat().st_mtime_ns for f in files] == stamps
    np.testing.assert_array_equal(first.decoders, second.decoders)
    assert isinstance(first, TrainingDictionaries) and first.decoders.shape == (2, 3, 2, 8, 16)
    assert first.steps == [[0, 3, 6], [0, 3, 6]]
    assert first.init_cosine.shape == (2, 3, 2, 8) and (first.init_cosine <= 1 + 1e-6).all()
    every = dictionaries_over_training(runs, **{**opts, "every": 2})  # steps 0 and 6: cached too
    assert len(calls) == 12 and every.steps == [[0, 6], [0, 6]]
    np.testing.assert_array_equal(every.decoders[:, 1], first.decoders[:, 2])
    tl = feature_timeline(first)
    assert tl.counts["matched"].shape == (2, 2) and tl.runs == ["seed0", "seed1"]
    share = cross_seed_share(first, run=1, n_random=2)
    assert 0.0 <= share.share <= 1.0
    with pytest.raises(InputError, match=r"layer must be an int in \[0, 1\)"):
        dictionaries_over_training(runs, **{**opts, "layer": 1})
    with pytest.raises(InputError, match="k=9 latents per row is more than d_sae=8"):
        dictionaries_over_training(runs, **{**opts, "k": 9})
    assert len(calls) == 12
