"""AttentionPatterns, Python side: traits (one binary patterns array, float32 or quantised),
pooling of long prompts, validation messages, the text/plain summary and the escaped offline
snapshot with hostile tokens."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mechscope.analysis.attention import SCORES, attention
from mechscope.errors import InputError
from mechscope.models.tiny import tiny_model
from mechscope.widgets.attention import AttentionPatterns, _pool
from mechscope.widgets.traits import decode_array
from tests.hostile import CATALOGUE
from tests.hostile_attention import make

TEXT = "the cat sat on the mat, the cat sat"


@pytest.fixture(scope="module")
def att():
    return attention(tiny_model("llama", n_layers=3), TEXT)


def test_traits_carry_the_result(att):
    w = AttentionPatterns(att)
    assert w.patterns["dtype"] == "float32" and w.patterns["shape"] == list(att.patterns.shape)
    np.testing.assert_array_equal(w.array, att.patterns)
    np.testing.assert_array_equal(decode_array(w.scores), att.scores)
    np.testing.assert_array_equal(decode_array(w.ci_low), att.ci_low)
    assert w.tokens == att.tokens and w.layers == [0, 1, 2] and w.heads == [0, 1, 2, 3]
    assert w.score_names == list(SCORES) and w.score == "induction" and w.pooled == 1
    layer, head, _ = att.top_heads("induction", 1)[0]
    assert w.selected == [layer, head]  # opens on the best head of the chosen score
    assert w.hovered == [] and w.n_examples == 1 and w.induction_source == "prompt"


def test_quantised_above_the_limit_or_when_asked(att):
    w = AttentionPatterns(att, quantize=True)
    assert w.patterns["dtype"] == "uint8" and w.patterns["data"].nbytes == att.patterns.size
    step = w.patterns["scale"]["step"]
    assert step <= 1 / 250 and np.abs(w.array - att.patterns).max() <= step / 2 + 1e-6
    assert AttentionPatterns(att, quantize=False).patterns["dtype"] == "float32"


def test_long_prompt_pooled_rows_still_sum_to_one(att):
    w = AttentionPatterns(att, max_positions=5)
    n = len(att.tokens)
    block = -(-n // 5)
    assert w.pooled == block and len(w.tokens) == -(-n // block)
    np.testing.assert_allclose(w.array.sum(-1), 1, atol=1e-5)
    # block (0, 0): mean over its queries of the attention summed over its keys
    expected = att.patterns[..., :block, :block].sum(-1).mean(-1)
    np.testing.assert_allclose(w.array[..., 0, 0], expected, atol=1e-6)
    assert w.tokens[0] == f"{att.tokens[0]}…{att.tokens[block - 1]}"
    same, labels = _pool(att.patterns, att.tokens, 1)
    assert same is att.patterns and labels == att.tokens
    assert "pooled in blocks of" in w.summary()


def test_pooled_to_fit_max_cells(att):
    n = len(att.tokens)                             # 16 tokens, 3 x 4 heads
    w = AttentionPatterns(att, max_cells=12 * 8 * 8)
    assert w.pooled == 2 and w.patterns["shape"] == [3, 4, 8, 8]
    assert AttentionPatterns(att, max_cells=12 * n * n).pooled == 1
    with pytest.raises(InputError, match="max_cells must be a positive int"):
        AttentionPatterns(att, max_cells=0)


def test_dataset_example_choice():
    many = attention(tiny_model("gpt2"), ["a b a b", "the cat sat"])
    w = AttentionPatterns(many, example=1)
    np.testing.assert_array_equal(w.array, many.example_patterns[1])
    assert w.tokens == many.example_tokens[1] and w.n_examples == 2
    assert "scores over 2 examples" in w.summary()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"example": 3}, r"example must be an int in 0\.\.0, got 3"),
    ({"score": "nope"}, r"score must be one of \['previous_token'"),
    ({"max_positions": 1}, "max_positions must be an int >= 2"),
    ({"quantize": "yes"}, "quantize must be None"),
])
def test_argument_errors(att, kwargs, message):
    with pytest.raises(InputError, match=message):
        AttentionPatterns(att, **kwargs)


def test_refuses_other_results_and_bad_selection(att):
    with pytest.raises(InputError, match="AttentionPatterns takes an AttentionResult"):
        AttentionPatterns(np.zeros((1, 1, 2, 2)))  # type: ignore[arg-type]
    w = AttentionPatterns(att)
    with pytest.raises(InputError, match=r"selected must be \[layer index 0\.\.2, head index 0\.\.3\]"):
        w.selected = [3, 0]
    with pytest.raises(InputError, match="score must be one of"):
        w.score = "bogus"
    w.score = "first_token"
    w.selected = [2, 3]


def test_summary_names_the_top_heads(att):
    w = AttentionPatterns(att)
    lines = w.summary().splitlines()
    assert lines[0] == (f"AttentionPatterns '{att.model_name}: attention patterns': 3 layers x 4 heads, "
                        f"{len(att.tokens)} tokens")
    layer, head, score = att.top_heads("previous_token", 1)[0]
    assert lines[1].startswith(f"top previous_token: L{layer}H{head} {score:.2f}")
    assert len(lines) == 1 + len(SCORES)


def snapshot_state(html: str) -> dict:
    match = re.search(r"const state = (\{.*?\});\n", html)
    assert match, "state not found in the snapshot"
    return json.loads(match.group(1))


def test_snapshot_escapes_hostile_strings():
    w = make(CATALOGUE[1])
    html = w.offline_html()
    assert html is not None
    for s in CATALOGUE:
        if "<" in s or ">" in s or "&" in s:
            assert s not in html, s
    assert html.count("</script>") == 1 and "<img" not in html and "\u2028" not in html
    state = snapshot_state(html)
    assert state["tokens"] == w.tokens and state["title"] == CATALOGUE[1]
    assert state["score_names"] == w.score_names and state["induction_source"] == CATALOGUE[11]
    data, _ = w._repr_mimebundle_()
    assert "<script" not in data["text/html"] and CATALOGUE[0] not in data["text/html"]
    assert data["text/plain"] == w.summary()


def test_default_budget_fits_the_snapshot():
    """At MAX_CELLS uint8 values, base64, the state stays under the offline snapshot's limit."""
    from mechscope.widgets._base import FALLBACK_MAX_BYTES
    from mechscope.widgets.attention import MAX_CELLS, QUANTIZE_ABOVE

    assert MAX_CELLS > QUANTIZE_ABOVE and MAX_CELLS * 4 / 3 < FALLBACK_MAX_BYTES * 0.85
