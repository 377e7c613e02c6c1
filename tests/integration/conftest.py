"""Integration-tier fixtures: the real offline corpus, built once per session when needed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from mechscope.corpus import SOURCES, build, corpus_dir, load
from mechscope.corpus.builder import source_key


def _all_parsed(root: Path) -> bool:
    return all((root / "parsed" / f"{s.name}-{source_key(s)}.jsonl").is_file() for s in SOURCES)


def _apt_reason() -> str | None:
    """Why apt cannot fetch (None when it can): tries the smallest package, fortunes-min."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get/dpkg-deb not installed (not a Debian system)"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = subprocess.run(["apt-get", "download", "fortunes-min"], cwd=tmp,
                                 capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            return "apt-get download timed out (no network to the Debian mirror)"
        if run.returncode != 0:
            return f"apt-get download fails: {run.stderr.strip()[-200:]}"
    return None


@pytest.fixture(scope="session")
def built_corpus():
    """(train, held-out) of the real corpus, built (or resumed) first; skipped when apt cannot fetch."""
    root = corpus_dir()
    if not _all_parsed(root):
        reason = _apt_reason()
        if reason:
            pytest.skip(f"cannot build the corpus: {reason}")
    build(progress=False)
    return load("train"), load("heldout")


