"""Exact patching with prefix reuse (`mechscope.interventions.patch_prefix`) equals the path that
runs every position (`patch_prefix.disabled()`) and plain torch forward hooks, on single pairs
and on datasets with several length groups, roles and texts of unequal lengths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import mechscope
from mechscope.datasets import pairs
from mechscope.interventions import patch_prefix
from mechscope.interventions.patch_plan import dataset_plan, pair_plan
from mechscope.metrics import logit_diff
from tests.helpers import model_fingerprint
from tests.reference_hooks import capture, reference_patching, site_module

SITES = ("resid", "attn", "mlp", "heads")
# The texts differ late (position 7 of 13 tokens on the tiny tokenizer), as in IOI's ABC pairs.
CLEAN = "The cat sat on the cat sat on the"
CORRUPT = "The cat sat on the dog sat on the"
GOOD, BAD = " the", " of"


def _char(text: str, word: str, nth: int = 0) -> int:
    """Character index of the last letter of the ``nth`` occurrence of ``word``."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(word, at + 1)
    return at + len(word) - 1


def _row(clean: str, corrupt: str, word_c: str, word_k: str, answer: str = GOOD, wrong: str = BAD) -> dict:
    return {"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong,
            "roles": {"S2": [_char(clean, word_c, 1), _char(corrupt, word_k)],
                      # clean "The" (position 0) into corrupt "at" of " s|at" (position 3): a
                      # moved patch before the first differing token caps the prefix there
                      "first": [_char(clean, "The"), _char(corrupt, "sat")]}}


ROWS = [  # three length groups: (13, 13) twice, (13, 19) and (14, 14)
    _row(CLEAN, CORRUPT, "cat", "dog"),
    _row("The dog sat on the dog sat on the", "The dog sat on the cat sat on the", "dog", "cat", BAD, GOOD),
    _row(CLEAN, "The cat sat on the elephant sat on the", "cat", "elephant"),
    _row("The dog ran to the dog sat on the", "The dog ran to the cat sat on the", "dog", "cat"),
]
SAME_LENGTH = [ROWS[0], ROWS[1], ROWS[3]]


def _pair(model, **kw):
    kw.setdefault("progress", False)
    return mechscope.patch(model, CLEAN, CORRUPT, logit_diff(GOOD, BAD), **kw)


def _both(run):
    """(with prefix reuse, without): the same call on both paths."""
    fast = run()
    with patch_prefix.disabled():
        slow = run()
    return fast, slow


