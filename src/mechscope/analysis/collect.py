"""`collect`: activations at chosen sites and layers over a corpus, for probes and dictionaries.

The texts run in batches of at most ``batch_size`` texts and ``max_tokens_per_batch`` padded
tokens, in the order given; each batch is one trace that reads every chosen (site, layer),
reduces it inside the trace (only the kept rows leave it, which matters on NDIF) and stops the
forward pass right after the last layer needed (nothing above it, nor the unembedding, runs).

Reductions (``reduce=``), each giving rows labelled by ``example`` and ``position``:

- ``"all"``: every token of every text (``skip_first=True`` leaves out each text's first
  token, where many models park a huge "attention sink" vector);
- ``"last"``: each text's last token;
- ``"mean"``: each text's mean over its tokens (position -1; ``skip_first`` as above);
- ``"positions"``: the token positions ``positions=`` names: an int or a list of ints applied
  to every text (negative count from each text's end), or a function from a text's token
  strings to such a list (role positions: e.g. where a chat template's assistant turn starts).

Padding never reaches a row: batches are left-padded and pad positions are dropped with the
attention mask; position ids follow each text's own tokens, so a row equals the same text run
alone (to float rounding).

``out_dir=None`` keeps the rows in memory. With ``out_dir`` they are written as safetensors
shards of about ``shard_rows`` rows with an ``index.json`` manifest (see
`mechscope.analysis.store`), so memory stays bounded by one shard and one batch whatever the
corpus size; calling ``collect`` again with the same directory and settings resumes after the
last shard written (an interrupt loses at most the shard in progress; nothing is duplicated),
and a directory holding a different run is an `InputError` before any forward pass.

>>> import mechscope
>>> model = mechscope.tiny_model("llama")
>>> texts = ["The cat sat on the mat", "Hello world"]
>>> from mechscope.analysis.collect import collect
>>> store = collect(model, texts, sites=["resid", "neurons"], layers=[0], progress=False)
>>> n_tokens = sum(len(model.str_tokens(t)) for t in texts)
>>> store.get("resid", 0).shape == (n_tokens, model.d_model), store.get("neurons", 0).shape[1]
(True, 128)
>>> store.to_pandas().columns.tolist()
['example', 'position', 'token_id', 'token']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model, left_padded
from ..models.sites import execution_order
from ..models.sites import site as get_site
from ..models.trace import save
from ..validate import as_int, check_model, index_list
from .store import (
    FORMAT,
    INDEX,
    VERSION,
    ActivationStore,
    array_key,
    read_manifest,
    shard_name,
    write_manifest,
    write_shard,
)

#: Sites `collect` reads ("pattern" has one column per key position: no fixed width).
SITES = ("resid", "resid_pre", "attn", "mlp_in", "mlp", "neurons", "heads")
#: The reductions, see the module docstring.
REDUCTIONS = ("all", "last", "mean", "positions")
DTYPES: dict[str, tuple[Any, torch.dtype]] = {"float32": (np.float32, torch.float32),
                                              "float16": (np.float16, torch.float16)}
#: Default shard size: about this many bytes of activations per shard.
SHARD_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Plan:
    """Everything checked before the first forward pass."""

    texts: list[str]
    ids: list[list[int]]
    picks: list[list[int]] | None  # chosen positions per text (reduce "all"/"last"/"positions")
    sites: list[str]
    layers: list[int]
    reduce: str
    skip_first: bool
    dtype: str
    batches: list[tuple[int, int]]
    shard_rows: int
    manifest: dict[str, Any]


def collect(model: Model, texts: Any, *, sites: str | Sequence[str] = ("resid",),
            layers: int | Sequence[int] | None = None, reduce: str = "all",
            positions: int | Sequence[int] | Callable[[list[str]], Any] | None = None,
            out_dir: str | Path | None = None, batch_size: int = 16,
            max_tokens_per_batch: int = 4096, shard_rows: int | None = None,
            skip_first: bool = False, dtype: str = "float32", overwrite: bool = False,
            progress: bool | Callable[[int, int], Any] = True) -> ActivationStore:
    """Collect ``sites`` at ``layers`` over ``texts`` into an `ActivationStore`.

    ``texts``: a list of strings, or any dataset with a ``.texts`` list. ``sites``: names from
    `mechscope.models.sites` (resid, resid_pre, attn, mlp, neurons, heads). ``layers``: an int
    or a list (default: all; negative count from the end). ``reduce``: "all", "last", "mean"
    or "positions" (with ``positions=``; see the module docstring). ``dtype``: "float32" or
    "float16" (converted inside the trace). ``out_dir``: write shards there (resumable) instead
    of keeping the rows in memory; ``overwrite=True`` replaces another run's store there.
    ``shard_rows``: rows per shard (default: about 64 MB of activations). ``progress``: a
    progress bar (True), none (False), or ``f(done_texts, total_texts)`` called after each batch.

    Returns an `ActivationStore`: ``.get(site, layer)`` is (rows, width); ``.example`` /
    ``.position`` say which text and token each row is.

    >>> import mechscope
    >>> model = mechscope.tiny_model("gpt2")
    >>> from mechscope.analysis.collect import collect
    >>> store = collect(model, ["one two three", "four five"], layers=[-1], reduce="mean",
    ...                 progress=False)
    >>> store.get("resid", model.n_layers - 1).shape == (2, model.d_model), store.position.tolist()
    (True, [-1, -1])
    >>> collect(model, [], progress=False)
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: collect got no texts (an empty dataset): give at least one text.
    """
    check_model(model, "collect")
    plan = _plan(model, texts, sites, layers, reduce, positions, batch_size, max_tokens_per_batch,
                 shard_rows, skip_first, dtype, progress)
    directory = None if out_dir is None else _prepare_dir(Path(out_dir), plan.manifest, overwrite)
    manifest = plan.manifest if directory is None else read_manifest(directory)
    if directory is not None and manifest["done_examples"] == len(plan.texts):
        return ActivationStore(manifest=manifest, directory=directory)
    return _run(model, plan, manifest, directory, progress)


# ---- checks: everything before any forward pass -------------------------------------------------
def _text_list(texts: Any) -> list[str]:
    if hasattr(texts, "texts") and not isinstance(texts, str | bytes):
        texts = texts.texts
    if isinstance(texts, str | bytes):
        raise InputError("texts must be a list of texts (or a dataset with .texts), not one "
                         "string: wrap it as [text].")
    if not isinstance(texts, Sequence):
        try:
            texts = list(texts)
        except TypeError:
            raise InputError(f"texts must be a list of strings (or a dataset with .texts), got "
                             f"{type(texts).__name__}.") from None
    if len(texts) == 0:
        raise InputError("collect got no texts (an empty dataset): give at least one text.")
    return list(texts)


def _site_list(sites: Any) -> list[str]:
    names = [sites] if isinstance(sites, str) else sites
    if not isinstance(names, Sequence) or not names:
        raise InputError(f"sites must be a site name or a non-empty list of them {SITES}, got {sites!r}.")
    out = [get_site(n, allowed=SITES, verb="collect").name for n in names]
    if len(set(out)) != len(out):
        raise InputError(f"sites {list(names)} names the same site twice; give each once.")
    return out


def _positive(value: Any, what: str) -> int:
    n = as_int(value, what)
    if n < 1:
        raise InputError(f"{what} must be a positive int, got {value!r}.")
    return n


def _picks(model: Model, ids: list[list[int]], reduce: str, positions: Any,
           skip_first: bool) -> list[list[int]] | None:
    """Chosen positions per text, or None for "mean"."""
    if reduce != "positions" and positions is not None:
        raise InputError(f"positions= is only used with reduce='positions' (got reduce={reduce!r}).")
    if skip_first and reduce not in ("all", "mean"):
        raise InputError(f"skip_first applies to reduce='all' or 'mean', not {reduce!r}.")
    if reduce == "mean":
        if skip_first:
            for i, row in enumerate(ids):
                if len(row) < 2:
                    raise InputError(f"texts[{i}] is one token long: skip_first=True leaves nothing to "
                                     "average; drop it or use skip_first=False.")
        return None
    if reduce == "all":
        return [list(range(int(skip_first), len(row))) for row in ids]
    if reduce == "last":
        return [[len(row) - 1] for row in ids]
    if positions is None:
        raise InputError("reduce='positions' needs positions=: an int, a list of ints, or a function "
                         "from a text's token strings to its positions.")
    out = []
    for i, row in enumerate(ids):
        chosen = positions(model.decode_tokens(row)) if callable(positions) else positions
        out.append(index_list(chosen, len(row), f"positions for texts[{i}]", "position",
                              where=f"texts[{i}] has"))
    return out


def _batches(lengths: list[int], batch_size: int, max_tokens: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) batches: at most ``batch_size`` texts and ``max_tokens`` padded
    tokens each (a text longer than that runs alone)."""
    out: list[tuple[int, int]] = []
    start, longest = 0, 0
    for i, n in enumerate(lengths):
        if i > start and (i - start >= batch_size or (i - start + 1) * max(longest, n) > max_tokens):
            out.append((start, i))
            start, longest = i, 0
        longest = max(longest, n)
    out.append((start, len(lengths)))
    return out


