"""PatchingMap widget, Python side, and the single-cell re-run behind its click.

State (dtypes, labels, modes), the click round trip driven by ``select`` requests as the live
front end sends them (and by setting ``selected``, as a selection from Python does), `patch_cell` against the sweep and against plain torch hooks (model left untouched),
validation messages, text/plain and the escaped offline snapshot.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re

import numpy as np
import pytest
import torch

import mechscope
from mechscope.errors import InputError
from mechscope.interventions.patching import CellPatch, PatchingResult, cell_rerun, patch_cell
from mechscope.metrics import logit_diff, prob
from mechscope.widgets import decode_array
from mechscope.widgets.patching_map import FLOAT32_MAX_CELLS, MAX_COLS, PatchingMap
from tests.helpers import model_fingerprint
from tests.reference_hooks import capture, patched_logits

CLEAN = "The cat sat on the"
CORRUPT = "The dog sat on the"
METRIC = logit_diff(" the", " of")
HOSTILE = "</script><img src=x onerror=alert(1)>"


def _patch(model, **kw):
    return mechscope.patch(model, CLEAN, CORRUPT, METRIC, progress=False, **kw)


def synthetic(values=None, clean_metric=2.0, corrupt_metric=0.0, **kw) -> PatchingResult:
    values = np.array([[0.0, 0.5, -1.0], [1.0, np.nan, 2.0]], dtype=np.float32) if values is None else values
    rows, cols = values.shape
    fields = dict(
        values=values, clean_metric=clean_metric, corrupt_metric=corrupt_metric,
        clean_tokens=["The", HOSTILE, " x"][:cols] + [f"t{i}" for i in range(cols - 3)],
        corrupt_tokens=["The", " cat", " x"][:cols] + [f"t{i}" for i in range(cols - 3)],
        layers=list(range(rows)), columns=list(range(cols)), positions=list(range(cols)),
        site="resid", method="exact", metric_name="m", clean_prompt="The" + HOSTILE + " x",
        corrupt_prompt="The cat x", model_name="toy",
    )
    fields.update(kw)
    return PatchingResult(**fields)


def snapshot_state(widget) -> dict:
    match = re.search(r"const state = (\{.*?\});\n", widget.offline_html())
    assert match, "state not found in the snapshot"
    return json.loads(match.group(1))


# ---- state -----------------------------------------------------------------------------------
def test_state_from_tiny_model(tiny_llama):
    r = _patch(tiny_llama)
    w = r.show()
    assert isinstance(w, PatchingMap) and w.result is r
    n_layers, n_pos = r.values.shape
    assert w.shape == (n_layers, n_pos)
    assert w.effect["dtype"] == "float32" and w.effect["shape"] == [n_layers, n_pos]
    np.testing.assert_allclose(decode_array(w.effect), r.values - r.corrupt_metric, atol=1e-6)
    assert w.clean_metric == pytest.approx(r.clean_metric) and w.corrupt_metric == pytest.approx(r.corrupt_metric)
    assert w.metric_name == "logit_diff(' the', ' of')"
    assert w.row_labels == ["L0", "L1"] and w.col_labels == r.column_labels
    assert w.col_clean == r.clean_tokens and w.col_corrupt == r.corrupt_tokens
    assert w.columns == r.columns and w.column_kind == "position" and w.positions_text == ""
    assert w.clean_prompt == CLEAN and w.corrupt_prompt == CORRUPT
    assert w.title == "tiny-llama-seed0: exact patching of resid"
    assert w.normalized and w.can_normalize and not w.live
    assert w.selected == [] and w.detail == {}
    np.testing.assert_allclose(w.array, r.normalized(), atol=1e-5)
    assert w.colorscale == "diverging" and w.vmin == -w.vmax == pytest.approx(-np.abs(r.normalized()).max())


def test_heads_state(tiny_llama):
    r = _patch(tiny_llama, site="heads", positions=[2])
    w = r.show(normalized=False)
    assert w.column_kind == "head" and w.col_labels == ["H0", "H1", "H2", "H3"]
    assert w.col_clean == [] and w.positions_text == "[2]"
    assert "positions [2]" in w.title
    assert not w.normalized and w.value_label.endswith("- corrupt")
    np.testing.assert_allclose(w.array, r.values - r.corrupt_metric, atol=1e-6)


def test_normalised_raw_toggle_and_when_clean_equals_corrupt(tiny_llama):
    w = PatchingMap(synthetic())
    np.testing.assert_allclose(w.array, [[0, 0.25, -0.5], [0.5, np.nan, 1]])
    assert w.vmax == 1.0 and "normalised" in w.value_label
    w.normalized = False  # what the front end's select does
    np.testing.assert_allclose(w.array, [[0, 0.5, -1], [1, np.nan, 2]])
    assert w.vmin == -2.0 and w.value_label == "m - corrupt"
    same = mechscope.patch(tiny_llama, CLEAN, CLEAN, prob(" the"), progress=False).show()
    assert not same.can_normalize and not same.normalized and "- corrupt" in same.value_label
    with pytest.raises(InputError, match="cannot be normalised"):
        same.normalized = True


def test_float16_above_the_threshold_and_size_cap():
    rows, cols = 20, FLOAT32_MAX_CELLS // 20 + 1
    values = np.sin(np.arange(rows * cols, dtype=np.float64)).reshape(rows, cols) * 3
    w = PatchingMap(synthetic(values=values))
    assert w.effect["dtype"] == "float16" and len(bytes(w.effect["data"])) == rows * cols * 2
    np.testing.assert_allclose(decode_array(w.effect), values, rtol=1e-3, atol=2e-3)
    assert len(w.offline_html()) < 200_000  # 16k cells: the snapshot stays small
    with pytest.raises(InputError, match=r"too large to draw cell by cell .* patch a subset"):
        PatchingMap(synthetic(values=np.zeros((2, MAX_COLS + 1))))


# ---- the click round trip ----------------------------------------------------------------------
@pytest.mark.parametrize("site", ["resid", "attn", "mlp", "heads"])
def test_click_reruns_the_cell_equal_to_the_sweep(tiny_llama, site):
    before = model_fingerprint(tiny_llama)
    r = _patch(tiny_llama, site=site)
    w = r.show(model=tiny_llama, top_k=3)
    assert w.live
    rows, cols = r.values.shape
    for i, j in [(0, 1), (rows - 1, cols - 1), (1, 0)]:
        w.selected = [i, j]  # as a click in the front end does
        d = w.detail
        assert d["kind"] == "rerun" and d["cell"] == [i, j]
        assert d["value"] == pytest.approx(float(r.values[i, j]), abs=1e-5)
        assert d["sweep_value"] == pytest.approx(float(r.values[i, j]), abs=1e-7)
        assert d["corrupt_metric"] == pytest.approx(r.corrupt_metric, abs=1e-5)
        assert d["clean_metric"] == pytest.approx(r.clean_metric, abs=1e-5)
        assert d["normalized"] == pytest.approx(float(r.normalized()[i, j]), abs=1e-4)
        assert d["layer"] == r.layers[i] and d["column"] == r.columns[j]
        assert d["column_kind"] == r.column_kind
        for side in ("before", "after", "clean"):
            assert len(d[side]["tokens"]) == 3 and len(d[side]["probs"]) == 3
            assert d[side]["logits"] == sorted(d[side]["logits"], reverse=True)
        json.dumps(d, allow_nan=False)  # travels as JSON
    assert model_fingerprint(tiny_llama) == before


def test_rerun_top_tokens_equal_plain_torch_hooks(tiny_llama):
    """The re-run's logits before/after/clean against plain HF forwards with one hook."""
    before = model_fingerprint(tiny_llama)
    cell = patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, "resid", 0, 1, top_k=5)
    ref_after = patched_logits(tiny_llama, CORRUPT, "resid", 0, [1], capture(tiny_llama, CLEAN, "resid", 0))
    ids = tiny_llama.tokenizer(CORRUPT, return_tensors="pt")["input_ids"]
    clean_ids = tiny_llama.tokenizer(CLEAN, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref_before = tiny_llama.hf(input_ids=ids).logits[0, -1].float()
        ref_clean = tiny_llama.hf(input_ids=clean_ids).logits[0, -1].float()
    for got, ref in ((cell.after, ref_after), (cell.before, ref_before), (cell.clean, ref_clean)):
        top = torch.topk(ref, 5)
        assert got.ids == top.indices.tolist()
        np.testing.assert_allclose(got.logits, top.values.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.probs, torch.softmax(ref, -1)[top.indices].numpy(), atol=1e-6)
        assert got.tokens == [tiny_llama.tokenizer.decode([i]) for i in got.ids]
    g, b = tiny_llama.to_single_token(" the"), tiny_llama.to_single_token(" of")
    assert cell.value == pytest.approx(float(ref_after[g] - ref_after[b]), abs=1e-5)
    assert model_fingerprint(tiny_llama) == before


def test_patch_cell_remote_local_equals_local(tiny_llama):
    """The top-k saved inside the trace survives nnsight's serialise/deserialise path."""
    local = patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, "heads", 1, 2, top_k=3)
    tiny_llama.remote = "local"
    try:
        sim = patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, "heads", 1, 2, top_k=3)
    finally:
        tiny_llama.remote = False
    assert sim.value == pytest.approx(local.value, abs=1e-6)
    assert sim.after.ids == local.after.ids and sim.before.ids == local.before.ids
    np.testing.assert_allclose(sim.after.probs, local.after.probs, atol=1e-7)


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_patch_cell_equals_every_sweep_cell(tiny_llama, site):
    r = _patch(tiny_llama, site=site)
    for i, layer in enumerate(r.layers):
        for j, col in enumerate(r.columns):
            cell = patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, site, layer, col, top_k=1)
            assert abs(cell.value - float(r.values[i, j])) < 1e-5, (layer, col)
    assert isinstance(cell, CellPatch) and cell.column_kind == r.column_kind


