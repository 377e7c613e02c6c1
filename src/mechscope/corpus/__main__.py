"""``python -m mechscope.corpus [--cache-dir DIR] [--quiet]``: build the corpus (resumable)
and print its source table."""

from __future__ import annotations

import argparse
import sys
import time

from .builder import build
from .reader import load

COLUMNS = ["source", "licence", "language", "genre", "docs_train", "docs_heldout",
           "tokens_train", "tokens_heldout"]


def main(argv: list[str] | None = None) -> int:
    """Build, then print one row per source: licence, language, genre, docs, tokens."""
    parser = argparse.ArgumentParser(prog="python -m mechscope.corpus", description=__doc__)
    parser.add_argument("--cache-dir", default=None,
                        help="where to build (default: $MECHSCOPE_CORPUS_DIR or "
                             "~/.cache/mechscope/corpus)")
    parser.add_argument("--quiet", action="store_true", help="no per-source progress lines")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    build(args.cache_dir, progress=not args.quiet)
    held = load("heldout", cache_dir=args.cache_dir)
    print(held.to_pandas()[COLUMNS].to_string(index=False))
    totals = held.manifest["totals"]
    print(f"total: {totals['train']['tokens'] + totals['heldout']['tokens']:,} SmolLM2 tokens "
          f"({totals['train']['tokens']:,} train, {totals['heldout']['tokens']:,} held out) "
          f"in {held.root}, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
