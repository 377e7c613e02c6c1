"""`mechscope.load`: the embedded default model, a local path or hub id, or a model you loaded."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from . import embedded
from .model import Model


def _from_pretrained(source: str, revision: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return model, tokenizer


def load(source: str | torch.nn.Module | None = None, *, tokenizer: Any = None,
         revision: str | None = None, dtype: torch.dtype = torch.float32) -> Model:
    """Load a causal LM for mechscope.

    - ``load()``: the embedded SmolLM2-135M-Instruct (no network; converted once to a cache).
    - ``load("path/or/hub-id", revision=None)``: any Hugging Face causal LM; a hub id needs a
      network (or a filled HF cache).
    - ``load(hf_model, tokenizer=tok)``: wrap a model you already loaded.

    >>> import mechscope
    >>> model = mechscope.load()            # doctest: +SKIP
    >>> model.str_tokens("The capital of France is")   # doctest: +SKIP
    ['The', ' capital', ' of', ' France', ' is']
    """
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
