"""Shared fixtures. Tiers live in folders (unit / integration / browser / notebooks); see CONTRIBUTING.md."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: it reads HF_HUB_OFFLINE once, at import time
# (set later, a hub id would be retried over the network for ~50 s before failing).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before torch loads OpenMP: spinning worker threads make each op ~50x slower when the two
# cores are shared (a tiny-model trace: 5 ms passive vs 250 ms spinning; SmolLM2 forward
# 0.3 s vs 2.9 s, measured with a second busy process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

import mechscope  # noqa: E402
from mechscope.models import tiny_model  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The real-NDIF tier (tests/ndif) starts a whole NDIF stack from a separate virtual
# environment: only `make test-ndif` (which sets MECHSCOPE_NDIF=1) collects it. Elsewhere the
# folder is not collected at all (never reported as skipped).
collect_ignore = [] if os.environ.get("MECHSCOPE_NDIF") == "1" else ["ndif"]

FAMILIES = ("llama", "gpt2", "gpt_neox")


@pytest.fixture(params=FAMILIES)
def tiny(request):
    """A tiny random model of each architecture family (built in milliseconds)."""
    return tiny_model(request.param)


@pytest.fixture
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M-Instruct (loaded once per test session, offline)."""
    return mechscope.load()


@pytest.fixture
def forward_counter(tiny_llama):
    """A list that grows by one per forward pass of ``tiny_llama`` (validation must leave it empty)."""
    calls = []
    handle = tiny_llama.hf.register_forward_pre_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()
