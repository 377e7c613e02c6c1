"""Sentiment: a review-like sentence whose adjective sets the feeling that follows.

The templates and adjectives below were written for this project (no external source).

>>> data = sentiment(2, seed=0)
>>> data.clean[0], data.answer[0], data.corrupt[0], data.wrong[0]
('The party was dreadful, and the guests all looked', ' sad', 'The party was superb, and the guests all looked', ' happy')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InputError
from ..pairs import PromptPairs
from ._common import check_n, check_templates, fill, rng, roles_array, single_tokens

#: Positive and negative adjectives (written for this project).
POSITIVE = ("wonderful", "great", "amazing", "excellent", "fantastic", "brilliant", "delightful", "lovely",
            "superb", "beautiful", "perfect", "enjoyable", "charming", "pleasant", "marvelous", "fun")
NEGATIVE = ("terrible", "awful", "horrible", "boring", "dreadful", "disappointing", "poor", "dull",
            "miserable", "painful", "unpleasant", "annoying", "disgusting", "mediocre", "depressing", "tedious")

#: (template with ``{ADJ}``, positive answer, negative answer), written for this project.
TEMPLATES = (
    ("I watched the film and it was {ADJ}. Overall I felt", " happy", " sad"),
    ("The food at the restaurant was {ADJ}. I thought the meal was", " good", " bad"),
    ("The concert last night was {ADJ}. Everyone went home feeling", " happy", " sad"),
    ("My trip to the beach was {ADJ}. It made me feel", " happy", " sad"),
    ("I read the new book and found it {ADJ}. In short, the book was", " good", " bad"),
    ("The hotel room was {ADJ}. All in all, my stay was", " good", " bad"),
    ("The party was {ADJ}, and the guests all looked", " happy", " sad"),
    ("We played the new game and it was {ADJ}. I would call the game", " good", " bad"),
)


def sentiment(n: int = 100, seed: int = 0, *, model: Any = None,
              templates: Sequence[tuple[str, str, str]] | None = None) -> PromptPairs:
    """``n`` sentiment prompt pairs: the adjective decides the feeling.

    Clean: "I watched the film and it was wonderful. Overall I felt" -> ``answer`` " happy"
    (a negative adjective -> " sad"). Corrupt: the same sentence with an adjective of the
    opposite sentiment ("... it was terrible. ..."); ``wrong`` = the opposite answer, i.e. the
    corrupt's own answer. Clean sentiment is positive or negative with equal chance.

    - ``model``: use only templates whose two answers are single tokens for it (an
      `InputError` when none remains); without one, all are used.
    - ``templates``: (format string with ``{ADJ}``, positive answer, negative answer) triples,
      default `TEMPLATES`; adjectives come from `POSITIVE` and `NEGATIVE`.

    Roles: "adjective" (its last character) and "END". Metadata: ``sentiment`` ("positive" /
    "negative", of the clean), ``adjective``, ``corrupt_adjective``, ``template``.

    >>> data = sentiment(3, seed=2)
    >>> [(s, a) for s, a in zip(data.metadata["sentiment"], data.answer)]
    [('positive', ' happy'), ('negative', ' sad'), ('negative', ' sad')]
    """
    verb = "sentiment"
    n = check_n(n, verb)
    random = rng(seed, verb)
    triples = [tuple(t) for t in (TEMPLATES if templates is None else templates)]
    for entry in triples:
        if len(entry) != 3 or not all(isinstance(x, str) and x for x in entry):
            raise InputError(f"{verb}: every template must be (template, positive answer, negative answer) "
                             f"strings, got {entry!r}.")
    check_templates([t[0] for t in triples], ("ADJ",), (), verb)
    pool = single_tokens(model, triples, lambda t: (t[1], t[2]), verb, "templates", 1)
    rows: dict[str, list[Any]] = {k: [] for k in ("clean", "corrupt", "answer", "wrong", "sentiment", "adjective",
                                                  "corrupt_adjective", "template", "r", "rc")}
    for _ in range(n):
        t = int(random.integers(len(pool)))
        template, pos_answer, neg_answer = pool[t]
        positive = bool(random.integers(2) == 0)
        pos, neg = POSITIVE[int(random.integers(len(POSITIVE)))], NEGATIVE[int(random.integers(len(NEGATIVE)))]
        adj, other = (pos, neg) if positive else (neg, pos)
        clean, ends = fill(template, {"ADJ": adj})
        corrupt, ends_c = fill(template, {"ADJ": other})
        answer, wrong = (pos_answer, neg_answer) if positive else (neg_answer, pos_answer)
        for key, value in (("clean", clean), ("corrupt", corrupt), ("answer", answer), ("wrong", wrong),
                           ("sentiment", "positive" if positive else "negative"), ("adjective", adj),
                           ("corrupt_adjective", other), ("template", triples.index(pool[t])),
                           ("r", ends["ADJ"]), ("rc", ends_c["ADJ"])):
            rows[key].append(value)
    meta = {k: tuple(rows[k]) for k in ("sentiment", "adjective", "corrupt_adjective", "template")}
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]), tuple(rows["wrong"]),
                       {"adjective": roles_array(rows["r"], rows["rc"])}, meta, "sentiment")
