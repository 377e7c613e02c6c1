"""Fixtures of the opt-in real-NDIF tier (`make test-ndif`; collected only with MECHSCOPE_NDIF=1).

One NDIF stack per session (`tests/ndif/stack.py`): ndif 0.1.2 from PyPI in the separate
``.venv-ndif``, every service on 127.0.0.1. A tiny random Llama and its tokenizer are saved
in a Hugging Face hub-cache layout under the fake repo id ``mechscope-test/tiny-llama``;
both the client (this process, ``HF_HUB_OFFLINE=1``) and the server resolve that same hub id
from the cache, so ``mechscope.load("mechscope-test/tiny-llama", remote=host)`` takes the
production path (hub id -> nnsight model key -> NDIF deployment) with no network.

Where the stack departs from production NDIF: the model actor runs on CPU (a test-only
subclass of ndif's BaseModelDeployment), Ray advertises one logical GPU, ndif runs on
Python 3.11 (installed with --ignore-requires-python), moto stands in for the object store,
and there is no authentication (any API key is accepted).

The session's API key is a planted string (`KEY`): the tests check it never shows up in a
result, a pickle, an exception, or the logs of the stack (the server receiving it in the
``ndif-api-key`` header is expected). At teardown every process of the stack is stopped by
PID and the fixture fails if one is left running or one of its ports is still listening.
Timings land in ``build/ndif/timings.json`` and in the terminal summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mechscope
from mechscope.models.tiny import tiny_hf_model, tiny_tokenizer
from tests.ndif.stack import REPO, NdifStack

KEY = "planted-ndif-key-3b9e1f7c"
HUB_ID = "mechscope-test/tiny-llama"
#: The user's deadline for one remote call in the equality tests (a warm call takes ~0.1 s).
DEADLINE = 60.0
OUT = REPO / "build" / "ndif"
TIMINGS: dict[str, float] = {}


def write_hub_repo(cache: Path, hub_id: str, family: str = "llama") -> int:
    """Save a tiny model + tokenizer as the hub cache's snapshot of ``hub_id``; its size in bytes."""
    org, name = hub_id.split("/")
    root = cache / f"models--{org}--{name}"
    commit = "0" * 40
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    hf = tiny_hf_model(family)
    hf.save_pretrained(snapshot)
    tiny_tokenizer().save_pretrained(snapshot)
    return sum(p.numel() * p.element_size() for p in hf.parameters())


@pytest.fixture(scope="session")
def ndif_stack() -> Iterator[NdifStack]:
    """A real NDIF stack on 127.0.0.1 serving ``mechscope-test/tiny-llama`` (see module doc).

    Departures from production: CPU model actor, one logical GPU, Python 3.11
    (--ignore-requires-python), moto instead of object storage, no auth.
    """
    import huggingface_hub.constants

    mp = pytest.MonkeyPatch()
    stack = NdifStack()
    client_logs = _KeptRecords()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(client_logs)
    root.setLevel(logging.DEBUG)
    t0 = time.monotonic()
    try:
        mp.setenv("NDIF_API_KEY", KEY)
        mp.delenv("NDIF_HOST", raising=False)
        mp.setenv("HF_HUB_CACHE", str(stack.hub_cache))
        # huggingface_hub read HF_HUB_CACHE at import (tests/conftest.py imported it already);
        # transformers and huggingface_hub look the constant up at call time.
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(stack.hub_cache))
        size = write_hub_repo(stack.hub_cache, HUB_ID)
        write_hub_repo(stack.hub_cache, "mechscope-test/tiny-gpt2", "gpt2")  # never deployed
        stack.start()
        key = mechscope.load(HUB_ID, remote=stack.host, deadline=DEADLINE).info["remote_model_key"]
        stack.deploy(HUB_ID, key, size)
        TIMINGS.update({f"stack_{k}": round(v, 2) for k, v in stack.timings.items()})
        TIMINGS["stack_to_model_ready_s"] = round(time.monotonic() - t0, 2)
        yield stack
    finally:
        report = stack.stop()
        TIMINGS["teardown_s"] = round(stack.timings.get("stop_s", 0.0), 2)
        leaks = _key_in_logs(stack)
        stack.cleanup(keep_logs=OUT / "logs")
        mp.undo()
        root.removeHandler(client_logs)
        root.setLevel(old_level)
        client_leaks = [line for line in client_logs.lines if KEY in line]
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "timings.json").write_text(json.dumps(TIMINGS, indent=2))
        assert report["left"] == [], f"processes of the NDIF stack still running: {report}"
        assert report["busy_ports"] == [], f"ports of the NDIF stack still listening: {report}"
        assert not leaks, f"the planted API key appears in the stack's logs: {leaks}"
        assert client_logs.lines, "no client-side log record was captured"
        assert not client_leaks, f"the planted API key appears in client logs: {client_leaks}"


#: How ndif 0.1.2 itself records the caller's key: as a field of its per-request event log
#: lines (``... request_id=... api_key=<key> stage=received``), server-side accounting.
NDIF_EVENT_FIELD = f"api_key={KEY}"


def _key_in_logs(stack: NdifStack) -> list[str]:
    """Lines of the stack's logs (its services', Ray's session logs) that show the planted key
    anywhere but in ndif's own ``api_key=`` event field: a traceback, an error message, a
    payload dump would be a leak through mechscope's requests."""
    hits = []
    for path in stack.workdir.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if KEY.encode() not in data:
            continue
        for line in data.decode(errors="replace").splitlines():
            if KEY in line.replace(NDIF_EVENT_FIELD, ""):
                hits.append(f"{path.relative_to(stack.workdir)}: {line[:300]}")
    return hits


class _KeptRecords(logging.Handler):
    """Every log record of the test process (mechscope, nnsight, httpx), formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a record that cannot format is not a leak
            pass


@pytest.fixture(scope="session")
def remote_model(ndif_stack: NdifStack) -> mechscope.Model:
    """``mechscope.load(HUB_ID, remote="http://127.0.0.1:PORT", deadline=60)``: runs on the stack."""
    return mechscope.load(HUB_ID, remote=ndif_stack.host, deadline=DEADLINE)


@pytest.fixture(scope="session")
def local_model(ndif_stack: NdifStack) -> mechscope.Model:
    """The same weights loaded locally from the same hub cache."""
    return mechscope.load(HUB_ID)


@pytest.fixture(autouse=True)
def _time_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    start = time.monotonic()
    yield
    TIMINGS[f"test:{request.node.name}"] = round(time.monotonic() - start, 3)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("NDIF tier timings (s)")
        for name, value in TIMINGS.items():
            terminalreporter.write_line(f"{name:70s} {value}")
        terminalreporter.write_line(f"written to {OUT / 'timings.json'}")

