"""`train_mlm`: tiny bidirectional masked LMs trained on `AgreementGrammar`, with checkpoints.

The model is a Hugging Face ``BertForMaskedLM`` (eager attention, no dropout, learned
positions) over the grammar's word vocabulary. Each step draws ``batch_size`` fresh sentences
and masks 15% of their tokens BERT-style (of the chosen tokens: 80% ``[MASK]``, 10% a random
word, 10% kept); the loss is cross-entropy on the chosen tokens. Runs are laid out as
`mechscope.dynamics.train`'s (``out_dir/seed{seed}/`` with ``config.json``, the tokenizer,
``run.json`` and ``checkpoints/step_N.safetensors``, by `save_run`, float32 weights); a
call finds seeds that finished before and keeps them (an interrupted seed restarts: nothing
mid-run is saved). `load_mlm` reloads a checkpoint as a ``BertForMaskedLM``.

>>> import tempfile
>>> from mechscope.dynamics.grammar import AgreementGrammar
>>> runs = train_mlm(AgreementGrammar(n_nouns=4, n_verbs=2), seeds=(0,), steps=4, n_layers=1,
...                  d_model=16, n_heads=2, d_mlp=16, n_checkpoints=3,
...                  out_dir=tempfile.mkdtemp(), progress=False)
>>> runs.steps, runs.train_loss.shape            # (seeds, steps)
([0, 1, 4], (1, 4))
>>> load_mlm(runs.checkpoints(0)[-1].path).config.num_hidden_layers
1
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .checkpoints import (
    Checkpoint,
    checkpoint_path,
    list_checkpoints,
    read_meta,
    save_run,
    write_meta,
)
from .grammar import MASK, PAD, AgreementGrammar, Sentence
from .training import _prepare_run_dir, schedule

MASK_PROB = 0.15


def grammar_tokenizer(grammar: AgreementGrammar) -> Any:
    """A word-level fast tokenizer over ``grammar.vocab`` (no special tokens added).

    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> tok = grammar_tokenizer(AgreementGrammar())
    >>> tok("the dog runs .")["input_ids"] == encode(AgreementGrammar(), ["the dog runs ."])[0][0].tolist()
    True
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(grammar.vocab)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, mask_token=MASK,
                                   unk_token=PAD)


def encode(grammar: AgreementGrammar, sentences: Sequence[Sentence | str | Sequence[str]]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (n, longest), right-padded with ``[PAD]`` (id 0).

    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> ids, mask = encode(AgreementGrammar(), ["the dog runs .", "the dogs run ."])
    >>> ids.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 4]), [4, 4])
    """
    index = {w: i for i, w in enumerate(grammar.vocab)}
    rows = []
    for s in sentences:
        words = s.words if isinstance(s, Sentence) else (s.split() if isinstance(s, str) else s)
        unknown = [w for w in words if w not in index]
        if unknown or not words:
            raise InputError(f"cannot encode {list(words)!r}: words {unknown} are not in the "
                             "grammar's vocabulary (grammar.vocab); give the grammar's sentences.")
        rows.append([index[w] for w in words])
    if not rows:
        raise InputError("no sentences to encode; give at least one.")
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def mask_tokens(ids: torch.Tensor, attention: torch.Tensor, n_vocab: int,
                generator: torch.Generator, prob: float = MASK_PROB
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: (masked ids, labels), labels -100 except at the chosen tokens.

    >>> import torch
    >>> ids = torch.full((4, 50), 5); att = torch.ones_like(ids)
    >>> masked, labels = mask_tokens(ids, att, 10, torch.Generator().manual_seed(0))
    >>> 0.05 < float((labels != -100).float().mean()) < 0.3, bool((masked == 1).any())
    (True, True)
    """
    chosen = (torch.rand(ids.shape, generator=generator) < prob) & attention.bool()
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    random_words = torch.randint(2, n_vocab, ids.shape, generator=generator)
    masked = torch.where(chosen & (roll < 0.8), torch.ones_like(ids), ids)  # [MASK] has id 1
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_words, masked)
    return masked, labels