def test_patch_cell_heads_positions_and_negative_indices(tiny_llama):
    r = _patch(tiny_llama, site="heads", positions=[2, -1])
    cell = patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, "heads", -1, -1, positions=[-1, 2])
    assert cell.layer == tiny_llama.n_layers - 1 and cell.column == tiny_llama.n_heads - 1
    assert cell.positions == r.positions
    assert cell.value == pytest.approx(float(r.values[-1, -1]), abs=1e-5)
    w = r.show(model=tiny_llama)
    w.selected = [1, 3]
    assert w.detail["positions"] == r.positions
    assert w.detail["value"] == pytest.approx(float(r.values[1, 3]), abs=1e-5)


def test_attribution_map_reruns_exactly(tiny_llama):
    approx = _patch(tiny_llama, method="attribution")
    exact = _patch(tiny_llama)
    w = approx.show(model=tiny_llama)
    cell = w.select(0, 1)
    assert cell is not None and w.detail["approximation"] is True
    assert cell.value == pytest.approx(float(exact.values[0, 1]), abs=1e-5)
    assert w.detail["sweep_value"] == pytest.approx(float(approx.values[0, 1]), abs=1e-7)
    assert "(approximation)" in w.title and "approximation:" in w.summary()


def test_click_without_a_model_selects_only():
    w = PatchingMap(synthetic())
    assert w.select(1, 2) is None
    assert w.selected == [1, 2] and w.detail == {}
    w.selected = []
    assert w.detail == {}


