"""Remote execution on NDIF through nnsight, with a deadline and one clear error.

``mechscope.load("org/model", remote=True, deadline=60)`` builds the model on nnsight's meta
device (the weights stay on NDIF; the Hugging Face config and tokenizer are fetched from the
Hub) and every mechscope call on it then runs on NDIF. nnsight alone can wait forever on a
server that accepts a connection and never answers, so each trace here:

1. checks an API key is set (``NDIF_API_KEY`` or nnsight's config) -- no network otherwise;
2. pings ``{host}/ping`` with a short timeout;
3. submits the job without blocking (HTTP POST, no websocket) and polls
   ``{host}/response/{job_id}`` until the result lands or the deadline passes.

Anything that goes wrong is raised as ONE `mechscope.RemoteError` naming the host and the
``NDIF_HOST`` / ``NDIF_API_KEY`` settings; the key itself never appears in an error, a result,
a repr or widget state. Giving up at the deadline does not cancel the job on the server.

Settings live in ``model.info``: ``remote_host`` (None: ``NDIF_HOST`` or nnsight's default),
``remote_deadline`` (seconds for one whole call) and ``remote_model_key`` (nnsight's model
key, computed once at load time).

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> model.remote = "local"        # nnsight's real serialise/deserialise path, in-process
>>> mechscope.activations(model, "hello").values.shape[0] == model.n_layers
True
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import ModelLoadError, RemoteError

#: Seconds one remote call may take in all (preflight, submit, waiting, download).
DEFAULT_DEADLINE = 120.0
#: Seconds the preflight ``GET {host}/ping`` may take at most.
PING_TIMEOUT = 5.0
#: First and longest pause between two polls of a submitted job.
POLL_START, POLL_MAX = 0.05, 1.0

_KEY_HELP = "set the environment variable NDIF_API_KEY to your NDIF API key"


def resolve_host(model: Any = None) -> str:
    """The NDIF host a model's calls go to: its own, else ``NDIF_HOST``, else nnsight's default."""
    host = None
    if model is not None:
        host = model.info.get("remote_host")
        if host is None and isinstance(model.remote, str) and model.remote != "local":
            host = model.remote
    if not host:
        host = os.environ.get("NDIF_HOST")
    if not host:
        from nnsight.schema.config import CONFIG

        host = CONFIG.API.HOST
    return str(host).rstrip("/")


def _api_key() -> str | None:
    key = os.environ.get("NDIF_API_KEY")
    if key:
        return key
    from nnsight.schema.config import CONFIG

    return CONFIG.API.APIKEY or None


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text


def remote_error(host: str, problem: str, secret: str | None = None) -> RemoteError:
    """The one error users see: what happened, at which host, and the two settings to check."""
    env_host = os.environ.get("NDIF_HOST")
    key_state = "set" if _api_key() else "not set"
    return RemoteError(_scrub(
        f"NDIF at {host} {problem}\n"
        f"Check the host (environment variable NDIF_HOST: {env_host or 'not set'}; or "
        f"load(..., remote='https://host')) and the API key (NDIF_API_KEY: {key_state}). "
        "To run the same code path offline, set model.remote = 'local'.",
        secret,
    ))


def _detail(response: Any) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "detail" in body:
            return str(body["detail"])
        return str(body)
    except ValueError:
        return (response.text or "").strip()[:500]


def preflight(host: str, timeout: float, secret: str | None = None) -> None:
    """``GET {host}/ping`` within ``timeout`` seconds, else a `RemoteError`."""
    import httpx

    try:
        response = httpx.get(f"{host}/ping", timeout=httpx.Timeout(timeout))
    except httpx.TimeoutException:
        raise remote_error(host, f"did not answer a ping within {timeout:.3g} s.", secret) from None
    except httpx.HTTPError as err:
        raise remote_error(host, f"could not be reached ({type(err).__name__}: {err}).", secret) from None
    if response.status_code >= 400:
        raise remote_error(
            host, f"answered the ping with HTTP {response.status_code}: {_detail(response)}", secret
        )


def register_by_value() -> None:
    """Ship mechscope's own code with every remote request (idempotent).

    cloudpickle pickles functions of an installed package by reference; NDIF's server has
    no mechscope, so mechscope is registered for pickling by value (``nnsight.register``).
    """
    from nnsight.ndif import register

    register("mechscope")


def _backend_class() -> type:
    from nnsight.intervention.backends.remote import RemoteBackend

    class DeadlineRemoteBackend(RemoteBackend):
        """nnsight's non-blocking submit + poll, bounded by one deadline for the whole call."""

        def __init__(self, model_key: str | None, key_fn: Any, host: str, api_key: str,
                     deadline: float) -> None:
            super().__init__("", host=host, api_key=api_key, blocking=False)
            self._model_key, self._key_fn = model_key, key_fn
            self.deadline = float(deadline)

        def __repr__(self) -> str:  # never show the key
            return f"DeadlineRemoteBackend(host={self.host!r}, deadline={self.deadline})"

        def _serialize(self, tracer: Any) -> bytes:
            # NDIF does not have mechscope installed: the functions a trace calls (adapters,
            # metrics) must travel by value, else the server fails with "No module named
            # 'mechscope'" (nnsight ships only modules it finds uninstalled).
            register_by_value()
            return bytes(super()._serialize(tracer))

        def _left(self, end: float) -> float:
            left = end - time.monotonic()
            if left <= 0:
                where = f" (job {self.job_id} may still run there)" if self.job_id else ""
                raise remote_error(
                    self.host, f"did not finish within the deadline of {self.deadline:.3g} s{where}. "
                    "Raise it with load(..., deadline=seconds) or model.info['remote_deadline'].",
                    self.api_key,
                )
            return left

        def __call__(self, tracer: Any = None) -> Any:
            from nnsight.intervention.backends.remote import RemoteError as NnsightRemoteError

            end = time.monotonic() + self.deadline
            try:
                preflight(self.host, min(PING_TIMEOUT, self._left(end)), self.api_key)
                self.model_key = self._model_key or self._key_fn()
                result = self._run(tracer, end)
            except RemoteError:
                raise
            except NnsightRemoteError as err:
                raise remote_error(self.host, f"reported an error: {err}", self.api_key) from None
            except Exception as err:  # noqa: BLE001 - every failure becomes one clear RemoteError
                import httpx

                if isinstance(err, httpx.TimeoutException):
                    self._left(end)  # the deadline error if it has passed
                raise remote_error(
                    self.host, f"failed: {type(err).__name__}: {err}", self.api_key
                ) from None
            self._push(result, tracer)
            return result

        def _run(self, tracer: Any, end: float) -> Any:
            import httpx
            from nnsight.schema.request import RequestModel
            from nnsight.schema.response import ResponseModel

            blob = self._serialize(tracer)
            request = RequestModel(model_key=self.model_key, compress=self.compress, env=self.env)
            headers = {"ndif-timestamp": repr(time.time()), "ndif-api-key": self.api_key}
            with httpx.Client() as client:
                http = client.post(
                    f"{self.host}/request", data={"data": request.metadata()},
                    files={"blob": ("request", blob, "application/octet-stream")},
                    headers=headers, timeout=httpx.Timeout(self._left(end)),
                )
                if http.status_code >= 400:
                    raise remote_error(self.host, f"refused the request with HTTP "
                                       f"{http.status_code}: {_detail(http)}", self.api_key)
                response = ResponseModel.model_validate_json(http.text)
                self.job_id = response.id
                pause = POLL_START
                while True:
                    if self.note(response):
                        data = response.data
                        if isinstance(data, bytes | bytearray):
                            return self.finalize(bytes(data))
                        got = client.get(str(data), timeout=httpx.Timeout(self._left(end)))
                        got.raise_for_status()
                        return self.finalize(got.content)
                    time.sleep(min(pause, self._left(end)))
                    pause = min(pause * 2, POLL_MAX)
                    http = client.get(f"{self.host}/response/{self.job_id}",
                                      headers={"ndif-api-key": self.api_key},
                                      timeout=httpx.Timeout(self._left(end)))
                    if http.status_code == 404:
                        continue  # no status recorded yet
                    if http.status_code >= 400:
                        raise remote_error(self.host, f"answered a poll with HTTP "
                                           f"{http.status_code}: {_detail(http)}", self.api_key)
                    response = ResponseModel.model_validate_json(http.text)

    return DeadlineRemoteBackend


