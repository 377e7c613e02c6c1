"""mechscope.corpus on a fake source tree laid out like extracted .debs: parsers, cleaning,
determinism, split stability, deduplication, resume, sha256/licence checks, error messages.
Nothing is downloaded: every fake package's extract folder is already marked complete."""

from __future__ import annotations

import gzip
import json
import stat
from pathlib import Path

import pytest

from mechscope.corpus import Deb, Source, build, corpus_dir, heldout, load
from mechscope.corpus.parsers import (
    PARSERS,
    clean,
    fortune_documents,
    jargon_documents,
    kjv_documents,
    stdlib_files,
    wordnet_documents,
)
from mechscope.errors import InputError

FAKE_SHA = "0" * 64


def words(texts: list[str]) -> list[int]:
    """An independent token counter for the tests: whitespace words."""
    return [len(t.split()) for t in texts]


def _package(root: Path, pkg: str, version: str, files: dict[str, str | bytes],
             copyright_text: str) -> Deb:
    deb = Deb(pkg, version, FAKE_SHA)
    base = root / "extract" / deb.key
    for rel, content in {**files, f"usr/share/doc/{pkg}/copyright": copyright_text}.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (base / ".complete").write_text(json.dumps({"sha256": FAKE_SHA}))
    return deb


BIBLE_OUT = ("Ge1:1 In the beginning God created the heaven and the earth.\n"
             "Ge1:2 And the earth was without form, and void.\n"
             "Ge2:1 Thus the heavens and the earth were finished.\n"
             "Psa1:1 Blessed is the man that walketh not in the counsel of the ungodly.\n"
             "1Sam1:1 Now there was a certain man of Ramathaimzophim.\n")
WORDNET = ("  1 This software and database is being provided to you\n"
           "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived to exist\n"
           "00001930 03 n 02 physical_entity 0 thing 0 000 | an entity that has physical existence\n"
           "00002137 04 n 01 abstraction 0 000 | a general concept formed by extracting\n")
JARGON = ("Front matter, not an entry.\n\n   :hack: n.\n\n   1. Originally, a quick job.\n\n"
          "   :kluge: /klooj/\n\n   A clever programming trick.\n")


def fake_sources(root: Path, lib: Path) -> list[Source]:
    """Five sources covering every parser, in the real layout."""
    script = "#!/bin/sh\ncat <<'EOT'\n" + BIBLE_OUT + "EOT\n"
    kjv_text = _package(root, "bible-kjv-text", "1.0", {"usr/lib/bible.data": b"EC02"},
                        "the KJV text is expired since 1611")
    kjv_bin = _package(root, "bible-kjv", "1.0", {"usr/bin/bible": script}, "GPL")
    program = root / "extract" / kjv_bin.key / "usr/bin/bible"
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    fortunes = _package(root, "fortunes", "1:2", {
        "usr/share/games/fortunes/wisdom": "Fortune one is wise.\n%\nKirk: Spock?\nSpock: Captain.\n%\n",
        "usr/share/games/fortunes/wisdom.dat": b"\x00\x01binary index",
        "usr/share/games/fortunes/songs-poems": "Roses are red,\nviolets are blue.\n%\n",
        "usr/share/games/fortunes/off/rude": "An offensive fortune is left out.\n%\n",
    }, "This program falls under the BSD copyright")
    fortunes_de = _package(root, "fortunes-de", "0.1", {
        "usr/share/games/fortunes/de/witze": "Ein deutscher Spruch für alle.\n%\n"
                                             "FORTUNE ONE   is wise.\n%\n",
    }, "License: GPL-2+")
    wordnet = _package(root, "wordnet-base", "3", {"usr/share/wordnet/data.noun": WORDNET,
                                                   "usr/share/wordnet/data.verb": "",
                                                   "usr/share/wordnet/data.adj": "",
                                                   "usr/share/wordnet/data.adv": ""},
                       "License: WordNet3.0")
    jargon = _package(root, "jargon-text", "4", {
        "usr/share/doc/jargon-text/jargon.txt.gz": gzip.compress(JARGON.encode())},
        "This document is in the public domain")
    (lib / "json").mkdir(parents=True, exist_ok=True)
    (lib / "LICENSE.txt").write_text("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2\n")
    (lib / "json" / "__init__.py").write_text('"""JSON encoder and decoder."""\nX = 1\n')
    (lib / "abc.py").write_text('"""Abstract base classes."""\n\ndef f():\n    return 1\n')
    (lib / "_private.py").write_text("Y = 2\n")
    (lib / "broken.py").write_text("def (:\n")
    (lib / "test").mkdir(exist_ok=True)
    (lib / "test" / "test_x.py").write_text("Z = 3\n")
    return [
        Source("kjv-prose", (kjv_text, kjv_bin), "kjv", "public domain", "expired since 1611",
               "en", "prose", {"verse_books": ("Psa",), "keep": "prose"}),
        Source("kjv-verse", (kjv_text, kjv_bin), "kjv", "public domain", "expired since 1611",
               "en", "verse", {"verse_books": ("Psa",), "keep": "verse"}),
        Source("fortunes-en", (fortunes,), "fortune", "BSD", "falls under the BSD copyright",
               "en", "prose", {"verse_files": ("songs-poems",)}),
        Source("fortunes-de", (fortunes_de,), "fortune", "GPL-2+", "License: GPL-2+", "de",
               "prose", {}),
        Source("wordnet", (wordnet,), "wordnet", "WordNet", "License: WordNet3.0", "en",
               "definitions", {"group": 20}),
        Source("jargon", (jargon,), "jargon", "public domain", "in the public domain", "en",
               "definitions", {}),
        Source("stdlib", (), "python_stdlib", "PSF-2.0",
               "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2", "python", "code",
               {"max_chars": 10_000, "max_file_chars": 1_000, "lib": str(lib)}),
    ]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[Source]]:
    root = tmp_path / "corpus"
    return root, fake_sources(root, tmp_path / "lib")


