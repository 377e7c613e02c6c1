"""Live ablation of an attribution graph's nodes through the real model (what a click runs).

`graph_ablator` binds an `AttributionGraph`, the model and the transcoders it was built with
into ``ablate(node_ids) -> float``: the real model (attention, norms and MLPs all running, so
every downstream effect is real and nonlinear) runs ``graph.prompt`` with those nodes removed
together, and the answer is the change of the top token's raw logit (``graph.logit_tokens[0]``)
from the unedited run. A node is removed where the replacement model puts it:

- a feature (layer L, position p, index f, activation a): ``a * W_dec[f]`` (its decoder row, the
  part of the transcoder's reconstruction it writes) is subtracted from the MLP output at (L, p);
- an error node: the error vector (MLP output minus the transcoder's reconstruction, ``b_dec``
  and any skip path included) is subtracted from the MLP output at (L, p);
- an embedding node: position p's embedding (the residual stream entering layer 0) is zeroed;
- logit nodes are what is measured, not something to remove: asking for one is an `InputError`.

The graph's ``node_effect`` is the same removal one node at a time in the linearised
replacement model (attention patterns and norm scales frozen, features of later layers passing
changes on with slope 1) and measures the de-meaned top logit (its logit node's direction). So
the two agree only where nothing nonlinear lies between the node and the logits and the mean
logit does not move: even for a last-layer feature the real final RMSNorm rescales the
residual (the linearised graph holds its scale fixed), so they differ by that rescaling, which
is large where one feature is a big part of the residual (on the tiny random models, often
several times the linear value).

>>> import mechscope
>>> from mechscope.sae import SAE
>>> from mechscope.circuits.attribution_graph import attribution_graph
>>> model = mechscope.tiny_model("llama")
>>> tcs = {l: SAE.random(64, 16, kind="transcoder", architecture="topk", k=2, layer=l) for l in range(2)}
>>> g = attribution_graph(model, "the cat", transcoders=tcs, progress=False)
>>> ablate = graph_ablator(model, g, tcs)
>>> isinstance(ablate(["n0"]), float), ablate(["n0", "n1"]) != 0.0
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.trace import save
from ..validate import check_model
from .replacement import Forward, check_family, check_transcoders, forward


def _check_graph(model: Any, graph: Any) -> None:
    from .attribution_graph import AttributionGraph

    if not isinstance(graph, AttributionGraph):
        raise InputError(f"graph must be an AttributionGraph (mechscope.circuits.attribution_graph(...)), "
                         f"got {type(graph).__name__}.")
    if graph.n_layers != model.n_layers or tuple(model.str_tokens(graph.prompt)) != graph.tokens:
        raise InputError(f"this graph was not made with {model.name} (its prompt tokenises differently or it "
                         f"has {graph.n_layers} layers, the model {model.n_layers}): pass the model it was built on.")
    if not graph.logit_tokens:
        raise InputError("this graph has no logit nodes, so there is no top token to measure.")


def _check_features(graph: Any, run: Forward, tcs: list[Any]) -> None:
    """`InputError` unless each feature node is active in ``run`` with the graph's activation."""
    active = {(int(a), int(b), int(c)): float(v) for a, b, c, v in
              zip(run.feat_layer, run.feat_pos, run.feat_index, run.feat_act, strict=True)}
    for i in np.flatnonzero(np.array(graph.node_kind) == "feature"):
        key = (int(graph.node_layer[i]), int(graph.node_position[i]), int(graph.node_feature[i]))
        a = float(graph.node_activation[i])
        if key not in active or abs(active[key] - a) > 1e-4 * max(1.0, abs(a)):
            raise InputError(f"node n{i} ({graph.node_label[i]}, activation {a:.4g}) is not active like that "
                             "with these transcoders: pass the transcoders the graph was built with.")


def _node_indices(graph: Any, node_ids: Any) -> list[int]:
    """Graph indices of ``node_ids`` (ids ``n0``.. as in `AttributionGraph.graph_data`), checked."""
    ids = [node_ids] if isinstance(node_ids, str) else node_ids
    n = graph.n_nodes
    valid = [f"n{i}" for i in range(n) if graph.node_kind[i] != "logit"]
    hint = f"valid ids are {', '.join(valid[:6])}{' ...' if len(valid) > 6 else ''} (n0..n{n - 1} but the logits)"
    if not isinstance(ids, (list, tuple)) or not ids:
        raise InputError(f"give a non-empty list of node ids, e.g. [{valid[0]!r}], got {node_ids!r}; {hint}.")
    out: list[int] = []
    for x in ids:
        i = int(x[1:]) if isinstance(x, str) and x[:1] == "n" and x[1:].isdigit() else -1
        if not 0 <= i < n or x != f"n{i}":
            raise InputError(f"{x!r} is not a node of this graph; {hint}.")
        if graph.node_kind[i] == "logit":
            raise InputError(f"{x!r} is {graph.node_label[i]}, a logit node: logits are what ablation measures, "
                             f"not something to remove; {hint}.")
        if i in out:
            raise InputError(f"{x!r} is given twice: list each node once.")
        out.append(i)
    return out


