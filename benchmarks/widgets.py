"""Widget benchmark: a 1000 x 1000 float map as a mechscope Heatmap vs a plotly heatmap.

Not a test: numbers depend on the machine. Everything is measured side by side in ONE run: one
real JupyterLab (``tests/browser/lab.py``: 127.0.0.1, random token, isolated Jupyter dirs) driven
by headless Debian Chromium (Playwright), one kernel, the two cells run interleaved.

1. Cell run -> drawn: from the ``notebook:run-cell`` request (the cell's old output cleared
   first) to the map on screen, plus one animation frame. mechscope: the widget's
   ``data-ms-ready`` attribute (set right after the canvas is painted); plotly
   (``go.Figure(go.Heatmap(z=arr))``, rendered by its bundled JupyterLab mime extension): the
   heatmap's ``<image>`` in the plot's SVG. The first run of each (loading the widget ESM /
   plotly.js) is reported apart; the median is over the interleaved repeats after it.
   Bytes received: everything the browser got on the kernel websocket during that run.
2. Payload: the Heatmap's binary buffer (uint8 codes, the values quantised over their range),
   the same array as a JSON list (``json.dumps(arr.tolist())``), plotly's figure JSON (its
   ``application/vnd.plotly.v1+json`` output), and float32 bytes for reference.
3. Stored notebook: a notebook holding one setup cell (no output) and the one map output, as
   JupyterLab saves it (run in Lab, then ``docmanager:save``; this project's Lab saves widget
   state, see ``mechscope.lab_settings``: the data is stored once, as widget state, the output
   holding only a placeholder), the same file after ``mechscope.publish.strip_widget_state``
   (the published copy for nbviewer/nbconvert: the snapshot made from the state, the state
   removed), and as nbclient writes it with ``store_widget_state=True`` / ``False``.
   Targets: bytes per live display <= 1.2x the buffer; saved with widget state < 2 MB.

A screenshot of both maps in Lab goes to build/screenshots/bench_widgets_lab.png.

Usage: ``python benchmarks/widgets.py [--quick] [--repeats N]``. Needs the ``lab`` extras,
playwright and ``/usr/bin/chromium`` (``make chromium``), and the built JS (``make js``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import numpy as np  # noqa: E402

from mechscope.publish import strip_widget_state  # noqa: E402
from tests.browser.lab import Lab, chromium_context, running_lab  # noqa: E402
from tests.browser.lab_notebook import KERNEL_EVAL, KERNEL_IDLE, PANEL  # noqa: E402

N = 1000
SETUP = f"""import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from mechscope.widgets import Heatmap

