"""Sites: the one vocabulary for "where in the model", shared by every verb.

A `Site` names a tensor every decoder layer has, where it is read (a module's input or its
output) and how wide it is. `Model.at(site, layer)` binds a site to one layer of one model
as a `SiteRef`, whose `read` / `write` are what every trace in mechscope uses, so whether a
site lives on a module's input or output, and that attention modules return tuples, is
decided here and nowhere else.

| site | what | port | width (unit) | aliases |
|---|---|---|---|---|
| ``resid`` | output of decoder block L: the residual stream after it | output | d_model | ``resid_post`` |
| ``resid_pre`` | input of decoder block L: the residual stream before it | input | d_model | |
| ``attn`` | output of the attention module | output | d_model | ``attn_out`` |
| ``mlp_in`` | input of the MLP module (the normalised residual a transcoder reads) | input | d_model | ``ln2``, ``mlp_input`` |
| ``mlp`` | output of the MLP module | output | d_model | ``mlp_out`` |
| ``neurons`` | MLP neurons: input of the MLP's down projection | input | d_mlp (neuron) | ``mlp_neurons``, ``mlp_post`` |
| ``heads`` | head outputs: input of the attention output projection | input | n_heads x d_head (head) | ``z`` |
| ``pattern`` | attention probabilities (heads, query, key): 2nd output of the attention module, eager attention only (`Model.eager_attention`) | output | key positions (head) | ``attn_pattern`` |

>>> from mechscope.models.tiny import tiny_model
>>> m = tiny_model("llama")
>>> site("mlp_neurons").name, site("heads").port, m.units("heads"), m.width("neurons")
('neurons', 'input', 4, 128)
>>> site("mlp", allowed=("resid", "heads"), verb="patch")
Traceback (most recent call last):
...
mechscope.errors.InputError: site must be one of ('resid', 'heads') for patch, got 'mlp' (the output of the MLP module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class Site:
    """One per-layer place in a transformer: ``name``, where it is read, its width and unit.

    ``module`` is the adapter's module for the site ("block", "attn", "mlp", "neurons" = the
    MLP's down projection, "heads" = the attention output projection; see
    `mechscope.models.adapters.Adapter.module_path`); ``port`` is its "input" or "output" (``item``: which
    element when that is a tuple); ``width`` names the `Model` size of the tensor's last
    dimension ("d_model", "d_mlp", "heads" = ``n_heads * d_head``, or "keys" for attention
    patterns); ``unit`` is what one index along the site counts ("dimension", "neuron", "head").
    """

    name: str
    description: str
    module: str
    port: str
    width: str
    unit: str
    aliases: tuple[str, ...] = ()
    item: int = 0


SITES: dict[str, Site] = {s.name: s for s in (
    Site("resid", "the output of the decoder block (the residual stream after it)", "block",
         "output", "d_model", "dimension", ("resid_post",)),
    Site("resid_pre", "the input of the decoder block (the residual stream before it)", "block",
         "input", "d_model", "dimension"),
    Site("attn", "the output of the attention module", "attn", "output", "d_model", "dimension",
         ("attn_out",)),
    Site("mlp_in", "the input of the MLP module (the normalised residual stream)", "mlp", "input",
         "d_model", "dimension", ("ln2", "mlp_input")),
    Site("mlp", "the output of the MLP module", "mlp", "output", "d_model", "dimension",
         ("mlp_out",)),
    Site("neurons", "the MLP neurons (input of the MLP's down projection)", "neurons", "input",
         "d_mlp", "neuron", ("mlp_neurons", "mlp_post")),
    Site("heads", "the attention heads (input of the attention output projection)", "heads",
         "input", "heads", "head", ("z",)),
    Site("pattern", "the attention probabilities (eager attention only)", "attn", "output",
         "keys", "head", ("attn_pattern",), item=1),
)}

#: The order in which a forward pass reaches the sites of one layer (a trace must read them so).
STAGES: dict[str, int] = {"resid_pre": 0, "pattern": 1, "heads": 2, "attn": 3, "mlp_in": 4,
                          "neurons": 5, "mlp": 6, "resid": 7}


def execution_order(pairs: Any) -> list[tuple[int, str]]:
    """(layer, site) pairs sorted in the order a forward pass reaches them.

    >>> execution_order([(1, "resid_pre"), (0, "resid"), (0, "mlp_in"), (0, "attn")])
    [(0, 'attn'), (0, 'mlp_in'), (0, 'resid'), (1, 'resid_pre')]
    """
    return sorted(((int(layer), str(s)) for layer, s in pairs), key=lambda ls: (ls[0], STAGES[ls[1]]))


_BY_ALIAS: dict[str, Site] = {a: s for s in SITES.values() for a in (s.name, *s.aliases)}


def site(name: Any, *, allowed: Sequence[str] | None = None, verb: str = "") -> Site:
    """The `Site` called ``name`` (or one of its aliases); `InputError` if unknown or not ``allowed``."""
    found = _BY_ALIAS.get(name) if isinstance(name, str) else None
    names = tuple(allowed) if allowed is not None else tuple(SITES)
    who = f"site must be one of {names}{f' for {verb}' if verb else ''}, got {name!r}"
    if found is None:
        raise InputError(f"{who}.")
    if found.name not in names:
        raise InputError(f"{who} ({found.description}).")
    return found


@dataclass(frozen=True)
class SiteRef:
    """A `Site` at one layer of one model, bound to its nnsight envoy: use inside a trace.

    Built by `Model.at` (outside the trace: it is what a remote request carries); ``read()``
    gives the tensor (batch, positions, width), first element of a tuple output, which can be
    edited in place; ``write(value)`` replaces it (a tuple output keeps its other elements).
    """

    site: Site
    layer: int
    envoy: Any

    def read(self) -> Any:
        """The site's tensor in the running trace, (batch, positions, width)."""
        value = self.envoy.input if self.site.port == "input" else self.envoy.output
        return value[self.site.item] if isinstance(value, tuple) else value

    def write(self, value: Any) -> None:
        """Replace the site's tensor in the running trace with ``value``."""
        if self.site.port == "input":
            self.envoy.input = value
            return
        out = self.envoy.output
        if isinstance(out, tuple):
            i = self.site.item
            self.envoy.output = (*out[:i], value, *out[i + 1:])
        else:
            self.envoy.output = value


@dataclass(frozen=True)
class LogitsRef:
    """The unembedding of one model, bound to its envoy: use inside a trace."""

    envoy: Any

    def last(self) -> Any:
        """Logits at the final position only, (batch, vocab): the unembedding runs on that one."""
        self.envoy.input = self.envoy.input[:, -1:]
        return self.envoy.output[:, -1]

    def all(self) -> Any:
        """Logits at every position, (batch, positions, vocab)."""
        return self.envoy.output
