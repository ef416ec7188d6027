"""Near-duplicate stories: the same report carried by several feeds under different URLs.

Two alerts are near-duplicates when the word 3-shingles of their leads mostly overlap (containment, so a
feed that carries only the first paragraph still matches one that carries the whole text), or when their
titles are nearly the same words. Exact shingle sets are compared, but only with the earlier stories an inverted
index names as candidates (`NearDuplicateIndex`): a busy subscription's realert window can hold thousands.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

SHINGLE = 3
TEXT_THRESHOLD = 0.6  # share of the smaller lead's shingles found in the other
TITLE_THRESHOLD = 0.8  # Jaccard of title words
MIN_SHINGLES = 8  # leads shorter than this are judged by their titles only
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Fingerprint:
    title: frozenset[str]
    shingles: frozenset[int]


def fingerprint(title: str, lead: str) -> Fingerprint:
    words = _WORD.findall(lead.casefold())
    shingles = frozenset(
        zlib.crc32(" ".join(words[i : i + SHINGLE]).encode("utf-8")) for i in range(max(0, len(words) - SHINGLE + 1))
    )
    return Fingerprint(frozenset(_WORD.findall(title.casefold())), shingles)


def similarity(a: Fingerprint, b: Fingerprint) -> float:
    """1.0 for the same story, near 0 for unrelated ones; the larger of the text and the title evidence."""
    text = 0.0
    if len(a.shingles) >= MIN_SHINGLES and len(b.shingles) >= MIN_SHINGLES:
        text = len(a.shingles & b.shingles) / min(len(a.shingles), len(b.shingles))
    title = 0.0
    if len(a.title) >= 4 and len(b.title) >= 4:
        title = len(a.title & b.title) / len(a.title | b.title)
    # Scale the title evidence so that both signals share one threshold.
    return max(text, title * TEXT_THRESHOLD / TITLE_THRESHOLD)


def is_near_duplicate(a: Fingerprint, b: Fingerprint) -> bool:
    return similarity(a, b) >= TEXT_THRESHOLD


class NearDuplicateIndex:
    """The near-duplicate of a new story among many earlier ones without comparing it to each.

    Inverted indexes make the candidates: every earlier story sharing a lead shingle (a text match
    shares at least MIN_SHINGLES * TEXT_THRESHOLD of them), and every earlier story sharing a word of
    the title prefix (prefix filtering: two word sets with Jaccard >= TITLE_THRESHOLD share a word
    among the first |set| - ceil(TITLE_THRESHOLD * |set|) + 1 of each, in any fixed order). Only those
    are scored, so a subscription's thousands of recent alerts cost what its few similar ones cost."""

    def __init__(self) -> None:
        self.items: list[Fingerprint] = []
        self._by_shingle: dict[int, list[int]] = {}
        self._by_title_word: dict[str, list[int]] = {}

    def add(self, mark: Fingerprint) -> None:
        """Index a story at the next position (positions follow the order of `add` calls)."""
        position = len(self.items)
        self.items.append(mark)
        if len(mark.shingles) >= MIN_SHINGLES:
            for shingle in mark.shingles:
                self._by_shingle.setdefault(shingle, []).append(position)
        for word in _title_prefix(mark.title):
            self._by_title_word.setdefault(word, []).append(position)

    def candidates(self, mark: Fingerprint) -> list[int]:
        """Positions of the stories that may reach TEXT_THRESHOLD against `mark`, in `add` order."""
        found: set[int] = set()
        if len(mark.shingles) >= MIN_SHINGLES:
            for shingle in mark.shingles:
                found.update(self._by_shingle.get(shingle, ()))
        for word in _title_prefix(mark.title):
            found.update(self._by_title_word.get(word, ()))
        return sorted(found)


def _title_prefix(title: frozenset[str]) -> list[str]:
    if len(title) < 4:
        return []  # titles this short never count (similarity)
    keep = len(title) - math.ceil(TITLE_THRESHOLD * len(title) - 1e-9) + 1
    return sorted(title)[:keep]
