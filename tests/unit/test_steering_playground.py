"""SteeringPlayground, Python side, on the tiny llama: requests vs `generate`, supersession and
cancellation between tokens, the per-(prompt, coefficient) cache, pausing while a cell runs,
text/plain and the offline snapshot; plus `generate(should_stop=...)` itself.

Races are made deterministic with a generator that parks the worker on a chosen
``should_stop`` call (a real `generate` underneath) until the test releases it.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

import mechscope
import mechscope.widgets.steering_playground as sp
from mechscope.errors import InputError
from mechscope.interventions.steering import (
    Generation,
    GenerationCancelled,
    SteeringSweep,
    steering_playground,
)
from mechscope.widgets.steering_playground import SteeringPlayground
from tests.helpers import model_fingerprint

POS = ["good great fine day", "happy joy"]
NEG = ["bad awful sad", "The dog is terrible"]
PROMPT = "The cat"
N = 6
HOSTILE = "</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def setup():
    model = mechscope.tiny_model("llama")
    return model, mechscope.steering_vector(model, POS, NEG, layer=1)


def reference(model, vec, prompt: str, c: float, n: int = N) -> Generation:
    return mechscope.generate(model, prompt, steer=vec, coefficient=c, max_new_tokens=n)


class Gated:
    """A generator (real `generate`) that parks on should_stop call number ``park_at`` of a
    chosen coefficient until `release`; it logs each call's outcome."""

    def __init__(self, model, vec, park_at: int = 1, park_coef: float | None = None) -> None:
        self.model, self.vec = model, vec
        self.park_at, self.park_coef = park_at, park_coef
        self.parked = threading.Event()
        self.go = threading.Event()
        self.log: list[tuple[str, float, str]] = []  # (prompt, coefficient, "done" | message)
        self.stop_calls = 0

    def __call__(self, prompt, coefficient, should_stop):
        calls = 0

        def stop() -> bool:
            nonlocal calls
            calls += 1
            self.stop_calls += 1
            if calls == self.park_at and (self.park_coef is None or coefficient == self.park_coef):
                self.parked.set()
                assert self.go.wait(30), "test never released the generator"
            return should_stop()

        try:
            g = mechscope.generate(self.model, prompt, steer=self.vec, coefficient=coefficient,
                                   max_new_tokens=N, should_stop=stop)
        except GenerationCancelled as err:
            self.log.append((prompt, coefficient, str(err)))
            raise
        self.log.append((prompt, coefficient, "done"))
        return g

    def release(self) -> None:
        self.go.set()


def sweep_of(model, vec, prompt=PROMPT, coefs=(-2.0, 0.0, 2.0)) -> SteeringSweep:
    return mechscope.steering_sweep(model, prompt, vec, coefficients=list(coefs), max_new_tokens=N)


# ---- generate(should_stop=...) ------------------------------------------------------------
def test_generate_should_stop_cancels_between_tokens(setup):
    model, vec = setup
    before = model_fingerprint(model)
    full = reference(model, vec, PROMPT, 2.0)
    calls = []

    def after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(GenerationCancelled, match=rf"generation cancelled after 2 of {N} tokens\."):
        mechscope.generate(model, PROMPT, steer=vec, coefficient=2.0, max_new_tokens=N, should_stop=after_two)
    assert len(calls) == 3  # checked before each forward pass: two ran, the third never started
    with pytest.raises(GenerationCancelled, match="after 0 of"):
        mechscope.generate(model, PROMPT, steer=vec, coefficient=2.0, max_new_tokens=N, should_stop=lambda: True)
    never = mechscope.generate(model, PROMPT, steer=vec, coefficient=2.0, max_new_tokens=N,
                               should_stop=lambda: False)
    assert never == full
    with pytest.raises(InputError, match="should_stop must be a callable returning a bool, got 3"):
        mechscope.generate(model, PROMPT, should_stop=3)  # type: ignore[arg-type]
    assert model_fingerprint(model) == before


