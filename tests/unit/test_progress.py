"""`mechscope.progress`: one bar for every long verb, leaving no output that points at a closed
widget model.

Outside a kernel: tqdm's text bar, its last line left on stderr; ``enabled=False`` writes
nothing. In a real IPython kernel (jupyter_client, the venv's ``python3`` kernel), the iopub
messages a cell sends are replayed the way a front end applies them (``display_data`` with its
``display_id``, then ``update_display_data``): after the cell, its outputs hold no
``application/vnd.jupyter.widget-view+json`` at all, only the bar's last line as text; every
widget comm the bar opened was closed, and no widget model is left in the kernel, whether the
loop finished, raised, or was a hand-updated bar.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest

from mechscope.progress import progress

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_text_bar_counts_and_leaves_its_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert [x for x in progress(range(4), desc="four", unit="step")] == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "four: 100%" in err and "4/4" in err and "step" in err, err
    bar = progress(total=5, initial=2, desc="resumed")
    bar.update(3)
    bar.close()
    assert bar.n == 5
    assert "resumed: 100%" in capsys.readouterr().err


def test_disabled_bar_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(total=3, desc="quiet", enabled=False)
    bar.update(3)
    bar.close()
    assert list(progress(range(2), enabled=False)) == [0, 1]
    assert capsys.readouterr() == ("", "")


# ---- in a real kernel ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        reply = run(kc, "import ipywidgets\nfrom mechscope.progress import progress")
        assert reply["errors"] == [], reply
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str, timeout: float = 60.0) -> dict[str, Any]:
    """Execute ``code``; the outputs as a front end ends up showing them, the comms opened and
    closed, and the errors raised."""
    msg_id = kc.execute(code)
    outputs: list[dict[str, Any]] = []
    by_display: dict[str, list[int]] = {}
    opened: set[str] = set()
    closed: set[str] = set()
    errors: list[str] = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no idle status within {timeout} s for {code!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            break
        display_id = content.get("transient", {}).get("display_id")
        if kind == "display_data":
            outputs.append(dict(content["data"]))
            if display_id:
                by_display.setdefault(display_id, []).append(len(outputs) - 1)
        elif kind == "update_display_data":
            for k in by_display.get(display_id, []):
                outputs[k] = dict(content["data"])
        elif kind == "comm_open":
            opened.add(content["comm_id"])
        elif kind == "comm_close":
            closed.add(content["comm_id"])
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")
    return {"outputs": outputs, "opened": opened, "closed": closed, "errors": errors}


def widget_count(kc: Any) -> int:
    """How many widget models the kernel holds (``ipywidgets.Widget.widgets``)."""
    msg_id = kc.execute("", silent=True, user_expressions={"n": "len(ipywidgets.Widget.widgets)"})
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return int(reply["content"]["user_expressions"]["n"]["data"]["text/plain"])


def assert_no_dangling_view(result: dict[str, Any], desc: str) -> str:
    assert result["opened"], "the bar opened no widget comm: not the notebook path"
    assert result["opened"] <= result["closed"], result["opened"] - result["closed"]
    assert [o for o in result["outputs"] if WIDGET_MIME in o] == [], result["outputs"]
    texts = [o["text/plain"] for o in result["outputs"] if desc in o.get("text/plain", "")]
    assert len(texts) == 1, result["outputs"]
    return texts[0]


def test_finished_loop_becomes_its_last_line(kernel: Any) -> None:
    before = widget_count(kernel)
    result = run(kernel, "total = 0\nfor i in progress(range(30), desc='summing', unit='x'):\n"
                         "    total += i")
    assert result["errors"] == []
    text = assert_no_dangling_view(result, "summing")
    assert "100%" in text and "30/30" in text and "x/s" in text, text
    assert widget_count(kernel) == before, "the bar left widget models in the kernel"


def test_hand_updated_bar_and_a_loop_that_raises(kernel: Any) -> None:
    before = widget_count(kernel)
    result = run(kernel, "bar = progress(total=4, desc='by hand', initial=1)\n"
                         "try:\n    bar.update(3)\nfinally:\n    bar.close()")
    assert result["errors"] == []
    assert "4/4" in assert_no_dangling_view(result, "by hand")
    result = run(kernel, "for i in progress(range(10), desc='failing'):\n"
                         "    if i == 3: raise ValueError('boom')")
    assert result["errors"] == ["ValueError: boom"]
    text = assert_no_dangling_view(result, "failing")
    assert "3/10" in text and text.endswith("(stopped)"), text
    assert widget_count(kernel) == before


def test_disabled_bar_in_a_kernel_shows_nothing(kernel: Any) -> None:
    result = run(kernel, "bar = progress(total=2, desc='off', enabled=False)\nbar.update(2)\n"
                         "bar.close()")
    assert result["errors"] == [] and result["outputs"] == [] and result["opened"] == set()