def test_parsers_split_documents_as_declared() -> None:
    assert kjv_documents(BIBLE_OUT, ["Psa"], "prose") == [
        "Ge 1\n\n1 In the beginning God created the heaven and the earth.\n"
        "2 And the earth was without form, and void.",
        "Ge 2\n\n1 Thus the heavens and the earth were finished.",
        "1Sam 1\n\n1 Now there was a certain man of Ramathaimzophim."]
    assert kjv_documents(BIBLE_OUT, ["Psa"], "verse") == [
        "Psa 1\n\n1 Blessed is the man that walketh not in the counsel of the ungodly."]
    assert wordnet_documents(WORDNET, "n", group=2) == [
        "entity (n.): that which is perceived to exist\n"
        "physical entity, thing (n.): an entity that has physical existence",
        "abstraction (n.): a general concept formed by extracting"]
    assert jargon_documents(JARGON) == ["hack: n.\n\n1. Originally, a quick job.",
                                        "kluge: /klooj/\n\nA clever programming trick."]
    assert fortune_documents("Kirk: Spock?\nSpock: Captain.\n%\nKirk: alone\n") == [
        ("Kirk: Spock?\nSpock: Captain.", "dialogue"), ("Kirk: alone", None)]
    assert clean("Cafe\u0301\x00\x1b[0m\u2028 ok \r\n\tx") == "Café[0m ok\n    x"


def test_stdlib_files_skip_tests_and_private_modules(tmp_path: Path) -> None:
    fake_sources(tmp_path / "c", tmp_path / "lib")
    names = [p.relative_to(tmp_path / "lib").as_posix() for p in stdlib_files(tmp_path / "lib", 1000)]
    assert names == ["abc.py", "broken.py", "json/__init__.py"]


def test_build_fake_tree(tree: tuple[Path, list[Source]]) -> None:
    root, sources = tree
    train = build(root, progress=False, sources=sources, count_tokens=words)
    held = load("heldout", cache_dir=root)
    docs = train.documents + held.documents
    by_source: dict[str, list[dict]] = {}
    for d in docs:
        by_source.setdefault(d["source"], []).append(d)
    assert len(by_source["kjv-prose"]) == 3 and len(by_source["kjv-verse"]) == 1
    en = sorted(d["text"] for d in by_source["fortunes-en"])
    assert en == ["Fortune one is wise.", "Kirk: Spock?\nSpock: Captain.",
                  "Roses are red,\nviolets are blue."]
    genres = {d["text"][:5]: d["genre"] for d in by_source["fortunes-en"]}
    assert genres == {"Fortu": "prose", "Kirk:": "dialogue", "Roses": "verse"}
    # dedup: the German copy of fortune one (case and spaces differ) is dropped
    assert [d["text"] for d in by_source["fortunes-de"]] == ["Ein deutscher Spruch für alle."]
    stdlib = sorted(d["text"].split("\n")[0] for d in by_source["stdlib"])
    assert stdlib == ["# module: abc", "# module: json"]  # broken.py does not parse
    for d in docs:  # the counter's numbers, split by the document hash
        assert d["tokens"] == len(d["text"].split())
        assert heldout(d["text"]) == (d in held.documents)
    manifest = train.manifest
    rows = {s["name"]: s for s in manifest["sources"]}
    assert rows["fortunes-de"]["duplicates_dropped"] == 1
    assert rows["kjv-prose"]["packages"][0] == {"package": "bible-kjv-text", "version": "1.0",
                                                "sha256": FAKE_SHA}
    assert rows["kjv-prose"]["copyright"] == "usr/share/doc/bible-kjv-text/copyright"
    assert train.n_tokens + held.n_tokens == sum(d["tokens"] for d in docs)
    df = train.to_pandas()
    assert list(df["source"]) == [s.name for s in sources]
    assert int(df["tokens_train"].sum() + df["tokens_heldout"].sum()) == train.n_tokens + held.n_tokens
    assert set(train.genres) | set(held.genres) == {"prose", "dialogue", "verse", "definitions",
                                                    "code"}
    assert train.texts(2, max_chars=5) == [d["text"][:5] for d in train.documents[:2]]
    assert all(t.startswith("# module") for t in train.texts(genre="code") + held.texts(genre="code"))


