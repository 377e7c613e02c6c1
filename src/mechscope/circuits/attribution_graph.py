"""`attribution_graph`: the feature attribution graph of one prompt (Ameisen et al. 2025).

Transcoders at every MLP layer replace the MLPs in a local replacement model of the prompt
(`mechscope.circuits.replacement`: real values, frozen attention patterns and norm scales, an
error node per layer and position); the direct effect of every node on every other is read from
batched backward passes; `AttributionGraph.prune` keeps what carries most influence to the
logits (`mechscope.circuits.graph_pruning`). Node order in every array: features (by layer,
position, index), error nodes (layer, position), embeddings (position), logits (by probability).

>>> import mechscope
>>> from mechscope.sae import SAE
>>> model = mechscope.tiny_model("llama")
>>> tcs = {l: SAE.random(64, 16, kind="transcoder", architecture="topk", k=2, layer=l) for l in range(2)}
>>> g = attribution_graph(model, "the cat", transcoders=tcs, progress=False)
>>> g.adjacency.shape == (g.n_nodes, g.n_nodes), 0 <= g.replacement_score <= 1, 0 <= g.completeness_score <= 1
(True, True, True)
>>> p = g.prune()
>>> p.n_nodes <= g.n_nodes, p.logit_tokens == g.logit_tokens
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..validate import as_int, check_model
from . import graph_pruning as gp
from .replacement import (
           Forward,
           Targets,
           check_family,
           check_transcoders,
           direct_effects,
           forward,
           frozen_parameters,
           node_table,
)

KINDS = ("feature", "error", "embedding", "logit")


@dataclass(frozen=True)
class AttributionGraph:
    """Nodes (n,) and direct effects of one prompt's attribution graph.

    Node table: ``node_kind`` (one of ``"feature"``, ``"error"``, ``"embedding"``, ``"logit"``),
    ``node_layer`` (-1 for embeddings, n_layers for logits), ``node_position``, ``node_feature``
    (feature index; token id for a logit; -1 otherwise), ``node_activation`` (a feature's
    activation; the norm of an error or embedding vector; a logit's de-meaned value),
    ``node_label``, ``node_summary`` (hover text) and ``node_effect`` (change of the top logit
    when the node is zeroed in the linearised replacement model, `graph_pruning.linear_effects`;
    NaN for logits). ``adjacency`` (n, n): rows targets, columns sources. ``logit_tokens`` /
    ``logit_ids`` / ``logit_probabilities`` (L,). Scores: see `graph_pruning.scores`; a pruned
    graph has its own (``pruned``), its ``coverage`` (node, edge) and the unpruned ones in
    ``unpruned_scores``. ``n_active``: active features of the prompt (before ``max_feature_nodes``).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> tcs = [SAE.random(64, 8, kind="transcoder", architecture="topk", k=1, layer=l) for l in range(2)]
    >>> g = attribution_graph(model, "a b", transcoders=tcs, max_logits=2, progress=False)
    >>> g.node_kind                      # 2 layers x 2 positions x k=1 features, errors, embeddings, logits
    ('feature', 'feature', 'feature', 'feature', 'error', 'error', 'error', 'error', 'embedding', 'embedding', 'logit', 'logit')
    >>> list(g.to_pandas().columns[:4]), g.graph_data().row_labels
    (['kind', 'layer', 'position', 'token'], ('emb', 'L0', 'L1', 'logits'))
    """

    prompt: str
    tokens: tuple[str, ...]
    n_layers: int
    node_kind: tuple[str, ...]
    node_layer: np.ndarray
    node_position: np.ndarray
    node_feature: np.ndarray
    node_activation: np.ndarray
    node_label: tuple[str, ...]
    node_summary: tuple[str, ...]
    node_effect: np.ndarray
    adjacency: np.ndarray
    logit_tokens: tuple[str, ...]
    logit_ids: np.ndarray
    logit_probabilities: np.ndarray
    replacement_score: float
    completeness_score: float
    n_active: int
    pruned: bool = False
    coverage: tuple[float, float] = (1.0, 1.0)
    unpruned_scores: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def n_nodes(self) -> int:
        return len(self.node_kind)

    @property
    def n_edges(self) -> int:
        return int(np.count_nonzero(self.adjacency))

    def _is(self, kind: str) -> np.ndarray:
        return np.array([k == kind for k in self.node_kind], bool)

    @property
    def logit_weights(self) -> np.ndarray:
        """(n,) each logit node's probability, 0 for other nodes."""
        w = np.zeros(self.n_nodes)
        w[self._is("logit")] = self.logit_probabilities
        return w

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> AttributionGraph:
        """The graph with only the nodes covering ``node_threshold`` of the influence on the logits
        and the edges covering ``edge_threshold`` of the edge scores, orphans dropped (logits and
        embeddings always stay; `graph_pruning.prune_masks`); scores recomputed on what is left."""
        for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise InputError(f"{name} must be a fraction in (0, 1], got {value!r}.")
        always = self._is("logit") | self._is("embedding")
        masks = gp.prune_masks(self.adjacency, self.logit_weights, always, ~always, node_threshold,
                               edge_threshold, needs_input=self._is("feature"))
        keep = np.flatnonzero(masks.nodes)
        adjacency = np.where(masks.edges, self.adjacency, 0.0)[np.ix_(keep, keep)].astype(np.float32)
        sub = _subset(self, keep, adjacency)
        return replace(sub, pruned=True, coverage=(masks.node_coverage, masks.edge_coverage),
                       unpruned_scores=(self.replacement_score, self.completeness_score))

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per node: ``kind``, ``layer``, ``position``, ``token``, ``feature``,
        ``activation``, ``label``, ``effect``, ``influence`` (on the logits)."""
        import pandas as pd

        inf = gp.influence(gp.normalise(self.adjacency), self.logit_weights)
        return pd.DataFrame({"kind": self.node_kind, "layer": self.node_layer, "position": self.node_position,
                             "token": [self.tokens[p] for p in self.node_position], "feature": self.node_feature,
                             "activation": self.node_activation, "label": self.node_label,
                             "effect": self.node_effect, "influence": inf})

    def graph_data(self, max_edges: int | None = None) -> Any:
        """A `mechscope.widgets.circuit_graph.GraphData`: rows = embeddings, layers, logits;
        columns = positions (nodes of one cell side by side); the strongest ``max_edges`` edges
        (default: at most the widget's limit)."""
        from ..widgets.circuit_graph import MAX_EDGES, GraphData

        tgt, src = np.nonzero(self.adjacency)
        weight = self.adjacency[tgt, src]
        limit = MAX_EDGES if max_edges is None else min(as_int(max_edges, "max_edges"), MAX_EDGES)
        if weight.size > limit:
            strongest = np.argsort(-np.abs(weight), kind="stable")[:limit]
            tgt, src, weight = tgt[strongest], src[strongest], weight[strongest]
        rows = self.node_layer + 1
        column = self.node_position.astype(np.float64)
        cells: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(rows.tolist(), self.node_position.tolist(), strict=True)):
            cells.setdefault(key, []).append(i)
        for members in cells.values():
            if len(members) > 1:
                column[members] += np.linspace(-0.4, 0.4, len(members))
        top = self.logit_tokens[0] if self.logit_tokens else ""
        return GraphData(node_id=[f"n{i}" for i in range(self.n_nodes)], node_label=list(self.node_label),
                         node_layer=rows, node_column=column, node_kind=list(self.node_kind),
                         node_summary=list(self.node_summary), node_effect=self.node_effect,
                         edge_src=src, edge_dst=tgt, edge_weight=weight.astype(np.float64),
                         title=f"attribution graph: {self.prompt}", metric_name=f"logit {top!r} (linearised)",
                         row_labels=["emb"] + [f"L{layer}" for layer in range(self.n_layers)] + ["logits"],
                         column_labels=list(self.tokens))

    def show(self, max_edges: int | None = None, model: Any = None, transcoders: Any = None) -> Any:
        """The graph in a `mechscope.widgets.CircuitGraph` (precomputed and offline effects:
        ``node_effect``); with ``model`` and ``transcoders`` (those it was built with) a click
        ablates the nodes live in the real model (`mechscope.circuits.graph_ablation.graph_ablator`)."""
        from ..widgets.circuit_graph import CircuitGraph

        if (model is None) != (transcoders is None):
            raise InputError("give both model= and transcoders= (the graph's own) for live ablation, or neither.")
        data = self.graph_data(max_edges)
        if model is None:
            return CircuitGraph(data)
        from .graph_ablation import graph_ablator

        ablate = graph_ablator(model, self, transcoders)
        live = f"logit {self.logit_tokens[0]!r} (clicks: real model; precomputed: linearised)"
        return CircuitGraph(replace(data, metric_name=live), ablate=ablate)

    def __repr__(self) -> str:
        return (f"AttributionGraph({self.prompt!r}, {self.n_nodes} nodes, {self.n_edges} edges, "
                f"replacement {self.replacement_score:.3f}, completeness {self.completeness_score:.3f}"
                f"{', pruned' if self.pruned else ''})")


def _subset(g: AttributionGraph, keep: np.ndarray, adjacency: np.ndarray) -> AttributionGraph:
    """The graph on nodes ``keep`` with this adjacency, its scores recomputed."""
    pick = [g.node_kind[i] for i in keep]
    is_kind = {k: np.array([x == k for x in pick], bool) for k in KINDS}
    w = np.zeros(len(keep))
    w[is_kind["logit"]] = g.logit_probabilities
    rep, comp = gp.scores(adjacency, w, is_kind["error"], is_kind["embedding"])
    return replace(g, node_kind=tuple(pick), node_layer=g.node_layer[keep], node_position=g.node_position[keep],
                   node_feature=g.node_feature[keep], node_activation=g.node_activation[keep],
                   node_label=tuple(g.node_label[i] for i in keep), node_summary=tuple(g.node_summary[i] for i in keep),
                   node_effect=g.node_effect[keep], adjacency=adjacency, replacement_score=rep,
                   completeness_score=comp)


def _check_options(max_feature_nodes: Any, batch_size: Any, max_logits: Any, logit_probability: Any,
                   progress: Any) -> tuple[int, int, int, float]:
    values = []
    for name, value, top in (("max_feature_nodes", max_feature_nodes, None), ("batch_size", batch_size, 4096),
                             ("max_logits", max_logits, 100)):
        v = as_int(value, name)
        if v < 1 or (top is not None and v > top):
            raise InputError(f"{name} must be an int in 1..{top or 'any'}, got {v}.")
        values.append(v)
    if isinstance(logit_probability, bool) or not isinstance(logit_probability, int | float) \
            or not 0 < logit_probability <= 1:
        raise InputError(f"logit_probability must be a fraction in (0, 1], got {logit_probability!r}.")
    if not isinstance(progress, bool):
        raise InputError(f"progress must be True or False, got {progress!r}.")
    return values[0], values[1], values[2], float(logit_probability)


def _logit_nodes(logits: torch.Tensor, cover: float, most: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Top token ids until their probability reaches ``cover`` (at most ``most``), their
    probabilities, and their de-meaned one-hot directions (L, vocab)."""
    probs = torch.softmax(logits.double(), -1)
    p, ids = probs.sort(descending=True)
    n = min(int(torch.searchsorted(p.cumsum(0), torch.tensor(cover, dtype=p.dtype))) + 1, most, p.numel())
    directions = torch.full((n, logits.numel()), -1.0 / logits.numel())
    directions[torch.arange(n), ids[:n]] += 1.0
    return ids[:n].numpy(), p[:n].numpy(), directions


def _visit(compute: Any, run: Forward, transcoders: list[Any], directions: torch.Tensor, probs: np.ndarray,
           most: int, batch: int, bar: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the logits (L, n_sources) and of the features visited greedily by their
    influence on the logits so far (at most ``most``); returns (logit rows, feature rows, visited)."""
    def run_batch(feats: list[int], logits: list[int]) -> np.ndarray:
        t = Targets([(r, int(run.feat_layer[f]), int(run.feat_pos[f]),
                      transcoders[int(run.feat_layer[f])].W_enc.detach()[:, int(run.feat_index[f])])
                     for r, f in enumerate(feats)], [(r, directions[j]) for r, j in enumerate(logits)])
        bar.update(len(feats) + len(logits))
        return compute(t)[:len(feats) + len(logits)].numpy()

    n_logits = directions.shape[0]
    logit_rows = np.concatenate([run_batch([], list(range(i, min(i + batch, n_logits))))
                                 for i in range(0, n_logits, batch)])
    total = min(run.n_features, most)
    rows = np.zeros((total, logit_rows.shape[1]), np.float32)
    order: list[int] = []
    seen = np.zeros(run.n_features, bool)
    while len(order) < total:
        k = min(batch, total - len(order))
        if run.n_features <= most:
            pending = list(range(len(order), len(order) + k))
        else:
            score = _partial_influence(logit_rows, rows[:len(order)], order, probs, run.n_features)
            score[seen] = -np.inf
            pending = [int(i) for i in np.argsort(-score, kind="stable")[:k]]
        rows[len(order):len(order) + k] = run_batch(pending, [])
        order += pending
        seen[pending] = True
    return logit_rows, rows, np.asarray(order, np.int64)


def _partial_influence(logit_rows: np.ndarray, rows: np.ndarray, order: list[int], probs: np.ndarray,
                       n_features: int) -> np.ndarray:
    """Influence on the logits of every active feature through the rows known so far."""
    v = probs @ gp.normalise(logit_rows)
    norm = np.abs(rows)  # float32: this is the largest array of the method
    norm /= np.maximum(norm.sum(1, keepdims=True), np.finfo(np.float32).tiny)
    total = np.zeros_like(v)
    for _ in range(len(order) + 1):
        if not v.any():
            break
        total += v
        v = v[order] @ norm if order else np.zeros_like(v)
    return total[:n_features]


def attribution_graph(model: Any, prompt: str, *, transcoders: Any, max_feature_nodes: int = 2048,
                      batch_size: int = 32, max_logits: int = 10, logit_probability: float = 0.95,
                      progress: bool = True) -> AttributionGraph:
    """The attribution graph of ``prompt`` through ``transcoders`` (one per MLP layer: a dict
    {layer: SAE} such as `mechscope.sae.embedded_transcoders` returns, or a list).

    Logit nodes: the top tokens until ``logit_probability`` is covered (at most ``max_logits``).
    At most ``max_feature_nodes`` features get rows (chosen greedily by influence on the logits
    when more are active; the others are left out of the graph). ``batch_size`` targets share
    one backward pass. Memory: about 4 x (max_feature_nodes + L) x (active features + (layers
    + 1) x positions) bytes for the rows, plus one replacement pass of ``batch_size`` copies.
    Returns the unpruned `AttributionGraph` (n = features + layers x positions + positions + L).

    >>> import mechscope
    >>> from mechscope.sae import SAE
    >>> model = mechscope.tiny_model("llama")
    >>> tcs = [SAE.random(64, 16, kind="transcoder", architecture="topk", k=2, layer=l) for l in range(2)]
    >>> g = attribution_graph(model, "a b c", transcoders=tcs, max_feature_nodes=5, progress=False)
    >>> g.node_kind.count("feature"), g.node_kind.count("error"), g.node_kind.count("embedding"), g.n_active
    (5, 6, 3, 12)
    """
    from ..progress import progress as bar_of

    model = check_model(model, "attribution_graph")
    check_family(model, "attribution_graph")
    if model.remote:
        raise InputError("attribution_graph runs the model locally (it needs many backward passes): load the "
                         "model without remote= for it.")
    ids = model.to_tokens(prompt)
    tcs = check_transcoders(model, transcoders, "attribution_graph")
    most, batch, n_logit, cover = _check_options(max_feature_nodes, batch_size, max_logits, logit_probability,
                                                 progress)
    run = forward(model, ids, tcs)
    logit_ids, probs, directions = _logit_nodes(run.logits, cover, n_logit)
    with frozen_parameters(model), bar_of(total=len(logit_ids) + min(run.n_features, most), desc="attribution graph",
                                          unit="row", enabled=progress) as bar:
        compute = direct_effects(model, run, tcs, batch)
        logit_rows, rows, order = _visit(compute, run, tcs, directions, probs, most, batch, bar)
    return _assemble(model, prompt, run, tcs, logit_ids, probs, logit_rows, rows, order)


def _assemble(model: Any, prompt: str, run: Forward, tcs: list[Any], logit_ids: np.ndarray, probs: np.ndarray,
              logit_rows: np.ndarray, rows: np.ndarray, order: np.ndarray) -> AttributionGraph:
    """The result: nodes in their order, adjacency restricted to the kept features' columns."""
    sort = np.argsort(order, kind="stable")
    chosen = order[sort]
    n_other = rows.shape[1] - run.n_features
    cols = np.concatenate([chosen, run.n_features + np.arange(n_other)])
    s, n_logit = chosen.size, logit_ids.size
    n = s + n_other + n_logit
    adjacency = np.zeros((n, n), np.float32)
    adjacency[:s, :s + n_other] = rows[sort][:, cols]
    adjacency[s + n_other:, :s + n_other] = logit_rows[:, cols]
    table = node_table(model, run, tcs, chosen, logit_ids, probs)
    w = np.zeros(n)
    w[s + n_other:] = probs
    is_error = np.array([k == "error" for k in table["kind"]], bool)
    is_embedding = np.array([k == "embedding" for k in table["kind"]], bool)
    is_feature = np.array([k == "feature" for k in table["kind"]], bool)
    rep, comp = gp.scores(adjacency, w, is_error, is_embedding)
    effect = gp.linear_effects(adjacency, table["activation"], is_feature, s + n_other)
    effect[s + n_other:] = np.nan
    tokens = tuple(model.decode_tokens(run.ids))
    return AttributionGraph(prompt, tokens, model.n_layers, tuple(table["kind"]), table["layer"], table["position"],
                            table["feature"], table["activation"], tuple(table["label"]), tuple(table["summary"]),
                            effect, adjacency, tuple(model.decode_tokens(logit_ids)), logit_ids.astype(np.int64),
                            probs.astype(np.float64), rep, comp, run.n_features)


__all__ = ["AttributionGraph", "attribution_graph"]
