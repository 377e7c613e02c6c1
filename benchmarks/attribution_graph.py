"""Attribution graph of a 12-token prompt on the embedded SmolLM2-135M-Instruct with the embedded
TopK transcoders (1024 x k32) at all 30 MLP layers (`mechscope.sae.embedded_transcoders`),
at most 2,048 feature nodes: wall time and peak RSS of `mechscope.circuits.attribution_graph`
(one real forward, one replacement pass of ``--batch`` copies, one backward pass per batch of
targets, greedy feature selection), of loading the transcoders and of pruning; the graph's
replacement / completeness scores (unpruned and pruned) and the nodes that carry most to the
" Texas" logit
(direct effects in the pruned graph) and the features whose zeroing moves the top logit most.

The transcoders must be cached (building them takes ~15-30 min on 2 cores): the benchmark
refuses to build them. ``--cache-dir`` points at another build's folder; ``--random`` uses
untrained random transcoders of the same shapes instead (timing and memory only: the scores
and nodes then mean nothing, and say so). Not a test: numbers depend on the machine and on what
else runs on it.

Usage: ``python benchmarks/attribution_graph.py [--cache-dir DIR | --random] [--max-features 2048]
[--batch 32]``; writes build/bench/attribution_graph.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mechscope  # noqa: E402
from mechscope.circuits.attribution_graph import AttributionGraph, attribution_graph  # noqa: E402
from mechscope.sae import SAE  # noqa: E402
from mechscope.sae import transcoders as tc  # noqa: E402

PROMPT = "Dallas is a very large city in the US state of"
TARGET = " Texas"


def rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_transcoders(model, cache_dir: Path | None, random: bool) -> tuple[dict[int, SAE], str]:
    """The 30 transcoders: cached ones (never built here) or random ones of the same shapes."""
    if random:
        cfg = tc.CONFIG
        return ({layer: SAE.random(model.d_model, cfg["d_sae"], kind="transcoder", architecture="topk", k=cfg["k"],
                                   layer=layer, seed=layer) for layer in range(model.n_layers)}, "random")
    root = tc.default_dir() if cache_dir is None else cache_dir
    manifest = root / tc.MANIFEST
    have = sorted(int(k) for k in json.loads(manifest.read_text())["layers"]) if manifest.is_file() else []
    if have != list(range(model.n_layers)):
        raise SystemExit(f"{root} holds transcoders for layers {have}, not all {model.n_layers}: build them first "
                         "(python -m mechscope.sae.transcoders, ~15-30 min) or pass --random for timing only.")
    return tc.embedded_transcoders(model, progress=False, cache_dir=root), str(root)


def top_nodes(g: AttributionGraph, token: str, n: int = 8) -> list[dict[str, object]]:
    """The nodes with the largest direct effect on ``token``'s logit (and their linearised effect)."""
    if token not in g.logit_tokens:
        return []
    row = g.adjacency[g.node_kind.index("logit") + g.logit_tokens.index(token)]
    order = np.argsort(-np.abs(row), kind="stable")[:n]
    return [{"label": g.node_label[i], "direct": round(float(row[i]), 4), "effect": round(float(g.node_effect[i]), 4),
             "summary": g.node_summary[i]} for i in order if row[i] != 0]


def top_features(g: AttributionGraph, n: int = 8) -> list[dict[str, object]]:
    """The feature nodes whose zeroing moves the top logit most (linearised ``node_effect``)."""
    feats = [i for i, k in enumerate(g.node_kind) if k == "feature"]
    order = sorted(feats, key=lambda i: -abs(float(g.node_effect[i])))[:n]
    return [{"label": g.node_label[i], "effect": round(float(g.node_effect[i]), 4), "summary": g.node_summary[i]}
            for i in order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--random", action="store_true", help="random transcoders: timing and memory only")
    ap.add_argument("--max-features", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = mechscope.load()
    n_tokens = len(model.str_tokens(PROMPT))
    assert n_tokens == 12, n_tokens
    rss_model = rss_mb()
    start = time.perf_counter()
    tcs, source = load_transcoders(model, args.cache_dir, args.random)
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    start = time.perf_counter()
    g = attribution_graph(model, PROMPT, transcoders=tcs, max_feature_nodes=args.max_features,
                          batch_size=args.batch, progress=True)
    graph_s = time.perf_counter() - start
    rss_graph = rss_mb()
    start = time.perf_counter()
    p = g.prune()
    prune_s = time.perf_counter() - start
    start = time.perf_counter()
    data = p.graph_data()
    view_s = time.perf_counter() - start
    out = {"prompt": PROMPT, "tokens": n_tokens, "transcoders": source, "threads": torch.get_num_threads(),
           "batch": args.batch, "max_feature_nodes": args.max_features, "active_features": g.n_active,
           "nodes": g.n_nodes, "edges": g.n_edges, "pruned_nodes": p.n_nodes, "pruned_edges": p.n_edges,
           "logits": dict(zip(g.logit_tokens, np.round(g.logit_probabilities, 4).tolist(), strict=True)),
           "load_transcoders_s": round(load_s, 2), "attribution_graph_s": round(graph_s, 2),
           "prune_s": round(prune_s, 2), "graph_data_s": round(view_s, 3), "graph_data_nodes": data.n_nodes,
           "peak_rss_mb": {"model": round(rss_model), "with_transcoders": round(rss_loaded), "after_graph": round(rss_graph)},
           "scores": {"replacement": round(g.replacement_score, 4), "completeness": round(g.completeness_score, 4),
                      "pruned_replacement": round(p.replacement_score, 4),
                      "pruned_completeness": round(p.completeness_score, 4)},
           "coverage": p.coverage, "meaningful": source != "random",
           "top_nodes_texas": top_nodes(p, TARGET), "top_features_by_effect": top_features(p)}
    path = REPO / "build" / "bench" / "attribution_graph.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