# a smooth left-right trend plus noise: typical activations, not a compressible toy
rng = np.random.default_rng(0)
arr = (rng.standard_normal(({N}, {N})) + np.linspace(-2, 2, {N})[None, :]).astype(np.float32)
renderer = pio.renderers.default"""
MECHSCOPE = 'Heatmap(arr, title="1000 x 1000")'
PLOTLY = "go.Figure(go.Heatmap(z=arr))"

#: what "drawn" means for each, inside the cell's output area
DRAWN = {
    "mechscope": '.jp-OutputArea-output [data-ms-ready="1"] canvas.ms-canvas',
    "plotly": ".jp-OutputArea-output.js-plotly-plot .hm image",  # the output node is the plot
}

RUN_TIMEOUT_MS = 180_000
SCREENSHOT = REPO / "build" / "screenshots" / "bench_widgets_lab.png"

# ---- JavaScript run in the page ------------------------------------------------------------

#: counts the bytes of every message the page receives on a websocket (kernel channels)
COUNT_WS_BYTES = """(() => {
  window.__wsBytes = 0;
  const Native = window.WebSocket;
  class Counting extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        const d = ev.data;
        window.__wsBytes += typeof d === 'string' ? new TextEncoder().encode(d).length
          : (d.byteLength !== undefined ? d.byteLength : (d.size || 0));
      });
    }
  }
  window.WebSocket = Counting;
})();"""

#: page JS: make cell i the active one (``app``, ``panel``, ``nb`` and ``cell`` are bound after it)
SELECT_CELL = f"""const app = window.jupyterapp;
  const panel = {PANEL};
  const nb = panel.content;
  nb.deselectAll();
  nb.activeCellIndex = i;
  const cell = nb.widgets[i];"""

#: run cell i (old output cleared first); resolve with ms from the run request to the drawn
#: selector (+ one animation frame) and the websocket bytes received meanwhile
RUN_CELL = f"""async ([i, selector, timeoutMs]) => {{
  {SELECT_CELL}
  await app.commands.execute('notebook:clear-cell-output');
  if (cell.model.outputs.length) throw new Error('output not cleared');
  await new Promise((r) => requestAnimationFrame(() => r()));
  const bytes0 = window.__wsBytes;
  const t0 = performance.now();
  app.commands.execute('notebook:run-cell');
  const found = () => selector ? cell.node.querySelector(selector) : null;
  await new Promise((resolve, reject) => {{
    const deadline = setTimeout(() => {{ obs.disconnect(); reject(new Error('not drawn within ' + timeoutMs + ' ms: '
      + cell.node.querySelector('.jp-OutputArea')?.innerHTML.slice(0, 600))); }}, timeoutMs);
    const check = () => {{ if (found()) {{ obs.disconnect(); clearTimeout(deadline); resolve(); }} }};
    const obs = new MutationObserver(check);
    obs.observe(cell.node, {{subtree: true, childList: true, attributes: true}});
    check();
  }});
  await new Promise((r) => requestAnimationFrame(() => r()));
  const ms = performance.now() - t0;
  return {{ms, bytes: window.__wsBytes - bytes0}};
}}"""

#: run cell i and wait until it has run (kernel idle, execution count set); its error if any
RUN_AND_WAIT = f"""async ([i, timeoutMs]) => {{
  {SELECT_CELL}
  await app.commands.execute('notebook:run-cell');
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {{
    const k = panel.sessionContext.session?.kernel;
    if (cell.model.executionCount !== null && k && k.status === 'idle') break;
    await new Promise((r) => setTimeout(r, 50));
  }}
  const err = cell.model.outputs.toJSON().find((o) => o.output_type === 'error');
  return err ? err.ename + ': ' + err.evalue : null;
}}"""

def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def open_notebook(context: Any, lab: Lab, name: str) -> Any:
    page = context.new_page()
    page.add_init_script(COUNT_WS_BYTES)
    page.goto(lab.notebook_url(name))
    page.wait_for_function(KERNEL_IDLE, timeout=120_000, polling=200)
    return page


def run_and_wait(page: Any, i: int) -> None:
    err = page.evaluate(RUN_AND_WAIT, [i, RUN_TIMEOUT_MS])
    if err:
        raise RuntimeError(f"cell {i} raised {err}")


def wait_idle(page: Any) -> None:
    page.wait_for_function(KERNEL_IDLE, timeout=RUN_TIMEOUT_MS, polling=50)


def timed_run(page: Any, i: int, kind: str) -> dict[str, float]:
    result = page.evaluate(RUN_CELL, [i, DRAWN[kind], RUN_TIMEOUT_MS])
    wait_idle(page)
    return result


def saved_in_lab(context: Any, lab: Lab, name: str, kind: str) -> tuple[int, bool, int]:
    """Run every cell of ``name`` in Lab, wait for the map, save it from Lab: the file's bytes,
    whether widget state was stored, and the bytes once that state is stripped."""
    page = open_notebook(context, lab, name)
    try:
        run_and_wait(page, 0)
        timed_run(page, 1, kind)
        path = lab.root / name
        before = path.stat().st_mtime_ns
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        deadline = time.monotonic() + 60
        while path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Lab did not save {name}")
            time.sleep(0.1)  # polling for the file write, not a wait for a condition in the page
        page.wait_for_function(f"() => !{PANEL}.context.model.dirty", timeout=60_000)
        time.sleep(0.5)  # polling margin: the contents API may still be writing
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        size, has_state = path.stat().st_size, "widgets" in nb.metadata
        stripped = path.with_name(f"stripped_{name}")
        stripped.write_bytes(path.read_bytes())
        strip_widget_state(stripped)
        return size, has_state, stripped.stat().st_size
    finally:
        page.close()


def stored_by_nbclient(src: str, store_widget_state: bool, tmp: Path) -> int:
    from nbclient import NotebookClient

    nb = notebook(SETUP, src)
    NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=store_widget_state,
                   resources={"metadata": {"path": str(tmp)}}).execute()
    path = tmp / f"nbclient-{store_widget_state}.ipynb"
    nbformat.write(nb, path)
    return path.stat().st_size


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats after the first run")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)

    import plotly
    import plotly.graph_objects as go
    import plotly.io as pio

    from mechscope.widgets import Heatmap

    # ---- payload sizes (same array as the kernel builds) -----------------------------------
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((N, N)) + np.linspace(-2, 2, N)[None, :]).astype(np.float32)
    w = Heatmap(arr, title="1000 x 1000")
    buffer_bytes = len(w.values["data"])
    json_list_bytes = len(json.dumps(arr.tolist()))
    plotly_bundle = pio.renderers["plotly_mimetype"].to_mimebundle(go.Figure(go.Heatmap(z=arr)).to_dict())
    plotly_json_bytes = len(json.dumps(plotly_bundle["application/vnd.plotly.v1+json"]))
    snapshot = w.offline_html()
    placeholder_bytes = len(w._repr_mimebundle_()[0]["text/html"].encode("utf-8"))
    snapshot_bytes = len(snapshot.encode("utf-8")) if snapshot else 0
    err = np.abs(w.array - arr).max()
    step = w.quantization_step or 0.0

    with tempfile.TemporaryDirectory(prefix="mechscope-bench-") as tmp_name:
        tmp = Path(tmp_name)
        nbdir = tmp / "notebooks"
        nbdir.mkdir()
        nbformat.write(notebook(SETUP, MECHSCOPE, PLOTLY), nbdir / "bench.ipynb")
        nbformat.write(notebook(SETUP, MECHSCOPE), nbdir / "stored_mechscope.ipynb")
        nbformat.write(notebook(SETUP, PLOTLY), nbdir / "stored_plotly.ipynb")

        print(f"# mechscope widget benchmark: {N} x {N} float32 map, plotly {plotly.__version__}, "
              f"{repeats} interleaved repeats after a first run", flush=True)
        times: dict[str, list[float]] = {"mechscope": [], "plotly": []}
        received: dict[str, list[float]] = {"mechscope": [], "plotly": []}
        first: dict[str, float] = {}
        with running_lab(nbdir) as lab, chromium_context() as context:
            page = open_notebook(context, lab, "bench.ipynb")
            run_and_wait(page, 0)
            renderer = page.evaluate(KERNEL_EVAL, "renderer")
            cells = {"mechscope": 1, "plotly": 2}
            for kind in ("mechscope", "plotly"):  # cold: loads the widget ESM / plotly.js
                first[kind] = timed_run(page, cells[kind], kind)["ms"]
            for rep in range(repeats):
                order = ("mechscope", "plotly") if rep % 2 == 0 else ("plotly", "mechscope")
                for kind in order:
                    r = timed_run(page, cells[kind], kind)
                    times[kind].append(r["ms"])
                    received[kind].append(r["bytes"])
                print(f"  repeat {rep + 1}/{repeats}: mechscope {times['mechscope'][-1]:.0f} ms, "
                      f"plotly {times['plotly'][-1]:.0f} ms", flush=True)
            page.set_viewport_size({"width": 1400, "height": 1900})
            page.evaluate(f"{PANEL}.content.scrollToItem(1, 'start')")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            page.close()
            lab_saved: dict[str, Any] = {}
            for kind in ("mechscope", "plotly"):
                size, has_state, stripped = saved_in_lab(context, lab, f"stored_{kind}.ipynb", kind)
                lab_saved[kind], lab_saved[f"{kind}_stripped"] = size, stripped
                lab_saved["state"] = lab_saved.get("state", False) or has_state
        stored = {(kind, sws): stored_by_nbclient(src, sws, tmp)
                  for kind, src in (("mechscope", MECHSCOPE), ("plotly", PLOTLY))
                  for sws in (True, False)}

    ok = lambda good: "yes" if good else "NO"  # noqa: E731
    t_m, t_p = statistics.median(times["mechscope"]), statistics.median(times["plotly"])
    b_m, b_p = statistics.median(received["mechscope"]), statistics.median(received["plotly"])
    print(f"\n## Cell run -> map drawn in JupyterLab (median of {repeats} interleaved runs; "
          f"plotly renderer in the kernel: {renderer})\n")
    print("| | mechscope Heatmap | plotly go.Heatmap | plotly / mechscope | target | met |")
    print("|---|---:|---:|---:|---|---|")
    print(f"| cell run -> drawn, median | {t_m:,.0f} ms | {t_p:,.0f} ms | {t_p / t_m:.1f}x | >= 7x | {ok(t_p / t_m >= 7)} |")
    print(f"| (min .. max) | {min(times['mechscope']):,.0f} .. {max(times['mechscope']):,.0f} ms | "
          f"{min(times['plotly']):,.0f} .. {max(times['plotly']):,.0f} ms | | | |")
    print(f"| first run (loads the ESM / plotly.js) | {first['mechscope']:,.0f} ms | {first['plotly']:,.0f} ms | "
          f"{first['plotly'] / first['mechscope']:.1f}x | | |")
    print(f"| bytes the browser received per run (websocket) | {mb(b_m)} | {mb(b_p)} | {b_p / b_m:.1f}x | | |")
    print(f"| the same / the mechscope buffer ({mb(buffer_bytes)}) | {b_m / buffer_bytes:.2f}x | "
          f"{b_p / buffer_bytes:.2f}x | | mechscope <= 1.2x | {ok(b_m <= 1.2 * buffer_bytes)} |")

    print("\n## Payload (the array's bytes)\n")
    print("| payload | bytes | / mechscope buffer | target | met |")
    print("|---|---:|---:|---|---|")
    print(f"| mechscope binary buffer ({w.values['dtype']}, step {step:.3g}, max error {err:.3g}) | "
          f"{buffer_bytes:,} | 1.0x | | |")
    print(f"| JSON list, json.dumps(arr.tolist()) | {json_list_bytes:,} | {json_list_bytes / buffer_bytes:.1f}x | "
          f">= 5x | {ok(json_list_bytes / buffer_bytes >= 5)} |")
    print(f"| plotly figure JSON (application/vnd.plotly.v1+json) | {plotly_json_bytes:,} | "
          f"{plotly_json_bytes / buffer_bytes:.1f}x | | |")
    print(f"| float32 bytes (reference) | {arr.nbytes:,} | {arr.nbytes / buffer_bytes:.1f}x | | |")
    print(f"| mechscope live text/html (a placeholder: summary + model id) | {placeholder_bytes:,} | "
          f"{placeholder_bytes / buffer_bytes:.4f}x | | |")
    print(f"| mechscope offline HTML snapshot (made at publish time; base64 inside) | {snapshot_bytes:,} | "
          f"{snapshot_bytes / buffer_bytes:.1f}x | < 2 MB | {ok(0 < snapshot_bytes < 2_000_000)} |")

    print("\n## Stored notebook (.ipynb bytes: one setup cell + the one map output)\n")
    print("| saved by | mechscope | plotly | plotly / mechscope | target | met |")
    print("|---|---:|---:|---:|---|---|")
    rows = [
        (f"JupyterLab, docmanager:save ({'widget state stored' if lab_saved['state'] else 'no widget state'})",
         lab_saved["mechscope"], lab_saved["plotly"]),
        ("the same, published (strip_widget_state: snapshot from the state, state removed)",
         lab_saved["mechscope_stripped"], lab_saved["plotly_stripped"]),
        ("nbclient, store_widget_state=True", stored[("mechscope", True)], stored[("plotly", True)]),
    ]
    for name, m, p in rows:
        print(f"| {name} | {mb(m)} | {mb(p)} | {p / m:.1f}x | < 2 MB | {ok(m < 2_000_000)} |")
    m, p = stored[("mechscope", False)], stored[("plotly", False)]
    print(f"| nbclient, store_widget_state=False (mechscope: no data stored, the summary only) | "
          f"{mb(m)} | {mb(p)} | | | |")


if __name__ == "__main__":
    main()
