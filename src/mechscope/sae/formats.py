"""Dictionaries on disk: `load` reads SAELens, sparsify, Gemma Scope and dictionary_learning
files (or a Hugging Face Hub id where a network or the local Hub cache has it); `save` writes
SAELens's format, which sae-lens itself loads.

Layouts `load` recognises (a folder, or a file in it):

- SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (``W_enc`` (d_in, d_sae), ``b_enc``,
  ``W_dec`` (d_sae, d_out), ``b_dec``, ``threshold``, ``W_skip`` (d_out, d_in));
- sparsify: ``cfg.json`` + ``sae.safetensors`` (``encoder.weight`` (d_sae, d_in),
  ``encoder.bias``, ``W_dec`` (d_sae, d_in), ``b_dec``, ``W_skip``), one folder per hookpoint;
- Gemma Scope: ``params.npz`` (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``, ``threshold``);
- dictionary_learning: ``ae.pt`` (a torch state dict; read as weights only, never run as a
  pickle) + ``config.json``.

A SAELens ``apply_b_dec_to_input`` (and sparsify's and dictionary_learning's ``x - b_dec``) is
folded into ``b_enc`` (``b_enc - b_dec @ W_enc``): the maths is unchanged. Hook names are mapped
to mechscope sites (``blocks.8.hook_resid_post`` -> ``resid`` at 8, ``layers.8.mlp`` -> ``mlp``
at 8); an unknown one is kept in ``cfg.metadata["hook_name"]`` and ``site=``/``layer=`` are
required.

>>> import tempfile, numpy as np
>>> from mechscope.sae import SAE
>>> sae = SAE.random(8, 32, architecture="topk", k=4, layer=3)
>>> path = save(sae, tempfile.mkdtemp())
>>> back = load(path)
>>> back.cfg.site, back.cfg.layer, bool(np.allclose(back.W_enc.detach(), sae.W_enc.detach()))
('resid', 3, True)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dictionary import SAE, SAEConfig
from .readers import read_dictionary_learning, read_gemma_scope, read_safetensors, read_sparsify

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
#: The sae-lens release whose format `save` writes (cfg.json ``metadata.sae_lens_version``).
SAELENS_FORMAT_VERSION = "6.54.12"

#: TransformerLens hook name (after ``blocks.{layer}.``) for each mechscope site.
_TL_HOOKS = {"resid": "hook_resid_post", "resid_pre": "hook_resid_pre", "mlp": "hook_mlp_out",
             "attn": "hook_attn_out", "mlp_in": "ln2.hook_normalized", "neurons": "mlp.hook_post"}
_TL_ALIASES = {"hook_mlp_in": "mlp_in", "mlp.hook_in": "mlp_in", "hook_resid_post": "resid",
               **{v: k for k, v in _TL_HOOKS.items()}}
#: HF module path (after ``[model.]layers.{layer}``) for each site it names.
_HF_SITES = {"": "resid", ".mlp": "mlp", ".self_attn": "attn", ".attn": "attn",
             ".post_attention_layernorm": "mlp_in", ".mlp.act_fn": "neurons", ".input_layernorm": None}


def site_of_hook(hook: str) -> tuple[str, int] | None:
    """The mechscope ``(site, layer)`` a TransformerLens or HF-style hook name points at, or
    None when it names no site mechscope has.

    >>> site_of_hook("blocks.8.hook_resid_post"), site_of_hook("model.layers.8.mlp"), site_of_hook("blocks.2.attn.hook_z")
    (('resid', 8), ('mlp', 8), None)
    """
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", hook)
    if m:
        site = _TL_ALIASES.get(m.group(2))
        return None if site is None else (site, int(m.group(1)))
    m = re.fullmatch(r"(?:model\.|gpt_neox\.|transformer\.)?(?:layers|h)\.(\d+)((?:\.[a-z_]+)*)", hook)
    if m and _HF_SITES.get(m.group(2)):
        return str(_HF_SITES[m.group(2)]), int(m.group(1))
    if re.fullmatch(r"(?:model\.)?embed_tokens", hook):
        return "resid_pre", 0
    return None


def hook_of_site(site: str, layer: int) -> str:
    """The TransformerLens hook name SAELens uses for a mechscope site.

    >>> hook_of_site("mlp", 4)
    'blocks.4.hook_mlp_out'
    """
    return f"blocks.{int(layer)}.{_TL_HOOKS.get(site, site)}"


# ---- writing -----------------------------------------------------------------------------------
def _saelens_architecture(cfg: SAEConfig) -> str:
    if cfg.kind == "sae":
        return {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}[cfg.architecture]
    if cfg.architecture == "topk":  # sae-lens has no top-k transcoder: only mechscope reads this
        return f"mechscope_topk_{cfg.kind}"
    return ("jumprelu_" if cfg.architecture == "jumprelu" else "") + cfg.kind


def saelens_config(sae: SAE) -> dict[str, Any]:
    """The ``cfg.json`` `save` writes: SAELens 6 keys plus mechscope's own config under
    ``metadata["mechscope"]`` (sae-lens keeps unknown metadata).

    >>> from mechscope.sae import SAE
    >>> c = saelens_config(SAE.random(4, 8, architecture="topk", k=2))
    >>> c["architecture"], c["k"], c["apply_b_dec_to_input"], c["metadata"]["hook_name"]
    ('topk', 2, False, 'blocks.0.hook_resid_post')
    """
    c = sae.cfg
    meta: dict[str, Any] = {"sae_lens_version": SAELENS_FORMAT_VERSION,
                            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
                            "model_name": c.model, "hook_name": hook_of_site(c.site, c.layer),
                            "hook_head_index": None, "written_by": "mechscope",
                            "mechscope": c.to_dict()}
    if c.kind != "sae":
        meta["hook_name_out"] = hook_of_site(c.site_out, c.layer_out)
    out: dict[str, Any] = {"architecture": _saelens_architecture(c), "d_in": c.d_in, "d_sae": c.d_sae,
                           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
                           "normalize_activations": "none", "reshape_activations": "none"}
    if c.kind != "sae":
        out["d_out"] = c.d_out
    if c.architecture == "topk":
        out.update(k=c.k, rescale_acts_by_decoder_norm=False)
    out["metadata"] = meta
    return out


def save(sae: SAE, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
    """Write ``sae`` in SAELens's format to the folder ``path`` (made if missing): ``cfg.json``
    and ``sae_weights.safetensors``, each written atomically; ``dtype`` "float32" or "float16"
    (half the size; read back as float32). Returns the folder.

    >>> import tempfile
    >>> from mechscope.sae import SAE
    >>> sorted(p.name for p in save(SAE.random(4, 8), tempfile.mkdtemp()).iterdir())
    ['cfg.json', 'sae_weights.safetensors']
    """
    from safetensors.numpy import save_file

    from ..analysis.store import atomic_write

    if not isinstance(sae, SAE):
        raise InputError(f"save takes a mechscope.sae.SAE, got {type(sae).__name__}.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file: save writes a folder (cfg.json + {SAELENS_WEIGHTS}).")
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v.astype(dtype)) for k, v in sae.weights().items()}
    if sae.cfg.architecture != "jumprelu":
        tensors.pop("threshold")
    if "W_skip" in tensors:
        tensors["W_skip"] = np.ascontiguousarray(tensors["W_skip"].T)  # sae-lens: (d_out, d_in)
    text = json.dumps({**saelens_config(sae), "dtype": dtype}, indent=1)
    def write_cfg(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(folder / SAELENS_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(folder / SAELENS_CFG, write_cfg)
    return folder


# ---- reading -----------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _from_saelens(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    cfg = _read_json(folder / SAELENS_CFG)
    w = read_safetensors(folder / SAELENS_WEIGHTS)
    meta = dict(cfg.get("metadata") or {})
    arch = str(cfg.get("architecture") or ("topk" if cfg.get("activation_fn_str") == "topk" else "standard"))
    m = re.fullmatch(r"(?:mechscope_)?(jumprelu_|topk_)?(skip_transcoder|transcoder)", arch)
    if m:
        kind, architecture = m.group(2), (m.group(1) or "relu_").rstrip("_")
    elif arch in ("standard", "topk", "jumprelu"):
        kind, architecture = "sae", {"standard": "relu"}.get(arch, arch)
    else:
        raise InputError(f"{folder / SAELENS_CFG}: architecture {arch!r} is not one mechscope reads "
                         "(standard, topk, jumprelu, [jumprelu_][skip_]transcoder).")
    norm = cfg.get("normalize_activations") or "none"
    if norm not in ("none", False):
        raise InputError(f"{folder / SAELENS_CFG}: normalize_activations={norm!r} is not supported: fold it "
                         "into the weights first (sae-lens: sae.fold_activation_norm_scaling_factor).")
    if cfg.get("rescale_acts_by_decoder_norm"):
        norms = np.linalg.norm(w["W_dec"], axis=1)
        w["W_enc"], w["b_enc"], w["W_dec"] = w["W_enc"] * norms, w["b_enc"] * norms, w["W_dec"] / norms[:, None]
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if "W_skip" in w:
        w["W_skip"] = w["W_skip"].T
    if kind == "sae" and cfg.get("apply_b_dec_to_input", True):
        w["b_enc"] = w["b_enc"] - w["b_dec"] @ w["W_enc"]
    fields = {"d_in": int(cfg["d_in"]), "d_sae": int(cfg["d_sae"]), "d_out": int(cfg.get("d_out") or 0),
              "architecture": architecture, "kind": kind, "k": None if k is None else int(k)}
    for key in ("model_name", "hook_name", "hook_name_out", "hook_layer", "hf_hook_name"):
        if key not in meta and key in cfg:
            meta[key] = cfg[key]
    return fields, w, meta


def _place(fields: dict[str, Any], meta: dict[str, Any], source: str, *, site: str | None,
           layer: int | None, model: str | None) -> SAEConfig:
    """The `SAEConfig`: mechscope's own saved config first, then the hook names, then the user's."""
    saved = meta.pop("mechscope", None)
    if isinstance(saved, dict):
        keep = {k: saved[k] for k in ("k", "site", "layer", "site_out", "layer_out", "model", "metadata") if k in saved}
        fields = {**fields, **keep}
    else:
        hook = meta.get("hook_name")
        where = site_of_hook(str(hook)) if hook else None
        if where is None and (site is None or layer is None):
            raise InputError(f"{source}: the hook name {hook!r} names no mechscope site; pass site= and "
                             "layer= (e.g. site='resid', layer=8) to say where this dictionary reads.")
        if where is not None:
            fields["site"], fields["layer"] = where
        out = site_of_hook(str(meta["hook_name_out"])) if meta.get("hook_name_out") else None
        if out is not None:
            fields["site_out"], fields["layer_out"] = out
        elif fields["kind"] != "sae" and fields.get("site") == "mlp":  # "layers.8.mlp": its input -> output
            fields.update(site="mlp_in", site_out="mlp", layer_out=fields["layer"])
        fields["model"] = str(meta.get("model_name") or "")
        fields["metadata"] = {**meta, "source": source}
    if site is not None:
        fields["site"] = site
        if fields["kind"] == "sae":
            fields["site_out"] = site
    if layer is not None:
        fields["layer"] = int(layer)
        fields["layer_out"] = int(layer)
    if model is not None:
        fields["model"] = model
    return SAEConfig(**fields)


def _layout(folder: Path) -> str | None:
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    for layout, need in (("saelens", {SAELENS_CFG, SAELENS_WEIGHTS}), ("sparsify", {SAELENS_CFG, "sae.safetensors"}),
                         ("gemma_scope", {"params.npz"}), ("dictionary_learning", {"ae.pt"})):
        if need <= names:
            return layout
    return None


def _locate(path: Path, hookpoint: str | None) -> tuple[Path, str, Path | None]:
    """(folder, layout, the one file named) of a local path."""
    file = None
    if path.is_file():
        file, path = path, path.parent
    if hookpoint is not None:
        path = path / hookpoint
    layout = _layout(path) if path.is_dir() else None
    if layout is None:
        found = sorted(str(p.parent.relative_to(path)) for p in path.glob("*/*") if p.name in
                       (SAELENS_CFG, "params.npz", "ae.pt")) if path.is_dir() else []
        hint = (f"; it holds dictionaries in {found[:8]}{' ...' if len(found) > 8 else ''}: pass hookpoint= "
                "one of them") if found else ""
        raise InputError(f"{path} holds no dictionary mechscope reads (cfg.json + sae_weights.safetensors, "
                         f"cfg.json + sae.safetensors, params.npz, or ae.pt){hint}.")
    return path, layout, file


def load(path_or_id: str | os.PathLike[str], *, model: Any = None, layer: int | None = None,
         hookpoint: str | None = None, site: str | None = None) -> SAE:
    """Read a dictionary from a local folder or file in any layout above, or from a Hub id
    (``"org/name"``, ``"org/name/sub/folder"``; the local Hub cache first, then the network).

    ``hookpoint``: the sub-folder of a many-dictionary repo (sparsify: ``"layers.15.mlp"``);
    ``site``/``layer``: where it reads, when the file does not say; ``model``: a model name, or a
    `mechscope` model whose widths it must fit (`InputError` naming both otherwise).

    >>> import tempfile
    >>> from mechscope.sae import SAE
    >>> load(save(SAE.random(4, 8, architecture="jumprelu", layer=1), tempfile.mkdtemp())).cfg.architecture
    'jumprelu'
    """
    if hookpoint is not None and (not isinstance(hookpoint, str) or ".." in Path(hookpoint).parts):
        raise InputError(f"hookpoint must be a sub-folder name such as 'layers.15.mlp', got {hookpoint!r}.")
    local = Path(path_or_id)
    if not local.exists():
        from .readers import resolve_hub

        local, hub_hookpoint = resolve_hub(str(path_or_id), hookpoint)
        hookpoint = hub_hookpoint
    folder, layout, file = _locate(local, hookpoint)
    source = str(file or folder)
    if layout == "saelens":
        fields, weights, meta = _from_saelens(folder)
    elif layout == "sparsify":
        fields, weights, meta = read_sparsify(folder)
    elif layout == "gemma_scope":
        fields, weights, meta = read_gemma_scope(file if file and file.suffix == ".npz" else folder / "params.npz")
    else:
        fields, weights, meta = read_dictionary_learning(file if file and file.suffix == ".pt" else folder / "ae.pt")
    name = model if isinstance(model, str) else None
    cfg = _place(fields, meta, source, site=site, layer=layer, model=name)
    sae = SAE(cfg, weights)
    if model is not None and not isinstance(model, str):
        from .splice import check_fits

        check_fits(sae, model)
        if not cfg.model:
            sae = SAE(replace(cfg, model=str(getattr(model, "name", ""))), weights)
    return sae


__all__ = ["load", "save", "site_of_hook", "hook_of_site", "saelens_config", "SAELENS_FORMAT_VERSION"]
