"""Countries, places and regions of an article, ranked by salience rather than by mere mention."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.enrich.gazetteer import Candidate, Gazetteer, GazetteerMatch, PlaceInfo
from schemas import Entity, Place

WEIGHTS = {"country": 1.0, "city": 0.8, "admin1": 0.8, "region": 0.6, "demonym": 0.45, "actor": 0.3}
TITLE_FACTOR = 2.0
LEAD_FACTOR = 1.3
DATELINE_BONUS = 2.0
MIN_SCORE = 0.55
RELATIVE_FLOOR = 0.12  # a country scoring under this fraction of the top one is incidental


@dataclass
class GeoResult:
    countries: list[str] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def _accept_city(
    match: GazetteerMatch, place: PlaceInfo, entity_labels: dict[tuple[int, int], str], used_model: bool, dateline: bool
) -> bool:
    labels = {label for (s, e), label in entity_labels.items() if s < match.end and match.start < e}
    if labels & {"PERSON", "ORG", "NORP", "WORK_OF_ART", "EVENT"} and not dateline:
        return False
    if dateline or labels & {"GPE", "LOC", "FAC"}:
        return True
    if used_model:
        return place.capital and place.population >= 200_000
    return place.capital or place.population >= 500_000


def resolve(
    gazetteer: Gazetteer,
    text: str,
    matches: Sequence[GazetteerMatch],
    entities: Sequence[Entity],
    *,
    title_end: int,
    lead_end: int,
    dateline_end: int,
    used_model: bool,
) -> GeoResult:
    """Rank countries; resolve city names by the article's other countries, then by size."""
    entity_labels = {(e.start, e.end): e.label for e in entities if e.source == "model" or e.label == "PERSON"}
    direct: set[str] = {c.ref for m in matches for c in m.candidates[:1] if c.kind in ("country", "demonym")}
    if any(all(c.kind == "admin1" for c in m.candidates) for m in matches):
        direct.add("US")  # an unambiguous US state ("Texas") puts the article in the US
    us_context = "US" in direct

    scores: dict[str, float] = defaultdict(float)
    place_hits: dict[int, tuple[PlaceInfo, int, int]] = {}  # index -> (place, mentions, first offset)
    named_regions: list[str] = []

    def add(country: str, kind: str, match: GazetteerMatch) -> None:
        if kind == "country" and _adjectival(text, match.end):
            kind = "demonym"  # "U.S. troops", "Iran-backed": a modifier, like "American"
        weight = WEIGHTS[kind]
        if match.start < title_end:
            weight *= TITLE_FACTOR
        elif match.start < lead_end:
            weight *= LEAD_FACTOR
        if title_end <= match.start < dateline_end:
            weight += DATELINE_BONUS
        scores[country] += weight

    for match in matches:
        chosen = _choose(gazetteer, match.candidates, direct, us_context)
        if chosen is None:
            continue
        if chosen.kind in ("country", "demonym"):
            add(chosen.ref, chosen.kind, match)
        elif chosen.kind == "actor":
            actor = gazetteer.actors[chosen.ref]
            if actor.country:
                add(actor.country, "actor", match)
        else:
            place = gazetteer.place(chosen)
            dateline = title_end <= match.start < dateline_end
            if chosen.kind == "city" and not _accept_city(match, place, entity_labels, used_model, dateline):
                continue
            if chosen.kind == "region":
                if place.name not in named_regions:
                    named_regions.append(place.name)
                if place.single_country and place.countries:
                    add(place.countries[0], "region", match)
                continue
            add(place.country, chosen.kind, match)
            index = int(chosen.ref)
            _, mentions, first = place_hits.get(index, (place, 0, match.start))
            place_hits[index] = (place, mentions + 1, first)

    result = GeoResult(scores=dict(scores))
    if scores:
        top = max(scores.values())
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        result.countries = [c for c, s in ranked if s >= MIN_SCORE and s >= RELATIVE_FLOOR * top]
    for place, mentions, _ in sorted(place_hits.values(), key=lambda p: (-p[1], p[2])):
        if place.lat is None or place.lon is None:
            continue
        result.places.append(
            Place(
                name=place.name,
                country=place.country,
                lat=place.lat,
                lon=place.lon,
                kind="city" if place.kind == "city" else "admin1",
                geonames_id=place.geonames_id,
                mentions=mentions,
            )
        )
    regions: list[str] = []
    for code in result.countries[:3]:
        info = gazetteer.countries.get(code)
        for name in (info.region, info.subregion) if info else ():
            if name and name not in regions:
                regions.append(name)
    result.regions = regions + [r for r in named_regions if r not in regions]
    return result


_FUNCTION_WORDS = frozenset(
    """and or but nor to on in as is was were are has had have said says say will would could should can may
    might must which that who whom whose for from with of at by after before over under since because while where
    when than then also into onto about against amid during until unless if so yet not did does do been being""".split()
)


def _adjectival(text: str, end: int) -> bool:
    """A country name used as a modifier: followed by a hyphen or by a lower-case content word."""
    rest = text[end : end + 24]
    if rest.startswith("-"):
        return True
    if not rest.startswith(" "):
        return False
    word = rest[1:].split(" ", 1)[0].strip(",.;:")
    return word.isalpha() and word.islower() and word not in _FUNCTION_WORDS


def _choose(
    gazetteer: Gazetteer, candidates: Sequence[Candidate], direct: set[str], us_context: bool
) -> Candidate | None:
    """Pick a reading of an ambiguous name: 'Georgia' is the US state only amid US context;
    'Tripoli' is the one in a country the article mentions, else the most populous."""
    if not candidates:
        return None
    kinds = {c.kind for c in candidates}
    if "admin1" in kinds and "country" in kinds:
        return next(c for c in candidates if c.kind == ("admin1" if us_context else "country"))
    first = candidates[0]
    if first.kind != "city":
        return first
    cities = [c for c in candidates if c.kind == "city"]

    def rank(c: Candidate) -> tuple[bool, bool, int]:
        place = gazetteer.place(c)
        return (place.country in direct, place.capital, place.population)

    return max(cities, key=rank)