# ---- requests give what generate gives ------------------------------------------------------
def test_requests_equal_generate_and_leave_the_model_untouched(setup):
    model, vec = setup
    before = model_fingerprint(model)
    w = steering_playground(model, PROMPT, vec, coefficients=[2, -4], max_new_tokens=N)
    assert w.coefficients == [-4.0, 0.0, 2.0] and w.live and w.coefficient == 2.0
    assert (w.min, w.max, w.step) == (-8.0, 8.0, 0.5)
    for c in w.coefficients:  # precomputed = the sweep = generate
        assert w.result(PROMPT, c) == reference(model, vec, PROMPT, c)
    seq = w.request(coefficient=1.5)
    assert w.wait(timeout=60)
    assert w.outcome(seq) == "done"
    assert w.result(PROMPT, 1.5) == reference(model, vec, PROMPT, 1.5)
    assert w.status == {"seq": seq, "client_id": None, "prompt": PROMPT, "coefficient": 1.5,
                        "state": "done", "message": ""}
    assert w.coefficient == 1.5 and w.prompt == PROMPT
    # a new prompt: its unsteered baseline and the steered text, both exactly generate()
    seq = w.request("Bonjour le", -2.5)
    assert w.wait(timeout=60) and w.outcome(seq) == "done"
    assert w.result("Bonjour le", 0) == reference(model, vec, "Bonjour le", 0.0)
    assert w.result("Bonjour le", -2.5) == reference(model, vec, "Bonjour le", -2.5)
    entry = next(r for r in w.results if r["prompt"] == "Bonjour le" and r["coefficient"] == -2.5)
    ref = reference(model, vec, "Bonjour le", -2.5)
    assert entry == {"prompt": "Bonjour le", "coefficient": -2.5, "tokens": list(ref.new_tokens),
                     "ids": list(ref.new_ids), "text": ref.text, "stopped_at_eos": ref.stopped_at_eos,
                     "precomputed": False}
    w.close()
    assert not w._worker.is_alive()
    assert model_fingerprint(model) == before


def test_front_end_message_carries_its_id(setup):
    model, vec = setup
    w = steering_playground(model, PROMPT, vec, coefficients=[2], max_new_tokens=N)
    w._on_msg(w, {"kind": "generate", "id": 7, "prompt": PROMPT, "coefficient": 3}, [])
    assert w.wait(timeout=60)
    assert w.status["client_id"] == 7 and w.status["state"] == "done" and w.status["coefficient"] == 3.0
    assert w.result(PROMPT, 3) == reference(model, vec, PROMPT, 3.0)
    w._on_msg(w, {"kind": "something else"}, [])  # ignored
    assert w.status["client_id"] == 7
    w._on_msg(w, {"kind": "generate", "id": 8, "prompt": PROMPT, "coefficient": "lots"}, [])
    assert w.status["client_id"] == 8 and w.status["state"] == "error"
    assert w.status["message"] == "coefficient must be a finite number, got 'lots'."
    w._on_msg(w, {"kind": "generate", "id": 9, "prompt": "", "coefficient": 1}, [])
    assert w.status["message"] == "prompt must be a non-empty string, got ''."
    w.close()



def parked_playground(setup, park_at: int, coefficient: float) -> tuple[Gated, SteeringPlayground, int]:
    """A live playground whose first request (for ``coefficient``) is parked inside the
    generator at its ``park_at``-th token boundary: (generator, widget, request seq)."""
    model, vec = setup
    gen = Gated(model, vec, park_at=park_at)
    w = SteeringPlayground(sweep_of(model, vec), generator=gen)
    seq = w.request(coefficient=coefficient)
    assert gen.parked.wait(30)
    return gen, w, seq


# ---- newer requests supersede older ones ------------------------------------------------------
def test_newer_request_cancels_the_running_one_between_tokens_and_drops_the_queued(setup):
    model, vec = setup
    gen, w, a = parked_playground(setup, 3, 1.0)  # parked after two tokens of the first generation
    assert w.outcome(a) == "generating" and w.status["state"] == "generating"
    b = w.request(coefficient=1.5)  # cancels a (at its next token boundary), waits its turn
    c = w.request(coefficient=2.5)  # replaces b before it started: b is dropped unrun
    assert w.outcome(b) == "dropped"
    gen.release()
    assert w.wait(timeout=60)
    assert w.outcome(a) == "cancelled" and w.outcome(c) == "done"
    assert gen.log[0] == (PROMPT, 1.0, f"generation cancelled after 2 of {N} tokens.")
    assert gen.log[1:] == [(PROMPT, 2.5, "done")]  # b never ran
    # nothing partial or stale was published; the status is the newest request's
    assert w.result(PROMPT, 1.0) is None and w.result(PROMPT, 1.5) is None
    assert not any(r["coefficient"] in (1.0, 1.5) for r in w.results)
    assert w.status["seq"] == c and w.status["coefficient"] == 2.5 and w.status["state"] == "done"
    assert w.result(PROMPT, 2.5) == reference(model, vec, PROMPT, 2.5)
    w.close()


