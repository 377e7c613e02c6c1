"""Datasets of prompts and prompt pairs: what every verb takes when one prompt is an anecdote.

`PromptPairs` holds ``n`` examples of a clean and a corrupt text, each with its own
``answer`` and ``wrong`` token (the default metric is ``logit_diff(answer, wrong)`` per
example), optional metadata columns, and optional *roles*: named positions ("S1", "IO",
"S2" in IOI; "subject") given as the character index of the role's last character in the
clean and the corrupt text, so that examples whose token lengths differ line up by role.
"END" (the last token) is always a role. `Prompts` is the plain set of texts for analyses.

Build one with `pairs` (a DataFrame, a list of dicts, a JSONL or CSV file with the columns
``clean``, ``corrupt``, ``answer``, ``wrong``) or `prompts`, or take one from the generators
(`mechscope.datasets.ioi`, ...).

>>> import mechscope
>>> from mechscope.datasets import pairs
>>> data = pairs([{"clean": "The cat sat on the", "corrupt": "The dog sat on the",
...                "answer": " mat", "wrong": " rug", "kind": "animal"}] * 3)
>>> len(data), data.answer[0], list(data.metadata)
(3, ' mat', ['kind'])
>>> train, test = data.split(test_fraction=1 / 3, seed=0)
>>> len(train), len(test)
(2, 1)
>>> data.to_pandas().columns.tolist()
['clean', 'corrupt', 'answer', 'wrong', 'kind']
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: The columns every prompt-pair source must have.
COLUMNS = ("clean", "corrupt", "answer", "wrong")
#: The role every example has: its last token.
END = "END"


@dataclass(frozen=True)
class Prompts:
    """``n`` texts (``texts[i]``) with optional roles (``roles[name][i]`` = the character index of
    that role's last character in text i) and metadata columns (``metadata[col][i]``).

    >>> import numpy as np
    >>> data = Prompts(("The cat sat", "A dog ran"), roles={"subject": np.array([6, 4])},
    ...                metadata={"animal": ("cat", "dog")})
    >>> data, data.role_names, data.to_pandas().shape
    (Prompts('prompts', 2 texts, roles ['subject', 'END']), ('subject', 'END'), (2, 2))
    >>> Prompts(())
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: the dataset 'prompts' is empty: give at least one text.
    """

    texts: tuple[str, ...]
    roles: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    name: str = "prompts"

    def __post_init__(self) -> None:
        if not self.texts:
            raise InputError(f"the dataset {self.name!r} is empty: give at least one text.")
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text:
                raise InputError(f"example {i} of {self.name!r} is not a non-empty str: {text!r}.")
        _check_columns(self.name, len(self.texts), self.roles, self.metadata)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def role_names(self) -> tuple[str, ...]:
        """The named positions every example has ("END" last)."""
        return (*self.roles, END)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per example: ``text``, then the metadata columns."""
        import pandas as pd

        return pd.DataFrame({"text": list(self.texts), **{k: list(v) for k, v in self.metadata.items()}})

    def __repr__(self) -> str:
        roles = f", roles {list(self.role_names)}" if self.roles else ""
        return f"Prompts({self.name!r}, {len(self)} texts{roles})"


@dataclass(frozen=True)
class PromptPairs:
    """``n`` examples: ``clean[i]``, ``corrupt[i]``, ``answer[i]``, ``wrong[i]`` (single tokens for
    the model, checked when bound), ``roles[name]`` of shape (n, 2) = the character index of the
    role's last character in (clean, corrupt), and ``metadata[col][i]``.

    >>> import mechscope
    >>> data = PromptPairs(("The cat sat on the",), ("The dog sat on the",), (" the",), (" of",))
    >>> data, data.texts, data.prompts("corrupt").texts
    (PromptPairs('pairs', 1 examples), ('The cat sat on the',), ('The dog sat on the',))
    >>> import torch
    >>> model = mechscope.tiny_model("llama")
    >>> logits = torch.randn(1, model.vocab_size)                      # (rows, vocab)
    >>> the, of = model.to_single_token(" the"), model.to_single_token(" of")
    >>> bool(torch.equal(data.metric(model)(logits), logits[:, the] - logits[:, of]))
    True
    """

    clean: tuple[str, ...]
    corrupt: tuple[str, ...]
    answer: tuple[str, ...]
    wrong: tuple[str, ...]
    roles: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    name: str = "pairs"

    def __post_init__(self) -> None:
        n = len(self.clean)
        if n == 0:
            raise InputError(f"the dataset {self.name!r} is empty: give at least one example.")
        for col in COLUMNS:
            values = getattr(self, col)
            if len(values) != n:
                raise InputError(f"{self.name!r}: column {col!r} has {len(values)} values, clean has {n}.")
            for i, v in enumerate(values):
                if not isinstance(v, str) or not v:
                    raise InputError(f"example {i} of {self.name!r}: {col} must be a non-empty str, got {v!r}.")
        for name, spans in self.roles.items():
            if np.asarray(spans).shape != (n, 2):
                raise InputError(f"role {name!r} of {self.name!r} must hold (clean, corrupt) character "
                                 f"indices for each of the {n} examples, shape ({n}, 2).")
        _check_columns(self.name, n, {}, self.metadata)

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def role_names(self) -> tuple[str, ...]:
        """The named positions every example has ("END" last)."""
        return (*self.roles, END)

    @property
    def texts(self) -> tuple[str, ...]:
        """The clean texts (what an analysis of "the prompts" reads)."""
        return self.clean

    def tokenize(self, model: Any) -> Any:
        """The examples tokenized for ``model`` (`mechscope.datasets.tokenized.TokenizedPairs`):
        ids per example and each role's token index; every text and role checked."""
        from .tokenized import tokenize_pairs

        return tokenize_pairs(self, model)

    def metric(self, model: Any) -> Any:
        """The default metric, ``logit_diff(answer[i], wrong[i])`` on example i's rows, bound
        to ``model`` (an answer that is not one token is an `InputError` naming its example)."""
        from ..interventions.metrics import answer_logit_diff

        return answer_logit_diff(self.answer, self.wrong).bind(model)

    def prompts(self, which: str = "clean") -> Prompts:
        """The clean (or corrupt) texts as `Prompts`, roles and metadata kept."""
        if which not in ("clean", "corrupt"):
            raise InputError(f"which must be 'clean' or 'corrupt', got {which!r}.")
        col = 0 if which == "clean" else 1
        return Prompts(getattr(self, which), {k: np.asarray(v)[:, col] for k, v in self.roles.items()},
                       self.metadata, f"{self.name} ({which})")

    def subset(self, index: Sequence[int]) -> PromptPairs:
        """The examples ``index`` (in that order), as a new `PromptPairs`."""
        idx = [int(i) for i in index]
        pick = lambda values: tuple(values[i] for i in idx)  # noqa: E731
        return PromptPairs(pick(self.clean), pick(self.corrupt), pick(self.answer), pick(self.wrong),
                           {k: np.asarray(v)[idx] for k, v in self.roles.items()},
                           {k: pick(v) for k, v in self.metadata.items()}, self.name)

    def split(self, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[PromptPairs, PromptPairs]:
        """(train, test): a random split from ``seed``; each part keeps its examples' order."""
        n = len(self)
        if not 0 < test_fraction < 1:
            raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction!r}.")
        n_test = min(n - 1, max(1, round(n * test_fraction)))
        if n < 2:
            raise InputError(f"{self.name!r} has {n} example: a split needs at least two.")
        test = np.sort(np.random.default_rng(seed).permutation(n)[:n_test])
        train = np.setdiff1d(np.arange(n), test)
        return self.subset(train.tolist()), self.subset(test.tolist())

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per example: clean, corrupt, answer, wrong, then the metadata columns."""
        import pandas as pd

        columns = {c: list(getattr(self, c)) for c in COLUMNS}
        return pd.DataFrame({**columns, **{k: list(v) for k, v in self.metadata.items()}})

    def __repr__(self) -> str:
        roles = f", roles {list(self.role_names)}" if self.roles else ""
        return f"PromptPairs({self.name!r}, {len(self)} examples{roles})"


def _check_columns(name: str, n: int, roles: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    for role, values in roles.items():
        if len(values) != n:
            raise InputError(f"role {role!r} of {name!r} has {len(values)} values for {n} examples.")
    for col, values in metadata.items():
        if len(values) != n:
            raise InputError(f"metadata column {col!r} of {name!r} has {len(values)} values for {n} examples.")


# ---- building datasets from tables and files ---------------------------------------------------
def _records(source: Any) -> tuple[list[dict[str, Any]], str]:
    """Rows of ``source`` (DataFrame, list of dicts, JSONL or CSV path) and a name for it."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no file at {str(path)!r}: give a .jsonl or .csv file, a DataFrame or a list of dicts.")
        if path.suffix.lower() == ".jsonl":
            rows = []
            for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise InputError(f"{path}: line {k} is not JSON ({err.msg}).") from None
            return rows, path.stem
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f)), path.stem
        raise InputError(f"{path}: only .jsonl and .csv files are read; got {path.suffix!r}.")
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        return source.to_dict(orient="records"), "dataframe"
    if isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(r, Mapping) for r in source):
        return [dict(r) for r in source], "pairs"
    raise InputError(f"pairs() takes a DataFrame, a list of dicts or a .jsonl/.csv path, got {type(source).__name__}.")


