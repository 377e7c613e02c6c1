"""Tiny random models for tests: Llama, GPT-2 and GPT-NeoX configs built in milliseconds.

The tokenizer is a byte-level BPE trained in memory, so no file is read or downloaded.

>>> m = tiny_model("gpt_neox", seed=1)
>>> m.adapter.family
'gpt_neox'
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .model import Model

FAMILIES = ("llama", "gpt2", "gpt_neox")

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "The Eiffel Tower is in the city of Paris. The Colosseum is in the city of Rome.",
    "Mechanistic interpretability studies the internals of neural networks.",
    "1 2 3 4 5 6 7 8 9 10 cats dogs birds fish horses",
    "def f(x): return x + 1  # code",
    "Le chat est sur la table. Bonjour le monde!",
    "<img src=x onerror=alert(1)> </script> javascript: \u202e emoji \U0001f600 \u4e2d\u6587",
]


@functools.lru_cache(maxsize=4)
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 400) -> Any:
    """A fast byte-level BPE tokenizer (exact unicode round-trip) built in memory."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def tiny_hf_model(family: str = "llama", *, seed: int = 0, n_layers: int = 2, d_model: int = 64,
                  n_heads: int = 4, d_mlp: int = 128, vocab_size: int = 400,
                  max_positions: int = 128) -> torch.nn.Module:
    """A randomly initialised Hugging Face causal LM of the given family."""
    import transformers as tf

    if family == "llama":
        config: Any = tf.LlamaConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_mlp,
            num_hidden_layers=n_layers, num_attention_heads=n_heads,
            num_key_value_heads=max(1, n_heads // 2), max_position_embeddings=max_positions,
            tie_word_embeddings=False,
        )
        cls: Any = tf.LlamaForCausalLM
    elif family == "gpt2":
        config = tf.GPT2Config(
            vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, n_positions=max_positions, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        )
        cls = tf.GPT2LMHeadModel
    elif family == "gpt_neox":
        config = tf.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_mlp,
            num_hidden_layers=n_layers, num_attention_heads=n_heads,
            max_position_embeddings=max_positions, hidden_dropout=0.0, attention_dropout=0.0,
        )
        cls = tf.GPTNeoXForCausalLM
    else:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {FAMILIES}")
    config.attn_implementation = "eager"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def tiny_model(family: str = "llama", *, seed: int = 0, **sizes: Any) -> Model:
    """A mechscope `Model` around a tiny random HF model and an in-memory tokenizer.

    ``family`` is one of ``FAMILIES`` ("llama", "gpt2", "gpt_neox"); ``seed`` fixes the
    weights; ``sizes`` (``n_layers``, ``d_model``, ``n_heads``, ``d_mlp``, ``vocab_size``,
    ``max_positions``) override the defaults (2, 64, 4, 128, 400, 128). Nothing is downloaded.

    >>> import mechscope, torch
    >>> model = mechscope.tiny_model("llama", n_layers=3)
    >>> model.name, model.n_layers, model.d_mlp, model.vocab_size
    ('tiny-llama-seed0', 3, 128, 400)
    >>> ids = model.to_tokens("The cat")                           # (1, n_tokens)
    >>> again = mechscope.tiny_model("llama", n_layers=3)          # same seed, same weights
    >>> bool(torch.equal(model.hf(ids).logits, again.hf(ids).logits))
    True
    """
    vocab = sizes.get("vocab_size", 400)
    hf = tiny_hf_model(family, seed=seed, **sizes)
    return Model.wrap(hf, tiny_tokenizer(vocab), name=f"tiny-{family}-seed{seed}")
