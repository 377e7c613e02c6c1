"""mechscope.dynamics: head metrics on hand-built attention patterns, behaviour masks, patterns
read through nnsight vs HF ``output_attentions`` (eager), checkpoint save/reload equality,
training reproducibility, `measure` on every kind of source, emergence steps and correlations,
and the input errors (raised before any expensive work, with what to do about them).

Everything trains or loads models of a few thousand parameters: each test takes milliseconds.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import mechscope
from mechscope import dynamics
from mechscope.dynamics import (
    InductionTask,
    behaviour_from_losses,
    correlation,
    emergence_step,
    induction_score,
    induction_targets,
    measure,
    prev_token_score,
    train,
    transition_window,
)
from mechscope.dynamics.checkpoints import save_checkpoint, save_run
from mechscope.dynamics.metrics import attention_and_losses, behaviour_masks, repeat_probe
from mechscope.errors import InputError, ModelLoadError
from tests.helpers import model_fingerprint

SMALL = InductionTask(vocab_size=16, seq_len=12, min_span=3, max_span=5)
ARCH = dict(n_layers=2, d_model=16, n_heads=2)


def repeated(span: list[int], bos: int = 99, n: int = 2) -> np.ndarray:
    return np.array([[bos] + span * n])


def pattern_for(tokens: np.ndarray, kind: str) -> np.ndarray:
    """Causal attention patterns (batch, 1 head, n, n) of a hand-built head of ``kind``."""
    b, n = tokens.shape
    a = np.zeros((b, 1, n, n))
    targets = induction_targets(tokens)
    for bi in range(b):
        for i in range(n):
            if kind == "uniform":
                a[bi, 0, i, : i + 1] = 1.0 / (i + 1)
            elif kind == "induction":
                a[bi, 0, i, targets[bi, i] if targets[bi, i] >= 0 else 0] = 1.0
            elif kind == "previous":
                a[bi, 0, i, max(i - 1, 0)] = 1.0
            elif kind == "bos":
                a[bi, 0, i, 0] = 1.0
    return a


# ---- metrics on hand-built patterns ----------------------------------------------------------

def test_induction_targets_point_after_the_previous_occurrence():
    tokens = np.array([[9, 1, 2, 3, 1, 2, 3, 3]])
    # position 4 (token 1) last saw 1 at 1 -> attends to 2; ...; the final 3 repeats 3 at 6
    # immediately (j + 1 == i), so it is no induction query
    assert induction_targets(tokens).tolist() == [[-1, -1, -1, -1, 2, 3, 4, -1]]
    tokens = np.array([[5, 1, 5, 1, 5]])
    assert induction_targets(tokens).tolist() == [[-1, -1, 1, 2, 3]]  # the most recent one wins


def test_known_heads_score_as_defined():
    rng = np.random.default_rng(0)
    tokens = np.stack([np.concatenate([[99], s, s]) for s in
                       (rng.permutation(50)[:20] for _ in range(4))])  # (4, 41)
    heads = {k: pattern_for(tokens, k) for k in ("induction", "uniform", "previous", "bos")}
    patterns = np.concatenate(list(heads.values()), axis=1)  # (4 seqs, 4 heads, 41, 41)
    ind = induction_score(patterns, tokens)
    prev = prev_token_score(patterns)
    assert ind[0] == pytest.approx(1.0)  # a perfect induction head
    # a uniform head: the mean of 1 / (i + 1) over the 20 induction queries i = 21..40
    assert ind[1] == pytest.approx(np.mean(1.0 / (np.arange(21, 41) + 1)))
    assert ind[1] < 0.05
    assert ind[2] == 0.0 and ind[3] == 0.0  # previous-token and BOS-sink heads
    assert prev[2] == pytest.approx(1.0)
    assert prev[1] == pytest.approx(np.mean(1.0 / (np.arange(1, 41) + 1)))
    assert prev[0] < 0.1 and prev[3] == pytest.approx(1 / 40)  # BOS head: only i=1 hits i-1=0
    # leading dimensions (layers) pass through
    stacked = np.stack([patterns, patterns[:, ::-1]])
    assert induction_score(stacked, tokens).shape == (2, 4)
    np.testing.assert_allclose(induction_score(stacked, tokens)[1], ind[::-1])


def test_mixed_head_scores_its_share():
    tokens = repeated(list(range(10)))
    mixed = 0.3 * pattern_for(tokens, "induction") + 0.7 * pattern_for(tokens, "uniform")
    expect = 0.3 + 0.7 * np.mean(1.0 / (np.arange(11, 21) + 1))
    assert induction_score(mixed, tokens)[0] == pytest.approx(expect)


def test_scores_reject_mismatched_shapes():
    tokens = repeated([1, 2, 3])
    with pytest.raises(InputError, match="do not match tokens"):
        induction_score(np.zeros((1, 1, 5, 5)), tokens)
    with pytest.raises(InputError, match="queries, keys"):
        prev_token_score(np.zeros((3, 3)))
    assert np.isnan(induction_score(np.zeros((1, 2, 3, 3)), np.array([[1, 2, 3]]))).all()


def test_behaviour_masks_and_losses():
    tokens = np.array([[9, 1, 2, 3, 1, 2, 3]])  # targets are tokens 1..6
    first, rep = behaviour_masks(tokens)
    assert first.tolist() == [[True, True, True, False, False, False]]
    # losses[:, t] is the prediction made at position t: induction queries 4 and 5 predict the
    # 2 and the 3 of the repeat (query 6 predicts nothing: it is the last position)
    assert rep.tolist() == [[False, False, False, False, True, True]]
    losses = np.array([[4.0, 4.0, 4.0, 3.0, 0.5, 0.1]])
    b = behaviour_from_losses(losses, tokens)
    assert b["first_loss"] == 4.0
    assert b["repeated_loss"] == pytest.approx(0.3)
    assert b["icl_score"] == pytest.approx(0.1 - 4.0)  # last target minus the one 10% in
    with pytest.raises(InputError, match="positions - 1"):
        behaviour_from_losses(losses[:, :3], tokens)


# ---- reading real models -------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_patterns_equal_hf_eager_attentions_and_model_is_left_alone(family):
    model = mechscope.tiny_model(family)
    assert model.hf.config._attn_implementation == "sdpa"  # as loaded
    before = model_fingerprint(model)
    probe = repeat_probe(model, n_seqs=3, span_len=6)
    patterns, losses = attention_and_losses(model, probe.tokens)
    assert model.hf.config._attn_implementation == "sdpa"
    assert model_fingerprint(model) == before
    # independent reference: HF's own output_attentions on an eager copy of the model
    with torch.random.fork_rng():  # building the copy draws random initial weights
        ref = type(model.hf)(model.hf.config)
    ref.load_state_dict(model.hf.state_dict())
    ref.set_attn_implementation("eager")
    ref.eval()
    ids = torch.as_tensor(probe.tokens)
    with torch.no_grad():
        out = ref(ids, output_attentions=True)
    expect = torch.stack(out.attentions).numpy()
    assert patterns.shape == (model.n_layers, 3, model.n_heads, 12, 12)  # no BOS token
    np.testing.assert_allclose(patterns, expect, atol=1e-6)
    ref_losses = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").numpy()
    np.testing.assert_allclose(losses, ref_losses, atol=1e-5)
    m = dynamics.checkpoint_metrics(model, probe, batch_size=2)  # two traces, weighted means
    np.testing.assert_allclose(m.induction, induction_score(expect, probe.tokens), atol=1e-6)
    np.testing.assert_allclose(m.prev_token, prev_token_score(expect), atol=1e-6)
    assert model_fingerprint(model) == before


def test_repeat_probe_uses_ordinary_tokens_and_bos():
    model = dynamics.load_checkpoint(_one_checkpoint())
    probe = repeat_probe(model, n_seqs=5, span_len=4, n_repeats=3, seed=1)
    assert probe.tokens.shape == (5, 13) and probe.has_bos
    assert (probe.tokens[:, 0] == SMALL.bos_id).all()
    assert (probe.tokens[:, 1:] < SMALL.vocab_size).all()
    np.testing.assert_array_equal(probe.tokens[:, 1:5], probe.tokens[:, 9:13])
    assert all(len(set(row[1:5])) == 4 for row in probe.tokens.tolist())
    with pytest.raises(InputError, match="fewer than span_len"):
        repeat_probe(model, span_len=40)
    with pytest.raises(InputError, match="n_repeats must be an int >= 2"):
        repeat_probe(model, n_repeats=1)


# ---- training and checkpoints --------------------------------------------------------------

_CACHE: dict[str, object] = {}


def _runs(tmp_root=None):
    if "runs" not in _CACHE:
        import tempfile

        _CACHE["runs"] = train(SMALL, seeds=(0, 1, 2), **ARCH, steps=6, n_checkpoints=4,
                               out_dir=tempfile.mkdtemp(), progress=False)
    return _CACHE["runs"]


def _one_checkpoint():
    return _runs().checkpoints(0)[-1]


def test_task_samples_repeat_distinct_spans():
    batch = SMALL.sample(50, torch.Generator().manual_seed(0))
    assert batch.shape == (50, 13) and (batch[:, 0] == SMALL.bos_id).all()
    for row in batch[:, 1:].tolist():
        span = next(k for k in range(3, 6) if row[k:] == row[:-k])  # periodic with period 3..5
        assert len(set(row[:span])) == span
    with pytest.raises(InputError, match="max_span 20 exceeds vocab_size 16"):
        InductionTask(vocab_size=16, max_span=20)
    with pytest.raises(InputError, match="shorter than two spans"):
        InductionTask(vocab_size=16, seq_len=8, min_span=3, max_span=5)


def test_train_writes_a_compact_run_on_a_log_schedule(tmp_path):
    runs = train(SMALL, seeds=(3,), **ARCH, steps=20, n_checkpoints=5, out_dir=tmp_path,
                 progress=False)
    assert runs.steps == [0, 1, 4, 9, 20]
    assert runs.run_dirs == [tmp_path / "seed3"]
    files = sorted(p.name for p in (tmp_path / "seed3").iterdir())
    assert files == ["checkpoints", "config.json", "run.json", "tokenizer.json",
                     "tokenizer_config.json"]
    assert [c.step for c in runs.checkpoints(0)] == runs.steps
    meta = dynamics.checkpoints.read_meta(tmp_path / "seed3")
    assert meta["seed"] == 3 and len(meta["train_loss"]) == 20 and meta["task"]["vocab_size"] == 16
    # weights only: one safetensors file per step, no optimizer state
    n_params = sum(p.numel() for p in dynamics.build_model(SMALL, **ARCH).parameters())
    size = (tmp_path / "seed3" / "checkpoints" / "step_000020.safetensors").stat().st_size
    assert size < 4 * n_params + 4096
    assert np.isfinite(runs.train_loss).all() and runs.train_loss.shape == (1, 20)
    # the same seed trains to the same weights, bit for bit
    again = train(SMALL, seeds=(3,), **ARCH, steps=20, n_checkpoints=5, out_dir=tmp_path / "b",
                  progress=False)
    a = dynamics.load_checkpoint(runs.checkpoints(0)[-1]).hf.state_dict()
    b = dynamics.load_checkpoint(again.checkpoints(0)[-1]).hf.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(runs.train_loss, again.train_loss)


def test_checkpoint_reload_is_bitwise_equal(tmp_path):
    hf = dynamics.build_model(SMALL, seed=5, **ARCH)
    with torch.no_grad():  # weights no initialiser would produce
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_run(tmp_path, hf, dynamics.task_tokenizer(SMALL.vocab_size), {"seed": 5, "label": "x"})
    path = save_checkpoint(tmp_path, hf, step=42)
    model = dynamics.load_checkpoint(path)
    assert model.info["step"] == 42 and model.info["seed"] == 5 and model.name == "x@step42"
    state = hf.state_dict()
    loaded = model.hf.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    x = SMALL.sample(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.hf(x).logits, hf(x).logits)
    # the tokenizer round-trips the task's token names
    assert model.str_tokens("t3 t1 t15") == ["<bos>", "t3", "t1", "t15"]
    # float16 checkpoints: half the size, reload within float16 rounding
    half = save_checkpoint(tmp_path, hf, step=43, dtype="float16")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    m16 = dynamics.load_checkpoint(half)
    with torch.no_grad():
        torch.testing.assert_close(m16.hf(x).logits, hf(x).logits, atol=2e-2, rtol=0)
    # models of one run share nothing: switching one's attention leaves the other's alone
    other = dynamics.load_checkpoint(path)
    model.hf.set_attn_implementation("sdpa")
    assert other.hf.config._attn_implementation == "eager"
    # step 0 of a run is the initialisation of build_model(seed)
    runs = _runs()
    init = dynamics.load_checkpoint(runs.checkpoints(1)[0]).hf.state_dict()
    fresh = dynamics.build_model(SMALL, seed=1, **ARCH).state_dict()
    assert all(torch.equal(init[k], fresh[k]) for k in fresh)


def test_gpt2_family_trains_and_measures(tmp_path):
    runs = train(SMALL, seeds=(0,), family="gpt2", d_mlp=8, **ARCH, steps=3, n_checkpoints=2,
                 out_dir=tmp_path, progress=False)
    model = dynamics.load_checkpoint(runs.checkpoints(0)[-1])
    assert model.adapter.family == "gpt2" and model.d_mlp == 8
    result = measure(runs, n_seqs=2, neuron_examples=SMALL.labelled_texts(2, span=3),
                     progress=False)
    assert result.induction.shape == (1, 2, 2, 2) and result.selectivity.shape == (1, 2, 2, 8)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # d_mlp=0, from HF's init
def test_save_pretrained_directories_and_models_load_too(tmp_path):
    hf = dynamics.build_model(SMALL, seed=0, **ARCH)
    hf.save_pretrained(tmp_path / "step_7")
    dynamics.task_tokenizer(SMALL.vocab_size).save_pretrained(tmp_path / "step_7")
    model = dynamics.load_checkpoint(tmp_path / "step_7")
    assert model.hf.config._attn_implementation == "sdpa"  # mechscope.load's default kernel
    x = SMALL.sample(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.hf(x).logits, hf(x).logits, atol=1e-5, rtol=0)
    assert dynamics.load_checkpoint(model) is model
    with pytest.raises(InputError, match="is a whole training run"):
        dynamics.load_checkpoint(_runs().run_dirs[0])
    with pytest.raises(ModelLoadError, match="no checkpoint at"):
        dynamics.load_checkpoint(tmp_path / "nothing.bin")


def test_hub_revisions_fail_offline_with_a_clear_message():
    pairs = dynamics.hub_checkpoints("EleutherAI/pythia-70m", [0, 1000])
    assert pairs == [("EleutherAI/pythia-70m", "step0"), ("EleutherAI/pythia-70m", "step1000")]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ModelLoadError, match="(?s)step0.*HF_HUB_OFFLINE=1"):
        measure(pairs, progress=False)


def test_train_input_errors(tmp_path):
    train(SMALL, seeds=(0,), **ARCH, steps=2, n_checkpoints=2, out_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="already holds checkpoints; pass overwrite=True"):
        train(SMALL, seeds=(0,), **ARCH, steps=2, n_checkpoints=2, out_dir=tmp_path, progress=False)
    again = train(SMALL, seeds=(0,), **ARCH, steps=3, n_checkpoints=2, out_dir=tmp_path,
                  overwrite=True, progress=False)
    assert [c.step for c in again.checkpoints(0)] == [0, 3]  # the old ones are gone
    cases = [
        (dict(seeds=3), "seeds is a list of ints"),
        (dict(seeds=(1, 1)), "distinct"),
        (dict(d_model=15), "not divisible by n_heads"),
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(dtype="int8"), "dtype must be one of"),
        (dict(family="gpt2"), "needs d_mlp > 0"),
        (dict(checkpoints=[0, 99]), "must lie in 0..5"),
        (dict(family="bert"), "family must be one of"),
    ]
    for kwargs, message in cases:
        args = {**dict(seeds=(0,), **ARCH, steps=5, out_dir=tmp_path / "e", progress=False), **kwargs}
        with pytest.raises(InputError, match=message):
            train(SMALL, **args)
    assert not (tmp_path / "e").exists()  # nothing written before the checks


# ---- measure -------------------------------------------------------------------------------

def test_measure_runs_matches_per_checkpoint_metrics():
    runs = _runs()
    result = measure(runs, n_seqs=6, progress=False)
    assert result.runs == ["seed0", "seed1", "seed2"] and result.seeds == [0, 1, 2]
    assert result.steps.tolist() == runs.steps
    assert result.induction.shape == (3, len(runs.steps), 2, 2)
    assert result.behaviour.shape == (3, len(runs.steps), 3)
    assert result.probe["span_len"] == SMALL.max_span  # from the run's task
    # every cell equals checkpoint_metrics on the reloaded checkpoint
    probe = repeat_probe(dynamics.load_checkpoint(runs.checkpoints(0)[0]), n_seqs=6, span_len=5)
    for r in range(3):
        for c, ckpt in enumerate(runs.checkpoints(r)):
            m = dynamics.checkpoint_metrics(dynamics.load_checkpoint(ckpt), probe)
            np.testing.assert_array_equal(result.induction[r, c], m.induction)
            np.testing.assert_array_equal(result.prev_token[r, c], m.prev_token)
            assert result.behaviour[r, c].tolist() == pytest.approx(
                [m.behaviour[n] for n in result.metric_names])
    # curves, labels and tables
    best = result.curve("induction")
    np.testing.assert_array_equal(best, result.induction.reshape(3, -1, 4).max(-1))
    np.testing.assert_array_equal(result.curve("induction", (1, 0)), result.induction[:, :, 1, 0])
    assert result.units("prev_token")[1:] == (["L0", "L1"], ["H0", "H1"])
    table = result.to_pandas()
    assert len(table) == 3 * len(runs.steps)
    assert {"induction_max", "prev_token_max", "repeated_loss", "icl_score"} <= set(table.columns)
    assert len(result.to_pandas(heads=True)) == result.induction.size
    assert "3 runs" in repr(result)
    with pytest.raises(InputError, match="unknown metric 'nope'"):
        result.curve("nope")
    with pytest.raises(InputError, match="leave unit out"):
        result.curve("repeated_loss", (0, 0))


def test_measure_any_list_of_checkpoints_with_user_metric_and_selectivity(tmp_path):
    # a run with MLP neurons, given as a dict of lists of mixed kinds
    runs = train(SMALL, seeds=(0,), **ARCH, d_mlp=8, steps=4, n_checkpoints=3,
                 out_dir=tmp_path, progress=False)
    ckpts = runs.checkpoints(0)
    as_model = dynamics.load_checkpoint(ckpts[1])
    items = [str(ckpts[0].path), as_model, ckpts[2]]
    calls = []

    def embed_norm(model):
        calls.append(model.info["step"])
        return float(model.hf.model.embed_tokens.weight.detach().norm())

    texts = SMALL.labelled_texts(n_per_class=3, span=4)
    result = measure({"mine": items}, metrics=[embed_norm], n_seqs=4, span_len=4,
                     neuron_examples=texts, neuron_layers=[1], progress=False)
    assert result.steps.tolist() == runs.steps and result.runs == ["mine"]
    assert calls == runs.steps
    assert result.metric_names[-1] == "embed_norm"
    assert result.selectivity.shape == (1, 3, 1, 8) and result.selectivity_layers == [1]
    assert result.selectivity_classes == ["repeated", "fresh"]
    ref = mechscope.selectivity(dynamics.load_checkpoint(ckpts[2]), texts, layer=1).index
    np.testing.assert_allclose(result.selectivity[0, 2, 0], ref, atol=1e-6)
    assert result.structure_names == ["induction", "prev_token", "selectivity"]
    assert result.units("selectivity")[1] == ["L1"]
    assert result.curve("selectivity").shape == (1, 3)
    # explicit steps for checkpoints whose names carry none
    renamed = measure([as_model, as_model], steps=[10, 20], n_seqs=2, span_len=3, progress=False)
    assert renamed.steps.tolist() == [10, 20]


def test_measure_input_errors(tmp_path):
    runs = _runs()
    ckpts = runs.checkpoints(0)
    attn_only = [c.path for c in ckpts]
    cases = [
        (dict(source={"a": ckpts, "b": ckpts[:2]}), "same, non-zero number of checkpoints"),
        (dict(source={"a": ckpts[:2], "b": ckpts[1:3]}), "has checkpoint steps"),
        (dict(source=[ckpts[2], ckpts[0]]), "non-negative and increasing"),
        (dict(source=[tmp_path / "step_1", ckpts[0]]), "no checkpoint at"),
        (dict(source=[object()]), "a checkpoint is a path"),
        (dict(source=42), "measure\\(\\) takes TrainingRuns"),
        (dict(source=attn_only, neuron_examples=SMALL.labelled_texts()), "attention-only"),
        (dict(source=attn_only, neuron_layers=[0]), "neuron_layers needs neuron_examples"),
        (dict(source=attn_only, metrics={"repeated_loss": len}), "not one of"),
        (dict(source=attn_only, metrics=[lambda m: 1.0]), "Name lambdas with a dict"),
        (dict(source=attn_only, metrics={"x": 3}), "not a function"),
        (dict(source=attn_only, metrics={"x": lambda m: "high"}), "returned str 'high'"),
        (dict(source=attn_only, steps=[1, 2]), "steps has 2 entries"),
        (dict(source=attn_only, span_len=40), "fewer than span_len"),
    ]
    for kwargs, message in cases:
        source = kwargs.pop("source")
        with pytest.raises(InputError, match=message):
            measure(source, n_seqs=2, progress=False, **kwargs)


# ---- emergence ------------------------------------------------------------------------------

def sigmoid_curve(steps, centre, lo=0.0, hi=1.0, width=0.15):
    x = np.log1p(steps)
    return lo + (hi - lo) / (1 + np.exp(-(x - math.log1p(centre)) / width))


def test_emergence_step_and_window_of_rising_and_falling_curves():
    steps = np.array(dynamics.log_schedule(1000, 60))
    rising = sigmoid_curve(steps, 200)
    falling = sigmoid_curve(steps, 200, lo=4.0, hi=0.1)
    for curve in (rising, falling):
        step = emergence_step(curve, steps)
        assert step == pytest.approx(200, rel=0.05)
        lo, hi = transition_window(curve, steps)
        assert lo < step < hi
        # the window spans logit(0.2)..logit(0.8) = +-1.386 widths around the centre in log-space
        assert math.log1p(hi) - math.log1p(lo) == pytest.approx(2 * 1.386 * 0.15, rel=0.1)
        assert emergence_step(curve, steps, "max_slope") == pytest.approx(200, rel=0.1)
    assert math.isnan(emergence_step(np.ones(5), np.arange(5)))
    # a transient first: only the first crossing counts
    bump = np.array([0.0, 0.9, 0.1, 0.2, 1.0])
    assert emergence_step(bump, np.array([0, 1, 3, 7, 15])) < 1
    with pytest.raises(InputError, match="method must be one of"):
        emergence_step(rising, steps, "median")
    with pytest.raises(InputError, match="increasing"):
        emergence_step([0, 1, 2], [0, 5, 5])


def test_correlation_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x ** 3 + rng.normal(size=50) * 0.1
    c = correlation(x, y)
    assert c["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731 - no ties here
    assert c["spearman"] == pytest.approx(np.corrcoef(rank(x), rank(y))[0, 1])
    assert c["n"] == 50
    with_nan = correlation([1, 2, np.nan, 4], [1, 2, 3, 5])
    assert with_nan["n"] == 3
    assert correlation([1, 1, 2, 2], [1, 2, 3, 4])["spearman"] == pytest.approx(
        np.corrcoef([1.5, 1.5, 3.5, 3.5], [1, 2, 3, 4])[0, 1])  # ties get average ranks
    assert math.isnan(correlation([1, 2], [3, 4])["pearson"])


def synthetic_result(centres=(150, 200, 300), lag=1.0):
    """Three runs whose induction score rises at ``centre`` and loss falls at ``centre * lag``."""
    steps = np.array(dynamics.log_schedule(600, 30))
    n = len(steps)
    ind = np.zeros((3, n, 2, 2))
    beh = np.zeros((3, n, 3))
    for r, c in enumerate(centres):
        ind[r, :, 1, 0] = sigmoid_curve(steps, c, 0.04, 0.9)
        ind[r, :, 0, 1] = 0.1
        beh[r, :, 0] = 4.2
        beh[r, :, 1] = sigmoid_curve(steps, c * lag, 4.1, 0.1)
        beh[r, :, 2] = beh[r, :, 1] - 4.2
    return dynamics.DynamicsResult(
        runs=[f"seed{r}" for r in range(3)], seeds=[0, 1, 2], steps=steps,
        induction=ind.astype(np.float32), prev_token=np.zeros_like(ind, dtype=np.float32),
        behaviour=beh.astype(np.float32), metric_names=list(dynamics.BEHAVIOUR))


def test_emergence_result_across_seeds():
    em = synthetic_result().emergence()
    np.testing.assert_allclose(em.structure_steps, [150, 200, 300], rtol=0.05)
    np.testing.assert_allclose(em.behaviour_steps, [150, 200, 300], rtol=0.05)
    assert em.coincide.all()
    assert em.pearson < -0.95 and em.spearman < -0.7 and em.n_points == 3 * 27
    assert em.steps_pearson == pytest.approx(1.0, abs=1e-3)
    assert (em.structure_change > 0.75).all() and (em.behaviour_change < -3.5).all()
    table = em.to_pandas()
    assert list(table.index) == ["seed0", "seed1", "seed2"] and table["coincide"].all()
    assert "seed1: induction at step 20" in em.summary()
    late = synthetic_result(centres=(20, 30, 50), lag=3.0).emergence()  # behaviour three times later: not together
    assert not late.coincide.any()
    np.testing.assert_allclose(late.ratio, 1 / 3, rtol=0.1)
