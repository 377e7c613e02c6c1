"""Structure then capability: the agreement grammar, the masked LM runs, SAS and accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.dynamics.grammar import NOUNS, AgreementGrammar, Sentence, plural
from mechscope.dynamics.mlm import build_mlm, encode, load_mlm, train_mlm
from mechscope.dynamics.sas import (
    grammar_accuracy,
    sas_from_attention,
    sas_score,
    structure_and_capability,
)
from mechscope.errors import InputError

GRAMMAR = AgreementGrammar()
SINGULAR, PLURAL = set(NOUNS), {plural(n) for n in NOUNS}


def _is_tree(s: Sentence) -> bool:
    """Every token reaches the root by following heads, without a cycle."""
    for i in range(len(s.words)):
        seen, j = set(), i
        while s.heads[j] != -1:
            if j in seen:
                return False
            seen.add(j)
            j = s.heads[j]
        if j != s.main_verb:
            return False
    return True


def test_arcs_form_a_tree_rooted_at_the_main_verb() -> None:
    for s in GRAMMAR.sentences(300, seed=1):
        assert len(s.words) == len(s.heads) == len(s.labels)
        assert s.heads.count(-1) == 1 and s.heads[s.main_verb] == -1
        assert all(-1 <= h < len(s.words) and h != i for i, h in enumerate(s.heads))
        assert _is_tree(s)
        for d, h, lab in s.arcs():
            if lab == "det":
                assert s.words[d] == "the" and s.words[h] in SINGULAR | PLURAL
            if lab == "mark":
                assert s.words[d] == "that"


def test_every_verb_agrees_with_its_subject() -> None:
    for s in GRAMMAR.sentences(300, seed=2):
        subj = [d for d, h, lab in s.arcs() if h == s.main_verb and lab == "nsubj"]
        assert len(subj) == 1 and (s.words[subj[0]] in PLURAL) == s.plural
        for d, h, lab in s.arcs():
            if lab in ("relcl", "root"):
                continue
            if lab == "nsubj":  # noun d is the subject of verb h
                assert s.words[h].endswith("s") != (s.words[d] in PLURAL), s.text
        for v, noun, lab in s.arcs():  # subject relatives agree with the modified noun
            if lab == "relcl" and not any(h == v and la == "nsubj" for _, h, la in s.arcs()):
                assert s.words[v].endswith("s") != (s.words[noun] in PLURAL), s.text


def test_minimal_pairs_differ_in_the_main_verb_only() -> None:
    pairs = GRAMMAR.minimal_pairs(100, seed=3, min_attractors=1)
    for p in pairs:
        diff = [i for i, (a, b) in enumerate(zip(p.good, p.bad, strict=True)) if a != b]
        assert diff == [p.position] == [p.sentence.main_verb]
        assert p.correct.endswith("s") != p.sentence.plural and p.wrong != p.correct


def test_sas_equals_a_hand_computation() -> None:
    s = Sentence(("the", "dogs", "that", "chase", "the", "cat", "run", "."),
                 (1, 6, 3, 1, 5, 3, -1, 6),
                 ("det", "nsubj", "mark", "relcl", "det", "obj", "root", "punct"), 6, True)
    n = len(s.words)
    att = np.full((1, 1, 2, n + 2, n + 2), 0.01)  # two padding columns, never a parent
    for q, k in enumerate([0, 0, 1, 2, 3, 4, 5, 6]):  # head 0: previous token (0 -> itself)
        att[0, 0, 0, q, k] = 1.0
    for q in range(n):  # head 1: the main verb's position for every token
        att[0, 0, 1, q, 6] = 1.0
    r = sas_from_attention(att, [s])
    # head 0 hits an arc (d, p) when p == d - 1 or d == p - 1: det 0->1, mark 2->3, det 4->5,
    # relcl 3->1? no (2 apart); punct 7->6; obj 5->3? no; nsubj 1->6? no  => 4 of 7 arcs
    # head 1 hits arcs into the verb (nsubj, punct) and none of the others  => 2 of 7
    assert r.labels == ["det", "mark", "nsubj", "obj", "punct", "relcl"]
    assert r.head_scores[0].tolist() == pytest.approx([4 / 7, 2 / 7])
    assert r.per_label[0, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert r.per_label[0, 1].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert r.score == pytest.approx(np.mean([1, 1, 1, 0, 1, 0]))
    assert r.best_head == (0, 0)


def test_sas_score_matches_the_attention_hf_returns() -> None:
    hf = build_mlm(GRAMMAR, seed=0, n_layers=2, d_model=16, n_heads=2, d_mlp=16)
    sentences = GRAMMAR.sentences(6, seed=4)
    ids, att = encode(GRAMMAR, sentences)
    caught: list[torch.Tensor] = []
    hooks = [layer.attention.self.register_forward_hook(lambda m, i, o: caught.append(o[1]))
             for layer in hf.bert.encoder.layer]
    try:
        with torch.no_grad():
            hf(input_ids=ids, attention_mask=att, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    expected = sas_from_attention(np.stack([c.numpy() for c in caught]), sentences)
    got = sas_score(hf, sentences, GRAMMAR)
    assert got.score == expected.score
    np.testing.assert_array_equal(got.per_label, expected.per_label)
    assert not hf.training


def test_grammar_accuracy_against_a_loop_of_single_pairs() -> None:
    hf = build_mlm(GRAMMAR, seed=1, n_layers=1, d_model=16, n_heads=2, d_mlp=16)
    pairs = GRAMMAR.minimal_pairs(12, seed=5)
    index = {w: i for i, w in enumerate(GRAMMAR.vocab)}
    right = 0
    for p in pairs:
        ids, att = encode(GRAMMAR, [p.sentence])
        ids[0, p.position] = index["[MASK]"]
        with torch.no_grad():
            logits = hf(input_ids=ids, attention_mask=att).logits[0, p.position]
        right += int(logits[index[p.correct]] > logits[index[p.wrong]])
    assert grammar_accuracy(hf, pairs, GRAMMAR) == pytest.approx(right / len(pairs))


def test_a_tiny_run_gives_checkpoints_and_metrics_of_the_right_shapes(tmp_path) -> None:
    torch.set_num_threads(1)
    runs = train_mlm(GRAMMAR, seeds=(0, 1, 2), steps=6, n_layers=2, d_model=16, n_heads=2,
                     d_mlp=16, n_checkpoints=4, out_dir=tmp_path, progress=False)
    assert runs.steps == [0, 1, 3, 6] and runs.train_loss.shape == (3, 6)
    assert [c.step for c in runs.checkpoints(2)] == runs.steps
    last = load_mlm(runs.checkpoints(0)[-1])
    assert last.config.num_hidden_layers == 2
    again = train_mlm(GRAMMAR, seeds=(0, 1, 2), steps=6, n_layers=2, d_model=16, n_heads=2,
                      d_mlp=16, n_checkpoints=4, out_dir=tmp_path, progress=False)
    np.testing.assert_allclose(again.train_loss, runs.train_loss, atol=1e-5)  # finished: kept
    r = structure_and_capability(runs, n_sentences=10, n_pairs=10, progress=False)
    assert r.sas.shape == r.accuracy.shape == (3, 4)
    assert r.head_scores.shape == (3, 4, 2, 2) and r.label_sas.shape == (3, 4, len(r.labels))
    assert r.sas_steps.shape == r.accuracy_steps.shape == (3,) and len(r.first) == 3
    assert r.to_pandas().shape == (12, 4)
    assert r.show().summary()
    # the checkpoint's score equals sas_score on the reloaded model
    s = sas_score(load_mlm(runs.checkpoints(1)[2]), GRAMMAR.sentences(10, seed=12345), GRAMMAR)
    assert r.sas[1, 2] == s.score


def test_bad_input_raises_input_error(tmp_path) -> None:
    hf = build_mlm(GRAMMAR, n_layers=1, d_model=8, n_heads=2, d_mlp=8)
    with pytest.raises(InputError, match="must be a probability"):
        AgreementGrammar(p_transitive=-0.1)
    with pytest.raises(InputError, match="n_nouns must be an int in 1..16"):
        AgreementGrammar(n_nouns=40)
    with pytest.raises(InputError, match="not in the grammar's vocabulary"):
        encode(GRAMMAR, ["the unicorn runs ."])
    with pytest.raises(InputError, match="pass the grammar the model was trained on"):
        sas_score(hf, AgreementGrammar(n_nouns=2).sentences(2), AgreementGrammar(n_nouns=2))
    with pytest.raises(InputError, match="non-empty list"):
        grammar_accuracy(hf, [], GRAMMAR)
    with pytest.raises(InputError, match="attentions must be"):
        sas_from_attention(np.zeros((2, 2)), GRAMMAR.sentences(1))
    with pytest.raises(InputError, match="seeds must be distinct"):
        train_mlm(GRAMMAR, seeds=(0, 0), steps=2, out_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="not a train_mlm run directory"):
        structure_and_capability([tmp_path], progress=False)
    with pytest.raises(InputError, match="divisible"):
        build_mlm(GRAMMAR, d_model=10, n_heads=3)
