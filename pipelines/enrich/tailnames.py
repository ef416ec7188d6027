"""Names in the part of an article the statistical model did not read.

The model reads the title and the lead (`NEWSWATCH_NER_MAX_CHARS`): that is where news copy names
its main actors, and NER is the dearest step of enrichment (~0.1 ms per token here). Further down,
its names are found again by `propagate_names`, places and known actors by the gazetteers, and the
people and organisations *introduced* further down by the way news copy introduces them:

- a title before a name: "Interior Minister Marco Buschmann", "spokeswoman Laura Whitfield";
- attribution of a quote: "said Park Ji-won", "Laura Whitfield said";
- apposition: "Park Ji-won, a researcher at ...", "A government spokesman, Legesse Tulu, said";
- an institution's name: capitalised words ending in (or led by) an institution word: "the National
  Prosecuting Authority", "Russia's Defense Ministry", "the University of Auckland".

A person needs two or more capitalised words ("said Monday" is no one), without an institution word
or a lower-case connector in them. These spans go through the same clean-up and rules as the model's
and are reported with source "rule".
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from pipelines.enrich.entities import role_before

_CONNECTORS = frozenset("of for and the de del da di du al el bin ibn van von der la le".split())
_NAME_PARTICLES = frozenset("de del da di du al el bin ibn van von der la le".split())
_RUN = re.compile(
    r"(?<![\w'’.-])[A-Z][\w'’.-]*(?:[ ](?:(?:of|for|and|the|de|del|da|di|du|al|el|bin|ibn|van|von|der|la|le)[ ])*"
    r"[A-Z][\w'’.-]*)*"
)
_INITIALS = re.compile(r"^(?:[A-Z]\.)+$")
# Capitalised words that start sentences or stand before names without being part of them.
_NOT_NAME = frozenset(
    """The A An In On At For But And Or If As By From To Of With After Before When While Since Although Though
    He She It They We I You His Her Its Their Our This That These Those There Here What Who Which Where Why How
    Mr Mrs Ms Dr Mr. Mrs. Ms. Dr. Some Many More Most Other Another Such No Not Yet Also Still However Meanwhile
    Earlier Later Last Next Several Both Each All Any Nearly About Around Despite During Under Over Until Unlike
    Like Amid Among Without Within Even Only Just Then Now Today Thus So Asked According Speaking Former Late""".split()
)
_TIME_WORDS = frozenset(
    """Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
    August September October November December Jan Jan. Feb Feb. Mar Mar. Apr Apr. Jun Jun. Jul Jul. Aug Aug.
    Sep Sep. Sept Sept. Oct Oct. Nov Nov. Dec Dec.""".split()
)
# Institution words that make a capitalised name an organisation ("Defense Ministry", "Ministry of Defense").
ORG_HEADS = frozenset(
    """Ministry Department Authority Council Commission Committee Agency Bureau Office Service Services
    Organization Organisation Court Party Front Movement Army Navy Police Guard Forces Brigade Brigades Union
    Bank Group Church Exchange Institute University Society Federation Corporation Company Association Division
    Directorate Administration Assembly Parliament Senate Congress Cabinet Secretariat Tribunal Alliance
    Coalition Network Foundation Fund Centre Center Board Staff Command Corps Battalion Regiment""".split()
)
_ORG_LEADS = frozenset({"Ministry", "University", "Center", "Centre", "Institute", "Department", "Council", "Bank"})
# Words no person's name has: institution words and the adjectives of institutions' names.
_NOT_PERSON = ORG_HEADS | frozenset(
    """National International Federal Central United Democratic Republican Islamic Human Rights Watch News Times
    Post Press Global Regional Public State Republic Kingdom Royal Supreme General Joint Special Security
    Liberation Revolutionary Popular Peoples People's People’s Nations""".split()
)
_ROLE_LIKE = frozenset(
    """president vice prime minister secretary secretary-general senator sen representative rep general gen lt col
    colonel maj major adm admiral capt captain sgt speaker chancellor king queen prince princess sheikh ayatollah
    pope mayor governor gov premier commander chief leader spokesman spokeswoman spokesperson envoy ambassador judge
    justice attorney director chairman chairwoman chair ceo emir sultan foreign defense defence interior finance
    deputy presidential""".split()
)
# Nouns of an apposition that make the name before it an organisation: "Barisan Revolusi Nasional, the
# main rebel group".
_ORG_NOUNS = frozenset(
    """group party company firm organisation organization agency movement militia network union alliance coalition
    charity nonprofit association institute bank ministry body council newspaper broadcaster channel""".split()
)
_APPOSITION = re.compile(r"^,\s+(?:a|an|the|who|whose|one|another|former)\b")
_SAID_BEFORE = re.compile(r"\bsaid\s+$")
_SAID_AFTER = re.compile(r"^\s+(?:said|says|told|added|wrote)\b")
_WORDS_AFTER = re.compile(r"[A-Za-z'’-]+")


def pattern_names(
    text: str, begin: int, known: Iterable[str] = (), covered: Iterable[tuple[int, int]] = ()
) -> list[tuple[int, int, str]]:
    """(start, end, label) of the people and organisations introduced in text[begin:] the way news
    copy introduces them; `known` are names found already (by the model), `covered` the places the
    gazetteers matched and the names found already (a known actor is still worth a span here: the
    rules then give it its title, "U.S. Secretary of State Mike Pompeo", and the KB its id)."""
    known_words = {w.rstrip(",.") for name in known for w in name.split()}
    spans = sorted(covered)
    taken = _union(spans)
    found: list[tuple[int, int, str]] = []
    for match in _RUN.finditer(text, begin):
        for start, words in _pieces(match.start(), match.group().split(" ")):
            named = _name(text, start, words, known_words, taken, spans)
            if named is not None:
                found.append(named)
    return found


