"""Near-duplicate stories: the same report carried by several feeds under different URLs.

Two alerts are near-duplicates when the word 3-shingles of their leads mostly overlap (containment, so a
feed that carries only the first paragraph still matches one that carries the whole text), or when their
titles are nearly the same words. Exact shingle sets are compared: the alerts of one subscription within one
realert window are few, so MinHash sketches would save nothing here.
"""

from __future__ import annotations

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
