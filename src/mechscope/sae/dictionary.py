"""`SAE`: one sparse dictionary (sparse autoencoder, transcoder or skip transcoder) at one site.

A dictionary reads activations ``x`` (..., d_in) at ``site``/``layer``, encodes them into
``d_sae`` latents and decodes them to (..., d_out) at ``site_out``/``layer_out``::

    pre   = x @ W_enc + b_enc                     (d_sae,)   no input centring: a SAELens
                                                             "apply_b_dec_to_input" is folded in
    f     = act(pre)                              (d_sae,)   relu | topk | jumprelu
    x_hat = f @ W_dec + b_dec [+ x @ W_skip]      (d_out,)   W_skip: skip transcoders only

``act`` by ``architecture``:

- ``"relu"``: ``ReLU(pre)`` (trained with an L1 penalty);
- ``"topk"``: the ``k`` largest of ``ReLU(pre)`` per row, the rest 0;
- ``"jumprelu"``: ``pre * (pre > threshold)``, one threshold per latent. BatchTopK dictionaries
  (top ``k * batch`` over a whole batch while training) are saved as this, with the one
  threshold estimated in training.

A sparse autoencoder (``kind="sae"``) writes back where it reads (``site_out == site``); a
transcoder reads ``mlp_in`` and predicts the MLP's output ``mlp`` at the same layer; a skip
transcoder adds a linear ``W_skip`` path. Weights are float32 torch parameters; every method
takes torch tensors or numpy arrays and answers in the same kind.

Input normalisation: training may divide ``x`` by a constant ``scale`` (so the mean squared norm
is ``d_in``). `SAE.fold_scale` folds it in for inference (``b_enc``, ``threshold`` and ``b_dec``
times ``scale``; ``W_dec`` and the top-k choice unchanged), after which the dictionary works on
raw activations and its decoder rows keep unit norm.

>>> import numpy as np
>>> sae = SAE.random(d_in=8, d_sae=32, architecture="topk", k=4, seed=0)
>>> x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
>>> f = sae.encode(x)
>>> f.shape, int((f > 0).sum(axis=1).max()) <= 4, sae.decode(f).shape
((5, 32), True, (5, 8))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import InputError

#: Architectures a dictionary can have at inference.
ARCHITECTURES = ("relu", "topk", "jumprelu")
#: Kinds of dictionary: where it reads and what it predicts.
KINDS = ("sae", "transcoder", "skip_transcoder")


@dataclass(frozen=True)
class SAEConfig:
    """What a dictionary is and where it sits.

    ``site``/``layer``: where it reads (a `mechscope.models.sites` name; default ``resid`` for a
    sparse autoencoder, ``mlp_in`` for a transcoder); ``site_out``/
    ``layer_out``: what it reconstructs (the same for a sparse autoencoder). ``model``: the name
    of the model it was trained on; ``k``: latents kept per row (``topk`` only). ``metadata``:
    free-form JSON (training settings, evaluation numbers, provenance).

    >>> SAEConfig(d_in=4, d_sae=8, architecture="topk", k=2).kind
    'sae'
    """

    d_in: int
    d_sae: int
    architecture: str = "relu"
    kind: str = "sae"
    d_out: int = 0
    k: int | None = None
    site: str = ""
    layer: int = 0
    site_out: str = ""
    layer_out: int = -1
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_config(self)
        if not self.d_out:
            object.__setattr__(self, "d_out", self.d_in)
        if not self.site:
            object.__setattr__(self, "site", "resid" if self.kind == "sae" else "mlp_in")
        if not self.site_out:
            object.__setattr__(self, "site_out", "mlp" if self.kind != "sae" else self.site)
        if self.layer_out < 0:
            object.__setattr__(self, "layer_out", self.layer)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data.

        >>> SAEConfig(d_in=4, d_sae=8).to_dict()["site_out"]
        'resid'
        """
        return asdict(self)


