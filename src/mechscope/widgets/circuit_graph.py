"""`CircuitGraph`: a layered graph of a circuit or an attribution graph; click a node to ablate it.

Nodes sit in rows (layers, input at the bottom) and columns (token positions for attribution
graphs, head indices for component circuits); edges are drawn with width and colour by their
signed weight (the diverging scale of ``js/lib/colors.ts``). Hover a node for its summary; click
it to see the metric change when it is ablated: live, ``ablate([node_id])`` runs in a background
thread (the callable comes from the intervention layer; the widget never sees a model);
offline, the precomputed ``node_effect`` answers. Shift-click or drag selects nodes; "group"
makes a supernode of the selection (one box), ablated together live (offline: the sum of its
nodes' single effects, labelled as such). A slider hides edges below an absolute weight.

Wire format: every number as a binary array through the codec (sent once); the node ids,
labels, summaries and row / column labels as lists of strings (rendered as text only).

>>> import numpy as np
>>> data = GraphData(node_id=["in", "L0H1", "out"], node_label=["input", "L0H1", "logits"],
...                  node_layer=[0, 1, 2], node_column=[0, 1, 0], node_kind=["input", "head", "logit"],
...                  node_summary=["", "a head", ""], node_effect=[np.nan, -0.5, np.nan],
...                  edge_src=[0, 1], edge_dst=[1, 2], edge_weight=[0.3, -1.2], metric_name="logit diff")
>>> w = CircuitGraph(data)
>>> w.live, w.n_nodes, w.n_edges, w.effect(["L0H1"])
(False, 3, 2, -0.5)
>>> print(w.summary().splitlines()[0])
CircuitGraph '': 3 nodes (1 input, 1 head, 1 logit) in 3 rows, 2 edges (|weight| 0.3..1.2); offline
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import traitlets as t

from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from ._cell_pause import PAUSE_TIMEOUT, CellPause
from .requests import Requests
from .traits import ArrayTrait

#: The node kinds, in the order their codes (``kind`` array) index.
NODE_KINDS = ("input", "head", "mlp", "feature", "error", "embedding", "logit", "kv")

#: At most this many nodes and edges.
MAX_NODES = 20_000
MAX_EDGES = 200_000

#: ``ablate(node_ids) -> float``: the metric change when those nodes are ablated together.
Ablate = Callable[[list[str]], float]

#: Longest a cell start waits for a running ablation to finish (seconds).


def _strings(name: str, values: Any, n: int | None) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InputError(f"{name} must be a list of strings, got {type(values).__name__}.")
    out = tuple(values)
    bad = [i for i, s in enumerate(out) if not isinstance(s, str)]
    if bad:
        raise InputError(f"{name}[{bad[0]}] must be a string, got {type(out[bad[0]]).__name__}.")
    if n is not None and len(out) != n:
        raise InputError(f"{name} has {len(out)} entries but node_id has {n}: give one per node.")
    return out


def _numbers(name: str, values: Any, n: int, dtype: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers ({what}), got {type(values).__name__}.") from None
    if arr.shape != (n,):
        raise InputError(f"{name} must have shape ({n},) ({what}), got {arr.shape}.")
    if dtype is not np.float64 and np.any(arr != np.round(arr)):
        raise InputError(f"{name} must be whole numbers ({what}).")
    return arr.astype(dtype)


def _non_finite(name: str, arr: np.ndarray, allow_nan: bool, fix: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr) & ~(np.isnan(arr) if allow_nan else False))
    if bad.size:
        raise InputError(f"{name} is {'infinite' if allow_nan else 'NaN or infinite'} at {bad.size} entries "
                         f"(first: {bad[:5].tolist()}); {fix}.")


@dataclass(frozen=True)
class GraphData:
    """The nodes and edges a `CircuitGraph` draws (validated; arrays are made numpy).

    Nodes (n,): ``node_id`` (unique), ``node_label`` (shown), ``node_layer`` (int row, 0 at the
    bottom), ``node_column`` (x position), ``node_kind`` (one of `NODE_KINDS`), ``node_summary``
    (hover text), ``node_effect`` (the precomputed metric change when the node alone is
    ablated; NaN for none). Edges (m,): ``edge_src`` / ``edge_dst`` (node indices),
    ``edge_weight`` (signed, finite). ``row_labels`` name the rows (default ``L0``...),
    ``column_labels`` the integer columns (e.g. tokens); every string is untrusted text.

    >>> GraphData(["a", "b"], ["a", "b"], [0, 1], [0, 0], ["input", "mlp"], ["", ""], [0.1, 0.2],
    ...           [0], [2], [1.0])
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: edge 0 goes 0 -> 2, but there are 2 nodes (indices 0..1): fix edge_src / edge_dst.
    """

    node_id: Any
    node_label: Any
    node_layer: Any
    node_column: Any
    node_kind: Any
    node_summary: Any
    node_effect: Any
    edge_src: Any
    edge_dst: Any
    edge_weight: Any
    title: str = ""
    metric_name: str = "metric"
    row_labels: Any = ()
    column_labels: Any = ()
    _kind_codes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = _strings("node_id", self.node_id, None)
        n = len(ids)
        if not 0 < n <= MAX_NODES:
            raise InputError(f"a graph needs 1..{MAX_NODES} nodes, got {n}.")
        if len(set(ids)) != n:
            dup = next(s for i, s in enumerate(ids) if s in ids[:i])
            raise InputError(f"node_id must be unique; {dup!r} appears more than once.")
        kinds = _strings("node_kind", self.node_kind, n)
        bad = [k for k in kinds if k not in NODE_KINDS]
        if bad:
            raise InputError(f"node_kind {bad[0]!r} is not one of {NODE_KINDS}.")
        layer = _numbers("node_layer", self.node_layer, n, np.int64, "one row per node")
        if layer.min() < 0:
            raise InputError(f"node_layer must be >= 0 (rows count up from the input), got {int(layer.min())}.")
        column = _numbers("node_column", self.node_column, n, np.float64, "one x position per node")
        _non_finite("node_column", column, False, "give every node a finite position")
        effect = _numbers("node_effect", self.node_effect, n, np.float64, "one metric change per node, NaN for none")
        _non_finite("node_effect", effect, True, "use NaN for a node without a precomputed effect")
        src = np.asarray(self.edge_src)
        m = src.size
        if m > MAX_EDGES:
            raise InputError(f"{m} edges; CircuitGraph draws at most {MAX_EDGES}: filter the weakest out first.")
        src = _numbers("edge_src", src.reshape(-1) if src.ndim else src, m, np.int64, "one source node per edge")
        dst = _numbers("edge_dst", self.edge_dst, m, np.int64, "one target node per edge, like edge_src")
        weight = _numbers("edge_weight", self.edge_weight, m, np.float64, "one weight per edge, like edge_src")
        _non_finite("edge_weight", weight, False, "every edge needs a finite weight: drop or fill those edges")
        out = np.flatnonzero((src < 0) | (src >= n) | (dst < 0) | (dst >= n))
        if out.size:
            e = int(out[0])
            raise InputError(f"edge {e} goes {int(src[e])} -> {int(dst[e])}, but there are {n} nodes "
                             f"(indices 0..{n - 1}): fix edge_src / edge_dst.")
        rows = _strings("row_labels", self.row_labels, None) or tuple(f"L{r}" for r in range(int(layer.max()) + 1))
        if len(rows) <= layer.max():
            raise InputError(f"row_labels has {len(rows)} names but node_layer goes up to {int(layer.max())}: "
                             "name every row (or pass none for L0, L1, ...).")
        values = {"node_id": ids, "node_label": _strings("node_label", self.node_label, n), "node_layer": layer,
                  "node_column": column, "node_kind": kinds, "node_summary": _strings("node_summary", self.node_summary, n),
                  "node_effect": effect, "edge_src": src, "edge_dst": dst, "edge_weight": weight,
                  "title": str(self.title), "metric_name": str(self.metric_name), "row_labels": rows,
                  "column_labels": _strings("column_labels", self.column_labels, None),
                  "_kind_codes": np.array([NODE_KINDS.index(k) for k in kinds], np.uint8)}
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def n_nodes(self) -> int:
        return len(self.node_id)

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.size)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per node: ``id``, ``label``, ``layer``, ``column``, ``kind``, ``effect``."""
        import pandas as pd

        return pd.DataFrame({"id": self.node_id, "label": self.node_label, "layer": self.node_layer,
                             "column": self.node_column, "kind": self.node_kind, "effect": self.node_effect})


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class CircuitGraph(CellPause, Requests, MechscopeWidget):
    """A `GraphData` drawn as a layered graph; ``ablate`` (optional, see `Ablate`) makes clicks live.

    Requests from the front end: ``{"kind": "ablate", "id", "nodes": [node indices]}``, answered
    in ``answer``; `request` does the same from Python, `wait` waits for it, `effect` reads it.

    >>> import mechscope.widgets.circuit_graph as cg
    >>> data = cg.GraphData(["a", "b"], ["a", "b"], [0, 1], [0, 0], ["input", "mlp"], ["", ""],
    ...                     [float("nan"), 0.25], [0], [1], [0.5])
    >>> w = cg.CircuitGraph(data, ablate=lambda ids: -1.0 * len(ids))
    >>> seq = w.request(["a", "b"]); w.wait(10)
    True
    >>> w.answer["state"], w.answer["value"], w.effect(["b", "a"])
    ('done', -2.0, -2.0)
    >>> w.close()
    """

    _esm = STATIC / "circuit_graph.js"
    _request_handlers = {"ablate": "_on_ablate"}  # noqa: RUF012 - read only

    node_layer = ArrayTrait("int32")
    """Encoded int32 (n,) each node's row (0 at the bottom)."""
    node_column = ArrayTrait("float32")
    """Encoded float32 (n,) each node's x position (token position, head index...)."""
    node_kind = ArrayTrait("uint8")
    """Encoded uint8 (n,) each node's kind, an index into ``kinds``."""
    node_effect = ArrayTrait("float32")
    """Encoded float32 (n,) the precomputed metric change of ablating each node alone (NaN: none)."""
    edge_src = ArrayTrait("int32")
    """Encoded int32 (m,) each edge's source node."""
    edge_dst = ArrayTrait("int32")
    """Encoded int32 (m,) each edge's target node."""
    edge_weight = ArrayTrait("float32")
    """Encoded float32 (m,) each edge's signed weight."""
    node_ids = t.List(t.Unicode()).tag(sync=True)
    """The node ids (what ``ablate`` receives)."""
    node_labels = t.List(t.Unicode()).tag(sync=True)
    """The node labels (drawn as text)."""
    node_summaries = t.List(t.Unicode()).tag(sync=True)
    """Each node's hover summary (shown as text)."""
    kinds = t.List(t.Unicode(), default_value=list(NODE_KINDS)).tag(sync=True)
    """The node kinds ``node_kind`` indexes."""
    row_labels = t.List(t.Unicode()).tag(sync=True)
    """One name per row."""
    column_labels = t.List(t.Unicode()).tag(sync=True)
    """Names of the integer columns (tokens, heads)."""
    title = t.Unicode("").tag(sync=True)
    """Title above the graph."""
    metric_name = t.Unicode("metric").tag(sync=True)
    """What an effect is a change of ("logit diff")."""
    min_weight = t.Float(0.0).tag(sync=True)
    """Edges whose absolute weight is below this are hidden (the slider)."""
    selected = t.List(t.Int()).tag(sync=True)
    """The selected node indices."""
    groups = t.List(t.List(t.Int())).tag(sync=True)
    """Supernodes: lists of node indices (made by the "group" button, or from Python)."""
    live = t.Bool(False).tag(sync=True)
    """Whether an ``ablate`` callable answers clicks (False offline: precomputed effects)."""
    answer = t.Dict().tag(sync=True)
    """The newest ablation request: {seq, client_id, nodes, state, value, message}; state is
    "running", "done" or "error"."""

    def __init__(self, data: GraphData, ablate: Ablate | None = None, *, min_weight: float = 0.0) -> None:
        if not isinstance(data, GraphData):
            raise InputError(f"CircuitGraph takes a GraphData (mechscope.widgets.circuit_graph.GraphData), got "
                             f"{type(data).__name__}.")
        if ablate is not None and not callable(ablate):
            raise InputError(f"ablate must be callable (node_ids: list[str]) -> float, got {ablate!r}.")
        self._data = data
        self._ablate = ablate
        self._index = {s: i for i, s in enumerate(data.node_id)}
        self._cache: dict[tuple[int, ...], float] = {}
        self._cv = threading.Condition()
        self._seq = 0
        self._pending: tuple[int, int | None, tuple[int, ...]] | None = None
        self._running = False
        self._paused = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self._hooks: Any = None
        super().__init__(node_layer=data.node_layer, node_column=data.node_column, node_kind=data._kind_codes,
                         node_effect=data.node_effect, edge_src=data.edge_src, edge_dst=data.edge_dst,
                         edge_weight=data.edge_weight, node_ids=list(data.node_id), node_labels=list(data.node_label),
                         node_summaries=list(data.node_summary), row_labels=list(data.row_labels),
                         column_labels=list(data.column_labels), title=data.title, metric_name=data.metric_name,
                         min_weight=float(min_weight), live=ablate is not None)
        self._listen_for_requests()
        if ablate is not None:
            self._register_cell_hooks()

    @property
    def data(self) -> GraphData:
        return self._data

    @property
    def n_nodes(self) -> int:
        return self._data.n_nodes

    @property
    def n_edges(self) -> int:
        return self._data.n_edges

    def _nodes(self, nodes: Any) -> tuple[int, ...]:
        """Node ids or indices as sorted unique indices."""
        if isinstance(nodes, (str, int)):
            nodes = [nodes]
        out = set()
        for x in nodes:
            if isinstance(x, str) and x in self._index:
                out.add(self._index[x])
            elif isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x < self.n_nodes:
                out.add(int(x))
            else:
                raise InputError(f"{x!r} is not a node of this graph: give node ids (e.g. "
                                 f"{self._data.node_id[0]!r}) or indices 0..{self.n_nodes - 1}.")
        if not out:
            raise InputError("give at least one node to ablate.")
        return tuple(sorted(out))

    def effect(self, nodes: Any) -> float | None:
        """The metric change of ablating ``nodes`` (ids or indices) together: computed live, or
        a single node's precomputed effect; None when neither is known."""
        key = self._nodes(nodes)
        with self._cv:
            if key in self._cache:
                return self._cache[key]
        return _finite_or_none(float(self._data.node_effect[key[0]])) if len(key) == 1 else None

    def request(self, nodes: Any, *, client_id: int | None = None) -> int:
        """Ask for the effect of ablating ``nodes`` together without blocking; returns its
        sequence number. Answered in ``answer`` (at once when cached, else by the background
        thread); call `wait` before using the model in the same cell."""
        key = self._nodes(nodes)
        if self._ablate is None:
            raise InputError("this CircuitGraph has no ablate callable, so only the precomputed single-node "
                             "effects (node_effect) can be shown; pass ablate= for live ablation.")
        with self._cv:
            if self._closed:
                raise InputError("this CircuitGraph is closed; make a new one.")
            self._seq += 1
            if key in self._cache:
                self._publish(self._seq, client_id, key, "done", self._cache[key])
            else:
                self._pending = (self._seq, client_id, key)
                self._publish(self._seq, client_id, key, "running")
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._run, name="mechscope-circuit-graph", daemon=True)
                    self._worker.start()
            self._cv.notify_all()
            return self._seq

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no ablation is pending or running; False if ``timeout`` ran out first."""
        with self._cv:
            was, self._paused = self._paused, False
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: self._pending is None and not self._running, timeout=timeout)
            finally:
                self._paused = was

    def close(self) -> None:
        """Stop the background thread and close the widget."""
        if hasattr(self, "_cv"):
            with self._cv:
                self._closed, self._pending = True, None
                self._cv.notify_all()
            if self._worker is not None and self._worker is not threading.current_thread():
                self._worker.join(timeout=PAUSE_TIMEOUT)
            self._unregister_cell_hooks()
        super().close()

    # ---- representations ---------------------------------------------------------------
    def summary(self) -> str:
        d = self._data
        counts = ", ".join(f"{int((d._kind_codes == k).sum())} {name}" for k, name in enumerate(NODE_KINDS)
                           if (d._kind_codes == k).any())
        aw = np.abs(d.edge_weight)
        wr = f" (|weight| {aw.min():.3g}..{aw.max():.3g})" if aw.size else ""
        mode = "live: a click ablates the node in the kernel" if self.live else "offline"
        lines = [f"CircuitGraph {self.title!r}: {d.n_nodes} nodes ({counts}) in {len(d.row_labels)} rows, "
                 f"{d.n_edges} edges{wr}; {mode}"]
        eff = d.node_effect
        if np.isfinite(eff).any():
            order = [int(i) for i in np.argsort(-np.abs(np.nan_to_num(eff, nan=0.0)), kind="stable")
                     if np.isfinite(eff[i])][:5]
            lines.append(f"top nodes by |{d.metric_name} change| when ablated: "
                         + ", ".join(f"{d.node_label[i]!r} {eff[i]:+.4g}" for i in order))
        else:
            strength = np.zeros(d.n_nodes)
            np.add.at(strength, d.edge_src, aw)
            np.add.at(strength, d.edge_dst, aw)
            order = [int(i) for i in np.argsort(-strength, kind="stable")[:5]]
            lines.append("top nodes by total |edge weight|: "
                         + ", ".join(f"{d.node_label[i]!r} {strength[i]:.4g}" for i in order))
        if self.groups:
            lines.append(f"{len(self.groups)} supernodes: "
                         + "; ".join("+".join(d.node_label[i] for i in g[:4]) for g in self.groups[:3]))
        return "\n".join(lines)

    @classmethod
    def offline_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """The offline snapshot: no kernel, clicks answer from ``node_effect``."""
        state["live"] = False
        state["answer"] = {}
        return state

    # ---- internals ---------------------------------------------------------------------
    def _publish(self, seq: int, client_id: int | None, key: tuple[int, ...], state: str,
                 value: float | None = None, message: str = "") -> None:
        """Publish a request's state when it is the newest one (call under the lock)."""
        if seq != self._seq or self._closed:
            return
        self.answer = {"seq": seq, "client_id": client_id, "nodes": list(key), "state": state,
                       "value": value, "message": message}

    def _on_ablate(self, content: dict[str, Any], client_id: int | None) -> None:
        """A {"kind": "ablate", "id", "nodes"} request; answered in ``answer``."""
        nodes = content.get("nodes")
        try:
            self.request(nodes if isinstance(nodes, list) else [], client_id=client_id)
        except InputError as err:
            with self._cv:
                self._seq += 1
                self._publish(self._seq, client_id, (), "error", None, str(err))

    def _run(self) -> None:
        assert self._ablate is not None
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or (self._pending is not None and not self._paused))
                if self._closed:
                    return
                assert self._pending is not None
                (seq, client_id, key), self._pending = self._pending, None
                self._running = True
            value, message = None, ""
            try:
                value = float(self._ablate([self._data.node_id[i] for i in key]))
            except Exception as err:  # noqa: BLE001 - reported to the front end, the thread survives
                message = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
            with self._cv:
                if value is not None:
                    self._cache[key] = value
                self._publish(seq, client_id, key, "done" if value is not None else "error",
                              _finite_or_none(value) if value is not None else None, message)
                self._running = False
                self._cv.notify_all()

    def _worker_busy(self) -> bool:
        return self._running
