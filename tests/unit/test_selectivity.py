"""Selectivity: the index on hand-made means, class means vs a hooks reference, top examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechscope
from mechscope import InputError
from mechscope.analysis.selectivity import selectivity_index
from mechscope.datasets import TOPICS, labelled_texts
from tests.helpers import model_fingerprint


def test_index_on_hand_made_means():
    means = np.array([
        [1.0, 1.0, 0.0, -0.5, 2.0],
        [0.0, 1.0, 0.0, -0.2, 1.0],
        [0.0, 1.0, 0.0, -0.1, 1.0],
    ])
    index, preferred = selectivity_index(means)
    np.testing.assert_allclose(index, [1.0, 0.0, 0.0, 0.0, 1 / 3], atol=1e-6)
    assert preferred[0] == 0 and preferred[4] == 0


def _reference_class_means(model, examples, layer):
    """Per-text unbatched runs with a plain torch hook on the MLP down projection's input."""
    store = {}
    module = model.hf_module("neurons", layer)
    handle = module.register_forward_pre_hook(lambda _m, args: store.__setitem__("x", args[0]))
    try:
        means = []
        for texts in examples.values():
            acts = []
            for text in texts:
                with torch.no_grad():
                    model.hf(model.to_tokens(text))
                acts.append(store["x"][0])
            means.append(torch.cat(acts).mean(0).numpy())
    finally:
        handle.remove()
    return np.stack(means)


def test_class_means_match_unbatched_hooks(tiny):
    examples = labelled_texts(("animals", "code", "french"), n_per_class=5, seed=3)
    before = model_fingerprint(tiny)
    sel = mechscope.selectivity(tiny, examples, layer=-1, batch_size=4)
    assert model_fingerprint(tiny) == before
    ref = _reference_class_means(tiny, examples, tiny.n_layers - 1)
    np.testing.assert_allclose(sel.class_means, ref, atol=1e-4)
    assert sel.classes == ["animals", "code", "french"]
    assert sel.class_means.shape == (3, tiny.d_mlp)


def test_top_examples_are_sorted_by_peak(tiny_llama):
    sel = mechscope.selectivity(tiny_llama, labelled_texts(n_per_class=4), layer=0)
    neuron = int(sel.ranked(1)[0])
    top = sel.top_examples(neuron, n=4)
    peaks = [ex.peak for ex in top]
    assert peaks == sorted(peaks, reverse=True)
    assert all(len(ex.tokens) == len(ex.activations) for ex in top)
    frame = sel.to_pandas()
    assert len(frame) == tiny_llama.d_mlp and "selectivity" in frame
    assert sel.show().shape[0] == len(TOPICS)


def test_dataset_is_deterministic_and_validated():
    assert labelled_texts(n_per_class=5, seed=1) == labelled_texts(n_per_class=5, seed=1)
    assert labelled_texts(n_per_class=5, seed=1) != labelled_texts(n_per_class=5, seed=2)
    with pytest.raises(InputError, match="unknown topics"):
        labelled_texts(("animals", "planets"))


@pytest.mark.parametrize("examples, message", [
    ({"a": ["x"]}, "at least two"),
    ({"a": ["x"], "b": []}, "non-empty"),
    ({"a": ["x"], "b": [""]}, "empty"),
])
def test_bad_examples(tiny_llama, examples, message):
    with pytest.raises(InputError, match=message):
        mechscope.selectivity(tiny_llama, examples, layer=0)


def test_index_measures_from_the_floor():
    # all class means slightly negative, one barely positive: not selective once the floor is used
    means = np.array([[0.01], [-0.05], [-0.04]])
    index, _ = selectivity_index(means, floor=np.array([-0.28]))
    assert index[0] < 0.15  # (0.29 - 0.235) / (0.29 + 0.235) = 0.105
    index, preferred = selectivity_index(np.array([[1.0], [-0.28], [-0.28]]), floor=np.array([-0.28]))
    assert index[0] == pytest.approx(1.0) and preferred[0] == 0


@pytest.mark.parametrize("method", ["zero", "mean"])
def test_ablation_effect_equals_ablating_each_neuron(tiny_llama, method):
    from mechscope.metrics import logit_diff

    examples = labelled_texts(n_per_class=2)
    prompts = ["The cat sat on the", "She counted to"]
    metric = logit_diff(" the", " of")
    before = model_fingerprint(tiny_llama)
    sel = mechscope.selectivity(tiny_llama, examples, layer=1, effect_metric=metric,
                                effect_prompts=prompts, effect_top=3, effect_method=method)
    assert model_fingerprint(tiny_llama) == before
    done = np.flatnonzero(~np.isnan(sel.ablation_effect))
    assert sorted(done) == sorted(sel.ranked(3))  # the three most selective, nothing else
    texts = [t for items in examples.values() for t in items]
    for n in done:
        ref = np.mean([
            mechscope.ablate(tiny_llama, p, mechscope.neurons(1, [int(n)]), method=method,
                             reference=None if method == "zero" else texts, metric=metric).metric_change
            for p in prompts
        ])
        assert sel.ablation_effect[n] == pytest.approx(ref, abs=1e-5)
    assert sel.ablation_metric == f"logit_diff(' the', ' of') after {method} ablation"
    assert "ablation_effect" in sel.to_pandas().columns


@pytest.mark.parametrize("kwargs, message", [
    ({"effect_top": 0}, "effect_top must be a positive int"),
    ({"effect_method": "mean_ish"}, "effect_method must be"),
    ({"site": "resid"}, "use site='neurons'"),
])
def test_ablation_effect_bad_inputs(tiny_llama, kwargs, message):
    from mechscope.metrics import kl_to_clean

    with pytest.raises(InputError, match=message):
        mechscope.selectivity(tiny_llama, labelled_texts(n_per_class=2), layer=1,
                              effect_metric=kl_to_clean(), **kwargs)
