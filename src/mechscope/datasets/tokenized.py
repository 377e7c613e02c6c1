"""A dataset tokenized for one model: ids per example and the token index of every role.

A role is given as the character index of its last character in each text; its token is the
one whose character span holds that character (from the fast tokenizer's offsets). "END" is
the last token.

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> model = mechscope.tiny_model("llama")
>>> data = pairs([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": " the",
...                "wrong": " of", "roles": {"animal": [6, 6]}}])
>>> tok = tokenize_pairs(data, model)
>>> model.decode_tokens(tok.clean_ids[0])[tok.roles_clean["animal"][0]], tok.role_names
(' cat', ('animal', 'END'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .pairs import END

if TYPE_CHECKING:
    from .pairs import PromptPairs


@dataclass(frozen=True)
class TokenizedPairs:
    """``clean_ids[i]`` / ``corrupt_ids[i]``: token ids of example i; ``roles_clean[name]`` /
    ``roles_corrupt[name]``: (n,) token index of each role (END included)."""

    clean_ids: list[list[int]]
    corrupt_ids: list[list[int]]
    roles_clean: dict[str, np.ndarray]
    roles_corrupt: dict[str, np.ndarray]
    role_names: tuple[str, ...]
    name: str

    def check_roles(self, names: Sequence[str]) -> list[str]:
        """``names`` if every one is a role of this dataset (no duplicates), else an `InputError`."""
        names = list(names)
        unknown = [r for r in names if r not in self.role_names]
        if unknown or not names:
            raise InputError(f"positions= {names} are not roles of {self.name!r}; its roles are "
                             f"{list(self.role_names)}.")
        if len(set(names)) != len(names):
            raise InputError(f"positions= {names} names a role twice.")
        return names


def _ids(model: Any, text: str, what: str) -> list[int]:
    try:
        return [int(i) for i in model.to_tokens(text)[0].tolist()]
    except InputError as err:
        raise InputError(f"{what}: {err}") from None


def _token_at(model: Any, text: str, char: int, n_tokens: int, what: str) -> int:
    """Index of the token of ``text`` holding character ``char``."""
    if not 0 <= char < len(text):
        raise InputError(f"{what}: character {char} is outside the text ({len(text)} characters).")
    enc = model.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) != n_tokens:
        raise InputError(f"{what}: the tokenizer's offsets do not match its tokens.")
    hits = [t for t, (start, end) in enumerate(offsets) if start <= char < end]
    if not hits:
        raise InputError(f"{what}: no token holds character {char} ({text[char]!r}).")
    return hits[-1]


def tokenize_pairs(data: PromptPairs, model: Any) -> TokenizedPairs:
    """Token ids of every clean and corrupt text and the token index of every role, checked:
    an unusable text or role names its example."""
    clean = [_ids(model, t, f"example {i} (clean)") for i, t in enumerate(data.clean)]
    corrupt = [_ids(model, t, f"example {i} (corrupt)") for i, t in enumerate(data.corrupt)]
    roles_c: dict[str, np.ndarray] = {}
    roles_k: dict[str, np.ndarray] = {}
    for role, chars in data.roles.items():
        chars = np.asarray(chars)
        roles_c[role] = np.array([_token_at(model, data.clean[i], int(chars[i, 0]), len(clean[i]),
                                            f"example {i} (clean), role {role!r}") for i in range(len(data))])
        roles_k[role] = np.array([_token_at(model, data.corrupt[i], int(chars[i, 1]), len(corrupt[i]),
                                            f"example {i} (corrupt), role {role!r}") for i in range(len(data))])
    roles_c[END] = np.array([len(ids) - 1 for ids in clean])
    roles_k[END] = np.array([len(ids) - 1 for ids in corrupt])
    return TokenizedPairs(clean, corrupt, roles_c, roles_k, data.role_names, data.name)
