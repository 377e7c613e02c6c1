"""``python -m mechscope.corpus``: build the corpus (resumable) and print its source table."""

from __future__ import annotations

import sys
import time

from .builder import build
from .reader import load


def main(argv: list[str] | None = None) -> int:
    """Build, then print one row per source: licence, language, genre, docs, tokens."""
    start = time.perf_counter()
    build(progress=True)
    held = load("heldout")
    df = held.to_pandas()
    cols = ["source", "licence", "language", "genre", "docs_train", "docs_heldout",
            "tokens_train", "tokens_heldout"]
    print(df[cols].to_string(index=False))
    totals = held.manifest["totals"]
    print(f"total: {totals['train']['tokens'] + totals['heldout']['tokens']:,} tokens "
          f"({totals['train']['tokens']:,} train, {totals['heldout']['tokens']:,} held out), "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
