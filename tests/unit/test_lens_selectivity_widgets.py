"""LogitLens and Selectivity widgets, Python side: state (shapes, dtypes, vocabulary, example
windows), validation errors, text/plain summary and the escaped offline HTML snapshot."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import traitlets

import mechscope
from mechscope.analysis.logit_lens import LogitLensResult
from mechscope.analysis.selectivity import SelectivityResult, selectivity_index
from mechscope.datasets import labelled_texts
from mechscope.errors import InputError
from mechscope.widgets import LogitLens, Selectivity, decode_array

HOSTILE = "</script><img src=x onerror=alert(1)>"


def make_lens(tokens=("a", "b", "c"), n_layers=2, k=3, target=True, vocab=None):
    """A synthetic LogitLensResult: ids cycle through ``vocab`` so strings repeat across cells."""
    vocab = list(vocab or ["x", " y", "\n", HOSTILE, "z"])
    p = len(tokens)
    ids = (np.arange(n_layers * p * k).reshape(n_layers, p, k) % len(vocab)).astype(np.int64) + 100
    probs = np.sort(np.random.default_rng(0).random((n_layers, p, k)), axis=-1)[..., ::-1] / k
    toks = np.vectorize(lambda i: vocab[i - 100], otypes=[object])(ids)
    extra = {}
    if target:
        extra = dict(target=" y", target_id=101,
                     target_prob=np.full((n_layers, p), 0.25, dtype=np.float32),
                     target_rank=np.arange(n_layers * p).reshape(n_layers, p))
    return LogitLensResult(top_ids=ids, top_probs=probs.astype(np.float32), top_tokens=toks,
                           tokens=list(tokens), layers=list(range(n_layers)), prompt="".join(tokens),
                           model_name="toy", **extra)


def make_sel(n=6, texts=None, ablation=False, classes=("a", "b")):
    """A synthetic SelectivityResult with one token activation row per token."""
    texts = texts or [(["t0", " t1", HOSTILE], "a"), (["u0", " u1"], "b"), (["v0"], "a")]
    rng = np.random.default_rng(1)
    acts = [rng.random((len(toks), n)).astype(np.float32) for toks, _ in texts]
    labels = [label for _, label in texts]
    means = np.stack([np.concatenate([a for a, lab in zip(acts, labels, strict=True) if lab == c]).mean(0)
                      for c in classes])
    index, preferred = selectivity_index(means)
    return SelectivityResult(
        classes=list(classes), class_means=means, index=index, preferred=preferred,
        texts=["".join(t) for t, _ in texts], text_labels=labels, text_tokens=[list(t) for t, _ in texts],
        token_acts=acts, layer=0, site="mlp", model_name="toy",
        floor=np.zeros(n, dtype=np.float32),
        ablation_effect=rng.normal(size=n).astype(np.float32) if ablation else None,
        ablation_metric="logit diff" if ablation else None,
    )


def snapshot_state(widget) -> dict:
    html = widget.offline_html()
    match = re.search(r"const state = (\{.*?\});\n", html)
    assert match, "state not found in the snapshot"
    return json.loads(match.group(1))


def assert_snapshot_escaped(widget):
    """The hostile token never appears raw in the HTML (only as \\u003c escapes / &lt;)."""
    html = widget.offline_html()
    assert html is not None
    assert HOSTILE not in html
    assert "<img" not in html
    assert html.count("</script>") == 1  # only the snapshot's own closing tag
    state = snapshot_state(widget)  # the escaped JSON still decodes to the literal token
    assert HOSTILE in json.dumps(state, ensure_ascii=False)
    data, _ = widget._repr_mimebundle_()
    assert "<script" not in data["text/html"] and HOSTILE not in data["text/html"]
    assert "text/plain" in data and data["text/plain"] == widget.summary()


# ---- LogitLens -----------------------------------------------------------------------------

def test_lens_state_from_tiny_model(tiny_llama):
    lens = mechscope.logit_lens(tiny_llama, "hello world, hello", top_k=4, target=" the")
    w = lens.show()
    assert isinstance(w, LogitLens)
    n_layers, n_pos = tiny_llama.n_layers, len(lens.tokens)
    assert w.shape == (n_layers, n_pos) and w.k == 4
    assert w.top_ids["dtype"] == "int32" and w.top_ids["shape"] == [n_layers, n_pos, 4]
    assert w.top_probs["dtype"] == "float16" and w.top_probs["shape"] == [n_layers, n_pos, 4]
    assert w.target_prob["dtype"] == "float32" and w.target_rank["dtype"] == "int32"
    assert w.color_mode == "target_prob"  # a target was given
    # one string per distinct id, and the ids map back to the tokens of every cell
    vocab_ids = decode_array(w.vocab_ids)
    assert len(vocab_ids) == len(w.vocab) == len(np.unique(lens.top_ids))
    names = dict(zip(vocab_ids.tolist(), w.vocab, strict=True))
    ids = decode_array(w.top_ids)
    np.testing.assert_array_equal(ids, lens.top_ids)
    assert np.vectorize(names.__getitem__, otypes=[object])(ids).tolist() == lens.top_tokens.tolist()
    np.testing.assert_allclose(decode_array(w.top_probs), lens.top_probs, rtol=2e-3, atol=1e-6)
    np.testing.assert_array_equal(decode_array(w.target_rank), lens.target_rank)
    assert w.tokens == lens.tokens and w.layer_labels == [f"L{i}" for i in lens.layers]


def test_lens_vocabulary_is_deduplicated_and_k_capped():
    lens = make_lens(tokens=list("abcdefgh"), n_layers=3, k=3)
    w = LogitLens(lens, top_k=2)
    assert len(w.vocab) == 5  # 3*8*2 cells use five distinct ids
    assert w.top_ids["shape"] == [3, 8, 2]
    assert w.vocab == [str(t) for t in ["x", " y", "\n", HOSTILE, "z"]]


def test_lens_without_target_modes():
    w = LogitLens(make_lens(target=False))
    assert w.color_mode == "top1" and w.target is None and w.target_prob == {} and w.target_rank == {}
    with pytest.raises(InputError, match="needs a target"):
        w.color_mode = "target_rank"
    with pytest.raises(InputError, match="needs a target"):
        LogitLens(make_lens(target=False), color_mode="target_prob")
    w2 = LogitLens(make_lens(target=True), color_mode="target_rank")
    w2.color_mode = "top1"
    w2.color_mode = "target_prob"


def assert_refused(widget, result, change: dict, message: str) -> None:
    """``widget(result with change)`` raises an InputError whose message matches ``message``."""
    with pytest.raises(InputError, match=message):
        widget(dataclasses.replace(result, **change))


@pytest.mark.parametrize("change, message", [
    ({"top_probs": np.zeros((2, 3, 2))}, "one shape"),
    ({"tokens": ["a", "b"]}, "labels do not match"),
    ({"layers": [0]}, "labels do not match"),
    ({"top_ids": np.zeros((2, 3)), "top_probs": np.zeros((2, 3)), "top_tokens": np.zeros((2, 3))},
     "non-empty"),
    ({"top_ids": -np.ones((2, 3, 3), dtype=np.int64)}, "non-negative"),
    ({"target_prob": np.zeros((3, 3))}, "target_prob must have shape"),
])
def test_lens_validation(change, message):
    assert_refused(LogitLens, make_lens(), change, message)


def test_lens_rejects_other_inputs():
    with pytest.raises(InputError, match="LogitLensResult"):
        LogitLens(np.zeros((2, 3)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="top_k"):
        LogitLens(make_lens(), top_k=0)
    with pytest.raises(InputError, match="color_mode"):
        LogitLens(make_lens(), color_mode="rainbow")


def test_lens_nan_and_inf_survive_the_wire():
    lens = make_lens()
    probs = lens.top_probs.copy()
    probs[0, 0, 0], probs[1, 2, 0] = np.nan, np.inf
    w = LogitLens(dataclasses.replace(lens, top_probs=probs))
    sent = decode_array(w.top_probs)
    assert np.isnan(sent[0, 0, 0]) and np.isposinf(sent[1, 2, 0])


def test_lens_summary_and_snapshot_escape_hostile_tokens():
    lens = make_lens(tokens=["The", HOSTILE, " is"])
    w = LogitLens(lens)
    text = w.summary()
    assert text.startswith("LogitLens 'logit lens: toy': 2 layers x 3 positions, top-3")
    assert "target ' y'" in text and repr(w) == text
    assert_snapshot_escaped(w)
    state = snapshot_state(w)
    assert state["tokens"][1] == HOSTILE and HOSTILE in state["vocab"]
    assert set(state) >= {"top_ids", "top_probs", "vocab_ids", "vocab", "tokens", "color_mode"}
    assert isinstance(state["top_ids"]["data"], str)  # base64 text inside the HTML


# ---- Selectivity ---------------------------------------------------------------------------

def test_selectivity_state_from_tiny_model(tiny_llama):
    sel = mechscope.selectivity(tiny_llama, labelled_texts(n_per_class=3), layer=0)
    w = sel.show(top_n=10, n_examples=3)
    assert isinstance(w, Selectivity)
    n, c = sel.n_neurons, len(sel.classes)
    assert w.shape == (c, n)
    assert w.index["dtype"] == "float16" and w.index["shape"] == [n]
    assert w.class_means["dtype"] == "float32" and w.class_means["shape"] == [c, n]
    assert w.preferred["dtype"] == "int32" and w.ablation_effect == {}
    ranked = decode_array(w.ex_neurons)
    np.testing.assert_array_equal(ranked, sel.ranked(10))
    assert w.selected == int(ranked[0])
    m, e, width = w.ex_tokens["shape"]
    assert (m, e) == (10, 3) and w.ex_acts["dtype"] == "float16" and w.ex_acts["shape"] == [m, e, width]
    # the windows hold exactly the analysis's top examples (short texts: no cropping)
    toks, acts = decode_array(w.ex_tokens), decode_array(w.ex_acts).astype(np.float32)
    cls, offset = decode_array(w.ex_class), decode_array(w.ex_offset)
    for j in (0, 9):
        for k, ex in enumerate(sel.top_examples(int(ranked[j]), n=3)):
            used = toks[j, k][toks[j, k] >= 0]
            assert [w.ex_vocab[i] for i in used] == ex.tokens
            np.testing.assert_allclose(acts[j, k, :len(used)], ex.activations, rtol=2e-3, atol=1e-3)
            assert w.classes[cls[j, k]] == ex.label and offset[j, k] == 0
    assert len(w.ex_vocab) == len(set(w.ex_vocab))


def test_selectivity_long_text_is_windowed_around_the_peak():
    long = [f"w{i}" for i in range(100)]
    res = make_sel(n=3, texts=[(long, "a"), (["b0"], "b")])
    acts = res.token_acts[0].copy()
    acts[:, :] = 0.0
    acts[70, :] = 5.0  # every neuron peaks at token 70
    res = dataclasses.replace(res, token_acts=[acts, res.token_acts[1]])
    w = Selectivity(res, window=20, n_examples=1)
    toks, acts_sent = decode_array(w.ex_tokens), decode_array(w.ex_acts)
    assert w.ex_tokens["shape"] == [3, 1, 20]
    assert decode_array(w.ex_offset)[0, 0] == 60 and decode_array(w.ex_length)[0, 0] == 100
    assert [w.ex_vocab[i] for i in toks[0, 0]] == long[60:80]
    assert acts_sent[0, 0, 10] == 5.0


def test_selectivity_ablation_and_selection():
    w = Selectivity(make_sel(ablation=True), top_n=3)
    assert w.ablation_effect["dtype"] == "float32" and w.ablation_metric == "logit diff"
    assert "logit diff" in w.summary()
    w.selected = 5  # a neuron outside the top 3 can still be selected
    with pytest.raises(InputError, match="0..5"):
        w.selected = 6
    with pytest.raises(traitlets.TraitError):
        w.selected = -1


def test_selectivity_nan_index_ranks_last_and_survives_the_wire():
    res = make_sel()
    index = res.index.copy()
    index[0] = np.nan
    w = Selectivity(dataclasses.replace(res, index=index), top_n=6)
    ranked = decode_array(w.ex_neurons)
    assert ranked[-1] == 0 and ranked[0] != 0
    assert np.isnan(decode_array(w.index)[0])


@pytest.mark.parametrize("change, message", [
    ({"index": np.zeros(5)}, "index must have shape"),
    ({"class_means": np.zeros((1, 6))}, "classes >= 2"),
    ({"classes": ["a"]}, "class names"),
    ({"preferred": np.full(6, 7)}, "class indices"),
    ({"ablation_effect": np.zeros(4)}, "ablation_effect must have shape"),
    ({"text_labels": ["a", "b"]}, "must align"),
    ({"text_labels": ["a", "b", "zzz"]}, "not among the classes"),
    ({"token_acts": [np.zeros((3, 6)), np.zeros((2, 6)), np.zeros((2, 6))]}, "token_acts\\[2\\]"),
])
def test_selectivity_validation(change, message):
    assert_refused(Selectivity, make_sel(), change, message)


def test_selectivity_rejects_other_inputs():
    with pytest.raises(InputError, match="SelectivityResult"):
        Selectivity(make_lens())  # type: ignore[arg-type]
    for kwargs in ({"top_n": 0}, {"n_examples": 0}, {"window": 2}, {"top_n": True}):
        with pytest.raises(InputError):
            Selectivity(make_sel(), **kwargs)


def test_selectivity_summary_and_snapshot_escape_hostile_tokens():
    res = make_sel(classes=("a", HOSTILE), texts=[(["t0", HOSTILE], "a"), (["u0"], HOSTILE)])
    w = Selectivity(res)
    text = w.summary()
    assert text.startswith("Selectivity 'toy layer 0 mlp: class selectivity': 6 neurons x 2 classes")
    assert "most selective: n" in text
    assert_snapshot_escaped(w)
    state = snapshot_state(w)
    assert HOSTILE in state["ex_vocab"] and state["classes"][1] == HOSTILE
    assert set(state) >= {"index", "class_means", "ex_tokens", "ex_acts", "selected"}


def test_state_stays_small_for_a_wide_layer():
    """Examples only for top_n neurons: 4096 neurons x 40 texts stays well under 1 MB."""
    rng = np.random.default_rng(0)
    n = 4096
    texts = [([f"t{i}_{j}" for j in range(12)], "ab"[i % 2]) for i in range(40)]
    res = make_sel(n=n, texts=texts)
    res = dataclasses.replace(res, token_acts=[rng.random((12, n)).astype(np.float32) for _ in texts])
    w = Selectivity(res, top_n=50)
    assert len(w.offline_html()) < 1_000_000
