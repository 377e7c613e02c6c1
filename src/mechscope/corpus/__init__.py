"""An offline text corpus built reproducibly from Debian packages and Python's standard library.

`build` fetches pinned ``.deb`` files with ``apt-get download`` (nothing is installed),
extracts them, parses each declared source (`SOURCES`) into documents, cleans, deduplicates,
splits 95/5 into ``train`` / ``heldout`` by document hash and writes JSONL plus a manifest;
`load` reads a split. ``make corpus`` (``python -m mechscope.corpus``) builds it.

>>> from mechscope import corpus
>>> sorted({s.genre for s in corpus.SOURCES})
['code', 'definitions', 'prose', 'verse']
>>> corpus.load("train").n_tokens > 2_000_000  # doctest: +SKIP
True
"""

from .builder import build, corpus_dir, heldout
from .reader import SPLITS, Corpus, load
from .sources import GENRES, SOURCES, Deb, Source

__all__ = ["GENRES", "SOURCES", "SPLITS", "Corpus", "Deb", "Source", "build", "corpus_dir",
           "heldout", "load"]
