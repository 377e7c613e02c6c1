"""Requests from a widget's front end: ``{"kind", "id", ...}`` messages, dispatched by kind.

The front end (``js/lib/request.ts``) numbers its requests; a handler named in
``_request_handlers`` gets the message and its id, and answers in a reply trait that names the
id it answers as ``client_id`` (None for a request made from Python), so a view shows only the
reply to its newest request. SteeringPlayground: ``{"kind": "generate", "prompt",
"coefficient"}`` answered in ``status``; PatchingMap: ``{"kind": "select", "cell"}`` answered
in ``detail``.
"""

from __future__ import annotations

from typing import Any, ClassVar


def request_id(content: dict[str, Any]) -> int | None:
    """The request's id (an int), or None when it has none."""
    rid = content.get("id")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


class Requests:
    """Mixin for a widget: ``_request_handlers`` maps a message ``kind`` to the name of the
    method ``(content, request_id)`` that handles it; other messages are ignored."""

    _request_handlers: ClassVar[dict[str, str]] = {}

    def _listen_for_requests(self) -> None:
        self.on_msg(self._on_msg)  # type: ignore[attr-defined]

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        name = self._request_handlers.get(str(content.get("kind")))
        if name is not None:
            getattr(self, name)(content, request_id(content))
