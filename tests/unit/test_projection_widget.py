"""ProjectionScatter, Python side: built from a real tiny-model ConceptDirections (coordinates
equal numpy on plain-hook activations), the token encoding and its round trip, ``selected``,
the summary, every input error's message, and the escaped offline snapshot of hostile text."""

from __future__ import annotations

import re

import numpy as np
import pytest
import traitlets

from mechscope.analysis.directions import concept_directions
from mechscope.datasets.labelled import labelled_texts
from mechscope.errors import InputError
from mechscope.widgets import decode_array
from mechscope.widgets.projection import ProjectionScatter
from tests.helpers import model_fingerprint
from tests.hostile import CATALOGUE
from tests.hostile_projection import make
from tests.unit.test_directions import _hook_last
from tests.unit.test_token_text import snapshot_state


def test_from_directions_matches_plain_hooks(tiny_llama):
    data = labelled_texts(["animals", "code"], n_per_class=6, seed=2)
    texts = data["animals"] + data["code"]
    before = model_fingerprint(tiny_llama)
    cd = concept_directions(tiny_llama, data, layer=1, k=3)
    assert model_fingerprint(tiny_llama) == before
    assert cd.texts == tuple(texts)
    w = cd.show(axes=("mean_projection", "pc2"))
    x = _hook_last(tiny_llama, texts, 1)
    y = np.array([0] * 6 + [1] * 6)
    diff = x[y == 1].mean(0) - x[y == 0].mean(0)
    xc = x - x.mean(0)
    np.testing.assert_allclose(decode_array(w.x), xc @ diff / np.linalg.norm(diff), atol=1e-4)
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    pc2 = evecs[:, np.argsort(evals)[::-1][1]]                       # up to sign
    ref = xc @ pc2
    got = decode_array(w.y).astype(np.float64)
    assert min(np.abs(got - ref).max(), np.abs(got + ref).max()) < 1e-4
    assert decode_array(w.labels).tolist() == y.tolist()
    assert w.classes == ["animals", "code"] and w.n_points == 12
    assert [w.text(i) for i in range(12)] == texts
    assert w.x_name == "mean difference (code - rest)" and w.y_name.startswith("pc2 (")
    assert w.title == f"{cd.model_name}: resid layer 1"
    w2 = ProjectionScatter.from_directions(cd, axes=("pc3", "pc1"))
    np.testing.assert_array_equal(decode_array(w2.x), cd.scores[:, 2])


def test_tokens_values_and_selection():
    w = ProjectionScatter([0, 1, 2], [2, 1, 0], [0, 1, 0], ["a", "b"], [["x", " y"], ["x"], "whole text"],
                          token_values=[[1.0, -1.0], [0.5], [2.0]], selected=[2])
    assert w.vocab == ["x", " y", "whole text"]
    assert decode_array(w.token_ids).tolist() == [0, 1, 0, 2]
    assert decode_array(w.offsets).tolist() == [0, 2, 3, 4]
    assert decode_array(w.token_values).tolist() == [1.0, -1.0, 0.5, 2.0]
    assert w.text_tokens(0) == ["x", " y"] and w.text(2) == "whole text"
    assert w.selected == [2]
    w.selected = [1, 0, 1]
    assert w.selected == [1, 0] and w.selected_texts() == ["x", "x y"]
    with pytest.raises(InputError, match=r"selected must hold point indices in 0\.\.2, got 3"):
        w.selected = [3]
    s = w.summary()
    assert s.startswith("ProjectionScatter '': 3 points; classes 'a' 2, 'b' 1") and "selected 2" in s
    assert ProjectionScatter([0], [0], [0], ["a"], ["t"]).token_values == {}


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (([0, 1], [0], [0, 1], ["a", "b"], ["p", "q"]), {}, "y has 1 values but x has 2: give one coordinate per point."),
    (([0, 1], [0, 1], [0], ["a", "b"], ["p", "q"]), {}, r"labels must be one class index per point, shape \(2,\), got \(1,\)"),
    (([0, 1], [0, 1], [0, 1], ["a", "b"], ["p"]), {}, "1 texts for 2 points: give exactly one text per point."),
    (([0, np.nan, 1], [0, 1, np.inf], [0, 1, 0], ["a", "b"], ["p", "q", "r"]), {},
     r"x is NaN or infinite at 1 points \(first: \[1\]\); a point needs finite coordinates"),
    (([0, 1], [0, np.inf], [0, 1], ["a", "b"], ["p", "q"]), {}, r"y is NaN or infinite at 1 points \(first: \[1\]\)"),
    (([0, 1], [0, 1], [0, 2], ["a", "b"], ["p", "q"]), {},
     r"label 2 at point 1 is out of range: labels index classes, 0\.\.1 \(2 classes\)"),
    (([0, 1], [0, 1], [0, -1], ["a", "b"], ["p", "q"]), {}, "label -1 at point 1 is out of range"),
    (([0, 1], [0, 1], [0.0, 1.0], ["a", "b"], ["p", "q"]), {}, "labels must be integer class indices"),
    (([0, 1], [0, 1], [0, 1], [], ["p", "q"]), {}, "classes must be a non-empty list"),
    (([], [], [], ["a"], []), {}, r"x must be a non-empty 1-D array .* got shape \(0,\)"),
    (([[0, 1]], [0], [0], ["a"], ["p"]), {}, r"x must be a non-empty 1-D array"),
    ((["a", "b"], [0, 1], [0, 1], ["a", "b"], ["p", "q"]), {}, "x must be numbers"),
    (([0, 1], [0, 1], [0, 1], ["a", "b"], ["p", 3]), {}, "text 1 must be a string or a list of token strings, got int"),
    (([0, 1], [0, 1], [0, 1], ["a", "b"], [["p", "q"], ["r"]]), {"token_values": [[1.0], [2.0]]},
     r"token_values, text 0: 2 tokens but values of shape \(1,\); give one value per token"),
    (([0, 1], [0, 1], [0, 1], ["a", "b"], ["p", "q"]), {"token_values": [[1.0]]}, "token_values must hold one array per text"),
])
def test_input_errors(args, kwargs, message):
    with pytest.raises(InputError, match=message):
        ProjectionScatter(*args, **kwargs)