def remote_backend(model: Any) -> Any:
    """The nnsight backend for one trace of a remote model (checks the key first, no network)."""
    host = resolve_host(model)
    key = _api_key()
    if not key:
        raise remote_error(host, f"needs an API key and none is set: {_KEY_HELP}.")
    if not host.startswith(("http://", "https://")):
        raise remote_error(host, "is not an http(s) URL.")
    deadline = float(model.info.get("remote_deadline", DEFAULT_DEADLINE))
    return _backend_class()(model.info.get("remote_model_key"), model.nn.to_model_key, host, key,
                            deadline)


def _hub_offline() -> bool:
    """Whether huggingface_hub runs offline (it reads ``HF_HUB_OFFLINE`` once, at import)."""
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _model_key(nn_model: Any, hub_id: str) -> str:
    """nnsight's model key; offline, the hub id as spelled (the Hub cannot canonicalise it)."""
    try:
        return str(nn_model.to_model_key())  # asks the Hub for the canonical id
    except Exception:
        if not _hub_offline():
            raise
    import nnsight.modeling.huggingface as nnsight_hf

    # With HF_HUB_OFFLINE=1 and the config in the local cache, nnsight's one Hub call
    # (canonicalising the id) cannot be made: take the id as given. Its cache is private;
    # without it the error above stands.
    cache = getattr(nnsight_hf, "_ID_CACHE", None)
    if not isinstance(cache, dict):
        raise ModelLoadError(f"this nnsight version cannot build a model key for {hub_id!r} offline.")
    cache.setdefault(hub_id, hub_id)
    return str(nn_model.to_model_key())


