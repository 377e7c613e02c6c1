"""`activations` and `logit_lens` over a dataset: one number per (example, layer, role), batched.

Texts run in left-padded batches (`Model.encode`); each example is read at its *roles* (named
positions carried by the dataset, "END" = the last token, always there), so examples of
different lengths line up. Results keep ``per_example`` arrays (examples, layers, roles), the
mean as ``values`` and a bootstrap interval (`mechscope.stats`).

>>> import mechscope
>>> from mechscope.datasets import prompts
>>> model = mechscope.tiny_model("llama")
>>> data = prompts(["The cat sat on the", "A dog", "hello world again"])
>>> r = mechscope.activations(model, data)                        # residual norm at END
>>> r.per_example.shape, r.values.shape, r.roles
((3, 2, 1), (2, 1), ['END'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import END, PromptPairs, Prompts
from ..datasets.pairs import prompts as as_prompts
from ..errors import InputError
from ..models.model import Model
from ..models.trace import save
from ..stats import OverExamples, summarize

#: Texts per padded batch.
BATCH_SIZE = 16


@dataclass(frozen=True)
class DatasetReading(OverExamples):
    """``per_example[i, l, r]``: the quantity for example i at layer ``layers[l]`` and role
    ``roles[r]``, shape (n, layers, roles); ``values`` the mean over examples with its
    `ci_level` bootstrap interval ``ci_low`` / ``ci_high`` (layers, roles).

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("gpt2")
    >>> r = mechscope.logit_lens(model, ["The cat sat", "A dog"], target=" the", layers=[-1])
    >>> r.per_example.shape, r.quantity, bool(np.allclose(r.values, r.per_example.mean(0)))
    ((2, 1, 1), "logit-lens p(' the')", True)
    >>> r.to_pandas().columns.tolist()
    ['example', 'layer', 'role', 'value']
    """

    per_example: np.ndarray
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    layers: list[int]
    roles: list[str]
    quantity: str
    site: str
    model_name: str
    dataset_name: str
    texts: tuple[str, ...] = field(repr=False, default=())
    ci_level: float = 0.95

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """Long format: one row per (example, layer, role)."""
        return self.long_frame(layer=self.layers, role=self.roles)

    def show(self):  # noqa: ANN201 - returns the widget
        """Heatmap of the mean over examples: layers x roles, its interval on hover."""
        from ..widgets.heatmap import Heatmap

        return Heatmap(self.values, row_labels=[f"L{layer}" for layer in self.layers],
                       col_labels=self.roles, value_label=self.quantity,
                       title=f"{self.model_name}: {self.quantity}, mean of {self.n} examples of {self.dataset_name!r}",
                       colorscale="viridis", ci_low=self.ci_low, ci_high=self.ci_high,
                       ci_label=f"{round(self.ci_level * 100)}% CI, n={self.n}")

    def __repr__(self) -> str:
        return (f"DatasetReading({self.quantity}, {len(self.layers)} layers x {len(self.roles)} roles, "
                f"n={self.n} of {self.dataset_name!r})")


def as_role_prompts(data: Any) -> Prompts:
    """`Prompts` from a dataset (a `PromptPairs` gives its clean texts) or a list of texts."""
    if isinstance(data, PromptPairs):
        return data.prompts("clean")
    return as_prompts(data)


def role_positions(model: Model, data: Prompts, roles: list[str] | None) -> tuple[list[list[int]], list[str], np.ndarray]:
    """(ids per example, the roles read, token index (n, roles)); every text checked."""
    from ..datasets.tokenized import _ids, _token_at

    ids = [_ids(model, t, f"example {i}") for i, t in enumerate(data.texts)]
    names = list(data.role_names) if roles is None else list(roles)
    unknown = [r for r in names if r not in data.role_names]
    if unknown or not names or len(set(names)) != len(names):
        raise InputError(f"roles {names} must be distinct roles of {data.name!r}: {list(data.role_names)}.")
    columns = []
    for role in names:
        if role == END:
            columns.append([len(x) - 1 for x in ids])
        else:
            chars = np.asarray(data.roles[role])
            columns.append([_token_at(model, data.texts[i], int(chars[i]), len(ids[i]),
                                      f"example {i}, role {role!r}") for i in range(len(data))])
    return ids, names, np.array(columns, dtype=np.int64).T


def _batches(model: Model, data: Prompts, ids: list[list[int]], pos: np.ndarray):
    """(rows, encoding, padded positions (b, roles)) per batch of ``BATCH_SIZE`` texts."""
    for start in range(0, len(data), BATCH_SIZE):
        rows = list(range(start, min(start + BATCH_SIZE, len(data))))
        enc = model.encode([data.texts[i] for i in rows])
        width = enc["input_ids"].shape[1]
        padded = np.array([[width - len(ids[i]) + p for p in pos[i]] for i in rows])
        yield rows, enc, torch.as_tensor(padded, dtype=torch.long)


def _summarized(per_example: np.ndarray, **fields: Any) -> DatasetReading:
    s = summarize(per_example)
    return DatasetReading(per_example=per_example.astype(np.float32), values=s.mean,
                          ci_low=s.ci_low, ci_high=s.ci_high, ci_level=s.level, **fields)


def activations_over(model: Model, data: Any, *, site: str, layers: list[int], neuron: int | None,
                     roles: list[str] | None) -> DatasetReading:
    """`mechscope.activations` of every example at its roles (see the module docstring)."""
    prompts = as_role_prompts(data)
    ids, names, pos = role_positions(model, prompts, roles)
    refs = [model.at(site, layer) for layer in layers]
    out = np.empty((len(prompts), len(layers), len(names)), dtype=np.float32)
    for rows, enc, at in _batches(model, prompts, ids, pos):
        with model.trace(enc):
            per_layer = []
            for ref in refs:
                act = ref.read().float()[torch.arange(len(rows))[:, None], at]  # (b, roles, width)
                per_layer.append(act.norm(dim=-1) if neuron is None else act[..., neuron])
            stacked = save(torch.stack(per_layer, dim=1))
        out[rows] = stacked.numpy()
    return _summarized(out, layers=layers, roles=names, site=site, model_name=model.name,
                       quantity=f"{site} {'norm' if neuron is None else f'unit {neuron}'}",
                       dataset_name=prompts.name, texts=prompts.texts)


def logit_lens_over(model: Model, data: Any, *, layers: list[int], target: Any,
                    roles: list[str] | None) -> DatasetReading:
    """The logit lens probability of the target token at every example's roles.

    ``target``: one token for every example, or None with a `PromptPairs` (each example's
    ``answer``). The probability is softmax(unembed(final_norm(resid))) at that token.
    """
    prompts = as_role_prompts(data)
    if target is None:
        if not isinstance(data, PromptPairs):
            raise InputError("logit_lens over texts needs target= (a token); a PromptPairs uses "
                             "each example's answer.")
        target_ids = torch.tensor([model.to_single_token(a) for a in data.answer])
        name = "answer"
    else:
        target_ids = torch.full((len(prompts),), model.to_single_token(target))
        name = repr(target)
    ids, names, pos = role_positions(model, prompts, roles)
    refs = [model.at("resid", layer) for layer in layers]
    norm = model.envoy_at(model.adapter.final_norm_path)
    unembed = model.envoy_at(model.adapter.unembed_path)
    out = np.empty((len(prompts), len(layers), len(names)), dtype=np.float32)
    for rows, enc, at in _batches(model, prompts, ids, pos):
        tgt = target_ids[rows]
        with model.trace(enc):
            per_layer = []
            for ref in refs:
                resid = ref.read()[torch.arange(len(rows))[:, None], at]  # (b, roles, d_model)
                probs = torch.softmax(unembed(norm(resid)).float(), dim=-1)
                per_layer.append(probs.gather(-1, tgt[:, None, None].expand(-1, len(names), 1))[..., 0])
            stacked = save(torch.stack(per_layer, dim=1))
        out[rows] = stacked.numpy()
    return _summarized(out, layers=layers, roles=names, site="resid", model_name=model.name,
                       quantity=f"logit-lens p({name})", dataset_name=prompts.name,
                       texts=prompts.texts)
