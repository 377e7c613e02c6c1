"""Training dynamics: train small models with checkpoints, measure them, find when things emerge.

Data flows: `train` (runs of checkpoints on disk) -> `measure` (a `DynamicsResult` of head
scores, neuron selectivity and behaviour per run and checkpoint) -> `emergence` (when each
metric changes, per seed, and how structure and behaviour correlate) -> ``.show()`` (the
`Dynamics` widget); `circuits_over_training` (the component circuit at every checkpoint, and
when the previous-token -> induction-head key edge forms against the loss drop). ``train`` also
takes ``regularisers`` acting on internals (`selectivity_regulariser`, Leavitt & Morcos) and a
`ClassificationTask`; `selectivity_sweep` trains an alpha x seed grid of them. Structure then
capability: `AgreementGrammar` (subject-verb agreement across relative clauses, with parses),
`train_mlm` (a tiny masked LM on it), `structure_and_capability` (syntactic attention structure
and agreement accuracy per checkpoint, and which emerges first). Features over training:
`dictionaries_over_training` (a small dictionary per checkpoint, cached), `match_features`
(optimal one-to-one matching by decoder cosine), `feature_timeline` (features matched, born,
dying, splitting) and `cross_seed_share`. `measure` takes any list of checkpoints, not only ours: local
directories, `Model` objects, or Hugging Face revisions (`hub_checkpoints`).

>>> import tempfile
>>> from mechscope import dynamics
>>> runs = dynamics.train(dynamics.InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5),
...                       seeds=(0,), n_layers=1, d_model=16, n_heads=2, steps=4,
...                       n_checkpoints=3, out_dir=tempfile.mkdtemp(), progress=False)
>>> model = dynamics.load_checkpoint(dynamics.list_checkpoints(runs.run_dirs[0])[-1].path)
>>> model.info["step"], model.n_layers
(4, 1)
"""

from .checkpoints import (
    Checkpoint,
    hub_checkpoints,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_run,
)
from .circuits import (
    Formation,
    TrainingCircuits,
    answer_logprob,
    circuits_over_training,
    induction_pairs,
)
from .classification import ClassificationTask, SelectivitySweep, selectivity_sweep
from .emergence_steps import (
    EmergenceResult,
    correlation,
    crossing,
    emergence,
    emergence_step,
    transition_window,
)
from .feature_tracking import (
    FeatureTimeline,
    TrainingDictionaries,
    dictionaries_over_training,
    dictionary_seed,
    feature_timeline,
)
from .grammar import AgreementGrammar, MinimalPair, Sentence
from .matching import CrossSeedShare, FeatureMatch, cross_seed_share, match_features
from .measurement import DynamicsResult, measure
from .metrics import (
    BEHAVIOUR,
    CheckpointMetrics,
    RepeatProbe,
    attention_and_losses,
    behaviour_from_losses,
    checkpoint_metrics,
    induction_score,
    induction_targets,
    neuron_selectivity,
    prev_token_score,
    repeat_probe,
)
from .mlm import MLMRuns, load_mlm, train_mlm
from .regularisers import SelectivityRegulariser, batch_selectivity, selectivity_regulariser
from .sas import (
    SASScore,
    StructureCapability,
    grammar_accuracy,
    sas_score,
    structure_and_capability,
)
from .tasks import InductionTask, task_tokenizer
from .training import TrainingRuns, build_model, log_schedule, train

__all__ = [
    "FeatureTimeline",
    "TrainingDictionaries",
    "dictionaries_over_training",
    "dictionary_seed",
    "feature_timeline",
    "CrossSeedShare",
    "FeatureMatch",
    "cross_seed_share",
    "match_features",
    "AgreementGrammar",
    "MinimalPair",
    "Sentence",
    "MLMRuns",
    "load_mlm",
    "train_mlm",
    "SASScore",
    "StructureCapability",
    "grammar_accuracy",
    "sas_score",
    "structure_and_capability",
    "ClassificationTask",
    "SelectivitySweep",
    "SelectivityRegulariser",
    "batch_selectivity",
    "selectivity_sweep",
    "selectivity_regulariser",
    "Formation",
    "TrainingCircuits",
    "answer_logprob",
    "circuits_over_training",
    "induction_pairs",
    "BEHAVIOUR",
    "Checkpoint",
    "CheckpointMetrics",
    "DynamicsResult",
    "EmergenceResult",
    "InductionTask",
    "RepeatProbe",
    "TrainingRuns",
    "attention_and_losses",
    "behaviour_from_losses",
    "build_model",
    "checkpoint_metrics",
    "correlation",
    "crossing",
    "emergence",
    "emergence_step",
    "hub_checkpoints",
    "induction_score",
    "induction_targets",
    "list_checkpoints",
    "load_checkpoint",
    "log_schedule",
    "measure",
    "neuron_selectivity",
    "prev_token_score",
    "repeat_probe",
    "save_checkpoint",
    "save_run",
    "task_tokenizer",
    "train",
    "transition_window",
]
