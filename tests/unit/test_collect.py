"""`mechscope.analysis.collect.collect` and `ActivationStore`: values equal plain torch hooks run
one text at a time, padding never reaches a row, the forward pass stops after the last layer
needed, shards round-trip, an interrupted run resumes to exactly the uninterrupted result, bad
input fails before any forward pass, and the model is left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mechscope.analysis.collect as collect_module
from mechscope.analysis.collect import collect
from mechscope.analysis.store import ActivationStore
from mechscope.errors import InputError
from tests.helpers import model_fingerprint
from tests.reference_hooks import site_module

# different lengths, so every batch of two or more is left-padded
TEXTS = ["The cat sat on the mat", "Hi", "A dog ran across the field today", "one two",
         "Paris is lovely in spring", "x y z"]
SITES = ("resid", "resid_pre", "attn", "mlp_in", "mlp", "neurons", "heads")


# ---- an independent reference: plain forward hooks on model.hf, one unpadded text at a time ----
def reference(model, text: str, site: str, layer: int) -> np.ndarray:
    """(n_tokens, width) of ``site`` at ``layer`` for ``text`` run alone through ``model.hf``."""
    module, port = site_module(model, site, layer)
    got: dict[str, torch.Tensor] = {}

    def pre(_m, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        got["x"] = x[0].detach().clone()

    def post(_m, _a, out):
        got["x"] = (out[0] if isinstance(out, tuple) else out)[0].detach().clone()

    handle = (module.register_forward_pre_hook(pre, with_kwargs=True) if port == "pre"
              else module.register_forward_hook(post))
    try:
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            model.hf(input_ids=ids)
    finally:
        handle.remove()
    return got["x"].float().numpy()


def _run(model, texts=TEXTS, **kw):
    kw.setdefault("progress", False)
    return collect(model, texts, **kw)


# ---- values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["all", "last", "mean", "positions"])
def test_values_equal_torch_hooks_one_text_at_a_time(tiny, reduce):
    before = model_fingerprint(tiny)
    kw = {"positions": [0, -1]} if reduce == "positions" else {}
    store = _run(tiny, sites=SITES, reduce=reduce, batch_size=4, **kw)
    assert store.sites == list(SITES) and store.layers == list(range(tiny.n_layers))
    for site in SITES:
        for layer in store.layers:
            expect, ex, pos = [], [], []
            for i, text in enumerate(TEXTS):
                ref = reference(tiny, text, site, layer)
                n = len(ref)
                if reduce == "all":
                    chosen = list(range(n))
                elif reduce == "last":
                    chosen = [n - 1]
                elif reduce == "positions":
                    chosen = sorted({0, n - 1})
                if reduce == "mean":
                    expect.append(ref.mean(0, keepdims=True))
                    pos.append(-1)
                else:
                    expect.append(ref[chosen])
                    pos.extend(chosen)
                ex.extend([i] * (1 if reduce == "mean" else len(chosen)))
            got = store.get(site, layer)
            assert got.shape == (len(ex), tiny.width(site)) and got.dtype == np.float32
            np.testing.assert_allclose(got, np.concatenate(expect), atol=1e-5, rtol=0,
                                       err_msg=f"{site} L{layer}")
            assert store.example.tolist() == ex and store.position.tolist() == pos
    assert model_fingerprint(tiny) == before


def test_padding_excluded_and_rows_labelled(tiny_llama):
    store = _run(tiny_llama, layers=[1])
    n_tokens = [len(tiny_llama.str_tokens(t)) for t in TEXTS]
    assert store.n_rows == sum(n_tokens) == len(store)  # no row for any pad position
    assert np.bincount(store.example).tolist() == n_tokens
    assert store.position.tolist() == [p for n in n_tokens for p in range(n)]
    want = [tok for t in TEXTS for tok in tiny_llama.str_tokens(t)]
    assert store.tokens == want
    ids = [int(i) for t in TEXTS for i in tiny_llama.to_tokens(t)[0]]
    assert store.token_id.tolist() == ids
    frame = store.to_pandas()
    assert list(frame.columns) == ["example", "position", "token_id", "token"]
    assert frame["token"].tolist() == want and len(frame) == store.n_rows


def test_batching_does_not_change_values(tiny):
    one = _run(tiny, sites=["resid", "neurons"], batch_size=1)
    many = _run(tiny, sites=["resid", "neurons"], batch_size=6)
    tight = _run(tiny, sites=["resid", "neurons"], max_tokens_per_batch=12)
    for s in (many, tight):
        np.testing.assert_array_equal(s.example, one.example)
        for layer in one.layers:
            np.testing.assert_allclose(s.get("neurons", layer), one.get("neurons", layer), atol=1e-5)


def test_skip_first_and_role_positions(tiny_llama):
    full = _run(tiny_llama, layers=[0])
    skipped = _run(tiny_llama, layers=[0], skip_first=True)
    assert 0 not in skipped.position.tolist()
    keep = full.position != 0
    np.testing.assert_allclose(skipped.get("resid", 0), full.get("resid", 0)[keep], atol=1e-6)
    mean = _run(tiny_llama, layers=[0], reduce="mean", skip_first=True)
    first = full.get("resid", 0)[full.example == 0]
    np.testing.assert_allclose(mean.get("resid", 0)[0], first[1:].mean(0), atol=1e-5)

    def spaces(tokens):  # role positions: every token that starts with a space (else the last)
        found = [i for i, t in enumerate(tokens) if t.startswith(" ")]
        return found or [-1]

    roles = _run(tiny_llama, layers=[0], reduce="positions", positions=spaces)
    for ex, pos, tok in zip(roles.example, roles.position, roles.tokens, strict=True):
        tokens = tiny_llama.str_tokens(TEXTS[ex])
        assert tok == tokens[pos] and (tok.startswith(" ") or pos == len(tokens) - 1)
    sel = (full.example[:, None] == roles.example) & (full.position[:, None] == roles.position)
    np.testing.assert_allclose(roles.get("resid", 0), full.get("resid", 0)[sel.any(1)], atol=1e-5)


def test_float16_and_dataset_object(tiny_llama):
    class Dataset:
        texts = TEXTS[:3]

    half = _run(tiny_llama, Dataset(), dtype="float16", layers=[1])
    full = _run(tiny_llama, TEXTS[:3], layers=[1])
    assert half.get("resid", 1).dtype == np.float16
    np.testing.assert_allclose(half.get("resid", 1), full.get("resid", 1), atol=1e-2, rtol=1e-2)


# ---- the forward pass stops early ------------------------------------------------------------------
@pytest.mark.parametrize("last_site", ["resid_pre", "heads", "resid"])
def test_forward_pass_stops_after_last_layer_needed(tiny, last_site):
    calls = {"block0": 0, "block1": 0, "unembed": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1
        return hook

    handles = [
        tiny.hf_module("resid", 0).register_forward_pre_hook(count("block0")),
        tiny.hf_module("resid", 1).register_forward_pre_hook(count("block1")),
        tiny.hf_module_at(tiny.adapter.unembed_path).register_forward_pre_hook(count("unembed")),
    ]
    try:
        _run(tiny, sites=["mlp"], layers=[0], batch_size=2)
        assert calls == {"block0": 3, "block1": 0, "unembed": 0}  # 3 batches; layer 1 never ran
        _run(tiny, sites=[last_site], layers=[1], batch_size=6)
        assert calls == {"block0": 4, "block1": 1, "unembed": 0}  # nor the unembedding
    finally:
        for h in handles:
            h.remove()


# ---- remote path ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["all", "mean"])
def test_remote_local_equals_local(tiny_llama, reduce):
    local = _run(tiny_llama, sites=["resid", "heads"], reduce=reduce, batch_size=3)
    tiny_llama.remote = "local"
    try:
        sim = _run(tiny_llama, sites=["resid", "heads"], reduce=reduce, batch_size=3)
    finally:
        tiny_llama.remote = False
    for site in ("resid", "heads"):
        for layer in local.layers:
            np.testing.assert_allclose(sim.get(site, layer), local.get(site, layer), atol=1e-6)
    np.testing.assert_array_equal(sim.example, local.example)


# ---- on disk: round trip, resume, mismatches ------------------------------------------------------------
def _same(a: ActivationStore, b: ActivationStore) -> None:
    assert a.n_rows == b.n_rows and a.sites == b.sites and a.layers == b.layers
    for name in ("example", "position", "token_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.tokens == b.tokens
    for s in a.sites:
        for layer in a.layers:
            np.testing.assert_array_equal(a.get(s, layer), b.get(s, layer))  # bit for bit


def test_shards_round_trip(tiny_llama, tmp_path):
    memory = _run(tiny_llama, sites=["resid", "neurons"], batch_size=2)
    disk = _run(tiny_llama, sites=["resid", "neurons"], batch_size=2, out_dir=tmp_path, shard_rows=10)
    _same(disk, memory)
    manifest = json.loads((tmp_path / "index.json").read_text())
    assert len(manifest["shards"]) > 1 and manifest["done_examples"] == len(TEXTS)
    assert sum(s["rows"] for s in manifest["shards"]) == disk.n_rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", *(s["file"] for s in manifest["shards"])]
    reopened = ActivationStore.open(tmp_path)
    _same(reopened, memory)
    assert reopened.complete and "examples=6/6" in repr(reopened)
    # batches stream the same rows, shuffled or not
    for shuffle in (False, True):
        parts = list(reopened.batches("neurons", 1, batch_size=7, shuffle=shuffle, seed=3))
        assert all(len(p) == 7 for p in parts[:-1]) and sum(map(len, parts)) == memory.n_rows
        rows = np.concatenate(parts)
        want = memory.get("neurons", 1)
        if shuffle:
            rows, want = np.sort(rows, axis=0), np.sort(want, axis=0)
        np.testing.assert_array_equal(rows, want)
    # a finished store is returned as is: no forward pass
    calls = []
    h = tiny_llama.hf_module("resid", 0).register_forward_hook(lambda *_: calls.append(1))
    try:
        again = _run(tiny_llama, sites=["resid", "neurons"], batch_size=2, out_dir=tmp_path, shard_rows=10)
    finally:
        h.remove()
    assert calls == [] and again.n_rows == memory.n_rows


class Stop(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("where", ["progress", "manifest"])
def test_resume_after_interrupt_equals_uninterrupted(tiny_llama, tmp_path, monkeypatch, where):
    kw = {"sites": ["resid", "heads"], "batch_size": 1, "shard_rows": 8}
    whole = _run(tiny_llama, out_dir=tmp_path / "whole", **kw)
    n_shards = len(whole.manifest["shards"])
    assert n_shards >= 3
    before = model_fingerprint(tiny_llama)
    out = tmp_path / "cut"
    if where == "progress":  # Ctrl-C between batches, after 4 of 6 texts
        def progress(done, _total):
            if done == 4:
                raise Stop()
        with pytest.raises(Stop):
            _run(tiny_llama, out_dir=out, progress=progress, **kw)
    else:  # killed after shard 2 is on disk but before the manifest lists it
        real = collect_module.write_manifest
        count = {"n": 0}

        def flaky(directory, manifest):
            if len(manifest["shards"]) == 2:
                raise Stop()
            count["n"] += 1
            real(directory, manifest)
        monkeypatch.setattr(collect_module, "write_manifest", flaky)
        with pytest.raises(Stop):
            _run(tiny_llama, out_dir=out, **kw)
        monkeypatch.setattr(collect_module, "write_manifest", real)
        assert (out / "shard-00001.safetensors").exists()  # the orphan shard
    partial = ActivationStore.open(out)
    assert not partial.complete and 0 < partial.n_examples < len(TEXTS)
    assert model_fingerprint(tiny_llama) == before
    seen: list[int] = []
    resumed = _run(tiny_llama, out_dir=out, progress=lambda d, _t: seen.append(d), **kw)
    assert seen[0] > partial.n_examples  # only the rest ran
    _same(resumed, whole)
    assert resumed.manifest["shards"] == whole.manifest["shards"]
    assert np.unique(np.stack([resumed.example, resumed.position], 1), axis=0).shape[0] == resumed.n_rows
    assert not list(out.glob(".*.tmp"))
    assert model_fingerprint(tiny_llama) == before


def test_directory_of_another_run_is_refused_before_any_forward_pass(tiny_llama, tmp_path):
    _run(tiny_llama, out_dir=tmp_path, layers=[0])
    calls = []
    h = tiny_llama.hf_module("resid", 0).register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(InputError) as err:
            _run(tiny_llama, TEXTS[:-1], out_dir=tmp_path, layers=[0])
        msg = str(err.value)
        assert str(tmp_path) in msg and "texts (6 texts" in msg and "5 texts" in msg
        assert "overwrite=True" in msg
        with pytest.raises(InputError, match=r"layers \(\[0\] there, \[1\] now\)"):
            _run(tiny_llama, out_dir=tmp_path, layers=[1])
        with pytest.raises(InputError, match=r"reduce \('all' there, 'last' now\)"):
            _run(tiny_llama, out_dir=tmp_path, layers=[0], reduce="last")
        stray = tmp_path / "stray"
        stray.mkdir()
        (stray / "shard-00000.safetensors").write_bytes(b"not ours")
        with pytest.raises(InputError, match=r"holds 1 shard file\(s\) but no index.json"):
            _run(tiny_llama, out_dir=stray)
    finally:
        h.remove()
    assert calls == []
    replaced = _run(tiny_llama, out_dir=tmp_path, layers=[1], overwrite=True)
    assert replaced.layers == [1] and ActivationStore.open(tmp_path).layers == [1]


# ---- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, texts, message", [
    ({}, [], "collect got no texts (an empty dataset): give at least one text."),
    ({}, "one text", "texts must be a list of texts (or a dataset with .texts), not one string"),
    ({}, ["ok", ""], "texts[1]: the prompt is empty"),
    ({"sites": ["pattern"]}, TEXTS, "site must be one of ('resid', 'resid_pre', 'attn', 'mlp_in', 'mlp', 'neurons', 'heads') for collect"),
    ({"sites": ["resid", "resid_post"]}, TEXTS, "names the same site twice"),
    ({"layers": [5]}, TEXTS, "layer 5 is out of range"),
    ({"reduce": "max"}, TEXTS, "reduce must be one of ('all', 'last', 'mean', 'positions'), got 'max'"),
    ({"reduce": "positions"}, TEXTS, "reduce='positions' needs positions="),
    ({"reduce": "positions", "positions": [3]}, TEXTS, "position 3 is out of range: texts[1] has 2 positions"),
    ({"positions": [0]}, TEXTS, "positions= is only used with reduce='positions'"),
    ({"reduce": "last", "skip_first": True}, TEXTS, "skip_first applies to reduce='all' or 'mean'"),
    ({"reduce": "mean", "skip_first": True}, ["ab cd", "x"], "texts[1] is one token long"),
    ({"dtype": "int8"}, TEXTS, "dtype must be one of ('float32', 'float16')"),
    ({"batch_size": 0}, TEXTS, "batch_size must be a positive int, got 0."),
    ({"max_tokens_per_batch": 2.5}, TEXTS, "max_tokens_per_batch must be an int"),
])
def test_bad_input_fails_before_any_forward_pass(tiny_llama, kwargs, texts, message):
    before = model_fingerprint(tiny_llama)
    calls = []
    h = tiny_llama.hf_module("resid", 0).register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(InputError) as err:
            _run(tiny_llama, texts, **kwargs)
    finally:
        h.remove()
    assert message in str(err.value)
    assert calls == []
    assert model_fingerprint(tiny_llama) == before


def test_not_a_model():
    with pytest.raises(InputError, match="collect needs a mechscope Model"):
        collect("gpt2", TEXTS)


def test_store_errors(tiny_llama, tmp_path):
    store = _run(tiny_llama, layers=[1], reduce="last")
    with pytest.raises(InputError, match=r"layer must be one of the stored layers \[1\], got 0"):
        store.get("resid", 0)
    with pytest.raises(InputError, match="site must be one of \\('resid',\\) for this store, got 'mlp'"):
        store.get("mlp", 1)
    with pytest.raises(InputError, match="batch_size must be a positive int"):
        next(store.batches("resid", 1, batch_size=0))
    with pytest.raises(InputError, match="holds no activation store"):
        ActivationStore.open(tmp_path)
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(InputError, match="is not a mechscope activation-store manifest"):
        ActivationStore.open(tmp_path)


def test_model_unchanged_after_exception_mid_trace(tiny_llama, monkeypatch):
    before = model_fingerprint(tiny_llama)
    good = _run(tiny_llama, layers=[0])

    def boom(_value):
        raise RuntimeError("boom")
    monkeypatch.setattr(collect_module, "save", boom)
    with pytest.raises(RuntimeError, match="boom"):
        _run(tiny_llama, layers=[0])
    monkeypatch.undo()
    assert model_fingerprint(tiny_llama) == before
    np.testing.assert_array_equal(_run(tiny_llama, layers=[0]).get("resid", 0), good.get("resid", 0))
