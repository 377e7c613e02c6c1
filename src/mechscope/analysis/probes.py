"""Linear probes per layer with a control task, and amnesic projection of a probe's direction.

`probe` trains one linear classifier per layer on activations (`mechscope.analysis.collect`
over a labelled dataset, or an `ActivationStore` already collected with one row per text) and
reports held-out accuracy with a bootstrap interval over the test examples
(`mechscope.stats.summarize`). ``kind="logistic"``: L2-regularised logistic regression
(softmax for more than two classes) fitted full-batch with torch's LBFGS in float64 (no
scikit-learn: it is not a dependency); ``kind="ridge"``: ridge regression on one-hot targets in
closed form, predicting the largest output.

The control task (Hewitt & Liang, 2019): every *word type* gets a random label drawn from the
label distribution, and the same probe is trained and tested on those labels; selectivity =
accuracy - control accuracy. The word type is ``word_types=`` (a metadata column name or one
string per text); by default the dataset's ``adjective`` column where it has one (`sentiment`),
else each text is its own type (then the control is chance by construction: held-out texts
were never seen; the result says which was used in ``control_unit``).

Features are centred and divided by one overall RMS scale (from the training rows), so a
probe's weight vector is a direction in the model's own residual coordinates.

>>> import mechscope
>>> from mechscope.datasets.labelled import labelled_texts
>>> model = mechscope.tiny_model("llama")
>>> data = labelled_texts(["animals", "code"], n_per_class=8)
>>> res = probe(model, data, layers=[0, 1])
>>> res.accuracy.shape, res.directions.shape == (2, model.d_model), res.control_unit
((2,), True, 'text')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..stats import summarize
from ..validate import check_model
from .directions import features, labelled
from .store import ActivationStore

KINDS = ("logistic", "ridge")


def split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) indices: per class ``round(n * test_fraction)`` held out (>= 1, and
    >= 2 left to train on).

    >>> tr, te = split(np.array([0] * 4 + [1] * 8), 0.25, 0)
    >>> len(tr), len(te), sorted(set(tr) | set(te)) == list(range(12))
    (9, 3, True)
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float | int) or not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be a number between 0 and 1, got {test_fraction!r}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(max(1, round(len(idx) * test_fraction)), len(idx) - 2)
        test.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return np.array(sorted(train)), np.array(sorted(test))


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, kind: str, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (classes, width) and bias (classes,) of one linear probe on rows ``x`` (n, width).

    Logistic, two classes: minimises mean log-loss + ``l2/2 |w|^2`` for class 1 (class 0 has zero
    weights); more classes: softmax cross-entropy + ``l2/2 |W|^2``. Ridge: least squares on
    one-hot targets + ``l2 |W|^2`` (closed form on centred data). Biases are not penalised.

    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> w, b = fit(x, y, 2, "logistic", 1e-3)
    >>> bool(w[1, 0] > 0 and w[0, 0] == 0), predict(x, w, b).tolist()
    (True, [0, 0, 1, 1])
    """
    n, d = x.shape
    if kind == "ridge":
        target = np.eye(n_classes)[y]
        mx, my = x.mean(0), target.mean(0)
        xc = x - mx
        w = np.linalg.solve(xc.T @ xc + l2 * np.eye(d), xc.T @ (target - my))
        return w.T, my - mx @ w
    # The L2 solution's weights lie in the span of the centred rows: fit in that basis (exact).
    mx = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mx, full_matrices=False)
    basis = vt[sv > sv[0] * 1e-10] if sv.size and sv[0] > 0 else np.zeros((0, d))
    a = np.hstack([(x - mx) @ basis.T, np.ones((n, 1))])                  # (n, r + 1)
    theta = _newton(a, y, n_classes, l2)                                 # (free classes, r + 1)
    w, b = theta[:, :-1] @ basis, theta[:, -1] - theta[:, :-1] @ basis @ mx
    if n_classes == 2:
        return np.stack([np.zeros(d), w[0]]), np.array([0.0, b[0]])
    return w, b


def _full_logits(a: np.ndarray, theta: np.ndarray, k: int) -> np.ndarray:
    z = a @ theta.T
    return np.hstack([np.zeros((len(a), 1)), z]) if k == 2 else z


def _objective(a: np.ndarray, onehot: np.ndarray, theta: np.ndarray, k: int, l2: float) -> float:
    z = _full_logits(a, theta, k)
    zmax = z.max(1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(1, keepdims=True))
    return float(-(onehot * logp).sum(1).mean() + 0.5 * l2 * (theta[:, :-1] ** 2).sum())


