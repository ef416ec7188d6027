"""Countries, places and regions of an article, ranked by salience rather than by mere mention.

A gazetteer name becomes a place mention only with some evidence that it is one here: the model
labelled it a place, it sits in a locative phrase ("near the town of X", "X province", "in X"), it is
the dateline, or it is a well-known city. Ambiguous names are read against the article's unambiguous
countries: 'Tripoli' is the Lebanese one in an article about Lebanon, 'Georgia' the US state amid US
context, and a US state is never taken for a foreign city of the same name. Countries are scored
by where they are named (title, dateline, lead, body) and how (a country name, a city in it, a
demonym modifying "troops" or "government", a passing "German aid worker"), and those far below the
top country are dropped as incidental.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.enrich.gazetteer import Candidate, Gazetteer, GazetteerMatch, PlaceInfo, ascii_fold
from schemas import Place

# Evidence weights per mention kind; demonyms and adjectival country names depend on their head noun.
WEIGHTS = {"country": 1.0, "city": 0.8, "admin1": 0.8, "region": 0.6, "acting": 0.8, "demonym": 0.3, "actor": 0.4}
TITLE_FACTOR = 2.0
LEAD_FACTOR = 1.3
DATELINE_BONUS = 2.0
MIN_SCORE = 0.8  # below this a country is never reported
KEEP_SCORE = 1.5  # a country named in the title or dateline with at least this much evidence is always reported
RELATIVE_FLOOR = 0.35  # between the two, a country must reach this fraction of the top country's score
MIN_CITY_POPULATION_UNLABELLED = 500_000  # a city name nobody marked as a place must be this big (or a capital)

# Nouns that make a demonym or adjectival country name an actor in the story ("Iranian general",
# "U.S. troops", "Israeli missiles") rather than a passing attribute ("Swedish fans").
_ACTING_NOUNS = frozenset(
    """troops troop forces force army armies military militaries soldiers soldier warplanes warplane jets jet drones
    drone missiles missile navy air government governments officials official president prime premier minister
    ministers ministry police authorities authority embassy embassies diplomats diplomat delegation envoy ambassador
    parliament lawmakers legislators court courts militia militias rebels rebel fighters officers officer commander
    commanders general generals security intelligence strike strikes airstrike airstrikes counterpart spokesman
    spokeswoman spokesperson leader leaders junta regime coalition guard guards marines special defense defence
    foreign state interior warships warship vessels gunboats artillery tanks shelling offensive operation operations
    agents peacekeepers contingent battalion brigade sanctions negotiators team side attack attacks assault assaults
    offensive incursion invasion raid raids bombardment shelling""".split()
)
_STATE_ACTORS = frozenset({"GOV", "MIL", "LEG", "COP", "JUD", "REB"})
_GENERIC_INSTITUTIONS = frozenset(
    {
        "Congress",
        "Senate",
        "Parliament",
        "Cabinet",
        "Labour",
        "Assembly",
        "Government",
        "Army",
        "Navy",
        "Police",
        "Supreme Court",
        "National Assembly",
        "House of Representatives",
        "Red Cross",
        "Red Crescent",
    }
)
_LOCATIVE_TYPES = (
    r"town|city|village|villages|district|province|region|state|county|capital|port|suburb|neighbou?rhood|"
    r"governorate|municipality|prefecture|department|oblast|area|camp|island|border town|port city"
)
_STRONG_BEFORE = re.compile(
    r"\b(?:" + _LOCATIVE_TYPES + r")\s+of\s+$|"
    r"\b(?:in|near|outside|around|across|into|toward|towards|from|at|to|of)\s+(?:the\s+)?"
    r"(?:northern|southern|eastern|western|central|northeastern|northwestern|southeastern|southwestern|"
    r"north|south|east|west|restive|embattled|besieged|frontline|front-line|capital|coastal|border|"
    r"rebel-held|opposition-held|government-held)\s+(?:(?:town|city|village|region|province)\s+(?:of\s+)?)?$",
    re.IGNORECASE,
)
_WEAK_BEFORE = re.compile(r"\b(?:in|near|outside|around|across|into|toward|towards)\s+(?:the\s+)?$", re.IGNORECASE)
_STRONG_AFTER = re.compile(
    r"^(?:,\s+(?:a|the)\s+(?:town|city|village|port|district)\b|\s+(?:" + _LOCATIVE_TYPES + r")\b)",
    re.IGNORECASE,
)


_LETTER_RUN = re.compile(r"[A-Za-z]+")
_NOT_HEADS = frozenset(("led", "backed", "based", "allied", "aligned", "funded", "made", "born", "s"))
_LANDFORM = r"\b(?:Peninsula|Sea|Gulf|Strait|Straits|Mountains|Valley|Heights|Basin|Desert|Delta|Coast|Ocean)\b"


@dataclass(frozen=True)
class PlaceMention:
    """A gazetteer name accepted as a place (or demonym) in this article."""

    start: int
    end: int
    surface: str
    kind: str  # country, demonym, city, admin1, region
    country: str  # ISO alpha-2, "" for a region spanning several countries
    label: str  # GPE, LOC or NORP
    canonical: str
    kb_id: str | None


@dataclass
class GeoResult:
    countries: list[str] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    mentions: list[PlaceMention] = field(default_factory=list)
    modifiers: list[tuple[str, str]] = field(default_factory=list)  # (country, head noun): "Iraqi lawmakers"


@dataclass(frozen=True)
class Context:
    """Where the title, lead and dateline end, and what the model said (spans and labels)."""

    title_end: int
    lead_end: int
    dateline: tuple[int, int] | None = None
    model_spans: Sequence[tuple[int, int, str]] = ()
    used_model: bool = False
    model_end: int | None = None  # the model read text[:model_end] only (None: all of it)
    people: frozenset[str] = frozenset()  # words of multi-word PERSON names ("Soleimani", "Jordan")


# The last word (its last hyphenated part) of every phrase _STRONG_BEFORE and _WEAK_BEFORE end with:
# unless the text before a name ends with one of these and a space, neither pattern can match there.
_LOCATIVE_LAST_WORDS = frozenset(
    """of the in near outside around across into toward towards town city village region province northern
    southern eastern western central northeastern northwestern southeastern southwestern north south east west
    restive embattled besieged frontline line capital coastal border held""".split()
)


def locative(text: str, start: int, end: int) -> str:
    """'strong' ("near the town of X", "X province"), 'weak' ("in X") or '' for the name text[start:end]."""
    low = max(0, start - 60)
    if _STRONG_AFTER.match(text[end : end + 40]):
        return "strong"
    # The patterns before the name are searched (anchored at the end) only when the word before it
    # could end one of them: searching a 60-character window for an end-anchored pattern is slow.
    space = start
    while space > low and text[space - 1].isspace():
        space -= 1
    if space == start:
        return ""
    word = space
    while word > low and text[word - 1].isalpha():
        word -= 1
    if text[word:space].casefold() not in _LOCATIVE_LAST_WORDS:
        return ""
    before = text[low:start]
    if _STRONG_BEFORE.search(before):
        return "strong"
    if _WEAK_BEFORE.search(before):
        return "weak"
    return ""


def _labels_over(spans: Sequence[tuple[int, int, str]], start: int, end: int) -> list[tuple[int, int, str]]:
    return [(s, e, label) for s, e, label in spans if s < end and start < e]


def _accept_place(
    text: str, match: GazetteerMatch, place: PlaceInfo, ctx: Context, in_context: bool, dateline: bool
) -> bool:
    """Whether a city/subdivision name is used as a place here."""
    if dateline:
        return True
    over = _labels_over(ctx.model_spans, match.start, match.end)
    labels = {label for _, _, label in over}
    exact = {label for s, e, label in over if s == match.start and e == match.end}
    where = locative(text, match.start, match.end)
    if any(label in ("GPE", "LOC", "FAC") and _same_place(text, s, e, match) for s, e, label in over):
        return True
    if match.surface in ctx.people:
        return False  # "Jordan" in a text about Michael Jordan
    if labels - exact:  # the name is part of a longer organisation or person name ("Kabul University")
        return False
    if labels:  # the model said PERSON/ORG/NORP for exactly this name: a locative phrase or a big city overrules it
        if where == "strong" or (where == "weak" and (in_context or place.population >= 100_000)):
            return True
        return place.kind == "city" and (place.capital or place.population >= 300_000)
    if where:
        return True
    if in_context and place.kind == "admin1":
        return True
    big = place.capital or place.population >= MIN_CITY_POPULATION_UNLABELLED
    if ctx.used_model and (ctx.model_end is None or match.start < ctx.model_end):
        return (big and in_context) or place.capital or place.population >= 1_000_000
    return big


def _same_place(text: str, start: int, end: int, match: GazetteerMatch) -> bool:
    """Whether a model place span is this name, perhaps with a type word ("Herat province", "Kyiv region"),
    rather than a longer name that contains it ("Noto Peninsula" is not the Italian town Noto)."""
    if start >= match.start and end <= match.end:
        return True
    extra = (text[start : match.start] + " " + text[match.end : end]).split()
    return all(w.islower() or w.strip(",.") in _PLACE_TYPE_WORDS for w in extra)


_PLACE_TYPE_WORDS = frozenset(
    "City Province Region State District Governorate Oblast County Prefecture Municipality Department".split()
)
# Lower-case nouns a country name modifies ("U.S. troops", "Iran nuclear deal"); in headlines a country name
# is more often followed by a verb ("Russia launches", "Iran agree"), which does not make it a modifier.
_MODIFIED_NOUNS = _ACTING_NOUNS | frozenset(
    """capital border borders people citizens citizen economy territory soil nationals national team coast waters
    airspace city cities province region nuclear oil gas energy trade market markets company companies firms
    authorities sources media television tv news agency broadcaster ally allies bases base embassy consulate
    aid programme program deal talks envoy visa passport currency election elections vote""".split()
)


def _head_noun(text: str, end: int) -> str:
    """The word a modifier qualifies: 'U.S.-led coalition' -> coalition, 'Iranian Gen.' -> gen."""
    for position, word in enumerate(_LETTER_RUN.finditer(text, end, end + 60)):
        if position == 3:
            break
        lower = word.group().lower()
        if lower not in _NOT_HEADS:
            return lower
    return ""


def _adjectival(text: str, end: int) -> bool:
    """A country name used as a modifier: 'U.S.-led', 'U.S. troops', 'Iran nuclear deal'."""
    rest = text[end : end + 24]
    if rest.startswith("-"):
        return True
    if not rest.startswith(" "):
        return False
    word = rest[1:].split(" ", 1)[0].strip(",.;:")
    return word in _MODIFIED_NOUNS


def _mention_kind(text: str, match: GazetteerMatch, kind: str) -> str:
    """'demonym'/'country' -> 'acting' when the name modifies an actor noun."""
    if kind == "country" and not _adjectival(text, match.end):
        return "country"
    head = _head_noun(text, match.end)
    if head in _ACTING_NOUNS or head in ("gen", "col", "lt", "maj", "adm", "sgt", "capt"):
        return "acting"
    return "demonym"


def resolve(gazetteer: Gazetteer, text: str, matches: Sequence[GazetteerMatch], ctx: Context) -> GeoResult:
    """Accept place names, resolve ambiguous ones by the article's other places, rank the countries."""
    direct = _direct_countries(gazetteer, matches, ctx)
    us_context = "US" in direct
    state_names = {  # "Georgia": the US state or the country, decided once per name
        m.surface
        for m in matches
        if {c.kind for c in m.candidates} >= {"admin1", "country"} and _us_state_context(text, m)
    }
    scores: dict[str, float] = defaultdict(float)
    place_hits: dict[int, list[int]] = {}  # place index -> [mentions, first offset]
    mentions: list[PlaceMention] = []
    named_regions: list[str] = []
    modifiers: list[tuple[str, str]] = []
    accepted_surfaces: set[str] = set()
    pending: list[tuple[GazetteerMatch, Candidate, PlaceInfo]] = []

    headline: set[str] = set()

    def add(country: str, kind: str, match: GazetteerMatch) -> None:
        weight = WEIGHTS[kind]
        in_dateline = bool(ctx.dateline and ctx.dateline[0] <= match.start < ctx.dateline[1])
        if (match.start < ctx.title_end and kind in ("country", "city", "admin1", "acting", "actor")) or in_dateline:
            headline.add(country)
        if match.start < ctx.title_end:
            weight *= TITLE_FACTOR
        elif match.start < ctx.lead_end:
            weight *= LEAD_FACTOR
        if in_dateline:
            weight += DATELINE_BONUS
        scores[country] += weight

    def take_place(match: GazetteerMatch, chosen: Candidate, place: PlaceInfo) -> None:
        accepted_surfaces.add(match.surface)
        if chosen.kind == "region":
            if place.name not in named_regions:
                named_regions.append(place.name)
            if len(place.countries) <= 2 and place.countries:
                for country in place.countries:
                    add(country, "region", match)
            geographic = re.search(_LANDFORM, place.name) is not None
            label = "LOC" if place.waterbody or geographic or len(place.countries) > 2 else "GPE"
            mentions.append(
                PlaceMention(match.start, match.end, match.surface, "region", place.country, label, place.name, None)
            )
            return
        add(place.country, chosen.kind, match)
        index = int(chosen.ref)
        hit = place_hits.setdefault(index, [0, match.start])
        hit[0] += 1
        kb_id = f"geonames:{place.geonames_id}" if place.geonames_id else (place.admin1 or None)
        mentions.append(
            PlaceMention(
                match.start, match.end, match.surface, chosen.kind, place.country, "GPE", _display(place), kb_id
            )
        )

    for match in matches:
        chosen = _choose(gazetteer, text, match, direct, us_context or match.surface in state_names)
        if chosen is None:
            continue
        if chosen.kind in ("country", "demonym"):
            info = gazetteer.countries[chosen.ref]
            kind = _mention_kind(text, match, chosen.kind)
            add(chosen.ref, kind, match)
            if kind != "country":
                modifiers.append((chosen.ref, _head_noun(text, match.end)))
            is_country = chosen.kind == "country"
            mentions.append(
                PlaceMention(
                    match.start,
                    match.end,
                    match.surface,
                    chosen.kind,
                    chosen.ref,
                    "GPE" if is_country else "NORP",
                    info.name if is_country else match.surface,
                    chosen.ref,
                )
            )
            continue
        if chosen.kind == "actor":
            actor = gazetteer.actors[chosen.ref]
            if match.surface in _GENERIC_INSTITUTIONS:
                continue  # "Congress", "Senate", "Labour": every country has one
            if actor.country and actor.actor_type in _STATE_ACTORS:
                add(actor.country, "acting", match)  # "Pentagon", "Saudi-led coalition": the state acts
            elif actor.country and actor.actor_type not in ("MED", "BUS", "NGO", "REL"):
                add(actor.country, "actor", match)
            continue
        place = gazetteer.place(chosen)
        dateline = bool(ctx.dateline and ctx.dateline[0] <= match.start < ctx.dateline[1])
        if chosen.kind == "region" or _accept_place(text, match, place, ctx, place.country in direct, dateline):
            take_place(match, chosen, place)
        else:
            pending.append((match, chosen, place))
    for match, chosen, place in pending:  # a name accepted once is a place at every mention
        if match.surface in accepted_surfaces and match.surface not in ctx.people:
            take_place(match, chosen, place)

    result = GeoResult(scores=dict(scores), mentions=sorted(mentions, key=lambda m: m.start), modifiers=modifiers)
    result.countries = rank_countries(scores, headline)
    for index, (count, _) in sorted(place_hits.items(), key=lambda kv: (-kv[1][0], kv[1][1])):
        place = gazetteer.places[index]
        if place.lat is None or place.lon is None:
            continue
        result.places.append(
            Place(
                name=_display(place),
                country=place.country,
                lat=place.lat,
                lon=place.lon,
                kind="city" if place.kind == "city" else "admin1",
                geonames_id=place.geonames_id,
                mentions=count,
            )
        )
    regions: list[str] = []
    for code in result.countries[:3]:
        country = gazetteer.countries.get(code)
        for name in (country.region, country.subregion) if country else ():
            if name and name not in regions:
                regions.append(name)
    result.regions = regions + [r for r in named_regions if r not in regions]
    return result