def test_build_is_deterministic(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        root = tmp_path / name
        build(root, progress=False, sources=fake_sources(root, tmp_path / "lib"),
              count_tokens=words)
        outputs.append([(root / f).read_bytes() for f in ("train.jsonl", "heldout.jsonl",
                                                          "manifest.json")])
    assert outputs[0] == outputs[1]


def test_adding_a_source_moves_no_document(tree: tuple[Path, list[Source]]) -> None:
    root, sources = tree
    small = build(root, progress=False, sources=sources[2:], count_tokens=words)
    before = {d["id"]: "train" for d in small.documents}
    before.update({d["id"]: "heldout" for d in load("heldout", cache_dir=root).documents})
    big = build(root, progress=False, sources=sources, count_tokens=words)
    after = {d["id"]: "train" for d in big.documents}
    after.update({d["id"]: "heldout" for d in load("heldout", cache_dir=root).documents})
    assert all(after[k] == v for k, v in before.items())
    assert len(after) > len(before)


def test_heldout_is_about_five_percent() -> None:
    n = sum(heldout(f"document number {i}") for i in range(20_000))
    assert 900 < n < 1100


def test_resume_does_not_parse_again(tree: tuple[Path, list[Source]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, sources = tree
    build(root, progress=False, sources=sources[:3], count_tokens=words)
    parsed = sorted((root / "parsed").iterdir())
    stamps = [p.stat().st_mtime_ns for p in parsed]

    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("parsed again")

    for name in ("kjv", "fortune"):
        monkeypatch.setitem(PARSERS, name, fail)
    with pytest.raises(AssertionError, match="parsed again"):  # fortunes-de is new
        build(root, progress=False, sources=sources[:4], count_tokens=words)
    monkeypatch.undo()
    build(root, progress=False, sources=sources[:4], count_tokens=words)
    assert [p.stat().st_mtime_ns for p in parsed] == stamps
    assert not list((root / "parsed").glob(".*.tmp"))


def test_missing_corpus_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not built in .*run `make corpus`"):
        load("train", cache_dir=tmp_path)
    with pytest.raises(InputError, match="split must be one of"):
        load("validation", cache_dir=tmp_path)


def test_env_var_sets_the_corpus_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECHSCOPE_CORPUS_DIR", str(tmp_path / "x"))
    assert corpus_dir() == tmp_path / "x"


def test_licence_phrase_must_be_in_the_copyright(tree: tuple[Path, list[Source]]) -> None:
    root, sources = tree
    wrong = Source("jargon", sources[5].debs, "jargon", "MIT", "Permission is hereby granted",
                   "en", "definitions", {})
    with pytest.raises(InputError, match="licence phrase 'Permission is hereby granted' is not"):
        build(root, progress=False, sources=[wrong], count_tokens=words)


def test_a_deb_with_the_wrong_sha256_is_refused(tmp_path: Path) -> None:
    (tmp_path / "debs").mkdir()
    deb = Deb("jargon-text", "9", "f" * 64)
    (tmp_path / "debs" / f"{deb.key}.deb").write_bytes(b"not the pinned file")
    src = Source("jargon", (deb,), "jargon", "pd", "public domain", "en", "definitions", {})
    with pytest.raises(InputError, match="expected the pinned f{64}: delete it"):
        build(tmp_path, progress=False, sources=[src], count_tokens=words)


def test_an_interrupted_build_resumes(tree: tuple[Path, list[Source]]) -> None:
    """Interrupted while counting the third source: the first two stay done, no temporary
    file is left, the next build finishes and equals an uninterrupted one."""
    root, sources = tree
    calls = []

    def interrupted(texts: list[str]) -> list[int]:
        calls.append(texts)
        if any("Fortune one" in t for t in texts):
            raise KeyboardInterrupt
        return words(texts)

    with pytest.raises(KeyboardInterrupt):
        build(root, progress=False, sources=sources, count_tokens=interrupted)
    assert len(list((root / "parsed").glob("*.jsonl"))) == 2
    assert not list(root.rglob("*.tmp")) and not (root / "manifest.json").exists()
    with pytest.raises(InputError, match="not built"):
        load("train", cache_dir=root)
    resumed = build(root, progress=False, sources=sources, count_tokens=words)
    fresh_root = root.parent / "fresh"
    fresh = build(fresh_root, progress=False, sources=fake_sources(fresh_root, root.parent / "lib"),
                  count_tokens=words)
    assert resumed.documents == fresh.documents
    assert oct((root / "train.jsonl").stat().st_mode & 0o777) == "0o644"