def _newton(a: np.ndarray, y: np.ndarray, k: int, l2: float, max_iter: int = 100) -> np.ndarray:
    """Damped Newton on mean cross-entropy + ``l2/2 |weights|^2`` (biases unpenalised).
    Two classes: one free logit (class 0's is 0); more: one per class."""
    n, m = a.shape
    free = 1 if k == 2 else k
    onehot = np.eye(k)[y]
    theta = np.zeros((free, m))
    reg = np.tile(np.r_[np.full(m - 1, l2), 1e-10], free)
    for _ in range(max_iter):
        z = _full_logits(a, theta, k)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        r = (p - onehot)[:, k - free:] / n                                  # (n, free)
        pf = p[:, k - free:]
        grad = (r.T @ a).ravel() + reg * theta.ravel() * (reg > 1e-9)
        hess = np.empty((free * m, free * m))
        for c in range(free):
            for e in range(free):
                wgt = pf[:, c] * ((c == e) - pf[:, e]) / n
                hess[c * m:(c + 1) * m, e * m:(e + 1) * m] = a.T @ (a * wgt[:, None])
        step = np.linalg.solve(hess + np.diag(reg), grad).reshape(free, m)
        f0, t = _objective(a, onehot, theta, k, l2), 1.0
        while t > 1e-8 and _objective(a, onehot, theta - t * step, k, l2) > f0 - 1e-4 * t * float(grad @ step.ravel()):
            t /= 2
        theta = theta - t * step
        if np.abs(t * step).max() < 1e-10:
            break
    return theta


