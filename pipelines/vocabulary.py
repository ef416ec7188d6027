"""The names a subscription rule may use: topic ids, country codes, regions, linked entity ids.

Loaded once from seeds/ (the same files enrichment reads), so a rule is checked against exactly what
articles can carry, and a mistyped name gets a pointed message instead of a subscription that never fires.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seeds import seed_path


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True)
class Vocabulary:
    topics: frozenset[str]
    countries: dict[str, str]  # ISO alpha-2 -> name
    alpha3: dict[str, str]  # ISO alpha-3 -> alpha-2
    country_names: dict[str, str]  # casefolded name or alias -> alpha-2
    m49: dict[str, frozenset[str]]  # casefolded UN M49 region/subregion/intermediate -> member alpha-2 codes
    regions: dict[str, str]  # casefolded name or alias of any region (M49 or named) -> canonical name
    actor_ids: frozenset[str]
    wikidata: dict[str, str]  # Q-id -> actor id
    m49_of: dict[str, frozenset[str]] = field(default_factory=dict)  # alpha-2 -> casefolded M49 names

    # --- checks: each returns the canonical value or raises ValueError with a pointed message ---

    def topic(self, topic_id: str) -> str:
        if topic_id in self.topics:
            return topic_id
        raise ValueError(f"unknown topic {topic_id!r}{_suggest(topic_id, self.topics)} (topic ids: seeds/topics.yaml)")

    def country(self, code: str) -> str:
        upper = code.strip().upper()
        if upper in self.countries:
            return upper
        hint = ""
        if upper in self.alpha3:
            hint = f"; the alpha-2 code of {self.countries[self.alpha3[upper]]} is {self.alpha3[upper]}"
        elif code.strip().casefold() in self.country_names:
            hint = f"; did you mean {self.country_names[code.strip().casefold()]}?"
        else:
            close = difflib.get_close_matches(code.strip().casefold(), list(self.country_names), n=1, cutoff=0.8)
            if close:
                hint = f"; did you mean {self.country_names[close[0]]} ({close[0].title()})?"
        return _raise(f"{code!r} is not an ISO 3166-1 alpha-2 country code{hint}")

    def region(self, name: str) -> str:
        key = name.strip().casefold()
        if key in self.regions:
            return self.regions[key]
        return _raise(
            f"unknown region {name!r}{_suggest(key, self.regions, self.regions)} "
            "(UN M49 names such as 'Western Asia', or named regions such as 'Middle East': seeds/geo)"
        )

    def entity(self, value: str) -> str:
        """Names pass as they are; a Wikidata id is turned into the actor id articles carry."""
        stripped = value.strip()
        if stripped.upper().startswith("Q") and stripped[1:].isdigit():
            if stripped.upper() in self.wikidata:
                return self.wikidata[stripped.upper()]
            return _raise(f"Wikidata id {stripped!r} is not a known actor (seeds/actors/actors.jsonl)")
        return stripped

    def regions_of(self, countries: Iterable[str]) -> set[str]:
        """Casefolded M49 names the given countries lie in."""
        found: set[str] = set()
        for code in countries:
            found |= self.m49_of.get(code, frozenset())
        return found


def _raise(message: str) -> str:
    raise ValueError(message)


def _suggest(value: str, known: Iterable[str], display: dict[str, str] | None = None) -> str:
    close = difflib.get_close_matches(value.casefold(), list(known), n=1, cutoff=0.75)
    if not close:
        return ""
    return f"; did you mean {(display or {}).get(close[0], close[0])!r}?"


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    taxonomy = yaml.safe_load(seed_path("topics.yaml").read_text(encoding="utf-8"))
    topics = frozenset(str(t) for t in (taxonomy.get("topics") or {}))
    countries: dict[str, str] = {}
    alpha3: dict[str, str] = {}
    names: dict[str, str] = {}
    m49: dict[str, set[str]] = {}
    m49_of: dict[str, frozenset[str]] = {}
    regions: dict[str, str] = {}
    for row in _jsonl(seed_path("geo", "countries.jsonl")):
        iso2 = str(row["iso2"])
        countries[iso2] = str(row["name"])
        if row.get("iso3"):
            alpha3[str(row["iso3"])] = iso2
        for surface in (row["name"], *(row.get("aliases") or ())):
            names.setdefault(str(surface).casefold(), iso2)
        mine = set()
        for key in ("m49_region", "m49_subregion", "m49_intermediate"):
            if row.get(key):
                regions[str(row[key]).casefold()] = str(row[key])
                m49.setdefault(str(row[key]).casefold(), set()).add(iso2)
                mine.add(str(row[key]).casefold())
        m49_of[iso2] = frozenset(mine)
    for row in _jsonl(seed_path("geo", "regions.jsonl")):
        for surface in (row["name"], *(row.get("aliases") or ())):
            regions.setdefault(str(surface).casefold(), str(row["name"]))
    actor_ids: set[str] = set()
    wikidata: dict[str, str] = {}
    for row in _jsonl(seed_path("actors", "actors.jsonl")):
        actor_ids.add(str(row["id"]))
        if row.get("wikidata"):
            wikidata[str(row["wikidata"]).upper()] = str(row["id"])
    return Vocabulary(
        topics=topics,
        countries=countries,
        alpha3=alpha3,
        country_names=names,
        m49={k: frozenset(v) for k, v in m49.items()},
        regions=regions,
        actor_ids=frozenset(actor_ids),
        wikidata=wikidata,
        m49_of=m49_of,
    )
