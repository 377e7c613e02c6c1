"""Factual recall (subject -> city or country) and country capitals.

The facts, countries and templates below were written for this project from common knowledge
(no external source). Every answer is one word, drawn with a leading space (" Paris").

>>> data = capitals(3, seed=0)
>>> data.clean[0], data.answer[0], data.corrupt[0], data.wrong[0]
('The capital of Serbia is', ' Belgrade', 'The capital of Lebanon is', ' Beirut')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import InputError
from ..pairs import PromptPairs
from ._common import check_n, check_templates, fill, rng, roles_array, single_tokens

#: (relation, subject, answer) facts, written for this project from common knowledge.
FACTS = (
    ("landmark_city", "The Eiffel Tower", "Paris"), ("landmark_city", "The Louvre", "Paris"),
    ("landmark_city", "Notre-Dame Cathedral", "Paris"), ("landmark_city", "The Colosseum", "Rome"),
    ("landmark_city", "The Trevi Fountain", "Rome"), ("landmark_city", "Big Ben", "London"),
    ("landmark_city", "Tower Bridge", "London"), ("landmark_city", "Westminster Abbey", "London"),
    ("landmark_city", "The Brandenburg Gate", "Berlin"), ("landmark_city", "The Sagrada Familia", "Barcelona"),
    ("landmark_city", "The Kremlin", "Moscow"), ("landmark_city", "Red Square", "Moscow"),
    ("landmark_city", "The Acropolis", "Athens"), ("landmark_city", "The Parthenon", "Athens"),
    ("landmark_city", "The Space Needle", "Seattle"), ("landmark_city", "Hagia Sophia", "Istanbul"),
    ("landmark_city", "The Blue Mosque", "Istanbul"), ("landmark_city", "The Forbidden City", "Beijing"),
    ("landmark_city", "The CN Tower", "Toronto"), ("landmark_city", "The Burj Khalifa", "Dubai"),
    ("landmark_city", "The Rialto Bridge", "Venice"), ("landmark_city", "The Charles Bridge", "Prague"),
    ("landmark_city", "The Atomium", "Brussels"), ("landmark_city", "The Prado Museum", "Madrid"),
    ("landmark_city", "The Alhambra", "Granada"), ("landmark_city", "The Uffizi Gallery", "Florence"),
    ("landmark_city", "The Little Mermaid statue", "Copenhagen"),
    ("company_country", "Toyota", "Japan"), ("company_country", "Sony", "Japan"),
    ("company_country", "Nintendo", "Japan"), ("company_country", "Honda", "Japan"),
    ("company_country", "Volkswagen", "Germany"), ("company_country", "BMW", "Germany"),
    ("company_country", "Siemens", "Germany"), ("company_country", "Adidas", "Germany"),
    ("company_country", "Ferrari", "Italy"), ("company_country", "Fiat", "Italy"),
    ("company_country", "Nokia", "Finland"), ("company_country", "IKEA", "Sweden"),
    ("company_country", "Volvo", "Sweden"), ("company_country", "Rolex", "Switzerland"),
    ("company_country", "Renault", "France"), ("company_country", "Peugeot", "France"),
    ("company_country", "Michelin", "France"), ("company_country", "LEGO", "Denmark"),
    ("company_country", "Huawei", "China"), ("company_country", "Alibaba", "China"),
    ("company_country", "Tata Motors", "India"), ("company_country", "Infosys", "India"),
    ("person_country", "Pablo Picasso", "Spain"), ("person_country", "Wolfgang Amadeus Mozart", "Austria"),
    ("person_country", "William Shakespeare", "England"), ("person_country", "Napoleon Bonaparte", "France"),
    ("person_country", "Johann Wolfgang von Goethe", "Germany"), ("person_country", "Dante Alighieri", "Italy"),
    ("person_country", "Leo Tolstoy", "Russia"), ("person_country", "Confucius", "China"),
    ("person_country", "Mahatma Gandhi", "India"), ("person_country", "Frederic Chopin", "Poland"),
    ("person_country", "Miguel de Cervantes", "Spain"), ("person_country", "Ludwig van Beethoven", "Germany"),
    ("person_country", "Leonardo da Vinci", "Italy"), ("person_country", "Socrates", "Greece"),
    ("person_country", "Aristotle", "Greece"), ("person_country", "Frida Kahlo", "Mexico"),
    ("person_country", "Fyodor Dostoevsky", "Russia"), ("person_country", "Jean Sibelius", "Finland"),
    ("person_country", "Hans Christian Andersen", "Denmark"), ("person_country", "Henrik Ibsen", "Norway"),
    ("person_country", "Giuseppe Verdi", "Italy"), ("person_country", "Victor Hugo", "France"),
)

#: Templates per relation (written for this project); ``{subject}`` opens the sentence.
FACT_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "landmark_city": ("{subject} is located in the city of", "{subject} can be found in the city of",
                      "{subject} is a famous sight in the city of"),
    "company_country": ("{subject} has its headquarters in the country of",
                        "{subject} is a company from the country of", "{subject} was founded in the country of"),
    "person_country": ("{subject} was born in the country of", "{subject} grew up in the country of",
                       "{subject} is a famous figure from the country of"),
}

#: (country, capital), written for this project from common knowledge.
CAPITALS = (
    ("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("England", "London"), ("Egypt", "Cairo"),
    ("Greece", "Athens"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Hungary", "Budapest"), ("Turkey", "Ankara"), ("Kenya", "Nairobi"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Thailand", "Bangkok"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Cuba", "Havana"),
    ("Belgium", "Brussels"), ("Romania", "Bucharest"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"),
    ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"),
    ("Colombia", "Bogota"), ("Venezuela", "Caracas"), ("Switzerland", "Bern"), ("Scotland", "Edinburgh"),
    ("Wales", "Cardiff"), ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"),
    ("Afghanistan", "Kabul"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Bulgaria", "Sofia"),
    ("Iceland", "Reykjavik"), ("Jamaica", "Kingston"), ("Ghana", "Accra"), ("Senegal", "Dakar"),
    ("Algeria", "Algiers"), ("Ukraine", "Kyiv"),
)

#: Capital templates (written for this project).
CAPITAL_TEMPLATES = ("The capital of {country} is", "The capital city of {country} is",
                     "{country}'s capital is the city of", "The government of {country} sits in the city of")


def _draw(random: Any, items: Sequence[tuple[str, str, str]], n: int, verb: str) -> list[tuple[int, int]]:
    """``n`` (clean, corrupt) index pairs into ``items`` = (group, subject, answer): same group,
    different answers."""
    by_group: dict[str, list[int]] = {}
    for i, (group, _, _) in enumerate(items):
        by_group.setdefault(group, []).append(i)
    usable = [i for i, (g, _, a) in enumerate(items) if any(items[j][2] != a for j in by_group[g])]
    if not usable:
        raise InputError(f"{verb}: no two usable facts share a relation with different answers, so no "
                         "corrupt prompt can be made; give more facts.")
    out = []
    for _ in range(n):
        i = usable[int(random.integers(len(usable)))]
        others = [j for j in by_group[items[i][0]] if items[j][2] != items[i][2]]
        out.append((i, others[int(random.integers(len(others)))]))
    return out


def factual_recall(n: int = 100, seed: int = 0, *, model: Any = None,
                   templates: Mapping[str, Sequence[str]] | None = None,
                   facts: Sequence[tuple[str, str, str]] | None = None) -> PromptPairs:
    """``n`` factual-recall prompt pairs: a subject -> its city or country.

    Clean: "The Eiffel Tower is located in the city of" -> ``answer`` " Paris". Corrupt: another
    subject of the same relation, in the same template, with a different answer ("The Colosseum
    is located in the city of"); ``wrong`` is that subject's answer (" Rome").

    - ``model``: draw only facts whose answer (with its leading space) is one token for it;
      without one, every fact is drawn (a metric bound later names an example that is not).
    - ``facts``: (relation, subject, answer) triples, default `FACTS`: landmarks -> city,
      companies and people -> country. ``templates``: {relation: format strings with
      ``{subject}``}, default `FACT_TEMPLATES`.

    Roles: "subject" (the subject's last character) and "END". Metadata: ``relation``,
    ``subject``, ``corrupt_subject``, ``template`` (its index within the relation).

    >>> data = factual_recall(2, seed=3)
    >>> data.clean[0], data.answer[0], data.wrong[0]
    ('Mahatma Gandhi was born in the country of', ' India', ' Austria')
    """
    verb = "factual_recall"
    n = check_n(n, verb)
    random = rng(seed, verb)
    temps = FACT_TEMPLATES if templates is None else templates
    if not isinstance(temps, Mapping):
        raise InputError(f"{verb}: templates must be a dict {{relation: [templates]}}, got {temps!r}.")
    checked = {rel: check_templates(ts, ("subject",), (), verb) for rel, ts in temps.items()}
    items = [tuple(f) for f in (FACTS if facts is None else facts)]
    for f in items:
        if len(f) != 3 or not all(isinstance(x, str) and x for x in f):
            raise InputError(f"{verb}: every fact must be (relation, subject, answer) strings, got {f!r}.")
        if f[0] not in checked:
            raise InputError(f"{verb}: the fact {f!r} has relation {f[0]!r} with no template; templates "
                             f"has {sorted(checked)}.")
    pool = single_tokens(model, items, lambda f: " " + f[2], verb, "facts", 2)
    rows: dict[str, list[Any]] = {k: [] for k in ("clean", "corrupt", "answer", "wrong", "relation", "subject",
                                                  "corrupt_subject", "template", "r", "rc")}
    for i, j in _draw(random, pool, n, verb):
        (rel, subj, ans), (_, csubj, cans) = pool[i], pool[j]
        t = int(random.integers(len(checked[rel])))
        clean, ends = fill(checked[rel][t], {"subject": subj})
        corrupt, ends_c = fill(checked[rel][t], {"subject": csubj})
        for key, value in (("clean", clean), ("corrupt", corrupt), ("answer", " " + ans), ("wrong", " " + cans),
                           ("relation", rel), ("subject", subj), ("corrupt_subject", csubj), ("template", t),
                           ("r", ends["subject"]), ("rc", ends_c["subject"])):
            rows[key].append(value)
    meta = {k: tuple(rows[k]) for k in ("relation", "subject", "corrupt_subject", "template")}
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]), tuple(rows["wrong"]),
                       {"subject": roles_array(rows["r"], rows["rc"])}, meta, "factual_recall")


def capitals(n: int = 100, seed: int = 0, *, model: Any = None, templates: Sequence[str] | None = None,
             countries: Sequence[tuple[str, str]] | None = None) -> PromptPairs:
    """``n`` prompt pairs asking for a country's capital.

    Clean: "The capital of France is" -> ``answer`` " Paris". Corrupt: another country in the
    same template; ``wrong`` is its capital.

    - ``model``: draw only countries whose capital (with its leading space) is one token for
      it; without one, all are drawn (a metric bound later names an example that is not).
    - ``templates``: format strings with ``{country}``, default `CAPITAL_TEMPLATES`;
      ``countries``: (country, capital) pairs, default `CAPITALS`.

    Roles: "country" (its last character) and "END". Metadata: ``country``,
    ``corrupt_country``, ``template``.

    >>> data = capitals(2, seed=1, countries=[("France", "Paris"), ("Italy", "Rome")])
    >>> data.answer, data.wrong
    ((' Paris', ' Rome'), (' Rome', ' Paris'))
    """
    verb = "capitals"
    n = check_n(n, verb)
    random = rng(seed, verb)
    temps = check_templates(CAPITAL_TEMPLATES if templates is None else templates, ("country",), (), verb)
    pairs_ = [tuple(c) for c in (CAPITALS if countries is None else countries)]
    for c in pairs_:
        if len(c) != 2 or not all(isinstance(x, str) and x for x in c):
            raise InputError(f"{verb}: every entry of countries must be (country, capital) strings, got {c!r}.")
    pool = single_tokens(model, pairs_, lambda c: " " + c[1], verb, "countries", 2)
    rows: dict[str, list[Any]] = {k: [] for k in ("clean", "corrupt", "country", "corrupt_country", "template",
                                                  "answer", "wrong", "r", "rc")}
    for i, j in _draw(random, [("capital", c, cap) for c, cap in pool], n, verb):
        (country, cap), (other, other_cap) = pool[i], pool[j]
        t = int(random.integers(len(temps)))
        clean, ends = fill(temps[t], {"country": country})
        corrupt, ends_c = fill(temps[t], {"country": other})
        for key, value in (("clean", clean), ("corrupt", corrupt), ("country", country),
                           ("corrupt_country", other), ("template", t), ("answer", " " + cap),
                           ("wrong", " " + other_cap), ("r", ends["country"]), ("rc", ends_c["country"])):
            rows[key].append(value)
    meta = {k: tuple(rows[k]) for k in ("country", "corrupt_country", "template")}
    return PromptPairs(tuple(rows["clean"]), tuple(rows["corrupt"]), tuple(rows["answer"]), tuple(rows["wrong"]),
                       {"country": roles_array(rows["r"], rows["rc"])}, meta, "capitals")
