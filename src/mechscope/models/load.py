"""`mechscope.load`: the embedded default model, a local path or hub id, or a model you loaded."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from . import embedded
from .model import Model


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers inside the block (restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_pretrained(source: str, revision: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return model, tokenizer


def load(source: str | os.PathLike | torch.nn.Module | None = None, *, tokenizer: Any = None,
         revision: str | None = None, dtype: torch.dtype = torch.float32,
         remote: bool | str = False, deadline: float | None = None) -> Model:
    """Load a causal LM for mechscope.

    - ``load()``: the embedded SmolLM2-135M-Instruct (no network; converted once to a cache).
    - ``load("path/or/hub-id", revision=None)``: any Hugging Face causal LM; a hub id needs a
      network (or a filled HF cache).
    - ``load(hf_model, tokenizer=tok)``: wrap a model you already loaded.

    >>> import mechscope
    >>> model = mechscope.load()            # doctest: +SKIP
    >>> model.str_tokens("The capital of France is")   # doctest: +SKIP
    ['The', ' capital', ' of', ' France', ' is']

    Remote execution on NDIF (``mechscope.models.remote``):

    - ``load("org/model", remote=True, deadline=60)``: the weights stay on NDIF (nnsight
      builds the model on its meta device; the config and tokenizer still come from the Hub);
      every call then runs there, bounded by ``deadline`` seconds, and fails with one
      `RemoteError` naming the host, NDIF_HOST and NDIF_API_KEY. ``remote="https://host"``
      picks the host for this model. Fetching the config and tokenizer is bounded by
      ``deadline`` too (a `ModelLoadError` when it passes); with ``HF_HUB_OFFLINE=1`` they
      come from the local Hugging Face cache and the model key uses the hub id as spelled.
    - ``remote="local"`` (any source): run nnsight's serialise/deserialise path in-process,
      the offline test of remote execution.
    """
    if remote == "local":
        model = load(source, tokenizer=tokenizer, revision=revision, dtype=dtype)
        model.remote = "local"
        return model
    if remote:
        from .remote import DEFAULT_DEADLINE, load_remote

        if not isinstance(remote, bool | str):
            raise ModelLoadError(f"remote must be False, True, 'local' or an https:// host, got {remote!r}.")
        if tokenizer is not None or not isinstance(source, str):
            raise ModelLoadError(
                "remote=True takes a Hugging Face hub id (load('org/model', remote=True)); "
                "NDIF cannot run a model object or tokenizer from this machine."
            )
        return load_remote(source, revision=revision, remote=remote,
                           deadline=DEFAULT_DEADLINE if deadline is None else deadline)
    if deadline is not None:
        raise ModelLoadError("deadline= is only for remote models: load('org/model', remote=True, deadline=60).")
    if isinstance(source, torch.nn.Module):
        if tokenizer is None:
            raise ModelLoadError(
                "load(hf_model) needs its tokenizer too: load(hf_model, tokenizer=tok)."
            )
        return Model.wrap(source, tokenizer)
    if source is None:
        path = embedded.prepare()
        start = time.perf_counter()
        hf, tok = _from_pretrained(str(path), None, dtype)
        model = Model.wrap(hf, tok, name=embedded.EMBEDDED_NAME)
        model.info["load_seconds"] = time.perf_counter() - start
        return model
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise ModelLoadError(
            f"load() takes a path, a hub id, a torch model or nothing, got {source!r}."
        )
    local = Path(source).expanduser()
    looks_like_path = local.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_like_path and not local.exists():
        raise ModelLoadError(
            f"no model at {source!r}: that path does not exist. Give a directory holding "
            "config.json and weights, a hub id such as 'EleutherAI/pythia-70m', or call "
            "mechscope.load() for the embedded model."
        )
    if tokenizer is not None:
        raise ModelLoadError("tokenizer= is only for load(hf_model, tokenizer=tok).")
    try:
        hf, tok = _from_pretrained(str(local) if local.exists() else source, revision, dtype)
    except Exception as err:  # noqa: BLE001 - re-raised with the cause attached
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "HF_HUB_OFFLINE=1 is set, so only models already in the Hugging Face cache load"
            if offline
            else "a hub id needs a network connection (or the model in the Hugging Face cache)"
        )
        raise ModelLoadError(
            f"could not load {source!r}{f' at revision {revision!r}' if revision else ''}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
            f"Note: {hint}. For the embedded model call mechscope.load()."
        ) from err
    return Model.wrap(hf, tok, name=source)
