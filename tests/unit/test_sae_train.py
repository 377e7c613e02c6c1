"""`mechscope.sae.train`: a planted dictionary is recovered, every architecture's loss falls,
TopK's L0 is k, BatchTopK's saved JumpReLU keeps about k, AuxK revives dead latents, decoders stay
unit norm, the input scale is folded in (a store times 10 gives the same dictionary on raw
activations), an interrupted run resumes to exactly the straight run's weights, runs are
deterministic, the data order visits each kept row once per epoch, and bad input fails before
training with a message that says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mechscope
from mechscope.analysis.collect import collect
from mechscope.analysis.store import ActivationStore, shard_name, write_manifest, write_shard
from mechscope.errors import InputError
from mechscope.sae.train import TrainResult, train
from mechscope.sae.train_data import Rows
from mechscope.widgets.sae_training import TrainingMonitor
from tests.hostile import CATALOGUE


def synthetic_store(arrays: dict[str, np.ndarray], *, positions: np.ndarray | None = None, shards: int = 1,
                    directory: Path | None = None) -> ActivationStore:
    """A store of the given (rows, width) arrays keyed "site.0" (in memory, or ``shards`` files)."""
    n = len(next(iter(arrays.values())))
    pos = (np.arange(n) % 8 + 1) if positions is None else positions
    meta = {"example": np.arange(n) // 8, "position": pos.astype(np.int64), "token": np.zeros(n, np.int64)}
    sites = [k.rsplit(".", 1)[0] for k in arrays]
    manifest = {"format": "mechscope-activations", "version": 1, "sites": sites, "layers": [0], "reduce": "all",
                "model": "synthetic", "dtype": "float32", "n_rows": n, "done_examples": 1, "n_examples": 1,
                "settings": {}, "widths": {s: int(a.shape[1]) for s, a in zip(sites, arrays.values(), strict=True)},
                "texts_sha256": "synthetic", "shards": [], "token_strings": {}}
    full = {**{k: v.astype(np.float32) for k, v in arrays.items()}, **meta}
    if directory is None:
        return ActivationStore(manifest=manifest, memory=full)
    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(n), shards)):
        write_shard(directory / shard_name(i), {k: v[rows] for k, v in full.items()})
        manifest["shards"].append({"file": shard_name(i), "rows": len(rows), "examples": [0, 1]})
    write_manifest(directory, manifest)
    return ActivationStore.open(directory)


def planted(n: int = 8192, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32 unit directions in 16 dims, 3 active per row with magnitudes in [0.5, 2], times 3, + 0.5."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(32, 16))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    idx = np.argsort(rng.random((n, 32)), axis=1)[:, :3]
    coef = np.zeros((n, 32))
    np.put_along_axis(coef, idx, rng.uniform(0.5, 2.0, size=(n, 3)), axis=1)
    return (coef @ dirs * 3 + 0.5).astype(np.float32), dirs


def fvu(sae, x: np.ndarray, y: np.ndarray | None = None) -> float:
    y = x if y is None else y
    pred = sae(x)
    return float(((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def tiny_store():
    model = mechscope.tiny_model("llama")
    texts = ["the cat sat on the mat and then it ran", "a b c d e f g h i j", "one two three four five six"] * 3
    return collect(model, texts, sites=["resid", "mlp_in", "mlp"], layers=[0, 1], progress=False)


@pytest.fixture(scope="module")
def planted_data():
    return planted()


def test_topk_recovers_a_planted_dictionary(planted_data):
    x, dirs = planted_data
    res = train(synthetic_store({"resid.0": x}), layer=0, d_sae=64, k=3, batch_size=256, epochs=30, progress=False)
    w = res.sae.W_dec.detach().numpy()
    best = np.abs(dirs @ w.T).max(axis=1)  # each true direction's best-matching decoder row
    assert best.min() > 0.9, best
    assert fvu(res.sae, x) < 0.12
    assert np.all(res.history["l0"] == 3.0)  # TopK: exactly k every step
    assert (res.sae.encode(x) > 0).sum(axis=1).max() == 3
    norms = res.sae.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


@pytest.mark.parametrize("architecture,extra", [("topk", {}), ("batchtopk", {}), ("jumprelu", {"sparsity": 0.3}),
                                                ("relu", {"sparsity": 0.5})])
def test_every_architecture_learns(tiny_store, architecture, extra):
    res = train(tiny_store, layer=1, architecture=architecture, d_sae=32, k=4, batch_size=16, epochs=6,
                progress=False, **extra)
    loss = res.history["loss"][0]
    assert loss[-5:].mean() < 0.6 * loss[:3].mean()
    sae = res.sae
    assert sae.cfg.architecture == {"batchtopk": "jumprelu"}.get(architecture, architecture)
    x = tiny_store.get("resid", 1)[tiny_store.position != 0]
    assert fvu(sae, x) < 0.7
    assert np.isclose(fvu(sae, x), res.history["fvu"][0, -5:].mean(), atol=0.25)
    norms = sae.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


@pytest.mark.parametrize("kind", ["transcoder", "skip_transcoder"])
def test_transcoders_predict_the_mlp_output(tiny_store, kind):
    res = train(tiny_store, layer=0, kind=kind, d_sae=32, k=4, batch_size=16, epochs=6, progress=False)
    sae = res.sae
    keep = tiny_store.position != 0
    x, y = tiny_store.get("mlp_in", 0)[keep], tiny_store.get("mlp", 0)[keep]
    assert (sae.cfg.site, sae.cfg.site_out, sae.cfg.kind) == ("mlp_in", "mlp", kind)
    assert fvu(sae, x, y) < 0.8
    assert ("W_skip" in sae.weights()) == (kind == "skip_transcoder")


def test_batchtopk_keeps_k_on_average_and_its_jumprelu_too(planted_data):
    x, _ = planted_data
    res = train(synthetic_store({"resid.0": x}), layer=0, architecture="batchtopk", d_sae=64, k=3,
                batch_size=256, epochs=10, progress=False)
    assert abs(res.history["l0"][0, -20:].mean() - 3.0) < 0.5
    saved = res.sae
    assert saved.cfg.architecture == "jumprelu" and saved.cfg.metadata["trained_as"] == "batchtopk"
    assert len(set(saved.threshold.detach().tolist())) == 1 and float(saved.threshold.detach()[0]) > 0
    l0 = float((saved.encode(x) > 0).sum(axis=1).mean())
    assert 1.5 < l0 < 6.0, l0


def test_auxk_trains_dead_latents_on_the_residual(planted_data):
    x, _ = planted_data
    from mechscope.sae.objectives import objective

    torch.manual_seed(0)
    p = {"W_enc": torch.randn(16, 64, requires_grad=True), "b_enc": torch.zeros(64, requires_grad=True),
         "W_dec": torch.randn(64, 16, requires_grad=True), "b_dec": torch.zeros(16, requires_grad=True)}
    xb = torch.from_numpy(x[:256])
    dead = torch.zeros(64, dtype=torch.bool)
    dead[32:] = True
    grads = {}
    for k_aux in (8, 0):
        step = objective("topk", p, xb, xb, k=3, dead=dead, k_aux=k_aux)
        grads[k_aux] = torch.autograd.grad(step.loss, p["W_dec"])[0]
        assert (step.aux_loss > 0) == (k_aux > 0)
    alive_rows = ~dead & (grads[0].abs().sum(dim=1) > 0)
    assert torch.allclose(grads[8][alive_rows], grads[0][alive_rows])  # AuxK only adds on dead rows
    only_aux = (grads[8] - grads[0]).abs().sum(dim=1)
    assert only_aux[dead].gt(0).sum() >= 8 and only_aux[~dead].max() == 0
    store = synthetic_store({"resid.0": x})
    common = dict(layer=0, d_sae=256, k=3, batch_size=256, epochs=2, dead_after=256, progress=False)
    with_aux, without = train(store, **common), train(store, k_aux=0, **common)
    assert without.history["aux_loss"].max() == 0.0 and with_aux.history["aux_loss"].max() > 0.0
    assert with_aux.history["dead_fraction"].max() > 0


def test_scale_is_folded_in(planted_data):
    x, _ = planted_data
    x = x[:2048]
    small = train(synthetic_store({"resid.0": x}), layer=0, d_sae=32, k=3, batch_size=256, epochs=2,
                  progress=False).sae
    big = train(synthetic_store({"resid.0": 10 * x}), layer=0, d_sae=32, k=3, batch_size=256, epochs=2,
                progress=False).sae
    assert np.allclose(big(10 * x), 10 * small(x), rtol=1e-3, atol=1e-3)
    y = 5 * x[:, ::-1].copy()
    tc_small = train(synthetic_store({"mlp_in.0": x, "mlp.0": y}), layer=0, kind="skip_transcoder", d_sae=32,
                     k=3, batch_size=256, epochs=2, progress=False).sae
    tc_big = train(synthetic_store({"mlp_in.0": 3 * x, "mlp.0": 7 * y}), layer=0, kind="skip_transcoder",
                   d_sae=32, k=3, batch_size=256, epochs=2, progress=False).sae
    assert np.allclose(tc_big(3 * x), 7 * tc_small(x), rtol=1e-3, atol=1e-2)


def test_deterministic_and_sparse_equals_dense(tiny_store):
    kw = dict(layer=0, d_sae=24, k=4, batch_size=16, epochs=2, seeds=(0, 3), progress=False)
    a, b = train(tiny_store, **kw), train(tiny_store, **kw)
    for sa, sb in zip(a.saes, b.saes, strict=True):
        for name, w in sa.weights().items():
            assert np.array_equal(w, sb.weights()[name])
    assert not np.array_equal(a.saes[0].weights()["W_dec"], a.saes[1].weights()["W_dec"])
    dense = train(tiny_store, sparse=False, **kw)
    assert np.allclose(dense.sae.weights()["W_dec"], a.sae.weights()["W_dec"], atol=1e-4)


class Stop(Exception):
    pass


def test_interrupted_run_resumes_exactly(tiny_store, tmp_path):
    kw = dict(layer=1, architecture="batchtopk", d_sae=24, k=4, batch_size=16, epochs=3, seeds=(0, 1),
              progress=False)
    straight = train(tiny_store, **kw)
    steps = straight.history["tokens"].shape[1]

    def stop_at(n):
        def cb(step, row):
            cb.calls += 1
            if cb.calls == n:
                raise Stop
        cb.calls = 0
        return cb

    with pytest.raises(Stop):  # first seed, between checkpoints
        train(tiny_store, out_dir=tmp_path, checkpoint_every=4, callback=stop_at(6), **kw)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-00000006.safetensors"]
    with pytest.raises(Stop):  # second seed
        train(tiny_store, out_dir=tmp_path, checkpoint_every=4, callback=stop_at(steps), **kw)
    resumed = train(tiny_store, out_dir=tmp_path, checkpoint_every=4, **kw)
    for sa, sb in zip(straight.saes, resumed.saes, strict=True):
        for name, p in sa.named_parameters():
            assert torch.equal(p, dict(sb.named_parameters())[name]), name
    for key, values in straight.history.items():
        assert np.array_equal(values, resumed.history[key]), key
    again = train(tiny_store, out_dir=tmp_path, **kw)  # finished: loads, trains nothing
    assert torch.equal(again.sae.W_dec, straight.sae.W_dec)
    with pytest.raises(InputError, match=r"what differs: k \(4 there, 5 now\)"):
        train(tiny_store, out_dir=tmp_path, **{**kw, "k": 5})


def test_epoch_order_visits_each_kept_row_once(tmp_path):
    n = 1000
    x = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
    positions = np.arange(n) % 10
    store = synthetic_store({"resid.0": x}, positions=positions, shards=3, directory=tmp_path / "s")
    rows = Rows(store, "resid.0", "resid.0", keep_first=False)
    assert rows.n_rows == 900
    ids = np.concatenate([b[0][:, 0] for b in rows.epoch(64, seed=1, epoch=0)]).astype(int)
    assert len(ids) == 64 * (900 // 64) and len(set(ids)) == len(ids)
    assert not np.any(positions[ids] == 0)
    again = np.concatenate([b[0][:, 0] for b in rows.epoch(64, seed=1, epoch=0)]).astype(int)
    other = np.concatenate([b[0][:, 0] for b in rows.epoch(64, seed=1, epoch=1)]).astype(int)
    assert np.array_equal(ids, again) and not np.array_equal(ids, other)
    kept = Rows(store, "resid.0", "resid.0", keep_first=True)
    assert kept.n_rows == n
    res = train(store, layer=0, d_sae=4, k=1, batch_size=100, keep_first=True, progress=False)
    assert res.history["tokens"][0, -1] == 1000


def test_bad_input_is_refused_before_training(tiny_store, tmp_path):
    with pytest.raises(InputError, match=r"no 'attn' activations \(it holds sites \['resid', 'mlp_in', 'mlp'\]"):
        train(tiny_store, layer=0, site="attn", progress=False)
    with pytest.raises(InputError, match=r"layer must be one of the store's layers \[0, 1\], got 5"):
        train(tiny_store, layer=5, progress=False)
    only_resid = synthetic_store({"resid.0": np.ones((40, 4))})
    with pytest.raises(InputError, match=r"a transcoder needs both its input and output sites"):
        train(only_resid, layer=0, kind="transcoder", progress=False)
    with pytest.raises(InputError, match=r"k=40 latents per row is more than d_sae=8"):
        train(tiny_store, layer=0, d_sae=8, k=40, progress=False)
    with pytest.raises(InputError, match=r"d_sae must be a positive integer, got 0"):
        train(tiny_store, layer=0, d_sae=0, progress=False)
    empty = synthetic_store({"resid.0": np.zeros((0, 4))})
    with pytest.raises(InputError, match=r"the store is empty \(0 rows\)"):
        train(empty, layer=0, progress=False)
    with pytest.raises(InputError, match=r"fewer than batch_size=4096"):
        train(tiny_store, layer=0, d_sae=8, k=2, progress=False)
    bad = np.ones((40, 4))
    bad[17, 2] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite values \(1 rows in shard 0; first at row 17: "
                                         r"example 2, position 2\)"):
        train(synthetic_store({"resid.0": bad}), layer=0, d_sae=8, k=2, batch_size=8, progress=False)
    with pytest.raises(InputError, match=r"architecture must be one of"):
        train(tiny_store, layer=0, architecture="gated", progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"is a file, not a directory"):
        train(tiny_store, layer=0, d_sae=8, k=2, batch_size=8, out_dir=tmp_path / "f", progress=False)


def test_result_table_monitor_and_hostile_title(tiny_store):
    res = train(tiny_store, layer=0, d_sae=16, k=2, batch_size=16, seeds=(0, 1), progress=False, monitor=True)
    assert isinstance(res, TrainResult) and res.sae is res.saes[0]
    frame = res.to_pandas()
    assert len(frame) == 2 * res.history["tokens"].shape[1]
    assert list(frame.columns) == ["seed", "step", "tokens", "loss", "mse", "fvu", "l0", "dead_fraction",
                                   "aux_loss"]
    assert "TrainResult(sae topk d_sae=16, seeds=[0, 1]" in repr(res)
    widget = res.show(title=CATALOGUE[0] + "".join(CATALOGUE))
    assert isinstance(widget, TrainingMonitor) and widget.seeds == [0, 1]
    assert widget.tokens["shape"] == [frame.shape[0]]
    page = widget.offline_html()
    assert page is not None and page.count("</script>") == 1 and "<script>alert" not in page
    assert "seed 1:" in widget.summary()


def test_monitor_thins_long_histories():
    n = 5000
    hist = {k: np.linspace(1, 2, n)[None] for k in ("tokens", "loss", "l0", "fvu", "dead_fraction")}
    w = TrainingMonitor.from_history((7,), hist)
    assert w.tokens["shape"] == [1000]
    with pytest.raises(InputError, match="one history per seed"):
        w.set_histories([None, None])