def _pieces(start: int, words: list[str]) -> Iterable[tuple[int, list[str]]]:
    """A run of capitalised words split where a sentence ends inside it ("two Haitian Americans. Police")."""
    piece: list[str] = []
    piece_start = start
    for word in words:
        piece.append(word)
        start += len(word) + 1
        if word.endswith(".") and len(word) > 2 and word[-2].islower() and word.lower() not in _ABBREVIATIONS:
            yield piece_start, piece
            piece, piece_start = [], start
    if piece:
        yield piece_start, piece


_ABBREVIATIONS = frozenset("sen. gen. col. capt. lt. maj. adm. sgt. gov. rep. dr. mr. mrs. ms. st. jr. sr. no.".split())


def _name(
    text: str,
    start: int,
    words: list[str],
    known_words: set[str],
    taken: list[tuple[int, int]],
    spans: list[tuple[int, int]],
) -> tuple[int, int, str] | None:
    # trim: sentence-initial function words, an owner ("Russia's Defense Ministry": the ministry),
    # connectors at either end, a final possessive or sentence period
    while words and (words[0] in _NOT_NAME or words[0].lower() in _CONNECTORS or words[0] in _TIME_WORDS):
        start += len(words[0]) + 1
        words = words[1:]
    for i in range(len(words) - 2, -1, -1):
        if words[i].endswith(("'s", "’s")):
            start += sum(len(w) + 1 for w in words[: i + 1])
            words = words[i + 1 :]
            break
    while words and words[-1].lower() in _CONNECTORS:
        words = words[:-1]
    if not words:
        return None
    last = words[-1]
    if last.endswith(("'s", "’s")):
        last = last[:-2]
    elif last.endswith((".", ",")) and not _INITIALS.match(last):
        last = last[:-1]
    words = [*words[:-1], last]
    if not last or any(w in _TIME_WORDS for w in words):
        return None
    end = start + sum(len(w) + 1 for w in words) - 1
    if len(words) > 1 and (
        words[-1] in ORG_HEADS or (len(words) > 2 and words[0] in _ORG_LEADS and words[1] in ("of", "for"))
    ):
        return None if _same(spans, start, end) else (start, end, "ORG")
    return _person(text, start, end, words, known_words, taken)


def _person(
    text: str, start: int, end: int, words: list[str], known_words: set[str], taken: list[tuple[int, int]]
) -> tuple[int, int, str] | None:
    titled = False
    roles = [i for i, w in enumerate(words) if w.lower().rstrip(".") in _ROLE_LIKE]
    if roles and len(words) - roles[-1] - 1 >= 2:  # "U.S. Attorney General Merrick Garland"
        cut = roles[-1] + 1
    else:  # "President Hugo Chávez" but "Martin Luther King"
        cut = 0
        while cut < len(words) and words[cut].lower().rstrip(".") in _ROLE_LIKE:
            cut += 1
    if cut:
        titled = True
        while cut < len(words) - 2 and words[cut].lower() in _ROLE_GLUE:  # "Secretary of State Mike Pompeo"
            cut += 1
        start += sum(len(w) + 1 for w in words[:cut])
        words = words[cut:]
    if len(words) < 2 or any(
        w in _NOT_PERSON or (w.lower() in _CONNECTORS and w.lower() not in _NAME_PARTICLES) for w in words
    ):
        return None
    if any(w.isupper() and len(w) > 1 and not _INITIALS.match(w) for w in words):
        return None  # an acronym in it: an organisation, more likely
    if all(w in known_words for w in words) or _within(taken, start, end):
        return None  # the model or the gazetteers have it
    if titled or role_before(text, start) is not None:
        return start, end, "PERSON"
    before = text[max(0, start - 12) : start]
    after = text[end : end + 60]
    if _SAID_BEFORE.search(before) or _SAID_AFTER.match(after):
        return start, end, "PERSON"
    if _APPOSITION.match(after):  # "Park Ji-won, a researcher"; "Barisan Revolusi Nasional, the main rebel group"
        nouns = [w.lower() for w in _WORDS_AFTER.findall(after)[1:7]]
        return start, end, "ORG" if any(n in _ORG_NOUNS for n in nouns) else "PERSON"
    if before.rstrip().endswith(",") and after.startswith(","):  # "A government spokesman, Legesse Tulu, said"
        head = re.findall(r"([A-Za-z.-]+),\s*$", text[max(0, start - 40) : start])
        if head and head[-1].lower().rstrip(".") in _ROLE_LIKE | _PERSON_NOUNS:
            return start, end, "PERSON"
    return None


_ROLE_GLUE = frozenset("of the for and state affairs forces army staff joint chiefs".split())
_PERSON_NOUNS = frozenset(
    """adviser advisor aide analyst organizer organiser resident successor predecessor researcher activist lawyer
    official officer diplomat negotiator mediator coordinator commissioner""".split()
)


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _within(merged: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) lies inside one of the sorted, disjoint spans."""
    at = bisect.bisect_right(merged, (start, end + 1)) - 1
    return at >= 0 and merged[at][0] <= start and end <= merged[at][1]


def _same(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    at = bisect.bisect_left(spans, (start, end))
    return at < len(spans) and spans[at] == (start, end)
