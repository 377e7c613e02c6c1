"""Test-only NDIF model actor that loads and runs the model on CPU.

Runs INSIDE the NDIF stack (a Ray worker of the separate NDIF venv), never in the test
process: the stack puts this folder on the Ray workers' PYTHONPATH and selects the class
with ``NDIF_MODEL_IMPORT_PATH=cpu_deployment.CPUModelActor``.

Departure from production: ndif's ``BaseModelDeployment`` places the weights on the GPUs
the controller assigned (here one *logical* GPU, advertised with ``ray start --num-gpus=1``
on a machine without CUDA) and calls ``torch.cuda`` unconditionally. This subclass loads on
CPU and skips the CUDA bookkeeping; everything else (request deserialisation, running the
traced block, result upload, error formatting, status responses) is ndif's own code.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import ray
from ndif.services.ray.deployments.modeling.base import BaseModelDeployment
from nnsight.modeling.huggingface import HuggingFaceModel

logger = logging.getLogger("ndif.modeling")


class CPUModelDeployment(BaseModelDeployment):
    """ndif's model actor with the weights on CPU (the only change: where they live)."""

    #: Parking HOT -> WARM moves weights GPU -> CPU; on CPU there is nothing to park.
    CACHEABLE = False

    def load_from_disk(self) -> Any:
        model = HuggingFaceModel.from_model_key(
            self.model_key, dispatch=True, dtype=self.dtype_name, device="cpu", **self.kwargs
        )
        model._module.requires_grad_(False)
        logger.info(f"Loaded {self.model_key} on CPU (test-only deployment)")
        return model

    def cleanup(self) -> None:
        self.kill_switch.clear()
        self.kill_reason = None
        self.execution_ident = None
        self.model.interleaver.cancel()
        gc.collect()


@ray.remote(num_cpus=1, max_restarts=-1)
class CPUModelActor(CPUModelDeployment):
    """The Ray actor class the controller instantiates per replica."""
