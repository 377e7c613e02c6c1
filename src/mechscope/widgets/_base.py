"""Base class for mechscope widgets: bundle lookup, text/plain and the offline HTML snapshot."""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path
from typing import Any

import anywidget

from ..errors import MechscopeError
from .codec import to_json_safe

STATIC = Path(__file__).resolve().parent.parent / "static"

#: Above this many bytes of state the offline HTML snapshot is left out (text/plain remains).
FALLBACK_MAX_BYTES = 8 * 1024 * 1024


def bundle_path(name: str) -> Path:
    return STATIC / f"{name}.js"


def _script_json(value: Any) -> str:
    """JSON safe to inline in a <script>: no '<', '>', '&', U+2028 or U+2029 survive."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


class MechscopeWidget(anywidget.AnyWidget):
    """An anywidget whose front end is ``static/<_bundle>.js`` (built from ``js/widgets/``)."""

    _bundle: str = ""
    #: traits that hold encoded arrays ({dtype, shape, data}) for the offline snapshot.
    _array_traits: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        path = bundle_path(self._bundle)
        if not path.is_file():
            raise MechscopeError(
                f"the {self._bundle} widget's JavaScript bundle is missing ({path}). Build it with "
                "`npm install && npm run build` in the repository, or reinstall with "
                "`pip install -e .` (which builds it)."
            )
        self._esm = path.read_text(encoding="utf-8")
        super().__init__(**kwargs)

    # ---- representations --------------------------------------------------------------
    def summary(self) -> str:
        """One-paragraph text description (text/plain, and what untrusted viewers see)."""
        return f"<{type(self).__name__}>"

    def snapshot_state(self) -> dict[str, Any]:
        """Synced state (minus the ESM source) as JSON-safe values for the offline snapshot."""
        state = self.get_state()
        out: dict[str, Any] = {}
        for key, value in state.items():
            if key.startswith("_"):
                continue
            if key in self._array_traits and isinstance(value, dict) and "data" in value:
                value = to_json_safe(value)
            out[key] = value
        return out

    def offline_html(self) -> str | None:
        """A self-contained HTML snapshot that renders this widget with no kernel and no network."""
        state = self.snapshot_state()
        state_json = _script_json(state)
        if len(state_json) > FALLBACK_MAX_BYTES:
            return None
        esm = _script_json(bundle_path(self._bundle).read_text(encoding="utf-8"))
        uid = f"mechscope-{uuid.uuid4().hex[:12]}"
        summary = html.escape(self.summary())
        return (
            f'<div id="{uid}" class="mechscope-snapshot" data-mechscope-widget="{self._bundle}">'
            f'<pre class="mechscope-summary">{summary}</pre></div>\n'
            f"<script type=\"module\">\n"
            f"const el = document.getElementById({json.dumps(uid)});\n"
            f"if (el && !el.dataset.rendered) {{\n"
            f"  el.dataset.rendered = '1';\n"
            f"  const state = {state_json};\n"
            f"  const src = {esm};\n"
            f"  const b64 = (s) => {{ const b = atob(s); const u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return new DataView(u.buffer); }};\n"
            f"  for (const k of {json.dumps(list(self._array_traits))}) {{ if (state[k] && typeof state[k].data === 'string') state[k] = {{...state[k], data: b64(state[k].data)}}; }}\n"
            f"  const listeners = {{}};\n"
            f"  const model = {{ get: (k) => state[k], set: (k, v) => {{ state[k] = v; (listeners['change:' + k] || []).forEach((f) => f()); }},\n"
            f"    on: (e, f) => {{ (listeners[e] = listeners[e] || []).push(f); }}, off: () => {{}}, save_changes: () => {{}}, send: () => {{}} }};\n"
            f"  const url = URL.createObjectURL(new Blob([src], {{ type: 'text/javascript' }}));\n"
            f"  import(url).then((mod) => {{ el.replaceChildren(); (mod.default.render)({{ model, el }}); el.dataset.ready = '1'; }})\n"
            f"    .catch((err) => {{ const p = document.createElement('pre'); p.textContent = 'mechscope snapshot failed: ' + err; el.appendChild(p); }});\n"
            f"}}\n"
            f"</script>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:  # type: ignore[override]
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/plain"] = self.summary()
        snapshot = self.offline_html()
        if snapshot is not None:
            data["text/html"] = snapshot
        return data, metadata

    def __repr__(self) -> str:
        return self.summary()
