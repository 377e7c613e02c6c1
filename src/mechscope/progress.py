"""The one progress bar every long mechscope verb shows (`progress`).

In a terminal (or anywhere without a Jupyter kernel) it is tqdm's text bar, left on its line
when it finishes. In a notebook it is tqdm's ipywidgets bar, displayed through a *display
handle*: when the bar closes (finished, stopped by an error or an interrupt) the handle
replaces the displayed output with the bar's last line as plain text, and only then closes the
bar's widget models (box, labels, progress, their layouts and styles). So no output is left that
points at a closed widget model: a finished cell shows e.g.
``patching resid: 100%|##########| 336/336 [00:12<00:00, 27.5copy/s]`` as text, in JupyterLab,
Notebook 7 and Voila alike, in the saved notebook and after it is reopened, and no widget model
outlives its bar in the kernel or the front end (a loop of 1,000 verbs leaves none behind).

tqdm's own ``leave=False`` closes the models but keeps the output referring to them: JupyterLab
happens to remove the view while the page lives, but Voila, a reopened notebook or an export
show "Error displaying widget: model not found". Keeping the models alive (``leave=True``)
avoids the error only while the kernel lives, and leaks a dozen models per call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress"]


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None,
             desc: str | None = None, unit: str = "it", initial: int = 0,
             enabled: bool = True) -> Any:
    """A tqdm progress bar over ``iterable`` (or updated by hand up to ``total``).

    Use it like ``tqdm``: iterate over it, or call ``.update(n)`` and ``.close()`` (a
    ``try``/``finally`` or ``with`` block). ``desc``: the label before the bar; ``unit``: what
    one step is; ``initial``: steps already done (a resumed job); ``enabled=False``: no bar at
    all (iterating still yields every item; ``update`` does nothing). In a Jupyter kernel with ipywidgets it is a widget bar that,
    once closed, is replaced by its last line as plain text and frees its widget models (see
    the module docstring); elsewhere tqdm's text bar on stderr.

    >>> bar = progress(total=3, desc="demo", unit="step", enabled=False)
    >>> for _ in range(3):
    ...     _ = bar.update(1)
    >>> bar.close()
    >>> bar.total
    3
    >>> [x * 2 for x in progress(range(3), desc="double", enabled=False)]
    [0, 2, 4]
    """
    kwargs: dict[str, Any] = {"total": total, "desc": desc, "unit": unit, "initial": initial,
                              "disable": not enabled, "leave": True}
    if enabled and _in_notebook():
        return _notebook_bar()(iterable, **kwargs)
    from tqdm.std import tqdm

    return tqdm(iterable, **kwargs)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel that can show ipywidgets (tqdm.autonotebook's test, made
    at each call rather than once at import)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
        return False  # qtconsole / Spyder: no widgets
    shell = sys.modules["IPython"].get_ipython()
    if shell is None or any(s in type(shell).__name__.lower() for s in ("qt", "spyder")):
        return False
    try:
        from tqdm.notebook import IProgress
    except ImportError:  # pragma: no cover - tqdm.notebook imports without ipywidgets
        return False
    return IProgress is not None


_BAR_CLASS: Any = None


def _notebook_bar() -> Any:
    """tqdm's notebook bar, displayed through a display handle (class built on first use, so
    importing this module never imports IPython or ipywidgets)."""
    global _BAR_CLASS
    if _BAR_CLASS is not None:
        return _BAR_CLASS
    from IPython.display import display
    from tqdm.notebook import tqdm_notebook
    from tqdm.std import tqdm as std_tqdm

    class HandleBar(tqdm_notebook):  # type: ignore[misc, valid-type]
        """A notebook bar whose output becomes its last line as text when it closes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._handle = None
            super().__init__(*args, display=False, **kwargs)  # shown below, with a handle
            if not self.disable:
                self._handle = display(self.container, display_id=True)

        def close(self) -> None:
            if self.disable or self._handle is None:
                return
            stopped = bool(self.total) and self.n < self.total
            text = self.format_meter(**self.format_dict) + (" (stopped)" if stopped else "")
            std_tqdm.close(self)  # counts, timers, instance registry; writes nothing in GUI mode
            self._handle.update({"text/plain": text}, raw=True)
            self._handle = None
            _close_widgets(self.container)

    _BAR_CLASS = HandleBar
    return HandleBar


def _close_widgets(widget: Any) -> None:
    """Close ``widget``, its children, and their layout / style models (each is a model of its
    own in the front end)."""
    for child in getattr(widget, "children", ()):
        _close_widgets(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if part is not None:
            part.close()
    widget.close()
