"""The dataset generators (mechscope.datasets.generators): deterministic per seed, exactly n
examples, roles on the right characters and tokens, metadata, single-token filtering for a
model, and their errors (messages asserted)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from mechscope import InputError
from mechscope.datasets import (
    PromptPairs,
    capitals,
    factual_recall,
    greater_than,
    induction,
    ioi,
    sentiment,
)
from mechscope.datasets.generators import _facts, _ioi, _sentiment, _years

NO_MODEL = {"ioi": ioi, "factual_recall": factual_recall, "capitals": capitals,
            "greater_than": greater_than, "sentiment": sentiment}


def _all(tiny_llama):
    gens = {k: functools.partial(f) for k, f in NO_MODEL.items()}
    gens["induction"] = lambda n, seed=0: induction(n, seed, model=tiny_llama)
    return gens


def _same(a: PromptPairs, b: PromptPairs) -> bool:
    return (a.clean, a.corrupt, a.answer, a.wrong, dict(a.metadata)) == (b.clean, b.corrupt, b.answer, b.wrong,
                                                                         dict(b.metadata)) \
        and all(np.array_equal(a.roles[k], b.roles[k]) for k in a.roles)


@pytest.mark.parametrize("name", [*NO_MODEL, "induction"])
def test_deterministic_sizes_and_seeds_differ(tiny_llama, name):
    gen = _all(tiny_llama)[name]
    a, b, c = gen(25, 0), gen(25, 0), gen(25, 1)
    assert isinstance(a, PromptPairs) and a.name == name
    assert len(a) == 25 and len(gen(1)) == 1
    assert _same(a, b) and not _same(a, c)
    for k, v in a.roles.items():
        assert v.shape == (25, 2) and v.dtype == np.int64, k
    assert all(len(v) == 25 for v in a.metadata.values())
    assert a.role_names[-1] == "END"


@pytest.mark.parametrize("name", [*NO_MODEL, "induction"])
def test_n_below_one_and_bad_seed_are_refused(tiny_llama, name):
    gen = _all(tiny_llama)[name]
    with pytest.raises(InputError, match=rf"{name}: n must be at least 1 \(the number of examples\), got 0"):
        gen(0)
    with pytest.raises(InputError, match=rf"{name}: seed must be an int >= 0, got -1"):
        gen(2, -1)
    with pytest.raises(InputError, match=rf"{name}: n \(the number of examples\) must be an int, got float 2.5"):
        gen(2.5)


def _role_text(text: str, end: int, word: str) -> str:
    return text[end - len(word) + 1:end + 1]


def test_ioi_roles_answers_and_abc_corruption():
    data = ioi(60, seed=3)
    meta = data.metadata
    assert set(meta["order"]) == {"ABBA", "BABA"} and set(meta["corruption"]) == {"ABC"}
    for i in range(len(data)):
        io, s, c = meta["io"][i], meta["s"][i], meta["c"][i]
        assert len({io, s, c}) == 3
        assert data.answer[i] == " " + io and data.wrong[i] == " " + s
        clean, corrupt = data.clean[i], data.corrupt[i]
        (io_c, io_k), (s1_c, s1_k), (s2_c, s2_k) = data.roles["IO"][i], data.roles["S1"][i], data.roles["S2"][i]
        assert _role_text(clean, io_c, io) == io and _role_text(corrupt, io_k, io) == io
        assert _role_text(clean, s1_c, s) == s and _role_text(corrupt, s1_k, s) == s
        assert _role_text(clean, s2_c, s) == s and _role_text(corrupt, s2_k, c) == c
        assert (io_c < s1_c) == (meta["order"][i] == "ABBA") and s2_c > max(io_c, s1_c)
        assert corrupt == clean[:s2_c - len(s) + 1] + c + clean[s2_c + 1:]
        assert c not in clean.split() and c + "," not in clean.split()
        assert clean == _ioi.TEMPLATES[meta["template"][i]].format(
            A=io if meta["order"][i] == "ABBA" else s, B=s if meta["order"][i] == "ABBA" else io, S=s,
            PLACE=meta["place"][i], OBJECT=meta["object"][i])


def test_ioi_lists_are_large_enough():
    assert len(set(_ioi.NAMES)) == len(_ioi.NAMES) >= 100
    assert len(_ioi.TEMPLATES) >= 15
    assert len(_facts.FACTS) >= 40 and len(_facts.CAPITALS) >= 40


def test_roles_land_on_the_role_token(tiny_llama):
    """The tokenized role holds the role's last character: decoding it gives the word's end."""
    data = ioi(5, seed=0)
    tok = data.tokenize(tiny_llama)
    for i in range(len(data)):
        for role, word in (("IO", data.metadata["io"][i]), ("S2", data.metadata["s"][i])):
            piece = tiny_llama.decode_tokens(tok.clean_ids[i])[tok.roles_clean[role][i]]
            assert piece and word.endswith(piece.strip()), (role, word, piece)
        piece = tiny_llama.decode_tokens(tok.corrupt_ids[i])[tok.roles_corrupt["S2"][i]]
        assert data.metadata["c"][i].endswith(piece.strip())


def test_factual_recall_and_capitals_roles_and_corrupt_answers():
    data = factual_recall(50, seed=0)
    answers = {(r, s): " " + a for r, s, a in _facts.FACTS}
    assert set(data.metadata["relation"]) == {"landmark_city", "company_country", "person_country"}
    for i in range(len(data)):
        rel, subj, csubj = data.metadata["relation"][i], data.metadata["subject"][i], data.metadata["corrupt_subject"][i]
        assert data.answer[i] == answers[(rel, subj)] and data.wrong[i] == answers[(rel, csubj)]
        assert data.answer[i] != data.wrong[i]
        c, k = data.roles["subject"][i]
        assert data.clean[i][:c + 1] == subj and data.corrupt[i][:k + 1] == csubj
        assert data.clean[i][c + 1:] == data.corrupt[i][k + 1:]
    caps = capitals(50, seed=0)
    table = {c: " " + cap for c, cap in _facts.CAPITALS}
    for i in range(len(caps)):
        country, other = caps.metadata["country"][i], caps.metadata["corrupt_country"][i]
        assert country != other and caps.answer[i] == table[country] and caps.wrong[i] == table[other]
        c, k = caps.roles["country"][i]
        assert _role_text(caps.clean[i], c, country) == country and _role_text(caps.corrupt[i], k, other) == other


def test_greater_than_modes_and_year_role(tiny_llama):
    two = greater_than(40, seed=0)
    assert set(two.metadata["mode"]) == {"two_digit"}
    for i in range(len(two)):
        yy, cc = two.metadata["yy"][i], two.metadata["century"][i]
        assert 11 <= yy <= 88 and 11 <= cc <= 17
        assert (int(two.answer[i]), int(two.wrong[i])) == (yy + 1, yy - 1)
        r = two.roles["YY"][i, 0]
        assert two.clean[i][r - 3:r + 1] == f"{cc}{yy:02d}" and two.corrupt[i][r - 3:r + 1] == f"{cc}01"
        assert two.clean[i].endswith(f"year {cc}")
    # the tiny tokenizer splits numbers into digits: the mode follows the model
    digit = greater_than(40, seed=0, model=tiny_llama)
    assert set(digit.metadata["mode"]) == {"digit"}
    assert digit.clean == two.clean
    for i in range(len(digit)):
        tens = digit.metadata["yy"][i] // 10
        assert (digit.answer[i], digit.wrong[i]) == (str(tens + 1), str(tens - 1))
    digit.metric(tiny_llama)  # every answer binds
    tok = digit.tokenize(tiny_llama)
    pieces = tiny_llama.decode_tokens(tok.clean_ids[0])
    assert pieces[tok.roles_clean["YY"][0]] == str(digit.metadata["yy"][0] % 10)
    assert greater_than(3, seed=0, digits=True).answer == greater_than(3, seed=0, model=tiny_llama).answer


def test_sentiment_polarity_answers_and_adjective_role():
    data = sentiment(60, seed=0)
    assert set(data.metadata["sentiment"]) == {"positive", "negative"}
    for i in range(len(data)):
        template, pos, neg = _sentiment.TEMPLATES[data.metadata["template"][i]]
        adj, other = data.metadata["adjective"][i], data.metadata["corrupt_adjective"][i]
        positive = data.metadata["sentiment"][i] == "positive"
        assert (adj in _sentiment.POSITIVE) == positive and (other in _sentiment.POSITIVE) != positive
        assert (data.answer[i], data.wrong[i]) == ((pos, neg) if positive else (neg, pos))
        assert data.clean[i] == template.format(ADJ=adj) and data.corrupt[i] == template.format(ADJ=other)
        c, k = data.roles["adjective"][i]
        assert _role_text(data.clean[i], c, adj) == adj and _role_text(data.corrupt[i], k, other) == other


def test_induction_repeats_and_roles(tiny_llama):
    data = induction(20, seed=0, model=tiny_llama, length=6, repeat=3)
    tok = data.tokenize(tiny_llama)
    for i in range(len(data)):
        clean_ids, corrupt_ids = tok.clean_ids[i], tok.corrupt_ids[i]
        assert len(clean_ids) == len(corrupt_ids) == 9
        assert clean_ids[6:] == clean_ids[:3] and corrupt_ids[:6] == clean_ids[:6]
        assert not set(corrupt_ids[6:]) & set(clean_ids[:6])
        assert len(set(clean_ids[:6])) == 6
        assert tiny_llama.to_single_token(data.answer[i]) == clean_ids[3] == data.metadata["answer_id"][i]
        assert tiny_llama.to_single_token(data.wrong[i]) in clean_ids[4:6]
        assert tok.roles_clean["current_first"][i] == 2 and tok.roles_clean["answer_first"][i] == 3
        assert tok.roles_clean["repeat_start"][i] == tok.roles_corrupt["repeat_start"][i] == 6
    data.metric(tiny_llama)


def test_model_filter_keeps_single_tokens_only(tiny_llama):
    # the tiny vocabulary holds " Bo", " Co", " Ei", " Pa", " Ro" but no " Mary"
    names = ["Mary", "Bo", "Co", "Ei", "Pa", "Ro", "Johnathan"]
    data = ioi(30, seed=0, model=tiny_llama, names=names)
    assert set(data.metadata["io"]) | set(data.metadata["s"]) | set(data.metadata["c"]) <= {"Bo", "Co", "Ei", "Pa", "Ro"}
    data.metric(tiny_llama)
    assert ioi(30, seed=0, names=["Bo", "Co", "Ei", "Pa", "Ro"]).clean == data.clean  # same pool, same draw
    caps = capitals(10, seed=0, model=tiny_llama, countries=[("A", "cat"), ("B", "dog"), ("C", "Paris")])
    assert set(caps.answer) == {" cat", " dog"}
    facts = factual_recall(10, seed=0, model=tiny_llama, facts=[("animal", "The pet", "cat"),
                                                                 ("animal", "The pup", "dog"),
                                                                 ("animal", "The mare", "horse")],
                           templates={"animal": ["{subject} is a"]})
    assert set(facts.answer) | set(facts.wrong) == {" cat", " dog"}
    senti = sentiment(6, seed=0, model=tiny_llama, templates=[("It was {ADJ}, so the", " cat", " dog"),
                                                              ("It was {ADJ}. I felt", " happy", " sad")])
    assert set(senti.metadata["template"]) == {0}
    senti.metric(tiny_llama)


def test_model_filter_errors_say_how_many_remain(tiny_llama):
    with pytest.raises(InputError, match=r"ioi: only 0 of the 120 names are usable whose answer tokens are single "
                                         r"tokens for tiny-llama-seed0; it needs at least 3.*leading space"):
        ioi(5, model=tiny_llama)
    with pytest.raises(InputError, match=r"capitals: only 0 of the \d+ countries are usable .*tiny-llama"):
        capitals(5, model=tiny_llama)
    with pytest.raises(InputError, match=r"factual_recall: only \d of the \d+ facts are usable"):
        factual_recall(5, model=tiny_llama)
    with pytest.raises(InputError, match=r"sentiment: only 0 of the 8 templates are usable"):
        sentiment(5, model=tiny_llama)
    with pytest.raises(InputError, match=r"ioi needs a mechscope Model as model="):
        ioi(5, model="gpt2")


def test_without_a_model_the_metric_names_the_example_that_is_not_one_token(tiny_llama):
    with pytest.raises(InputError, match=r"example 0.*not one"):
        ioi(3, seed=0).metric(tiny_llama)


def test_template_and_argument_errors(tiny_llama):
    with pytest.raises(InputError, match=r"ioi: template 'When \{A\} met \{B\}' must hold each of \['\{A\}', '\{B\}', "
                                         r"'\{S\}'\] once"):
        ioi(2, templates=["When {A} met {B}"])
    with pytest.raises(InputError, match=r"must end with its last word, not a space"):
        capitals(2, templates=["The capital of {country} is "])
    with pytest.raises(InputError, match=r"ioi: templates must be a non-empty list of str"):
        ioi(2, templates="When {A} and {B}, {S} gave it to")
    with pytest.raises(InputError, match=r"greater_than: template .* must end with \{CENTURY\}"):
        greater_than(2, templates=["From {YEAR} to {CENTURY} or so"])
    with pytest.raises(InputError, match=r"greater_than: digits must be None \(from the model\), True or False"):
        greater_than(2, digits="yes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"factual_recall: the fact \('sport', 'Chess', 'game'\) has relation "
                                         r"'sport' with no template"):
        factual_recall(2, facts=[("sport", "Chess", "game")])
    with pytest.raises(InputError, match=r"capitals: no two usable facts share a relation with different answers"):
        capitals(2, countries=[("A", "cat"), ("B", "cat")])
    with pytest.raises(InputError, match=r"sentiment: every template must be \(template, positive answer, "
                                         r"negative answer\) strings"):
        sentiment(2, templates=[("It was {ADJ}.", " good")])  # type: ignore[list-item]
    with pytest.raises(InputError, match=r"induction: length must be >= 3 and repeat in 1..length - 2"):
        induction(2, model=tiny_llama, length=4, repeat=3)
    with pytest.raises(InputError, match=r"induction: tiny-llama-seed0 has \d+ usable word tokens .* 150 distinct"):
        induction(2, model=tiny_llama, length=100)
    with pytest.raises(InputError, match=r"induction needs a mechscope Model as model="):
        induction(2, model=None)


def test_year_templates_and_nouns_are_consistent():
    assert all(t.endswith("{CENTURY}") for t in _years.TEMPLATES)
    assert len(set(_years.NOUNS)) == len(_years.NOUNS)
