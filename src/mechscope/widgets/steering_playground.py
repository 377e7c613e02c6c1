"""`SteeringPlayground`: a coefficient slider and a prompt box; unsteered vs steered text side by side.

The one interactive widget that re-runs the model. It never sees the model itself: it takes a
`SteeringSweep` (generations computed up front, which the offline snapshot snaps its slider to)
and, optionally, a ``generator(prompt, coefficient, should_stop) -> Generation`` callable (made
by `mechscope.steering_playground`, which binds `generate` to a model and a vector).

How a live request flows:

1. The front end debounces the slider (~250 ms), sets ``prompt``/``coefficient`` and sends
   ``{"kind": "generate", "id", "prompt", "coefficient"}``; `request` does the same from Python.
2. Results are cached per (prompt, coefficient): a cached request is answered at once.
   Otherwise it becomes the one pending job for a single background thread (one thread, so
   never two traces of the model at once). A newer request replaces the pending job (the old
   one is dropped unrun) and cancels the running one at its next token boundary
   (``should_stop``), unless it asks for the same (prompt, coefficient).
3. The thread generates the unsteered baseline (coefficient 0) for the prompt if it is not
   cached, then the steered text, appends both to ``results`` and reports in ``status``.
   Only the newest request writes ``status``; a superseded one publishes nothing partial.
4. In IPython the thread pauses between tokens while a cell runs (``pre_run_cell`` /
   ``post_run_cell``), so it never traces the model while your code does; `wait` lets a
   cell wait for it.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
>>> sweep = mechscope.steering_sweep(model, "The cat", vec, coefficients=[-2, 0, 2], max_new_tokens=3)
>>> w = SteeringPlayground(sweep)  # no generator: static, the slider snaps to -2, 0, 2
>>> w.live, w.coefficients, w.coefficient
(False, [-2.0, 0.0, 2.0], 2.0)
>>> w.result("The cat", 2) == sweep.generations[2]
True
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import traitlets as t

from ..errors import InputError
from ..interventions.steering import Generation, GenerationCancelled, SteeringSweep
from ._base import STATIC, MechscopeWidget
from ._cell_pause import PAUSE_TIMEOUT, CellPause
from .requests import Requests

#: ``generator(prompt, coefficient, should_stop)``: a greedy `Generation`; raises
#: `GenerationCancelled` when ``should_stop()`` turns True between tokens.
Generator = Callable[[str, float, Callable[[], bool]], Generation]

#: Live results kept besides the precomputed ones (least recently used dropped first).
MAX_CACHED = 64

#: Longest a cell start waits for a running forward pass to finish (seconds).


def _norm_coef(value: object) -> float:
    """A finite float rounded to 6 decimals (the same key the front end computes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"coefficient must be a finite number, got {value!r}.")
    c = float(value)
    if not math.isfinite(c):
        raise InputError(f"coefficient must be a finite number, got {value!r}.")
    return round(c, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass
class _Job:
    seq: int
    client_id: int | None
    prompt: str
    coefficient: float
    cancelled: bool = False


class SteeringPlayground(CellPause, Requests, MechscopeWidget):
    """Slider + prompt box; two panes show the unsteered (coefficient 0) and steered text.

    Parameters: ``sweep`` (a `SteeringSweep` that includes coefficient 0: its generations are
    the precomputed results), ``generator`` (see `Generator`; None for a static widget that
    only snaps to the sweep), the slider's ``min_coefficient``/``max_coefficient``/``step``
    (widened to include every precomputed coefficient), ``coefficient`` (initial position;
    default the largest precomputed one), ``title``, ``max_new_tokens`` (for the summary).
    Build it with `mechscope.steering_playground` or ``vector.playground(model, prompt)``.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> vec = mechscope.steering_vector(model, ["good great fine"], ["bad awful sad"], layer=1)
    >>> sweep = mechscope.steering_sweep(model, "The cat", vec, coefficients=[0, 4], max_new_tokens=3)
    >>> w = SteeringPlayground(sweep)  # no generator: static, the slider snaps to 0 and 4
    >>> w.live, w.coefficients, w.coefficient, len(w.results)
    (False, [0.0, 4.0], 4.0, 2)
    >>> w.request("The dog")
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: this SteeringPlayground has no generator, so only its precomputed ...
    >>> w.close()
    """

    _esm = STATIC / "steering_playground.js"
    _request_handlers = {"generate": "_on_generate"}  # noqa: RUF012 - read only

    prompt = t.Unicode("").tag(sync=True)
    """The prompt being shown (set by the front end when a prompt is submitted)."""
    coefficient = t.Float(0.0).tag(sync=True)
    """The slider's coefficient (set by the front end with each request)."""
    coefficients = t.List(t.Float()).tag(sync=True)
    """Precomputed coefficients for ``sweep_prompt``, ascending (the offline slider's stops)."""
    sweep_prompt = t.Unicode("").tag(sync=True)
    """The prompt the precomputed coefficients were generated for."""
    min = t.Float(-8.0).tag(sync=True)
    """Lowest coefficient of the live slider."""
    max = t.Float(8.0).tag(sync=True)
    """Highest coefficient of the live slider."""
    step = t.Float(0.5).tag(sync=True)
    """Step of the live slider."""
    results = t.List(t.Dict()).tag(sync=True)
    """Cached generations: {prompt, coefficient, tokens, ids, text, stopped_at_eos, precomputed}."""
    status = t.Dict().tag(sync=True)
    """The newest request's progress: {seq, client_id, prompt, coefficient, state, message};
    state is "generating", "done", "cancelled" or "error"."""
    live = t.Bool(False).tag(sync=True)
    """Whether a generator is attached (False in the offline snapshot: the slider snaps)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the controls."""

    def __init__(self, sweep: SteeringSweep, *, generator: Generator | None = None,
                 min_coefficient: float = -8.0, max_coefficient: float = 8.0, step: float = 0.5,
                 coefficient: float | None = None, title: str | None = None,
                 max_new_tokens: int | None = None) -> None:
        if not isinstance(sweep, SteeringSweep):
            raise InputError(
                "SteeringPlayground takes a SteeringSweep (mechscope.steering_sweep), got "
                f"{type(sweep).__name__}; or build one with mechscope.steering_playground(model, prompt, vector)."
            )
        if generator is not None and not callable(generator):
            raise InputError(f"generator must be callable (prompt, coefficient, should_stop), got {generator!r}.")
        coefs = [_norm_coef(c) for c in sweep.coefficients]
        if 0.0 not in coefs:
            raise InputError(
                f"the sweep needs coefficient 0 (the unsteered baseline), got {list(sweep.coefficients)}: "
                "add 0 to coefficients=."
            )
        lo, hi, st = (_norm_coef(v) for v in (min_coefficient, max_coefficient, step))
        if st <= 0 or lo >= hi:
            raise InputError(
                f"the slider needs min_coefficient < max_coefficient and step > 0, got "
                f"{min_coefficient!r}, {max_coefficient!r}, {step!r}."
            )
        lo, hi = min(lo, *coefs), max(hi, *coefs)
        start = _norm_coef(coefficient) if coefficient is not None else max(coefs)
        self._generator = generator
        self._sweep = sweep
        self._max_new_tokens = max_new_tokens
        self._cache: dict[tuple[str, float], Generation] = {}
        self._precomputed: set[tuple[str, float]] = set()
        for c, g in zip(coefs, sweep.generations, strict=True):
            key = (sweep.prompt, c)
            self._cache[key] = g
            self._precomputed.add(key)
        self._cv = threading.Condition()
        self._seq = 0
        self._pending: _Job | None = None
        self._current: _Job | None = None
        self._stepping = False  # the worker may be inside a forward pass
        self._paused = False  # a notebook cell is running
        self._waiting = 0  # threads blocked in wait() (the cell is not using the model)
        self._closed = False
        self._worker: threading.Thread | None = None
        self._outcomes: dict[int, str] = {}
        self._hooks: Any = None
        super().__init__(
            prompt=sweep.prompt, sweep_prompt=sweep.prompt, coefficient=start, coefficients=coefs,
            min=lo, max=hi, step=st, results=self._results_state(), status={},
            live=generator is not None,
            title=title if title is not None else
            f"{sweep.model_name}: steering at L{sweep.layer} (|v|={sweep.vector_norm:.3g})",
        )
        self._listen_for_requests()
        if generator is not None:
            self._register_cell_hooks()

    # ---- Python API --------------------------------------------------------------------
    def result(self, prompt: str, coefficient: float) -> Generation | None:
        """The cached generation for (prompt, coefficient), or None."""
        with self._cv:
            return self._cache.get((prompt, _norm_coef(coefficient)))

    def request(self, prompt: str | None = None, coefficient: float | None = None, *,
                client_id: int | None = None) -> int:
        """Ask for (prompt, coefficient) (default: the current ones) without blocking.

        Moves the widget's prompt and slider there and returns the request's sequence number
        (see `outcome`). Answered at once from the cache, else generated in the background;
        call `wait` before using the model in the same cell.
        """
        p = self.prompt if prompt is None else prompt
        if not isinstance(p, str) or p == "":
            raise InputError(f"prompt must be a non-empty string, got {p!r}.")
        c = _norm_coef(self.coefficient if coefficient is None else coefficient)
        if self._generator is None and (p, c) not in self._cache:
            raise InputError(
                f"this SteeringPlayground has no generator, so only its precomputed coefficients "
                f"{self.coefficients} for {self.sweep_prompt!r} can be shown; build it with "
                "mechscope.steering_playground(model, prompt, vector) for live generation."
            )
        with self._cv:
            if self._closed:
                raise InputError("this SteeringPlayground is closed; make a new one.")
            self._seq += 1
            job = _Job(self._seq, client_id, p, c)
            with self.hold_sync():
                if self.prompt != p:
                    self.prompt = p
                if self.coefficient != c:
                    self.coefficient = c
            if self._pending is not None:
                self._outcomes[self._pending.seq] = "dropped"
                self._pending = None
            cur = self._current
            if cur is not None and not cur.cancelled and (cur.prompt, cur.coefficient) == (p, c):
                # already generating exactly this: adopt the running job
                self._outcomes[cur.seq] = "superseded"
                cur.seq, cur.client_id = job.seq, job.client_id
                self._set_status(cur, "generating")
                return job.seq
            if cur is not None:
                cur.cancelled = True
            if (p, 0.0) in self._cache and (p, c) in self._cache:
                self._touch(p, c)
                self._outcomes[job.seq] = "cached"
                self._set_status(job, "done")
            else:
                self._pending = job
                self._outcomes[job.seq] = "queued"
                self._set_status(job, "generating")
                self._ensure_worker()
            self._cv.notify_all()
        return job.seq

    def outcome(self, seq: int) -> str | None:
        """What became of request ``seq``: "queued", "generating", "done", "cached", "dropped"
        (replaced before it started), "cancelled" (stopped between tokens), "superseded"
        (merged into a newer identical request) or "error: ..."."""
        with self._cv:
            return self._outcomes.get(seq)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running; False if ``timeout`` ran out first.

        Safe inside a cell: while it waits the background thread may use the model.
        """
        with self._cv:
            self._waiting += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: self._pending is None and self._current is None,
                                         timeout=timeout)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Stop the background thread (cancelling its generation) and close the widget."""
        if not hasattr(self, "_cv"):  # __init__ failed before the worker state existed
            super().close()
            return
        with self._cv:
            self._closed = True
            if self._current is not None:
                self._current.cancelled = True
            self._pending = None
            self._cv.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=PAUSE_TIMEOUT)
        self._unregister_cell_hooks()
        super().close()

    # ---- representations ---------------------------------------------------------------
    def summary(self) -> str:
        sw = self._sweep
        lines = [f"SteeringPlayground {self.title!r}: prompt {sw.prompt!r}"]
        for c, g in zip(self.coefficients, sw.generations, strict=True):
            label = "0 (unsteered)" if c == 0.0 else f"{c:+g}"
            lines.append(f"  {label}: {g.text!r}")
        if self.live:
            lines.append(f"live: a slider from {self.min:+g} to {self.max:+g} (step {self.step:g}) re-generates"
                         + (f" {self._max_new_tokens} tokens" if self._max_new_tokens else "")
                         + " in the kernel")
        else:
            lines.append("static: the slider snaps to the precomputed coefficients")
        return "\n".join(lines)

    @classmethod
    def offline_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """The offline snapshot: the precomputed results only, no kernel, the slider snaps."""
        state["results"] = [r for r in state["results"] if r.get("precomputed")]
        state["prompt"] = state["sweep_prompt"]
        state["status"] = {}
        state["live"] = False
        if state["coefficient"] not in state["coefficients"]:
            state["coefficient"] = max(state["coefficients"])
        return state

    # ---- internals ---------------------------------------------------------------------
    def _on_generate(self, content: dict[str, Any], client_id: int | None) -> None:
        """A {"kind": "generate", "id", "prompt", "coefficient"} request; answered in ``status``."""
        try:
            self.request(content.get("prompt"), content.get("coefficient"), client_id=client_id)
        except InputError as err:
            with self._cv:
                self._seq += 1
                job = _Job(self._seq, client_id, str(content.get("prompt")), 0.0)
                self._outcomes[job.seq] = f"error: {err}"
                self._set_status(job, "error", str(err))

    def _results_state(self) -> list[dict[str, Any]]:
        out = []
        for (prompt, c), g in self._cache.items():
            out.append({"prompt": prompt, "coefficient": c, "tokens": list(g.new_tokens),
                        "ids": list(g.new_ids), "text": g.text, "stopped_at_eos": g.stopped_at_eos,
                        "precomputed": (prompt, c) in self._precomputed})
        return out

    def _touch(self, prompt: str, c: float) -> None:
        """Mark (prompt, 0) and (prompt, c) most recently used (dict order is the LRU order)."""
        for key in ((prompt, 0.0), (prompt, c)):
            if key in self._cache and key not in self._precomputed:
                self._cache[key] = self._cache.pop(key)

    def _store(self, prompt: str, c: float, gen: Generation) -> None:
        with self._cv:
            self._cache[(prompt, c)] = gen
            self._touch(prompt, c)
            live = [k for k in self._cache if k not in self._precomputed]
            for key in live[: max(0, len(live) - MAX_CACHED)]:
                del self._cache[key]
            if not self._closed:
                self.results = self._results_state()

    def _set_status(self, job: _Job, state: str, message: str = "") -> None:
        """Publish ``job``'s state, only when it is the newest request (call under the lock)."""
        if job.seq != self._seq or self._closed:
            return
        self.status = {"seq": job.seq, "client_id": job.client_id, "prompt": job.prompt,
                       "coefficient": job.coefficient, "state": state, "message": message}

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="mechscope-steering-playground",
                                            daemon=True)
            self._worker.start()

    def _may_run(self) -> bool:
        return not self._paused or self._waiting > 0

    def _gate(self, job: _Job) -> bool:
        """``should_stop`` for the generator: called between tokens; waits out running cells."""
        with self._cv:
            self._stepping = False
            self._cv.notify_all()
            self._cv.wait_for(lambda: job.cancelled or self._closed or self._may_run())
            if job.cancelled or self._closed:
                return True
            self._stepping = True
            return False

    def _run(self) -> None:
        assert self._generator is not None
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or (self._pending is not None and self._may_run()))
                if self._closed:
                    return
                job = self._pending
                assert job is not None
                self._pending, self._current, self._stepping = None, job, True
                self._outcomes[job.seq] = "generating"
            outcome, message = "done", ""
            try:
                for c in (0.0, job.coefficient):
                    with self._cv:
                        if (job.prompt, c) in self._cache:
                            continue
                    gen = self._generator(job.prompt, c, functools.partial(self._gate, job))
                    self._store(job.prompt, c, gen)  # complete, hence correct: cached even if stale
            except GenerationCancelled:
                outcome = "cancelled"
            except Exception as err:  # noqa: BLE001 - reported to the front end, thread survives
                outcome = "error"
                message = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
            with self._cv:
                self._outcomes[job.seq] = outcome if outcome != "error" else f"error: {message}"
                if outcome != "cancelled":
                    self._set_status(job, outcome, message)
                self._current, self._stepping = None, False
                self._cv.notify_all()

    def _worker_busy(self) -> bool:
        return self._stepping
