"""Transcoders at every MLP layer of the embedded SmolLM2-135M-Instruct, built on first use.

Attribution graphs (a local replacement model: every MLP replaced by its transcoder) need one
transcoder per layer; 30 of them would not fit the wheel, so `embedded_transcoders` builds them
once on this machine and caches them (`build_transcoders`, ``python -m
mechscope.sae.transcoders``). With the settings in `CONFIG`: collect ``mlp_in`` and ``mlp`` at
the requested layers once from the project's corpus (``mechscope.corpus.load("train")``, fp16,
`mechscope.collect`), train one TopK transcoder per layer from that store
(`mechscope.sae.train`), evaluate each on a few held-out corpus texts (FVU of the MLP output,
CE recovered with that one transcoder spliced; `mechscope.sae.evaluate`, several layers per
call so they share the clean pass) and write each as an fp16 SAELens folder with its numbers
in ``manifest.json`` under ``<cache>/transcoders-<config hash>/`` (``<cache>`` is
`mechscope.sae.shipped.cache_dir`). Later calls load from there.

Interrupt safety: the activation store resumes after its last shard; a layer in the manifest
is never retrained; a layer part-trained (or trained but not yet evaluated) continues from
`train`'s checkpoint, so the result equals an uninterrupted build's exactly. The activation
store and the checkpoints are deleted once every layer they serve is saved.

>>> CONFIG["model"], CONFIG["d_sae"], CONFIG["k"]
('SmolLM2-135M-Instruct', 1024, 32)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from .dictionary import SAE

#: Everything a build depends on (its hash names the cache folder). ``n_texts`` corpus texts cut
#: to ``max_chars`` (about 50k tokens), collected ``collect_batch_size`` texts per pass into shards
#: of ``shard_rows`` rows; TopK transcoders of ``d_sae`` latents, ``k`` active, ``epochs`` over the
#: store in batches of ``batch_size`` rows at Adam rate ``lr``; evaluated on ``eval_texts`` held-out
#: texts of at most ``eval_context`` tokens, ``eval_group`` layers per `evaluate` call.
CONFIG: dict[str, Any] = {
    "model": "SmolLM2-135M-Instruct", "n_texts": 700, "max_chars": 800, "collect_batch_size": 16,
    "shard_rows": 8192, "architecture": "topk", "d_sae": 1024, "k": 32, "epochs": 3, "batch_size": 1024,
    "lr": 1e-3, "seed": 0, "eval_texts": 8, "eval_context": 64, "eval_group": 6,
}
_POSITIVE = ("n_texts", "max_chars", "collect_batch_size", "shard_rows", "d_sae", "k", "epochs", "batch_size",
             "eval_texts", "eval_context", "eval_group")
MANIFEST = "manifest.json"


def config_hash(config: dict[str, Any] | None = None) -> str:
    """The 12 hex digits naming a config's cache folder.

    >>> config_hash() == config_hash(dict(CONFIG)), config_hash() == config_hash({**CONFIG, "k": 16})
    (True, False)
    """
    text = json.dumps(CONFIG if config is None else config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_dir(config: dict[str, Any] | None = None) -> Path:
    """Where a config's transcoders are cached: ``transcoders-<config_hash>`` under
    `mechscope.sae.shipped.cache_dir`.

    >>> default_dir().name.startswith("transcoders-"), default_dir().parent.name
    (True, 'embedded-saes')
    """
    from .shipped import cache_dir

    return cache_dir() / f"transcoders-{config_hash(config)}"


def _check(model: Any, layers: Any, config: Any, cache_dir: Any, progress: Any,
           verb: str) -> tuple[list[int], dict[str, Any], Path]:
    """Every check, before any work: the model, the config, the layers, the cache folder."""
    from ..validate import check_model

    cfg = dict(CONFIG) if config is None else config
    if not isinstance(cfg, dict) or set(cfg) != set(CONFIG):
        got = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise InputError(f"config must be a dict with the keys of mechscope.sae.transcoders.CONFIG "
                         f"({sorted(CONFIG)}), got {got}: start from {{**CONFIG, ...}}.")
    for key in _POSITIVE:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"config[{key!r}] must be a positive int, got {value!r}.")
    if cfg["k"] > cfg["d_sae"]:
        raise InputError(f"config k={cfg['k']} is more than d_sae={cfg['d_sae']}; use k <= d_sae.")
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(cfg["model"], str) or cfg["model"] not in str(name):
        raise InputError(f"the embedded transcoders are for {cfg['model']} (mechscope.load()), not {name}; "
                         "for another model pass config={**CONFIG, 'model': model.name, ...}.")
    model = check_model(model, verb)
    if not isinstance(progress, bool):
        raise InputError(f"progress must be True or False, got {progress!r}.")
    chosen = model.check_layers(layers)
    if cache_dir is not None and not isinstance(cache_dir, str | Path):
        raise InputError(f"cache_dir must be a path (str or Path) or None, got {type(cache_dir).__name__}.")
    root = default_dir(cfg) if cache_dir is None else Path(cache_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise InputError(f"cache_dir {root} is a file, not a directory.")
    return chosen, cfg, root


def _read_manifest(root: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        return {"config": cfg, "layers": {}, "seconds": {"collect": 0.0}}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("config") != json.loads(json.dumps(cfg)):
        raise InputError(f"{root} holds transcoders built with another config ({manifest.get('config')}); "
                         "use another cache_dir or delete that folder.")
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    from ..analysis.store import atomic_write

    text = json.dumps(manifest, indent=1)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(root / MANIFEST, write)


def _layer_dir(root: Path, layer: int) -> Path:
    return root / f"transcoder-{layer}"


def _saved(root: Path, manifest: dict[str, Any], layer: int) -> bool:
    folder = _layer_dir(root, layer)
    return str(layer) in manifest["layers"] and (folder / "cfg.json").is_file() \
        and (folder / "sae_weights.safetensors").is_file()


def embedded_transcoders(model: Any, layers: Any = None, *, progress: bool = True,
                         cache_dir: str | Path | None = None,
                         config: dict[str, Any] | None = None) -> dict[int, SAE]:
    """One TopK transcoder (``mlp_in`` -> ``mlp``) per layer of the embedded model (all 30
    layers by default), built on first use (`build_transcoders`: about 20-30 min on 2 cores,
    with progress bars, resumable) and loaded from the cache afterwards.

    ``layers``: an int or a list (negative count from the end); ``cache_dir``: the folder
    (default `default_dir`); ``config``: the settings (default `CONFIG`; its ``"model"`` must be
    part of the model's name). Returns ``{layer: SAE}`` in layer order.

    >>> import mechscope
    >>> embedded_transcoders(mechscope.tiny_model("llama"))
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: the embedded transcoders are for SmolLM2-135M-Instruct (mechscope.load()), not tiny-llama-seed0; for another model pass config={**CONFIG, 'model': model.name, ...}.
    """
    from .formats import load

    chosen, cfg, root = _check(model, layers, config, cache_dir, progress, "embedded_transcoders")
    manifest = _read_manifest(root, cfg)
    if not all(_saved(root, manifest, layer) for layer in chosen):
        build_transcoders(model, chosen, progress=progress, cache_dir=root, config=cfg)
    return {layer: load(_layer_dir(root, layer), model=model) for layer in chosen}


def build_transcoders(model: Any, layers: Any = None, *, progress: bool = True,
                      cache_dir: str | Path | None = None,
                      config: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """Collect, train, evaluate and save the transcoders of ``layers`` that the cache lacks
    (see the module docstring); arguments as `embedded_transcoders`. Returns each requested
    layer's manifest entry: ``evaluation`` (`mechscope.sae.SAEEvaluation.summary` numbers plus
    ``ce_recovered_ci``), ``seconds`` (train, evaluate), ``sha256`` and ``bytes`` of its weights.

    >>> import mechscope
    >>> build_transcoders(mechscope.tiny_model("llama"), layers=[7], config={**CONFIG, "model": "tiny"})
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: layer 7 is out of range: this model has 2 layers (0..1; negative indices count from the end, down to -2).
    """
    from ..corpus import load as load_corpus
    from ..progress import progress as bar_of

    chosen, cfg, root = _check(model, layers, config, cache_dir, progress, "build_transcoders")
    manifest = _read_manifest(root, cfg)
    todo = [layer for layer in chosen if not _saved(root, manifest, layer)]
    if todo:
        texts = load_corpus("train").texts(n=cfg["n_texts"], max_chars=cfg["max_chars"])
        heldout = load_corpus("heldout").texts(n=cfg["eval_texts"], max_chars=cfg["max_chars"])
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        store = _store(model, root, todo, texts, cfg, progress)
        manifest["seconds"]["collect"] = round(manifest["seconds"]["collect"] + time.perf_counter() - start, 2)
        _write_manifest(root, manifest)
        with bar_of(total=len(chosen), initial=len(chosen) - len(todo), desc="transcoders", unit="layer",
                    enabled=progress) as bar:
            for i in range(0, len(todo), cfg["eval_group"]):
                group = todo[i:i + cfg["eval_group"]]
                manifest = _build_group(model, root, store, group, heldout, cfg, manifest, progress)
                bar.update(len(group))
        _clean_up(root, manifest)
    return {layer: manifest["layers"][str(layer)] for layer in chosen}


def _store(model: Any, root: Path, todo: list[int], texts: list[str], cfg: dict[str, Any],
           progress: bool) -> Any:
    """The activation store for ``todo``: one in the cache that holds those layers (resumed if
    it is incomplete), else a new one for exactly these layers."""
    from ..analysis.collect import collect

    layers = todo
    for index in sorted(root.glob("activations-*/index.json")):
        held = json.loads(index.read_text(encoding="utf-8")).get("layers", [])
        if set(todo) <= set(held):
            layers = list(held)
            break
    name = hashlib.sha256(json.dumps(layers).encode()).hexdigest()[:8]
    return collect(model, texts, sites=["mlp_in", "mlp"], layers=layers, reduce="all",
                   out_dir=root / f"activations-{name}", batch_size=cfg["collect_batch_size"],
                   shard_rows=cfg["shard_rows"], dtype="float16", skip_first=True, progress=progress)


def _train_layer(store: Any, root: Path, layer: int, cfg: dict[str, Any], progress: bool) -> Any:
    """The layer's transcoder (`train` resumes from, or returns, its checkpoint)."""
    from .train import train

    return train(store, layer=layer, site="mlp_in", site_out="mlp", kind="transcoder",
                 architecture=cfg["architecture"], d_sae=cfg["d_sae"], k=cfg["k"], epochs=cfg["epochs"],
                 seeds=(cfg["seed"],), lr=cfg["lr"], batch_size=cfg["batch_size"],
                 out_dir=root / "train" / f"layer-{layer}", progress=progress).sae