def _sha256_texts(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _plan(model: Model, texts: Any, sites: Any, layers: Any, reduce: Any, positions: Any,
          batch_size: Any, max_tokens_per_batch: Any, shard_rows: Any, skip_first: Any,
          dtype: Any, progress: Any) -> _Plan:
    text_list = _text_list(texts)
    site_names = _site_list(sites)
    chosen_layers = model.check_layers(layers)
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}.")
    if not isinstance(skip_first, bool):
        raise InputError(f"skip_first must be True or False, got {skip_first!r}.")
    if not isinstance(progress, bool) and not callable(progress):
        raise InputError(f"progress must be True, False or a function f(done, total), got {progress!r}.")
    batch_size = _positive(batch_size, "batch_size")
    max_tokens = _positive(max_tokens_per_batch, "max_tokens_per_batch")
    widths = {s: model.width(s) for s in site_names}
    row_bytes = sum(widths.values()) * len(chosen_layers) * np.dtype(DTYPES[dtype][0]).itemsize
    rows_per_shard = (max(1, SHARD_BYTES // row_bytes) if shard_rows is None
                      else _positive(shard_rows, "shard_rows"))

    ids: list[list[int]] = []
    for i, text in enumerate(text_list):
        try:
            ids.append(model.to_tokens(text)[0].tolist())
        except InputError as err:
            raise InputError(f"texts[{i}]: {err}") from None
    picks = _picks(model, ids, reduce, positions, skip_first)
    settings = {
        "model": model.name, "n_layers": model.n_layers, "d_model": model.d_model,
        "sites": site_names, "layers": chosen_layers, "reduce": reduce,
        "positions": None if picks is None or reduce != "positions"
        else hashlib.sha256(json.dumps(picks).encode()).hexdigest(),
        "skip_first": skip_first, "dtype": dtype, "batch_size": batch_size,
        "max_tokens_per_batch": max_tokens, "shard_rows": rows_per_shard,
    }
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "model": model.name, "sites": site_names,
        "layers": chosen_layers, "reduce": reduce, "dtype": dtype, "widths": widths,
        "settings": settings, "texts_sha256": _sha256_texts(text_list),
        "n_examples": len(text_list), "done_examples": 0, "n_rows": 0, "shards": [],
        "token_strings": {},
    }
    return _Plan(texts=text_list, ids=ids, picks=picks, sites=site_names, layers=chosen_layers,
                 reduce=reduce, skip_first=skip_first, dtype=dtype,
                 batches=_batches([len(r) for r in ids], batch_size, max_tokens),
                 shard_rows=rows_per_shard, manifest=manifest)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    if old.get("texts_sha256") != new["texts_sha256"] or old.get("n_examples") != new["n_examples"]:
        out.append(f"texts ({old.get('n_examples')} texts, sha256 {str(old.get('texts_sha256'))[:12]} "
                   f"there; {new['n_examples']} texts, sha256 {new['texts_sha256'][:12]} now)")
    old_settings = old.get("settings", {})
    for key, value in new["settings"].items():
        if old_settings.get(key) != value:
            out.append(f"{key} ({old_settings.get(key)!r} there, {value!r} now)")
    return out