def _prepare(hub_id: str, kwargs: dict[str, Any]) -> tuple[Any, Any, str]:
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoTokenizer

    from .model import prepare_tokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(hub_id, **kwargs))
    # mechscope studies causal LMs: naming the task saves a Hub lookup (impossible offline)
    # and makes it part of the model key as it is for every model mechscope loads.
    nn_model = TransformersModel(hub_id, tokenizer=tokenizer, task="text-generation", **kwargs)
    return tokenizer, nn_model, _model_key(nn_model, hub_id)


def _prepare_within(hub_id: str, kwargs: dict[str, Any], deadline: float) -> tuple[Any, Any, str]:
    """`_prepare` in a daemon thread, given up after ``deadline`` seconds.

    huggingface_hub retries an unreachable Hub for about 50 s; the user's deadline bounds
    the whole load. A thread given up on finishes (or fails) on its own and is discarded.
    """
    import threading

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = _prepare(hub_id, kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=work, name=f"mechscope-prepare-{hub_id}", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise ModelLoadError(
            f"could not prepare {hub_id!r} for remote execution within the deadline of "
            f"{deadline:.3g} s: its config and tokenizer did not arrive from the Hugging Face Hub "
            "(no network?). Set HF_HUB_OFFLINE=1 to use only the local Hugging Face cache, or "
            "raise load(..., deadline=seconds)."
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def load_remote(hub_id: str, *, revision: str | None, remote: bool | str, deadline: float) -> Any:
    """Build a `Model` whose weights stay on NDIF: meta-device module, real config and tokenizer.

    Fetching the config and tokenizer (and nnsight's model key) is bounded by ``deadline``
    too. With ``HF_HUB_OFFLINE=1`` they come from the local Hugging Face cache and the model
    key uses the hub id as spelled.
    """
    from .adapters import adapter_for
    from .model import Model

    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
        raise ModelLoadError(f"deadline must be a positive number of seconds, got {deadline!r}.")
    if not isinstance(hub_id, str) or hub_id.count("/") != 1 or hub_id.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"remote=True needs a Hugging Face hub id such as 'meta-llama/Llama-3.1-8B', got "
            f"{hub_id!r}: NDIF runs models by their hub id, not local files or objects."
        )
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    try:
        tokenizer, nn_model, key = _prepare_within(hub_id, kwargs, float(deadline))
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised as one clear error
        offline = _hub_offline() or os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"could not prepare {hub_id!r} for remote execution: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}\n"
            "Note: a remote model still needs its config and tokenizer from the Hugging Face Hub"
            + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (no network?)") + "."
        ) from None
    host = remote if isinstance(remote, str) else None
    return Model(
        nn=nn_model, hf=nn_model._module, tokenizer=tokenizer, adapter=adapter_for(nn_model._module),
        name=hub_id, remote=True,
        info={"remote_host": host, "remote_deadline": float(deadline), "remote_model_key": key},
    )