def _edits(graph: Any, run: Forward, tcs: list[Any], nodes: list[int]) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """What to subtract from each layer's MLP output {layer: (P, d)} and the embedding mask (P,)."""
    n_pos = run.embeds.shape[0]
    mlp: dict[int, torch.Tensor] = {}
    keep = torch.ones(n_pos)
    for i in nodes:
        kind, layer, pos = graph.node_kind[i], int(graph.node_layer[i]), int(graph.node_position[i])
        if kind == "embedding":
            keep[pos] = 0.0
            continue
        if kind == "feature":
            vec = float(graph.node_activation[i]) * tcs[layer].W_dec.detach()[int(graph.node_feature[i])].float()
        else:
            vec = run.errors[layer, pos]
        delta = mlp.setdefault(layer, torch.zeros(n_pos, run.errors.shape[-1]))
        delta[pos] += vec
    return mlp, keep


def _top_logit(model: Any, ids: torch.Tensor, token: int, mlp: dict[int, torch.Tensor],
               keep: torch.Tensor | None) -> float:
    """The real model's logit of ``token`` at the last position with these edits."""
    refs = {layer: model.at("mlp", layer) for layer in sorted(mlp)}
    embed = model.envoy_at(model.adapter.embed_path)
    out: list[Any] = []  # filled inside the trace
    with model.trace(ids, use_cache=False):
        if keep is not None:
            x = embed.output
            embed.output = x * keep.to(x.dtype)[None, :, None]
        for layer, ref in refs.items():
            y = ref.read()
            ref.write(y - mlp[layer].to(y.dtype)[None])
        out.append(save(model.logits().last()[0, token].float()))
    return float(out[0])


def graph_ablator(model: Any, graph: Any, transcoders: Any) -> Callable[[list[str]], float]:
    """``ablate(node_ids) -> float``: the change of the top token's raw logit (``graph.logit_tokens[0]``,
    not de-meaned) when the real model runs ``graph.prompt`` with all those nodes (ids ``n0``...,
    as in `AttributionGraph.graph_data`; a supernode) removed together (see the module docstring);
    what `AttributionGraph.show` wires into `CircuitGraph`. The model, graph and ``transcoders``
    (those the graph was built with: a dict {layer: SAE} or a list) are checked now, with one real
    forward pass (the error vectors and the unedited logit); each call checks its ids before its
    one forward pass and runs without a progress bar (it runs in the widget's background thread).
    Compare ``graph.node_effect``: linearised through the frozen graph and de-meaned, so it
    differs wherever the real model is nonlinear downstream of the node.

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> from mechscope.circuits.attribution_graph import attribution_graph
    >>> model = mechscope.tiny_model("llama")
    >>> tcs = [SAE.random(64, 16, kind="transcoder", architecture="topk", k=1, layer=l) for l in range(2)]
    >>> g = attribution_graph(model, "a b", transcoders=tcs, progress=False)
    >>> ablate = graph_ablator(model, g, tcs)
    >>> g.node_kind[8], isinstance(ablate(["n8"]), float)      # zero the first token's embedding
    ('embedding', True)
    >>> ablate(["n10"])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: 'n10' is logit ..., a logit node: logits are what ablation measures, not something to remove; valid ids are n0, n1, n2, n3, n4, n5 ... (n0..n19 but the logits).
    """
    model = check_model(model, "graph_ablator")
    check_family(model, "graph_ablator")
    if model.remote:
        raise InputError("graph_ablator runs the model locally: load the model without remote= for it.")
    _check_graph(model, graph)
    tcs = check_transcoders(model, transcoders, "graph_ablator")
    ids = model.to_tokens(graph.prompt)
    token = int(graph.logit_ids[0])
    run = forward(model, ids, tcs)
    _check_features(graph, run, tcs)
    base = _top_logit(model, ids, token, {}, None)

    def ablate(node_ids: list[str]) -> float:
        nodes = _node_indices(graph, node_ids)
        mlp, keep = _edits(graph, run, tcs, nodes)
        return _top_logit(model, ids, token, mlp, keep if bool((keep == 0).any()) else None) - base

    return ablate


__all__ = ["graph_ablator"]