def predict(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Predicted class per row: argmax of ``x @ w.T + b`` (x: (n, width), w: (classes, width)).

    >>> predict(np.array([[1.0], [-1.0]]), np.array([[0.0], [1.0]]), np.zeros(2)).tolist()
    [1, 0]
    """
    return np.asarray(np.argmax(x @ w.T + b, axis=1))


def control_labels(types: list[str], y: np.ndarray, seed: int) -> np.ndarray:
    """A random class per word type (drawn from ``y``'s class frequencies), one per example.

    >>> control_labels(["a", "b", "a"], np.array([0, 1, 1]), 0).tolist()[0] == control_labels(["a", "b", "a"], np.array([0, 1, 1]), 0).tolist()[2]
    True
    """
    rng = np.random.default_rng(seed + 1)
    freq = np.bincount(y) / len(y)
    unique = sorted(set(types))
    for _ in range(100):
        mapping = dict(zip(unique, rng.choice(len(freq), size=len(unique), p=freq).tolist(), strict=True))
        out = np.array([mapping[t] for t in types], dtype=np.int64)
        if len(np.unique(out)) > 1:
            return out
    return out


@dataclass(frozen=True)
class ProbeResult:
    """One linear probe per layer: held-out accuracy, its control task, and the directions.

    Per layer (arrays of shape (layers,)): ``accuracy`` with its bootstrap interval
    ``ci_low``/``ci_high`` over the ``n_test`` held-out texts; ``control`` (accuracy on the
    control task, `probe`'s module docstring) with ``control_ci_low``/``control_ci_high``;
    ``selectivity = accuracy - control``. ``weights`` (layers, classes, width) and ``bias``
    (layers, classes) act on raw activations (`predict`); ``directions`` (layers, width) float32
    are unit vectors towards ``classes[-1]`` (its weights minus the mean over classes).
    ``correct`` (n_test, layers) is 1 where a test text was classified right; ``test_index``
    says which texts were held out; ``position`` which token was read ("last", "mean", an int,
    or a store's reduction).

    >>> import mechscope
    >>> from mechscope.datasets.labelled import labelled_texts
    >>> model = mechscope.tiny_model("llama")
    >>> res = probe(model, labelled_texts(["animals", "code"], n_per_class=8), layers=1)
    >>> list(res.to_pandas().columns)[:4], res.direction(1).layer
    (['layer', 'accuracy', 'ci_low', 'ci_high'], 1)
    """

    layers: tuple[int, ...]
    site: str
    kind: str
    classes: tuple[str, ...]
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    control: np.ndarray
    control_ci_low: np.ndarray
    control_ci_high: np.ndarray
    selectivity: np.ndarray
    directions: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    correct: np.ndarray
    test_index: np.ndarray
    n_train: int
    n_test: int
    control_unit: str
    model_name: str
    position: str | int = "last"

    def _row(self, layer: int) -> int:
        if layer not in self.layers:
            raise InputError(f"layer {layer} was not probed (probed layers: {list(self.layers)}).")
        return self.layers.index(layer)

    def direction(self, layer: int) -> Any:
        """The unit direction at ``layer`` as a `SteeringVector` (``vector`` (width,) float32)."""
        from ..interventions.steering import SteeringVector

        vec = self.directions[self._row(layer)].astype(np.float32)
        return SteeringVector(vector=vec, layer=int(layer), norm=float(np.linalg.norm(vec)), resid_norm=float("nan"),
                              positive=(self.classes[-1],), negative=tuple(self.classes[:-1]),
                              model_name=self.model_name)

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per layer: accuracy and interval, control and interval, selectivity."""
        import pandas as pd

        return pd.DataFrame({"layer": list(self.layers), "accuracy": self.accuracy, "ci_low": self.ci_low,
                             "ci_high": self.ci_high, "control": self.control,
                             "control_ci_low": self.control_ci_low, "control_ci_high": self.control_ci_high,
                             "selectivity": self.selectivity})

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap: rows probe and control, one column per layer, with the bootstrap intervals."""
        from ..widgets.heatmap import Heatmap

        return Heatmap(np.stack([self.accuracy, self.control]), row_labels=["probe", f"control ({self.control_unit})"],
                       col_labels=[f"L{lay}" for lay in self.layers],
                       ci_low=np.stack([self.ci_low, self.control_ci_low]),
                       ci_high=np.stack([self.ci_high, self.control_ci_high]),
                       ci_label=f"95% bootstrap CI, n={self.n_test} test texts",
                       title=f"{self.model_name}: {self.kind} probe of {' / '.join(self.classes)} on {self.site}",
                       value_label="held-out accuracy", colorscale="viridis", vmin=0.0, vmax=1.0)


def _train_test(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, k: int, kind: str,
                l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw-coordinate weights, bias, correct per test row): centred, one RMS scale."""
    mu = x[train].mean(0)
    scale = float(np.sqrt(((x[train] - mu) ** 2).mean())) or 1.0
    xs = (x - mu) / scale
    w, b = fit(xs[train], y[train], k, kind, l2 * len(train) if kind == "ridge" else l2)
    w_raw = w / scale
    b_raw = b - mu @ w_raw.T
    return w_raw, b_raw, (predict(x[test], w_raw, b_raw) == y[test]).astype(np.float64)


def probe(source: Model | ActivationStore, dataset: Any, *, labels: Any = None, layers: Any = None,
          site: str = "resid", kind: str = "logistic", position: str | int = "last",
          test_fraction: float = 0.25, seed: int = 0, l2: float = 1e-2, word_types: Any = None) -> ProbeResult:
    """Train and test a linear probe of ``dataset``'s labels at each of ``layers``.

    ``source``: a `Model` (activations collected now at ``site``, one row per text: its
    ``position`` "last", "mean" or an int token index) or an `ActivationStore` of the same texts
    with one row per text. ``dataset``: ``{label: [texts]}`` (`labelled_texts`), or texts / a
    dataset with ``labels=`` (see `labelled`; a `sentiment` dataset uses its ``sentiment``
    column). ``kind``: "logistic" or "ridge"; ``l2``: the penalty per example. A stratified
    ``test_fraction`` of each class is held out (``seed``). Everything is checked before any
    forward pass. Returns a `ProbeResult`.

    >>> import mechscope
    >>> from mechscope.datasets.generators import sentiment
    >>> model = mechscope.tiny_model("gpt2")
    >>> res = probe(model, sentiment(16, seed=1), layers=[0, -1], kind="ridge")
    >>> res.layers, res.control_unit, res.n_test
    ((0, 1), 'adjective', 4)
    >>> probe(model, {"a": ["x y"] * 4})
    Traceback (most recent call last):
    ...
    mechscope.errors.InputError: probe: every example has the label 'a': a probe needs at least two classes.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}.")
    if isinstance(l2, bool) or not isinstance(l2, int | float) or not np.isfinite(l2) or l2 <= 0:
        raise InputError(f"l2 must be a positive number, got {l2!r}.")
    data = labelled(dataset, labels, word_types)
    train, test = split(data.y, test_fraction, seed)
    if not isinstance(source, ActivationStore):
        check_model(source, "probe").check_layers(layers)
    chosen, feats, name = features(source, data.texts, site, layers, position)
    k = len(data.classes)
    ctrl_y = control_labels(data.word_types, data.y, seed)
    weights, biases, correct, ctrl = [], [], [], []
    for lay in chosen:
        w, b, ok = _train_test(feats[lay], data.y, train, test, k, kind, float(l2))
        weights.append(w)
        biases.append(b)
        correct.append(ok)
        ctrl.append(_train_test(feats[lay], ctrl_y, train, test, k, kind, float(l2))[2])
    acc, con = summarize(np.stack(correct, 1), seed=seed), summarize(np.stack(ctrl, 1), seed=seed)
    w_all = np.stack(weights)
    dirs = w_all[:, -1] - w_all.mean(1)
    dirs = dirs / np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-30)
    return ProbeResult(layers=tuple(chosen), site=site, kind=kind, classes=data.classes, accuracy=acc.mean,
                       ci_low=acc.ci_low, ci_high=acc.ci_high, control=con.mean, control_ci_low=con.ci_low,
                       control_ci_high=con.ci_high, selectivity=(acc.mean - con.mean).astype(np.float32),
                       directions=dirs.astype(np.float32), weights=w_all, bias=np.stack(biases),
                       correct=np.stack(correct, 1), test_index=test, n_train=len(train), n_test=len(test),
                       control_unit=data.control_unit, model_name=name,
                       position=position if not isinstance(source, ActivationStore) else source.reduce)


@dataclass(frozen=True)
class AmnesicResult:
    """What projecting a direction out of the residual after block ``layer`` changes (Elazar et al., 2021).

    ``probe_layers``: the probed layers at or after ``layer``; ``probe_before`` / ``probe_after``
    / ``probe_random`` (same length): the probes' accuracy on the evaluated texts without
    projection, with the direction projected out, and with a random unit direction projected
    out instead (the control). ``task_before`` / ``task_after`` / ``task_random``: the fraction
    of texts whose ``answer`` logit beats ``wrong`` at the last token (NaN without a
    `PromptPairs` dataset). ``n``: texts evaluated (the probe's held-out texts).

    >>> import mechscope
    >>> from mechscope.datasets.generators import sentiment
    >>> model = mechscope.tiny_model("llama")
    >>> data = sentiment(16, seed=1)
    >>> res = probe(model, data, layers=[0, 1])
    >>> amnesic = project_out(model, res, 0, data)
    >>> amnesic.probe_layers, float(amnesic.probe_after[0]) == float(amnesic.probe_after[0])
    ((0, 1), True)
    """

    layer: int
    probe_layers: tuple[int, ...]
    probe_before: np.ndarray
    probe_after: np.ndarray
    probe_random: np.ndarray
    task_before: float
    task_after: float
    task_random: float
    n: int

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per probed layer: probe accuracy before, after and with a random direction."""
        import pandas as pd

        return pd.DataFrame({"layer": list(self.probe_layers), "before": self.probe_before,
                             "after": self.probe_after, "random": self.probe_random})


def projected_run(model: Model, texts: list[str], direction: np.ndarray | None, layer: int,
                  read_layers: Sequence[int], answers: tuple[list[int], list[int]] | None = None,
                  batch_size: int = 16, progress: Callable[[int, int], Any] | None = None
                  ) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Run ``texts`` with ``h - (h . u) u`` written to ``model.at("resid", layer)`` at every token
    (u = ``direction`` normalised; None: no edit). Returns ({read layer: (texts, d_model) last-token
    residuals}, answer-minus-wrong logit per text or None). ``read_layers`` must be >= ``layer``.

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> u = np.eye(model.d_model)[0]
    >>> rows, _ = projected_run(model, ["a b c"], u, 0, [0])
    >>> abs(float(rows[0][0] @ u)) < 1e-5
    True
    """
    ref = model.at("resid", layer)
    reads = [model.at("resid", lay) for lay in read_layers]
    unembed = model.logits()
    dtype = model.hf.dtype if isinstance(model.hf.dtype, torch.dtype) else torch.float32
    u = None if direction is None else torch.as_tensor(direction / np.linalg.norm(direction), dtype=dtype)
    rows: dict[int, list[np.ndarray]] = {lay: [] for lay in read_layers}
    diffs: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        enc = model.encode(texts[start:start + batch_size])
        saved = []
        with model.trace(enc):
            if u is not None:
                h = ref.read()
                ref.write(h - (h @ u).unsqueeze(-1) * u)
            for r in reads:
                saved.append(save(r.read()[:, -1]))
            if answers is not None:
                logits = save(unembed.last())
        for lay, value in zip(read_layers, saved, strict=True):
            rows[lay].append(value.detach().float().numpy().astype(np.float64))
        if answers is not None:
            lo = logits.detach().float()
            idx = torch.arange(lo.shape[0])
            a = torch.as_tensor(answers[0][start:start + batch_size])
            b = torch.as_tensor(answers[1][start:start + batch_size])
            diffs.append((lo[idx, a] - lo[idx, b]).numpy())
        if progress is not None:
            progress(min(start + batch_size, len(texts)), len(texts))
    return {lay: np.concatenate(v) for lay, v in rows.items()}, np.concatenate(diffs) if diffs else None


def _direction(model: Model, direction: Any) -> np.ndarray:
    vec = getattr(direction, "vector", direction)
    try:
        out = np.asarray(vec, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"direction must be a SteeringVector or a (d_model,) array, got {direction!r}.") from None
    if out.shape != (model.d_model,) or not np.isfinite(out).all() or not np.linalg.norm(out) > 0:
        raise InputError(f"direction must be a finite, non-zero (d_model,) = ({model.d_model},) vector, got shape "
                         f"{out.shape}.")
    return out


def project_out(model: Model, result: ProbeResult, layer: int, dataset: Any, *, labels: Any = None,
                direction: Any = None, seed: int = 0, batch_size: int = 16, progress: Callable[[int, int], Any] | None = None) -> AmnesicResult:
    """Amnesic probing: project ``result.direction(layer)`` out of the residual after block
    ``layer`` (every token, through `projected_run`) on ``result``'s held-out texts of
    ``dataset`` (the one it was trained on; last-token probes only) and measure the probes at
    that layer and after, and the task (answer vs wrong) if ``dataset`` is a `PromptPairs`;
    a random unit direction (``seed``) is projected out as the control. The task is NaN when
    the answers are not single tokens for the model (e.g. the tiny models). The model is not
    changed (each trace edits only its own run). ``direction``: project this one out instead
    (a `SteeringVector` or a (d_model,) array, e.g. a difference of means), still measured with
    ``result``'s probes. Returns an `AmnesicResult`.

    >>> import mechscope
    >>> from mechscope.datasets.generators import sentiment
    >>> model = mechscope.tiny_model("gpt2")
    >>> data = sentiment(16, seed=1)
    >>> res = probe(model, data, layers=[1])
    >>> float(project_out(model, res, 1, data).probe_after[0]) <= 1.0
    True
    """
    check_model(model, "project_out")
    if not isinstance(result, ProbeResult):
        raise InputError(f"project_out needs the ProbeResult of probe(...), got {type(result).__name__}.")
    layer = model.check_layer(layer)
    row = result._row(layer)
    if result.site != "resid" or result.model_name != model.name or result.position != "last":
        raise InputError(f"project_out needs a last-token probe of site 'resid' on {model.name}, got "
                         f"{result.site!r} at position {result.position!r} on {result.model_name}.")
    chosen = result.directions[row].astype(np.float64) if direction is None else _direction(model, direction)
    data = labelled(dataset, labels, None, "project_out")
    if len(data.texts) != result.n_train + result.n_test:
        raise InputError(f"project_out: the dataset has {len(data.texts)} texts but the probe was trained on "
                         f"{result.n_train + result.n_test}: pass the same dataset.")
    texts = [data.texts[i] for i in result.test_index]
    y = data.y[result.test_index]
    later = [lay for lay in result.layers if lay >= layer]
    answers = None
    if hasattr(dataset, "answer") and hasattr(dataset, "wrong"):
        try:
            answers = ([model.to_single_token(dataset.answer[i]) for i in result.test_index],
                       [model.to_single_token(dataset.wrong[i]) for i in result.test_index])
        except InputError:
            answers = None  # answers that are not single tokens for this model: no task measure
    rand = np.random.default_rng(seed).standard_normal(model.d_model)
    out = []
    for edit in (None, chosen, rand):
        rows, diff = projected_run(model, texts, edit, layer, later, answers, batch_size, progress)
        acc = np.array([np.mean(predict(rows[lay], result.weights[result.layers.index(lay)],
                                        result.bias[result.layers.index(lay)]) == y) for lay in later])
        out.append((acc, float("nan") if diff is None else float(np.mean(diff > 0))))
    return AmnesicResult(layer=layer, probe_layers=tuple(later), probe_before=out[0][0], probe_after=out[1][0],
                         probe_random=out[2][0], task_before=out[0][1], task_after=out[1][1],
                         task_random=out[2][1], n=len(texts))