def test_failed_rerun_is_reported_beside_the_map():
    def boom(row: int, col: int) -> CellPatch:
        raise RuntimeError(f"no model for {row},{col}")

    w = PatchingMap(synthetic(), rerun=boom)
    w.selected = [0, 2]  # a click: the error goes into detail, not into the comm handler
    assert w.detail == {"kind": "error", "cell": [0, 2], "client_id": None,
                        "message": "RuntimeError: no model for 0,2"}
    with pytest.raises(InputError, match=r"re-running cell \(1, 0\) failed: RuntimeError: no model for 1,0"):
        w.select(1, 0)


def test_select_requests_are_answered_naming_their_id(tiny_llama):
    r = _patch(tiny_llama, site="resid")
    w = r.show(model=tiny_llama, top_k=3)
    w._on_msg(w, {"kind": "select", "id": 4, "cell": [1, 2]}, [])  # a click in the live view
    assert w.selected == [1, 2]
    assert w.detail["kind"] == "rerun" and w.detail["cell"] == [1, 2] and w.detail["client_id"] == 4
    assert w.detail["value"] == pytest.approx(float(r.values[1, 2]), abs=1e-5)
    # the same cell again (a second view, or a click before Python echoed): answered again
    w._on_msg(w, {"kind": "select", "id": 5, "cell": [1, 2]}, [])
    assert w.detail["client_id"] == 5 and w.detail["cell"] == [1, 2]
    # a cell outside the map: the error is the reply, the selection stays
    w._on_msg(w, {"kind": "select", "id": 6, "cell": [9, 0]}, [])
    assert w.selected == [1, 2] and w.detail["kind"] == "error" and w.detail["client_id"] == 6
    assert w.detail["message"].startswith("selected must be [] or [row, col] inside the"), w.detail
    w._on_msg(w, {"kind": "something else", "id": 7}, [])  # ignored
    assert w.detail["client_id"] == 6
    w.selected = [0, 1]  # from Python: no request id
    assert w.detail["cell"] == [0, 1] and w.detail["client_id"] is None


