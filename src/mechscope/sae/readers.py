"""Readers for other libraries' dictionary files (used by `mechscope.sae.formats.load`), and the
Hub resolution. Each reader answers ``(fields, weights, metadata)``: `SAEConfig` fields, float32
numpy weights in mechscope's convention (``pre = x @ W_enc + b_enc``, input centring folded into
``b_enc``) and free-form metadata (``hook_name`` for the site mapping).

Nothing here runs a pickle: ``ae.pt`` is opened as a zip, its ``data.pkl`` opcodes are checked
against a short list of torch tensor-rebuild functions before ``torch.load(weights_only=True)``
(itself a restricted unpickler) reads it.

>>> import tempfile, pathlib, numpy as np
>>> path = pathlib.Path(tempfile.mkdtemp()) / "params.npz"
>>> rng = np.random.default_rng(0)
>>> np.savez(path, W_enc=rng.normal(size=(4, 8)), W_dec=rng.normal(size=(8, 4)), b_enc=np.zeros(8),
...          b_dec=np.zeros(4), threshold=np.full(8, 0.1))
>>> fields, weights, meta = read_gemma_scope(path)
>>> fields["architecture"], weights["W_enc"].shape
('jumprelu', (4, 8))
"""

from __future__ import annotations

import os
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

#: The only globals a torch state-dict pickle may name (checked before anything is unpickled).
SAFE_PICKLE_GLOBALS = frozenset({
    "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
    "torch._utils _rebuild_tensor_v3", "torch._utils _rebuild_parameter_with_state", "torch device",
    "torch._utils _rebuild_device_tensor_from_numpy", "builtins set", "torch.nn.parameter Parameter",
    *(f"torch {t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                    "Byte", "Bool", "Untyped")),
    "torch float32", "torch float16", "torch bfloat16", "torch float64", "torch int64", "torch int32",
    "torch bool", "torch uint8", "torch int8", "torch int16",
})


def _float32(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, t in tensors.items():
        out[name] = (t.detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float32))
    return out


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32 numpy (bfloat16 included); `InputError`
    naming the file when it is missing, truncated or not safetensors.

    >>> read_safetensors(Path("/nonexistent/sae.safetensors"))
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: cannot read the dictionary weights /nonexistent/sae.safetensors: No such file or directory
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"cannot read the dictionary weights {path}: No such file or directory")
    try:
        return _float32(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ...
        raise InputError(f"cannot read the dictionary weights {path}: {e} (truncated or not a safetensors "
                         "file? download it again)") from None


def _need(w: dict[str, np.ndarray], names: tuple[str, ...], path: Path) -> None:
    missing = [n for n in names if n not in w]
    if missing:
        raise InputError(f"{path} lacks the weights {missing} (it has {sorted(w)}): not a dictionary in the "
                         "layout its name suggests.")


def read_sparsify(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """EleutherAI sparsify: ``cfg.json`` (``d_in``, ``num_latents`` or ``expansion_factor``, ``k``,
    ``activation``, ``transcode``, ``skip_connection``) + ``sae.safetensors``; the folder name is
    the hookpoint (``layers.15.mlp``). Encoding: ``topk(relu((x - b_dec) @ encoder.weight.T +
    encoder.bias))`` (no ``- b_dec`` for a transcoder); decoding ``f @ W_dec + b_dec + x @ W_skip.T``."""
    from .formats import _read_json

    cfg = _read_json(folder / "cfg.json")
    path = folder / "sae.safetensors"
    w = read_safetensors(path)
    _need(w, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), path)
    if cfg.get("activation", "topk") != "topk":
        raise InputError(f"{folder}: sparsify activation {cfg.get('activation')!r} is not supported (topk only).")
    transcode, skip = bool(cfg.get("transcode")), bool(cfg.get("skip_connection"))
    if skip and not transcode:
        raise InputError(f"{folder}: a sparse autoencoder with a skip connection is not supported; "
                         "skip connections are for transcoders.")
    d_in = int(cfg.get("d_in") or w["encoder.weight"].shape[1])
    d_sae = int(cfg.get("num_latents") or 0) or d_in * int(cfg.get("expansion_factor") or 0) or w["W_dec"].shape[0]
    weights = {"W_enc": w["encoder.weight"].T.copy(), "b_enc": w["encoder.bias"], "W_dec": w["W_dec"],
               "b_dec": w["b_dec"]}
    if not transcode:
        weights["b_enc"] = weights["b_enc"] - weights["b_dec"] @ weights["W_enc"]
    if skip:
        _need(w, ("W_skip",), path)
        weights["W_skip"] = w["W_skip"].T.copy()
    kind = "skip_transcoder" if skip else "transcoder" if transcode else "sae"
    fields = {"d_in": d_in, "d_sae": d_sae, "d_out": weights["W_dec"].shape[1], "architecture": "topk",
              "kind": kind, "k": int(cfg.get("k", 32))}
    meta = {"hook_name": folder.name, "format": "sparsify", "sparsify_cfg": cfg}
    parent = folder.parent / "config.json"
    if parent.is_file():
        model = _read_json(parent).get("model")
        if model:
            meta["model_name"] = str(model)
    return fields, weights, meta


def read_gemma_scope(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Gemma Scope ``params.npz``: JumpReLU ``relu(pre) * (pre > threshold)`` with ``pre = x @ W_enc
    + b_enc`` (no input centring); the site and layer come from the path (``...-res/layer_20/...``,
    ``-mlp``, ``-transcoders``) when it says."""
    try:
        with np.load(path, allow_pickle=False) as z:
            w = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except Exception as e:  # noqa: BLE001 - zipfile/numpy raise many kinds
        raise InputError(f"cannot read the Gemma Scope file {path}: {e} (truncated? download it again)") from None
    _need(w, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"), path)
    if (w["threshold"] < 0).any():
        raise InputError(f"{path}: negative JumpReLU thresholds: not a Gemma Scope dictionary.")
    text = str(path)
    transcoder = "transcoder" in text
    fields: dict[str, Any] = {"d_in": w["W_enc"].shape[0], "d_sae": w["W_enc"].shape[1],
                              "d_out": w["W_dec"].shape[1], "architecture": "jumprelu",
                              "kind": "transcoder" if transcoder else "sae"}
    meta: dict[str, Any] = {"format": "gemma_scope"}
    layer = re.search(r"layer_(\d+)", text)
    kind = re.search(r"gemma-scope-[^/\\]*?-(res|mlp|att|transcoders)\b", text)
    site = {"res": "resid", "mlp": "mlp", "transcoders": "mlp"}.get(kind.group(1)) if kind else None
    if layer and site:
        meta["hook_name"] = f"blocks.{layer.group(1)}.{'hook_resid_post' if site == 'resid' else 'hook_mlp_out'}"
        if transcoder:
            meta["hook_name"] = f"blocks.{layer.group(1)}.ln2.hook_normalized"
            meta["hook_name_out"] = f"blocks.{layer.group(1)}.hook_mlp_out"
    model = re.search(r"gemma-scope-(2b|9b|27b)-(pt|it)", text)
    if model:
        meta["model_name"] = f"google/gemma-2-{model.group(1)}" + ("-it" if model.group(2) == "it" else "")
    return fields, {k: w[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}, meta


def check_pickle(path: Path) -> None:
    """`InputError` unless ``path`` is a torch zip file whose pickle names only tensor-rebuild
    functions (`SAFE_PICKLE_GLOBALS`): checked on the opcodes, nothing is unpickled.

    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ae.pt"
    >>> torch.save({"bias": torch.zeros(3)}, p)
    >>> check_pickle(p)
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            if len(names) != 1:
                raise InputError(f"{path} is a zip without one data.pkl: not a torch state dict.")
            data = z.read(names[0])
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"cannot read {path}: {e} (mechscope reads only torch zip files saved by torch.save "
                         "of a state dict; a truncated or legacy file must be re-saved)") from None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name in ("GLOBAL", "INST"):
                _allow(str(arg), path)
            elif op.name == "STACK_GLOBAL":
                _allow(" ".join(strings[-2:]) if len(strings) >= 2 else "?", path)
    except (ValueError, EOFError) as e:
        raise InputError(f"cannot read {path}: its pickle is malformed ({e}).") from None


def _allow(name: str, path: Path) -> None:
    if name not in SAFE_PICKLE_GLOBALS:
        raise InputError(f"refused to load {path}: its pickle calls {name!r}, which is not a tensor; a pickle "
                         "can run any code, so mechscope reads only plain state dicts (nothing was executed).")


def read_torch_state(path: Path) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` file's tensors as float32 numpy, read without running its pickle."""
    import pickle

    import torch

    check_pickle(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise InputError(f"refused to load {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} is not a state dict of tensors.")
    return _float32(state)


def read_dictionary_learning(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """saprmarks dictionary_learning ``ae.pt`` (+ ``config.json`` beside it): ``AutoEncoder``
    (``encoder.weight``, ``encoder.bias``, ``decoder.weight``, ``bias``), ``AutoEncoderTopK`` /
    ``BatchTopKSAE`` (+ ``k``, ``threshold`` buffers, ``b_dec``; BatchTopK encodes with the one
    threshold: read as JumpReLU), ``JumpReluAutoEncoder`` (``W_enc``, ``b_enc``, ``W_dec``,
    ``b_dec``, ``threshold``)."""
    from .formats import _read_json

    w = read_torch_state(path)
    cfg_path = path.parent / "config.json"
    trainer = dict(_read_json(cfg_path).get("trainer") or {}) if cfg_path.is_file() else {}
    dict_class = str(trainer.get("dict_class") or "")
    meta: dict[str, Any] = {"format": "dictionary_learning", "dict_class": dict_class, "trainer": trainer}
    if "W_enc" in w:  # JumpReluAutoEncoder: x @ W_enc + b_enc (apply_b_dec_to_input False)
        _need(w, ("b_enc", "W_dec", "b_dec", "threshold"), path)
        weights = {k: w[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        arch, k = "jumprelu", None
    else:
        _need(w, ("encoder.weight", "encoder.bias", "decoder.weight"), path)
        centre = w["bias"] if "bias" in w else w.get("b_dec")
        if centre is None:
            raise InputError(f"{path} has neither 'bias' nor 'b_dec': not a dictionary_learning autoencoder.")
        weights = {"W_enc": w["encoder.weight"].T.copy(), "W_dec": w["decoder.weight"].T.copy(), "b_dec": centre}
        weights["b_enc"] = w["encoder.bias"] - centre @ weights["W_enc"]
        k = int(w["k"]) if "k" in w else None
        arch = "relu" if k is None else "topk"
        if k is not None and ("BatchTopK" in dict_class or "Matryoshka" in dict_class):
            thr = float(w["threshold"].reshape(-1)[0])
            if thr < 0:
                raise InputError(f"{path}: a BatchTopK dictionary whose threshold was never set ({thr}).")
            arch, k = "jumprelu", None
            weights["threshold"] = np.full(weights["W_enc"].shape[1], thr, np.float32)
    if arch == "jumprelu" and (weights["threshold"] < 0).any():
        raise InputError(f"{path}: negative JumpReLU thresholds are not supported.")
    fields = {"d_in": weights["W_enc"].shape[0], "d_sae": weights["W_enc"].shape[1], "architecture": arch,
              "kind": "sae", "k": k}
    if trainer.get("lm_name"):
        meta["model_name"] = str(trainer["lm_name"])
    sub, layer = str(trainer.get("submodule_name") or ""), trainer.get("layer")
    hf = {"resid_post_layer": "", "mlp_out_layer": ".mlp", "attn_out_layer": ".self_attn"}
    m = re.fullmatch(r"(resid_post|mlp_out|attn_out)_layer_?(\d+)", sub)
    if m:
        meta["hook_name"] = f"layers.{m.group(2)}{hf[m.group(1) + '_layer']}"
    elif sub:
        meta["hook_name"] = sub
    elif layer is not None:
        meta["hook_name"] = f"layers.{int(layer)}"
    return fields, weights, meta


def resolve_hub(repo: str, hookpoint: str | None) -> tuple[Path, str | None]:
    """The local folder of Hub id ``org/name[/sub/folder]`` (and the hookpoint within it): the
    Hub cache (``HF_HUB_CACHE``) first, then a download; `InputError` naming the id when neither."""
    parts = repo.split("/")
    if os.path.isabs(repo) or repo.startswith((".", "~")) or len(parts) < 2 or not all(re.fullmatch(r"[A-Za-z0-9][\w.-]*", p) for p in parts) or ".." in parts:
        raise InputError(f"{repo!r} is neither an existing path nor a Hub id like 'EleutherAI/sae-SmolLM2-135M-64x'.")
    repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:]) or None
    if sub and hookpoint:
        sub = f"{sub}/{hookpoint}"
    sub = sub or hookpoint
    import huggingface_hub

    kwargs: dict[str, Any] = {"allow_patterns": [f"{sub}/*"] if sub else None,
                              "cache_dir": os.environ.get("HF_HUB_CACHE") or None}
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True, **kwargs)), sub
    except Exception:  # noqa: BLE001 - not cached: try the network below
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or huggingface_hub.constants.HF_HUB_OFFLINE
    why = "the Hub is offline (HF_HUB_OFFLINE)"
    if not offline:
        try:
            return Path(huggingface_hub.snapshot_download(repo_id, **kwargs)), sub
        except Exception as e:  # noqa: BLE001 - network, auth, missing repo
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    where = f"{repo_id}/{sub}" if sub else repo_id
    raise InputError(f"cannot fetch the dictionary {where!r} from the Hugging Face Hub ({why}) and it is not in "
                     f"the local Hub cache: download the folder (hf download {repo_id}"
                     f"{' --include ' + repr(sub + '/*') if sub else ''} --local-dir DIR) where a network exists "
                     "and pass its path (DIR" + (f"/{sub}" if sub else "") + ").")


__all__ = ["read_safetensors", "read_sparsify", "read_gemma_scope", "read_dictionary_learning",
           "read_torch_state", "check_pickle", "resolve_hub", "SAFE_PICKLE_GLOBALS"]