def _hook_reference(model, row: dict, site: str, layer: int, pos_clean: list[int],
                    pos_corrupt: list[int], cols: slice | None = None) -> float:
    """logit_diff of the row's corrupt text with the clean site values at ``pos_clean`` written at
    ``pos_corrupt`` (plain forward hooks, one unbatched HF forward)."""
    clean_act = capture(model, row["clean"], site, layer)
    module, when = site_module(model, site, layer)
    frm, to = torch.tensor(pos_clean), torch.tensor(pos_corrupt)
    cs = slice(None) if cols is None else cols

    def write(x):
        x[0, to, cs] = clean_act[frm, cs]

    handle = (module.register_forward_pre_hook(lambda _m, args: write(args[0])) if when == "pre"
              else module.register_forward_hook(lambda _m, _a, out: write(out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.no_grad():
            logits = model.hf(model.to_tokens(row["corrupt"])).logits[0, -1]
    finally:
        handle.remove()
    a, w = model.to_single_token(row["answer"]), model.to_single_token(row["wrong"])
    return float(logits[a] - logits[w])


# ---- the prefix ------------------------------------------------------------------------------
def test_prefix_length_is_the_first_difference_capped_by_moved_patches_and_the_last_token(tiny_llama):
    group = pair_plan(tiny_llama, CLEAN, CORRUPT, "resid", None).groups[0]
    assert patch_prefix.prefix_length(tiny_llama, group) == 7
    same = pair_plan(tiny_llama, CLEAN, CLEAN, "resid", None).groups[0]
    assert patch_prefix.prefix_length(tiny_llama, same) == 12  # identical: all but the last
    first = pair_plan(tiny_llama, "A cat sat on the", "The cat sat on the", "resid", None).groups[0]
    assert patch_prefix.prefix_length(tiny_llama, first) == 0
    roles = dataset_plan(tiny_llama, pairs(ROWS), "resid", None)
    assert [patch_prefix.prefix_length(tiny_llama, g) for g in roles.groups] == [3, 3, 8]
    s2 = dataset_plan(tiny_llama, pairs(ROWS), "heads", ["S2", "END"])
    assert [patch_prefix.prefix_length(tiny_llama, g) for g in s2.groups] == [7, 7, 8]
    with patch_prefix.disabled():
        assert patch_prefix.prefix_length(tiny_llama, group) == 0
    tiny_llama.remote = "local"  # the keys and values would travel with every request
    try:
        assert patch_prefix.prefix_length(tiny_llama, group) == 0
    finally:
        tiny_llama.remote = False


# ---- single pairs ----------------------------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_pair_equals_the_full_path_and_torch_hooks(tiny, site):
    before = model_fingerprint(tiny)
    fast, slow = _both(lambda: _pair(tiny, site=site))
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-5, rtol=0)
    assert fast.corrupt_metric == pytest.approx(slow.corrupt_metric, abs=1e-5)
    g, b = tiny.to_single_token(GOOD), tiny.to_single_token(BAD)
    ref, ref_clean, ref_corrupt = reference_patching(tiny, CLEAN, CORRUPT,
                                                     lambda lg, _c: float(lg[g] - lg[b]), site=site)
    np.testing.assert_allclose(fast.values, ref, atol=1e-4, rtol=0)
    assert fast.corrupt_metric == pytest.approx(ref_corrupt, abs=1e-4)
    assert np.abs(ref - ref_corrupt).max() > 1e-3  # patching did something
    if site != "heads":  # before the first difference a patch writes what is there
        assert np.all(fast.values[:, :7] == np.float32(fast.corrupt_metric))
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_eager_attention_takes_the_same_mask(tiny_llama, site):
    with tiny_llama.eager_attention():
        fast, slow = _both(lambda: _pair(tiny_llama, site=site))
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_identical_and_first_token_pairs(tiny_llama, site):
    same = mechscope.patch(tiny_llama, CLEAN, CLEAN, logit_diff(GOOD, BAD), site=site, progress=False)
    np.testing.assert_allclose(same.values, same.clean_metric, atol=1e-5)
    assert same.corrupt_metric == pytest.approx(same.clean_metric, abs=1e-5)
    run = lambda: mechscope.patch(tiny_llama, "A cat sat on the", "The cat sat on the",  # noqa: E731
                                  logit_diff(GOOD, BAD), site=site, progress=False)
    fast, slow = _both(run)
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-6, rtol=0)


def test_positions_before_the_prefix_need_no_copy(tiny_llama):
    fast, slow = _both(lambda: _pair(tiny_llama, positions=[0, 3, -1], memory_budget_mb=1e-9))
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-5, rtol=0)
    assert fast.n_forward_passes == 1 + tiny_llama.n_layers  # only position -1 is run, one per pass
    assert slow.n_forward_passes == 1 + fast.values.size
    only = _pair(tiny_llama, positions=[1, 2])  # every copy is a no-op: one trace for the corrupt run
    assert only.n_forward_passes == 2
    np.testing.assert_array_equal(only.values, np.float32(only.corrupt_metric))


