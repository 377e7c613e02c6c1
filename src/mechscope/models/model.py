"""`Model`: one loaded language model with its tokenizer, nnsight wrapper and adapter."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .adapters import Adapter, adapter_for, get_module


def _in_features(module: torch.nn.Module) -> int:
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    weight = getattr(module, "weight", None)
    if weight is not None and weight.ndim == 2:  # GPT-2's Conv1D stores (in, out)
        return int(weight.shape[0])
    raise TypeError(f"cannot read the input width of {type(module).__name__}")


def prepare_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` set up once for batched causal-LM use (left padding, a pad token).

    nnsight sets these on whatever tokenizer it is given; doing it on our own copy means a
    user's tokenizer object is never mutated and later calls change nothing.
    """
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


@dataclass(eq=False)
class Model:
    """A causal LM ready for mechscope: ``.nn`` (nnsight), ``.hf``, ``.tokenizer``, sizes, sites.

    >>> from mechscope.models.tiny import tiny_model
    >>> m = tiny_model("llama")
    >>> (m.n_layers, m.d_model, m.d_mlp, m.n_heads)
    (2, 64, 128, 4)
    >>> "".join(m.str_tokens("hello world")) == "hello world"
    True
    """

    nn: Any
    hf: torch.nn.Module
    tokenizer: Any
    adapter: Adapter
    name: str
    remote: bool | str = False
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def wrap(cls, hf_model: torch.nn.Module, tokenizer: Any, name: str | None = None,
             remote: bool | str = False) -> Model:
        from nnsight.modeling.transformers import TransformersModel

        adapter = adapter_for(hf_model)
        hf_model.eval()
        tok = prepare_tokenizer(tokenizer)
        nn_model = TransformersModel(hf_model, tokenizer=tok)
        return cls(nn=nn_model, hf=hf_model, tokenizer=tok, adapter=adapter,
                   name=name or getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__,
                   remote=remote)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def n_layers(self) -> int:
        return int(getattr(self.config, self.adapter.n_layers_attr))

    @property
    def d_model(self) -> int:
        return int(getattr(self.config, self.adapter.d_model_attr))

    @property
    def n_heads(self) -> int:
        return int(getattr(self.config, self.adapter.n_heads_attr))

    @property
    def d_head(self) -> int:
        return _in_features(self.hf_module("heads", 0)) // self.n_heads

    @property
    def d_mlp(self) -> int:
        return _in_features(self.hf_module("neurons", 0))

    @property
    def vocab_size(self) -> int:
        weight: Any = self.hf_module_at(self.adapter.unembed_path).weight
        return int(weight.shape[0])

    @property
    def max_positions(self) -> int | None:
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(self.config, attr, None)
            if value:
                return int(value)
        return None

    # ---- modules -----------------------------------------------------------------------
    def hf_module_at(self, path: str) -> torch.nn.Module:
        return get_module(self.hf, path)

    def hf_module(self, site: str, layer: int) -> torch.nn.Module:
        return get_module(self.hf, self.adapter.site_path(site, layer))

    def envoy_at(self, path: str) -> Any:
        """The nnsight Envoy at a dotted path (use inside a trace)."""
        return get_module(self.nn, path)

    def envoy(self, site: str, layer: int) -> Any:
        return get_module(self.nn, self.adapter.site_path(site, layer))

    # ---- validation ----------------------------------------------------------------------
    def check_layer(self, layer: int) -> int:
        """``layer`` as a non-negative index; negative indices count from the end (Python rule)."""
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
            raise InputError(f"layer must be an int, got {type(layer).__name__} {layer!r}.")
        n = self.n_layers
        if not -n <= layer < n:
            raise InputError(
                f"layer {layer} is out of range: this model has {n} layers (0..{n - 1}; "
                f"negative indices count from the end, down to {-n})."
            )
        return int(layer) % n

    # ---- tokens --------------------------------------------------------------------------
    def to_tokens(self, prompt: str) -> torch.Tensor:
        """Token ids of one prompt, shape (1, n), after checking the prompt is usable."""
        if isinstance(prompt, bytes | bytearray):
            try:
                prompt = bytes(prompt).decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(
                    f"the prompt is bytes that are not valid UTF-8 ({err}); decode it first, "
                    "e.g. data.decode('utf-8', errors='replace')."
                ) from None
        if not isinstance(prompt, str):
            raise InputError(f"a prompt must be a str, got {type(prompt).__name__}.")
        if prompt == "":
            raise InputError("the prompt is empty: give at least one token of text.")
        _check_unicode(prompt, "the prompt")
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=True)["input_ids"]
        n = int(ids.shape[1])
        if n == 0:
            raise InputError(f"the prompt {prompt!r} produced no tokens.")
        limit = self.max_positions
        if limit is not None and n > limit:
            raise InputError(
                f"the prompt is {n} tokens long but {self.name} accepts at most {limit} "
                "(its context length); shorten it."
            )
        return ids

    def str_tokens(self, text: str) -> list[str]:
        """The prompt's tokens as strings, exactly as the model sees them, one per token id.

        They concatenate back to ``text`` unless a byte-level token splits a character (CJK,
        emoji): each byte piece of such a character decodes alone to U+FFFD.
        """
        ids = self.to_tokens(text)[0].tolist()
        return [self.tokenizer.decode([i]) for i in ids]

    def to_single_token(self, token: str | int) -> int:
        """The id of ``token``, which must be exactly one token (e.g. " Paris")."""
        if isinstance(token, bool):
            raise InputError(f"a token must be a str or an int id, got {token!r}.")
        if isinstance(token, int | np.integer):
            idx = int(token)
            if not 0 <= idx < self.vocab_size:
                raise InputError(f"token id {idx} is out of range 0..{self.vocab_size - 1}.")
            return idx
        if not isinstance(token, str) or token == "":
            raise InputError(f"a token must be a non-empty str or an int id, got {token!r}.")
        _check_unicode(token, f"the token {token!r}")
        ids = self.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise InputError(
                f"{token!r} is {len(ids)} tokens {pieces}, not one. Metrics need single tokens: "
                "mind the leading space (' Paris' vs 'Paris')."
            )
        return int(ids[0])

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, family={self.adapter.family}, layers={self.n_layers}, "
                f"d_model={self.d_model}, heads={self.n_heads}, d_mlp={self.d_mlp})")


def _check_unicode(text: str, what: str) -> None:
    """Raise `InputError` if ``text`` holds a lone surrogate (a str that is not Unicode text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(
            f"{what} is not valid Unicode text: {text[err.start]!r} at index {err.start} is a lone "
            "surrogate, usually left by decoding with errors='surrogateescape'; clean it first, "
            "e.g. text.encode('utf-8', errors='replace').decode('utf-8')."
        ) from None
