"""Greater-than over years, after Hanna et al. 2023: "The war lasted from the year 1732 to
the year 17" -> a year after 1732.

The nouns and templates below were written for this project (no external source).

>>> data = greater_than(2, seed=0)
>>> data.clean[0], data.answer[0], data.wrong[0], data.corrupt[0]
('The alliance ran from the year 1432 to the year 14', '33', '31', 'The alliance ran from the year 1401 to the year 14')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InputError
from ..pairs import PromptPairs
from ._common import check_n, check_templates, fill, is_single_token, rng, roles_array

#: Events that last (written for this project).
NOUNS = ("war", "siege", "expedition", "reign", "famine", "drought", "voyage", "dynasty", "rebellion",
         "campaign", "plague", "occupation", "alliance", "strike", "epidemic", "construction", "journey",
         "trial", "friendship", "marriage")

#: Templates (written for this project): ``{YEAR}`` the start year (4 digits), ``{CENTURY}``
#: its first two digits again, at the end, where the end year's last two digits are predicted.
TEMPLATES = (
    "The {NOUN} lasted from the year {YEAR} to the year {CENTURY}",
    "The {NOUN} started in the year {YEAR} and ended in the year {CENTURY}",
    "The {NOUN} went on from the year {YEAR} until the year {CENTURY}",
    "The {NOUN} began in the year {YEAR} and was over by the year {CENTURY}",
    "The {NOUN} ran from the year {YEAR} to the year {CENTURY}",
)

MODES = ("two_digit", "digit")


def _mode(model: Any, digits: Any, verb: str) -> str:
    if digits not in (None, True, False):
        raise InputError(f"{verb}: digits must be None (from the model), True or False, got {digits!r}.")
    if digits is not None:
        return "digit" if digits else "two_digit"
    if model is None:
        return "two_digit"
    from ...validate import check_model

    check_model(model, verb, "model=")
    if all(is_single_token(model, f"{yy:02d}") for yy in range(10, 90)):
        return "two_digit"
    if all(is_single_token(model, str(d)) for d in range(10)):
        return "digit"
    raise InputError(f"{verb}: {model.name} tokenizes two-digit numbers neither as one token each nor "
                     "digit by digit, so no single-token answer exists.")


def greater_than(n: int = 100, seed: int = 0, *, model: Any = None, templates: Sequence[str] | None = None,
                 digits: bool | None = None) -> PromptPairs:
    """``n`` greater-than prompt pairs (Hanna et al. 2023).

    Clean: "The war lasted from the year 1732 to the year 17": the end year must come after
    the start. The start's last two digits YY are drawn from 11..88 and the century from
    11..17. Corrupt: the start year made ``CC01`` ("1701", the paper's corruption), after which
    every continuation is plausible.

    The answer must be one token, so the paper's probability difference over all years becomes
    a logit difference between two tokens, one on each side of the threshold:

    - ``"two_digit"`` mode (tokenizers with one token per two-digit number, GPT-2 style, the
      paper's setting): ``answer`` = YY + 1 ("33"), ``wrong`` = YY - 1 ("31"), with no space.
    - ``"digit"`` mode (tokenizers that split numbers into digits, e.g. SmolLM2 and Llama 3:
      " 17" is " ", "1", "7", so the next token is the end year's tens digit): ``answer`` =
      the start's tens digit + 1 ("4"), ``wrong`` = its tens digit - 1 ("2"). The answer is
      then a lower bound on what the model may say ("1732 to 1735" starts with the same "3");
      the wrong digit is always too small.

    ``digits``: None picks the mode from ``model`` (its tokenizer), or "two_digit" without a
    model; True / False force "digit" / "two_digit". ``templates``: format strings with
    ``{YEAR}`` and ending in ``{CENTURY}`` (optionally ``{NOUN}``), default `TEMPLATES`.

    Roles: "YY" (the start year's last digit) and "END". Metadata: ``noun``, ``century``,
    ``yy`` (the start's YY as an int), ``template``, ``mode``.

    >>> data = greater_than(1, seed=0, digits=True)
    >>> data.answer[0], data.wrong[0], data.metadata["yy"][0], data.metadata["mode"][0]
    ('4', '2', 32, 'digit')
    """
    verb = "greater_than"
    n = check_n(n, verb)
    random = rng(seed, verb)
    temps = check_templates(TEMPLATES if templates is None else templates, ("YEAR", "CENTURY"), ("NOUN",), verb)
    for tmpl in temps:
        if not tmpl.endswith("{CENTURY}"):
            raise InputError(f"{verb}: template {tmpl!r} must end with {{CENTURY}} (the end year's first "
                             "two digits, after which its last two are predicted).")
    mode = _mode(model, digits, verb)
    rows: dict[str, list[Any]] = {k: [] for k in ("clean", "corrupt", "answer", "wrong", "noun", "century",
                                                  "yy", "template", "r")}
    for _ in range(n):
        t = int(random.integers(len(temps)))
        noun = NOUNS[int(random.integers(len(NOUNS)))]
        century, yy = int(random.integers(11, 18)), int(random.integers(11, 89))
        clean, ends = fill(temps[t], {"NOUN": noun, "YEAR": f"{century}{yy:02d}", "CENTURY": str(century)})
        corrupt, _ = fill(temps[t], {"NOUN": noun, "YEAR": f"{century}01", "CENTURY": str(century)})
        if mode == "two_digit":
            answer, wrong = f"{yy + 1:02d}", f"{yy - 1:02d}"
        else:
            answer, wrong = str(yy // 10 + 1), str(yy // 10 - 1)
        for key, value in (("clean", clean), ("corrupt", corrupt), ("answer", answer), ("wrong", wrong),
                           ("noun", noun), ("century", century), ("yy", yy), ("template", t),
                           ("r", ends["YEAR"])):
            rows[key].append(value)
    meta = {k: tuple(rows[k]) for k in ("noun", "century", "yy", "template")}
    meta["mode"] = (mode,) * n
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]), tuple(rows["wrong"]),
                       {"YY": roles_array(rows["r"], rows["r"])}, meta, "greater_than")
