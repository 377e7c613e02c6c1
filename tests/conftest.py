"""Shared fixtures. Tiers live in folders (unit / integration / browser / notebooks); see CONTRIBUTING.md."""

from __future__ import annotations

import os

import pytest
import torch

import mechscope
from mechscope.models import tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))

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
