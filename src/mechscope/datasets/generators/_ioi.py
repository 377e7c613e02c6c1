"""Indirect object identification (IOI), after Wang et al. 2022: "When Mary and John went to
the store, John gave a drink to" -> " Mary".

The templates, names, places and objects below were written for this project (no external
source); they follow the paper's pattern: two names, then the subject named again and an
act of giving whose recipient is the other name (the indirect object).

>>> data = ioi(4, seed=0)
>>> data.clean[0], data.answer[0], data.wrong[0]
('While Arthur and Jim were walking to the store, Jim gave a basketball to', ' Arthur', ' Jim')
>>> data.corrupt[0]
'While Arthur and Jim were walking to the store, Ruth gave a basketball to'
>>> data.metadata["order"], data.role_names
(('ABBA', 'BABA', 'ABBA', 'BABA'), ('IO', 'S1', 'S2', 'END'))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..pairs import PromptPairs
from ._common import check_n, check_templates, fill, rng, roles_array, single_tokens

#: Common English first names (written for this project), each drawn with a leading space.
NAMES = (
    "Mary", "John", "Tom", "James", "David", "Michael", "Robert", "William", "Richard", "Thomas",
    "Paul", "Mark", "Daniel", "George", "Kevin", "Brian", "Jason", "Jeff", "Ryan", "Eric",
    "Adam", "Peter", "Steve", "Chris", "Sam", "Alex", "Ben", "Dan", "Jack", "Joe",
    "Mike", "Bob", "Jim", "Frank", "Scott", "Matt", "Tim", "Andrew", "Anthony", "Charles",
    "Edward", "Henry", "Joseph", "Patrick", "Sean", "Simon", "Victor", "Martin", "Luke", "Nick",
    "Kyle", "Justin", "Carl", "Fred", "Jerry", "Larry", "Roger", "Tony", "Gary", "Alan",
    "Arthur", "Ian", "Lisa", "Sarah", "Anna", "Emma", "Laura", "Linda", "Susan", "Karen",
    "Nancy", "Betty", "Helen", "Sandra", "Donna", "Ruth", "Sharon", "Michelle", "Amy", "Kate",
    "Rachel", "Jessica", "Emily", "Amanda", "Jennifer", "Elizabeth", "Maria", "Julia", "Alice", "Jane",
    "Lucy", "Sophie", "Claire", "Diana", "Eva", "Nina", "Hannah", "Olivia", "Victoria", "Catherine",
    "Rebecca", "Megan", "Heather", "Kelly", "Jenny", "Erin", "Ashley", "Stephanie", "Christina", "Andrea",
    "Monica", "Tina", "Carol", "Joan", "Harry", "Oliver", "Jacob", "Ethan", "Nathan", "Aaron",
)

#: Places (written for this project).
PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station", "park",
          "library", "beach", "market", "museum", "cafe", "airport", "bakery", "church", "hotel")

#: Objects, each after "a" (written for this project).
OBJECTS = ("drink", "ring", "bone", "basketball", "computer", "necklace", "snack", "book", "letter",
           "gift", "ball", "pencil", "bag", "key", "cake", "flower", "ticket", "sandwich")

#: IOI templates (written for this project): ``{A} and {B}`` are the first two names (IO then S
#: in ABBA order, S then IO in BABA), ``{S}`` the subject named again (the third name C in the
#: corrupt), ``{PLACE}`` / ``{OBJECT}`` optional.
TEMPLATES = (
    "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} arrived at the {PLACE}, {S} handed a {OBJECT} to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "After the lunch, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Yesterday, {A} and {B} went to the {PLACE}, and {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "When {A} and {B} were at the {PLACE}, {S} threw a {OBJECT} to",
    "Once {A} and {B} reached the {PLACE}, {S} passed a {OBJECT} to",
    "While {A} and {B} were walking to the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} visited the {PLACE}, {S} brought a {OBJECT} to",
    "Later, {A} and {B} met at the {PLACE}, where {S} offered a {OBJECT} to",
)


def ioi(n: int = 100, seed: int = 0, *, model: Any = None, templates: Sequence[str] | None = None,
        names: Sequence[str] | None = None) -> PromptPairs:
    """``n`` IOI prompt pairs (Wang et al. 2022), half ABBA and half BABA on average.

    Clean: "When Mary and John went to the store, John gave a drink to" -> ``answer`` " Mary"
    (the indirect object, IO), ``wrong`` " John" (the subject, S). Corrupt: the ABC corruption,
    the second mention of S replaced by a third name C ("..., Tom gave a drink to"), so there
    is no repeated name to rule out and the model has no name to prefer.

    - ``model``: draw only names whose " Name" is a single token for it (an `InputError` when
      fewer than three remain); without one, every name is drawn and a metric bound to another
      model checks the answers, naming the example whose answer is not one token.
    - ``templates``: format strings with ``{A}``, ``{B}``, ``{S}`` (and optionally ``{PLACE}``,
      ``{OBJECT}``); default `TEMPLATES`. ``names``: default `NAMES` (without the space).

    Roles: "IO", "S1", "S2" (the last character of each name; in the corrupt, "S2" is C), and
    "END". Metadata: ``order`` ("ABBA" = IO first, "BABA" = S first), ``template`` (its index),
    ``io``, ``s``, ``c``, ``place``, ``object``, ``corruption`` ("ABC"). Deterministic for the
    same ``n``, ``seed``, lists and model vocabulary.

    >>> data = ioi(2, seed=1)
    >>> i = data.roles["IO"][0, 0]
    >>> data.clean[0][i - len(data.answer[0]) + 2:i + 1] == data.answer[0].strip()
    True
    """
    verb = "ioi"
    n = check_n(n, verb)
    random = rng(seed, verb)
    temps = check_templates(TEMPLATES if templates is None else templates, ("A", "B", "S"),
                            ("PLACE", "OBJECT"), verb)
    pool = single_tokens(model, list(NAMES if names is None else names), lambda s: " " + str(s), verb, "names", 3)
    rows: dict[str, list[Any]] = {k: [] for k in ("clean", "corrupt", "io", "s", "c", "order", "template",
                                                  "place", "object", "r_io", "r_s1", "r_s2", "r_c")}
    for _ in range(n):
        t = int(random.integers(len(temps)))
        io, s, c = (str(pool[i]) for i in random.choice(len(pool), size=3, replace=False))
        abba = bool(random.integers(2) == 0)
        place, obj = PLACES[int(random.integers(len(PLACES)))], OBJECTS[int(random.integers(len(OBJECTS)))]
        first, second = (io, s) if abba else (s, io)
        values = {"A": first, "B": second, "PLACE": place, "OBJECT": obj}
        clean, ends = fill(temps[t], {**values, "S": s})
        corrupt, ends_c = fill(temps[t], {**values, "S": c})
        io_key, s_key = ("A", "B") if abba else ("B", "A")
        for key, value in (("clean", clean), ("corrupt", corrupt), ("io", io), ("s", s), ("c", c),
                           ("order", "ABBA" if abba else "BABA"), ("template", t), ("place", place),
                           ("object", obj), ("r_io", ends[io_key]), ("r_s1", ends[s_key]), ("r_s2", ends["S"]),
                           ("r_c", ends_c["S"])):
            rows[key].append(value)
    roles = {"IO": roles_array(rows["r_io"], rows["r_io"]), "S1": roles_array(rows["r_s1"], rows["r_s1"]),
             "S2": roles_array(rows["r_s2"], rows["r_c"])}
    metadata = {k: tuple(rows[k]) for k in ("order", "template", "io", "s", "c", "place", "object")}
    metadata["corruption"] = ("ABC",) * n
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(" " + x for x in rows["io"]),
                       tuple(" " + x for x in rows["s"]), roles, metadata, "ioi")
