"""Data to run mechscope on, all made here (no downloads).

- `pairs` / `PromptPairs`: clean and corrupt texts, each example with its own answer and wrong
  token (the default metric is ``logit_diff(answer, wrong)`` per example), roles (named
  positions) and metadata; `prompts` / `Prompts`: plain sets of texts. Every verb that takes
  a prompt (pair) also takes one of these.
- `labelled_texts`: template sentences in five topics (the selectivity tutorial's data).
- generators (`mechscope.datasets.generators`), deterministic per seed: `ioi`,
  `factual_recall`, `capitals`, `greater_than`, `sentiment`, `induction`.

>>> from mechscope import datasets
>>> data = datasets.pairs([{"clean": "a b", "corrupt": "a c", "answer": " b", "wrong": " c"}])
>>> len(data), sorted(datasets.labelled_texts(n_per_class=2))[:2]
(1, ['animals', 'cities'])
"""

from .generators import capitals, factual_recall, greater_than, induction, ioi, sentiment
from .labelled import TOPICS, labelled_texts
from .pairs import COLUMNS, END, PromptPairs, Prompts, pairs, prompts

__all__ = ["COLUMNS", "END", "TOPICS", "PromptPairs", "Prompts", "capitals", "factual_recall", "greater_than",
           "induction", "ioi", "labelled_texts", "pairs", "prompts", "sentiment"]
