"""Induction: a random token sequence, then its start again; the model should continue the
repeat by copying what came next the first time (Olsson et al. 2022).

Tokens are drawn from the model's own vocabulary: words written as a space and ASCII letters
(" cat") that decode and re-encode to themselves, so the texts round-trip to exactly the
drawn ids.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> data = induction(2, seed=0, model=model, length=6)
>>> data.clean[0], data.answer[0], data.wrong[0]
(' Ei The inter b f of Ei The inter', ' b', ' of')
>>> data.corrupt[0]
' Ei The inter b f of o c i'
"""

from __future__ import annotations

from typing import Any

from ...errors import InputError
from ...validate import as_int, check_model
from ..pairs import PromptPairs
from ._common import check_n, rng, roles_array

_POOLS: dict[int, tuple[Any, int, list[int]]] = {}  # id(tokenizer) -> (tokenizer, vocab size, ids)


def token_pool(model: Any) -> list[int]:
    """The ids of ``model``'s " word" tokens (a space, then ASCII letters) that re-encode to
    themselves alone, in id order (cached per tokenizer)."""
    tok = model.tokenizer
    hit = _POOLS.get(id(tok))
    if hit is not None and hit[0] is tok and hit[1] == model.vocab_size:
        return hit[2]
    texts = tok.batch_decode([[i] for i in range(model.vocab_size)])
    cand = [i for i, s in enumerate(texts) if len(s) >= 2 and s[0] == " " and s[1:].isascii() and s[1:].isalpha()]
    encoded = tok([texts[i] for i in cand], add_special_tokens=False)["input_ids"] if cand else []
    pool = [i for i, e in zip(cand, encoded, strict=True) if list(e) == [i]]
    if len(_POOLS) >= 4:
        _POOLS.pop(next(iter(_POOLS)))
    _POOLS[id(tok)] = (tok, model.vocab_size, pool)
    return pool


def _text(model: Any, ids: list[int]) -> tuple[str, list[int]]:
    """The text of ``ids`` and each token's last character index; an `InputError` if it does
    not re-encode to ``ids``."""
    pieces = [model.tokenizer.decode([i]) for i in ids]
    text = "".join(pieces)
    if list(model.tokenizer(text, add_special_tokens=False)["input_ids"]) != ids:
        raise InputError(f"induction: {text!r} does not re-encode to its {len(ids)} tokens for {model.name}.")
    ends, size = [], 0
    for p in pieces:
        size += len(p)
        ends.append(size - 1)
    return text, ends


def induction(n: int = 100, seed: int = 0, *, model: Any, length: int = 10, repeat: int | None = None) -> PromptPairs:
    """``n`` induction prompt pairs of repeated random tokens, drawn from ``model``'s vocabulary.

    Clean: ``length`` random distinct tokens A1..AL, then the first ``repeat`` of them again
    (default ``length // 2``): "A1 .. AL A1 .. Ak" -> ``answer`` A(k+1), what followed Ak the
    first time. Corrupt: the same first half, then k fresh tokens B1..Bk, so nothing repeats.
    ``wrong``: a random later token of the first half, A(k+2)..AL, which like the answer occurs
    once in both texts (so the metric is ~0 without induction).

    Needs ``model`` (the tokens are its own; see `token_pool`). Every text re-encodes to the
    drawn ids, so clean and corrupt have ``length + repeat`` tokens (plus any the tokenizer
    adds in front).

    Roles: "current_first" (the first occurrence of Ak, the last token), "answer_first" (the
    answer's first occurrence, where an induction head looks), "repeat_start" (A1's second
    occurrence, B1 in the corrupt) and "END". Metadata: ``answer_id``, ``wrong_id``,
    ``length``, ``repeat``.

    >>> import mechscope
    >>> data = induction(3, seed=1, model=mechscope.tiny_model("llama"), length=5, repeat=2)
    >>> data.role_names, len(data)
    (('current_first', 'answer_first', 'repeat_start', 'END'), 3)
    """
    verb = "induction"
    check_model(model, verb, "model=")
    n = check_n(n, verb)
    random = rng(seed, verb)
    length = as_int(length, f"{verb}: length")
    k = length // 2 if repeat is None else as_int(repeat, f"{verb}: repeat")
    if length < 3 or not 1 <= k <= length - 2:
        raise InputError(f"{verb}: length must be >= 3 and repeat in 1..length - 2 (a later token of the first "
                         f"half is the wrong answer), got length={length}, repeat={k}.")
    pool = token_pool(model)
    if len(pool) < length + k:
        raise InputError(f"{verb}: {model.name} has {len(pool)} usable word tokens (a space and ASCII letters, "
                         f"round-tripping alone); {length + k} distinct ones are needed (length + repeat).")
    rows: dict[str, list[Any]] = {key: [] for key in ("clean", "corrupt", "answer", "wrong", "answer_id",
                                                      "wrong_id", "cur", "ans", "rep", "rep_c")}
    for _ in range(n):
        drawn = [pool[int(i)] for i in random.choice(len(pool), size=length + k, replace=False)]
        first, fresh = drawn[:length], drawn[length:]
        wrong_id = first[int(random.integers(k + 1, length))]
        clean, ends = _text(model, first + first[:k])
        corrupt, ends_c = _text(model, first + fresh)
        for key, value in (("clean", clean), ("corrupt", corrupt), ("answer", model.tokenizer.decode([first[k]])),
                           ("wrong", model.tokenizer.decode([wrong_id])), ("answer_id", first[k]),
                           ("wrong_id", wrong_id), ("cur", ends[k - 1]), ("ans", ends[k]), ("rep", ends[length]),
                           ("rep_c", ends_c[length])):
            rows[key].append(value)
    roles = {"current_first": roles_array(rows["cur"], rows["cur"]),
             "answer_first": roles_array(rows["ans"], rows["ans"]),
             "repeat_start": roles_array(rows["rep"], rows["rep_c"])}
    meta = {"answer_id": tuple(rows["answer_id"]), "wrong_id": tuple(rows["wrong_id"]),
            "length": (length,) * n, "repeat": (k,) * n}
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]), tuple(rows["wrong"]),
                       roles, meta, "induction")