def test_from_directions_errors(tiny_llama):
    cd = concept_directions(tiny_llama, labelled_texts(["animals", "code"], n_per_class=4), layer=0, k=2)
    with pytest.raises(InputError, match=r"axis 'pc3' is not one of \['mean_projection', 'pc1', 'pc2'\]"):
        cd.show(axes=("pc1", "pc3"))
    with pytest.raises(InputError, match="axes must be two axis names"):
        cd.show(axes="pc1")
    with pytest.raises(InputError, match="2 texts for 8 points: give exactly one text per point"):
        cd.show(texts=["a", "b"])
    import dataclasses
    with pytest.raises(InputError, match="carries no texts: pass texts="):
        dataclasses.replace(cd, texts=()).show()
    with pytest.raises(InputError, match="takes a ConceptDirections"):
        ProjectionScatter.from_directions("cd")  # type: ignore[arg-type]
    assert isinstance(cd.show(texts=[f"t{i}" for i in range(8)]), traitlets.HasTraits)


def test_five_thousand_points_snapshot_size():
    rng = np.random.default_rng(0)
    n = 5000
    w = ProjectionScatter(rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n), ["a", "b", "c"],
                          [f"text number {i}" for i in range(n)])
    html = w.offline_html()
    assert html is not None and len(html) < 400_000  # 3 x 20 KB of arrays + 5,000 distinct texts
    assert w.n_points == n and len(w.vocab) == n


def test_snapshot_escapes_hostile_text():
    w = make(CATALOGUE[1])
    html = w.offline_html() or ""
    markup = [s for s in CATALOGUE if set(s) & set("<>&\u2028\u2029")]
    assert html and [s for s in markup if s in html] == []
    assert html.count("</script>") == 1 and re.search(r"<(img|svg|a )", html) is None  # only its own </script>
    state = snapshot_state(w)  # the escaped JSON still decodes to the literal strings
    assert (state["title"], state["x_name"], state["y_name"], state["value_name"]) == (
        CATALOGUE[1], CATALOGUE[1], CATALOGUE[11], CATALOGUE[0])
    assert state["classes"] == [CATALOGUE[2], CATALOGUE[9]] and state["selected"] == [0, 5]
    assert set(state["vocab"]) <= set(CATALOGUE)
    arrays = ("x", "y", "labels", "token_ids", "offsets", "token_values")
    assert {type(state[k]["data"]) for k in arrays} == {str}  # base64, not lists
    data, _ = w._repr_mimebundle_()
    assert "<script" not in data["text/html"] and data["text/plain"] == w.summary()
