"""`Superposition` widget, Python side: traits against the result, validation, text/plain, and
an offline snapshot that keeps hostile labels escaped."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mechscope.errors import InputError
from mechscope.toys import superposition
from mechscope.widgets import decode_array
from mechscope.widgets.superposition import Superposition
from tests.hostile import CATALOGUE
from tests.hostile_superposition import make


@pytest.fixture(scope="module")
def res():
    return superposition(n_features=5, n_hidden=2, sparsities=(0.0, 0.5, 0.95), seeds=(0, 1, 2),
                         steps=100, batch=32, progress_bar=False)


def test_traits_carry_the_result(res):
    w = Superposition(res, sparsity_index=2, seed_index=1)
    np.testing.assert_allclose(decode_array(w.gram), res.gram(), rtol=1e-6)
    for name in ("norms", "superposition", "dimensionality"):
        np.testing.assert_allclose(decode_array(getattr(w, name)), getattr(res, name), rtol=1e-6)
    dim = res.summary("dimensionality")
    np.testing.assert_allclose(decode_array(w.dim_mean), dim.mean, rtol=1e-6)
    np.testing.assert_allclose(decode_array(w.dim_low), dim.ci_low, rtol=1e-6)
    np.testing.assert_allclose(decode_array(w.norm_mean), np.nanmean(res.norms, axis=1), rtol=1e-5)
    assert w.sparsities == [0.0, 0.5, 0.95] and w.seeds == [0, 1, 2] and w.n_hidden == 2
    assert w.feature_labels == ["f0", "f1", "f2", "f3", "f4"]
    assert (w.sparsity_index, w.seed_index) == (2, 1)
    n_rep = int((res.norms[2, 1] > 0.5).sum())
    assert w.summary().splitlines()[1].startswith(f"selected S=0.95 seed 1: {n_rep} of 5 features")
    assert res.show().sparsity_index == 0


def test_bad_inputs_say_what_to_fix(res):
    with pytest.raises(InputError, match="Superposition takes a SuperpositionResult"):
        Superposition(np.zeros((2, 2)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"sparsity_index must be an int in 0\.\.2"):
        Superposition(res, sparsity_index=3)
    with pytest.raises(InputError, match="one label per feature"):
        Superposition(res, feature_labels=["a"])
    w = Superposition(res)
    with pytest.raises(InputError, match=r"seed_index must be in 0\.\.2"):
        w.seed_index = 5


def test_offline_snapshot_escapes_hostile_labels():
    w = make(CATALOGUE[1])
    html = w.offline_html()
    assert html is not None
    for s in CATALOGUE[:3]:
        assert s not in html
    assert "<img" not in html and html.count("</script>") == 1
    match = re.search(r"const state = (\{.*?\});\n", html)
    assert match
    state = json.loads(match.group(1))
    assert state["feature_labels"][:3] == list(CATALOGUE[:3]) and state["title"] == CATALOGUE[1]
    data, _ = w._repr_mimebundle_()
    assert "<script" not in data["text/html"] and CATALOGUE[0] not in data["text/html"]
    assert data["text/plain"] == w.summary()
    assert len(html) < 1_000_000
