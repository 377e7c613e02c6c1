"""The component graph of a transformer: which outputs feed which inputs.

Upstream nodes are the things that write into the residual stream: ``input`` (the embeddings,
i.e. the residual stream entering layer 0), every attention head's output (``L3H2``) and every
MLP's output (``L3MLP``). Downstream nodes are the things that read it: every head's query
input (``L3H2.q``), every key-value head's key and value inputs (``L3KV1.k``, ``L3KV1.v``:
with grouped-query attention a key-value head serves several query heads, so its inputs are
one node), every MLP's input (``L3MLP``) and the ``logits``. An edge u -> v exists when u
writes before v reads: u's layer is earlier than v's, or u is a head and v the MLP of the
same layer, and every upstream node feeds the logits. Because the residual stream is a sum,
the input of v is the sum of its upstream nodes' outputs (plus constant biases), which is
what makes edge attribution and edge patching well defined.

SmolLM2-135M (30 layers, 9 heads, 3 key-value heads) has 301 upstream, 481 downstream
nodes and 70,651 edges.

>>> import mechscope
>>> g = ComponentGraph.of(mechscope.tiny_model("llama"))      # 2 layers, 4 heads, 2 kv heads
>>> g.n_upstream, g.n_downstream, g.n_edges
(11, 19, 82)
>>> g.upstream[:3], g.downstream[:2], g.downstream[4:6]
(('input', 'L0H0', 'L0H1'), ('L0H0.q', 'L0H1.q'), ('L0KV0.k', 'L0KV1.k'))
>>> g.edge_name(g.edge_index("L0H1", "L1KV0.v"))
'L0H1 -> L1KV0.v'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedArchitectureError

#: Model types whose layers are "x + attn(norm1(x)), then + mlp(norm2(.))" with separate q/k/v
#: projections: the layout `ComponentGraph` and the circuit traces rely on.
PRE_NORM_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "olmo")


@dataclass(frozen=True)
class Projections:
    """One layer's attention weights, per head: ``w_q`` (heads, d_head, d_model), ``w_k`` and
    ``w_v`` (kv_heads, d_head, d_model), ``w_o`` (heads, d_model, d_head) and the biases
    (or None)."""

    w_q: torch.Tensor
    w_k: torch.Tensor
    w_v: torch.Tensor
    w_o: torch.Tensor
    b_q: torch.Tensor | None
    b_k: torch.Tensor | None
    b_v: torch.Tensor | None


@dataclass(frozen=True)
class ComponentGraph:
    """Nodes and edges of one model's component graph (see the module docstring).

    ``valid`` is the (n_upstream, n_downstream) boolean matrix of edges; ``edges`` lists them
    as (upstream index, downstream index) rows in a fixed order (the order of every score
    array); ``up_layer`` / ``down_layer`` give each node's layer (-1 for ``input``, n_layers for
    ``logits``).

    >>> g = ComponentGraph.build(n_layers=1, n_heads=2, n_kv_heads=1)
    >>> g.upstream, g.downstream
    (('input', 'L0H0', 'L0H1', 'L0MLP'), ('L0H0.q', 'L0H1.q', 'L0KV0.k', 'L0KV0.v', 'L0MLP', 'logits'))
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    up_layer: np.ndarray
    down_layer: np.ndarray
    valid: np.ndarray
    edges: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, model: Any) -> ComponentGraph:
        """The graph of ``model`` (a `mechscope.Model` of a pre-norm family, see `PRE_NORM_FAMILIES`)."""
        check_family(model)
        return cls.build(model.n_layers, model.n_heads, kv_heads(model))

    @classmethod
    def build(cls, n_layers: int, n_heads: int, n_kv_heads: int) -> ComponentGraph:
        """The graph of a model with these sizes."""
        up, up_layer = ["input"], [-1]
        down: list[str] = []
        down_layer: list[int] = []
        for layer in range(n_layers):
            up += [f"L{layer}H{h}" for h in range(n_heads)] + [f"L{layer}MLP"]
            up_layer += [layer] * (n_heads + 1)
            down += ([f"L{layer}H{h}.q" for h in range(n_heads)] + [f"L{layer}KV{g}.k" for g in range(n_kv_heads)]
                     + [f"L{layer}KV{g}.v" for g in range(n_kv_heads)] + [f"L{layer}MLP"])
            down_layer += [layer] * (n_heads + 2 * n_kv_heads + 1)
        down.append("logits")
        down_layer.append(n_layers)
        ul, dl = np.asarray(up_layer), np.asarray(down_layer)
        valid = ul[:, None] < dl[None, :]
        is_mlp_in = np.array([d.endswith("MLP") for d in down])
        is_head_out = np.array([u[0] == "L" and not u.endswith("MLP") for u in up])
        valid |= (ul[:, None] == dl[None, :]) & is_head_out[:, None] & is_mlp_in[None, :]
        edges = np.argwhere(valid)
        return cls(n_layers, n_heads, n_kv_heads, tuple(up), tuple(down), ul, dl, valid, edges)

    @property
    def n_upstream(self) -> int:
        return len(self.upstream)

    @property
    def n_downstream(self) -> int:
        return len(self.downstream)

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def per_layer(self) -> int:
        """Downstream nodes per layer: query heads, key heads, value heads, the MLP."""
        return self.n_heads + 2 * self.n_kv_heads + 1

    def down_slice(self, layer: int) -> slice:
        """The downstream indices of ``layer`` (q heads, then k, then v, then the MLP)."""
        return slice(layer * self.per_layer, (layer + 1) * self.per_layer)

    def up_count(self, layer: int, *, with_heads: bool = False) -> int:
        """How many upstream nodes have written before ``layer``'s attention (``with_heads``:
        before its MLP, so its heads too)."""
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if with_heads else 0)

    def edge_index(self, up: str, down: str) -> int:
        """The row of edge ``up -> down`` in `edges`; `InputError` when there is no such edge."""
        try:
            u, v = self.upstream.index(up), self.downstream.index(down)
        except ValueError:
            raise InputError(f"no node {up!r} upstream or {down!r} downstream: names look like "
                             f"{self.upstream[1]!r} -> {self.downstream[0]!r}.") from None
        if not self.valid[u, v]:
            raise InputError(f"there is no edge {up} -> {down}: {up} writes after {down} reads.")
        return int(np.flatnonzero((self.edges[:, 0] == u) & (self.edges[:, 1] == v))[0])

    def edge_name(self, index: int) -> str:
        u, v = self.edges[index]
        return f"{self.upstream[u]} -> {self.downstream[v]}"

    def edge_names(self, index: Any = None) -> list[str]:
        rows = range(self.n_edges) if index is None else np.asarray(index).ravel()
        return [self.edge_name(int(i)) for i in rows]

    def component(self, name: str) -> str:
        """The component a node belongs to: ``L3H2.q`` -> ``L3H2``, ``L3KV1.k`` -> ``L3KV1``."""
        return name.split(".")[0]


