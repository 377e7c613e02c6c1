"""Checkpoints of `mechscope.sae.train`: safetensors arrays plus a JSON manifest, no pickle.

``out_dir`` holds::

    train.json                     the manifest: settings, finished seeds, the last checkpoint
    checkpoint-<step>.safetensors  the running seed: weights, Adam moments, step counters,
                                   dead-latent counters, the BatchTopK threshold, history so far
    seed-<seed>.safetensors        a finished seed's weights and history

Every file is written with `mechscope.analysis.store.atomic_write` (temporary name, fsync,
rename), checkpoint first and manifest second, so an interrupt leaves the previous state.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     save_arrays(Path(d) / "a.safetensors", {"w": np.ones(2, np.float32)})
...     load_arrays(Path(d) / "a.safetensors")["w"].tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.store import atomic_write
from ..errors import InputError

#: The manifest's name in ``out_dir``.
MANIFEST = "train.json"
FORMAT = "mechscope-sae-training"


def checkpoint_name(step: int) -> str:
    """``checkpoint-00000042.safetensors``."""
    return f"checkpoint-{step:08d}.safetensors"


def seed_name(seed: int) -> str:
    """``seed-3.safetensors``: a finished seed's weights and history."""
    return f"seed-{seed}.safetensors"


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (safetensors) atomically."""
    from safetensors.numpy import save_file

    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, lambda p: save_file(contiguous, str(p), metadata={"format": FORMAT}))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a safetensors file."""
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``train.json`` atomically."""
    text = json.dumps(manifest, indent=1, ensure_ascii=True)

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    atomic_write(directory / MANIFEST, write)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, None when there is none."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable training manifest ({err}); remove it or choose "
                         "another out_dir.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a mechscope SAE-training manifest; choose another out_dir.")
    return manifest


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"name (old there, new now)"`` for every setting that differs.

    >>> differences({"k": 3, "lr": 1.0}, {"k": 4, "lr": 1.0})
    ['k (3 there, 4 now)']
    """
    keys = sorted(set(old) | set(new))
    return [f"{key} ({old.get(key)!r} there, {new.get(key)!r} now)" for key in keys if old.get(key) != new.get(key)]


def prepare(directory: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest to continue from: a fresh one, or the same run's; `InputError` for another run's."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"out_dir {directory} is a file, not a directory.")
    directory.mkdir(parents=True, exist_ok=True)
    old = read_manifest(directory)
    if old is not None:
        diffs = differences(old["settings"], settings)
        if diffs:
            raise InputError(f"out_dir {directory} holds another training run; what differs: "
                             f"{'; '.join(diffs)}. Choose another out_dir, or call train with the same "
                             "settings to resume it.")
        for name in [old.get("checkpoint"), *(seed_name(s) for s in old["finished"])]:
            if name and not (directory / name).is_file():
                raise InputError(f"out_dir {directory}: {MANIFEST} lists {name} but the file is missing; "
                                 "the run is damaged. Remove the directory to start over.")
        return old
    manifest = {"format": FORMAT, "version": 1, "settings": settings, "finished": [], "checkpoint": None}
    write_manifest(directory, manifest)
    return manifest


def commit(directory: Path, manifest: dict[str, Any], file: str, arrays: dict[str, np.ndarray],
           *, finished_seed: int | None = None) -> dict[str, Any]:
    """Write ``arrays`` to ``file``, then the manifest naming it; remove the older checkpoint."""
    save_arrays(directory / file, arrays)
    old = manifest.get("checkpoint")
    new = dict(manifest)
    if finished_seed is None:
        new["checkpoint"] = file
    else:
        new["finished"] = [*manifest["finished"], finished_seed]
        new["checkpoint"] = None
    write_manifest(directory, new)
    if old and old != new["checkpoint"]:
        (directory / old).unlink(missing_ok=True)
    return new


__all__ = ["MANIFEST", "checkpoint_name", "seed_name", "save_arrays", "load_arrays", "read_manifest",
           "write_manifest", "differences", "prepare", "commit"]
