"""`ActivationStore`: the rows `mechscope.collect` gathered, in memory or as shards on disk.

One *row* is one vector per (site, layer): a token of one example (``reduce="all"`` or
``"positions"``), an example's last token (``"last"``) or its mean over tokens (``"mean"``).
``example[i]`` / ``position[i]`` say which text and which token (in that text's own,
unpadded tokens; -1 for a mean) row ``i`` is; ``token_id[i]`` / ``tokens[i]`` the token there.

On disk a store is a directory::

    index.json                 the manifest: model, sites, layers, reduce, settings, the
                               sha256 of the texts, the shard list, how many examples are done
    shard-00000.safetensors    per (site, layer) "{site}.{layer}" arrays (rows, width), plus
    shard-00001.safetensors    "example", "position" and "token" int64 arrays (rows,)

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace``), shard first, then the manifest, so an interrupt leaves either the old or the
new state, never half a file; a shard not yet in the manifest is simply redone. Only
safetensors and JSON are read back (no pickle).

>>> import mechscope, tempfile
>>> from mechscope.analysis.collect import collect
>>> model = mechscope.tiny_model("llama")
>>> with tempfile.TemporaryDirectory() as d:
...     store = collect(model, ["hello world", "the cat sat"], layers=[0], out_dir=d,
...                     progress=False)
...     again = ActivationStore.open(d)
...     (again.n_rows == store.n_rows, again.get("resid", 0).shape == (store.n_rows, model.d_model))
(True, True)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.sites import site as get_site

#: The manifest's name in a store directory.
INDEX = "index.json"
#: ``format`` field of every manifest this module writes.
FORMAT = "mechscope-activations"
VERSION = 1
#: Row metadata arrays in every shard (besides one array per site and layer).
META = ("example", "position", "token")


def shard_name(i: int) -> str:
    """File name of shard ``i``: ``shard-00000.safetensors``."""
    return f"shard-{i:05d}.safetensors"


def array_key(site: str, layer: int) -> str:
    """The key of one site and layer in a shard: ``"resid.3"``."""
    return f"{site}.{layer}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, flush it to disk, rename it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``index.json`` atomically."""
    text = json.dumps(manifest, indent=1, ensure_ascii=True)

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    atomic_write(directory / INDEX, write)


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one shard (safetensors) atomically."""
    from safetensors.numpy import save_file

    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, lambda p: save_file(contiguous, str(p), metadata={"format": FORMAT}))


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the store in ``directory``; `InputError` if there is none or it is not one."""
    path = directory / INDEX
    if not path.is_file():
        raise InputError(f"{directory} holds no activation store ({INDEX} is missing); "
                         "write one with mechscope.collect(..., out_dir=...).")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable activation-store manifest ({err}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a mechscope activation-store manifest "
                         f"(its format field is not {FORMAT!r}).")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path} has store version {manifest.get('version')!r}; this mechscope "
                         f"reads version {VERSION}.")
    return manifest


