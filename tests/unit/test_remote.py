"""The remote (NDIF) path: one clear RemoteError within the deadline, and the key never leaks.

No network exists here: every server is a thread on 127.0.0.1 that stops when its test ends.
The success path runs against a small fake of NDIF's non-blocking protocol (submit, poll,
download); that the trace itself survives serialisation is what ``remote="local"`` tests.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nnsight
import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import ModelLoadError, RemoteError
from mechscope.models.trace import trace_kwargs
from tests.helpers import model_fingerprint

KEY = "planted-secret-key-7f3a9c"
PROMPT = "The cat sat"


@pytest.fixture
def no_key(monkeypatch):
    from nnsight.schema.config import CONFIG

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", KEY)


def _remote(model, host, deadline=2.0):
    model.remote = True
    model.info.update(remote_host=host, remote_deadline=deadline, remote_model_key="test:tiny")
    return model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(err: pytest.ExceptionInfo, host: str) -> str:
    text = str(err.value)
    assert host in text and "NDIF_HOST" in text and "NDIF_API_KEY" in text
    assert KEY not in text and KEY not in repr(err.value)
    for cause in (err.value.__cause__, err.value.__context__):
        assert cause is None or KEY not in str(cause)
    return text


def test_missing_key_fails_without_network(tiny_llama, no_key, monkeypatch):
    import httpx

    def no_network(*a, **k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    _remote(tiny_llama, "http://127.0.0.1:9")
    with pytest.raises(RemoteError) as err:
        mechscope.ablate(tiny_llama, PROMPT, mechscope.neurons(0, [1]))
    assert "needs an API key" in _check(err, "127.0.0.1:9")


def test_closed_port_fails_fast(tiny_llama, with_key):
    host = f"http://127.0.0.1:{_free_port()}"
    _remote(tiny_llama, host)
    start = time.monotonic()
    with pytest.raises(RemoteError) as err:
        mechscope.activations(tiny_llama, PROMPT)
    assert time.monotonic() - start < 2.0
    assert "could not be reached" in _check(err, host)


def test_silent_server_fails_within_deadline(tiny_llama, with_key):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept_and_say_nothing():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    _remote(tiny_llama, host, deadline=1.5)
    before = model_fingerprint(tiny_llama)
    try:
        start = time.monotonic()
        with pytest.raises(RemoteError) as err:
            mechscope.ablate(tiny_llama, PROMPT, mechscope.heads(0, [0]))
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        thread.join(2)
        for c in held:
            c.close()
        listener.close()
    assert 1.0 < elapsed < 3.0, elapsed
    assert "did not answer" in _check(err, host)
    assert model_fingerprint(tiny_llama) == before


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 driven by a routing function; stopped on exit."""

    def __init__(self, route):
        outer = self
        self.seen: list[tuple[str, str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def _go(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append((method, self.path, dict(self.headers)))
                status, ctype, payload = route(method, self.path, body, outer)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._go("GET")

            def do_POST(self):
                self._go("POST")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


def _json(status, obj):
    return status, "application/json", json.dumps(obj).encode()


def test_503_everywhere_gives_its_detail(tiny_llama, with_key):
    with _Server(lambda *a: _json(503, {"detail": "NDIF is down for maintenance"})) as srv:
        _remote(tiny_llama, srv.host)
        with pytest.raises(RemoteError) as err:
            mechscope.activations(tiny_llama, PROMPT)
    text = _check(err, srv.host)
    assert "503" in text and "NDIF is down for maintenance" in text


def _failure_after_ping(model, reply, call) -> tuple[str, _Server]:
    """Run ``call()`` on ``model`` against a server that answers pings and ``reply``s the rest:
    the one `RemoteError`'s text (checked by `_check`) and the server."""
    def route(method, path, body, srv):
        if path == "/ping":
            return 200, "text/plain", b"pong"
        return reply

    with _Server(route) as srv:
        _remote(model, srv.host)
        with pytest.raises(RemoteError) as err:
            call()
    return _check(err, srv.host), srv


def test_503_on_submit_gives_its_detail_and_key_is_sent_only_as_header(tiny_llama, with_key):
    text, srv = _failure_after_ping(
        tiny_llama, _json(503, {"detail": f"model test:tiny is not deployed (key {KEY} accepted)"}),
        lambda: mechscope.ablate(tiny_llama, PROMPT, mechscope.neurons(1, [2])))
    # the server echoed the key: it is scrubbed
    assert "not deployed" in text and "***" in text
    post = [s for s in srv.seen if s[0] == "POST"]
    assert post and post[0][1] == "/request"
    assert {k.lower(): v for k, v in post[0][2].items()}["ndif-api-key"] == KEY


def _result_blob(values: dict) -> bytes:
    from nnsight.schema.config import CONFIG

    buf = io.BytesIO()
    torch.save(values, buf)
    data = buf.getvalue()
    if CONFIG.API.COMPRESS:
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    return data


def test_submit_poll_download_pushes_saved_values(tiny_llama, with_key):
    canned = torch.arange(6.0).reshape(2, 3)
    polls = []

    def route(method, path, body, srv):
        if path == "/ping":
            return 200, "text/plain", b"pong"
        if method == "POST" and path == "/request":
            return _json(200, {"id": "job-1", "status": "RECEIVED"})
        if path == "/response/job-1":
            polls.append(1)
            if len(polls) == 1:
                return _json(404, {"detail": "no status yet"})
            if len(polls) == 2:
                return _json(200, {"id": "job-1", "status": "RUNNING"})
            return _json(200, {"id": "job-1", "status": "COMPLETED", "data": f"{srv.host}/result/job-1"})
        if path == "/result/job-1":
            return 200, "application/octet-stream", _result_blob({"out": canned})
        return _json(404, {"detail": "unknown"})

    model = _remote(tiny_llama, "", deadline=5.0)
    ids = model.to_tokens(PROMPT)
    with _Server(route) as srv:
        model.info["remote_host"] = srv.host
        with torch.no_grad(), model.nn.trace(ids, **trace_kwargs(model)):
            out = nnsight.save(model.nn.lm_head.output)
    assert torch.equal(out, canned)
    assert len(polls) == 3


def test_job_that_never_finishes_hits_the_deadline(tiny_llama, with_key):
    def route(method, path, body, srv):
        if path == "/ping":
            return 200, "text/plain", b"pong"
        if method == "POST":
            return _json(200, {"id": "job-9", "status": "QUEUED"})
        return _json(200, {"id": "job-9", "status": "RUNNING"})

    with _Server(route) as srv:
        _remote(tiny_llama, srv.host, deadline=4.0)
        start = time.monotonic()
        with pytest.raises(RemoteError) as err:
            mechscope.activations(tiny_llama, PROMPT)
        elapsed = time.monotonic() - start
    assert 3.9 <= elapsed < 6.0  # the deadline, not a hang (serialising may take ~1 s)
    text = _check(err, srv.host)
    assert "deadline" in text and "job-9" in text


def test_server_side_error_is_one_remote_error(tiny_llama, with_key):
    text, _ = _failure_after_ping(
        tiny_llama, _json(200, {"id": "job-2", "status": "ERROR", "description": "IndexError: out of range"}),
        lambda: mechscope.activations(tiny_llama, PROMPT))
    assert "IndexError: out of range" in text


def test_load_remote_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="config and tokenizer from the Hugging Face Hub"):
        mechscope.load("EleutherAI/pythia-70m", remote=True, deadline=5)
    assert time.monotonic() - start < 10
    with pytest.raises(ModelLoadError, match="hub id"):
        mechscope.load("./local/dir", remote=True)
    with pytest.raises(ModelLoadError, match="only for remote"):
        mechscope.load("EleutherAI/pythia-70m", deadline=5)


def test_load_remote_local_runs_the_serialised_path():
    hf = mechscope.models.tiny.tiny_hf_model("gpt2")
    tok = mechscope.models.tiny.tiny_tokenizer()
    sim = mechscope.load(hf, tokenizer=tok, remote="local")
    assert sim.remote == "local"
    plain = mechscope.load(hf, tokenizer=tok)
    a = mechscope.ablate(sim, PROMPT, mechscope.layer(0, "attn"))
    b = mechscope.ablate(plain, PROMPT, mechscope.layer(0, "attn"))
    np.testing.assert_allclose(a.ablated_logits, b.ablated_logits, atol=1e-6)


_LOAD_WITHIN_DEADLINE = """
import json, sys, time
import mechscope
start = time.monotonic()
try:
    mechscope.load("EleutherAI/pythia-70m", remote=True, deadline=float(sys.argv[1]))
    out = {"error": None}
except Exception as err:
    out = {"error": type(err).__name__, "message": str(err)}
out["elapsed"] = time.monotonic() - start
print(json.dumps(out))
"""


def test_load_remote_preparation_honours_the_deadline(tmp_path):
    """With HF_HUB_OFFLINE unset and a Hub that never answers, load(remote=True, deadline=2)
    gives up after ~2 s with one clear error (huggingface_hub alone retries for ~50 s).

    A subprocess: tests/conftest.py set HF_HUB_OFFLINE=1 before huggingface_hub was imported
    here, and it is read once at import. The Hub is a local socket that accepts connections
    and never replies (HF_ENDPOINT), so no network is needed and none is used.
    """
    import os
    import subprocess
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{listener.getsockname()[1]}",
               HF_HOME=str(tmp_path / "hf"), NDIF_API_KEY=KEY)
    try:
        done = subprocess.run([sys.executable, "-c", _LOAD_WITHIN_DEADLINE, "2"], env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] == "ModelLoadError", out
    assert 1.5 < out["elapsed"] < 4.0, out
    text = out["message"]
    assert "'EleutherAI/pythia-70m'" in text and "deadline of 2 s" in text
    assert "HF_HUB_OFFLINE=1" in text and KEY not in text


def test_load_remote_offline_from_the_hub_cache(tmp_path, monkeypatch, with_key):
    """HF_HUB_OFFLINE=1 with the model in the local Hugging Face cache: the config and tokenizer
    come from there and nnsight's model key takes the hub id as spelled (the Hub, which would
    canonicalise it, cannot be asked). What the real-NDIF tier (tests/ndif) relies on."""
    import huggingface_hub.constants

    from mechscope.models.tiny import tiny_hf_model, tiny_tokenizer

    snapshot = tmp_path / "models--acme--tiny-gpt2" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--acme--tiny-gpt2" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-gpt2" / "refs" / "main").write_text("0" * 40)
    tiny_hf_model("gpt2").save_pretrained(snapshot)
    tiny_tokenizer().save_pretrained(snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = mechscope.load("acme/tiny-gpt2", remote="http://127.0.0.1:9", deadline=30)
    assert model.remote is True and model.info["remote_host"] == "http://127.0.0.1:9"
    assert next(model.hf.parameters()).device.type == "meta"
    prefix, key = model.info["remote_model_key"].split(":", 1)
    assert prefix == "nnsight.modeling.transformers.TransformersModel"
    assert json.loads(key) == {"repo_id": "acme/tiny-gpt2", "revision": None, "task": "text-generation"}
    assert model.str_tokens("The cat") == ["The", " cat"]
    assert KEY not in repr(model.info)
