"""`build`: fetch, extract, parse, clean, deduplicate, split and write the corpus.

Layout of the cache (``$MECHSCOPE_CORPUS_DIR``, default ``~/.cache/mechscope/corpus``)::

    debs/<pkg>_<version>.deb       as ``apt-get download pkg=version`` fetched it (sha256 checked)
    extract/<pkg>_<version>/       ``dpkg-deb -x`` of it, ``.complete`` (JSON: sha256) when done
    parsed/<source>-<key>.jsonl    that source's cleaned documents with their token counts
    train.jsonl, heldout.jsonl     the splits, one JSON document per line
    manifest.json                  sources, versions, sha256s, licences, counts per split

Every file is written atomically; a source already parsed and counted (same key: its packages,
versions, parser and options) is not redone. A document is held out when the first 8 hex
digits of its text's sha256, mod 1000, are below 50 (5%): adding a source never moves an
existing document. Each split is ordered by ``sha256(seed + id)``: a fixed shuffle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..analysis.store import atomic_write
from ..errors import InputError
from .parsers import PARSERS, clean, stdlib_dir, stdlib_version
from .sources import SOURCES, Source

__all__ = ["build", "corpus_dir", "heldout", "smollm2_counter"]

FORMAT = "mechscope-corpus"
VERSION = 1
#: Bump when a parser's output changes: every source is then parsed again.
PARSER_VERSION = 1
HELDOUT_PER_MILLE = 50
SEED = "mechscope-corpus-1"
MIN_CHARS = 16


def corpus_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the corpus lives: ``cache_dir``, else ``$MECHSCOPE_CORPUS_DIR``, else
    ``~/.cache/mechscope/corpus`` (``$XDG_CACHE_HOME`` respected).

    >>> corpus_dir("/tmp/c").as_posix()
    '/tmp/c'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MECHSCOPE_CORPUS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mechscope" / "corpus"


def heldout(text: str) -> bool:
    """Whether a (cleaned) document is in the held-out split: by its hash, 5%.

    >>> sum(heldout(f"doc {i}") for i in range(10_000))
    460
    """
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 1000 < HELDOUT_PER_MILLE


def smollm2_counter() -> Callable[[list[str]], list[int]]:
    """Token counts with the embedded SmolLM2 tokenizer (no BOS added), batched.

    >>> count = smollm2_counter()  # doctest: +SKIP
    >>> count(["The capital of France is"])  # doctest: +SKIP
    [5]
    """
    from tokenizers import Tokenizer

    from ..models import embedded

    path = embedded.cache_dir() / "tokenizer.json"
    if not path.is_file():
        raise InputError("the SmolLM2 tokenizer is not prepared: run `make model` first "
                         f"(looked for {path}).")
    tok = Tokenizer.from_file(str(path))

    def count(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]

    return count


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(deb: Any, root: Path, log: Callable[[str], None]) -> Path:
    """The extracted tree of one pinned package, fetching it first if needed."""
    target = root / "extract" / deb.key
    if (target / ".complete").is_file():
        return target
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    path = debs / f"{deb.key}.deb"
    if not path.is_file():
        log(f"apt-get download {deb.spec}")
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            run = subprocess.run(["apt-get", "download", deb.spec], cwd=tmp, capture_output=True,
                                 text=True, check=False)
            got = list(Path(tmp).glob("*.deb"))
            if run.returncode != 0 or len(got) != 1:
                raise InputError(f"could not fetch {deb.spec} with apt-get download: "
                                 f"{run.stderr.strip()[-300:]} (is Debian apt reachable? "
                                 "`apt-get update` may help)")
            os.replace(got[0], path)
    digest = _sha256(path)
    if digest != deb.sha256:
        raise InputError(f"{path.name} has sha256 {digest}, expected the pinned {deb.sha256}: "
                         "delete it and run `make corpus` again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{deb.key}.", dir=target.parent))
    try:
        subprocess.run(["dpkg-deb", "-x", str(path), str(staging)], check=True)
        (staging / ".complete").write_text(json.dumps({"sha256": digest}))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:  # an interrupted extraction leaves nothing behind
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _licence_check(source: Source, roots: Sequence[Path]) -> str:
    """The copyright file's path in the package; an `InputError` if the declared licence is not stated there."""
    if source.debs:
        pkg = source.debs[0].package
        rel = f"usr/share/doc/{pkg}/copyright"
        path = roots[0] / rel
    else:
        rel = "LICENSE.txt"
        path = Path(str(source.options.get("lib") or stdlib_dir())) / rel
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if " ".join(source.evidence.split()) not in " ".join(text.split()):
        raise InputError(f"source {source.name!r}: the licence phrase {source.evidence!r} is not "
                         f"in {path}: check the declared licence ({source.licence}).")
    return rel


def source_key(source: Source) -> str:
    """What a parsed source depends on, hashed: packages, versions, parser, options."""
    spec = {"debs": [[d.package, d.version, d.sha256] for d in source.debs],
            "parser": source.parser, "options": source.options, "v": PARSER_VERSION,
            "python": stdlib_version() if not source.debs else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=list).encode()).hexdigest()[:12]


