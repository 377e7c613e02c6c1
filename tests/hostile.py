"""A catalogue of hostile strings and every mechscope widget built with them in every text field.

Tokens, prompts, labels, class names, run names and titles come from users and models; each
widget must show them as text. ``widgets()`` computes real results on a tiny model, then puts
catalogue entries into every string the widget displays (tokens, top-k tokens, prompts, class
labels, example texts, run names, metric names, titles) and builds all six widgets, plus a
PatchingMap over a dataset (``PatchingMapDataset``: hostile example texts in its picker). Used by the
browser tier in JupyterLab (the kernel imports this file) and in exported offline HTML.

A page that ran one of these strings as code sets ``window.__pwned`` (or opens a dialog): the
tests assert neither happens, and that no element the catalogue spells out (script, img, svg,
a) appears in a widget.

>>> from tests.hostile import CATALOGUE, widgets
>>> sorted(widgets())
['Dynamics', 'Heatmap', 'LogitLens', 'PatchingMap', 'PatchingMapDataset', 'Selectivity', 'SteeringPlayground']
"""

from __future__ import annotations

import dataclasses
from itertools import cycle, islice
from typing import Any

import numpy as np

#: Strings that would run script, inject markup, break an inline <script> or JSON literal, or
#: reorder what the reader sees, if a widget or exported page treated them as anything but text.
CATALOGUE: tuple[str, ...] = (
    "<script>window.__pwned='script'</script>",
    "</script><script>window.__pwned='close-script'</script>",
    "<img src=x onerror=\"window.__pwned='img'\">",
    "javascript:window.__pwned='url'",
    "<a href=\"javascript:window.__pwned='href'\">link</a>",
    "\"><svg onload=window.__pwned='svg'>",
    "' onmouseover='window.__pwned=1",
    "${window.__pwned='template'}",
    "line\u2028separator\u2029paragraph",
    "\u202eevil.exe\u202c",  # RIGHT-TO-LEFT OVERRIDE ... POP DIRECTIONAL FORMATTING
    "\u2067isolate\u2069\u200fmark",  # RTL isolate, RTL mark
    "\u202eunterminated override",  # an RLO with no PDF: must not reverse what follows
    "&lt;b&gt;entity&amp;amp;",
    "nul\u0000bell\u0007del\u007fesc\u001b[31m",  # control characters (shown as pictures)
    "<!--",
    "]]><![CDATA[",
)
#: Elements a hostile string spells out: none may exist inside a rendered widget.
FORBIDDEN_ELEMENTS = ("script", "img", "svg", "a", "iframe", "object", "embed")


def pick(n: int, start: int = 0) -> list[str]:
    """``n`` catalogue entries, cycling, starting at ``start``."""
    return list(islice(cycle(CATALOGUE), start % len(CATALOGUE), start % len(CATALOGUE) + n))


def _objects(shape: tuple[int, ...], start: int = 0) -> np.ndarray:
    return np.array(pick(int(np.prod(shape)), start), dtype=object).reshape(shape)


