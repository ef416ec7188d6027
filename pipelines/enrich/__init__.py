"""Enrichment as plain functions and classes: RawArticle in, Article out. Beam only wires these."""

from __future__ import annotations

import functools
import gc
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.enrich.entities import (
    EntityExtractor,
    actor_tags,
    clean_model_spans,
    load_spacy_model,
    propagate_names,
)
from pipelines.enrich.gazetteer import Gazetteer
from pipelines.enrich.geo import Context as GeoContext
from pipelines.enrich.geo import resolve
from pipelines.enrich.nlp import SpacyModel
from pipelines.enrich.tailnames import pattern_names
from pipelines.enrich.text import Sentence, split_sentences
from pipelines.enrich.topics import ArticleScan, TopicMatcher, load_taxonomy
from schemas import Article, RawArticle
from seeds import seed_path

log = logging.getLogger(__name__)

ENRICHMENT_VERSION = "3"
DEFAULT_NER_MAX_CHARS = 600
_DATELINE = re.compile(
    r"^\W*(?:date\s+\S+\s+)?\(?([A-Z][A-Z'’.-]+(?:[ ,]+[A-Za-z'’.-]+){0,3})\)?\s*(?:\([^)]*\)\s*)?[—–-]"
)


@dataclass(frozen=True)
class EnrichConfig:
    """What shapes enrichment; frozen and hashable so one Enricher per config is cached per process."""

    use_model: bool = True
    model_name: str | None = None
    # The model reads the title and the whole sentences of the first N characters of the body (0: all
    # of it); further down, its names are found again and new names by patterns (tailnames.py).
    ner_max_chars: int = DEFAULT_NER_MAX_CHARS
    batch_size: int = 32
    # Worker processes (pipelines/enrich/pool.py): None = NEWSWATCH_ENRICH_WORKERS or the CPU count,
    # 0 or 1 = in the calling process. How enrichment runs, not what it computes: not part of eq/hash.
    workers: int | None = field(default=None, compare=False)


def enrichment_version(config: EnrichConfig) -> str:
    """Stored with each article; a change re-enriches articles whose text did not change."""
    return f"{ENRICHMENT_VERSION}-{'ner' if config.use_model else 'fast'}"


