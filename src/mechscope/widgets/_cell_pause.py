"""`CellPause`: a widget's background worker holds still while a notebook cell runs.

Interactive widgets (the steering playground, the circuit graph) run the model in a worker
thread; a cell the user runs meanwhile may trace the same model, and nnsight runs one trace of
a model at a time. IPython's ``pre_run_cell`` hook sets ``_paused`` (waiting up to
`PAUSE_TIMEOUT` s for the worker's current step to end) and ``post_run_cell`` clears it; the
worker checks ``_paused`` under ``_cv`` before each step. Outside IPython nothing is registered.
"""

from __future__ import annotations

import threading
from typing import Any

#: Seconds a cell waits for the worker's current step (or a closing widget for its worker).
PAUSE_TIMEOUT = 120.0


class CellPause:
    """Mixin: ``_register_cell_hooks`` / ``_unregister_cell_hooks`` and the two hooks. The
    widget sets ``_cv``, ``_paused = False`` and ``_hooks = None`` in its ``__init__`` and
    says when its worker is mid-step (`_worker_busy`)."""

    _cv: threading.Condition
    _paused: bool
    _hooks: Any

    def _worker_busy(self) -> bool:
        """Is the worker in the middle of a step (read under ``_cv``)?"""
        raise NotImplementedError

    def _before_cell(self, *_args: Any) -> None:
        with self._cv:
            self._paused = True
            self._cv.wait_for(lambda: not self._worker_busy(), timeout=PAUSE_TIMEOUT)

    def _after_cell(self, *_args: Any) -> None:
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    def _register_cell_hooks(self) -> None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with ipywidgets
            return
        ip = get_ipython()
        if ip is None:
            return
        ip.events.register("pre_run_cell", self._before_cell)
        ip.events.register("post_run_cell", self._after_cell)
        self._hooks = ip

    def _unregister_cell_hooks(self) -> None:
        ip, self._hooks = self._hooks, None
        if ip is None:
            return
        for name, fn in (("pre_run_cell", self._before_cell), ("post_run_cell", self._after_cell)):
            try:
                ip.events.unregister(name, fn)
            except ValueError:
                pass
