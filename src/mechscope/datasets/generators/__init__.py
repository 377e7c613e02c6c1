"""Generated prompt-pair datasets for the classic circuits, deterministic per seed, with their
templates and name / entity lists in the package (written for this project).

Each generator returns a `mechscope.datasets.PromptPairs` with named roles (so a layer x role
patching map is well defined) and metadata; given ``model=``, it draws only entities whose
answer tokens are single tokens for that model:

- `ioi`: indirect object identification (Wang et al. 2022), ABC corruption; roles IO, S1, S2.
- `factual_recall`: subject -> city or country; role subject.
- `capitals`: country -> capital; role country.
- `greater_than`: years (Hanna et al. 2023), "CC01" corruption; role YY.
- `sentiment`: adjective -> feeling; role adjective.
- `induction`: repeated random tokens from the model's vocabulary (needs ``model``).

>>> from mechscope.datasets import generators
>>> [len(g(3)) for g in (generators.ioi, generators.capitals, generators.sentiment)]
[3, 3, 3]
"""

from ._facts import capitals, factual_recall
from ._induction import induction
from ._ioi import ioi
from ._sentiment import sentiment
from ._years import greater_than

__all__ = ["capitals", "factual_recall", "greater_than", "induction", "ioi", "sentiment"]
