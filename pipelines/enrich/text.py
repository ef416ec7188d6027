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
_TOKEN = re.compile(r"[A-Za-z0-9]+")


@dataclass(slots=True)
class Sentence:
    """A sentence of an article: offsets into the article text, its stripped text, its position.
    (Slotted, not frozen: articles have dozens of sentences and a frozen dataclass is slow to build.)"""

    start: int
    end: int
    text: str
    index: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentence spans over `text` (offsets are into `text`); paragraph breaks always split."""
    sentences: list[Sentence] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        at = match.start()
        punctuation = text[at] != "\n"
        if punctuation and not _ends_sentence_at(text, max(start, at - 40), at):
            continue
        _add_sentence(sentences, text, start, at + 1 if punctuation else at)
        start = match.end()
    _add_sentence(sentences, text, start, len(text))
    return sentences


def _add_sentence(sentences: list[Sentence], text: str, begin: int, end: int) -> None:
    chunk = text[begin:end]
    stripped = chunk.strip()
    if stripped:
        offset = begin + chunk.index(stripped[0])
        sentences.append(Sentence(offset, offset + len(stripped), stripped, len(sentences)))


_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-")


def _ends_sentence_at(text: str, low: int, at: int) -> bool:
    """Whether the punctuation at text[at] ends a sentence, judging by the word it closes (no further
    back than `low`): not after an abbreviation ("Gen.", "U.S.") or an initial ("John F. Kennedy")."""
    end = at + 1 if text[at] == "." else at  # the word run takes a final period with it
    begin = end
    while begin > low and text[begin - 1] in _WORD_CHARS:
        begin -= 1
    if begin == end:
        return True
    word = text[begin:end].lower().rstrip(".")
    if word in _ABBREVIATIONS:
        return False
    return not (len(word) == 1 and word.isalpha())  # an initial, as in "John F. Kennedy"


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric word pieces ("U.S.-led" -> u, s, led), the unit topic terms match on."""
    return [word.lower() for word in _TOKEN.findall(text)]


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of `tokens(text)`, in the same order."""
    return [m.span() for m in _TOKEN.finditer(text)]


# Irregular forms news copy uses for event verbs: base -> (past, past participle).
_IRREGULAR = {
    "withdraw": ("withdrew", "withdrawn"),
    "draw": ("drew", "drawn"),
    "leave": ("left", "left"),
    "take": ("took", "taken"),
    "strike": ("struck", "stricken"),
    "shoot": ("shot", "shot"),
    "fight": ("fought", "fought"),
    "hold": ("held", "held"),
    "send": ("sent", "sent"),
    "bring": ("brought", "brought"),
    "break": ("broke", "broken"),
    "begin": ("began", "begun"),
    "drive": ("drove", "driven"),
    "fly": ("flew", "flown"),
    "flee": ("fled", "fled"),
    "blow": ("blew", "blown"),
    "set": ("set", "set"),
    "hit": ("hit", "hit"),
    "lead": ("led", "led"),
    "win": ("won", "won"),
    "lose": ("lost", "lost"),
    "meet": ("met", "met"),
    "throw": ("threw", "thrown"),
    "go": ("went", "gone"),
    "come": ("came", "come"),
    "keep": ("kept", "kept"),
    "give": ("gave", "given"),
    "rise": ("rose", "risen"),
    "freeze": ("froze", "frozen"),
    "overthrow": ("overthrew", "overthrown"),
    "shake": ("shook", "shaken"),
    "tear": ("tore", "torn"),
    "swear": ("swore", "sworn"),
    "steal": ("stole", "stolen"),
    "seek": ("sought", "sought"),
    "slay": ("slew", "slain"),
    "sweep": ("swept", "swept"),
    "spread": ("spread", "spread"),
    "put": ("put", "put"),
    "cut": ("cut", "cut"),
    "quit": ("quit", "quit"),
    "bomb": ("bombed", "bombed"),
    "redeploy": ("redeployed", "redeployed"),
}
_VOWELS = frozenset("aeiou")


def inflections(word: str) -> set[str]:
    """A lemma and its regular and irregular inflections ("withdraw" -> withdraws, withdrew, withdrawn,
    withdrawing; "soldier" -> soldiers). Over-generation ("troops" -> "trooped") is harmless for matching."""
    word = word.lower()
    forms = {word}
    if word in _IRREGULAR:
        forms.update(_IRREGULAR[word])
    if word.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(word + "es")
    elif word.endswith("y") and len(word) > 2 and word[-2] not in _VOWELS:
        forms.update({word[:-1] + "ies", word[:-1] + "ied"})
    else:
        forms.add(word + "s")
    if word.endswith("e"):
        forms.update({word + "d", word[:-1] + "ing"})
    else:
        stem = word
        if (
            len(word) >= 3
            and word[-1] not in _VOWELS | {"w", "x", "y"}
            and word[-2] in _VOWELS
            and word[-3] not in _VOWELS
            and word not in _NO_DOUBLING
        ):
            forms.update({word + word[-1] + "ed", word + word[-1] + "ing"})  # kidnap -> kidnapped
        if not (word.endswith("y") and word[-2:-1] not in _VOWELS) or word in _IRREGULAR:
            forms.add(stem + "ed")
        forms.add(stem + "ing")
    return forms


# Verbs ending consonant-vowel-consonant whose final consonant is not doubled (stress not on the last syllable).
_NO_DOUBLING = frozenset("target visit open happen threaten order offer enter deliver govern shelter consider".split())