def _remove_store_files(directory: Path) -> None:
    for path in directory.iterdir():
        name = path.name
        if name == INDEX or (name.startswith("shard-") and name.endswith(".safetensors")) \
                or (name.startswith((f".{INDEX}.", ".shard-")) and name.endswith(".tmp")):
            path.unlink()


def _prepare_dir(directory: Path, manifest: dict[str, Any], overwrite: bool) -> Path:
    """Make ``directory`` ready: a new store, or the same run's to resume; `InputError` otherwise."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"out_dir {directory} is a file, not a directory.")
    if not isinstance(overwrite, bool):
        raise InputError(f"overwrite must be True or False, got {overwrite!r}.")
    directory.mkdir(parents=True, exist_ok=True)
    has_index = (directory / INDEX).exists()
    shards = sorted(directory.glob("shard-*.safetensors"))
    if has_index and not overwrite:
        try:
            old = read_manifest(directory)
        except InputError as err:
            raise InputError(f"out_dir {directory} holds another store: {err} Choose another "
                             "directory, or pass overwrite=True to replace it.") from None
        diffs = _differences(old, manifest)
        if diffs:
            raise InputError(f"out_dir {directory} holds another run's activations; what differs: "
                             f"{'; '.join(diffs)}. Choose another directory, or pass overwrite=True "
                             "to replace it (same texts and settings resume it).")
        for shard in old["shards"]:
            if not (directory / shard["file"]).is_file():
                raise InputError(f"out_dir {directory}: {INDEX} lists {shard['file']} but the file "
                                 "is missing; the store is damaged. Pass overwrite=True to start over.")
        listed = {s["file"] for s in old["shards"]}
        for path in shards:  # written after the last manifest update: redone on resume
            if path.name not in listed:
                path.unlink()
        for path in directory.glob(".*.tmp"):
            if path.name.startswith((f".{INDEX}.", ".shard-")):
                path.unlink()
        return directory
    if shards and not overwrite:
        raise InputError(f"out_dir {directory} holds {len(shards)} shard file(s) but no {INDEX}: "
                         "another run's activations. Choose another directory, or pass "
                         "overwrite=True to replace them.")
    if overwrite:
        _remove_store_files(directory)
    write_manifest(directory, manifest)
    return directory


# ---- the forward passes -----------------------------------------------------------------------
def _run(model: Model, plan: _Plan, manifest: dict[str, Any], directory: Path | None,
         progress: bool | Callable[[int, int], Any]) -> ActivationStore:
    order = execution_order((layer, s) for s in plan.sites for layer in plan.layers)
    refs = [model.at(s, layer) for layer, s in order]
    keys = [array_key(s, layer) for layer, s in order]
    torch_dtype = DTYPES[plan.dtype][1]
    pad_id = int(model.tokenizer.pad_token_id)
    done = int(manifest["done_examples"])
    starts = [b[0] for b in plan.batches]
    if done not in starts:
        raise InputError(f"out_dir {directory}: {INDEX} says {done} texts are done, which is not a "
                         "batch boundary of these settings; pass overwrite=True to start over.")
    todo = plan.batches[starts.index(done):]
    strings: dict[str, str] = dict(manifest.get("token_strings", {}))
    buffer: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "example", "position", "token")}
    buffered = 0
    bar = _progress_bar(progress, len(plan.texts), done)
    try:
        for start, end in todo:
            inputs, gather, weights, meta = _batch(plan, start, end, pad_id)
            b_idx, t_idx = gather if gather is not None else (None, None)
            rows = _trace_batch(model, refs, inputs, b_idx, t_idx, weights, torch_dtype)
            for key, tensor in zip(keys, rows, strict=True):
                buffer[key].append(tensor.cpu().numpy())
            for name, labels in meta.items():
                buffer[name].append(labels)
            buffered += len(meta["example"])
            if directory is not None and (buffered >= plan.shard_rows or end == len(plan.texts)):
                manifest = _flush(model, directory, manifest, buffer, strings, end)
                buffered = 0
            if bar is not None:
                bar.update(end - start)
            if callable(progress) and not isinstance(progress, bool):
                progress(end, len(plan.texts))
    finally:
        if bar is not None:
            bar.close()
    if directory is not None:
        return ActivationStore(manifest=manifest, directory=directory)
    arrays = {k: np.concatenate(v) for k, v in buffer.items()}
    for array in arrays.values():
        array.setflags(write=False)  # store.get hands these out: no one edits the store by accident
    _add_strings(model, strings, arrays["token"])
    manifest = {**manifest, "done_examples": len(plan.texts), "n_rows": int(len(arrays["example"])),
                "token_strings": strings}
    return ActivationStore(manifest=manifest, directory=None, memory=arrays)


def _progress_bar(progress: Any, total: int, done: int) -> Any:
    if progress is not True:
        return None
    from ..progress import progress as progress_bar

    return progress_bar(total=total, initial=done, desc="collect", unit="text")


def _batch(plan: _Plan, start: int, end: int, pad_id: int
           ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None,
                      torch.Tensor | None, dict[str, np.ndarray]]:
    """Left-padded inputs for texts ``start:end``, what to keep of them, and the rows' labels."""
    rows = plan.ids[start:end]
    width = max(len(r) for r in rows)
    inputs = left_padded(rows, pad_id)
    mask = inputs["attention_mask"]
    examples = np.arange(start, end, dtype=np.int64)
    if plan.picks is None:  # mean over each text's tokens (bar the first with skip_first)
        keep = mask.clone()
        if plan.skip_first:
            keep &= (mask.cumsum(dim=1) > 1).long()
        weights = (keep.float() / keep.sum(dim=1, keepdim=True).float())[:, :, None]
        meta = {"example": examples, "position": np.full(len(rows), -1, dtype=np.int64),
                "token": np.full(len(rows), -1, dtype=np.int64)}
        return inputs, None, weights, meta
    b_idx, t_idx, ex, pos, tok = [], [], [], [], []
    for b, (i, r) in enumerate(zip(range(start, end), rows, strict=True)):
        pad = width - len(r)
        for p in plan.picks[i]:
            b_idx.append(b)
            t_idx.append(pad + p)
            ex.append(i)
            pos.append(p)
            tok.append(r[p])
    gather = (torch.tensor(b_idx, dtype=torch.long), torch.tensor(t_idx, dtype=torch.long))
    meta = {"example": np.asarray(ex, dtype=np.int64), "position": np.asarray(pos, dtype=np.int64),
            "token": np.asarray(tok, dtype=np.int64)}
    return inputs, gather, None, meta


