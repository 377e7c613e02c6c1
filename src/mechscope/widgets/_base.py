"""Base class for mechscope widgets: the bundle, text/plain and the offline HTML snapshot.

Each widget class names its front end once, ``_esm = STATIC / "<name>.js"`` (built from
``js/widgets/<name>.ts``); anywidget reads it (and hot-reloads it with ``ANYWIDGET_HMR=1``). A
missing bundle raises `MechscopeError` when a widget is made, not when mechscope is imported.

Each array travels and is stored once. A live display carries the widget view (its state,
arrays as binary buffers, goes through the comm) and, as ``text/html``, only a *placeholder*:
the summary and the model id (``data-mechscope-model``), no data and no script. The offline
snapshot is made where a page is published, from the widget state stored in the notebook
(`mechscope.publish.stored`), or from a live widget with `MechscopeWidget.offline_html`.

A snapshot (`snapshot_html`) inlines, as JSON with ``<``, ``>``, ``&``, U+2028 and U+2029
escaped: the state (arrays as base64, found from their `ArrayTrait` type), the widget's bundle
and the snapshot runtime (``static/snapshot.js``, from ``js/snapshot.ts``), which renders the
widget with a model that needs no kernel.
"""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import anywidget

from ..errors import MechscopeError
from .traits import ArrayTrait

STATIC = Path(__file__).resolve().parent.parent / "static"

#: Above this many bytes of state the offline HTML snapshot is left out (text/plain remains).
FALLBACK_MAX_BYTES = 8 * 1024 * 1024

#: The snapshot runtime (js/snapshot.ts): ``mount(el, state, src, arrays)``.
SNAPSHOT_RUNTIME = STATIC / "snapshot.js"

_MISSING = "// mechscope: this widget's bundle was missing when its class was defined\n"


def bundle_path(name: str) -> Path:
    return STATIC / f"{name}.js"