def pairs(source: Any, *, name: str | None = None) -> PromptPairs:
    """A `PromptPairs` from a DataFrame, a list of dicts, or a JSONL / CSV file.

    Columns ``clean``, ``corrupt``, ``answer``, ``wrong`` are required; a JSONL record may carry
    ``roles`` ({role: [clean_char, corrupt_char]}); every other column becomes metadata.

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "capitals.jsonl"
    >>> _ = path.write_text(json.dumps({"clean": "Paris is in", "corrupt": "Rome is in",
    ...     "answer": " France", "wrong": " Italy", "roles": {"city": [4, 3]}}))
    >>> data = pairs(path)
    >>> data.name, data.roles["city"].tolist(), data.role_names      # roles: (n, 2)
    ('capitals', [[4, 3]], ('city', 'END'))
    >>> pairs([{"clean": "a", "corrupt": "b"}])
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: 'pairs' lacks the column(s) ['answer', 'wrong']: ...
    """
    rows, default = _records(source)
    if not rows:
        raise InputError(f"the dataset {name or default!r} is empty: give at least one example.")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise InputError(f"{name or default!r} lacks the column(s) {missing}: every example needs "
                         f"{list(COLUMNS)} (answer/wrong: the tokens logit_diff compares).")
    for i, row in enumerate(rows):
        gone = [c for c in COLUMNS if c not in row]
        if gone:
            raise InputError(f"example {i} of {name or default!r} lacks {gone}.")
    role_names = list(rows[0].get("roles") or {})
    roles = {}
    for role in role_names:
        try:
            roles[role] = np.array([[int(c) for c in row["roles"][role]] for row in rows], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"role {role!r}: every example needs roles={{{role!r}: [clean_char, corrupt_char]}}.") from None
    extra = [k for k in rows[0] if k not in COLUMNS and k != "roles"]
    metadata = {k: tuple(row.get(k) for row in rows) for k in extra}
    return PromptPairs(tuple(r["clean"] for r in rows), tuple(r["corrupt"] for r in rows),
                       tuple(r["answer"] for r in rows), tuple(r["wrong"] for r in rows),
                       roles, metadata, name or default)


def is_dataset(value: Any) -> bool:
    """True for what the verbs treat as many prompts: `Prompts`, `PromptPairs`, a list of texts."""
    if isinstance(value, Prompts | PromptPairs):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def prompts(texts: Sequence[str] | Any, *, name: str = "prompts") -> Prompts:
    """`Prompts` from a list of texts (or anything with ``.texts``, e.g. a `PromptPairs`).

    >>> prompts(["The cat sat", "A dog ran"], name="animals")
    Prompts('animals', 2 texts)
    >>> pair = pairs([{"clean": "The cat", "corrupt": "The dog", "answer": " sat", "wrong": " ran"}])
    >>> prompts(pair).texts                                     # a PromptPairs gives its clean texts
    ('The cat',)
    """
    if isinstance(texts, Prompts):
        return texts
    if isinstance(texts, PromptPairs):
        return texts.prompts("clean")
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(f"prompts() takes a list of texts, got {type(texts).__name__}.")
    return Prompts(tuple(texts), name=name)