def build_mlm(grammar: AgreementGrammar, *, seed: int = 0, n_layers: int = 2, d_model: int = 32,
              n_heads: int = 2, d_mlp: int = 64, max_len: int = 64) -> torch.nn.Module:
    """A randomly initialised ``BertForMaskedLM`` over the grammar's words (eval mode).

    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> g = AgreementGrammar()
    >>> hf = build_mlm(g, n_layers=1, d_model=16, n_heads=2, d_mlp=16)
    >>> ids, att = encode(g, ["the dog runs ."])
    >>> hf(input_ids=ids, attention_mask=att).logits.shape     # (batch, tokens, vocab)
    torch.Size([1, 4, 37])
    """
    import transformers as tf

    for name, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                        ("d_mlp", d_mlp), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an int >= 1, got {value!r}.")
    if d_model % n_heads:
        raise InputError(f"d_model {d_model} is not divisible by n_heads {n_heads}.")
    config = tf.BertConfig(
        vocab_size=len(grammar.vocab), hidden_size=d_model, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, intermediate_size=d_mlp, max_position_embeddings=max_len,
        type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    config._attn_implementation = "eager"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = tf.BertForMaskedLM(config)
    return model.eval()


def load_mlm(path: str | Path | Checkpoint, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A ``train_mlm`` checkpoint (``.../checkpoints/step_N.safetensors``) as ``BertForMaskedLM``.

    A missing file is an `InputError`:

    >>> load_mlm("no/such/step_0.safetensors")
    Traceback (most recent call last):
        ...
    mechscope.errors.InputError: no train_mlm checkpoint at 'no/such/step_0.safetensors': give a run_dir/checkpoints/step_N.safetensors file (list_checkpoints(run_dir)).
    """
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForMaskedLM

    path = Path(path.path if isinstance(path, Checkpoint) else path)
    run_dir = path.parent.parent
    if not path.is_file() or not (run_dir / "config.json").is_file():
        raise InputError(f"no train_mlm checkpoint at {str(path)!r}: give a "
                         "run_dir/checkpoints/step_N.safetensors file (list_checkpoints(run_dir)).")
    config = BertConfig.from_pretrained(run_dir)
    config._attn_implementation = "eager"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        model = BertForMaskedLM(config)
    state = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    model.to(dtype)  # type: ignore[arg-type]
    return model.eval()


@dataclass(frozen=True)
class MLMRuns:
    """Where `train_mlm` saved its runs: ``run_dirs`` (one per seed), ``steps`` (checkpoint
    steps), ``train_loss`` (seeds, steps) masked-token loss per step, ``seconds`` per seed.

    >>> import tempfile
    >>> from mechscope.dynamics.grammar import AgreementGrammar
    >>> r = train_mlm(AgreementGrammar(n_nouns=2, n_verbs=1), seeds=(0, 1), steps=2, n_layers=1,
    ...               d_model=8, n_heads=2, d_mlp=8, checkpoints=[0, 2],
    ...               out_dir=tempfile.mkdtemp(), progress=False)
    >>> r.seeds, [c.step for c in r.checkpoints(1)], r.train_loss.shape
    ([0, 1], [0, 2], (2, 2))
    """

    out_dir: Path
    run_dirs: list[Path]
    seeds: list[int]
    steps: list[int]
    train_loss: np.ndarray
    seconds: list[float]
    grammar: AgreementGrammar

    def checkpoints(self, seed_index: int = 0) -> list[Checkpoint]:
        return list_checkpoints(self.run_dirs[seed_index])

    def __repr__(self) -> str:
        return (f"MLMRuns({len(self.seeds)} seeds, {len(self.steps)} checkpoints to step "
                f"{self.steps[-1]}, {sum(self.seconds):.1f} s, in {self.out_dir})")


def _save_checkpoint(run_dir: Path, model: torch.nn.Module, step: int) -> Path:
    """float32 weights at ``step`` (tied tensors copied apart: safetensors refuses shared ones)."""
    from safetensors.torch import save_file

    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"step": str(int(step)), "dtype": "float32"})
    return path


def _train_seed(model: torch.nn.Module, grammar: AgreementGrammar, seed: int,
                hyper: dict[str, Any], saved: list[int], run_dir: Path, bar: Any) -> np.ndarray:
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hyper["lr"], weight_decay=0.01)
    curve = np.empty(hyper["steps"], dtype=np.float32)
    if 0 in saved:
        _save_checkpoint(run_dir, model, 0)
    model.train()
    try:
        for step in range(1, hyper["steps"] + 1):
            for group in optimizer.param_groups:
                group["lr"] = hyper["lr"] * min(1.0, step / max(1, hyper["warmup"]))
            ids, att = encode(grammar, [grammar.sentence(rng) for _ in range(hyper["batch_size"])])
            masked, labels = mask_tokens(ids, att, len(grammar.vocab), generator)
            loss = model(input_ids=masked, attention_mask=att, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            curve[step - 1] = float(loss.detach())
            if step in saved:
                _save_checkpoint(run_dir, model, step)
            bar.update(1)
    finally:
        model.eval()
    return curve


def train_mlm(grammar: AgreementGrammar | None = None, *, seeds: Sequence[int] = (0, 1, 2),
              steps: int = 400, batch_size: int = 32, lr: float = 3e-3, warmup: int = 20,
              n_layers: int = 2, d_model: int = 32, n_heads: int = 2, d_mlp: int = 64,
              checkpoints: str | Sequence[int] = "log", n_checkpoints: int = 16,
              out_dir: str | Path | None = None, overwrite: bool = False,
              progress: bool = True) -> MLMRuns:
    """Train one masked LM per seed on ``grammar`` (default `AgreementGrammar()`), saving
    checkpoints at log-spaced steps (``checkpoints="log"``: ``n_checkpoints`` steps, 0 and
    ``steps`` included; or ``"linear"`` or a list). Per seed, weights come from
    ``torch.manual_seed(seed)`` and sentences and masks from generators seeded with ``seed``.
    AdamW (weight decay 0.01), linear warm-up over ``warmup`` steps then constant ``lr``.
    Seeds already finished in ``out_dir`` with the same settings are kept; other checkpoints
    there are an error unless ``overwrite=True``. Shapes in `MLMRuns`.

    >>> import tempfile
    >>> runs = train_mlm(AgreementGrammar(n_nouns=4, n_verbs=2), seeds=(0, 1), steps=3, n_layers=1,
    ...                  d_model=16, n_heads=2, d_mlp=16, n_checkpoints=2,
    ...                  out_dir=tempfile.mkdtemp(), progress=False)
    >>> len(runs.run_dirs), runs.steps
    (2, [0, 3])
    """
    grammar = grammar if grammar is not None else AgreementGrammar()
    if not isinstance(grammar, AgreementGrammar):
        raise InputError(f"grammar must be an AgreementGrammar, got {type(grammar).__name__}.")
    if isinstance(seeds, int) or not len(seeds) or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct ints, e.g. seeds=(0, 1, 2); got {seeds!r}.")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an int >= 1, got {value!r}.")
    if not (isinstance(lr, int | float) and lr > 0) or warmup < 0:
        raise InputError(f"need lr > 0 and warmup >= 0, got {lr!r}, {warmup!r}.")
    saved = schedule(steps, checkpoints, n_checkpoints)
    arch = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_mlp": d_mlp}
    build_mlm(grammar, **arch)  # checks the architecture before anything is written
    hyper = {"kind": "mlm", **arch, "steps": steps, "batch_size": batch_size, "lr": lr,
             "warmup": warmup, "mask_prob": MASK_PROB}
    out = Path(out_dir).expanduser() if out_dir is not None else Path(
        tempfile.mkdtemp(prefix="mechscope-mlm-"))
    seed_list = [int(s) for s in seeds]
    run_dirs = [out / f"seed{s}" for s in seed_list]
    metas = [json.loads(json.dumps({"label": f"seed{s}", "seed": s, "task": grammar.to_dict(),
                                    **hyper, "checkpoint_steps": saved})) for s in seed_list]
    states = [_prepare_run_dir(d, m, overwrite) for d, m in zip(run_dirs, metas, strict=True)]
    from ..progress import progress as progress_bar

    bar = progress_bar(total=steps * len(seed_list), desc="training MLM", unit="step",
                       enabled=progress)
    losses, seconds = [], []
    try:
        for seed, run_dir, meta, state in zip(seed_list, run_dirs, metas, states, strict=True):
            if state == "done":
                done = read_meta(run_dir)
                losses.append(np.asarray(done["train_loss"], dtype=np.float32))
                seconds.append(float(done.get("train_seconds", 0.0)))
                bar.update(steps)
                continue
            start = time.perf_counter()
            model = build_mlm(grammar, seed=seed, **arch)
            save_run(run_dir, model, grammar_tokenizer(grammar), meta)
            curve = _train_seed(model, grammar, seed, hyper, saved, run_dir, bar)
            seconds.append(time.perf_counter() - start)
            meta.update(train_loss=[round(float(x), 5) for x in curve],
                        train_seconds=round(seconds[-1], 3))
            write_meta(run_dir, meta)
            losses.append(curve)
    finally:
        bar.close()
    return MLMRuns(out, run_dirs, seed_list, saved, np.stack(losses), seconds, grammar)