def _script_json(value: Any) -> str:
    """JSON safe to inline in a <script>: no '<', '>', '&', U+2028 or U+2029 survive."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _read_bundle(path: Path, what: str) -> str:
    if not path.is_file():
        raise MechscopeError(
            f"{what} JavaScript bundle is missing ({path}). Build it with "
            "`npm install && npm run build` in the repository, or reinstall with "
            "`pip install -e .` (which builds it)."
        )
    return path.read_text(encoding="utf-8")


def snapshot_script(el_id: str, state_json: str, bundle: str, arrays: list[str]) -> str:
    """The inline module that renders ``bundle`` into element ``el_id`` from ``state_json``
    (`_script_json` of the state; ``arrays``: its keys holding base64 encoded arrays).

    Everything variable is escaped JSON; the few lines of glue hold no '<', '>' or '&'.
    """
    runtime = _read_bundle(SNAPSHOT_RUNTIME, "the offline snapshot runtime's")
    return (
        "<script type=\"module\">\n"
        f"const el = document.getElementById({_script_json(el_id)});\n"
        "if (el) {\n"
        f"  const state = {state_json};\n"
        f"  const src = {_script_json(_read_bundle(bundle_path(bundle), f'the {bundle} widget'))};\n"
        f"  const arrays = {_script_json(arrays)};\n"
        f"  const runtime = {_script_json(runtime)};\n"
        "  import(URL.createObjectURL(new Blob([runtime], { type: \"text/javascript\" })))\n"
        "    .then(function (m) { m.mount(el, state, src, arrays); })\n"
        "    .catch(function (err) { const p = document.createElement(\"pre\");"
        " p.textContent = \"mechscope snapshot failed: \" + err; el.appendChild(p); });\n"
        "}\n"
        "</script>"
    )


def snapshot_html(bundle: str, state: dict[str, Any], summary: str, arrays: list[str]) -> str | None:
    """The offline snapshot of a ``bundle`` widget: a ``div`` showing ``summary`` until the
    inline module renders the widget from ``state`` (JSON-safe; ``arrays``: its keys holding
    encoded arrays with base64 ``data``). None when the state is over `FALLBACK_MAX_BYTES`.

    >>> page = snapshot_html("heatmap", {"title": "</script>"}, "Heatmap <t>", [])
    >>> page.startswith('<div id="mechscope-'), "Heatmap &lt;t&gt;" in page, page.count("</script>")
    (True, True, 1)
    """
    state_json = _script_json(state)
    if len(state_json) > FALLBACK_MAX_BYTES:
        return None
    uid = f"mechscope-{uuid.uuid4().hex[:12]}"
    return (
        f'<div id="{uid}" class="mechscope-snapshot" data-mechscope-widget="{html.escape(bundle)}">'
        f'<pre class="mechscope-summary">{html.escape(summary)}</pre></div>\n'
        + snapshot_script(uid, state_json, bundle, sorted(arrays))
    )


def placeholder_html(bundle: str, model_id: str, summary: str) -> str:
    """The ``text/html`` of a live display: the summary and which widget model to draw there
    (a page made by `mechscope.publish` replaces it with the snapshot); no data, no script.

    >>> placeholder_html("heatmap", "abc", "Heatmap <t>")
    '<div class="mechscope-placeholder" data-mechscope-widget="heatmap" data-mechscope-model="abc"><pre class="mechscope-summary">Heatmap &lt;t&gt;</pre></div>'
    """
    return (f'<div class="mechscope-placeholder" data-mechscope-widget="{html.escape(bundle)}" '
            f'data-mechscope-model="{html.escape(model_id)}">'
            f'<pre class="mechscope-summary">{html.escape(summary)}</pre></div>')


class MechscopeWidget(anywidget.AnyWidget):
    """An anywidget whose front end is the class's ``_esm`` bundle (``STATIC / "<name>.js"``)."""

    #: The bundle this class was given as ``_esm`` (set by ``__init_subclass__``).
    _bundle_file: ClassVar[Path | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        esm = cls.__dict__.get("_esm")
        if isinstance(esm, Path):
            cls._bundle_file = esm
            if not esm.is_file():  # anywidget would fail at import; fail when a widget is made
                cls._esm = _MISSING
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        owner: type[MechscopeWidget] = next(
            k for k in type(self).__mro__ if "_bundle_file" in k.__dict__ and issubclass(k, MechscopeWidget))
        path = owner._bundle_file
        if path is None:
            raise MechscopeError(f"{type(self).__name__} names no bundle: set _esm = STATIC / '<name>.js'.")
        if owner.__dict__.get("_esm") == _MISSING:  # built since the class was defined?
            owner._esm = _read_bundle(path, f"the {path.stem} widget's")  # type: ignore[attr-defined]
        super().__init__(**kwargs)

    @property
    def bundle(self) -> str:
        """The front end's name (``heatmap``, ...): ``static/<bundle>.js``."""
        path = type(self)._bundle_file
        return path.stem if path is not None else ""

    # ---- representations --------------------------------------------------------------
    def summary(self) -> str:
        """One-paragraph text description (text/plain, and what untrusted viewers see)."""
        return f"<{type(self).__name__}>"

    def snapshot_state(self) -> dict[str, Any]:
        """Synced state (minus the ESM source) as JSON-safe values for the offline snapshot;
        every `ArrayTrait` through the codec (``data`` as base64)."""
        state = self.get_state()
        traits = self.traits(sync=True)
        out: dict[str, Any] = {}
        for key, value in state.items():
            if key.startswith("_"):
                continue
            if isinstance(traits.get(key), ArrayTrait):
                value = ArrayTrait.snapshot_json(getattr(self, key))
            out[key] = value
        return self.offline_state(out)

    @classmethod
    def offline_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` as the offline snapshot shows it (a subclass drops what needs a kernel);
        applied to a live widget's state and to state stored in a notebook alike."""
        return state

    def offline_html(self) -> str | None:
        """A self-contained HTML snapshot that renders this widget with no kernel and no network
        (None above `FALLBACK_MAX_BYTES` of state)."""
        arrays = [k for k, trait in self.traits(sync=True).items() if isinstance(trait, ArrayTrait)]
        return snapshot_html(self.bundle, self.snapshot_state(), self.summary(), arrays)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:  # type: ignore[override]
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/plain"] = self.summary()
        data["text/html"] = placeholder_html(self.bundle, self.model_id, self.summary())
        return data, metadata

    def __repr__(self) -> str:
        return self.summary()
