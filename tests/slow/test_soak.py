"""Soak: 1,000 mixed calls in one process, each equal to the first call with the same inputs.

Patching (exact and attribution, every site), ablation (zero / mean / resample, neurons, heads,
layers; also the context manager), steering (vector + greedy generation), the logit lens,
activations, selectivity and widget creation (every widget, with its offline snapshot), cycled
on one tiny model. Every result must equal, bit for bit, the result of the first call of its
kind (no state leaks from one call into the next), the model must be unchanged at the end
(weights, hooks, tokenizer, RNG) and the process may grow by less than 100 MB.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil
import pytest

import mechscope
from mechscope.metrics import logit_diff
from tests.helpers import model_fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CALLS = 1000
LIMIT_MB = 100
CLEAN, CORRUPT = "The cat sat on the", "The dog sat on the"


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def arrays(result: Any) -> list[Any]:
    """The comparable content of a result: its numpy arrays, numbers and strings, in order."""
    if hasattr(result, "__dataclass_fields__"):
        out = []
        for name in result.__dataclass_fields__:
            value = getattr(result, name)
            if callable(value) or name == "metric":
                continue
            out += arrays(value)
        return out
    if isinstance(result, list | tuple):
        return [x for item in result for x in arrays(item)]
    if isinstance(result, dict):
        return [x for key in sorted(result) for x in [key, *arrays(result[key])]]
    if hasattr(result, "detach"):
        return [result.detach().cpu().numpy().copy()]
    return [result]


def same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"):
                return False
        elif isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
            continue
        elif x != y:
            return False
    return True


def calls(model: Any) -> list[tuple[str, Callable[[], Any]]]:
    metric = logit_diff(" the", " of").bind(model)
    vec = mechscope.steering_vector(model, ["good day", "nice day"], ["bad day", "sad day"], layer=1)
    texts = {"a": ["the cat sat", "red and blue"], "b": ["a dog ran far", "the end of it"]}

    def widgets() -> list[Any]:
        lens = mechscope.logit_lens(model, CLEAN, target=" the", top_k=3)
        patched = mechscope.patch(model, CLEAN, CORRUPT, metric, progress=False)
        made = [mechscope.activations(model, CLEAN).show(), lens.show(), patched.show(model=model),
                mechscope.selectivity(model, texts, layer=1).show()]
        snapshots = [w.offline_html() for w in made]
        assert all(snapshots)
        for w in made:
            w.close()
        return [len(s or "") for s in snapshots]

    out: list[tuple[str, Callable[[], Any]]] = []
    for site in ("resid", "attn", "mlp", "heads"):
        for method in ("exact", "attribution"):
            out.append((f"patch {site} {method}", lambda s=site, m=method: mechscope.patch(
                model, CLEAN, CORRUPT, metric, site=s, method=m, progress=False)))
    for method in ("zero", "mean", "resample"):
        for target in (mechscope.neurons(1, [0, 3, 5]), mechscope.heads(0, [1]), mechscope.layer(1, "mlp")):
            out.append((f"ablate {method} {target}", lambda m=method, t=target: mechscope.ablate(
                model, CLEAN, t, metric=metric, method=m, seed=0,
                reference=None if m == "zero" else [CORRUPT, "a dog ran far away"])))
    out.append(("ablate context", lambda: _ablate_context(model, metric)))
    out.append(("steering vector", lambda: mechscope.steering_vector(model, ["good day"], ["bad day"], layer=1)))
    out.append(("generate steered", lambda: mechscope.generate(model, "the cat", steer=vec, coefficient=2.0,
                                                               max_new_tokens=5)))
    out.append(("logit lens", lambda: mechscope.logit_lens(model, CLEAN, target=" the", top_k=3)))
    out.append(("activations", lambda: mechscope.activations(model, CLEAN)))
    out.append(("widgets", widgets))
    return out


def _ablate_context(model: Any, metric: Any) -> list[float]:
    with mechscope.ablate(model, target=mechscope.neurons(0, [1, 2]), method="zero") as ablated:
        return [ablated.metric_value(CLEAN, metric), ablated.metric_value(CORRUPT, metric),
                ablated.logits(CLEAN)]


def test_thousand_mixed_calls_are_stable_and_do_not_grow(tiny_llama):
    model = tiny_llama
    before = model_fingerprint(model)
    kinds = calls(model)
    first = {name: arrays(fn()) for name, fn in kinds}  # also the warm-up
    for name, fn in kinds:  # a second warm-up round: allocator pools, lazily built caches
        assert same(arrays(fn()), first[name]), name
    start, t0 = rss_mb(), time.monotonic()
    peak = start
    for i in range(CALLS):
        name, fn = kinds[i % len(kinds)]
        assert same(arrays(fn()), first[name]), f"call {i} ({name}) differs from the first {name} call"
        if i % 100 == 99:
            peak = max(peak, rss_mb())
    grown = rss_mb() - start
    print(f"\n{CALLS} mixed calls ({len(kinds)} kinds) in {time.monotonic() - t0:.0f} s; RSS "
          f"{start:.0f} MB -> {start + grown:.0f} MB (growth {grown:+.1f} MB, peak {peak:.0f} MB)")
    assert grown < LIMIT_MB, f"RSS grew {grown:.1f} MB over {CALLS} mixed calls"
    assert model_fingerprint(model) == before