def rank_countries(scores: dict[str, float], headline: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Countries by score; those far below the top one are incidental mentions, unless the title or
    the dateline names them."""
    if not scores:
        return []
    top = max(scores.values())
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        c for c, s in ranked if (c in headline and s >= KEEP_SCORE) or (s >= MIN_SCORE and s >= RELATIVE_FLOOR * top)
    ]


def _display(place: PlaceInfo) -> str:
    """English copy mostly drops diacritics: 'Herāt' -> 'Herat', 'São Paulo' -> 'Sao Paulo'."""
    return ascii_fold(place.name)


def _direct_countries(gazetteer: Gazetteer, matches: Sequence[GazetteerMatch], ctx: Context) -> set[str]:
    """Countries the article names without ambiguity (a country name, a demonym, a US state, its dateline)."""
    direct: set[str] = set()
    for match in matches:
        kinds = {c.kind for c in match.candidates}
        countries = {c.ref for c in match.candidates if c.kind in ("country", "demonym")}
        if len(countries) == 1 and kinds <= {"country", "demonym", "actor"}:
            direct |= countries
        elif kinds == {"admin1"} and all(gazetteer.place(c).us_state for c in match.candidates):
            direct.add("US")  # an unambiguous US state ("Texas") puts the article in the US
    return direct


def _choose(
    gazetteer: Gazetteer, text: str, match: GazetteerMatch, direct: set[str], us_context: bool
) -> Candidate | None:
    """Pick a reading of an ambiguous name: 'Georgia' is the US state only amid US context; 'Tripoli'
    is the one in a country the article names, else the capital or most populous; a US state wins
    over any foreign city of the same name; 'Paris, Texas' is the Paris in Texas."""
    candidates = match.candidates
    if not candidates:
        return None
    kinds = {c.kind for c in candidates}
    if "admin1" in kinds and "country" in kinds:  # "Georgia", "Jersey"
        country = next(c for c in candidates if c.kind == "country")
        us_state = any(c.kind == "admin1" and gazetteer.place(c).us_state for c in candidates)
        state_reading = us_state and country.ref not in direct and us_context
        return next(c for c in candidates if c.kind == ("admin1" if state_reading else "country"))
    countries = [c for c in candidates if c.kind in ("country", "demonym")]
    if countries:
        for candidate in countries:
            if candidate.ref in direct:
                return candidate
        return countries[0]
    first = candidates[0]
    if first.kind in ("actor", "region"):
        return first
    places = [c for c in candidates if c.kind in ("city", "admin1")]
    qualifier = _qualifier(gazetteer, text, match.end)
    states = [c for c in places if gazetteer.place(c).us_state]
    if states and not qualifier:
        same_country_city = [
            c
            for c in places
            if c.kind == "city"
            and gazetteer.place(c).country == "US"
            and (gazetteer.place(c).capital or gazetteer.place(c).population >= 1_000_000)
        ]
        return same_country_city[0] if same_country_city else states[0]  # "Washington", "New York": the city

    def rank(c: Candidate) -> tuple[bool, bool, bool, int]:
        place = gazetteer.place(c)
        fits = qualifier is not None and (
            place.country == qualifier[0] and (not qualifier[1] or place.admin1 == qualifier[1])
        )
        return (fits, place.country in direct, place.capital, place.population)

    return max(places, key=rank)


def _qualifier(gazetteer: Gazetteer, text: str, end: int) -> tuple[str, str] | None:
    """'Paris, Texas' -> ('US', 'TX'); 'Beni, Congo' -> ('CD', '')."""
    found = re.match(r",\s+([A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3})", text[end : end + 40])
    if not found:
        return None
    words = found.group(1).split()
    for size in range(len(words), 0, -1):
        for candidate in gazetteer.lookup(" ".join(words[:size])):
            if candidate.kind == "country":
                return candidate.ref, ""
            if candidate.kind == "admin1":
                place = gazetteer.place(candidate)
                return place.country, place.admin1 if place.us_state else ""
    return None


def _us_state_context(text: str, match: GazetteerMatch) -> bool:
    """'Atlanta, Georgia', 'Georgia state', 'Georgia Gov. Brian Kemp', '40 Georgia counties'."""
    after = text[match.end : match.end + 24]
    before = text[max(0, match.start - 40) : match.start]
    return bool(
        re.match(r"^\s*(?:state|gov\.|governor|senator|sen\.|legislature|county|counties|lawmakers)\b", after, re.I)
        or re.search(r"\b(?:Atlanta|Savannah|Augusta|Macon|Trenton|Newark),\s*$", before)
        or re.search(r"\b(?:U\.S\. state of|state of)\s*$", before)
    )
