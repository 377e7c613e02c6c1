"""How every mechscope trace is opened: one place that decides local vs remote execution."""

from __future__ import annotations

from typing import Any


def trace_kwargs(model: Any) -> dict[str, Any]:
    """Keyword arguments for ``model.nn.trace(...)``: ``remote=`` when the model is remote.

    ``model.remote`` is False (local), "local" (nnsight's real serialise/deserialise path run
    in-process: the offline test of remote execution) or True (NDIF).
    """
    return {"remote": model.remote} if model.remote else {}