def _build_group(model: Any, root: Path, store: Any, group: list[int], heldout: list[str],
                 cfg: dict[str, Any], manifest: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Train the layers of ``group``, evaluate them in one call, save each."""
    from .evaluation import evaluate

    saes, seconds = [], []
    for layer in group:
        start = time.perf_counter()
        saes.append(_train_layer(store, root, layer, cfg, progress))
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    evs = evaluate(saes, model, heldout, context=cfg["eval_context"], batch_size=cfg["eval_texts"],
                   progress=progress)
    per_eval = (time.perf_counter() - start) / len(group)
    for layer, sae, ev, train_s in zip(group, saes, evs, seconds, strict=True):
        numbers = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in ev.summary().items()}
        numbers["ce_recovered_ci"] = [round(x, 5) for x in ev.ce_recovered_ci]
        manifest = _save_layer(root, manifest, layer, sae, numbers,
                               {"train": round(train_s, 2), "evaluate": round(per_eval, 2)}, cfg)
    return manifest


def _save_layer(root: Path, manifest: dict[str, Any], layer: int, sae: SAE, numbers: dict[str, Any],
                seconds: dict[str, float], cfg: dict[str, Any]) -> dict[str, Any]:
    """Write one transcoder (fp16, evaluation in its metadata), then the manifest that lists it."""
    sae = sae.with_config(metadata={**sae.cfg.metadata, "embedded_transcoder": layer, "config": cfg,
                                    "evaluation": numbers})
    folder = sae.save(_layer_dir(root, layer), dtype="float16")
    data = (folder / "sae_weights.safetensors").read_bytes()
    entry = {"evaluation": numbers, "seconds": seconds, "sha256": hashlib.sha256(data).hexdigest(),
             "bytes": len(data)}
    manifest = {**manifest, "layers": {**manifest["layers"], str(layer): entry}}
    _write_manifest(root, manifest)
    shutil.rmtree(root / "train" / f"layer-{layer}", ignore_errors=True)
    return manifest


def _clean_up(root: Path, manifest: dict[str, Any]) -> None:
    """Delete activation stores whose every layer is saved (they are large and no longer needed)."""
    for index in root.glob("activations-*/index.json"):
        held = json.loads(index.read_text(encoding="utf-8")).get("layers", [])
        if all(_saved(root, manifest, layer) for layer in held):
            shutil.rmtree(index.parent, ignore_errors=True)
    train_dir = root / "train"
    if train_dir.is_dir() and not any(train_dir.iterdir()):
        train_dir.rmdir()


def _summary(report: dict[int, dict[str, Any]], root: Path) -> str:
    import numpy as np

    lines = []
    for layer, entry in report.items():
        ev = entry["evaluation"]
        lines.append(f"layer {layer:2d}: fvu {ev['fvu']:.3f}  ce_recovered {ev['ce_recovered']:.3f}  "
                     f"l0 {ev['l0']:.1f}  dead {ev['dead_fraction']:.2f}  train {entry['seconds']['train']:.0f} s")
    for key in ("fvu", "ce_recovered"):
        values = np.array([e["evaluation"][key] for e in report.values()])
        lines.append(f"{key}: min {values.min():.3f}  median {np.median(values):.3f}  max {values.max():.3f}")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    train_s = sum(e["seconds"]["train"] for e in manifest["layers"].values())
    eval_s = sum(e["seconds"]["evaluate"] for e in manifest["layers"].values())
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    lines.append(f"seconds: collect {manifest['seconds']['collect']:.0f}, train {train_s:.0f}, "
                 f"evaluate {eval_s:.0f}; cache {root} {size / 2**20:.1f} MiB")
    return "\n".join(lines)


__all__ = ["CONFIG", "embedded_transcoders", "build_transcoders", "config_hash", "default_dir"]


if __name__ == "__main__":
    import sys

    import mechscope

    chosen = [int(a) for a in sys.argv[1:]] or None
    loaded = mechscope.load()
    started = time.perf_counter()
    result = build_transcoders(loaded, chosen)
    print(_summary(result, default_dir()))
    print(f"wall {time.perf_counter() - started:.0f} s")
