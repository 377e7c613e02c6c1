"""Public metrics module: ``mechscope.metrics.logit_diff(" Paris", " Rome")`` etc.

A metric names its tokens; `Metric.bind` checks them against a model (each must be exactly
one token), and the bound metric maps final-position logits ``(batch, vocab)`` to one number
per row, ``(batch,)``:

>>> import mechscope, torch
>>> model = mechscope.tiny_model("llama")
>>> m = mechscope.metrics.prob(" the").bind(model)
>>> uniform = torch.zeros(3, model.vocab_size)
>>> bool(torch.allclose(m(uniform), torch.full((3,), 1 / model.vocab_size)))
True
"""

from .interventions.metrics import (
    BoundMetric,
    Metric,
    answer_logit_diff,
    kl_to_clean,
    logit_diff,
    logprob,
    prob,
)

__all__ = ["BoundMetric", "Metric", "answer_logit_diff", "kl_to_clean", "logit_diff", "logprob",
           "prob"]
