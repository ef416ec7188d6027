"""Enrichment as plain functions and classes: RawArticle in, Article out. Beam only wires these."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.enrich.entities import EntityExtractor, load_spacy_model
from pipelines.enrich.gazetteer import Gazetteer
from pipelines.enrich.geo import resolve
from pipelines.enrich.text import split_sentences
from pipelines.enrich.topics import TopicMatcher, load_taxonomy
from schemas import Article, RawArticle
from seeds import seed_path

log = logging.getLogger(__name__)

ENRICHMENT_VERSION = "1"
_DATELINE = re.compile(
    r"^\W*(?:date\s+\S+\s+)?\(?([A-Z][A-Z'.-]+(?:[ ,]+[A-Za-z'.-]+){0,3})\)?\s*(?:\([^)]*\)\s*)?[—–-]"
)


@dataclass(frozen=True)
class EnrichConfig:
    """What shapes enrichment; frozen and hashable so one Enricher per config is cached per process."""

    use_model: bool = True
    model_name: str | None = None
    ner_max_chars: int = 0  # 0: run the model on the whole text; N: on title + the first N chars
    batch_size: int = 32


def enrichment_version(config: EnrichConfig) -> str:
    """Stored with each article; a change re-enriches articles whose text did not change."""
    return f"{ENRICHMENT_VERSION}-{'ner' if config.use_model else 'fast'}"


class Enricher:
    """Loads the model and gazetteers once; enriches articles one by one or in batches."""

    def __init__(self, config: EnrichConfig | None = None) -> None:
        self.config = config or EnrichConfig()
        self.gazetteer = Gazetteer()
        self.entities = EntityExtractor(self.gazetteer)
        self.topics = TopicMatcher(load_taxonomy(seed_path("topics.yaml")))
        self.nlp: Any = load_spacy_model(self.config.model_name) if self.config.use_model else None
        self.version = enrichment_version(self.config)

    def enrich(self, raw: RawArticle) -> Article:
        return self.enrich_batch([raw])[0]

    def enrich_batch(self, raws: Sequence[RawArticle]) -> list[Article]:
        texts = [raw.full_text for raw in raws]
        model_ents: Iterable[list[tuple[int, int, str]]]
        if self.nlp is not None:
            limit = self.config.ner_max_chars
            inputs = [t if not limit else t[: len(r.title) + 2 + limit] for t, r in zip(texts, raws, strict=True)]
            model_ents = (
                [(e.start_char, e.end_char, e.label_) for e in doc.ents]
                for doc in self.nlp.pipe(inputs, batch_size=self.config.batch_size)
            )
        else:
            model_ents = ([] for _ in raws)
        return [self._finish(raw, text, ents) for raw, text, ents in zip(raws, texts, model_ents, strict=True)]

    def _finish(self, raw: RawArticle, text: str, model_ents: list[tuple[int, int, str]]) -> Article:
        title_end = len(raw.title)
        sentences = split_sentences(text)
        title_sentences = sum(1 for s in sentences if s.start < title_end)
        lead_end = sentences[title_sentences + 1].end if len(sentences) > title_sentences + 1 else len(text)
        body_start = title_end + 2
        dateline = _DATELINE.match(text[body_start : body_start + 160])
        dateline_end = body_start + dateline.end() if dateline else body_start
        matches = self.gazetteer.find(text)
        entities = self.entities.extract(text, model_ents, matches)
        geo = resolve(
            self.gazetteer,
            text,
            matches,
            entities,
            title_end=title_end,
            lead_end=lead_end,
            dateline_end=dateline_end,
            used_model=self.nlp is not None,
        )
        topics = self.topics.detect(sentences, title_sentences=max(1, title_sentences))
        return Article(
            **raw.model_dump(),
            entities=entities,
            countries=geo.countries,
            places=geo.places,
            regions=geo.regions,
            topics=topics,
            enrichment_version=self.version,
        )


@functools.lru_cache(maxsize=2)
def shared_enricher(config: EnrichConfig) -> Enricher:
    """One Enricher per process and config: Beam DoFns call this in setup() so each worker loads once."""
    log.info("loading enrichment resources (model=%s)", config.model_name or "default" if config.use_model else "off")
    return Enricher(config)
