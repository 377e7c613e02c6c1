"""The declared sources of the offline corpus: Debian packages (pinned version and sha256) and
the running interpreter's standard library.

Each `Source` names the packages it is read from, the parser that turns their files into
documents, its licence (with a phrase that must appear in the package's
``/usr/share/doc/<pkg>/copyright``, checked at build time), its language and default genre.

>>> [s.name for s in SOURCES][:3]
['kjv-prose', 'kjv-verse', 'fortunes-en']
>>> {s.language for s in SOURCES} >= {"en", "de", "es", "it", "ru"}
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Deb", "Source", "SOURCES", "GENRES"]

#: The genres every document is labelled with.
GENRES = ("prose", "dialogue", "verse", "definitions", "code")


@dataclass(frozen=True)
class Deb:
    """One pinned Debian package: name, exact version, sha256 of the ``.deb`` file.

    >>> Deb("jargon-text", "4.4.7-4.1", "17d0").spec
    'jargon-text=4.4.7-4.1'
    """

    package: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        """``package=version`` as ``apt-get download`` takes it."""
        return f"{self.package}={self.version}"

    @property
    def key(self) -> str:
        """A file-name-safe ``package_version``."""
        return f"{self.package}_{self.version.replace(':', '%3a')}"


@dataclass(frozen=True)
class Source:
    """One corpus source.

    ``debs``: the packages it needs (the first holds the copyright file; empty for the
    standard library); ``parser``: a name in `mechscope.corpus.parsers.PARSERS`; ``options``:
    keyword arguments for that parser; ``licence`` and ``evidence`` (a phrase of the copyright
    file that states it); ``language`` (ISO 639-1); ``genre``: the default genre (a parser may
    label single documents otherwise, e.g. a fortune that is a dialogue).

    >>> SOURCES[0].genre, SOURCES[0].debs[0].package
    ('prose', 'bible-kjv-text')
    """

    name: str
    debs: tuple[Deb, ...]
    parser: str
    licence: str
    evidence: str
    language: str
    genre: str
    options: dict[str, object] = field(default_factory=dict)
    description: str = ""


_KJV_TEXT = Deb("bible-kjv-text", "4.38",
                "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a")
_KJV_BIN = Deb("bible-kjv", "4.38",
               "75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d")
_KJV_LICENCE = "public domain (KJV text); Debian packaging GPL-2+"
_KJV_EVIDENCE = "King James Version text of the Bible is expired"
#: Books of the KJV written as verse (the bible program's abbreviations).
KJV_VERSE_BOOKS = ("Job", "Psa", "Prv", "Eccl", "SSol", "Lam")

#: The declared sources, in build order (deduplication keeps the first copy of a text).
SOURCES: tuple[Source, ...] = (
    Source("kjv-prose", (_KJV_TEXT, _KJV_BIN), "kjv", _KJV_LICENCE, _KJV_EVIDENCE, "en",
           "prose", {"verse_books": KJV_VERSE_BOOKS, "keep": "prose"},
           "King James Bible, one chapter per document (books of prose)"),
    Source("kjv-verse", (_KJV_TEXT, _KJV_BIN), "kjv", _KJV_LICENCE, _KJV_EVIDENCE, "en",
           "verse", {"verse_books": KJV_VERSE_BOOKS, "keep": "verse"},
           "King James Bible: Job, Psalms, Proverbs, Ecclesiastes, Song of Solomon, Lamentations"),
    Source("fortunes-en", (Deb("fortunes", "1:1.99.1-7.3",
                               "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),),
           "fortune", "BSD (fortune-mod)", "This program falls under the BSD copyright", "en",
           "prose", {"verse_files": ("songs-poems",)}, "English fortune cookies"),
    Source("fortunes-de", (Deb("fortunes-de", "0.35-1",
                               "03fe7a7912935bd3d4e02e38d79ef32a289097f8718d4488c409595abce067a0"),),
           "fortune", "GPL-2+", "License: GPL-2+", "de", "prose",
           {"verse_files": ("gedichte",)}, "German fortune cookies"),
    Source("fortunes-es", (Deb("fortunes-es", "1.36",
                               "54636edc1a4384093b68d1666c7e702ce42d1fcc8b5ab402d9646c328dcca899"),),
           "fortune", "public domain (quotes); GPL-2+ packaging",
           "presumed to be in the public domain", "es", "prose", {},
           "Spanish fortune cookies (the offensive section left out)"),
    Source("fortunes-it", (Deb("fortunes-it", "1.99-4.1",
                               "675df6ecb00c3b67d06b39ab223ff17f1ef1d0ec82a7e40f989356a2eb61a97e"),),
           "fortune", "not copyrighted (collected quotations)",
           "Contained files are not copyrighted", "it", "prose", {},
           "Italian fortune cookies"),
    Source("fortunes-ru", (Deb("fortunes-ru", "1.52-3.1",
                               "2dc76af9c0e02e2926d36f88dcb685bb171fab8677e553a6def41efe8a551cc6"),),
           "fortune", "GPL-2", "License: GPL-2", "ru", "prose", {},
           "Russian fortune cookies"),
    Source("wordnet-glosses", (Deb("wordnet-base", "1:3.0-37",
                                   "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),),
           "wordnet", "WordNet 3.0 licence (BSD-style)", "License: WordNet3.0", "en",
           "definitions", {"group": 20}, "WordNet 3.0 glosses, 20 synsets per document"),
    Source("jargon", (Deb("jargon-text", "4.4.7-4.1",
                          "17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb"),),
           "jargon", "public domain", "is in the public domain", "en", "definitions", {},
           "The Jargon File 4.4.7, one entry per document"),
    Source("python-stdlib", (), "python_stdlib", "PSF-2.0",
           "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2", "python", "code",
           {"max_chars": 3_000_000, "max_file_chars": 60_000},
           "the running interpreter's standard library sources (docstrings included)"),
)
