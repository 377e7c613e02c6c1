"""Test helpers: prove an intervention left a model exactly as it was, and that bad input is
refused before any forward pass."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def model_fingerprint(model: Any) -> dict[str, Any]:
    """Everything an intervention must leave unchanged: weights, hooks, tokenizer, RNG, modes."""
    h = hashlib.sha256()
    for name, p in sorted(model.hf.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    hooks = []
    for name, module in model.hf.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_forward_hooks_with_kwargs", "_backward_pre_hooks"):
            d = getattr(module, attr, None)
            if d:
                hooks.append((name, attr, len(d)))
    tok = model.tokenizer
    return {
        "params": h.hexdigest(),
        "requires_grad": [p.requires_grad for p in model.hf.parameters()],
        "grads": [p.grad is None for p in model.hf.parameters()],
        "training": model.hf.training,
        "hooks": hooks,
        "global_hooks": len(torch.nn.modules.module._global_forward_hooks),
        "tokenizer": (tok.padding_side, tok.pad_token, tok.truncation_side, len(tok)),
        "rng": torch.random.get_rng_state().clone().numpy().tobytes(),
    }


@contextmanager
def no_forward(model: Any) -> Iterator[list[int]]:
    """Fail if ``model.hf`` runs a forward pass inside the block (a forward pre-hook counts them;
    it is removed on the way out). Wrap ``pytest.raises(InputError, ...)`` in it to prove the
    error came before any expensive work; when the block raises, that exception propagates."""
    calls: list[int] = []
    handle = model.hf.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()
    assert calls == [], f"{len(calls)} forward pass(es) ran before the error"
