"""Public metrics module: ``mechscope.metrics.logit_diff(" Paris", " Rome")`` etc."""

from .interventions.metrics import BoundMetric, Metric, kl_to_clean, logit_diff, logprob, prob

__all__ = ["BoundMetric", "Metric", "kl_to_clean", "logit_diff", "logprob", "prob"]
