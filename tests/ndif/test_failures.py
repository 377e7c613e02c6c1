"""Each way a remote call fails surfaces as ONE `mechscope.RemoteError` within the user's deadline.

Against the real NDIF stack (tests/ndif/stack.py; departures from production: CPU model
actor, one logical GPU, Python 3.11 with --ignore-requires-python, moto instead of object
storage, no auth) and real sockets on 127.0.0.1:

- closed port: the stack's host with a port nothing listens on;
- a server that never answers: a socket that accepts connections and says nothing;
- HTTP 503: a second instance of ndif's real API whose dispatcher cannot reach Ray, so ndif
  itself answers ``POST /request`` with 503 "compute backend is reconnecting";
- a remote user error: a user's metric that raises on the server (IndexError);
- a model the stack does not serve.

Each asserts the message names the host, NDIF_HOST and NDIF_API_KEY (what to check), that the
planted API key appears in no message, repr or chained exception, and the elapsed time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import mechscope
from mechscope.errors import RemoteError
from mechscope.metrics import BoundMetric
from tests.ndif.conftest import HUB_ID, KEY
from tests.ndif.stack import LOOPBACK, NdifStack, free_port

PROMPT = "The cat sat on the"
SLACK = 2.0  # seconds past the deadline a failure may take to surface


def _model(host: str, deadline: float, hub_id: str = HUB_ID) -> mechscope.Model:
    return mechscope.load(hub_id, remote=host, deadline=deadline)


def _check(err: pytest.ExceptionInfo[RemoteError], host: str) -> str:
    text = str(err.value)
    print(f"--- RemoteError for {host}:\n{text}")
    assert host in text and "NDIF_HOST" in text and "NDIF_API_KEY" in text, text
    assert KEY not in text and KEY not in repr(err.value)
    for cause in (err.value.__cause__, err.value.__context__):
        assert cause is None or KEY not in str(cause)
    return text


def _fails(model: mechscope.Model, call=None) -> tuple[pytest.ExceptionInfo[RemoteError], float]:
    start = time.monotonic()
    with pytest.raises(RemoteError) as err:
        (call or (lambda m: mechscope.activations(m, PROMPT)))(model)
    return err, time.monotonic() - start


def test_closed_port(ndif_stack: NdifStack):
    host = f"http://{LOOPBACK}:{free_port()}"
    err, elapsed = _fails(_model(host, deadline=5))
    assert "could not be reached" in _check(err, host)
    assert elapsed < 1.0, elapsed


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def test_server_that_never_answers(silent_server: str):
    deadline = 3.0
    err, elapsed = _fails(_model(silent_server, deadline=deadline),
                          lambda m: mechscope.ablate(m, PROMPT, mechscope.heads(0, [0])))
    assert "did not answer" in _check(err, silent_server)
    assert deadline - 0.5 < elapsed < deadline + SLACK, elapsed


@pytest.fixture
def unconnected_api(ndif_stack: NdifStack) -> Iterator[str]:
    """A second copy of ndif's API on 127.0.0.1 (same Redis server, its own database 1)
    whose dispatcher points at a Ray port nothing listens on: it answers /ping, and ndif
    answers every request with its own 503."""
    port = free_port()
    name = f"api-unconnected-{port}"
    proc = ndif_stack.start_api(
        name, port,
        NDIF_REDIS_URL=f"redis://{LOOPBACK}:{ndif_stack.ports['redis']}/1",
        NDIF_RAY_ADDRESS=f"ray://{LOOPBACK}:{free_port()}",
    )
    host = f"http://{LOOPBACK}:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        assert proc.poll() is None, ndif_stack.tail(name)
        try:
            if httpx.get(f"{host}/ping", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        pytest.fail(f"the second API did not come up:\n{ndif_stack.tail(name)}")
    try:
        yield host
    finally:
        ndif_stack.stop_process(name)


def test_http_503_from_ndif(unconnected_api: str):
    deadline = 10.0
    err, elapsed = _fails(_model(unconnected_api, deadline=deadline))
    text = _check(err, unconnected_api)
    assert "503" in text and "reconnecting" in text, text
    assert elapsed < 2.0, elapsed


def test_remote_user_error(ndif_stack: NdifStack):
    """A user's metric written for one prompt at a time (``.reshape(1)``) works on the clean
    run, computed locally, and fails on the batched patched run, which executes on the server:
    one RemoteError carrying the server's traceback, at once."""
    deadline = 30.0
    model = _model(ndif_stack.host, deadline=deadline)
    good, bad = model.to_single_token(" the"), model.to_single_token(" of")
    one_prompt_only = BoundMetric("logit diff (one prompt at a time)",
                                  lambda logits, _clean: (logits[:, good] - logits[:, bad]).reshape(1))
    err, elapsed = _fails(model, lambda m: mechscope.patch(m, PROMPT, "The dog sat on the",
                                                           one_prompt_only, progress=False))
    text = _check(err, ndif_stack.host)
    assert "reported an error" in text and "RuntimeError" in text and "reshape" in text, text
    assert elapsed < 10.0, elapsed


def test_model_not_served(ndif_stack: NdifStack):
    """A hub id the stack has in its cache but does not serve: one RemoteError, not a hang."""
    deadline = 20.0
    model = _model(ndif_stack.host, deadline=deadline, hub_id="mechscope-test/tiny-gpt2")
    err, elapsed = _fails(model)
    _check(err, ndif_stack.host)
    assert elapsed < deadline + SLACK, elapsed