@pytest.mark.parametrize("cell", [[2, 0], [0, 3], [-1, 0], [0], [0, 1, 2]])
def test_selected_must_be_inside_the_map(cell):
    w = PatchingMap(synthetic())
    with pytest.raises(InputError, match=r"selected must be \[\] or \[row, col\] inside the 2 x 3 map"):
        w.selected = cell


# ---- validation ------------------------------------------------------------------------------
def test_rejects_other_inputs():
    with pytest.raises(InputError, match="PatchingMap takes a PatchingResult"):
        PatchingMap(np.zeros((2, 3)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="rerun must be a function"):
        PatchingMap(synthetic(), rerun=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("change, message", [
    ({"values": np.zeros(3)}, r"non-empty \(layers, columns\) array"),
    ({"values": np.zeros((0, 3))}, r"non-empty \(layers, columns\) array"),
    ({"values": np.array([["a", "b", "c"]])}, "real numbers"),
    ({"layers": [0]}, "labels do not match the values: 2 x 3 cells, but 1 layers and 3 columns"),
    ({"columns": [0, 1, 7]}, "must be positions of the 3 clean and corrupt tokens"),
])
def test_bad_results(change, message):
    with pytest.raises(InputError, match=message):
        PatchingMap(dataclasses.replace(synthetic(), **change))


def test_result_with_its_metric_still_pickles_and_copies(tiny_llama):
    r = _patch(tiny_llama)
    assert r.metric is not None and r.metric.name == r.metric_name
    back = pickle.loads(pickle.dumps(r))  # the metric's closure does not pickle: dropped
    assert back.metric is None and back.site == r.site
    np.testing.assert_array_equal(back.values, r.values)
    with pytest.raises(InputError, match="carries no metric"):
        back.show(model=tiny_llama)
    assert back.show(model=tiny_llama, metric=METRIC).live
    twin = copy.deepcopy(r)
    assert twin.metric is r.metric and twin.values is not r.values
    np.testing.assert_array_equal(twin.values, r.values)


def test_cell_rerun_checks_model_and_metric(tiny_llama):
    r = _patch(tiny_llama)
    gpt2 = mechscope.tiny_model("gpt2")
    with pytest.raises(InputError, match=r"was made with 'tiny-llama-seed0' but model= is 'tiny-gpt2"):
        r.show(model=gpt2)
    with pytest.raises(InputError, match="needs a mechscope Model as model="):
        r.show(model=tiny_llama.hf)
    bare = dataclasses.replace(r, metric=None)
    with pytest.raises(InputError, match=r"carries no metric .* \.show\(model=model, metric="):
        bare.show(model=tiny_llama)
    w = bare.show(model=tiny_llama, metric=METRIC)  # an unbound metric is bound here
    assert w.select(0, 1).value == pytest.approx(float(r.values[0, 1]), abs=1e-5)
    with pytest.raises(InputError, match=r"metric prob\(' the'\) is not the result's metric"):
        r.show(model=tiny_llama, metric=prob(" the"))
    with pytest.raises(InputError, match=r"top_k must be an int in 1\.\.100"):
        r.show(model=tiny_llama, top_k=0)
    other = dataclasses.replace(r, clean_prompt="The cow sat on the")
    with pytest.raises(InputError, match="tokenises the clean prompt differently"):
        cell_rerun(other, tiny_llama)
    with pytest.raises(InputError, match=r"cell \(5, 0\) is outside the 2 x 7 map"):
        cell_rerun(r, tiny_llama)(5, 0)


@pytest.mark.parametrize("args, kwargs, message", [
    (("nope", 0, 0), {}, "site must be one of"),
    (("resid", 0, 0), {"top_k": 0}, r"top_k must be an int in 1\.\.100, got 0"),
    (("resid", 0, 0), {"top_k": True}, "top_k must be an int"),
    (("resid", 9, 0), {}, r"layer 9 is out of range: this model has 2 layers"),
    (("resid", 0, 7), {}, r"position 7 is out of range: there are 7 positions"),
    (("heads", 0, 4), {}, r"head 4 is out of range: there are 4 heads"),
    (("resid", 0, 1), {"positions": [1]}, "positions= applies to site='heads' only"),
    (("resid", "0", 1), {}, "layer must be an int, got str"),
])
def test_patch_cell_bad_arguments(tiny_llama, args, kwargs, message):
    before = model_fingerprint(tiny_llama)
    with pytest.raises(InputError, match=message):
        patch_cell(tiny_llama, CLEAN, CORRUPT, METRIC, *args, **kwargs)
    assert model_fingerprint(tiny_llama) == before


def test_patch_cell_bad_prompts_and_model(tiny_llama):
    with pytest.raises(InputError, match="same number of tokens"):
        patch_cell(tiny_llama, CLEAN, "The dog", METRIC, "resid", 0, 0)
    with pytest.raises(InputError, match="patch_cell needs a mechscope Model"):
        patch_cell(tiny_llama.hf, CLEAN, CORRUPT, METRIC, "resid", 0, 0)


# ---- text/plain and the offline snapshot -----------------------------------------------------
def test_summary(tiny_llama):
    r = _patch(tiny_llama)
    w = r.show(model=tiny_llama)
    text = w.summary()
    lines = text.split("\n")
    assert lines[0] == (
        f"PatchingMap 'tiny-llama-seed0: exact patching of resid': 2 layers x 7 positions, "
        f"logit_diff(' the', ' of'): clean {r.clean_metric:.4g}, corrupt {r.corrupt_metric:.4g} "
        "(cells normalised, 0 = corrupt, 1 = clean)")
    assert lines[1] == f"clean prompt {CLEAN!r}; corrupt prompt {CORRUPT!r}"
    assert lines[2].startswith("strongest cells: L1 position 6 ' the' 1")
    assert lines[-1] == "click a cell to re-run that patch and compare top tokens"
    cell = w.select(0, 1)
    assert w.summary().split("\n")[-1] == (
        f"selected L0 position 1 ' cat/ dog': re-run {cell.value:.4g}; top tokens after: "
        + ", ".join(repr(t) for t in cell.after.tokens))
    assert "needs result.show(model=model)" in PatchingMap(synthetic()).summary()
    data, _ = w._repr_mimebundle_()
    assert data["text/plain"] == w.summary() == repr(w)
    assert "application/vnd.jupyter.widget-view+json" in data and "text/html" in data


def test_snapshot_escapes_hostile_tokens_and_is_offline():
    w = PatchingMap(synthetic())
    html = w.offline_html()
    assert html is not None and HOSTILE not in html and "<img" not in html
    assert html.count("</script>") == 1 and 'data-mechscope-widget="patching_map"' in html
    state = snapshot_state(w)
    assert state["col_clean"][1] == HOSTILE and state["col_labels"][1] == f"{HOSTILE}/ cat"
    assert state["live"] is False and state["offline"] is True
    assert isinstance(state["effect"]["data"], str)  # base64 inside the HTML


def test_snapshot_keeps_the_selected_rerun_only(tiny_llama):
    r = _patch(tiny_llama)
    w = r.show(model=tiny_llama)
    w.select(0, 1)
    state = snapshot_state(w)
    assert w.live and state["live"] is False
    assert state["selected"] == [0, 1] and state["detail"]["cell"] == [0, 1]
    assert state["detail"]["after"]["tokens"] == w.detail["after"]["tokens"]
    w.detail = {**w.detail, "cell": [1, 1]}  # a reply that does not match the selection
    assert snapshot_state(w)["detail"] == {}


def test_nan_cells_survive_and_metrics_may_be_nan():
    w = PatchingMap(synthetic())
    assert np.isnan(decode_array(w.effect)[1, 1])
    nan = PatchingMap(synthetic(clean_metric=float("nan")))
    assert nan.clean_metric is None and not nan.can_normalize
    assert "clean n/a" in nan.summary()
    json.dumps(snapshot_state(nan))


# ---- over a dataset --------------------------------------------------------------------------
DATA_ROWS = [
    {"clean": "The cat sat on the", "corrupt": "The dog sat on the", "answer": " the", "wrong": " of"},
    {"clean": "A cat sat on the mat", "corrupt": "A dog sat on the mat", "answer": " of", "wrong": " the"},
    {"clean": "The dog ran to the", "corrupt": "The cat ran to the", "answer": " the", "wrong": " of"},
    {"clean": "The cat ran to the", "corrupt": "The dog ran to the", "answer": " of", "wrong": " the"},
]


@pytest.fixture(scope="module")
def dataset_result():
    model = mechscope.tiny_model("llama")
    return model, mechscope.patch(model, mechscope.datasets.pairs(DATA_ROWS), site="heads", progress=False)


def test_dataset_traits_are_binary_and_equal_the_result(dataset_result):
    from mechscope.stats import summarize

    _, r = dataset_result
    w = r.show()
    n, rows, cols = r.per_example.shape
    assert w.n_examples == n == 4 and w.ci_level == r.ci_level and w.dataset_name == r.dataset_name
    for name, want in (("ci_low", r.ci_low), ("ci_high", r.ci_high), ("per_example", r.per_example),
                       ("clean_per_example", r.clean_per_example), ("corrupt_per_example", r.corrupt_per_example)):
        enc = getattr(w, name)
        assert enc["dtype"] == "float32" and isinstance(enc["data"], bytes | memoryview), name  # binary, not JSON
        np.testing.assert_allclose(decode_array(enc), want, atol=1e-6, err_msg=name)
    s = summarize(r.normalized_per_example(), level=r.ci_level)
    np.testing.assert_allclose(decode_array(w.norm_mean), r.normalized(), atol=1e-6)
    np.testing.assert_allclose(decode_array(w.norm_low), s.ci_low, atol=1e-6)
    np.testing.assert_allclose(decode_array(w.norm_high), s.ci_high, atol=1e-6)
    assert w.example_texts == [row["clean"] for row in DATA_ROWS] and w.examples_note == ""
    # the map: the normalised mean; raw, the mean metric minus the mean corrupt metric
    assert w.example == -1 and w.can_normalize and w.positions_text == "all"
    np.testing.assert_allclose(w.array, r.normalized(), atol=1e-6)
    w.normalized = False
    np.testing.assert_allclose(w.array, r.values - r.corrupt_metric, atol=1e-6)
    # one example: its own map, normalised by its own runs
    w.example = 2
    np.testing.assert_allclose(w.array, r.per_example[2] - r.corrupt_per_example[2], atol=1e-5)
    w.normalized = True
    np.testing.assert_allclose(w.array, r.normalized_per_example()[2], atol=1e-5)
    with pytest.raises(InputError, match=r"example must be -1 \(the mean\) or 0..3 \(an example\), got 4"):
        w.example = 4
    state = snapshot_state(w)
    assert isinstance(state["per_example"]["data"], str) and state["n_examples"] == 4


def test_single_prompt_map_has_no_dataset_traits(tiny_llama):
    w = _patch(tiny_llama).show()
    assert w.n_examples == 0 and w.per_example == {} and w.ci_low == {} and w.example_texts == []
    assert "examples" not in w.summary() and "[" not in w.summary().split("strongest cells: ")[1].split("\n")[0]
    with pytest.raises(InputError, match="example must be -1 .* this map is one prompt pair"):
        w.example = 0


def test_dataset_summary_names_n_and_intervals(dataset_result):
    _, r = dataset_result
    w = r.show()
    text = w.summary()
    assert "mean of 4 examples" in w.title
    assert "mean of n=4 examples of 'pairs'; intervals: 95% bootstrap CI over examples" in text
    lo, hi = decode_array(w.norm_low), decode_array(w.norm_high)
    i, j = np.unravel_index(np.nanargmax(np.abs(r.normalized())), r.values.shape)
    best = f"L{r.layers[i]} H{r.columns[j]} {r.normalized()[i, j]:.3g} [{lo[i, j]:.3g}, {hi[i, j]:.3g}]"
    assert f"strongest cells: {best}" in text, text
    w.normalized = False
    raw = w.summary()
    i, j = np.unravel_index(np.nanargmax(np.abs(r.values - r.corrupt_metric)), r.values.shape)
    assert (f"(metric {r.values[i, j]:.3g} [{r.ci_low[i, j]:.3g}, {r.ci_high[i, j]:.3g}])") in raw, raw
    w.example = 1
    assert "showing example 1 ('A cat sat on the mat'), not the mean" in w.summary()


def test_huge_dataset_falls_back_to_mean_and_interval(monkeypatch, dataset_result):
    from mechscope.widgets import patching_examples

    _, r = dataset_result
    monkeypatch.setattr(patching_examples, "MAX_PER_EXAMPLE", r.per_example.size - 1)
    w = PatchingMap(r)
    assert w.per_example == {} and w.example_texts == [] and w.norm_low == {}
    assert decode_array(w.ci_low).shape == r.values.shape  # the interval still travels
    np.testing.assert_allclose(w.array, r.normalized(), atol=1e-6)  # the plain mean
    note = f"per-example values not sent (4 examples x 8 cells = 32 > {r.per_example.size - 1})"
    assert w.examples_note.startswith(note) and note in w.summary()
    with pytest.raises(InputError, match="per-example values were not sent"):
        w.example = 0
    # the snapshot drops per-example values above its own cap
    monkeypatch.setattr(patching_examples, "MAX_PER_EXAMPLE", 4_000_000)
    monkeypatch.setattr("mechscope.widgets.patching_map.SNAPSHOT_PER_EXAMPLE", 8)
    state = snapshot_state(PatchingMap(r, normalized=True))
    assert state["per_example"] == {} and "left out of this snapshot" in state["examples_note"]


def test_dataset_click_reruns_over_every_example(dataset_result):
    model, r = dataset_result
    w = r.show(model=model)
    cell = w.select(1, 2)
    assert cell is not None and cell.per_example.shape == (4,)
    np.testing.assert_allclose(cell.per_example, r.per_example[:, 1, 2], atol=1e-5)
    d = w.detail
    assert d["n"] == 4 and d["example"] == 0 and d["example_text"] == DATA_ROWS[0]["clean"]
    assert d["value"] == pytest.approx(float(r.values[1, 2]), abs=1e-5)
    assert d["normalized"] == pytest.approx(float(r.normalized()[1, 2]), abs=1e-5)
    assert "selected L1 H2: re-run" in w.summary()


def test_dataset_by_role_labels_columns_with_roles():
    model = mechscope.tiny_model("llama")

    def animal(text):
        word = "cat" if "cat" in text else "dog"
        return text.index(word) + len(word) - 1

    rows = [dict(row, roles={"animal": [animal(row["clean"]), animal(row["corrupt"])]})
            for row in DATA_ROWS]
    r = mechscope.patch(model, mechscope.datasets.pairs(rows), positions=["animal", "END"], progress=False)
    w = r.show()
    assert w.column_kind == "role" and w.col_labels == ["animal", "END"] and w.col_clean == []
    assert "L0 role 'animal'" in w.summary() or "L1 role 'animal'" in w.summary() or "role 'END'" in w.summary()
