"""Circuits: which edges between heads and MLPs carry a behaviour, scored over a dataset and checked by patching.

`edge_attribution` (EAP and EAP-IG scores for every edge of the `ComponentGraph`),
`EdgeScores.circuit` / `.random_circuit` (top edges pruned to what connects input to logits,
and the same-size baseline), `faithfulness` (the model run with every other edge replaced,
exactly) and `edge_patching` (exact single-edge effects, the reference the scores answer to);
`faithfulness_curve` (faithfulness against circuit size, methods and random baseline side by
side) and `edge_agreement` (Spearman of scores against exact patching on sampled edges).

>>> import mechscope
>>> mechscope.circuits.ComponentGraph.build(n_layers=30, n_heads=9, n_kv_heads=3).n_edges   # SmolLM2-135M
70651
"""

from .attribution import METHODS, EdgeScores, edge_attribution
from .attribution_graph import AttributionGraph, attribution_graph
from .circuit import Circuit, prune, select
from .curves import (
           EdgeAgreement,
           FaithfulnessCurve,
           edge_agreement,
           faithfulness_curve,
           sample_edges,
)
from .faithfulness import ABLATIONS, Faithfulness, edge_patching, faithfulness
from .graph import ComponentGraph
from .graph_ablation import graph_ablator
from .view import NodeEffects, circuit_ablator, circuit_graph_data, node_ablation_effects

__all__ = ["ABLATIONS", "METHODS", "AttributionGraph", "Circuit", "ComponentGraph", "EdgeAgreement", "EdgeScores", "Faithfulness",
           "FaithfulnessCurve", "NodeEffects", "attribution_graph", "circuit_ablator", "circuit_graph_data", "edge_agreement",
           "edge_attribution", "edge_patching", "faithfulness", "faithfulness_curve", "graph_ablator", "node_ablation_effects",
           "prune", "sample_edges", "select"]
