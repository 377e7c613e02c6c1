"""Parsers: the files of one extracted source (a ``dpkg-deb -x`` tree) to documents.

Each parser takes the list of extracted roots (one per `Deb` of the source, in order) and the
source's options, and yields ``(text, genre_or_None)``; ``None`` means the source's genre.
Text is cleaned later (`clean`).

>>> clean("e\\u0301t\\u00e9\\x07  \\r\\nnext  ")
'été\\nnext'
>>> fortune_documents("A: hi\\nB: hello\\n%\\nA line of prose.\\n")
[('A: hi\\nB: hello', 'dialogue'), ('A line of prose.', None)]
"""

from __future__ import annotations

import ast
import gzip
import re
import subprocess
import sys
import sysconfig
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["PARSERS", "clean", "fortune_documents", "kjv_documents", "wordnet_documents",
           "jargon_documents", "stdlib_files"]

Docs = Iterator[tuple[str, "str | None"]]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPEAKER = re.compile(r"^\s*([A-Z\u0400-\u04ff][\w .'\-]{0,23}):\s+\S", re.MULTILINE)


def clean(text: str) -> str:
    """NFC, ``\\r\\n`` to ``\\n``, tabs to spaces, control characters removed, lines stripped
    on the right, blank runs squeezed to one blank line, the whole stripped.

    >>> clean("a\\tb\\n\\n\\n\\nc")
    'a   b\\n\\nc'
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.expandtabs(4))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def fortune_documents(text: str, verse: bool = False) -> list[tuple[str, str | None]]:
    """One document per fortune (``%`` lines separate them). A fortune with two or more
    speakers (``Name: ...`` at a line start) is a dialogue; ``verse=True`` labels the rest verse.

    >>> fortune_documents("Roses are red\\n%\\n", verse=True)
    [('Roses are red', 'verse')]
    """
    out: list[tuple[str, str | None]] = []
    for chunk in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        chunk = chunk.strip("\n")
        if not chunk.strip():
            continue
        speakers = set(_SPEAKER.findall(chunk))
        genre = "dialogue" if len(speakers) >= 2 else ("verse" if verse else None)
        out.append((chunk, genre))
    return out


def parse_fortunes(roots: Sequence[Path], verse_files: Sequence[str] = ()) -> Docs:
    """Every regular fortune file under ``usr/share/games/fortunes`` (not ``.dat`` indexes,
    not symlinks, not an ``off`` (offensive) folder), in sorted path order."""
    base = roots[0] / "usr/share/games/fortunes"
    files = sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.suffix != ".dat" and "off" not in p.relative_to(base).parts)
    for path in files:
        stem = path.name.split(".")[0]
        yield from fortune_documents(_read(path), verse=stem in verse_files)


_KJV_LINE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_documents(text: str, verse_books: Sequence[str], keep: str) -> list[str]:
    """The ``bible`` program's output (``Ge1:1 In the beginning...``) to one document per
    chapter, ``"Ge 1"`` as its first line; ``keep="verse"`` keeps the books in ``verse_books``,
    ``"prose"`` the others.

    >>> kjv_documents("Ge1:1 In the beginning.\\nGe1:2 And.\\nPsa1:1 Blessed.\\n", ["Psa"], "prose")
    ['Ge 1\\n\\n1 In the beginning.\\n2 And.']
    """
    chapters: dict[tuple[str, str], list[str]] = {}
    for line in text.splitlines():
        m = _KJV_LINE.match(line.strip())
        if m is None:
            continue
        book, chapter, verse, words = m.groups()
        if (book in verse_books) == (keep == "verse"):
            chapters.setdefault((book, chapter), []).append(f"{verse} {words}")
    return [f"{b} {c}\n\n" + "\n".join(v) for (b, c), v in chapters.items()]


def parse_kjv(roots: Sequence[Path], verse_books: Sequence[str] = (), keep: str = "prose") -> Docs:
    """Runs the extracted ``bible`` program (second root) on the extracted ``bible.data``
    (first root) for Genesis 1:1 to Revelation 22:21; nothing is installed."""
    program = roots[1] / "usr/bin/bible"
    data_dir = roots[0] / "usr/lib"
    result = subprocess.run([str(program), "-f", "-p", str(data_dir), "-d", "bible.data",
                             "gen1:1-rev22:21"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120, check=False)
    if result.returncode != 0 or not result.stdout:
        raise InputError(f"the extracted bible program failed ({result.returncode}): "
                         f"{result.stderr.strip()[:200]}")
    for doc in kjv_documents(result.stdout, verse_books, keep):
        yield doc, None


def wordnet_documents(text: str, pos: str, group: int = 20) -> list[str]:
    """A WordNet ``data.<pos>`` file to documents of ``group`` consecutive glosses of one
    lexicographer file, one line per synset: ``word, word (pos): gloss``.

    >>> line = "00001740 03 n 02 entity 0 thing 0 000 | that which exists"
    >>> wordnet_documents(line, "n")
    ['entity, thing (n.): that which exists']
    """
    docs: list[str] = []
    current: list[str] = []
    lexfile = None
    for line in text.splitlines():
        if line.startswith(" ") or "|" not in line:
            continue  # the licence header lines start with two spaces
        head, gloss = line.split("|", 1)
        fields = head.split()
        n_words = int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
        words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]
        if fields[1] != lexfile or len(current) >= group:
            if current:
                docs.append("\n".join(current))
            current, lexfile = [], fields[1]
        current.append(f"{', '.join(words)} ({pos}.): {gloss.strip()}")
    if current:
        docs.append("\n".join(current))
    return docs


def parse_wordnet(roots: Sequence[Path], group: int = 20) -> Docs:
    """Glosses of ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv``."""
    base = roots[0] / "usr/share/wordnet"
    for name, pos in (("noun", "n"), ("verb", "v"), ("adj", "adj"), ("adv", "adv")):
        for doc in wordnet_documents(_read(base / f"data.{name}"), pos, group):
            yield doc, None


_JARGON_HEAD = re.compile(r"^   :(.+?):(.*)$")


def jargon_documents(text: str) -> list[str]:
    """The Jargon File's text to one document per entry (``   :term: pos.`` starts one);
    the front matter before the first entry is left out.

    >>> jargon_documents("intro\\n   :foo: n.\\n\\n   A word.\\n   :bar:\\n\\n   Another.\\n")
    ['foo: n.\\n\\nA word.', 'bar:\\n\\nAnother.']
    """
    docs: list[list[str]] = []
    for line in text.splitlines():
        m = _JARGON_HEAD.match(line)
        if m:
            docs.append([f"{m.group(1)}:{m.group(2)}"])
        elif docs:
            docs[-1].append(line[3:] if line.startswith("   ") else line)
    return ["\n".join(d).strip() for d in docs]


def parse_jargon(roots: Sequence[Path]) -> Docs:
    """``usr/share/doc/jargon-text/jargon.txt.gz``."""
    path = roots[0] / "usr/share/doc/jargon-text/jargon.txt.gz"
    for doc in jargon_documents(gzip.decompress(path.read_bytes()).decode("utf-8")):
        yield doc, None


_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages",
              "__pycache__", "turtledemo", "ensurepip", "config-3.11-x86_64-linux-gnu"}


def stdlib_dir() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(lib: Path, max_file_chars: int) -> list[Path]:
    """The public ``.py`` files of a standard library tree, sorted by relative path (no tests,
    no private ``_x.py`` modules, none over ``max_file_chars``)."""
    out = []
    for path in sorted(lib.rglob("*.py"), key=lambda p: p.relative_to(lib).as_posix()):
        parts = path.relative_to(lib).parts
        if any(p in _SKIP_DIRS or p.startswith("test") for p in parts[:-1]):
            continue
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        if path.stat().st_size <= max_file_chars:
            out.append(path)
    return out


def parse_python_stdlib(roots: Sequence[Path], max_chars: int = 3_000_000,
                        max_file_chars: int = 60_000, lib: str | None = None) -> Docs:
    """One document per module that ``ast`` parses: ``# module: name`` then its source
    (docstrings included), until ``max_chars`` in total."""
    base = Path(lib) if lib else stdlib_dir()
    total = 0
    for path in stdlib_files(base, max_file_chars):
        text = _read(path)
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        name = ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
        if total + len(text) > max_chars:
            break
        total += len(text)
        yield f"# module: {name}\n{text}", None


def stdlib_version() -> str:
    """The interpreter version the stdlib source comes from (its "package version")."""
    return f"python-{sys.version.split()[0]}"


#: Parser name (as in `Source.parser`) to function ``(roots, **options) -> docs``.
PARSERS: dict[str, Callable[..., Any]] = {
    "fortune": parse_fortunes, "kjv": parse_kjv, "wordnet": parse_wordnet,
    "jargon": parse_jargon, "python_stdlib": parse_python_stdlib,
}
