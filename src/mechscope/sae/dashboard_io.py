"""Files of `mechscope.sae.dashboard`: numpy arrays as safetensors and JSON, each written
atomically (`mechscope.analysis.store.atomic_write`), never pickle.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "a.safetensors"
>>> save_arrays(p, {"x": np.arange(3)})
>>> load_arrays(p)["x"].tolist()
[0, 1, 2]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.store import atomic_write
from ..errors import InputError


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named numpy arrays to a safetensors file at ``path``, atomically."""
    from safetensors.numpy import save_file

    data = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, lambda tmp: save_file(data, str(tmp)))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read what `save_arrays` wrote (an `InputError` for a broken file)."""
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as err:  # noqa: BLE001 - any broken file is the same user error
        raise InputError(f"{path} is not a readable safetensors file ({err}); delete it and run again.") from None


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON at ``path``, atomically."""
    text = json.dumps(data)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def read_json(path: Path) -> Any:
    """Read JSON written by `write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["save_arrays", "load_arrays", "write_json", "read_json"]
