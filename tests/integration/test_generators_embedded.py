"""The dataset generators on the embedded SmolLM2-135M-Instruct: with ``model=``, every answer
binds (single tokens), and the model solves the clean prompts of IOI, capitals and factual
recall (logit_diff(answer, wrong) > 0 on most of them); patching heads on an IOI dataset runs.

Measured (seed 0, n = 100, plain ``model.hf`` logits at the last token), fraction of clean
prompts with logit_diff > 0 (mean logit_diff): ioi 0.96 (4.75; ABBA 0.92, BABA 1.00),
factual_recall 0.83 (4.07), capitals 0.96 (9.34). The thresholds below sit below those on the
n = 40 used here.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import mechscope
from mechscope.datasets import capitals, factual_recall, greater_than, induction, ioi, sentiment
from tests.helpers import model_fingerprint

pytestmark = pytest.mark.embedded

N = 40
GENERATORS = {"ioi": ioi, "factual_recall": factual_recall, "capitals": capitals, "greater_than": greater_than,
              "sentiment": sentiment, "induction": induction}
THRESHOLDS = {"ioi": 0.85, "capitals": 0.85, "factual_recall": 0.7}


def clean_logit_diffs(model, data) -> np.ndarray:
    """logit[answer] - logit[wrong] at the last token of every clean prompt, from ``model.hf``
    directly (prompts of equal token length batched together)."""
    ids = [model.to_tokens(t)[0] for t in data.clean]
    answer = [model.to_single_token(a) for a in data.answer]
    wrong = [model.to_single_token(w) for w in data.wrong]
    out = np.zeros(len(data))
    for size in sorted({len(x) for x in ids}):
        group = [i for i, x in enumerate(ids) if len(x) == size]
        with torch.no_grad():
            last = model.hf(torch.stack([ids[i] for i in group])).logits[:, -1].float()
        for row, i in enumerate(group):
            out[i] = float(last[row, answer[i]] - last[row, wrong[i]])
    return out


@pytest.fixture(scope="module")
def datasets(embedded):
    return {name: gen(N, seed=0, model=embedded) for name, gen in GENERATORS.items()}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_answers_bind_and_roles_tokenize(embedded, datasets, name):
    data = datasets[name]
    assert len(data) == N
    data.metric(embedded)  # every answer and wrong is one token of SmolLM2
    tok = data.tokenize(embedded)
    assert tok.role_names == data.role_names


def test_greater_than_follows_smollm2_digit_tokens(embedded, datasets):
    data = datasets["greater_than"]
    assert set(data.metadata["mode"]) == {"digit"}  # SmolLM2 writes numbers digit by digit
    assert embedded.str_tokens("from the year 1732 to the year 17")[-3:] == [" ", "1", "7"]
    tok = data.tokenize(embedded)
    pieces = embedded.decode_tokens(tok.clean_ids[0])
    assert pieces[tok.roles_clean["YY"][0]] == str(data.metadata["yy"][0] % 10)


def test_names_land_on_their_own_token(embedded, datasets):
    data = datasets["ioi"]
    tok = data.tokenize(embedded)
    for i in range(N):
        pieces = embedded.decode_tokens(tok.clean_ids[i])
        assert pieces[tok.roles_clean["IO"][i]] == " " + data.metadata["io"][i]
        assert pieces[tok.roles_clean["S2"][i]] == " " + data.metadata["s"][i]
        assert embedded.decode_tokens(tok.corrupt_ids[i])[tok.roles_corrupt["S2"][i]] == " " + data.metadata["c"][i]


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_smollm2_prefers_the_answer_on_clean_prompts(embedded, datasets, name):
    diffs = clean_logit_diffs(embedded, datasets[name])
    frac = float((diffs > 0).mean())
    assert frac >= THRESHOLDS[name], f"{name}: {frac:.2f} of clean prompts correct (mean {diffs.mean():.2f})"
    assert diffs.mean() > 1.0


def test_the_prompt_known_from_the_issue(embedded):
    data = ioi(1, seed=0, model=embedded, templates=["When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to"])
    assert clean_logit_diffs(embedded, data)[0] > 0


def test_patch_heads_runs_on_an_ioi_dataset(embedded):
    data = ioi(8, seed=0, model=embedded)
    before = model_fingerprint(embedded)
    start = time.perf_counter()
    r = mechscope.patch(embedded, data, site="heads", layers=[0, 15, 29], progress=False)
    elapsed = time.perf_counter() - start
    assert r.values.shape == (3, embedded.n_heads) and np.isfinite(r.values).all()
    assert elapsed < 120, f"patching heads on 8 IOI examples took {elapsed:.0f} s"
    assert model_fingerprint(embedded) == before