def kv_heads(model: Any) -> int:
    """Key-value heads per layer (``num_key_value_heads``, else every head has its own)."""
    return int(getattr(model.config, "num_key_value_heads", None) or model.n_heads)


def check_family(model: Any) -> None:
    """`UnsupportedArchitectureError` unless ``model`` has the pre-norm layout circuits rely on."""
    model_type = str(getattr(model.config, "model_type", ""))
    layer = model.hf_module_at(model.adapter.layer_path(0))
    extra = [n for n in ("post_feedforward_layernorm", "pre_feedforward_layernorm") if hasattr(layer, n)]
    if model_type not in PRE_NORM_FAMILIES or extra:
        why = f"it has extra norms ({', '.join(extra)})" if extra else f"model_type={model_type!r}"
        raise UnsupportedArchitectureError(
            f"circuits need a pre-norm model with separate q/k/v projections ({', '.join(PRE_NORM_FAMILIES)}); "
            f"{model.name} is not one ({why}). Component patching (mechscope.patch) works on it.")


def projections(model: Any, layer: int) -> Projections:
    """``layer``'s attention weights split per head (see `Projections`)."""
    attn = model.hf_module(layer=layer, site="attn")
    h, g, dh, d = model.n_heads, kv_heads(model), model.d_head, model.d_model

    def split(lin: Any, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = lin.weight.detach().reshape(n, dh, d)
        bias = getattr(lin, "bias", None)
        return w, (bias.detach().reshape(n, dh) if bias is not None else None)

    w_q, b_q = split(attn.q_proj, h)
    w_k, b_k = split(attn.k_proj, g)
    w_v, b_v = split(attn.v_proj, g)
    w_o = attn.o_proj.weight.detach().reshape(d, h, dh).permute(1, 0, 2)
    return Projections(w_q, w_k, w_v, w_o, b_q, b_k, b_v)


def module_paths(model: Any, layer: int) -> dict[str, str]:
    """nnsight paths of the modules the circuit traces read and write at ``layer``."""
    base = model.adapter.layer_path(layer)
    attn = model.adapter.module_path("attn", layer)
    return {"norm1": f"{base}.input_layernorm", "q": f"{attn}.q_proj", "k": f"{attn}.k_proj",
            "v": f"{attn}.v_proj", "o": f"{attn}.o_proj", "norm2": f"{base}.post_attention_layernorm",
            "mlp": model.adapter.module_path("mlp", layer)}