def _trace_batch(model: Model, refs: list[Any], inputs: dict[str, torch.Tensor], b_idx: Any,
                 t_idx: Any, weights: Any, torch_dtype: torch.dtype) -> list[torch.Tensor]:
    """One trace: each ref's kept rows (rows, width), then the forward pass stops.

    Rows are ``act[b_idx, t_idx]`` (batch row and padded position of each), or with
    ``weights`` (batch, positions, 1) the weighted sum over positions (a mean)."""
    with model.trace(inputs) as tracer:
        # Reduce inside the trace: only the kept rows leave it (which matters on NDIF), then
        # stop right after the last site read: no later layer, nor the unembedding, runs.
        kept = []
        for ref in refs:
            act = ref.read()
            if weights is None:
                kept.append(act[b_idx, t_idx].to(torch_dtype))
            else:
                kept.append((act.float() * weights).sum(dim=1).to(torch_dtype))
        kept = save(kept)
        tracer.stop()
    return list(kept)


def _add_strings(model: Model, strings: dict[str, str], token_ids: np.ndarray) -> None:
    for i in np.unique(token_ids).tolist():
        if i >= 0 and str(i) not in strings:
            strings[str(i)] = model.tokenizer.decode([int(i)])


def _flush(model: Model, directory: Path, manifest: dict[str, Any],
           buffer: dict[str, list[np.ndarray]], strings: dict[str, str], done: int) -> dict[str, Any]:
    """Write the buffered rows as the next shard, then the manifest that lists it (atomically)."""
    arrays = {k: np.concatenate(v) for k, v in buffer.items()}
    for v in buffer.values():
        v.clear()
    n = int(len(arrays["example"]))
    name = shard_name(len(manifest["shards"]))
    write_shard(directory / name, arrays)
    _add_strings(model, strings, arrays["token"])
    first = int(manifest["done_examples"])
    manifest = {**manifest, "shards": [*manifest["shards"], {"file": name, "rows": n,
                                                             "examples": [first, done]}],
                "done_examples": done, "n_rows": int(manifest["n_rows"]) + n,
                "token_strings": dict(strings)}
    write_manifest(directory, manifest)
    return manifest


__all__ = ["collect", "ActivationStore", "SITES", "REDUCTIONS"]
