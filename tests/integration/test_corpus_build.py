"""The real corpus (`make corpus`): built from the pinned Debian packages into the corpus cache
(``$MECHSCOPE_CORPUS_DIR`` or ``~/.cache/mechscope/corpus``), resumed if already there.

Needs the embedded model's tokenizer (``make model``) and, unless every source is cached
already, Debian apt (``apt-get download``); skipped with the reason when apt cannot fetch."""

from __future__ import annotations

import hashlib

import pytest

from mechscope.corpus import GENRES, SOURCES, heldout

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def corpus(built_corpus):
    return built_corpus


def test_corpus_size_languages_genres(corpus) -> None:
    train, held = corpus
    assert train.n_tokens + held.n_tokens >= 2_000_000
    natural = (train.languages | held.languages) - {"python"}
    assert len(natural) >= 3, natural
    tokens = {g: train.genres.get(g, 0) + held.genres.get(g, 0) for g in GENRES}
    assert all(n >= 10_000 for n in tokens.values()), tokens
    assert 0.03 < held.n_tokens / (train.n_tokens + held.n_tokens) < 0.07
    assert [s["name"] for s in train.sources] == [s.name for s in SOURCES]


def test_manifest_pins_and_counts(corpus) -> None:
    train, held = corpus
    declared = {d.package: d.sha256 for s in SOURCES for d in s.debs}
    for row in train.sources:
        for pkg in row["packages"]:
            if pkg["package"] in declared:
                assert pkg["sha256"] == declared[pkg["package"]]
        assert row["splits"]["train"]["docs"] > 0
    counted = sum(d["tokens"] for d in held.documents)
    assert counted == held.n_tokens


def test_documents_are_split_by_hash_and_unique(corpus) -> None:
    train, held = corpus
    for doc in held.documents[:2000]:
        assert heldout(doc["text"]) and doc["id"] == hashlib.sha256(
            doc["text"].encode()).hexdigest()[:16]
    ids = [d["id"] for d in held.documents]
    assert len(ids) == len(set(ids))
    assert not any(heldout(t) for t in train.texts(2000))


def test_token_counts_are_smollm2(corpus, embedded) -> None:
    """The stored counts equal the model's own tokenizer (transformers, not `tokenizers`)."""
    _, held = corpus
    tok = embedded.tokenizer
    for doc in held.documents[:50]:
        assert len(tok(doc["text"], add_special_tokens=False)["input_ids"]) == doc["tokens"]
