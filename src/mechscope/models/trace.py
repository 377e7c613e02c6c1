"""How every mechscope trace is opened: gradient mode, and local vs remote execution, in one place.

`open_trace` is what `Model.trace` returns. The ``with`` statement must be written where
the trace body is (nnsight reads the block's source from the caller's frame), so the
tracer is returned, never wrapped in another context manager; ``grad=False`` (the default)
runs the forward pass under ``torch.no_grad()`` through a tracer subclass.

nnsight mounts a ``.save`` attribute on every Python object by default (its PYMOUNT
option); mechscope turns that off when it first imports nnsight, so results do not carry
it: values leave a trace through `save` (``nnsight.save``).
"""

from __future__ import annotations

from typing import Any

import nnsight
import torch
from nnsight.intervention.tracer import InterleavingTracer
from nnsight.schema.config import CONFIG

save = nnsight.save


def _unmount_save() -> None:
    CONFIG.APP.PYMOUNT = False
    try:
        from nnsight._c import unmount
    except ImportError:  # the optional C extension did not build: nothing was mounted
        return
    if unmount is not None:
        try:
            unmount("save")
        except Exception:  # noqa: BLE001 - already unmounted
            pass


_unmount_save()


class NoGradTracer(InterleavingTracer):
    """An nnsight tracer whose forward pass (run when the block exits) computes no gradients."""

    def __exit__(self, exc_type: Any, exc_value: Any, exc_traceback: Any) -> bool:
        with torch.no_grad():
            return super().__exit__(exc_type, exc_value, exc_traceback)


def trace_kwargs(model: Any) -> dict[str, Any]:
    """Keyword arguments for ``model.nn.trace(...)`` / ``.generate(...)``: where it runs.

    ``model.remote`` is False (local: no arguments), "local" (nnsight's real
    serialise/deserialise path run in-process: the offline test of remote execution), or
    True / an ``http(s)://`` host (NDIF: a backend that checks the API key before any network
    access, pings the host, submits without blocking and polls under the model's deadline;
    see `mechscope.models.remote`). Each remote trace needs its own backend, so call it
    right before opening the trace (`open_trace` does).
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


def open_trace(model: Any, inputs: Any, *, grad: bool = False, **kwargs: Any) -> Any:
    """``model.nn.trace(inputs, **kwargs)`` where the model runs (`trace_kwargs`), without
    gradients unless ``grad=True``. Enter it with ``with`` where the trace body is written."""
    if not grad and model.remote in (False, "local"):
        kwargs["tracer_cls"] = NoGradTracer
    return model.nn.trace(inputs, **kwargs, **trace_kwargs(model))