@pytest.mark.parametrize("budget", [0.02, 0.05])
def test_memory_budget_changes_nothing(tiny_llama, budget):
    full = _pair(tiny_llama, site="heads")
    tight, slow = _both(lambda: _pair(tiny_llama, site="heads", memory_budget_mb=budget))
    assert tight.n_forward_passes > full.n_forward_passes
    np.testing.assert_allclose(tight.values, full.values, atol=1e-5, rtol=0)
    np.testing.assert_allclose(tight.values, slow.values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_patch_cell_equals_the_sweep(tiny_llama, site):
    sweep = _pair(tiny_llama, site=site)
    m = logit_diff(GOOD, BAD)
    column = 2 if site == "heads" else 9
    cell = mechscope.patch_cell(tiny_llama, CLEAN, CORRUPT, m, site, 1, column, top_k=3)
    col = column if site == "heads" else sweep.columns.index(column)
    assert cell.value == pytest.approx(float(sweep.values[1, col]), abs=1e-5)
    with patch_prefix.disabled():
        slow = mechscope.patch_cell(tiny_llama, CLEAN, CORRUPT, m, site, 1, column, top_k=3)
    assert cell.after.tokens == slow.after.tokens and cell.before.tokens == slow.before.tokens
    np.testing.assert_allclose(cell.after.logits, slow.after.logits, atol=1e-5)


# ---- datasets --------------------------------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_dataset_of_several_groups_equals_the_full_path_and_a_loop(tiny, site):
    # several examples per group; roles at the same clean and corrupt position (a loop of pairs
    # can only patch a position into itself)
    data = pairs([dict(r, roles={"S2": r["roles"]["S2"]}) for r in SAME_LENGTH + [ROWS[0]]])
    before = model_fingerprint(tiny)
    fast, slow = _both(lambda: mechscope.patch(tiny, data, site=site, progress=False))
    np.testing.assert_allclose(fast.per_example, slow.per_example, atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast.corrupt_per_example, slow.corrupt_per_example, atol=1e-5, rtol=0)
    tok = data.tokenize(tiny)
    for i, row in enumerate(data.to_pandas().to_dict(orient="records")):
        one = mechscope.patch(tiny, row["clean"], row["corrupt"], logit_diff(row["answer"], row["wrong"]),
                              site=site, progress=False)
        # lengths differ across groups, so position sites patch by role (each at its position)
        cols = (slice(None) if site == "heads"
                else [int(tok.roles_clean[r][i]) for r in fast.column_labels])
        np.testing.assert_allclose(fast.per_example[i], one.values[:, cols], atol=1e-4, rtol=0)
    assert model_fingerprint(tiny) == before


@pytest.mark.parametrize("site", ["resid", "attn", "mlp", "heads"])
def test_roles_of_unequal_lengths_equal_the_full_path_and_torch_hooks(tiny_llama, site):
    data = pairs(ROWS)
    positions = ["S2", "END"] if site == "heads" else None  # other sites: every role
    run = lambda: mechscope.patch(tiny_llama, data, site=site, positions=positions, progress=False)  # noqa: E731
    fast, slow = _both(run)
    np.testing.assert_allclose(fast.per_example, slow.per_example, atol=1e-5, rtol=0)
    tok = data.tokenize(tiny_llama)
    names = fast.column_labels if site != "heads" else positions
    for (i, row), layer in itertools.product(enumerate(ROWS), range(tiny_llama.n_layers)):
        pc = [int(tok.roles_clean[r][i]) for r in names]
        pk = [int(tok.roles_corrupt[r][i]) for r in names]
        if site == "heads":
            d_head = tiny_llama.d_head
            for h in range(tiny_llama.n_heads):
                ref = _hook_reference(tiny_llama, row, site, layer, pc, pk, slice(h * d_head, (h + 1) * d_head))
                assert fast.per_example[i, layer, h] == pytest.approx(ref, abs=1e-4)
        else:
            for j in range(len(names)):
                ref = _hook_reference(tiny_llama, row, site, layer, [pc[j]], [pk[j]])
                assert fast.per_example[i, layer, j] == pytest.approx(ref, abs=1e-4)


def test_dataset_cell_and_remote_local_equal_local(tiny_llama):
    data = pairs(ROWS)
    sweep = mechscope.patch(tiny_llama, data, site="resid", progress=False)
    cell = mechscope.patch_cell(tiny_llama, data, site="resid", layer=0, column="S2", example=2)
    np.testing.assert_allclose(cell.per_example, sweep.per_example[:, 0, sweep.column_labels.index("S2")],
                               atol=1e-5)
    tiny_llama.remote = "local"  # the full path there (no prefix travels): the same values
    try:
        remote = mechscope.patch(tiny_llama, data, site="resid", progress=False)
    finally:
        tiny_llama.remote = False
    np.testing.assert_allclose(remote.per_example, sweep.per_example, atol=1e-5, rtol=0)
