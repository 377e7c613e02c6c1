"""TokenText, Python side: traits, the ragged (flattened + offsets) encoding and its round trip,
padded input, from_activations against the result, the summary, every input error's message,
and the escaped offline snapshot with hostile tokens, labels, row names and title."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import traitlets

import mechscope
from mechscope.errors import InputError
from mechscope.widgets import decode_array
from mechscope.widgets.token_text import TokenText
from tests.hostile import CATALOGUE
from tests.hostile_token_text import make

HOSTILE = "</script><img src=x onerror=alert(1)>"


def ragged():
    tokens = [["The", " cat", " sat"], [" a"], ["The", "\n", HOSTILE, " dog"]]
    rng = np.random.default_rng(0)
    act = [rng.normal(size=len(t)).astype(np.float32) for t in tokens]
    loss = [rng.random(len(t)).astype(np.float32) + 1 for t in tokens]
    return tokens, {"neuron 14:377": act, "loss": loss}


def test_traits_and_ragged_round_trip():
    tokens, values = ragged()
    w = TokenText(tokens, values, labels=["x", "y", "z"], scores=[1.0, 2.0, 3.0], title="t")
    assert w.values["dtype"] == "float32" and w.values["shape"] == [2, 8]
    assert w.offsets["dtype"] == "int32" and decode_array(w.offsets).tolist() == [0, 3, 4, 8]
    assert w.token_ids["dtype"] == "int32" and w.token_ids["shape"] == [8]
    assert w.vocab == ["The", " cat", " sat", " a", "\n", HOSTILE, " dog"]  # each string once
    assert w.rows == ["neuron 14:377", "loss"] and w.row == 0 and w.n_texts == 3
    assert decode_array(w.scores).tolist() == [1.0, 2.0, 3.0] and w.labels == ["x", "y", "z"]
    for i, toks in enumerate(tokens):
        assert w.text_tokens(i) == toks
        for name in w.rows:
            np.testing.assert_array_equal(w.text_values(i, name), values[name][i])
    flat = decode_array(w.values)
    np.testing.assert_array_equal(flat[1], np.concatenate(values["loss"]))


def test_padded_array_and_plain_list_inputs():
    tokens = [["a", "b", "c"], ["d"]]
    padded = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, np.nan]])
    w = TokenText(tokens, padded)
    assert w.rows == ["value"] and decode_array(w.values).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    w2 = TokenText(tokens, [np.array([1, 2, 3]), np.array([4])])
    assert decode_array(w2.values).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert TokenText(tokens, {"v": padded, "w": [[0, 0, 0], [1]]}).values["shape"] == [2, 4]


def test_from_activations_one_row_per_layer(tiny_llama):
    prompts = ["The cat sat", "a dog ran far"]
    results = [mechscope.activations(tiny_llama, p, site="neurons", neuron=2) for p in prompts]
    w = TokenText.from_activations(results)
    assert w.rows == [f"L{layer} neurons unit 2" for layer in results[0].layers]
    assert w.labels == prompts and w.n_texts == 2
    for i, r in enumerate(results):
        assert w.text_tokens(i) == r.tokens
        for k in range(len(r.layers)):
            np.testing.assert_allclose(w.text_values(i, k), r.values[k], rtol=0, atol=0)
    single = TokenText.from_activations(results[0])
    assert single.labels == [] and single.title == f"{tiny_llama.name}: neurons unit 2"
    norm = mechscope.activations(tiny_llama, "x y", site="resid")
    with pytest.raises(InputError, match=r"result 1 reads resid norm at layers \[0, 1\], result 0 neurons unit 2"):
        TokenText.from_activations([results[0], norm])
    with pytest.raises(InputError, match="takes an ActivationsResult"):
        TokenText.from_activations([tiny_llama])


def test_summary_names_rows_scales_and_maxima():
    w = TokenText([["a", "b"], ["c", "d"]], {"act": [[1.0, -2.0], [3.0, 0.5]], "loss": [[0.1, 0.2], [np.nan, 0.3]],
                                             "none": [[np.nan, np.nan], [np.nan, np.inf]]}, title="demo")
    assert w.summary().splitlines() == [
        "TokenText 'demo': 2 texts, 4 tokens, 3 value rows",
        "act: diverging -3..3; max 3 at text 1 position 0 'c'",
        "loss: sequential 0.1..0.3; max 0.3 at text 1 position 1 'd'",
        "none: sequential 0..1",
    ]
    assert repr(w) == w.summary()


@pytest.mark.parametrize("tokens, values, kwargs, message", [
    ([["a", "b"]], {"v": [[1.0]]}, {}, "values 'v', text 0: 2 tokens but values of shape (1,); give one value per token."),
    ([["a"], ["b", "c"]], {"v": [[1.0], [1.0]]}, {"labels": ["first", "second"]},
     "values 'v', text 1 ('second'): 2 tokens but values of shape (1,)"),
    ([["a"], ["b"]], {"v": [[1.0]]}, {}, "values 'v' must hold one array per text (2 texts), got 1."),
    ([["a", "b"], ["c"]], np.array([[1.0, 2.0], [3.0, 4.0]]), {},
     "values 'value', text 1: 1 tokens but finite values after position 0; pad with NaN"),
    ([["a", "b"]], np.zeros((1, 1)), {}, "a padded array must be (texts=1, width >= 2), got (1, 1)."),
    ([["a"]], {"v": [["x"]]}, {}, "values 'v', text 0: expected numbers"),
    ([["a"]], {}, {}, "values needs 1..64 named rows, got 0."),
    ([["a"]], 3.0, {}, "values must be a dict of row name -> one array per text"),
    ("abc", [[1.0]], {}, "tokens must be a non-empty list of texts"),
    ([], [[1.0]], {}, "tokens must be a non-empty list of texts"),
    (["ab"], [[1.0]], {}, "text 0: tokens must be a list of strings, got str."),
    ([["a", 3]], [[1.0, 2.0]], {}, "text 0: token 1 is int, not a string."),
    ([["a"]], [[1.0]], {"labels": ["x", "y"]}, "2 labels for 1 texts; give one label per text (or none)."),
    ([["a"]], [[1.0]], {"scores": [1.0, 2.0]}, "scores must be one number per text, shape (1,), got (2,)."),
])
def test_input_errors_say_what_and_which_text(tokens, values, kwargs, message):
    with pytest.raises(InputError) as err:
        TokenText(tokens, values, **kwargs)
    assert message in str(err.value)


def test_too_many_tokens_is_refused():
    with pytest.raises(InputError, match="100001 tokens in all; TokenText shows at most 100000: pass fewer texts."):
        TokenText([["a"] * 50_000, ["b"] * 50_001], [np.zeros(50_000), np.zeros(50_001)])


def test_row_is_validated():
    w = TokenText([["a"]], {"x": [[1.0]], "y": [[2.0]]})
    w.row = 1
    with pytest.raises(traitlets.TraitError, match=r"row must be a value row in 0..1, got 2"):
        w.row = 2
    with pytest.raises(InputError, match=r"row must be a value row in 0..1, got 5"):
        TokenText([["a"]], {"x": [[1.0]], "y": [[2.0]]}, row=5)


def snapshot_state(widget) -> dict:
    html = widget.offline_html()
    match = re.search(r"const state = (\{.*?\});\n", html)
    assert match, "state not found in the snapshot"
    return json.loads(match.group(1))


def test_snapshot_escapes_hostile_tokens_labels_rows_and_title():
    w = make(CATALOGUE[1])
    html = w.offline_html()
    assert html is not None
    for s in CATALOGUE:
        if any(c in s for c in "<>&\u2028\u2029"):
            assert s not in html, s
    assert "<img" not in html and "<svg" not in html and "<a " not in html
    assert html.count("</script>") == 1  # only the snapshot's own closing tag
    state = snapshot_state(w)  # the escaped JSON still decodes to the literal strings
    assert state["title"] == CATALOGUE[1] and state["rows"] == [CATALOGUE[2], CATALOGUE[9]]
    assert state["score_label"] == CATALOGUE[0] and set(state["vocab"]) <= set(CATALOGUE)
    assert all(isinstance(state[k]["data"], str) for k in ("values", "offsets", "token_ids", "scores"))
    data, _ = w._repr_mimebundle_()
    assert "<script" not in data["text/html"] and data["text/plain"] == w.summary()


def test_snapshot_size_of_many_texts():
    tokens = [[f" t{k}" for k in range(50)] for _ in range(200)]
    vals = {"a": [np.arange(50, dtype=np.float32)] * 200, "b": [-np.arange(50, dtype=np.float32)] * 200}
    w = TokenText(tokens, vals)
    html = w.offline_html()
    assert html is not None and len(html) < 300_000  # 10k tokens x 2 rows: ~107 KB of base64 values
    assert len(w.vocab) == 50
