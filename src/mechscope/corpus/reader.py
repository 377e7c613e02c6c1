"""`load` and `Corpus`: read a built corpus split.

>>> import tempfile
>>> load("train", cache_dir=tempfile.mkdtemp())
Traceback (most recent call last):
...
mechscope.errors.InputError: the corpus is not built in ...: run `make corpus` (or `python -m mechscope.corpus`) first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import InputError
from .builder import corpus_dir

__all__ = ["Corpus", "load", "SPLITS"]

#: The split names.
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Corpus:
    """One split of the built corpus: its directory, split name and manifest.

    ``documents``: dicts with ``id``, ``source``, ``language``, ``genre``, ``tokens`` (SmolLM2
    tokens) and ``text``, in the corpus's fixed shuffled order; ``sources``: the manifest's
    per-source rows; ``n_tokens``: the split's token count.

    >>> corpus = load("heldout")  # doctest: +SKIP
    >>> corpus.texts(2, max_chars=40)  # doctest: +SKIP
    ['...', '...']
    """

    root: Path
    split: str
    manifest: dict[str, Any]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The documents, read lazily from the split's JSONL file."""
        with open(self.root / f"{self.split}.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    @cached_property
    def documents(self) -> list[dict[str, Any]]:
        """Every document of the split (read once)."""
        return list(self)

    def __len__(self) -> int:
        return int(self.manifest["totals"][self.split]["docs"])

    @property
    def n_tokens(self) -> int:
        """SmolLM2 tokens in this split."""
        return int(self.manifest["totals"][self.split]["tokens"])

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The manifest's source rows: name, packages (version, sha256), licence, language,
        genre, docs and tokens per split."""
        return list(self.manifest["sources"])

    @property
    def languages(self) -> set[str]:
        """Languages with at least one document in this split."""
        return {s["language"] for s in self.sources if s["splits"][self.split]["docs"]}

    @property
    def genres(self) -> dict[str, int]:
        """Tokens of each genre in this split."""
        out: dict[str, int] = {}
        for s in self.sources:
            for genre, n in s["splits"][self.split]["genres"].items():
                out[genre] = out.get(genre, 0) + n
        return out

    def texts(self, n: int | None = None, max_chars: int | None = None, *,
              source: str | None = None, genre: str | None = None) -> list[str]:
        """The first ``n`` texts (all if ``None``), each cut to ``max_chars``, optionally of one
        source or genre only."""
        out: list[str] = []
        for doc in self:
            if (source and doc["source"] != source) or (genre and doc["genre"] != genre):
                continue
            out.append(doc["text"][:max_chars] if max_chars else doc["text"])
            if n is not None and len(out) >= n:
                break
        return out

    def to_pandas(self) -> Any:
        """Per-source counts: one row per source, docs and tokens for each split."""
        import pandas as pd

        rows = []
        for s in self.sources:
            row = {"source": s["name"], "licence": s["licence"], "language": s["language"],
                   "genre": s["genre"],
                   "version": ", ".join(p["version"] for p in s["packages"])}
            for split in SPLITS:
                row[f"docs_{split}"] = s["splits"][split]["docs"]
                row[f"tokens_{split}"] = s["splits"][split]["tokens"]
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"Corpus({self.split}: {len(self)} documents, {self.n_tokens:,} tokens, "
                f"{len(self.sources)} sources)")


def load(split: str = "train", cache_dir: str | os.PathLike[str] | None = None) -> Corpus:
    """One split (``"train"`` or ``"heldout"``) of the corpus `build` made.

    >>> load("test")
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: split must be one of ('train', 'heldout'), got 'test'.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    root = corpus_dir(cache_dir)
    manifest = root / "manifest.json"
    if not manifest.is_file() or not (root / f"{split}.jsonl").is_file():
        raise InputError(f"the corpus is not built in {root}: run `make corpus` "
                         "(or `python -m mechscope.corpus`) first.")
    return Corpus(root, split, json.loads(manifest.read_text(encoding="utf-8")))