def widgets() -> dict[str, Any]:
    """Each widget class name -> that widget, built from tiny-model results made hostile."""
    import mechscope
    from mechscope import dynamics
    from mechscope.metrics import logit_diff
    from mechscope.widgets import Dynamics, Heatmap, PatchingMap, SteeringPlayground

    model = mechscope.tiny_model("llama", n_layers=3)
    title = CATALOGUE[1]
    out: dict[str, Any] = {}

    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    values[0, 1], values[1, 2], values[2, 3] = np.nan, np.inf, -np.inf
    out["Heatmap"] = Heatmap(values, pick(3), pick(4, 3), title=title, value_label=CATALOGUE[2])

    lens = mechscope.logit_lens(model, "the cat sat on the mat", target=" the", top_k=3)
    n_pos = len(lens.tokens)
    lens = dataclasses.replace(lens, tokens=pick(n_pos), top_tokens=_objects(lens.top_tokens.shape, 5),
                               prompt=CATALOGUE[0], model_name=CATALOGUE[3], target=CATALOGUE[4])
    out["LogitLens"] = lens.show(title=title)

    patched = mechscope.patch(model, "the cat sat on", "the dog sat on",
                              logit_diff(" the", " of"), progress=False)
    n = len(patched.clean_tokens)
    patched = dataclasses.replace(
        patched, clean_tokens=pick(n), corrupt_tokens=pick(n, 7), metric_name=CATALOGUE[5],
        clean_prompt=CATALOGUE[0], corrupt_prompt=CATALOGUE[2], model_name=CATALOGUE[6],
        note=CATALOGUE[8])
    out["PatchingMap"] = PatchingMap(patched, title=title)

    rows = [{"clean": c, "corrupt": k, "answer": " the", "wrong": " of"}
            for c, k in (("the cat sat on", "the dog sat on"), ("a cat ran to", "a dog ran to"),
                         ("the cat ran to", "the dog ran to"))]
    over = mechscope.patch(model, mechscope.datasets.pairs(rows), site="heads", progress=False)
    texts = [CATALOGUE[0], CATALOGUE[2], CATALOGUE[11]]  # markup, and an unterminated RTL override
    over = dataclasses.replace(
        over, dataset=mechscope.datasets.pairs([dict(r, clean=t) for r, t in zip(rows, texts, strict=True)]),
        dataset_name=CATALOGUE[4], metric_name=CATALOGUE[5], clean_prompt=texts[0], corrupt_prompt=CATALOGUE[2],
        model_name=CATALOGUE[6])
    out["PatchingMapDataset"] = PatchingMap(over, title=title)

    examples = {"a": ["the cat sat", "red and blue"], "b": ["a dog ran far", "the end of it"],
                "c": ["one two three", "so it goes"]}
    sel = mechscope.selectivity(model, examples, layer=1)
    classes = pick(len(sel.classes), 9)
    rename = dict(zip(sel.classes, classes, strict=True))
    sel = dataclasses.replace(
        sel, classes=classes, text_labels=[rename[x] for x in sel.text_labels],
        texts=pick(len(sel.texts), 2),
        text_tokens=[pick(len(toks), i) for i, toks in enumerate(sel.text_tokens)],
        model_name=CATALOGUE[7])
    out["Selectivity"] = sel.show(title=title)

    vec = mechscope.steering_vector(model, ["good day"], ["bad day"], layer=1)
    sweep = mechscope.steering_sweep(model, "the cat", vec, (-2.0, 0.0, 2.0), max_new_tokens=4)
    gens = tuple(dataclasses.replace(g, prompt=CATALOGUE[0], new_tokens=tuple(pick(len(g.new_tokens), i)),
                                     text="".join(pick(len(g.new_tokens), i)))
                 for i, g in enumerate(sweep.generations))
    sweep = dataclasses.replace(sweep, prompt=CATALOGUE[0], generations=gens, model_name=CATALOGUE[3])
    out["SteeringPlayground"] = SteeringPlayground(sweep, title=title)

    steps = np.array(dynamics.log_schedule(100, 8))
    t = np.log1p(steps)[None, :, None, None] / np.log1p(100)
    induction = np.broadcast_to(t, (3, len(steps), 2, 2)).astype(np.float32).copy()
    behaviour = np.stack([4.0 - 3.0 * induction[:, :, 0, 0]] * len(dynamics.BEHAVIOUR), axis=-1)
    result = dynamics.DynamicsResult(
        runs=pick(3, 10), seeds=[0, 1, 2], steps=steps, induction=induction,
        prev_token=np.full_like(induction, 0.1), behaviour=behaviour.astype(np.float32),
        metric_names=list(dynamics.BEHAVIOUR))
    out["Dynamics"] = Dynamics(result, title=title)

    from tests.hostile_attention import make as attention_patterns
    from tests.hostile_circuit_graph import make as circuit_graph
    from tests.hostile_feature_dashboard import make as feature_dashboard
    from tests.hostile_projection import make as projection_scatter
    from tests.hostile_sae_training import make as sae_training
    from tests.hostile_superposition import make as superposition
    from tests.hostile_token_text import make as token_text

    out["AttentionPatterns"] = attention_patterns(title)
    out["TokenText"] = token_text(title)
    out["Superposition"] = superposition(title)
    out["ProjectionScatter"] = projection_scatter(title)
    out["TrainingMonitor"] = sae_training(title)
    out["FeatureDashboard"] = feature_dashboard(title)
    out["CircuitGraph"] = circuit_graph(title)
    return out
