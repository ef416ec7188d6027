"""Validate devset.jsonl and print per-topic / per-label counts.

Usage: /work/venv/bin/python tests/data/devset/check_devset.py [path/to/devset.jsonl]
Exits with status 1 if any record violates the format rules described in README.md.
"""
import collections
import json
import os
import re
import sys

import pycountry

TOPICS = [
    "troop_withdrawal", "troop_deployment", "airstrike", "armed_clash", "bombing",
    "assassination", "terrorism", "protest", "arrest", "abduction", "agreement",
    "sanctions", "election", "coup", "diplomacy", "nuclear_program", "natural_disaster",
]
LABELS = {"PERSON", "ORG", "GPE", "LOC", "NORP"}


def main(path):
    errors = []
    ids = set()
    topic_counts = collections.Counter()
    label_counts = collections.Counter()
    country_counts = collections.Counter()
    sizes = collections.Counter()
    n_empty_topics = 0
    n = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            n += 1
            where = f"line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: invalid JSON ({exc})")
                continue
            if set(rec) != {"id", "title", "text", "gold"}:
                errors.append(f"{where}: unexpected keys {sorted(rec)}")
                continue
            rid = rec["id"]
            where = f"line {lineno} ({rid})"
            if not re.fullmatch(r"dev-\d{3}", str(rid)):
                errors.append(f"{where}: bad id format")
            if rid in ids:
                errors.append(f"{where}: duplicate id")
            ids.add(rid)
            for key in ("title", "text"):
                if not isinstance(rec[key], str) or not rec[key].strip():
                    errors.append(f"{where}: empty {key}")
            gold = rec["gold"]
            if set(gold) != {"entities", "countries", "topics"}:
                errors.append(f"{where}: unexpected gold keys {sorted(gold)}")
                continue
            topics = gold["topics"]
            if len(set(topics)) != len(topics):
                errors.append(f"{where}: duplicate topics")
            for t in topics:
                if t not in TOPICS:
                    errors.append(f"{where}: topic {t!r} not in closed set")
                topic_counts[t] += 1
            if not topics:
                n_empty_topics += 1
            countries = gold["countries"]
            if len(set(countries)) != len(countries):
                errors.append(f"{where}: duplicate countries")
            for c in countries:
                if not (isinstance(c, str) and re.fullmatch(r"[A-Z]{2}", c)
                        and pycountry.countries.get(alpha_2=c) is not None):
                    errors.append(f"{where}: invalid country code {c!r}")
                country_counts[c] += 1
            full = rec["title"] + "\n" + rec["text"]
            seen = set()
            for ent in gold["entities"]:
                if set(ent) != {"text", "label"}:
                    errors.append(f"{where}: bad entity {ent}")
                    continue
                if ent["label"] not in LABELS:
                    errors.append(f"{where}: bad entity label {ent['label']!r}")
                key = (ent["text"], ent["label"])
                if key in seen:
                    errors.append(f"{where}: duplicate entity {key}")
                seen.add(key)
                if not ent["text"] or not re.search(
                        r"(?<!\w)" + re.escape(ent["text"]) + r"(?!\w)", full):
                    errors.append(f"{where}: entity {ent['text']!r} not found in title/text")
                label_counts[ent["label"]] += 1
            words = len(rec["text"].split())
            sizes["short (<60 words)" if words < 60 else
                  "medium (80-200 words)" if 80 <= words <= 200 else
                  "long (250-450 words)" if 250 <= words <= 450 else
                  f"other ({words} words)"] += 1

    print(f"records: {n}")
    print(f"records with no topic: {n_empty_topics}")
    print("length buckets (words in text):")
    for k, v in sorted(sizes.items()):
        print(f"  {k}: {v}")
    print("topics (records carrying each topic):")
    for t in TOPICS:
        print(f"  {t}: {topic_counts[t]}")
    print(f"distinct countries: {len(country_counts)}")
    print("entity mentions by label: " + ", ".join(f"{k}={label_counts[k]}" for k in sorted(LABELS)))
    if errors:
        print(f"\n{len(errors)} ERROR(S):")
        for e in errors:
            print("  " + e)
        return 1
    print("\nOK: all records valid")
    return 0


if __name__ == "__main__":
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devset.jsonl")
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
