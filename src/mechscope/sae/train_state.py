"""One seed's training state for `mechscope.sae.train`: parameters, Adam, counters, history.

Adam is written out here (not ``torch.optim``) so that its moments are plain tensors that go
into a checkpoint as arrays and come back bit for bit. One `SeedRun.step` is: objective, Adam,
decoder gradient projected off each row and rows renormalised to unit norm, dead-latent
counters, the BatchTopK threshold estimate, one history row.

>>> import torch
>>> run = SeedRun.fresh({"W_enc": torch.eye(2), "b_enc": torch.zeros(2), "W_dec": torch.eye(2),
...                      "b_dec": torch.zeros(2)}, seed=0)
>>> again = SeedRun.from_arrays(run.to_arrays(), seed=0)
>>> bool(torch.equal(again.params["W_dec"], run.params["W_dec"])), again.step
(True, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .objectives import objective, project_decoder_grad, renormalise_decoder

#: What every history row holds (besides ``tokens``).
METRICS = ("loss", "mse", "fvu", "l0", "dead_fraction", "aux_loss")
BETAS = (0.9, 0.999)
EPS = 1e-8
#: Running-average rate of BatchTopK's threshold estimate.
THRESHOLD_RATE = 0.01


@dataclass
class SeedRun:
    """The trainable tensors of one seed and everything needed to continue it exactly."""

    seed: int
    params: dict[str, torch.Tensor]
    m: dict[str, torch.Tensor]
    v: dict[str, torch.Tensor]
    since_fired: torch.Tensor  # (d_sae,) int64 tokens since each latent last fired
    threshold: float = -1.0  # batchtopk: running estimate of the smallest kept activation
    step: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def fresh(cls, params: dict[str, torch.Tensor], seed: int) -> SeedRun:
        d_sae = params["W_dec"].shape[0]
        tensors = {k: v.detach().clone().float().requires_grad_(True) for k, v in params.items()}
        return cls(seed, tensors, {k: torch.zeros_like(v) for k, v in tensors.items()},
                   {k: torch.zeros_like(v) for k, v in tensors.items()}, torch.zeros(d_sae, dtype=torch.int64),
                   history={k: [] for k in ("tokens", *METRICS)})

    # ---- one step --------------------------------------------------------------------------
    def step_on(self, x: torch.Tensor, y: torch.Tensor, *, architecture: str, lr: float,
                dead_after: int, options: dict[str, Any]) -> dict[str, float]:
        """Train on one batch; answers the history row it appended."""
        dead = self.since_fired >= dead_after
        s = objective(architecture, self.params, x, y, dead=dead, **options)
        names = list(self.params)
        grads = torch.autograd.grad(s.loss, [self.params[n] for n in names], allow_unused=True)
        with torch.no_grad():
            for name, g in zip(names, grads, strict=True):
                p = self.params[name]
                if g is None:
                    continue
                if name == "W_dec":
                    g = g - (g * p).sum(dim=1, keepdim=True) * p
                self._adam(name, g, lr)
            renormalise_decoder(self.params["W_dec"])
            self.since_fired += len(x)
            self.since_fired[s.fired] = 0
            if s.min_kept is not None:
                self.threshold = s.min_kept if self.threshold < 0 else \
                    (1 - THRESHOLD_RATE) * self.threshold + THRESHOLD_RATE * s.min_kept
        self.step += 1
        tokens = (self.history["tokens"][-1] if self.history["tokens"] else 0.0) + len(x)
        row = {"tokens": tokens, "loss": float(s.loss.detach()), "mse": s.mse, "fvu": s.fvu, "l0": s.l0,
               "dead_fraction": float((self.since_fired >= dead_after).float().mean()), "aux_loss": s.aux_loss}
        for key, value in row.items():
            self.history[key].append(float(value))
        return row

    def _adam(self, name: str, g: torch.Tensor, lr: float) -> None:
        b1, b2 = BETAS
        t = self.step + 1
        m, v = self.m[name], self.v[name]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        self.params[name].sub_(lr * m_hat / (v_hat.sqrt() + EPS))

    # ---- checkpoints -------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named numpy arrays (a safetensors checkpoint)."""
        out: dict[str, np.ndarray] = {}
        for prefix, group in (("param.", self.params), ("adam_m.", self.m), ("adam_v.", self.v)):
            for k, t in group.items():
                out[prefix + k] = t.detach().numpy().copy()
        out["since_fired"] = self.since_fired.numpy().copy()
        out["state"] = np.array([self.seed, self.step], dtype=np.int64)
        out["threshold"] = np.array([self.threshold], dtype=np.float64)
        for k, values in self.history.items():
            out["history." + k] = np.asarray(values, dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], seed: int) -> SeedRun:
        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(prefix)}

        params = {k: v.requires_grad_(True) for k, v in group("param.").items()}
        history = {k[len("history."):]: v.tolist() for k, v in arrays.items() if k.startswith("history.")}
        return cls(seed, params, group("adam_m."), group("adam_v."), torch.from_numpy(arrays["since_fired"].copy()),
                   float(arrays["threshold"][0]), int(arrays["state"][1]), history)


__all__ = ["SeedRun", "METRICS", "project_decoder_grad"]
