"""Sparse dictionary features: sparse autoencoders and transcoders on a model's sites.

`SAE` (one dictionary; `mechscope.sae.dictionary`), with its maths in torch and numpy;
`evaluate` (L0, FVU, CE recovered, KL, dead and dense latents; `mechscope.sae.evaluation`);
`Splice` / `spliced_logits` (a dictionary in the forward pass, error term optional);
`load` / `save` (SAELens, sparsify, Gemma Scope, dictionary_learning files; `mechscope.sae.formats`).

>>> import mechscope
>>> sae = mechscope.sae.SAE.random(d_in=16, d_sae=64, architecture="topk", k=8)
>>> sae.cfg.d_sae
64
"""

from .dashboard import FeatureCard, FeatureDashboards, dashboards
from .dashboard_corpus import corpus_dashboards
from .dashboard_prompt import PromptFeatures, features_on
from .dictionary import ARCHITECTURES, KINDS, SAE, SAEConfig
from .evaluation import SAEEvaluation, evaluate
from .formats import load, save
from .interventions import (
    FeatureEdit,
    SideEffects,
    ablate,
    clamp,
    feature_generate,
    feature_generate_sweep,
    feature_playground,
    side_effects,
    steer,
)
from .search import (
    PromotingFeatures,
    SeparatingFeatures,
    TopFeatures,
    promoting_features,
    separating_features,
    top_features,
)
from .shipped import embedded
from .splice import Splice, check_fits, spliced_logits
from .train import TrainResult, train
from .transcoders import embedded_transcoders

__all__ = ["SAE", "SAEConfig", "ARCHITECTURES", "KINDS", "SAEEvaluation", "evaluate", "Splice", "check_fits",
           "spliced_logits", "load", "save", "TrainResult", "train",
           "FeatureEdit", "SideEffects", "ablate", "clamp", "feature_generate", "feature_generate_sweep",
           "feature_playground", "side_effects", "steer", "PromotingFeatures", "SeparatingFeatures", "TopFeatures",
           "promoting_features", "separating_features", "top_features", "embedded", "FeatureCard", "FeatureDashboards", "dashboards",
           "PromptFeatures", "features_on", "embedded_transcoders", "corpus_dashboards"]
