"""Sentences and word tokens, cheap enough to run on every article without a model."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words after which a period does not end a sentence (titles, initials, abbreviations in news copy).
_ABBREVIATIONS = frozenset(
    "u.s u.k u.n e.u mr mrs ms dr gen lt col maj capt sgt cpl adm cmdr gov sen rep pres st mt ft jr sr "
    "no vs etc inc corp co ltd jan feb mar apr jun jul aug sep sept oct nov dec a.m p.m dept est approx "
    "rev fr prof r-s.c d-n.y r-fla r-texas d-calif".split()
)
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n\s*\n")
_WORD_BEFORE = re.compile(r"([A-Za-z.\-]+)[.!?]?[\"'”’)\]]*$")
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    index: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentence spans over `text` (offsets are into `text`); paragraph breaks always split."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group().strip() and not _ends_sentence(text[max(start, match.start() - 40) : match.start() + 1]):
            continue
        spans.append((start, match.start() + (1 if match.group().strip() else 0)))
        start = match.end()
    spans.append((start, len(text)))
    sentences: list[Sentence] = []
    for begin, end in spans:
        chunk = text[begin:end]
        stripped = chunk.strip()
        if stripped:
            offset = begin + chunk.index(stripped[0])
            sentences.append(Sentence(offset, offset + len(stripped), stripped, len(sentences)))
    return sentences


def _ends_sentence(before: str) -> bool:
    match = _WORD_BEFORE.search(before)
    if not match:
        return True
    word = match.group(1).lower().rstrip(".")
    if word in _ABBREVIATIONS:
        return False
    return not (len(word) == 1 and word.isalpha())  # an initial, as in "John F. Kennedy"


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric word pieces ("U.S.-led" -> u, s, led), the unit topic terms match on."""
    return _TOKEN.findall(text.lower())