class Enricher:
    """Loads the model and gazetteers once; enriches articles one by one or in batches."""

    def __init__(self, config: EnrichConfig | None = None) -> None:
        self.config = config or EnrichConfig()
        self.gazetteer = shared_gazetteer()
        self.entities = EntityExtractor(self.gazetteer)
        self.topics = TopicMatcher(load_taxonomy(seed_path("topics.yaml")))
        self.nlp: SpacyModel | None = load_spacy_model(self.config.model_name) if self.config.use_model else None
        self.version = enrichment_version(self.config)

    def enrich(self, raw: RawArticle) -> Article:
        return self.enrich_batch([raw])[0]

    def enrich_batch(self, raws: Sequence[RawArticle]) -> list[Article]:
        texts = [raw.full_text for raw in raws]
        split = [split_sentences(text) for text in texts]
        windows = [len(text) for text in texts]
        model_ents: Iterable[list[tuple[int, int, str]]]
        if self.nlp is not None:
            if self.config.ner_max_chars:
                windows = [
                    ner_window(text, sentences, len(raw.title), self.config.ner_max_chars)
                    for raw, text, sentences in zip(raws, texts, split, strict=True)
                ]
            inputs = [text[:window] for text, window in zip(texts, windows, strict=True)]
            model_ents = (
                [(e.start_char, e.end_char, e.label_) for e in doc.ents]
                for doc in self.nlp.pipe(inputs, batch_size=self.config.batch_size)
            )
        else:
            model_ents = ([] for _ in raws)
        scans = [
            self.topics.scan(sentences, title_sentences=max(1, _title_sentences(sentences, len(raw.title))))
            for raw, sentences in zip(raws, split, strict=True)
        ]
        parses = self._parse_candidates(scans)
        return [
            self._finish(raw, text, ents, sentences, scan, parsed, window)
            for raw, text, ents, sentences, scan, parsed, window in zip(
                raws, texts, model_ents, split, scans, parses, windows, strict=True
            )
        ]

    def _parse_candidates(self, scans: Sequence[ArticleScan]) -> list[dict[int, Any] | None]:
        """Parse, in one batch, only the sentences whose topic cues need their syntax checked
        (None per article when there is no parser: topics then judge cues by their window)."""
        if self.nlp is None or not self.nlp.can_parse:
            return [None for _ in scans]
        parses: list[dict[int, Any] | None] = [{} for _ in scans]
        wanted = [(n, i) for n, scan in enumerate(scans) for i in scan.to_parse()]
        if not wanted:
            return parses
        docs = self.nlp.parse(scans[n].sentences[i].text for n, i in wanted)
        for (n, i), doc in zip(wanted, docs, strict=True):
            parsed = parses[n]
            if parsed is not None:
                parsed[i] = doc
        return parses

    def _finish(
        self,
        raw: RawArticle,
        text: str,
        model_ents: list[tuple[int, int, str]],
        sentences: list[Sentence],
        scan: ArticleScan,
        parsed: dict[int, Any] | None,
        window: int | None = None,
    ) -> Article:
        title_end = len(raw.title)
        title_sentences = _title_sentences(sentences, title_end)
        lead_end = sentences[title_sentences + 1].end if len(sentences) > title_sentences + 1 else len(text)
        dateline = find_dateline(text, title_end)
        matches = self.gazetteer.find(text)
        model_spans = clean_model_spans(text, model_ents)
        pattern_spans: list[tuple[int, int, str]] = []
        if self.nlp is not None and window is not None and window < len(text):
            # The model read text[:window]: its names further down, and the people and organisations
            # introduced there, found by patterns of news copy (pipelines/enrich/tailnames.py).
            if model_spans:
                model_spans = propagate_names(text, model_spans, window)
            pattern_spans = clean_model_spans(
                text,
                pattern_names(
                    text,
                    window,
                    known=[text[s:e] for s, e, _ in model_spans],
                    covered=[(m.start, m.end) for m in matches if m.candidates[0].kind != "actor"]
                    + [(s, e) for s, e, _ in model_spans if s >= window],
                ),
            )
            model_spans = model_spans + pattern_spans
        people = frozenset(
            word for s, e, label in model_spans if label == "PERSON" for word in text[s:e].split()[1:] if len(word) > 2
        )
        geo = resolve(
            self.gazetteer,
            text,
            matches,
            GeoContext(
                title_end=title_end,
                lead_end=lead_end,
                dateline=dateline[:2] if dateline else None,
                model_spans=model_spans,
                used_model=self.nlp is not None,
                model_end=window if window is not None and window < len(text) else None,
                people=people,
            ),
        )
        entities = self.entities.extract(
            text,
            model_spans,
            matches,
            geo.mentions,
            (dateline[0], dateline[2]) if dateline else None,
            cleaned=True,
            rule_spans=[(s, e) for s, e, _ in pattern_spans],
        )
        return Article(
            **raw.model_dump(),
            entities=entities,
            countries=geo.countries,
            places=geo.places,
            regions=geo.regions,
            topics=self.topics.score(scan, parsed),
            actors=actor_tags(entities, self.gazetteer, geo.countries, geo.modifiers),
            enrichment_version=self.version,
        )


def ner_window(text: str, sentences: Sequence[Sentence], title_end: int, limit: int) -> int:
    """Where the model stops reading: after the title and the whole sentences of the first `limit`
    characters of the body (at least one sentence of it)."""
    cut = title_end + 2 + limit
    if len(text) <= cut:
        return len(text)
    window = 0
    for sentence in sentences:
        if sentence.end > cut:
            return window if window > title_end else sentence.end
        window = sentence.end
    return len(text)


def find_dateline(text: str, title_end: int) -> tuple[int, int, int] | None:
    """The dateline of the body ("BAGHDAD —", "KRAMATORSK, Ukraine (Wire) —"): (place start, place end,
    end of the whole dateline), offsets into `text`."""
    body_start = title_end + 2
    found = _DATELINE.match(text[body_start : body_start + 160])
    if not found:
        return None
    return body_start + found.start(1), body_start + found.end(1), body_start + found.end()


def _title_sentences(sentences: Sequence[Sentence], title_end: int) -> int:
    return sum(1 for s in sentences if s.start < title_end)


@functools.lru_cache(maxsize=1)
def shared_gazetteer() -> Gazetteer:
    """The gazetteer is the same for every config: build it once per process (a few seconds)."""
    return Gazetteer()


@functools.lru_cache(maxsize=2)
def shared_enricher(config: EnrichConfig) -> Enricher:
    """One Enricher per process and config: Beam DoFns call this in setup() so each worker loads once."""
    log.info("loading enrichment resources (model=%s)", config.model_name or "default" if config.use_model else "off")
    enricher = Enricher(config)
    # The gazetteers and the model are ~700k long-lived objects: left in the collector's care, every
    # full collection walks them all (a third of fast enrichment's time). Frozen, they are skipped,
    # and worker processes forked later keep sharing their pages.
    gc.collect()
    gc.freeze()
    return enricher
