"""Verbs on datasets: batched results equal a loop of single-prompt calls and plain torch hooks.

Datasets are built with `mechscope.datasets.pairs` / `prompts` (the generators have their own
tests); the tiny models' tokenizer makes prompts of different token lengths, so grouping by
length, roles and padding are all exercised.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mechscope
from mechscope.datasets import PromptPairs, pairs, prompts
from mechscope.errors import InputError
from mechscope.metrics import logit_diff
from tests.helpers import model_fingerprint
from tests.reference_ablation import reference_ablation
from tests.reference_hooks import reference_patching

ROWS = [
    {"clean": "The cat sat on the", "corrupt": "The dog sat on the", "answer": " the", "wrong": " of"},
    {"clean": "A cat sat on the mat", "corrupt": "A dog sat on the mat", "answer": " of", "wrong": " the"},
    {"clean": "The dog ran to the", "corrupt": "The cat ran to the", "answer": " the", "wrong": " of"},
    {"clean": "The cat ran to the", "corrupt": "The dog ran to the", "answer": " of", "wrong": " the"},
]


def _animal(text: str) -> int:
    """Character index of the last letter of the animal word."""
    word = "cat" if "cat" in text else "dog"
    return text.index(word) + len(word) - 1


ROLE_ROWS = [dict(r, roles={"animal": [_animal(r["clean"]), _animal(r["corrupt"])]}) for r in ROWS]


def _diff(model, row):
    a, w = model.to_single_token(row["answer"]), model.to_single_token(row["wrong"])
    return lambda logits, _clean: float(logits[a] - logits[w])


# ---- building datasets ----------------------------------------------------------------------------
def test_pairs_from_every_source_agree(tmp_path):
    frame = pd.DataFrame(ROWS).assign(kind=["a", "b", "c", "d"])
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in frame.to_dict(orient="records")))
    csv = tmp_path / "pairs.csv"
    frame.to_csv(csv, index=False)
    built = [pairs(frame), pairs(frame.to_dict(orient="records")), pairs(jsonl), pairs(csv)]
    for data in built:
        assert isinstance(data, PromptPairs) and len(data) == 4
        assert data.clean == tuple(r["clean"] for r in ROWS) and data.metadata["kind"] == ("a", "b", "c", "d")
        pd.testing.assert_frame_equal(data.to_pandas(), frame)


def test_split_is_a_seeded_partition():
    data = pairs(ROWS * 5)
    train, test = data.split(test_fraction=0.25, seed=1)
    assert len(train) + len(test) == 20 and len(test) == 5
    again = data.split(test_fraction=0.25, seed=1)
    assert again[1].clean == test.clean and data.split(test_fraction=0.25, seed=2)[1].clean != test.clean


@pytest.mark.parametrize("source, message", [
    ([], "is empty"),
    ([{"clean": "a", "corrupt": "b", "answer": " a"}], r"lacks the column\(s\) \['wrong'\]"),
    ([{"clean": "a", "corrupt": "b", "answer": " a", "wrong": ""}], "example 0 .* wrong must be a non-empty str"),
    ("no/such/file.jsonl", "no file at"),
    (42, "pairs\\(\\) takes a DataFrame"),
])
def test_bad_datasets(source, message):
    with pytest.raises(InputError, match=message):
        pairs(source)


def test_roles_point_at_their_tokens(tiny_llama):
    tok = pairs(ROLE_ROWS).tokenize(tiny_llama)
    for i, row in enumerate(ROLE_ROWS):
        word = tiny_llama.decode_tokens(tok.clean_ids[i])[tok.roles_clean["animal"][i]]
        assert word.strip() in ("cat", "dog") and word.strip() in row["clean"]
        assert tok.roles_clean["END"][i] == len(tok.clean_ids[i]) - 1


def test_answer_that_is_not_one_token_names_its_example(tiny_llama, forward_counter):
    data = pairs([ROWS[0], dict(ROWS[1], answer=" Paris")])
    with pytest.raises(InputError, match="example 1: its answer token: ' Paris' is 2 tokens"):
        mechscope.patch(tiny_llama, data, site="heads", progress=False)
    assert not forward_counter


def test_misaligned_examples_without_roles_are_named(tiny_llama, forward_counter):
    with pytest.raises(InputError, match=r"do not line up .* examples 1 \(10 clean / 10 corrupt tokens\), 2 \(8 clean"):
        mechscope.patch(tiny_llama, pairs(ROWS), site="resid", progress=False)
    with pytest.raises(InputError, match="not roles of"):
        mechscope.patch(tiny_llama, pairs(ROLE_ROWS), positions=["subject"], progress=False)
    assert not forward_counter


# ---- patching over a dataset ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "attribution"])
def test_heads_over_a_dataset_equal_a_loop_and_the_hook_reference(tiny, method):
    before = model_fingerprint(tiny)
    r = mechscope.patch(tiny, pairs(ROWS), site="heads", method=method, progress=False)
    assert r.per_example.shape == (4, tiny.n_layers, tiny.n_heads) and r.n == 4
    for i, row in enumerate(ROWS):
        one = mechscope.patch(tiny, row["clean"], row["corrupt"], logit_diff(row["answer"], row["wrong"]),
                              site="heads", method=method, progress=False)
        np.testing.assert_allclose(r.per_example[i], one.values, atol=1e-4, rtol=0)
        assert r.clean_per_example[i] == pytest.approx(one.clean_metric, abs=1e-4)
        if method == "exact":
            ref, ref_clean, ref_corrupt = reference_patching(tiny, row["clean"], row["corrupt"],
                                                             _diff(tiny, row), site="heads")
            np.testing.assert_allclose(r.per_example[i], ref, atol=1e-4, rtol=0)
            assert r.corrupt_per_example[i] == pytest.approx(ref_corrupt, abs=1e-4)
    np.testing.assert_allclose(r.values, r.per_example.mean(0), atol=1e-6)
    assert np.all(r.ci_low <= r.values + 1e-6) and np.all(r.values <= r.ci_high + 1e-6)
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_roles_align_examples_of_different_lengths(tiny_llama, site):
    r = mechscope.patch(tiny_llama, pairs(ROLE_ROWS), site=site, progress=False)
    assert r.column_labels == ["animal", "END"] and r.values.shape == (tiny_llama.n_layers, 2)
    tok = pairs(ROLE_ROWS).tokenize(tiny_llama)
    for i, row in enumerate(ROLE_ROWS):
        pos = int(tok.roles_clean["animal"][i])
        ref, _, _ = reference_patching(tiny_llama, row["clean"], row["corrupt"], _diff(tiny_llama, row),
                                       site=site, positions=[pos, -1])
        np.testing.assert_allclose(r.per_example[i], ref, atol=1e-4, rtol=0)


def test_one_length_dataset_keeps_positions_and_memory_budget_changes_nothing(tiny_llama):
    lengths = [len(tiny_llama.str_tokens(r["clean"])) for r in ROWS]
    same = [r for r, n in zip(ROWS, lengths, strict=True) if n == lengths[2]]
    assert len(same) >= 2
    full = mechscope.patch(tiny_llama, pairs(same), progress=False)
    tight = mechscope.patch(tiny_llama, pairs(same), progress=False, memory_budget_mb=0.05)
    assert full.columns == list(range(lengths[2])) and tight.n_forward_passes > full.n_forward_passes
    np.testing.assert_allclose(full.per_example, tight.per_example, atol=1e-5, rtol=0)


def test_normalisation_is_per_example_and_long_pandas(tiny_llama):
    r = mechscope.patch(tiny_llama, pairs(ROLE_ROWS), progress=False)
    per = r.normalized_per_example()
    span = (r.clean_per_example - r.corrupt_per_example)[:, None, None]
    np.testing.assert_allclose(per, (r.per_example - r.corrupt_per_example[:, None, None]) / span,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.normalized(), np.nanmean(per, axis=0), atol=1e-5)
    frame = r.to_pandas()
    assert list(frame.columns) == ["example", "layer", "column", "value", "normalized"]
    assert len(frame) == r.per_example.size


def test_patch_cell_over_a_dataset_equals_the_sweep(tiny_llama):
    data = pairs(ROLE_ROWS)
    sweep = mechscope.patch(tiny_llama, data, site="resid", progress=False)
    cell = mechscope.patch_cell(tiny_llama, data, site="resid", layer=0, column="animal", example=2)
    np.testing.assert_allclose(cell.per_example, sweep.per_example[:, 0, 0], atol=1e-5)
    assert cell.value == pytest.approx(float(sweep.values[0, 0]), abs=1e-5)
    assert cell.column_name == "animal" and cell.example == 2


# ---- ablation over a dataset ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_ablation_over_texts_equals_the_reference(tiny, method):
    texts = [r["clean"] for r in ROWS] + ["hello"]
    reference = ["The quick brown fox jumps over the lazy dog", "A tree grew in the old garden"]
    kwargs = {} if method == "zero" else {"reference": reference}
    metric = logit_diff(" the", " of")
    before = model_fingerprint(tiny)
    effect = mechscope.ablate(tiny, texts, mechscope.heads(1, [0, 2]), method=method, metric=metric,
                              seed=5, progress=False, **kwargs)
    a, w = tiny.to_single_token(" the"), tiny.to_single_token(" of")
    for i, text in enumerate(texts):
        clean, ablated = reference_ablation(tiny, text, "heads", 1, [0, 2], method=method,
                                            reference=reference, seed=5 + i)  # example i: seed + i
        assert effect.clean_per_example[i] == pytest.approx(clean[a] - clean[w], abs=1e-4)
        assert effect.ablated_per_example[i] == pytest.approx(ablated[a] - ablated[w], abs=1e-4)
    assert effect.n == 5 and effect.ci_low <= effect.value <= effect.ci_high
    assert model_fingerprint(tiny) == before


def test_ablation_of_pairs_uses_each_examples_answer(tiny_llama):
    effect = mechscope.ablate(tiny_llama, pairs(ROWS), mechscope.neurons(0, [1, 2]), progress=False)
    for i, row in enumerate(ROWS):
        one = mechscope.ablate(tiny_llama, row["clean"], mechscope.neurons(0, [1, 2]),
                               metric=logit_diff(row["answer"], row["wrong"]))
        assert effect.per_example[i] == pytest.approx(one.metric_change, abs=1e-5)
    assert list(effect.to_pandas().columns) == ["example", "text", "clean", "ablated", "change"]


def test_compare_ablations_pairs_every_baseline(tiny_llama):
    texts = prompts([r["clean"] for r in ROWS])
    c = mechscope.compare_ablations(tiny_llama, texts, mechscope.layer(0, "attn"),
                                    reference=["The quick brown fox jumps over the lazy dog"],
                                    metric=logit_diff(" the", " of"), seeds=(0, 1), progress=False)
    assert c.labels == ("zero", "mean", "resample (seed 0)", "resample (seed 1)")
    for i, e in enumerate(c.effects):
        for j, f in enumerate(c.effects):
            assert c.difference[i, j] == pytest.approx(float((e.per_example - f.per_example).mean()), abs=1e-6)
            assert c.difference_low[i, j] <= c.difference[i, j] + 1e-6 <= c.difference_high[i, j] + 2e-6
    assert isinstance(c.survives(), bool) and len(c.differences()) == 6


# ---- activations and the logit lens over a dataset ------------------------------------------------
def test_activations_over_texts_at_roles_equal_single_runs(tiny):
    data = pairs(ROLE_ROWS).prompts("clean")
    r = mechscope.activations(tiny, data, site="neurons", neuron=3)
    assert r.roles == ["animal", "END"] and r.per_example.shape == (4, tiny.n_layers, 2)
    tok = pairs(ROLE_ROWS).tokenize(tiny)
    for i, text in enumerate(data.texts):
        one = mechscope.activations(tiny, text, site="neurons", neuron=3)
        cols = [int(tok.roles_clean["animal"][i]), -1]
        np.testing.assert_allclose(r.per_example[i], one.values[:, cols], atol=1e-4, rtol=0)
    np.testing.assert_allclose(r.values, r.per_example.mean(0), atol=1e-6)
    assert list(r.to_pandas().columns) == ["example", "layer", "role", "value"]


def test_logit_lens_over_pairs_reads_each_answer(tiny_llama):
    data = pairs(ROLE_ROWS)
    r = mechscope.logit_lens(tiny_llama, data, roles=["END"])
    for i, row in enumerate(ROLE_ROWS):
        one = mechscope.logit_lens(tiny_llama, row["clean"], target=row["answer"])
        np.testing.assert_allclose(r.per_example[i, :, 0], one.target_prob[:, -1], atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="needs target="):
        mechscope.logit_lens(tiny_llama, ["a b", "c d"])
    with pytest.raises(InputError, match="roles= is for a dataset"):
        mechscope.activations(tiny_llama, "a b", roles=["END"])


# ---- steering over a dataset ----------------------------------------------------------------------
def test_steering_sweep_over_pairs_equals_hand_steered_runs(tiny):
    import torch

    vec = mechscope.steering_vector(tiny, ["good great fine"], ["bad awful sad"], layer=0)
    data = pairs(ROWS)
    e = mechscope.steering_sweep(tiny, data, vec, coefficients=[-3, 0, 3])
    module = tiny.hf_module("resid", 0)
    for c_index, c in enumerate([-3.0, 0.0, 3.0]):
        delta = torch.as_tensor(c * vec.vector)

        def hook(_m, _args, out, delta=delta):
            return (out[0] + delta, *out[1:]) if isinstance(out, tuple) else out + delta

        handle = module.register_forward_hook(hook)
        try:
            for i, row in enumerate(ROWS):
                with torch.no_grad():
                    logits = tiny.hf(tiny.to_tokens(row["clean"])).logits[0, -1]
                a, w = tiny.to_single_token(row["answer"]), tiny.to_single_token(row["wrong"])
                assert e.per_example[i, c_index] == pytest.approx(float(logits[a] - logits[w]), abs=1e-4)
        finally:
            handle.remove()
    assert e.to_pandas().shape == (12, 3)
    with pytest.raises(InputError, match="metric= is for a dataset"):
        mechscope.steering_sweep(tiny, "The cat", vec, metric=logit_diff(" the", " of"))


# ---- the remote path serialises the batched traces too --------------------------------------------
def test_dataset_verbs_equal_local_through_remote_local(tiny_llama):
    """remote="local" runs nnsight's real serialise/deserialise path, as a request to NDIF does."""
    data = pairs(ROLE_ROWS)
    vec = mechscope.steering_vector(tiny_llama, ["good great fine"], ["bad awful sad"], layer=1)

    def run():
        return (mechscope.patch(tiny_llama, data, site="heads", progress=False).per_example,
                mechscope.patch(tiny_llama, data, site="resid", method="attribution", progress=False).per_example,
                mechscope.ablate(tiny_llama, data, mechscope.heads(0, [1]), method="resample",
                                 reference=["The quick brown fox jumps over it"], progress=False).per_example,
                mechscope.activations(tiny_llama, data).per_example,
                mechscope.logit_lens(tiny_llama, data).per_example,
                mechscope.steering_sweep(tiny_llama, data, vec, coefficients=[1]).per_example)

    local = run()
    tiny_llama.remote = "local"
    try:
        remote = run()
    finally:
        tiny_llama.remote = False
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_cell_rerun_of_a_dataset_result_reruns_the_dataset(tiny_llama):
    from mechscope.interventions.patching import cell_rerun

    for site in ("resid", "heads"):
        r = mechscope.patch(tiny_llama, pairs(ROLE_ROWS), site=site, progress=False)
        cell = cell_rerun(r, tiny_llama)(1, 1)
        assert cell.per_example.shape == (4,)
        np.testing.assert_allclose(cell.per_example, r.per_example[:, 1, 1], atol=1e-5)
