"""Validate seeds/geo/countries.jsonl and regions.jsonl.

Run: python seeds/geo/validate.py   (needs pycountry). Exits non-zero on any error.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pycountry

HERE = Path(__file__).resolve().parent
EXTRA_CODES = {"XK": "XKX"}  # user-assigned codes accepted besides pycountry
REGIONS = {"Africa", "Americas", "Asia", "Europe", "Oceania"}
SUBREGIONS = {
    "Northern Africa": "Africa", "Sub-Saharan Africa": "Africa",
    "Latin America and the Caribbean": "Americas", "Northern America": "Americas",
    "Central Asia": "Asia", "Eastern Asia": "Asia", "South-eastern Asia": "Asia",
    "Southern Asia": "Asia", "Western Asia": "Asia",
    "Eastern Europe": "Europe", "Northern Europe": "Europe", "Southern Europe": "Europe",
    "Western Europe": "Europe",
    "Australia and New Zealand": "Oceania", "Melanesia": "Oceania", "Micronesia": "Oceania",
    "Polynesia": "Oceania",
}
INTERMEDIATE = {
    "Eastern Africa": "Sub-Saharan Africa", "Middle Africa": "Sub-Saharan Africa",
    "Southern Africa": "Sub-Saharan Africa", "Western Africa": "Sub-Saharan Africa",
    "Caribbean": "Latin America and the Caribbean", "Central America": "Latin America and the Caribbean",
    "South America": "Latin America and the Caribbean", "Channel Islands": "Northern Europe",
}
COUNTRY_KEYS = ["iso2", "iso3", "name", "aliases", "demonyms", "m49_region", "m49_subregion", "m49_intermediate"]
REGION_KEYS = ["name", "aliases", "countries", "kind", "single_country"]
KINDS = {"region", "waterbody"}
# Region surface forms that deliberately repeat a country alias, mapping to that same country.
ALLOWED_REGION_COUNTRY_OVERLAP = {"gaza strip": "PS", "gaza": "PS", "west bank": "PS"}


def load(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            raise SystemExit(f"{path.name}:{n}: blank line")
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path.name}:{n}: bad JSON: {e}")
    return rows


def main() -> int:
    errors: list[str] = []
    err = errors.append
    countries = load(HERE / "countries.jsonl")
    regions = load(HERE / "regions.jsonl")

    valid = {c.alpha_2: c.alpha_3 for c in pycountry.countries} | EXTRA_CODES
    seen_iso = set()
    forms: dict[str, set[tuple[str, str]]] = defaultdict(set)  # casefolded form -> {(iso2, field)}
    names = {}
    for r in countries:
        iso = r.get("iso2")
        if list(r) != COUNTRY_KEYS:
            err(f"{iso}: keys {list(r)} != {COUNTRY_KEYS}")
        if iso not in valid:
            err(f"{iso}: not a pycountry alpha-2 nor in {sorted(EXTRA_CODES)}")
            continue
        if iso in seen_iso:
            err(f"{iso}: duplicate entry")
        seen_iso.add(iso)
        if r["iso3"] != valid[iso]:
            err(f"{iso}: iso3 {r['iso3']} != {valid[iso]}")
        if not isinstance(r["name"], str) or not r["name"].strip():
            err(f"{iso}: empty name")
        names[r["name"].casefold()] = iso
        for field in ("aliases", "demonyms"):
            vals = r[field]
            if not isinstance(vals, list) or not all(isinstance(v, str) and v.strip() == v and v for v in vals):
                err(f"{iso}: {field} must be a list of trimmed non-empty strings")
                continue
            folded = [v.casefold() for v in vals]
            if len(set(folded)) != len(folded):
                err(f"{iso}: duplicate {field} within entry")
            if r["name"].casefold() in folded:
                err(f"{iso}: {field} repeats the name")
        for field, vals in (("name", [r["name"]]), ("aliases", r["aliases"]), ("demonyms", r["demonyms"])):
            for v in vals:
                forms[v.casefold()].add((iso, field))
        reg, sub, inter = r["m49_region"], r["m49_subregion"], r["m49_intermediate"]
        if reg is None:
            if sub is not None or inter is not None:
                err(f"{iso}: null region but sub/intermediate set")
        else:
            if reg not in REGIONS:
                err(f"{iso}: bad m49_region {reg!r}")
            if SUBREGIONS.get(sub) != reg:
                err(f"{iso}: sub-region {sub!r} not in region {reg!r}")
            if inter is not None and INTERMEDIATE.get(inter) != sub:
                err(f"{iso}: intermediate {inter!r} not in sub-region {sub!r}")
            if inter is None and sub in ("Sub-Saharan Africa", "Latin America and the Caribbean"):
                err(f"{iso}: {sub} entries need an intermediate region")

    missing = set(valid) - seen_iso
    if missing:
        err(f"missing entries: {sorted(missing)}")

    # every surface form (name, alias, demonym) must belong to exactly one country, case-insensitively
    for form, owners in sorted(forms.items()):
        isos = {o[0] for o in owners}
        if len(isos) > 1:
            err(f"surface form {form!r} shared by {sorted(owners)}")
        elif len(owners) > 1:
            err(f"surface form {form!r} repeated within {sorted(owners)}")

    # regions
    rforms: dict[str, str] = {}
    for r in regions:
        nm = r.get("name")
        if list(r) != REGION_KEYS:
            err(f"region {nm}: keys {list(r)} != {REGION_KEYS}")
            continue
        if r["kind"] not in KINDS:
            err(f"region {nm}: kind {r['kind']!r}")
        cc = r["countries"]
        if not cc or len(set(cc)) != len(cc) or any(c not in valid for c in cc):
            err(f"region {nm}: bad countries {cc}")
        if r["single_country"] is not (len(cc) == 1):
            err(f"region {nm}: single_country inconsistent with countries")
        for v in [nm] + r["aliases"]:
            k = v.casefold()
            if k in rforms:
                err(f"region form {v!r} used by {rforms[k]!r} and {nm!r}")
            rforms[k] = nm
            if k in forms:
                owner = {o[0] for o in forms[k]}
                if ALLOWED_REGION_COUNTRY_OVERLAP.get(k) in owner and cc == sorted(owner):
                    continue
                err(f"region form {v!r} ({nm}) collides with country form of {sorted(owner)}")

    n_alias = sum(len(r["aliases"]) for r in countries)
    n_dem = sum(len(r["demonyms"]) for r in countries)
    no_dem = sorted(r["iso2"] for r in countries if not r["demonyms"])
    print(f"countries: {len(countries)} entries, {n_alias} aliases, {n_dem} demonyms")
    print(f"entries without demonyms ({len(no_dem)}): {' '.join(no_dem)}")
    print(f"regions: {len(regions)} entries "
          f"({sum(r['kind'] == 'waterbody' for r in regions)} waterbody, "
          f"{sum(r['single_country'] for r in regions)} single_country)")
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