def test_moving_back_to_a_cached_value_cancels_and_answers_at_once(setup):
    gen, w, a = parked_playground(setup, 1, 6.0)
    back = w.request(coefficient=2.0)  # precomputed: answered from the cache immediately
    assert w.outcome(back) == "cached" and w.status["state"] == "done" and w.status["seq"] == back
    gen.release()
    assert w.wait(timeout=60)
    assert w.outcome(a) == "cancelled" and w.result(PROMPT, 6.0) is None
    assert w.status["seq"] == back  # the cancelled job did not overwrite the status
    w.close()


def test_the_same_request_again_joins_the_running_generation(setup):
    gen, w, a = parked_playground(setup, 2, 3.0)
    again = w.request(coefficient=3.0, client_id=5)
    gen.release()
    assert w.wait(timeout=60)
    assert w.outcome(a) == "superseded" and w.outcome(again) == "done"
    assert [entry[1:] for entry in gen.log] == [(3.0, "done")]  # generated once
    assert w.status["seq"] == again and w.status["client_id"] == 5
    w.close()


# ---- cache ------------------------------------------------------------------------------------
def test_cache_answers_repeats_without_generating_and_forgets_least_recent(setup, monkeypatch):
    model, vec = setup
    monkeypatch.setattr(sp, "MAX_CACHED", 3)
    gen = Gated(model, vec, park_at=10**9)  # never parks
    w = SteeringPlayground(sweep_of(model, vec), generator=gen)
    for c in (1.0, 1.5):
        w.request(coefficient=c)
        assert w.wait(timeout=60)
    calls = len(gen.log)
    seq = w.request(coefficient=1.0)  # moving back: answered in the call, nothing generated
    assert w.outcome(seq) == "cached" and w.status["seq"] == seq and w.status["state"] == "done"
    assert len(gen.log) == calls
    for c in (3.0, 3.5):  # 1.5 is now the least recently used live entry
        w.request(coefficient=c)
        assert w.wait(timeout=60)
    assert w.result(PROMPT, 1.5) is None
    assert w.result(PROMPT, 1.0) is not None and w.result(PROMPT, 3.5) is not None
    assert all(w.result(PROMPT, c) is not None for c in (-2, 0, 2))  # precomputed are kept
    assert sum(not r["precomputed"] for r in w.results) == 3
    w.close()


# ---- the worker and the user's cells never trace the model at the same time -------------------
def test_worker_pauses_between_tokens_while_a_cell_runs(setup):
    model, vec = setup
    gen, w, _ = parked_playground(setup, 2, 4.0)
    done = threading.Event()

    def cell_starts() -> None:  # IPython's pre_run_cell: returns once no forward pass runs
        w._before_cell()
        done.set()

    threading.Thread(target=cell_starts).start()
    gen.release()  # the worker finishes its forward pass, then parks in should_stop
    assert done.wait(30)
    stopped_at = gen.stop_calls
    time.sleep(0.2)
    assert gen.stop_calls == stopped_at and not w._stepping  # no token while the "cell" runs
    w._after_cell()
    assert w.wait(timeout=60) and w.result(PROMPT, 4.0) == reference(model, vec, PROMPT, 4.0)
    # request + wait inside a running cell: waiting lets the worker use the model
    w._before_cell()
    w.request(coefficient=-3.0)
    assert w.wait(timeout=60) and w.result(PROMPT, -3.0) == reference(model, vec, PROMPT, -3.0)
    w._after_cell()
    w.close()


