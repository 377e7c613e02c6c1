"""Labelled text made by templates (no downloads): the data the tutorials and tests use.

>>> data = labelled_texts(n_per_class=3, seed=0)
>>> sorted(data)
['animals', 'cities', 'code', 'french', 'numbers']
>>> len(data["animals"])
3
>>> labelled_texts(n_per_class=3, seed=0) == data   # deterministic
True
"""

from __future__ import annotations

import random

from ..errors import InputError

_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "animals": (
        ["The {w} slept in the sun all afternoon.", "A young {w} ran across the field.",
         "We watched a {w} drink from the river.", "The zoo has a new {w} this spring.",
         "My neighbour's {w} is very friendly.", "In the forest a {w} was hiding."],
        ["cat", "dog", "horse", "rabbit", "fox", "bear", "lion", "tiger", "wolf", "deer",
         "elephant", "giraffe", "owl", "eagle", "dolphin", "whale", "mouse", "goat"],
    ),
    "cities": (
        ["She moved to {w} last year.", "The train to {w} leaves at noon.",
         "{w} is famous for its old buildings.", "We spent a week in {w} in May.",
         "The museum in {w} was crowded.", "Flights to {w} were cheap this month."],
        ["Paris", "London", "Rome", "Berlin", "Madrid", "Tokyo", "Cairo", "Sydney", "Toronto",
         "Chicago", "Vienna", "Lisbon", "Prague", "Dublin", "Oslo", "Athens", "Seoul", "Lima"],
    ),
    "numbers": (
        ["There were {w} people in the room.", "The answer is {w} plus {v}.",
         "She counted {w}, then {v}.", "Add {w} and {v} to get the total.",
         "The score was {w} to {v}.", "Page {w} follows page {v}."],
        [str(n) for n in (3, 7, 12, 19, 24, 31, 42, 56, 64, 77, 88, 93, 105, 250, 512, 1000)],
    ),
    "code": (
        ["def {w}(x):\n    return x + 1", "for i in range(len({v})):\n    {w}(i)",
         "import {w}\nprint({w}.__name__)", "if {w} is None:\n    raise ValueError()",
         "{w} = [x * 2 for x in data]", "class {W}:\n    def __init__(self): pass"],
        ["parse", "load", "total", "result", "items", "config", "model", "value", "counter",
         "buffer", "tokens", "output", "request", "cache", "index", "record"],
    ),
    "french": (
        ["Le {w} est sur la table.", "J'ai vu un {w} dans le jardin.",
         "Nous avons acheté un {w} hier.", "Le {w} de mon voisin est très grand.",
         "Il y a un {w} près de la fenêtre.", "Ce {w} coûte trop cher."],
        ["chat", "livre", "chien", "vélo", "gâteau", "fromage", "train", "jardin", "bateau",
         "stylo", "manteau", "piano", "tableau", "verre", "lit", "marché"],
    ),
}

#: The topic names `labelled_texts` knows, sorted: ``('animals', 'cities', 'code', 'french', 'numbers')``.
TOPICS = tuple(sorted(_TOPICS))


def labelled_texts(topics: tuple[str, ...] | list[str] = TOPICS, n_per_class: int = 20,
                   seed: int = 0) -> dict[str, list[str]]:
    """``n_per_class`` distinct template sentences per topic, reproducible from ``seed``.

    Topics: animals, cities, numbers, code (Python snippets) and french. Returns
    ``{topic: [n_per_class texts]}``, in the order of ``topics``; an unknown topic or more
    sentences than a topic's templates can make is an `InputError`.

    >>> data = labelled_texts(["cities", "code"], n_per_class=4, seed=1)
    >>> list(data), [len(texts) for texts in data.values()]
    (['cities', 'code'], [4, 4])
    >>> len(set(data["cities"])) == 4                    # distinct sentences
    True
    >>> labelled_texts(["planets"])
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: unknown topics ['planets']; choose from ('animals', 'cities', 'code', 'french', 'numbers').
    """
    unknown = [t for t in topics if t not in _TOPICS]
    if unknown:
        raise InputError(f"unknown topics {unknown}; choose from {TOPICS}.")
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise InputError(f"n_per_class must be a positive int, got {n_per_class!r}.")
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for topic in topics:
        templates, words = _TOPICS[topic]
        capacity = len(templates) * len(words)
        if n_per_class > capacity:
            raise InputError(f"topic {topic!r} has only {capacity} distinct sentences; ask for fewer.")
        pairs = [(t, w) for t in templates for w in words]
        rng.shuffle(pairs)
        texts = []
        for template, word in pairs[:n_per_class]:
            other = rng.choice(words)
            texts.append(template.format(w=word, v=other, W=word.capitalize()))
        out[topic] = texts
    return out
