"""Topic detection from the data-driven taxonomy in seeds/topics.yaml, with evidence sentences."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ahocorasick
import yaml

from pipelines.enrich.text import Sentence, tokens
from schemas import TopicTag

Role = Literal["strong", "cue", "exclude"]
STRONG_WEIGHT = 1.0
CUE_WEIGHT = 0.75
TITLE_FACTOR = 1.5
LEAD_FACTOR = 1.2
MAX_EVIDENCE = 3


@dataclass(frozen=True)
class Topic:
    id: str
    label: str
    description: str
    strong: tuple[str, ...]
    cues: tuple[tuple[tuple[str, ...], ...], ...]
    exclude: tuple[str, ...]
    window: int
    min_score: float


@dataclass(frozen=True)
class _Hit:
    topic: str
    role: Role
    group: int  # cue index * 100 + group index, for cues
    token: int  # token position of the match start
    length: int


@dataclass
class _SentenceHits:
    strong: bool = False
    excluded: bool = False
    cue_positions: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))


def load_taxonomy(path: Path) -> list[Topic]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    topics = []
    for topic_id, spec in data["topics"].items():
        topics.append(
            Topic(
                id=topic_id,
                label=spec.get("label", topic_id),
                description=" ".join(str(spec.get("description", "")).split()),
                strong=tuple(spec.get("strong") or ()),
                cues=tuple(tuple(tuple(group) for group in cue) for cue in spec.get("cues") or ()),
                exclude=tuple(spec.get("exclude") or ()),
                window=int(spec.get("window", defaults.get("window", 7))),
                min_score=float(spec.get("min_score", defaults.get("min_score", 0.45))),
            )
        )
    return topics


def _key(term: str) -> str:
    """Automaton key over the " tok tok " string: a trailing * leaves the right boundary open."""
    wildcard = term.endswith("*")
    words = " ".join(tokens(term.rstrip("*")))
    if not words:
        raise ValueError(f"topic term {term!r} has no words")
    return f" {words}" if wildcard else f" {words} "


class TopicMatcher:
    """All topics' terms in one Aho-Corasick automaton: one pass per article, whatever the taxonomy size."""

    def __init__(self, topics: Sequence[Topic]) -> None:
        self.topics = {t.id: t for t in topics}
        self._automaton = ahocorasick.Automaton()
        entries: dict[str, list[tuple[str, Role, int]]] = defaultdict(list)
        for topic in topics:
            for term in topic.strong:
                entries[_key(term)].append((topic.id, "strong", 0))
            for term in topic.exclude:
                entries[_key(term)].append((topic.id, "exclude", 0))
            for c, cue in enumerate(topic.cues):
                for g, group in enumerate(cue):
                    for term in group:
                        entries[_key(term)].append((topic.id, "cue", c * 100 + g))
        for key, values in entries.items():
            self._automaton.add_word(key, (key, tuple(values)))
        self._automaton.make_automaton()

    def detect(self, sentences: Sequence[Sentence], title_sentences: int = 1) -> list[TopicTag]:
        """Topics of an article given as sentences; the first `title_sentences` are the title."""
        hits = self._sentence_hits(sentences)
        tags: list[TopicTag] = []
        for topic_id, per_sentence in hits.items():
            topic = self.topics[topic_id]
            weighted: list[tuple[float, int]] = []
            for index, found in per_sentence.items():
                if found.excluded:
                    continue
                weight = STRONG_WEIGHT if found.strong else (CUE_WEIGHT if self._cue_matches(topic, found) else 0.0)
                if not weight:
                    continue
                if index < title_sentences:
                    weight *= TITLE_FACTOR
                elif index < title_sentences + 2:
                    weight *= LEAD_FACTOR
                weighted.append((weight, index))
            if not weighted:
                continue
            score = 1.0 - math.exp(-sum(w for w, _ in weighted))
            if score < topic.min_score:
                continue
            best = sorted(sorted(weighted, reverse=True)[:MAX_EVIDENCE], key=lambda wi: wi[1])
            tags.append(
                TopicTag(
                    id=topic_id, label=topic.label, score=round(score, 3), evidence=[sentences[i].text for _, i in best]
                )
            )
        return sorted(tags, key=lambda t: -t.score)

    def _sentence_hits(self, sentences: Sequence[Sentence]) -> dict[str, dict[int, _SentenceHits]]:
        parts: list[str] = []
        starts: list[int] = []  # char offset in the joined string where each sentence begins
        offset = 0
        for sentence in sentences:
            chunk = " " + " ".join(tokens(sentence.text)) + " |"
            starts.append(offset)
            parts.append(chunk)
            offset += len(chunk)
        joined = "".join(parts)
        hits: dict[str, dict[int, _SentenceHits]] = defaultdict(lambda: defaultdict(_SentenceHits))
        current = 0
        for end, (key, values) in self._automaton.iter(joined):
            begin = end - len(key) + 1
            current = bisect.bisect_right(starts, begin) - 1
            position = joined.count(" ", starts[current], begin + 1)  # token index within the sentence
            for topic_id, role, group in values:
                found = hits[topic_id][current]
                if role == "strong":
                    found.strong = True
                elif role == "exclude":
                    found.excluded = True
                else:
                    found.cue_positions[group].append((position, key.count(" ") - 1))
        return hits

    @staticmethod
    def _cue_matches(topic: Topic, found: _SentenceHits) -> bool:
        for c, cue in enumerate(topic.cues):
            groups = [found.cue_positions.get(c * 100 + g, []) for g in range(len(cue))]
            if all(groups) and _within(groups, topic.window):
                return True
        return False


def _within(groups: list[list[tuple[int, int]]], window: int) -> bool:
    """Whether one position from each group lies within `window` words of the first group's term."""
    for anchor, _ in groups[0]:
        if all(any(abs(pos - anchor) <= window for pos, _ in group) for group in groups[1:]):
            return True
    return False


def describe(topics: Sequence[Topic]) -> list[dict[str, Any]]:
    return [{"id": t.id, "label": t.label, "description": t.description} for t in topics]
