"""`mechscope.sae.dashboard_corpus.corpus_dashboards` on the tiny Llama and a small corpus folder
laid out like the real one (``manifest.json`` + one JSONL file per split): equal to a direct
`dashboards` call on the same texts, a second call served from the cache with no forward pass,
resume after an interrupt, a new key when the slice changes, and bad input refused before work."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from mechscope.errors import InputError
from mechscope.sae import SAE, features_on
from mechscope.sae import dashboard as dash
from mechscope.sae.dashboard import FeatureDashboards, dashboards
from mechscope.sae.dashboard_corpus import CONFIG, corpus_dashboards
from tests.helpers import model_fingerprint, no_forward

TEXTS = ["the cat sat on the mat", "one two three four five", "a dog ran far away from home",
         "the the the cat", "x y z", "hello world again and again", "cats and dogs", "sat on a mat",
         "far far away", "four five six seven", "home sweet home", "z"]
ARGS = ("context", "batch_size", "n_top", "n_quantiles", "per_quantile", "window", "n_logits", "n_neighbours")


def write_corpus(root: Path, texts: list[str]) -> Path:
    """A corpus folder as `mechscope.corpus.build` writes it (only what the reader needs)."""
    root.mkdir(parents=True, exist_ok=True)
    docs = [{"id": f"fake-{i}", "source": "fake", "language": "en", "genre": "prose", "tokens": len(t.split()),
             "text": t} for i, t in enumerate(texts)]
    for split, part in (("train", docs), ("heldout", docs[:1])):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in part), encoding="utf-8")
    totals = {s: {"docs": len(p), "tokens": sum(d["tokens"] for d in p)} for s, p in (("train", docs),
                                                                                     ("heldout", docs[:1]))}
    (root / "manifest.json").write_text(json.dumps({"sources": [], "totals": totals}), encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", TEXTS)


@pytest.fixture
def sae(tiny_llama):
    return SAE.random(tiny_llama.d_model, 24, layer=1, model=tiny_llama.name, seed=2)


def assert_same(a: FeatureDashboards, b: FeatureDashboards) -> None:
    for f in fields(FeatureDashboards):
        if f.name == "meta":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name
    assert a.meta["fingerprint"] == b.meta["fingerprint"]


def direct(sae, model, n: int, **override):
    settings = {**CONFIG, **override}
    texts = [t[:settings["max_chars"]] for t in TEXTS[:n]]
    return dashboards(sae, model, texts, progress=False, **{k: settings[k] for k in ARGS})


def test_equals_direct_dashboards_then_cached(tiny_llama, sae, corpus, tmp_path):
    before = model_fingerprint(tiny_llama)
    got = corpus_dashboards(tiny_llama, sae, n_texts=9, cache_dir=tmp_path / "cache", corpus_dir=corpus,
                            progress=False)
    assert_same(got, direct(sae, tiny_llama, 9))
    assert got.meta["dictionary"] == "own-resid-1" and got.meta["corpus"]["n_texts"] == 9
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name.startswith("own-resid-1-") and not (folder / "state.json").exists()
    with no_forward(tiny_llama):  # the second call reads the folder: no model run
        again = corpus_dashboards(tiny_llama, sae, n_texts=9, cache_dir=tmp_path / "cache", corpus_dir=corpus,
                                  progress=False)
    assert_same(again, got)
    assert again.meta["corpus_key"] == got.meta["corpus_key"]
    assert model_fingerprint(tiny_llama) == before


def test_more_texts_or_changed_texts_make_a_new_cache(tiny_llama, sae, corpus, tmp_path):
    cache = tmp_path / "cache"
    a = corpus_dashboards(tiny_llama, sae, n_texts=4, cache_dir=cache, corpus_dir=corpus, progress=False)
    b = corpus_dashboards(tiny_llama, sae, n_texts=5, cache_dir=cache, corpus_dir=corpus, progress=False)
    assert b.n_tokens > a.n_tokens and len(list(cache.iterdir())) == 2
    changed = write_corpus(tmp_path / "changed", ["the dog sat on the mat", *TEXTS[1:]])
    c = corpus_dashboards(tiny_llama, sae, n_texts=4, cache_dir=cache, corpus_dir=changed, progress=False)
    assert c.meta["corpus_key"] != a.meta["corpus_key"] and len(list(cache.iterdir())) == 3
    assert_same(c, dashboards(sae, tiny_llama, ["the dog sat on the mat", *TEXTS[1:4]], progress=False,
                              **{k: CONFIG[k] for k in ARGS}))


def test_resume_after_interrupt(tiny_llama, sae, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIG, "batch_size", 2)  # 6 batches of the 12 texts
    whole = direct(sae, tiny_llama, 12)

    def stop(done):
        if done == 3:
            raise KeyboardInterrupt

    cache = tmp_path / "cache"
    monkeypatch.setattr(dash, "AFTER_BATCH", [stop])
    with pytest.raises(KeyboardInterrupt):
        corpus_dashboards(tiny_llama, sae, n_texts=12, cache_dir=cache, corpus_dir=corpus, progress=False)
    (folder,) = cache.iterdir()
    assert (folder / "state.json").is_file() and not (folder / "dashboards.json").exists()
    seen: list[int] = []
    monkeypatch.setattr(dash, "AFTER_BATCH", [seen.append])
    resumed = corpus_dashboards(tiny_llama, sae, n_texts=12, cache_dir=cache, corpus_dir=corpus, progress=False)
    assert seen == [4, 5, 6]  # only the batches not yet done
    assert_same(resumed, whole)


def test_widget_and_prompt_view(tiny_llama, sae, corpus, tmp_path):
    d = corpus_dashboards(tiny_llama, sae, n_texts=6, cache_dir=tmp_path, corpus_dir=corpus, progress=False)
    assert d.show(selected=5).selected == 5
    prompt = features_on(sae, tiny_llama, "the cat sat", top=3)
    assert prompt.show(d).prompt_ids["shape"] == [len(prompt.tokens)]


def test_bad_input_before_any_work(tiny_llama, sae, corpus, tmp_path):
    cache = tmp_path / "cache"
    cases = [
        (lambda: corpus_dashboards("model", sae), "needs a mechscope Model"),
        (lambda: corpus_dashboards(tiny_llama, "resid-3", cache_dir=cache, corpus_dir=corpus),
         r"no shipped dictionary named 'resid-3': available are \['resid-15', 'resid-22', 'resid-8', "
         r"'transcoder-15'\] \(or pass an SAE of your own as name=\)"),
        (lambda: corpus_dashboards(tiny_llama, 15, cache_dir=cache, corpus_dir=corpus),
         "no shipped dictionary named 15"),
        (lambda: corpus_dashboards(tiny_llama, "resid-15", cache_dir=cache, corpus_dir=corpus),
         r"needs the embedded SmolLM2-135M-Instruct \(model = mechscope.load\(\)\), not tiny-llama-seed0; "
         "for another model pass a dictionary of its own"),
        (lambda: corpus_dashboards(tiny_llama, SAE.random(5, 8), cache_dir=cache, corpus_dir=corpus),
         "reads 5-wide"),
        (lambda: corpus_dashboards(tiny_llama, sae, n_texts=0, cache_dir=cache, corpus_dir=corpus),
         "n_texts must be at least 1, got 0"),
        (lambda: corpus_dashboards(tiny_llama, sae, n_texts="3", cache_dir=cache, corpus_dir=corpus),
         "n_texts must be an int"),
        (lambda: corpus_dashboards(tiny_llama, sae, progress="yes", cache_dir=cache, corpus_dir=corpus),
         "progress must be True or False"),
        (lambda: corpus_dashboards(tiny_llama, sae, cache_dir=cache, corpus_dir=tmp_path / "nothing"),
         r"the corpus is not built in .*nothing: run `make corpus`"),
    ]
    for call, message in cases:
        with no_forward(tiny_llama), pytest.raises(InputError, match=message):
            call()
    assert not cache.exists()


def test_no_forward_helper_catches_a_forward(tiny_llama):
    ids = tiny_llama.to_tokens("a b")
    with pytest.raises(AssertionError, match="1 forward pass"), no_forward(tiny_llama):
        tiny_llama.hf(input_ids=ids)
