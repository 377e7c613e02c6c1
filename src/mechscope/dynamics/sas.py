"""Structure then capability: syntactic attention (SAS) and grammatical accuracy over training.

After Chen et al. (2024), "Sudden drops in the loss: syntax acquisition, phase transitions and
simplicity bias in MLMs": heads that attend along dependency arcs appear first, then the model
gets agreement right.

- `sas_from_attention` / `sas_score`: an arc (dependent ``d``, parent ``p``) is **hit** by a
  head when the head's largest attention from ``d`` goes to ``p`` or from ``p`` goes to ``d``
  (unlabelled, either direction, argmax over the sentence's real tokens). Per head and arc
  type: the fraction of arcs hit. **SAS** is the best head per arc type, averaged over arc
  types (Chen et al.'s choice); ``head_scores`` gives each head's fraction over all arcs.
- `grammar_accuracy`: mask the main verb of each minimal pair; correct when the masked LM
  gives the grammatical form a higher logit than the ungrammatical one (0.5 is chance).
- `structure_and_capability`: both at every checkpoint of `train_mlm` runs, the emergence step
  of each per seed (`emergence_step`), which comes first, and correlations across seeds.

>>> import numpy as np
>>> from mechscope.dynamics.grammar import Sentence
>>> s = Sentence(("the", "dog", "runs", "."), (1, 2, -1, 2), ("det", "nsubj", "root", "punct"),
...              main_verb=2, plural=False)
>>> att = np.zeros((1, 1, 1, 4, 4))           # (layers, batch, heads, query, key)
>>> att[0, 0, 0, [0, 1, 2, 3], [1, 2, 2, 2]] = 1.0   # every token looks at its parent
>>> sas_from_attention(att, [s]).score
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .checkpoints import Checkpoint, list_checkpoints, read_meta
from .emergence_steps import correlation, emergence_step
from .grammar import AgreementGrammar, MinimalPair, Sentence
from .mlm import MLMRuns, encode, load_mlm


@dataclass(frozen=True)
class SASScore:
    """``score``: SAS (best head per arc type, mean over types); ``per_label``: (layers, heads,
    labels) fraction of each type's arcs hit; ``head_scores``: (layers, heads) over all arcs;
    ``labels``: arc types; ``counts``: (labels,) arcs of each type.

    >>> import numpy as np
    >>> r = SASScore(0.5, np.array([[[1.0, 0.0]]]), np.array([[0.5]]), ["det", "obj"], np.array([1, 1]))
    >>> r.best_head
    (0, 0)
    """

    score: float
    per_label: np.ndarray
    head_scores: np.ndarray
    labels: list[str]
    counts: np.ndarray

    @property
    def best_head(self) -> tuple[int, int]:
        """(layer, head) with the highest fraction over all arcs."""
        flat = int(np.argmax(self.head_scores))
        return divmod(flat, self.head_scores.shape[1])


def sas_from_attention(attentions: Any, sentences: Sequence[Sentence]) -> SASScore:
    """SAS of attention patterns ``attentions`` (layers, batch, heads, query, key), or a tuple
    of (batch, heads, query, key) per layer, over ``sentences`` (batch,) right-padded.

    See the module example; a head attending everywhere to token 0 hits only arcs into it.
    """
    att = np.stack([np.asarray(a) for a in attentions]) if isinstance(attentions, tuple | list) \
        else np.asarray(attentions)
    if att.ndim != 5 or att.shape[1] != len(sentences) or att.shape[3] != att.shape[4]:
        raise InputError(f"attentions must be (layers, batch={len(sentences)}, heads, query, key), "
                         f"got shape {att.shape}.")
    labels = sorted({lab for s in sentences for _, _, lab in s.arcs()})
    if not labels:
        raise InputError("the sentences have no dependency arcs; give sentences of 2+ tokens.")
    hits = np.zeros(att.shape[:1] + att.shape[2:3] + (len(labels),))
    counts = np.zeros(len(labels))
    for i, s in enumerate(sentences):
        n = len(s.words)
        if n > att.shape[3]:
            raise InputError(f"sentence {i} has {n} tokens but the attention only {att.shape[3]}.")
        top = att[:, i, :, :n, :n].argmax(axis=-1)  # (layers, heads, n)
        arcs = s.arcs()
        d = np.array([a[0] for a in arcs])
        p = np.array([a[1] for a in arcs])
        hit = (top[..., d] == p) | (top[..., p] == d)  # (layers, heads, arcs)
        which = np.array([labels.index(a[2]) for a in arcs])
        for k in range(len(labels)):
            hits[..., k] += hit[..., which == k].sum(axis=-1)
        counts += np.bincount(which, minlength=len(labels))
    per_label = hits / counts
    head_scores = hits.sum(axis=-1) / counts.sum()
    score = float(per_label.reshape(-1, len(labels)).max(axis=0).mean())
    return SASScore(score, per_label, head_scores, labels, counts.astype(int))


def _hf(model: Any) -> torch.nn.Module:
    if isinstance(model, Checkpoint | str | Path):
        return load_mlm(model)
    hf = getattr(model, "hf", model)
    if not isinstance(hf, torch.nn.Module) or not hasattr(hf, "config"):
        raise InputError(f"model must be a masked LM (e.g. load_mlm(checkpoint)) or a train_mlm "
                         f"checkpoint, got {type(model).__name__}.")
    return hf


def _check(hf: torch.nn.Module, grammar: AgreementGrammar | None, items: Sequence[Any],
           what: str) -> AgreementGrammar:
    grammar = grammar if grammar is not None else AgreementGrammar()
    if isinstance(items, str) or not len(items):
        raise InputError(f"{what} must be a non-empty list (grammar.{what}(n)), got {items!r}.")
    size = getattr(hf.config, "vocab_size", None)
    if size != len(grammar.vocab):
        raise InputError(f"the model has {size} tokens but the grammar {len(grammar.vocab)}: pass "
                         "the grammar the model was trained on (grammar=...).")
    return grammar


def _forward(hf: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor, **kwargs: Any) -> Any:
    was_training = hf.training
    hf.eval()
    try:
        with torch.no_grad():
            return hf(input_ids=ids, attention_mask=att, **kwargs)
    finally:
        hf.train(was_training)


def sas_score(model: Any, sentences: Sequence[Sentence],
              grammar: AgreementGrammar | None = None) -> SASScore:
    """SAS of a masked LM's attention on unmasked ``sentences`` (n,) of ``grammar``.

    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> from mechscope.dynamics.mlm import build_mlm
    >>> g = AgreementGrammar()
    >>> r = sas_score(build_mlm(g, n_layers=2, n_heads=2), g.sentences(8), g)
    >>> r.per_label.shape[:2], r.head_scores.shape, 0 <= r.score <= 1       # (layers, heads)
    ((2, 2), (2, 2), True)
    """
    hf = _hf(model)
    grammar = _check(hf, grammar, sentences, "sentences")
    if not all(isinstance(s, Sentence) for s in sentences):
        raise InputError("sentences must be Sentence objects with their parse "
                         "(grammar.sentences(n)).")
    ids, att = encode(grammar, sentences)
    out = _forward(hf, ids, att, output_attentions=True)
    return sas_from_attention(tuple(a.float().numpy() for a in out.attentions), sentences)


def grammar_accuracy(model: Any, pairs: Sequence[MinimalPair],
                     grammar: AgreementGrammar | None = None) -> float:
    """Fraction of minimal ``pairs`` where, with the main verb masked, the correct form's logit
    beats the wrong one's.

    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> from mechscope.dynamics.mlm import build_mlm
    >>> g = AgreementGrammar()
    >>> 0.0 <= grammar_accuracy(build_mlm(g), g.minimal_pairs(16), g) <= 1.0
    True
    """
    hf = _hf(model)
    grammar = _check(hf, grammar, pairs, "minimal_pairs")
    if not all(isinstance(p, MinimalPair) for p in pairs):
        raise InputError("pairs must be MinimalPair objects (grammar.minimal_pairs(n)).")
    index = {w: i for i, w in enumerate(grammar.vocab)}
    ids, att = encode(grammar, [p.sentence for p in pairs])
    rows = torch.arange(len(pairs))
    pos = torch.tensor([p.position for p in pairs])
    ids[rows, pos] = index["[MASK]"]
    logits = _forward(hf, ids, att).logits[rows, pos]
    good = logits[rows, torch.tensor([index[p.correct] for p in pairs])]
    bad = logits[rows, torch.tensor([index[p.wrong] for p in pairs])]
    return float((good > bad).float().mean())


def _first(s: float, a: float) -> str:
    if not (math.isfinite(s) and math.isfinite(a)):
        return "n/a"
    return "structure" if s < a else ("capability" if a < s else "together")


@dataclass(frozen=True)
class StructureCapability:
    """SAS and grammatical accuracy per run and checkpoint, and when each emerges.

    ``sas``, ``accuracy``: (runs, checkpoints); ``head_scores``: (runs, checkpoints, layers,
    heads); ``label_sas``: (runs, checkpoints, labels) best head per arc type; ``steps``:
    (checkpoints,); ``sas_steps``, ``accuracy_steps``: (runs,) emergence steps (``method``);
    ``lead``: accuracy step minus SAS step (positive: structure first); ``first`` per run;
    ``curve_correlation``: SAS vs accuracy over all (run, checkpoint) pairs;
    ``steps_correlation``: of the two emergence steps across runs (NaN under 3 runs).

    >>> import numpy as np
    >>> sas = np.array([[0.1, 0.2, 0.8, 0.9]] * 3); acc = np.array([[0.5, 0.5, 0.6, 1.0]] * 3)
    >>> r = StructureCapability.build(["a", "b", "c"], [0, 1, 2], np.array([0, 9, 99, 999]),
    ...                               sas, acc, np.zeros((3, 4, 1, 1)), np.zeros((3, 4, 1)), ["det"])
    >>> r.first, bool((r.lead > 0).all()), r.to_pandas().shape
    (['structure', 'structure', 'structure'], True, (12, 4))
    """

    runs: list[str]
    seeds: list[int | None]
    steps: np.ndarray
    sas: np.ndarray
    accuracy: np.ndarray
    head_scores: np.ndarray
    label_sas: np.ndarray
    labels: list[str]
    method: str
    sas_steps: np.ndarray
    accuracy_steps: np.ndarray
    curve_correlation: dict[str, float]
    steps_correlation: dict[str, float]

    @classmethod
    def build(cls, runs: list[str], seeds: list[int | None], steps: np.ndarray, sas: np.ndarray,
              accuracy: np.ndarray, head_scores: np.ndarray, label_sas: np.ndarray,
              labels: list[str], method: str = "halfway") -> StructureCapability:
        """The result with emergence steps and correlations computed from the curves."""
        if sas.shape != accuracy.shape or sas.shape != (len(runs), len(steps)):
            raise InputError(f"sas {sas.shape} and accuracy {accuracy.shape} must both be "
                             f"(runs={len(runs)}, checkpoints={len(steps)}).")
        s_steps = np.array([emergence_step(c, steps, method) for c in sas])
        a_steps = np.array([emergence_step(c, steps, method) for c in accuracy])
        return cls(runs, seeds, np.asarray(steps), sas, accuracy, head_scores, label_sas, labels,
                   method, s_steps, a_steps, correlation(sas, accuracy),
                   correlation(s_steps, a_steps))

    @property
    def lead(self) -> np.ndarray:
        return self.accuracy_steps - self.sas_steps

    @property
    def first(self) -> list[str]:
        return [_first(s, a) for s, a in zip(self.sas_steps, self.accuracy_steps, strict=True)]

    def to_pandas(self):  # noqa: ANN201
        """One row per (run, step): SAS, accuracy, best head's score over all arcs."""
        import pandas as pd

        n_runs, n_ckpt = self.sas.shape
        index = pd.MultiIndex.from_product([self.runs, self.steps.tolist()], names=["run", "step"])
        best = self.head_scores.reshape(n_runs, n_ckpt, -1).max(axis=-1)
        return pd.DataFrame({"sas": self.sas.ravel(), "accuracy": self.accuracy.ravel(),
                             "best_head": best.ravel(),
                             "seed": np.repeat(np.array(self.seeds, dtype=object), n_ckpt)},
                            index=index)

    def show(self):  # noqa: ANN201
        """A `mechscope.widgets.Heatmap`: rows (run, SAS / accuracy), columns checkpoint steps."""
        from ..widgets.heatmap import Heatmap

        values = np.stack([self.sas, self.accuracy], axis=1).reshape(-1, self.sas.shape[1])
        rows = [f"{r} {m}" for r in self.runs for m in ("SAS", "accuracy")]
        return Heatmap(values, rows, [str(int(s)) for s in self.steps], vmin=0.0, vmax=1.0,
                       title="Structure (SAS) then capability (agreement accuracy)",
                       value_label="score")

    def summary(self) -> str:
        lines = [f"SAS vs agreement accuracy ({self.method} emergence), {len(self.runs)} runs:"]
        for i, run in enumerate(self.runs):
            lines.append(f"  {run}: SAS {self.sas[i, 0]:.2f}->{self.sas[i, -1]:.2f} at step "
                         f"{self.sas_steps[i]:.0f}, accuracy {self.accuracy[i, 0]:.2f}->"
                         f"{self.accuracy[i, -1]:.2f} at step {self.accuracy_steps[i]:.0f}; "
                         f"first: {self.first[i]}")
        c, s = self.curve_correlation, self.steps_correlation
        lines.append(f"  curves: Pearson {c['pearson']:+.3f}, Spearman {c['spearman']:+.3f}; "
                     f"emergence steps across runs: Pearson {s['pearson']:+.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _run_dirs(runs: Any) -> list[Path]:
    if isinstance(runs, MLMRuns):
        return list(runs.run_dirs)
    items = [runs] if isinstance(runs, str | Path) else list(runs) if isinstance(runs, Sequence) \
        else None
    if not items:
        raise InputError(f"runs must be an MLMRuns (train_mlm) or a list of its run directories, "
                         f"got {runs!r}.")
    dirs = [Path(r) for r in items]
    for d in dirs:
        if read_meta(d).get("kind") != "mlm":
            raise InputError(f"{d} is not a train_mlm run directory (no run.json with kind 'mlm').")
    return dirs


def structure_and_capability(runs: Any, *, n_sentences: int = 200, n_pairs: int = 200,
                             min_attractors: int = 0, seed: int = 12345,
                             method: str = "halfway", progress: bool = True
                             ) -> StructureCapability:
    """SAS and agreement accuracy at every checkpoint of ``runs`` (an `MLMRuns` or its run
    directories, same steps each), on ``n_sentences`` sentences and ``n_pairs`` minimal pairs
    (with ``min_attractors`` attractors) drawn afresh with ``seed``, then emergence steps.

    >>> import tempfile
    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> from mechscope.dynamics.mlm import train_mlm
    >>> runs = train_mlm(AgreementGrammar(), seeds=(0, 1), steps=4, n_layers=1, d_model=16,
    ...                  n_heads=2, d_mlp=16, n_checkpoints=3, out_dir=tempfile.mkdtemp(),
    ...                  progress=False)
    >>> r = structure_and_capability(runs, n_sentences=8, n_pairs=8, progress=False)
    >>> r.sas.shape, r.head_scores.shape, r.sas_steps.shape    # (runs, checkpoints[, layers, heads])
    ((2, 3), (2, 3, 1, 2), (2,))
    """
    from ..progress import progress as progress_bar

    dirs = _run_dirs(runs)
    metas = [read_meta(d) for d in dirs]
    grammar = AgreementGrammar.from_dict(metas[0]["task"])
    if any(m["task"] != metas[0]["task"] for m in metas):
        raise InputError("the runs were trained on different grammars; measure them separately.")
    ckpts = [list_checkpoints(d) for d in dirs]
    steps = [c.step for c in ckpts[0]]
    if any([c.step for c in cs] != steps for cs in ckpts) or len(steps) < 2:
        raise InputError(f"every run needs the same 2+ checkpoint steps; got "
                         f"{[[c.step for c in cs] for cs in ckpts]}.")
    sentences = grammar.sentences(n_sentences, seed=seed)
    pairs = grammar.minimal_pairs(n_pairs, seed=seed + 1, min_attractors=min_attractors)
    shape = (len(dirs), len(steps))
    sas, acc = np.zeros(shape), np.zeros(shape)
    heads: list[np.ndarray] = []
    labels_sas: list[np.ndarray] = []
    labels: list[str] = []
    for i, c in enumerate(progress_bar([c for cs in ckpts for c in cs], desc="SAS",
                                       enabled=progress)):
        hf = load_mlm(c)
        r = sas_score(hf, sentences, grammar)
        sas.flat[i], acc.flat[i], labels = r.score, grammar_accuracy(hf, pairs, grammar), r.labels
        heads.append(r.head_scores)
        labels_sas.append(r.per_label.reshape(-1, len(r.labels)).max(axis=0))
    head_arr = np.stack(heads).reshape(*shape, *heads[0].shape)
    label_arr = np.stack(labels_sas).reshape(*shape, -1)
    return StructureCapability.build([m.get("label", d.name) for m, d in zip(metas, dirs, strict=True)],
                                     [m.get("seed") for m in metas], np.array(steps), sas, acc,
                                     head_arr, label_arr, labels, method)
