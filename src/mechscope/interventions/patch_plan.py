"""What `mechscope.patch` patches: the examples, grouped by token length, and the result's columns.

A prompt pair is a plan of one group; a `PromptPairs` is grouped by (clean, corrupt) token
length, and its columns are positions (every example one length), roles, or heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..datasets.pairs import PromptPairs
from ..errors import InputError
from ..models.model import Model
from ..validate import index_list
from .patch_traces import PatchGroup


# ---- what gets patched: examples grouped by token length -----------------------------------------
@dataclass(frozen=True)
class Plan:
    """The groups to run, the result's columns, and how to label them."""

    groups: list[PatchGroup]
    n_examples: int
    columns: list[int]
    positions: list[int]
    column_names: list[str] | None
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    clean_prompt: str
    corrupt_prompt: str
    dataset_name: str | None = None
    dataset: PromptPairs | None = None


def _tokens_of(model: Model, ids: torch.Tensor) -> list[str]:
    return model.decode_tokens(ids)


def check_prompts(model: Model, clean: Any, corrupt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ids_clean = model.to_tokens(clean)
    ids_corrupt = model.to_tokens(corrupt)
    nc, nk = int(ids_clean.shape[1]), int(ids_corrupt.shape[1])
    if nc != nk:
        raise InputError(
            "patching needs the clean and corrupt prompts to have the same number of tokens "
            "(position p of one is patched into position p of the other), but:\n"
            f"  clean   has {nc} tokens: {_tokens_of(model, ids_clean)}\n"
            f"  corrupt has {nk} tokens: {_tokens_of(model, ids_corrupt)}\n"
            "Reword one so the tokens line up (model.str_tokens(prompt) shows a tokenisation)."
        )
    return ids_clean, ids_corrupt


def pair_plan(model: Model, clean: str, corrupt: str, site: str, positions: Any) -> Plan:
    """One prompt pair: a group of one; columns are positions (or heads)."""
    ids_clean, ids_corrupt = check_prompts(model, clean, corrupt)
    n = int(ids_clean.shape[1])
    chosen = index_list(range(n) if positions is None else positions, n, "positions", "position")
    pos = torch.tensor([chosen], dtype=torch.long)
    group = PatchGroup(torch.zeros(1, dtype=torch.long), ids_clean, ids_corrupt, pos, pos)
    columns = list(range(model.n_heads)) if site == "heads" else chosen
    return Plan([group], 1, columns, chosen, None, _tokens_of(model, ids_clean),
                 _tokens_of(model, ids_corrupt), clean, corrupt)


def dataset_plan(model: Model, data: PromptPairs, site: str, positions: Any) -> Plan:
    """Every example of ``data``, grouped by (clean, corrupt) length; columns are positions
    (all examples one length), roles (``positions=`` role names, or by default when lengths
    differ), or heads (patched at every position, or at the named roles)."""
    tok = data.tokenize(model)
    lengths = [(len(c), len(k)) for c, k in zip(tok.clean_ids, tok.corrupt_ids, strict=True)]
    names: list[str] | None = None
    if positions is not None and not isinstance(positions, str) and all(isinstance(p, str) for p in positions):
        names = tok.check_roles(positions)
    elif isinstance(positions, str):
        names = tok.check_roles([positions])
    common = len(set(lengths)) == 1 and lengths[0][0] == lengths[0][1]
    if names is None and site != "heads" and not common:
        if positions is not None or not tok.role_names[:-1]:
            raise InputError(_misaligned(data, lengths))
        names = list(tok.role_names)
    if names is None and site == "heads" and any(c != k for c, k in lengths):
        raise InputError(_misaligned(data, lengths))
    n = lengths[0][0]
    pos_c: np.ndarray | None
    pos_k: np.ndarray | None
    if names is not None:
        pos_c = np.stack([tok.roles_clean[r] for r in names], axis=1)
        pos_k = np.stack([tok.roles_corrupt[r] for r in names], axis=1)
        chosen: list[int] = []
    elif site == "heads" and positions is None:
        pos_c = pos_k = None  # every position of each example
        chosen = list(range(n)) if common else []
    else:
        if not common:
            raise InputError(_misaligned(data, lengths))
        chosen = index_list(range(n) if positions is None else positions, n, "positions", "position")
        pos_c = pos_k = np.tile(np.array(chosen), (len(data), 1))
    groups = []
    for length in sorted(set(lengths)):
        members = [i for i, ln in enumerate(lengths) if ln == length]
        idx = torch.tensor(members, dtype=torch.long)
        all_pos = torch.arange(length[1]).repeat(len(members), 1)
        groups.append(PatchGroup(
            idx, torch.tensor([tok.clean_ids[i] for i in members], dtype=torch.long),
            torch.tensor([tok.corrupt_ids[i] for i in members], dtype=torch.long),
            all_pos if pos_c is None else torch.as_tensor(pos_c[members], dtype=torch.long),
            all_pos if pos_k is None else torch.as_tensor(pos_k[members], dtype=torch.long)))
    if site == "heads":
        columns = list(range(model.n_heads))
    else:
        columns = list(range(len(names))) if names is not None else chosen
    return Plan(groups, len(data), columns, chosen, names,
                 model.decode_tokens(tok.clean_ids[0]), model.decode_tokens(tok.corrupt_ids[0]),
                 data.clean[0], data.corrupt[0], data.name, data)


def _misaligned(data: PromptPairs, lengths: list[tuple[int, int]]) -> str:
    first = lengths[0]
    odd = [i for i, ln in enumerate(lengths) if ln != first or ln[0] != ln[1]][:8]
    shown = ", ".join(f"{i} ({lengths[i][0]} clean / {lengths[i][1]} corrupt tokens)" for i in odd)
    roles = list(data.role_names)
    return (f"the examples of {data.name!r} do not line up token by token: example 0 has "
            f"{first[0]} clean / {first[1]} corrupt tokens, but examples {shown}. Patch by role "
            f"(positions= role names; this dataset has {roles}), or give examples whose clean and "
            "corrupt texts have one length.")