def _check_config(cfg: SAEConfig) -> None:
    for name in ("d_in", "d_sae"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    if cfg.architecture not in ARCHITECTURES:
        raise InputError(f"architecture must be one of {ARCHITECTURES}, got {cfg.architecture!r} "
                         "(a BatchTopK dictionary is saved as 'jumprelu').")
    if cfg.kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {cfg.kind!r}.")
    if cfg.architecture == "topk":
        if not isinstance(cfg.k, int) or not 1 <= cfg.k <= cfg.d_sae:
            raise InputError(f"a topk dictionary needs k between 1 and d_sae={cfg.d_sae}, got k={cfg.k!r}.")
    if cfg.kind == "sae" and cfg.d_out not in (0, cfg.d_in):
        raise InputError(f"a sparse autoencoder reconstructs its input: d_out must equal d_in={cfg.d_in}, "
                         f"got {cfg.d_out}; use kind='transcoder' to predict another site.")


class SAE(torch.nn.Module):
    """A sparse dictionary: parameters ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae,), ``W_dec``
    (d_sae, d_out), ``b_dec`` (d_out,), ``threshold`` (d_sae,) and, for skip transcoders,
    ``W_skip`` (d_in, d_out). See the module docstring for the maths.

    >>> sae = SAE.random(d_in=6, d_sae=12, seed=1)
    >>> sae.cfg.architecture, tuple(sae.W_dec.shape), round(float(sae.W_dec.detach().norm(dim=1).mean()), 4)
    ('relu', (12, 6), 1.0)
    """

    W_enc: torch.nn.Parameter
    b_enc: torch.nn.Parameter
    W_dec: torch.nn.Parameter
    b_dec: torch.nn.Parameter
    threshold: torch.nn.Parameter
    W_skip: torch.nn.Parameter

    def __init__(self, cfg: SAEConfig, weights: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.d_out
        shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_out),
                  "b_dec": (d_out,), "threshold": (d_sae,)}
        if cfg.kind == "skip_transcoder":
            shapes["W_skip"] = (d_in, d_out)
        given = dict(weights or {})
        unknown = sorted(set(given) - set(shapes))
        if unknown:
            raise InputError(f"unknown dictionary weights {unknown}: expected {sorted(shapes)}.")
        for name, shape in shapes.items():
            value = given.get(name)
            tensor = torch.zeros(shape) if value is None else _weight(value, name, shape)
            setattr(self, name, torch.nn.Parameter(tensor))

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def random(cls, d_in: int, d_sae: int, *, architecture: str = "relu", kind: str = "sae",
               d_out: int = 0, k: int | None = None, seed: int = 0, **cfg: Any) -> SAE:
        """A freshly initialised dictionary: unit-norm random decoder rows, encoder = decoder
        transposed (the usual start), zero biases and thresholds.

        >>> SAE.random(4, 8, architecture="topk", k=2).cfg.k
        2
        """
        config = SAEConfig(d_in=d_in, d_sae=d_sae, architecture=architecture, kind=kind,
                           d_out=d_out, k=k, **cfg)
        g = torch.Generator().manual_seed(int(seed))
        w_dec = torch.randn(config.d_sae, config.d_out, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if config.d_out == config.d_in:
            w_enc = w_dec.T.clone()
        else:
            w_enc = torch.randn(config.d_in, config.d_sae, generator=g) / config.d_in ** 0.5
        return cls(config, {"W_enc": w_enc, "W_dec": w_dec})

    @classmethod
    def load(cls, path_or_id: Any, **kwargs: Any) -> SAE:
        """`mechscope.sae.formats.load`: a dictionary from a SAELens, sparsify, Gemma Scope or
        dictionary_learning folder or file, or a Hub id.

        >>> import tempfile
        >>> SAE.load(SAE.random(4, 8).save(tempfile.mkdtemp())).cfg.d_sae
        8
        """
        from .formats import load

        return load(path_or_id, **kwargs)

    def save(self, path: Any, *, dtype: str = "float32") -> Any:
        """`mechscope.sae.formats.save`: this dictionary in SAELens's format (``cfg.json`` +
        ``sae_weights.safetensors``) in the folder ``path``; returns the folder.

        >>> import tempfile
        >>> SAE.random(4, 8).save(tempfile.mkdtemp()).is_dir()
        True
        """
        from .formats import save

        return save(self, path, dtype=dtype)

    def weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a float32 numpy array, by name.

        >>> sorted(SAE.random(2, 3).weights())
        ['W_dec', 'W_enc', 'b_dec', 'b_enc', 'threshold']
        """
        return {name: p.detach().cpu().numpy().astype(np.float32) for name, p in self.named_parameters()}

    def with_config(self, **changes: Any) -> SAE:
        """A copy with some config fields changed (weights copied).

        >>> SAE.random(2, 3).with_config(layer=5).cfg.layer
        5
        """
        return SAE(replace(self.cfg, **changes), self.weights())

    # ---- the maths -------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W_enc + b_enc`` for a torch tensor (..., d_in)."""
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The architecture's activation of pre-activations (..., d_sae)."""
        arch = self.cfg.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return pre * (pre > self.threshold)
        values, indices = self.topk(pre)
        return torch.zeros_like(pre).scatter(-1, indices, values)

    def topk(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest ReLU'd pre-activations per row and their latent indices,
        (..., k) each: what sparse decoding (`decode_sparse`) takes."""
        k = int(self.cfg.k or 1)
        values, indices = torch.relu(pre).topk(k, dim=-1, sorted=False)
        return values, indices

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor,
                      x: torch.Tensor | None = None) -> torch.Tensor:
        """``f @ W_dec + b_dec`` from (rows, k) values and latent indices, without the dense f:
        O(rows * k * d_out) instead of O(rows * d_sae * d_out)."""
        flat_i = indices.reshape(-1, indices.shape[-1])
        flat_v = values.reshape(-1, values.shape[-1])
        out = torch.nn.functional.embedding_bag(flat_i, self.W_dec, per_sample_weights=flat_v, mode="sum")
        out = out.reshape(*indices.shape[:-1], self.cfg.d_out) + self.b_dec
        return out + self._skip(x)

    def _skip(self, x: torch.Tensor | None) -> torch.Tensor | float:
        if self.cfg.kind != "skip_transcoder":
            return 0.0
        if x is None:
            raise InputError("a skip transcoder decodes with its input too: pass x= to decode.")
        return x @ self.W_skip

    def encode(self, x: Any) -> Any:
        """Latent activations (..., d_sae) of activations ``x`` (..., d_in), torch or numpy.

        >>> import numpy as np
        >>> SAE.random(4, 8).encode(np.ones((3, 4), np.float32)).shape
        (3, 8)
        """
        t, back = _as_tensor(x, self.cfg.d_in, "the dictionary's input", self.cfg)
        with _grad_if(x):
            return back(self.activate(self.pre_activations(t)))

    def decode(self, f: Any, x: Any = None) -> Any:
        """Reconstruction (..., d_out) of latents ``f`` (..., d_sae); ``x`` only for skip transcoders.

        >>> import torch
        >>> SAE.random(4, 8).decode(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
        """
        t, back = _as_tensor(f, self.cfg.d_sae, "the latents", self.cfg)
        xin = None if x is None else _as_tensor(x, self.cfg.d_in, "the dictionary's input", self.cfg)[0]
        with _grad_if(f):
            return back(t @ self.W_dec + self.b_dec + self._skip(xin))

    def forward(self, x: Any) -> Any:  # noqa: D102 - documented below
        """Reconstruction of ``x``: ``decode(encode(x))`` (with ``x`` for a skip transcoder).

        >>> import numpy as np
        >>> SAE.random(4, 8)(np.zeros((1, 4), np.float32)).shape
        (1, 4)
        """
        return self.decode(self.encode(x), x if self.cfg.kind == "skip_transcoder" else None)

    def evaluate(self, model: Any, texts: Any, **kwargs: Any) -> Any:
        """`mechscope.sae.evaluation.evaluate` of this dictionary on ``model`` and ``texts``:
        ``l0``, ``fvu``, ``ce_recovered``, ``dead_fraction`` and the rest (`SAEEvaluation`).

        >>> import mechscope
        >>> model = mechscope.tiny_model("llama")
        >>> ev = SAE.random(model.d_model, 16, layer=0).evaluate(model, ["a b c d"], progress=False)
        >>> 0.0 <= ev.dead_fraction <= 1.0
        True
        """
        from .evaluation import evaluate

        return evaluate(self, model, texts, **kwargs)

    # ---- normalisation -----------------------------------------------------------------------
    def fold_scale(self, scale: float) -> SAE:
        """A copy that works on raw activations when this one was trained on ``x / scale``.

        >>> import torch
        >>> sae = SAE.random(4, 8, architecture="jumprelu")
        >>> x = torch.randn(3, 4) * 10
        >>> bool(torch.allclose(sae.fold_scale(10.0)(x), 10.0 * sae(x / 10.0), atol=1e-4))
        True
        """
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"scale must be a positive finite number, got {scale!r}.")
        w = self.weights()
        w["b_enc"] = w["b_enc"] * scale
        w["threshold"] = w["threshold"] * scale
        w["b_dec"] = w["b_dec"] * scale
        meta = {**self.cfg.metadata, "folded_scale": float(scale)}
        return SAE(replace(self.cfg, metadata=meta), w)

    @contextmanager
    def frozen(self) -> Iterator[SAE]:
        """Parameters without gradients inside the block (for splicing into a model)."""
        old = [p.requires_grad for p in self.parameters()]
        for p in self.parameters():
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p, flag in zip(self.parameters(), old, strict=True):
                p.requires_grad_(flag)

    def extra_repr(self) -> str:
        c = self.cfg
        where = f"{c.site}@{c.layer}" + ("" if c.kind == "sae" else f" -> {c.site_out}@{c.layer_out}")
        k = f", k={c.k}" if c.architecture == "topk" else ""
        return f"{c.kind} {c.architecture}{k}, d_in={c.d_in}, d_sae={c.d_sae}, {where}"


def _weight(value: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value),
                             dtype=torch.float32).clone()
    if tuple(tensor.shape) != shape:
        raise InputError(f"dictionary weight {name} has shape {tuple(tensor.shape)}, expected {shape}.")
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"dictionary weight {name} has {bad} NaN or infinite values: the file is "
                         "corrupt or the training diverged; retrain or load another dictionary.")
    return tensor


def _as_tensor(x: Any, width: int, what: str, cfg: SAEConfig) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """``x`` as a float32 tensor and the function that turns a result back into ``x``'s kind."""
    if isinstance(x, torch.Tensor):
        t, back = x.float(), (lambda r: r)
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise InputError(f"{what} must be numbers (a torch tensor or numpy array), got dtype {arr.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        def back(r: torch.Tensor) -> Any:
            return r.detach().cpu().numpy()
    if t.ndim == 0 or t.shape[-1] != width:
        where = f"{cfg.site} at layer {cfg.layer}" + (f" of {cfg.model}" if cfg.model else "")
        raise InputError(f"{what} must be (..., {width}) for this dictionary ({where}, d_in={cfg.d_in}, "
                         f"d_sae={cfg.d_sae}), got shape {tuple(t.shape)}: is it the right site and model?")
    return t, back


def _grad_if(x: Any) -> Any:
    """Autograd for torch inputs (training, attribution); none for numpy inputs."""
    return torch.enable_grad() if isinstance(x, torch.Tensor) and torch.is_grad_enabled() else torch.no_grad()


__all__ = ["SAE", "SAEConfig", "ARCHITECTURES", "KINDS"]
