"""`activations`: one number per (layer, token) from a single traced forward pass.

>>> import mechscope
>>> model = mechscope.tiny_model("gpt2")
>>> r = mechscope.activations(model, "The cat sat", site="neurons", neuron=5)
>>> r.values.shape == (model.n_layers, len(r.tokens))
True
>>> list(r.to_pandas().columns) == r.tokens or r.to_pandas().shape == r.values.shape
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ..datasets.pairs import is_dataset
from ..errors import InputError
from ..models.model import Model
from ..models.sites import site as get_site
from ..models.trace import save
from ..validate import check_model, index

if TYPE_CHECKING:
    from .over_dataset import DatasetReading

#: Sites `activations` can read, and what their per-cell value is.
_SITES = ("resid", "attn", "mlp", "neurons")


@dataclass(frozen=True)
class ActivationsResult:
    """``values[layer, position]``: the chosen quantity at each layer and token.

    ``values`` has shape ``(len(layers), len(tokens))`` (float32); ``layers`` holds the model
    layer of each row, ``tokens`` the prompt's tokens, ``quantity`` "norm" or "unit i".

    >>> import mechscope
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.activations(model, "The cat sat", layers=[-1])
    >>> r.layers, r.values.shape == (1, len(r.tokens)), r.quantity
    ([1], True, 'norm')
    >>> frame = r.to_pandas()                          # rows: layers; columns: (position, token)
    >>> frame.index.name, list(frame.columns.names)
    ('layer', ['position', 'token'])
    """

    values: np.ndarray
    tokens: list[str]
    layers: list[int]
    site: str
    quantity: str
    prompt: str
    model_name: str

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        """A DataFrame with one row per layer and one column per position."""
        import pandas as pd

        columns = pd.MultiIndex.from_arrays(
            [list(range(len(self.tokens))), self.tokens], names=["position", "token"]
        )
        return pd.DataFrame(self.values, index=pd.Index(self.layers, name="layer"), columns=columns)

    def show(self, *, vmin: float | None = None, vmax: float | None = None):  # noqa: ANN201
        """The activation heatmap (layers x tokens); ``vmin``/``vmax`` clip the colour scale.

        Many models park a huge "attention sink" vector on the first token (SmolLM2-135M:
        residual norm ~2e4 against ~1e2 elsewhere); pass ``vmax`` to see the other tokens.
        Hover still shows every cell's true value.
        """
        from ..widgets.heatmap import Heatmap

        diverging = self.quantity != "norm"
        return Heatmap(
            self.values,
            row_labels=[f"L{layer}" for layer in self.layers],
            col_labels=self.tokens,
            title=f"{self.model_name}: {self.site} {self.quantity}",
            value_label=f"{self.site} {self.quantity}",
            colorscale="diverging" if diverging else "viridis",
            vmin=vmin, vmax=vmax,
        )


def activations(model: Model, prompt: str | Any, *, site: str = "resid", neuron: int | None = None,
                layers: list[int] | None = None,
                roles: list[str] | None = None) -> ActivationsResult | DatasetReading:
    """Read ``site`` at every layer for ``prompt`` in one trace.

    The value per cell is the L2 norm of the site's vector, or with ``neuron=i`` that
    unit's activation (a residual-stream dimension for resid/attn/mlp; an MLP neuron,
    post-nonlinearity, for ``site="neurons"``). ``layers``: an int or a list (default all;
    negative count from the end; duplicates refused; rows in model order). Returns an
    `ActivationsResult` whose ``values`` are ``(n_layers, n_positions)``.

    The same numbers as a plain forward pass (``resid`` at layer 0 is the output of block 0,
    Hugging Face's ``hidden_states[1]``):

    >>> import mechscope, numpy as np
    >>> model = mechscope.tiny_model("llama")
    >>> r = mechscope.activations(model, "The cat sat")
    >>> hidden = model.hf(model.to_tokens("The cat sat"), output_hidden_states=True).hidden_states
    >>> bool(np.allclose(r.values[0], hidden[1][0].norm(dim=-1).detach().numpy(), atol=1e-5))
    True
    >>> u = mechscope.activations(model, "The cat sat", site="neurons", neuron=3)
    >>> u.values.shape == (model.n_layers, len(u.tokens)), u.quantity
    (True, 'unit 3')
    """
    check_model(model, "activations")
    site = get_site(site, allowed=_SITES, verb="activations").name
    chosen = model.check_layers(layers)
    width = model.width(site)
    if neuron is not None:
        neuron = index(neuron, width, "neuron", "neuron" if site == "neurons" else f"{site} dimension")
    if is_dataset(prompt):
        from .over_dataset import activations_over

        return activations_over(model, prompt, site=site, layers=chosen, neuron=neuron, roles=roles)
    if roles is not None:
        raise InputError("roles= is for a dataset (mechscope.datasets); one prompt has positions.")
    prompt = cast(str, prompt)  # bytes are decoded (and checked) by to_tokens
    ids = model.to_tokens(prompt)
    tokens = model.decode_tokens(ids)
    refs = [model.at(site, layer) for layer in chosen]

    with model.trace(ids):
        # Reduce to one number per token inside the trace: only (layers, tokens) floats leave
        # it, which matters on NDIF. Everything that leaves goes through save.
        per_layer = []
        for ref in refs:
            act = ref.read()[0].float()
            per_layer.append(act.norm(dim=-1) if neuron is None else act[:, neuron])
        stacked = save(torch.stack(per_layer))
    values = stacked.cpu().numpy().astype(np.float32)
    return ActivationsResult(
        values=values, tokens=tokens, layers=chosen, site=site,
        quantity="norm" if neuron is None else f"unit {neuron}", prompt=prompt,
        model_name=model.name,
    )
