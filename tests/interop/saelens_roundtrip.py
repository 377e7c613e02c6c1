"""Run by the sae-lens venv's python (build/saelens-venv, `make saelens-env`), never by mechscope's:
it imports only sae_lens, torch and numpy.

    build/saelens-venv/bin/python tests/interop/saelens_roundtrip.py WORKDIR

1. For each folder WORKDIR/from_mechscope/<name>/ (a mechscope-saved SAE), load it with
   ``sae_lens.SAE.load_from_disk`` and write sae-lens's own ``encode(X)`` and ``forward(X)`` of
   WORKDIR/X.npy there (saelens_encode.npy, saelens_out.npy).
2. Create sae-lens dictionaries (random weights, biases and thresholds; input centring on where
   sae-lens allows it), ``save_model`` each to WORKDIR/from_saelens/<name>/ with their encodings
   (encode.npy, out.npy) for mechscope to compare.
WORKDIR/versions.json gets the versions used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import sae_lens
import torch
from sae_lens import SAE
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sae_lens.saes.transcoder import (
    JumpReLUSkipTranscoder,
    JumpReLUSkipTranscoderConfig,
    JumpReLUTranscoder,
    JumpReLUTranscoderConfig,
    SkipTranscoder,
    SkipTranscoderConfig,
    Transcoder,
    TranscoderConfig,
)

D_IN, D_SAE, D_OUT, K = 16, 64, 12, 6


def _outputs(sae, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        return sae.encode(x).numpy(), sae(x).numpy()


def read_mechscope(work: Path, x: torch.Tensor) -> list[str]:
    done = []
    for folder in sorted((work / "from_mechscope").iterdir()):
        sae = SAE.load_from_disk(str(folder), device="cpu")
        f, out = _outputs(sae, x)
        np.save(folder / "saelens_encode.npy", f)
        np.save(folder / "saelens_out.npy", out)
        done.append(f"{folder.name}:{type(sae).__name__}")
    return done


def _meta(hook: str, hook_out: str | None = None) -> SAEMetadata:
    extra = {"hook_name_out": hook_out} if hook_out else {}
    return SAEMetadata(model_name="HuggingFaceTB/SmolLM2-135M", hook_name=hook, **extra)


def write_saelens(work: Path, x: torch.Tensor) -> list[str]:
    tc_hooks = ("blocks.3.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    made = {
        "standard": StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                                  metadata=_meta("blocks.3.hook_resid_post"))),
        "topk": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=True,
                                      metadata=_meta("blocks.3.hook_mlp_out"))),
        "topk_rescaled": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True,
                                               metadata=_meta("blocks.3.hook_resid_pre"))),
        "jumprelu": JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                                  metadata=_meta("blocks.3.hook_attn_out"))),
        "transcoder": Transcoder(TranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False,
                                                  metadata=_meta(*tc_hooks))),
        "skip_transcoder": SkipTranscoder(SkipTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT,
                                                               apply_b_dec_to_input=False, metadata=_meta(*tc_hooks))),
        "jumprelu_transcoder": JumpReLUTranscoder(JumpReLUTranscoderConfig(
            d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False, metadata=_meta(*tc_hooks))),
        "jumprelu_skip_transcoder": JumpReLUSkipTranscoder(JumpReLUSkipTranscoderConfig(
            d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False, metadata=_meta(*tc_hooks))),
    }
    g = torch.Generator().manual_seed(1)
    for name, sae in made.items():
        with torch.no_grad():
            for pname, p in sae.named_parameters():
                scale = 0.3 if pname.startswith("b_") else p.shape[0] ** -0.5  # O(1) activations
                p.copy_(torch.randn(p.shape, generator=g) * scale)
                if pname == "threshold":
                    p.abs_().mul_(0.5)
                if pname == "W_dec" and name == "topk_rescaled":
                    p.mul_(torch.rand(p.shape[0], 1, generator=g) + 0.5)  # non-unit decoder rows
        folder = work / "from_saelens" / name
        sae.save_model(str(folder))
        f, out = _outputs(sae, x)
        np.save(folder / "encode.npy", f)
        np.save(folder / "out.npy", out)
    return list(made)


def main() -> None:
    work = Path(sys.argv[1])
    x = torch.from_numpy(np.load(work / "X.npy")).float()
    read = read_mechscope(work, x) if (work / "from_mechscope").is_dir() else []
    written = write_saelens(work, x)
    versions = {"sae_lens": sae_lens.__version__, "torch": torch.__version__, "read": read, "written": written}
    (work / "versions.json").write_text(json.dumps(versions, indent=1))
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