# ---- errors -----------------------------------------------------------------------------------
def test_generation_errors_are_reported_and_the_worker_survives(setup):
    model, vec = setup
    w = steering_playground(model, PROMPT, vec, coefficients=[2], max_new_tokens=N)
    too_long = "hello world " * 80  # beyond the tiny model's 128 positions
    seq = w.request(too_long, 2.0)
    assert w.wait(timeout=60)
    assert w.status["state"] == "error" and w.outcome(seq) == f"error: {w.status['message']}"
    assert "128" in w.status["message"]
    seq = w.request(PROMPT, 2.5)
    assert w.wait(timeout=60) and w.outcome(seq) == "done"
    w.close()
    with pytest.raises(InputError, match="this SteeringPlayground is closed; make a new one."):
        w.request(coefficient=1.0)


def test_bad_inputs(setup):
    model, vec = setup
    sweep = sweep_of(model, vec)
    with pytest.raises(InputError, match=r"takes a SteeringSweep \(mechscope.steering_sweep\), got dict"):
        SteeringPlayground({})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=re.escape("needs coefficient 0 (the unsteered baseline), got [-2.0, 2.0]")):
        SteeringPlayground(sweep_of(model, vec, coefs=(-2, 2)))
    with pytest.raises(InputError, match="min_coefficient < max_coefficient and step > 0, got 3, 3, 0.5"):
        SteeringPlayground(sweep, min_coefficient=3, max_coefficient=3)
    with pytest.raises(InputError, match="step > 0, got -8.0, 8.0, 0"):
        SteeringPlayground(sweep, step=0)
    with pytest.raises(InputError, match=r"generator must be callable \(prompt, coefficient, should_stop\), got 1"):
        SteeringPlayground(sweep, generator=1)  # type: ignore[arg-type]
    static = SteeringPlayground(sweep, min_coefficient=-1, max_coefficient=1)
    assert (static.min, static.max) == (-2.0, 2.0)  # widened to the precomputed coefficients
    assert static.request(coefficient=-2) and static.status["state"] == "done"
    with pytest.raises(InputError, match=r"has no generator, so only its precomputed coefficients \[-2.0, 0.0, 2.0\]"):
        static.request(coefficient=1.0)
    for bad in (float("nan"), float("inf"), True, "1", object()):
        with pytest.raises(InputError, match="coefficient must be a finite number"):
            static.request(coefficient=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="prompt must be a non-empty string, got ''"):
        static.request("", 0.0)
    with pytest.raises(InputError, match="coefficients must be a non-empty list of numbers"):
        steering_playground(model, PROMPT, vec, coefficients=[])
    static.close()


# ---- representations ----------------------------------------------------------------------------
def _state_in(snapshot: str) -> dict:
    match = re.search(r"^  const state = (.*);$", snapshot, flags=re.M)
    assert match, "the snapshot inlines its state"
    return json.loads(match.group(1))


def test_text_plain_and_offline_snapshot(setup):
    model, vec = setup
    w = steering_playground(model, HOSTILE, vec, coefficients=[-2, 2], max_new_tokens=N)
    w.request(coefficient=1.0)
    assert w.wait(timeout=60)
    data, _ = w._repr_mimebundle_()
    text = data["text/plain"]
    lines = text.splitlines()
    assert lines[0] == f"SteeringPlayground 'tiny-llama-seed0: steering at L1 (|v|={vec.norm:.3g})': prompt {HOSTILE!r}"
    assert lines[1] == f"  -2: {reference(model, vec, HOSTILE, -2.0).text!r}"
    assert lines[2] == f"  0 (unsteered): {reference(model, vec, HOSTILE, 0.0).text!r}"
    assert lines[4] == f"live: a slider from -8 to +8 (step 0.5) re-generates {N} tokens in the kernel"
    assert repr(w) == text
    assert "<script" not in data["text/html"]  # live: a placeholder; the snapshot is made offline
    html = w.offline_html()
    assert 'data-mechscope-widget="steering_playground"' in html
    assert "</script><img" not in html.split("<script", 1)[1].rsplit("</script>", 1)[0]
    state = _state_in(html)
    assert state["live"] is False and state["status"] == {}
    assert state["prompt"] == state["sweep_prompt"] == HOSTILE
    assert [r["coefficient"] for r in state["results"]] == [-2.0, 0.0, 2.0]  # the live 1.0 is left out
    assert all(r["precomputed"] for r in state["results"])
    assert state["coefficient"] == 2.0  # the live position is not precomputed: snap to a stop
    assert "_esm" not in state
    w.close()
