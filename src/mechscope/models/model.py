"""`Model`: one loaded language model with its tokenizer, nnsight wrapper and adapter."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..validate import index, index_list
from .adapters import Adapter, adapter_for, get_module
from .sites import LogitsRef, Site, SiteRef, site
from .trace import open_trace


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

    # ---- sites and traces ----------------------------------------------------------------
    def width(self, name: str | Site) -> int:
        """Size of the last dimension of ``name`` (a `Site` or its name): d_model, d_mlp or n_heads * d_head."""
        s = name if isinstance(name, Site) else site(name)
        if s.width == "keys":
            raise InputError(f"site {s.name!r} has one column per key position: its width is the prompt's length.")
        return self.n_heads * self.d_head if s.width == "heads" else int(getattr(self, s.width))

    def units(self, name: str | Site) -> int:
        """How many units ``name`` has per layer: heads for "heads", else its width."""
        s = name if isinstance(name, Site) else site(name)
        return self.n_heads if s.unit == "head" else self.width(s)

    def at(self, name: str | Site, layer: int) -> SiteRef:
        """Site ``name`` at ``layer`` (negative counts from the end), to `read`/`write` inside a trace.

        >>> from mechscope.models.tiny import tiny_model
        >>> from mechscope.models.trace import save
        >>> m = tiny_model("llama")
        >>> mlp = m.at("mlp", -1)
        >>> with m.trace(m.to_tokens("hello world")):
        ...     out = save(mlp.read())
        >>> tuple(out.shape) == (1, len(m.str_tokens("hello world")), m.d_model)
        True
        """
        s = name if isinstance(name, Site) else site(name)
        layer = self.check_layer(layer)
        path = self.adapter.module_path(s.module, layer)
        return SiteRef(site=s, layer=layer, envoy=get_module(self.nn, path))

    def logits(self) -> LogitsRef:
        """The unembedding, to read logits inside a trace (``.last()``: final position only)."""
        return LogitsRef(self.envoy_at(self.adapter.unembed_path))

    @contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Inside the block the model uses eager attention (the only kind that forms attention
        probabilities, site "pattern"); the implementation it had is restored afterwards."""
        hf: Any = self.hf
        previous = getattr(hf.config, "_attn_implementation", None)
        switch = previous != "eager"
        if switch:
            hf.set_attn_implementation("eager")
        try:
            yield
        finally:
            if switch and previous is not None:
                hf.set_attn_implementation(previous)

    def trace(self, inputs: Any, *, grad: bool = False, **kwargs: Any) -> Any:
        """An nnsight trace of ``inputs`` (ids, an encoding dict or text) where this model runs
        (locally, ``remote="local"`` or NDIF), without gradients unless ``grad=True``.
        Write ``with model.trace(ids):`` directly around the body (nnsight reads its source)."""
        return open_trace(self, inputs, grad=grad, **kwargs)

    # ---- validation ----------------------------------------------------------------------
    def check_layer(self, layer: int) -> int:
        """``layer`` as a non-negative index; negative indices count from the end (Python rule)."""
        return index(layer, self.n_layers, "layer", "layer", where="this model has")

    def check_layers(self, layers: Any = None) -> list[int]:
        """``layers`` (an int or a list; None = all) in model order (`mechscope.validate`)."""
        n = self.n_layers
        return index_list(range(n) if layers is None else layers, n, "layers", "layer",
                          where="this model has")

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
            raise InputError(f"a prompt must be a str, got {type(prompt).__name__} (several prompts: a "
                             "list of str or a dataset from mechscope.datasets, where a verb takes one).")
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

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Several texts as one left-padded batch: ``input_ids``, ``attention_mask`` and
        ``position_ids`` (each (batch, longest)); the position ids count real tokens only, so
        a padded row computes what it computes alone (absolute-position models like GPT-2
        included). Check each text with `to_tokens` first.

        >>> from mechscope.models.tiny import tiny_model
        >>> m = tiny_model("gpt2")
        >>> enc = m.encode(["a b c", "a"])
        >>> enc["attention_mask"][1].tolist(), enc["position_ids"][1].tolist()
        ([0, 0, 1], [0, 0, 0])
        """
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        mask = enc["attention_mask"]
        return {"input_ids": enc["input_ids"], "attention_mask": mask,
                "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}

    def str_tokens(self, text: str) -> list[str]:
        """The prompt's tokens as strings, exactly as the model sees them, one per token id.

        They concatenate back to ``text`` unless a byte-level token splits a character (CJK,
        emoji): each byte piece of such a character decodes alone to U+FFFD.
        """
        return self.decode_tokens(self.to_tokens(text))

    def decode_tokens(self, ids: Any) -> list[str]:
        """One string per token id: a (1, n) or (n,) tensor / array / list of ids."""
        flat = torch.as_tensor(ids).reshape(-1).tolist()
        return [self.tokenizer.decode([int(i)]) for i in flat]

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


def left_padded(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Token id lists as one left-padded batch, as `Model.encode` makes from texts:
    ``input_ids``, ``attention_mask`` and ``position_ids`` (counting real tokens only).

    >>> left_padded([[5, 6, 7], [8]], pad_id=0)["input_ids"].tolist()
    [[5, 6, 7], [0, 0, 8]]
    """
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, width - len(r):] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0)}