@dataclass(frozen=True, eq=False)
class ActivationStore:
    """Activations gathered by `mechscope.collect`: rows of (site, layer) vectors and their labels.

    - ``sites``, ``layers``, ``reduce``, ``model_name``; ``n_rows`` (also ``len``),
      ``n_examples`` (texts collected so far), ``complete`` (all of them), ``directory`` (None
      for a store held in memory).
    - ``example`` / ``position`` / ``token_id`` (int64, one per row) and ``tokens`` (the token
      string of each row; "" for a mean): which text and token each row is.
    - ``get(site, layer)``: the (rows, width) array; ``batches(site, layer, n)`` iterates it in
      (n, width) pieces, one shard in memory at a time; ``to_pandas()``: the row table.
    - ``ActivationStore.open(directory)`` reopens a store written earlier.

    Heads are stored flat, ``n_heads * d_head`` wide: ``.reshape(rows, n_heads, -1)`` splits them.

    >>> import mechscope
    >>> from mechscope.analysis.collect import collect
    >>> model = mechscope.tiny_model("llama")
    >>> store = collect(model, ["hello world", "the cat"], sites=["resid", "heads"], layers=[1],
    ...                 reduce="last", progress=False)
    >>> store
    ActivationStore(rows=2, examples=2/2, sites=['resid', 'heads'], layers=[1], reduce='last', in memory)
    >>> store.get("heads", 1).shape == (2, model.n_heads * model.d_head)
    True
    >>> store.example.tolist(), [len(b) for b in store.batches("resid", 1, batch_size=1)]
    ([0, 1], [1, 1])
    """

    manifest: dict[str, Any]
    directory: Path | None = None
    memory: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> ActivationStore:
        """The store written by ``collect(..., out_dir=directory)`` (complete or not).

        >>> ActivationStore.open("/nonexistent/store")
        Traceback (most recent call last):
        ...
        mechscope.errors.InputError: /nonexistent/store holds no activation store (index.json is missing); write one with mechscope.collect(..., out_dir=...).
        """
        path = Path(directory)
        manifest = read_manifest(path)
        for shard in manifest["shards"]:
            if not (path / shard["file"]).is_file():
                raise InputError(f"{path}: {INDEX} lists {shard['file']} but the file is missing; "
                                 "the store is damaged (collect again with overwrite=True).")
        return cls(manifest=manifest, directory=path)

    # ---- what it holds ---------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.manifest["layers"]]

    @property
    def reduce(self) -> str:
        return str(self.manifest["reduce"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    @property
    def dtype(self) -> str:
        return str(self.manifest["dtype"])

    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def n_examples(self) -> int:
        """How many texts (from the first) have their rows in the store."""
        return int(self.manifest["done_examples"])

    @property
    def complete(self) -> bool:
        return self.n_examples == int(self.manifest["n_examples"])

    @property
    def settings(self) -> dict[str, Any]:
        """What the store was collected with (the fingerprint covers these and the texts)."""
        return dict(self.manifest["settings"])

    def width(self, site: str) -> int:
        """The width of ``site``'s rows."""
        return int(self.manifest["widths"][self._site(site)])

    def __len__(self) -> int:
        return self.n_rows

    @cached_property
    def example(self) -> np.ndarray:
        """Which text (index into the collected texts) each row comes from, (rows,) int64."""
        return self._meta("example")

    @cached_property
    def position(self) -> np.ndarray:
        """Which token of its text each row is (unpadded; -1 for ``reduce="mean"``), (rows,) int64."""
        return self._meta("position")

    @cached_property
    def token_id(self) -> np.ndarray:
        """The token id of each row (-1 for ``reduce="mean"``), (rows,) int64."""
        return self._meta("token")

    @cached_property
    def tokens(self) -> list[str]:
        """The token string of each row ("" for ``reduce="mean"``)."""
        strings = self.manifest.get("token_strings", {})
        return [strings.get(str(i), "") for i in self.token_id.tolist()]

    # ---- reading ---------------------------------------------------------------------------
    def get(self, site: str, layer: int) -> np.ndarray:
        """All rows of ``site`` at ``layer``, (rows, width), loaded from the shards."""
        key = self._key(site, layer)
        if self.memory is not None:
            return self.memory[key]
        out = np.empty((self.n_rows, self.width(site)), dtype=np.dtype(self.dtype))
        start = 0
        for chunk in self._shard_arrays(key, range(len(self.manifest["shards"]))):
            out[start:start + len(chunk)] = chunk
            start += len(chunk)
        return out

    def batches(self, site: str, layer: int, batch_size: int = 1024, *, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False) -> Iterator[np.ndarray]:
        """``site`` at ``layer`` in (batch_size, width) arrays (the last may be shorter unless
        ``drop_last``), holding one shard at a time in memory.

        ``shuffle=True`` visits the shards in a random order and permutes the rows within each
        (reproducible from ``seed``): a shuffle as good as the shards are large.
        """
        key = self._key(site, layer)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
        rng = np.random.default_rng(seed)
        if self.memory is not None:
            parts: Iterator[np.ndarray] = iter([self.memory[key]])
        else:
            order = np.arange(len(self.manifest["shards"]))
            if shuffle:
                order = rng.permutation(order)
            parts = self._shard_arrays(key, order.tolist())
        carry: np.ndarray | None = None
        for part in parts:
            if shuffle:
                part = part[rng.permutation(len(part))]
            if carry is not None and len(carry):
                part = np.concatenate([carry, part])
            n_full = len(part) // batch_size * batch_size
            for start in range(0, n_full, batch_size):
                yield part[start:start + batch_size]
            carry = part[n_full:]
        if carry is not None and len(carry) and not drop_last:
            yield carry

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per stored row: example, position, token id and token string."""
        import pandas as pd

        frame = pd.DataFrame({"example": self.example, "position": self.position,
                              "token_id": self.token_id, "token": self.tokens})
        frame.index.name = "row"
        return frame

    def __repr__(self) -> str:
        where = "in memory" if self.directory is None else f"dir={str(self.directory)!r}"
        return (f"ActivationStore(rows={self.n_rows}, examples={self.n_examples}/"
                f"{self.manifest['n_examples']}, sites={self.sites}, layers={self.layers}, "
                f"reduce={self.reduce!r}, {where})")

    # ---- helpers ---------------------------------------------------------------------------
    def _site(self, name: str) -> str:
        found = get_site(name, allowed=self.sites, verb="this store").name
        return found

    def _key(self, site: str, layer: int) -> str:
        name = self._site(site)
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or int(layer) not in self.layers:
            raise InputError(f"layer must be one of the stored layers {self.layers}, got {layer!r}.")
        return array_key(name, int(layer))

    def _meta(self, key: str) -> np.ndarray:
        if self.memory is not None:
            return self.memory[key]
        parts = list(self._shard_arrays(key, range(len(self.manifest["shards"]))))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _shard_arrays(self, key: str, order: Any) -> Iterator[np.ndarray]:
        from safetensors import safe_open

        assert self.directory is not None
        for i in order:
            shard = self.manifest["shards"][i]
            with safe_open(str(self.directory / shard["file"]), framework="numpy") as f:
                yield f.get_tensor(key)
