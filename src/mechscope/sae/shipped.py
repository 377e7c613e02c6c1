"""Dictionaries for the embedded SmolLM2-135M-Instruct, and the script that makes them.

`embedded(model, layer=15)` loads a shipped dictionary (fp16 safetensors in SAELens format
under ``mechscope/sae/weights/``); `build()` (``python -m mechscope.sae.shipped``) reproduces
every one of them from the project's offline corpus (`mechscope.corpus`, ``make corpus``) with
the settings in `CONFIG`: collect the activations once (resumable, `mechscope.collect`), train
each dictionary from that cache (`mechscope.sae.train`), evaluate it on held-out corpus text,
fold the input scale in and write it in fp16 with its evaluation in the config's metadata.

>>> sorted(CONFIG["collect"]["layers"]), [d["name"] for d in CONFIG["dictionaries"]]
([8, 15, 22], ['resid-8', 'resid-15', 'resid-22', 'transcoder-15'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from .dictionary import SAE

#: Everything `build` depends on. Changing it changes the dictionaries (and the caches' keys).
CONFIG: dict[str, Any] = {
    "model": "SmolLM2-135M-Instruct",
    "collect": {"split": "train", "n_texts": 4000, "max_chars": 800, "sites": ["resid", "mlp_in", "mlp"],
                "layers": [8, 15, 22], "dtype": "float16", "skip_first": True, "batch_size": 16},
    "train": {"epochs": 3, "batch_size": 1024, "lr": 1e-3, "seed": 0},
    "evaluate": {"split": "heldout", "n_texts": 100, "max_chars": 800, "context": 128},
    "dictionaries": [
        {"name": "resid-8", "kind": "sae", "site": "resid", "layer": 8, "architecture": "topk", "d_sae": 2048, "k": 64},
        {"name": "resid-15", "kind": "sae", "site": "resid", "layer": 15, "architecture": "topk", "d_sae": 2048,
         "k": 64},
        {"name": "resid-22", "kind": "sae", "site": "resid", "layer": 22, "architecture": "topk", "d_sae": 2048,
         "k": 64},
        {"name": "transcoder-15", "kind": "transcoder", "site": "mlp_in", "site_out": "mlp", "layer": 15,
         "architecture": "topk", "d_sae": 2048, "k": 64},
    ],
}
#: The shipped dictionaries: one SAELens folder each (fp16), plus manifest.json.
WEIGHTS = Path(__file__).parent / "weights"


def cache_dir() -> Path:
    """Where `build` keeps its activation cache and checkpoints (``MECHSCOPE_SAE_BUILD_DIR`` overrides).

    >>> cache_dir().name
    'embedded-saes'
    """
    env = os.environ.get("MECHSCOPE_SAE_BUILD_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mechscope" / "embedded-saes"


def available() -> list[str]:
    """Names of the shipped dictionaries.

    >>> set(available()) <= {d["name"] for d in CONFIG["dictionaries"]}
    True
    """
    return sorted(p.name for p in WEIGHTS.iterdir() if (p / "cfg.json").is_file()) if WEIGHTS.is_dir() else []


def embedded(model: Any, layer: int = 15, *, kind: str = "sae") -> SAE:
    """The shipped dictionary of the embedded model at ``layer``: ``kind="sae"`` (residual
    stream after block ``layer``) or ``"transcoder"`` (MLP input -> MLP output).

    >>> import mechscope
    >>> embedded(mechscope.tiny_model("llama"))
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: the embedded dictionaries are for SmolLM2-135M-Instruct (mechscope.load()), not tiny-llama-seed0.
    """
    from .formats import load

    name = getattr(model, "name", type(model).__name__)
    if CONFIG["model"] not in str(name):
        raise InputError(f"the embedded dictionaries are for {CONFIG['model']} (mechscope.load()), not {name}.")
    if kind not in ("sae", "transcoder"):
        raise InputError(f"kind must be 'sae' or 'transcoder', got {kind!r}.")
    wanted = f"{'resid' if kind == 'sae' else 'transcoder'}-{layer}"
    have = available()
    if wanted not in have:
        raise InputError(f"no embedded {kind} at layer {layer}: shipped are {have}; build others with "
                         "`python -m mechscope.sae.shipped` after editing CONFIG.")
    return load(WEIGHTS / wanted, model=model)


def collect_activations(model: Any, progress: bool = True) -> Any:
    """The activation cache `build` trains from (collected once; an interrupted run resumes)."""
    from ..analysis.collect import collect
    from ..corpus import load as load_corpus

    c = CONFIG["collect"]
    texts = load_corpus(c["split"]).texts(n=c["n_texts"], max_chars=c["max_chars"])
    return collect(model, texts, sites=c["sites"], layers=c["layers"], reduce="all",
                   out_dir=cache_dir() / "activations", batch_size=c["batch_size"], dtype=c["dtype"],
                   skip_first=c["skip_first"], progress=progress)


def build(names: Any = None, *, out: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Collect, train, evaluate and write the dictionaries of `CONFIG` (all, or ``names``) to
    ``out`` (default `WEIGHTS`); every stage resumes after an interrupt. Returns each one's
    evaluation numbers (also written to ``manifest.json`` and to each ``cfg.json``'s metadata)."""
    import mechscope

    from ..corpus import load as load_corpus
    from .evaluation import evaluate
    from .train import train

    specs = [d for d in CONFIG["dictionaries"] if names is None or d["name"] in names]
    if not specs:
        raise InputError(f"no dictionary named {names!r}: CONFIG has {[d['name'] for d in CONFIG['dictionaries']]}.")
    model = mechscope.load()
    store = collect_activations(model, progress)
    e = CONFIG["evaluate"]
    heldout = load_corpus(e["split"]).texts(n=e["n_texts"], max_chars=e["max_chars"])
    out = WEIGHTS if out is None else Path(out)
    t = CONFIG["train"]
    report: dict[str, Any] = {}
    for d in specs:
        extra = {"site_out": d["site_out"]} if "site_out" in d else {}
        result = train(store, layer=d["layer"], site=d["site"], kind=d["kind"], architecture=d["architecture"],
                       d_sae=d["d_sae"], k=d["k"], epochs=t["epochs"], seeds=(t["seed"],), lr=t["lr"],
                       batch_size=t["batch_size"], out_dir=cache_dir() / "train" / d["name"],
                       progress=progress, **extra)
        ev = evaluate(result.sae, model, heldout, context=e["context"], progress=progress)
        numbers = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in ev.summary().items()}
        numbers["ce_recovered_ci"] = [round(x, 5) for x in ev.ce_recovered_ci]
        sae = result.sae.with_config(model=CONFIG["model"], metadata={
            **result.sae.cfg.metadata, "embedded": d["name"], "config": CONFIG, "evaluation": numbers})
        sae.save(out / d["name"], dtype="float16")
        report[d["name"]] = numbers
    _write_manifest(out, report)
    return report


def _write_manifest(out: Path, report: dict[str, Any]) -> None:
    import hashlib
    import json

    from ..analysis.store import atomic_write

    path = out / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    files = {}
    for name in report:
        data = (out / name / "sae_weights.safetensors").read_bytes()
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {"config": CONFIG, "dictionaries": {**old.get("dictionaries", {}),
                                                   **{n: {"evaluation": report[n], **files[n]} for n in report}}}
    text = json.dumps(manifest, indent=1)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


if __name__ == "__main__":
    import sys

    for name, numbers in build(sys.argv[1:] or None).items():
        print(name, {k: numbers[k] for k in ("l0", "fvu", "ce_recovered", "dead_fraction", "dense_fraction")})
