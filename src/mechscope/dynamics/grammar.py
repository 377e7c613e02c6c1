"""A probabilistic grammar with long-range subject-verb agreement, its parses and minimal pairs.

`AgreementGrammar` writes English-like sentences over a small vocabulary: a subject noun
phrase (singular or plural), optionally modified by relative clauses that carry their own nouns
and verbs (attractors of either number), then a main verb that agrees in number with the head
subject, an optional object and a full stop::

    the dog that the cats chase runs .          (object relative: "chase" agrees with "cats")
    the dogs that chase the cat see the bird .  (subject relative: "chase" agrees with "dogs")

Every sentence comes with its dependency parse (`Sentence.heads`: the index of each token's parent, -1 for
the root, which is the main verb; `Sentence.labels`: the arc type) and a minimal pair flips the
main verb's number (`MinimalPair`): the grammatical and ungrammatical sentences differ in
exactly that one token.

Arcs (parent <- dependent): noun <- ``det``; main verb <- ``nsubj`` (subject noun), ``obj``
(object noun), ``punct``; relative-clause verb <- ``mark`` ("that"), ``nsubj``/``obj`` (its own
noun); modified noun <- ``relcl`` (the relative-clause verb).

>>> g = AgreementGrammar()
>>> s = g.sentences(1, seed=3)[0]
>>> len(s.words) == len(s.heads) == len(s.labels), s.heads.count(-1), s.words[-1]
(True, 1, '.')
>>> pair = g.minimal_pairs(1, seed=3)[0]
>>> sum(a != b for a, b in zip(pair.good, pair.bad))
1
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError

PAD, MASK = "[PAD]", "[MASK]"
NOUNS = ("dog", "cat", "bird", "fox", "horse", "wolf", "bear", "duck", "goat", "lion",
         "mouse", "frog", "owl", "pig", "cow", "hen")
TRANSITIVE = ("chase", "see", "like", "help", "follow", "hear", "watch", "find")
INTRANSITIVE = ("run", "sleep", "swim", "sing", "jump", "wait", "fall", "hide")


def plural(noun: str) -> str:
    """The plural of one of the grammar's nouns: ``plural("fox") == "foxes"``.

    >>> plural("dog"), plural("fox"), plural("mouse")
    ('dogs', 'foxes', 'mice')
    """
    return {"mouse": "mice", "fox": "foxes"}.get(noun, noun + "s")


def third_singular(verb: str) -> str:
    """The third person singular of one of the grammar's verbs: ``third_singular("chase")``.

    >>> third_singular("chase"), third_singular("watch"), third_singular("run")
    ('chases', 'watches', 'runs')
    """
    return verb + ("es" if verb.endswith(("ch", "sh", "s")) else "s")


@dataclass(frozen=True)
class Sentence:
    """One sentence and its dependency parse.

    ``words``: (tokens,) strings; ``heads``: (tokens,) the parent's index (-1 for the root,
    the main verb); ``labels``: (tokens,) arc types ("root" for the root); ``main_verb``:
    index of the main verb; ``plural``: the head subject's (and so the main verb's) number.

    >>> s = Sentence(("the", "dog", "runs", "."), (1, 2, -1, 2), ("det", "nsubj", "root", "punct"),
    ...              main_verb=2, plural=False)
    >>> s.text, s.arcs()
    ('the dog runs .', [(0, 1, 'det'), (1, 2, 'nsubj'), (3, 2, 'punct')])
    """

    words: tuple[str, ...]
    heads: tuple[int, ...]
    labels: tuple[str, ...]
    main_verb: int
    plural: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def arcs(self) -> list[tuple[int, int, str]]:
        """(dependent, parent, label) for every token but the root."""
        return [(d, h, lab) for d, (h, lab) in enumerate(zip(self.heads, self.labels, strict=True))
                if h >= 0]


@dataclass(frozen=True)
class MinimalPair:
    """A sentence and its main verb flipped in number.

    ``good``/``bad``: (tokens,) words, equal but at ``position`` (the main verb), where they
    hold ``correct`` and ``wrong``; ``sentence``: the grammatical `Sentence` with its parse.

    >>> g = AgreementGrammar()
    >>> p = g.minimal_pairs(1, seed=0)[0]
    >>> p.good[p.position] == p.correct, p.bad[p.position] == p.wrong, p.correct != p.wrong
    (True, True, True)
    """

    sentence: Sentence
    position: int
    correct: str
    wrong: str

    @property
    def good(self) -> tuple[str, ...]:
        return self.sentence.words

    @property
    def bad(self) -> tuple[str, ...]:
        w = list(self.sentence.words)
        w[self.position] = self.wrong
        return tuple(w)


def _flip(verb: str, was_plural: bool) -> str:
    """The other number of an inflected verb."""
    for base in TRANSITIVE + INTRANSITIVE:
        if verb == (base if was_plural else third_singular(base)):
            return third_singular(base) if was_plural else base
    raise InputError(f"{verb!r} is not one of the grammar's verbs.")


@dataclass(frozen=True)
class AgreementGrammar:
    """A PCFG of sentences with subject-verb agreement across relative clauses.

    - ``n_nouns`` (1..16), ``n_verbs`` (1..8 transitive and as many intransitive): vocabulary;
    - ``p_relative``: chance that a noun phrase carries a relative clause, while its depth is
      below ``max_depth`` (the subject's; objects take at most one level);
    - ``p_object_relative``: chance a relative clause is "that the N V" (the verb agrees with
      the clause's own noun) rather than "that V the N" (it agrees with the modified noun);
    - ``p_transitive``: chance the main verb takes an object.

    >>> g = AgreementGrammar(n_nouns=4, n_verbs=2)
    >>> len(g.vocab), g.vocab[:2]
    (21, ['[PAD]', '[MASK]'])
    >>> AgreementGrammar(p_relative=1.5)
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: p_relative must be a probability in [0, 1], got 1.5.
    """

    n_nouns: int = 8
    n_verbs: int = 4
    p_relative: float = 0.6
    max_depth: int = 2
    p_object_relative: float = 0.5
    p_transitive: float = 0.5

    def __post_init__(self) -> None:
        for name, top in (("n_nouns", len(NOUNS)), ("n_verbs", len(TRANSITIVE)), ("max_depth", 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise InputError(f"{name} must be an int in 1..{top}, got {value!r}.")
        for name in ("p_relative", "p_object_relative", "p_transitive"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InputError(f"{name} must be a probability in [0, 1], got {value!r}.")

    @property
    def vocab(self) -> list[str]:
        """``[PAD]``, ``[MASK]``, then every word (ids in this order)."""
        nouns = NOUNS[: self.n_nouns]
        verbs = TRANSITIVE[: self.n_verbs] + INTRANSITIVE[: self.n_verbs]
        words = ["the", "that", "."] + [w for n in nouns for w in (n, plural(n))]
        words += [w for v in verbs for w in (v, third_singular(v))]
        return [PAD, MASK] + words

    def _word(self, rng: np.random.Generator, pool: tuple[str, ...], n: int) -> str:
        return pool[int(rng.integers(n))]

    def _verb(self, rng: np.random.Generator, transitive: bool, is_plural: bool) -> str:
        base = self._word(rng, TRANSITIVE if transitive else INTRANSITIVE, self.n_verbs)
        return base if is_plural else third_singular(base)

    def _np(self, rng: np.random.Generator, out: list[list[Any]], depth: int,
            max_depth: int) -> tuple[int, bool]:
        """Append "the N [RC]" to ``out`` ([word, head, label] rows); (noun index, plural)."""
        is_plural = bool(rng.random() < 0.5)
        out.append(["the", len(out) + 1, "det"])
        noun = len(out)
        base = self._word(rng, NOUNS, self.n_nouns)
        out.append([plural(base) if is_plural else base, None, None])
        if depth < max_depth and rng.random() < self.p_relative:
            self._relative(rng, out, noun, is_plural, depth + 1, max_depth)
        return noun, is_plural

    def _relative(self, rng: np.random.Generator, out: list[list[Any]], noun: int,
                  noun_plural: bool, depth: int, max_depth: int) -> None:
        that = len(out)
        out.append(["that", None, "mark"])
        if rng.random() < self.p_object_relative:  # that the N V: V agrees with its own N
            subj, subj_plural = self._np(rng, out, depth, max_depth)
            verb = len(out)
            out.append([self._verb(rng, True, subj_plural), noun, "relcl"])
            out[subj][1:] = [verb, "nsubj"]
        else:  # that V the N: V agrees with the modified noun
            verb = len(out)
            out.append([self._verb(rng, True, noun_plural), noun, "relcl"])
            obj, _ = self._np(rng, out, depth, max_depth)
            out[obj][1:] = [verb, "obj"]
        out[that][1] = verb

    def sentence(self, rng: np.random.Generator) -> Sentence:
        """One sentence drawn with ``rng`` (a numpy Generator)."""
        out: list[list[Any]] = []
        subj, is_plural = self._np(rng, out, 0, self.max_depth)
        transitive = bool(rng.random() < self.p_transitive)
        verb = len(out)
        out.append([self._verb(rng, transitive, is_plural), -1, "root"])
        out[subj][1:] = [verb, "nsubj"]
        if transitive:
            obj, _ = self._np(rng, out, 0, min(1, self.max_depth))
            out[obj][1:] = [verb, "obj"]
        out.append([".", verb, "punct"])
        words, heads, labels = zip(*out, strict=True)
        return Sentence(tuple(words), tuple(int(h) for h in heads), tuple(labels), verb, is_plural)

    def sentences(self, n: int, seed: int = 0) -> list[Sentence]:
        """``n`` sentences drawn with ``numpy.random.default_rng(seed)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be an int >= 1, got {n!r}.")
        rng = np.random.default_rng(seed)
        return [self.sentence(rng) for _ in range(n)]

    def minimal_pairs(self, n: int, seed: int = 0, min_attractors: int = 0) -> list[MinimalPair]:
        """``n`` sentences with their main verb flipped in number.

        ``min_attractors``: keep only sentences with at least this many nouns of the other
        number between the subject and the main verb (1: agreement across an attractor).
        """
        rng = np.random.default_rng(seed)
        pairs: list[MinimalPair] = []
        for _ in range(1000 * n):
            s = self.sentence(rng)
            if attractors(s) >= min_attractors:
                verb = s.words[s.main_verb]
                pairs.append(MinimalPair(s, s.main_verb, verb, _flip(verb, s.plural)))
                if len(pairs) == n:
                    return pairs
        raise InputError(f"could not draw {n} sentences with {min_attractors} attractors; lower "
                         "min_attractors or raise p_relative.")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "agreement", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgreementGrammar:
        return cls(**{k: v for k, v in data.items() if k != "name"})


def attractors(sentence: Sentence) -> int:
    """Nouns of the other number than the head subject between it and the main verb.

    >>> s = AgreementGrammar().sentences(1, seed=0)[0]
    >>> attractors(s) >= 0
    True
    """
    subj = next(d for d, h, lab in sentence.arcs() if h == sentence.main_verb and lab == "nsubj")
    other = {plural(n) for n in NOUNS} if not sentence.plural else set(NOUNS)
    return sum(w in other for w in sentence.words[subj + 1: sentence.main_verb])
