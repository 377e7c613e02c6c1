"""`AttentionPatterns`: every head's attention pattern as a thumbnail, one in full, the scores.

Takes an `AttentionResult` (from `mechscope.analysis.attention.attention`). All patterns of
one example travel as ONE binary array (layers, heads, query, key): float32 up to
`QUANTIZE_ABOVE` values, above that quantised to uint8 through the codec's ``scale``
(probabilities in [0, 1]: a step of 1/255, 4x smaller than float32). A prompt longer than
``max_positions`` tokens is pooled in Python before it travels, queries by their mean and keys
by their sum (each row still sums to 1), in blocks of ``pooled`` tokens (the smallest block
that also keeps the array within ``max_cells`` values, so the offline snapshot fits: 30
layers x 9 heads x 256 tokens go in blocks of 2), whose labels name
the first and last token of the block; the front end pools again to the screen and reads
the exact (possibly pooled) cell under the pointer.

>>> import numpy as np
>>> from mechscope.analysis.attention import attention
>>> from mechscope.models.tiny import tiny_model
>>> w = AttentionPatterns(attention(tiny_model("llama"), "one two one two"))
>>> w.patterns["dtype"], w.patterns["shape"][:2], w.pooled, w.score
('float32', [2, 4], 1, 'induction')
>>> print(w.summary().splitlines()[0])
AttentionPatterns 'tiny-llama-seed0: attention patterns': 2 layers x 4 heads, 12 tokens
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..analysis.attention import AttentionResult
from ..errors import InputError
from ._base import STATIC, MechscopeWidget
from .codec import decode_array, encode_array
from .traits import ArrayTrait, TraitInputError

#: Above this many values the patterns travel as uint8 (see the module doc).
QUANTIZE_ABOVE = 1_000_000
#: Default longest prompt sent unpooled (tokens).
MAX_POSITIONS = 256
#: Default most values sent (layers x heads x query x key after pooling): as uint8 and base64
#: in the offline snapshot that is 6.7 MB, under its limit (`FALLBACK_MAX_BYTES`).
MAX_CELLS = 5_000_000


def _pool(patterns: np.ndarray, tokens: list[str], block: int) -> tuple[np.ndarray, list[str]]:
    """Queries averaged and keys summed over blocks of ``block`` positions (rows sum to 1)."""
    if block == 1:
        return patterns, list(tokens)
    n = patterns.shape[-1]
    m = -(-n // block)
    pad = m * block - n
    p = np.pad(patterns.astype(np.float64), [(0, 0)] * 2 + [(0, pad), (0, pad)])
    p = p.reshape(*p.shape[:2], m, block, m, block).sum(axis=5)
    counts = np.minimum(block, n - np.arange(m) * block)
    p = p.sum(axis=3) / counts[:, None]
    labels = [tokens[i * block] if counts[i] == 1 else f"{tokens[i * block]}…{tokens[i * block + counts[i] - 1]}"
              for i in range(m)]
    return p.astype(np.float32), labels


class AttentionPatterns(MechscopeWidget):
    """A layer x head grid of pattern thumbnails; click one to see its query x key map with the
    tokens on both axes, hover a cell for its exact value (query token, key token) and to colour
    the text by that query's attention; per-head scores beside the grid (``score`` selects
    which; the top heads are listed, click one to open it). ``selected`` ([layer index, head
    index] into ``layers`` / ``heads``) and ``hovered`` ([query, key]) sync both ways.

    ``example``: which example of a dataset result to draw (its patterns must have been kept);
    ``max_positions``: longest prompt sent unpooled; ``max_cells``: most values sent (the
    block grows until the pooled array fits); ``quantize``: None = uint8 above
    `QUANTIZE_ABOVE` values, True / False to force.

    >>> from mechscope.analysis.attention import attention
    >>> from mechscope.models.tiny import tiny_model
    >>> att = attention(tiny_model("gpt2"), "a b c a b c a b c", layers=[1])
    >>> w = AttentionPatterns(att, score="previous_token", max_positions=4)
    >>> w.pooled, len(w.tokens), w.patterns["shape"], w.tokens[0]
    (3, 4, [1, 4, 4, 4], 'a… c')
    >>> bool(np.allclose(decode_array(w.patterns).sum(-1), 1, atol=1e-5))
    True
    """

    _esm = STATIC / "attention.js"

    patterns = ArrayTrait("float32")
    """Encoded (layers, heads, query, key) attention probabilities (float32 or quantised uint8)."""
    scores = ArrayTrait("float32")
    """Encoded float32 (scores, layers, heads) mean per-head scores (NaN: undefined)."""
    ci_low = ArrayTrait("float32")
    """Encoded float32 (scores, layers, heads) lower bootstrap bound of ``scores``."""
    ci_high = ArrayTrait("float32")
    """Encoded float32 (scores, layers, heads) upper bootstrap bound of ``scores``."""
    tokens = t.List(t.Unicode()).tag(sync=True)
    """Token (or pooled block) labels along query and key (rendered as text)."""
    layers = t.List(t.Int()).tag(sync=True)
    """The model layer of each row of the grid."""
    heads = t.List(t.Int()).tag(sync=True)
    """The head index of each column of the grid."""
    score_names = t.List(t.Unicode()).tag(sync=True)
    """Names of the scores, in ``scores`` order."""
    score = t.Unicode("induction").tag(sync=True)
    """The score shown beside the grid."""
    selected = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)
    """[layer index, head index] of the head drawn in full."""
    hovered = t.List(t.Int(), default_value=[]).tag(sync=True)
    """[query, key] under the pointer in the full map ([] when none)."""
    pooled = t.Int(1).tag(sync=True)
    """Tokens per query/key block (1: exact, unpooled)."""
    n_examples = t.Int(1).tag(sync=True)
    """How many examples the scores are averaged over."""
    induction_source = t.Unicode("prompt").tag(sync=True)
    """What the induction score was measured on."""
    title = t.Unicode("").tag(sync=True)
    """Title above the widget."""

    def __init__(self, result: AttentionResult, *, example: int = 0, score: str = "induction",
                 max_positions: int = MAX_POSITIONS, max_cells: int = MAX_CELLS,
                 quantize: bool | None = None,
                 title: str | None = None) -> None:
        if not isinstance(result, AttentionResult):
            raise InputError("AttentionPatterns takes an AttentionResult (from mechscope's attention()), "
                             f"got {type(result).__name__}.")
        if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 2:
            raise InputError(f"max_positions must be an int >= 2, got {max_positions!r}.")
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
            raise InputError(f"max_cells must be a positive int, got {max_cells!r}.")
        if quantize not in (None, True, False):
            raise InputError(f"quantize must be None (automatic), True or False, got {quantize!r}.")
        if score not in result.score_names:
            raise InputError(f"score must be one of {result.score_names}, got {score!r}.")
        patterns, tokens = self._example(result, example)
        n = patterns.shape[-1]
        block = -(-n // max_positions)
        heads = patterns.shape[0] * patterns.shape[1]
        while block < n and heads * (-(-n // block)) ** 2 > max_cells:
            block += 1
        pooled, labels = _pool(patterns, tokens, block)
        big = pooled.size > QUANTIZE_ABOVE if quantize is None else quantize
        enc = encode_array(np.clip(pooled, 0, 1), "uint8", quantize=True) if big else pooled
        self._result = result
        super().__init__(
            patterns=enc, scores=result.scores, ci_low=result.ci_low, ci_high=result.ci_high,
            tokens=[str(s) for s in labels], layers=list(result.layers), heads=list(result.heads),
            score_names=list(result.score_names), score=score, selected=self._best(result, score),
            pooled=block, n_examples=result.n, induction_source=result.induction_source,
            title=title if title is not None else f"{result.model_name}: attention patterns")

    @staticmethod
    def _example(result: AttentionResult, example: Any) -> tuple[np.ndarray, list[str]]:
        if isinstance(example, bool) or not isinstance(example, int) or not 0 <= example < result.n:
            raise InputError(f"example must be an int in 0..{result.n - 1}, got {example!r}.")
        if example == 0:
            return np.asarray(result.patterns, dtype=np.float32), list(result.tokens)
        if result.example_patterns is None:
            raise InputError("this result kept only the first example's patterns (the dataset was "
                             "large); use example=0 or run attention() on that prompt alone.")
        return (np.asarray(result.example_patterns[example], dtype=np.float32),
                list(result.example_tokens[example]))

    @staticmethod
    def _best(result: AttentionResult, score: str) -> list[int]:
        values = np.nan_to_num(result.score(score), nan=-np.inf)
        i = int(np.argmax(values))
        return [i // values.shape[1], i % values.shape[1]]

    @t.validate("selected")
    def _check_selected(self, proposal: Any) -> list[int]:
        value = list(proposal["value"])
        nl, nh = len(self.layers), len(self.heads)
        if nl and (len(value) != 2 or not (0 <= value[0] < nl and 0 <= value[1] < nh)):
            raise TraitInputError(f"selected must be [layer index 0..{nl - 1}, head index 0..{nh - 1}], "
                                  f"got {value}.")
        return value

    @t.validate("score")
    def _check_score(self, proposal: Any) -> str:
        value = proposal["value"]
        if self.score_names and value not in self.score_names:
            raise TraitInputError(f"score must be one of {self.score_names}, got {value!r}.")
        return value

    @property
    def array(self) -> np.ndarray:
        """The patterns as drawn (float32, dequantised if quantised)."""
        return decode_array(self.patterns).astype(np.float32)

    def summary(self) -> str:
        nl, nh, q, _ = self.patterns["shape"]
        scores = decode_array(self.scores)
        lines = [f"AttentionPatterns {self.title!r}: {nl} layers x {nh} heads, {q} tokens"
                 + (f" (pooled in blocks of {self.pooled})" if self.pooled > 1 else "")
                 + (f"; scores over {self.n_examples} examples" if self.n_examples > 1 else "")]
        for k, name in enumerate(self.score_names):
            values = np.nan_to_num(scores[k], nan=-np.inf)
            order = np.argsort(-values, axis=None, kind="stable")[:3]
            top = ", ".join(f"L{self.layers[i // nh]}H{self.heads[i % nh]} {scores[k].flat[i]:.2f}"
                            for i in order if np.isfinite(values.flat[i]))
            lines.append(f"top {name}: {top or 'undefined (no such query)'}")
        if self.induction_source != "prompt":
            lines.append(f"induction measured on {self.induction_source}")
        return "\n".join(lines)