def _parse_source(source: Source, root: Path, count: Callable[[list[str]], list[int]],
                  log: Callable[[str], None]) -> Path:
    """The source's parsed file (docs with token counts), made unless already there."""
    out = root / "parsed" / f"{source.name}-{source_key(source)}.jsonl"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    roots = [_extract(d, root, log) for d in source.debs]
    copyright_path = _licence_check(source, roots)
    start = time.perf_counter()
    docs = []
    for text, genre in PARSERS[source.parser](roots, **source.options):
        text = clean(text)
        if len(text) >= MIN_CHARS:
            docs.append((text, genre or source.genre))
    tokens: list[int] = []
    for i in range(0, len(docs), 512):
        tokens += count([t for t, _ in docs[i:i + 512]])
    sha = {d.package: json.loads((r / ".complete").read_text())["sha256"]
           for d, r in zip(source.debs, roots, strict=True)}
    head = {"source": source.name, "key": source_key(source), "copyright": copyright_path,
            "sha256": sha, "docs": len(docs), "tokens": sum(tokens)}

    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o644)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(head, ensure_ascii=False) + "\n")
            for (text, genre), n in zip(docs, tokens, strict=True):
                f.write(json.dumps({"text": text, "genre": genre, "tokens": n},
                                   ensure_ascii=False) + "\n")

    atomic_write(out, write)
    log(f"{source.name}: {len(docs)} documents, {sum(tokens):,} tokens "
        f"({time.perf_counter() - start:.1f} s)")
    return out


def _dedup_key(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", " ", text.casefold()).strip().encode()).hexdigest()


def _assemble(sources: Sequence[Source], parsed: Sequence[Path]) -> tuple[dict[str, list], dict]:
    """Deduplicate (first occurrence in source order wins), split, shuffle."""
    seen: set[str] = set()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    table = []
    for source, path in zip(sources, parsed, strict=True):
        with open(path, encoding="utf-8") as f:
            head = json.loads(f.readline())
            rows = [json.loads(line) for line in f]
        counts: dict[str, dict[str, Any]] = {
            s: {"docs": 0, "tokens": 0, "genres": {}} for s in splits}
        dropped = 0
        for row in rows:
            key = _dedup_key(row["text"])
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            split = "heldout" if heldout(row["text"]) else "train"
            doc_id = hashlib.sha256(row["text"].encode()).hexdigest()[:16]
            splits[split].append({"id": doc_id, "source": source.name,
                                  "language": source.language, "genre": row["genre"],
                                  "tokens": row["tokens"], "text": row["text"]})
            counts[split]["docs"] += 1
            counts[split]["tokens"] += row["tokens"]
            genres = counts[split]["genres"]
            genres[row["genre"]] = genres.get(row["genre"], 0) + row["tokens"]
        table.append({"name": source.name, "description": source.description,
                      "packages": [{"package": d.package, "version": d.version,
                                    "sha256": head["sha256"].get(d.package, d.sha256)}
                                   for d in source.debs] or
                      [{"package": "python-stdlib", "version": stdlib_version(), "sha256": None}],
                      "licence": source.licence, "copyright": head["copyright"],
                      "language": source.language, "genre": source.genre,
                      "duplicates_dropped": dropped, "splits": counts})
    for docs in splits.values():
        docs.sort(key=lambda d: hashlib.sha256((SEED + d["id"]).encode()).hexdigest())
    return splits, {"sources": table}


def _write_text(path: Path, text: str) -> None:
    os.chmod(path, 0o644)
    path.write_text(text, encoding="utf-8")


def _write_jsonl(path: Path, docs: Iterable[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o644)
        with open(tmp, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    atomic_write(path, write)


def build(cache_dir: str | os.PathLike[str] | None = None, progress: bool = True, *,
          sources: Sequence[Source] | None = None,
          count_tokens: Callable[[list[str]], list[int]] | None = None) -> Any:
    """Build (or finish building) the corpus and return its train split as a `Corpus`.

    ``sources``: the declared `SOURCES` unless given; ``count_tokens``: texts to token counts
    (default: the embedded SmolLM2 tokenizer, `smollm2_counter`). Fetches only the packages
    of sources not parsed yet (``apt-get download``, no install).

    >>> import tempfile
    >>> from mechscope.corpus import build  # doctest: +SKIP
    >>> build(tempfile.mkdtemp()).n_tokens > 2_000_000  # doctest: +SKIP
    True
    """
    from .reader import load

    root = corpus_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    sources = tuple(SOURCES if sources is None else sources)
    log = print if progress else (lambda _msg: None)
    count = count_tokens or smollm2_counter()
    start = time.perf_counter()
    parsed = [_parse_source(s, root, count, log) for s in sources]
    splits, manifest = _assemble(sources, parsed)
    for name, docs in splits.items():
        _write_jsonl(root / f"{name}.jsonl", docs)
    manifest.update({"format": FORMAT, "version": VERSION, "seed": SEED,
                     "heldout_per_mille": HELDOUT_PER_MILLE,
                     "tokenizer": "SmolLM2-135M" if count_tokens is None else "custom",
                     "keys": [p.stem for p in parsed],
                     "totals": {n: {"docs": len(d), "tokens": sum(x["tokens"] for x in d)}
                                for n, d in splits.items()}})
    text = json.dumps(manifest, indent=1, ensure_ascii=False)
    atomic_write(root / "manifest.json", lambda tmp: _write_text(tmp, text))
    log(f"corpus written to {root} in {time.perf_counter() - start:.1f} s")
    return load("train", cache_dir=root)
