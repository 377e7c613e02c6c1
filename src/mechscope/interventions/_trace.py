"""How every mechscope trace is opened: one place that decides local vs remote execution."""

from __future__ import annotations

from typing import Any


def trace_kwargs(model: Any) -> dict[str, Any]:
    """Keyword arguments for ``model.nn.trace(...)``.

    ``model.remote`` is False (local: no arguments), "local" (nnsight's real
    serialise/deserialise path run in-process: the offline test of remote execution), or
    True / an ``http(s)://`` host (NDIF: a backend that checks the API key before any network
    access, pings the host, submits without blocking and polls under the model's deadline;
    see `mechscope.interventions.remote`). Call it right before opening the trace: each
    remote trace needs its own backend.
    """
    if not model.remote:
        return {}
    from .remote import register_by_value, remote_backend

    if model.remote == "local":
        # as for NDIF (which has no mechscope): mechscope's own functions travel by value, so
        # this offline path serialises exactly what a real request carries
        register_by_value()
        return {"remote": "local"}

    return {"backend": remote_backend(model)}
