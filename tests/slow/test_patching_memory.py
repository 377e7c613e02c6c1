"""Memory soak: 1,000 patching calls on a tiny model must not grow the process (RSS < 50 MB)."""

from __future__ import annotations

import gc

import psutil
import pytest

import mechscope
from mechscope.metrics import logit_diff

pytestmark = pytest.mark.slow

CALLS = 1000


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.parametrize("method", ["exact", "attribution"])
def test_repeated_patching_does_not_leak(tiny_llama, method):
    metric = logit_diff(" the", " of").bind(tiny_llama)
    sites = ("resid", "attn", "mlp", "heads")

    def once(i: int) -> None:
        mechscope.patch(tiny_llama, "The cat sat on the", "The dog sat on the", metric,
                        site=sites[i % 4], method=method, progress=False)

    for i in range(50):  # warm-up: allocator pools, lazily built caches
        once(i)
    start = _rss_mb()
    for i in range(CALLS):
        once(i)
    grown = _rss_mb() - start
    print(f"RSS growth over {CALLS} {method} patching calls: {grown:.1f} MB")
    assert grown < 50, f"RSS grew {grown:.1f} MB over {CALLS} patching calls ({method})"
