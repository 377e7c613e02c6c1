"""What every generator shares: argument checks, template filling with role positions, and
the single-token filter for a model.

>>> text, ends = fill("When {A} met {B},", {"A": "Mary", "B": "John"})
>>> text, ends["A"], text[ends["B"]]
('When Mary met John,', 8, 'n')
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import InputError
from ...validate import as_int


def check_n(n: Any, verb: str) -> int:
    """``n`` as an int >= 1 (how many examples ``verb`` makes)."""
    value = as_int(n, f"{verb}: n (the number of examples)")
    if value < 1:
        raise InputError(f"{verb}: n must be at least 1 (the number of examples), got {value}.")
    return value


def rng(seed: Any, verb: str) -> np.random.Generator:
    """The generator's random source: numpy's PCG64 from an int ``seed`` >= 0."""
    value = as_int(seed, f"{verb}: seed")
    if value < 0:
        raise InputError(f"{verb}: seed must be an int >= 0, got {value}.")
    return np.random.default_rng(value)


def template_fields(template: str) -> list[str]:
    """The ``{FIELD}`` names of ``template``, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def check_templates(templates: Any, required: Iterable[str], allowed: Iterable[str], verb: str) -> tuple[str, ...]:
    """``templates`` as a tuple of str, each holding every ``required`` field once and only
    ``allowed`` fields, and not ending in a space (the answer token carries its own)."""
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise InputError(f"{verb}: templates must be a non-empty list of str, got {templates!r}.")
    req, ok = list(required), set(allowed) | set(required)
    for t in templates:
        if not isinstance(t, str):
            raise InputError(f"{verb}: every template must be a str, got {t!r}.")
        try:
            fields = template_fields(t)
        except ValueError as err:
            raise InputError(f"{verb}: template {t!r} is not a format string ({err}).") from None
        bad = [f for f in fields if f not in ok]
        missing = [f for f in req if fields.count(f) != 1]
        if bad or missing:
            raise InputError(f"{verb}: template {t!r} must hold each of {['{' + f + '}' for f in req]} once "
                             f"and no field but {sorted('{' + f + '}' for f in ok)}.")
        if not t.strip() or t != t.rstrip():
            raise InputError(f"{verb}: template {t!r} must end with its last word, not a space "
                             "(the answer token carries its leading space).")
    return tuple(templates)


def fill(template: str, values: Mapping[str, str]) -> tuple[str, dict[str, int]]:
    """``template`` with its fields filled, and the character index of each field's last
    character in the text (the last occurrence when a field appears twice)."""
    out: list[str] = []
    ends: dict[str, int] = {}
    size = 0
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        size += len(literal)
        if name is not None:
            value = values[name]
            out.append(value)
            size += len(value)
            ends[name] = size - 1
    return "".join(out), ends


def is_single_token(model: Any, token: str) -> bool:
    """Whether ``token`` is exactly one token for ``model``."""
    try:
        model.to_single_token(token)
    except InputError:
        return False
    return True


def single_tokens(model: Any, items: Sequence[Any], tokens: Any, verb: str, what: str, need: int) -> list[Any]:
    """The ``items`` (in order) whose ``tokens(item)`` (a str or a tuple of str) are all single
    tokens for ``model`` (all of them when ``model`` is None); an `InputError` when fewer than
    ``need`` remain."""
    if model is None:
        kept = list(items)
    else:
        from ...validate import check_model

        check_model(model, verb, "model=")
        kept = []
        for item in items:
            toks = tokens(item)
            if all(is_single_token(model, t) for t in ((toks,) if isinstance(toks, str) else toks)):
                kept.append(item)
    if len(kept) < need:
        for_model = f" whose answer tokens are single tokens for {model.name}" if model is not None else ""
        raise InputError(f"{verb}: only {len(kept)} of the {len(items)} {what} are usable{for_model}; it needs "
                         f"at least {need}. Give a longer list, or a model whose vocabulary holds them "
                         "(mind the leading space: ' Mary').")
    return kept


def roles_array(clean: Sequence[int], corrupt: Sequence[int]) -> np.ndarray:
    """A role's (n, 2) array of (clean, corrupt) character indices."""
    return np.stack([np.asarray(clean, dtype=np.int64), np.asarray(corrupt, dtype=np.int64)], axis=1)
