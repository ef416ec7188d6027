"""Enrichment quality against the labelled dev set: entities, countries, topics, and enrich throughput.

Runs every passage through the same code as `newswatch enrich` (RawArticle -> Enricher.enrich_batch)
and scores the Article fields against the gold labels:

- entities: precision/recall/F1 per label (PERSON, ORG, GPE, LOC, NORP) over the distinct
  (text, label) pairs of each passage, lenient text match (a leading "the", a possessive and
  curly quotes ignored; one name contained in the other on word boundaries also counts, once).
  `entities_f1` is the micro F1 over person/organisation/location names (GPE and LOC merged
  into LOC, NORP left out), as the targets define it; `entities_f1_labels` keeps all five labels.
- countries: micro and macro P/R/F1 of the `countries` list (as a set) against the gold countries.
- topics: per topic P/R/F1 of the topic ids; macro-F1 over the eight target topics.
- speed: articles per CPU-second of the full enrichment and, in the same run, of the bare spaCy NER
  pass it wraps, so the cost of the rules is visible (CPU time, so that other load on the machine
  does not move the figures; best of --repeat runs).

Usage: python benchmarks/quality.py [--devset PATH] [--limit N] [--fast] [--spacy-model NAME]
       [--errors] [--no-speed]
Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DEVSET = REPO / "tests" / "data" / "devset" / "devset.jsonl"
ENTITY_LABELS = ("PERSON", "ORG", "GPE", "LOC", "NORP")
COARSE = {"PERSON": "PERSON", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC"}
TARGET_TOPICS = (
    "airstrike",
    "bombing",
    "armed_clash",
    "protest",
    "arrest",
    "abduction",
    "agreement",
    "natural_disaster",
)
_LEADING = re.compile(r"^(?:the|The)\s+")
_POSSESSIVE = re.compile(r"['’]s?$")


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, tp: int, fp: int, fn: int) -> None:
        self.tp += tp
        self.fp += fp
        self.fn += fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "p": round(self.precision, 3),
            "r": round(self.recall, 3),
            "f1": round(self.f1, 3),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass
class Errors:
    """What went wrong in one passage, for --errors."""

    id: str
    missed: list[str] = field(default_factory=list)
    spurious: list[str] = field(default_factory=list)


def normalize_name(text: str) -> str:
    text = " ".join(text.replace("’", "'").replace("‘", "'").split())
    text = _LEADING.sub("", text)
    return _POSSESSIVE.sub("", text) if len(text) > 3 else text


def _contains(longer: str, shorter: str) -> bool:
    return bool(re.search(r"(?<!\w)" + re.escape(shorter) + r"(?!\w)", longer))


def lenient_match(gold: Iterable[str], predicted: Iterable[str]) -> tuple[int, list[str], list[str]]:
    """One-to-one matching of names: exact (normalized) first, then containment on word boundaries.

    Returns (matched, unmatched gold, unmatched predicted)."""
    gold_left = sorted({normalize_name(g) for g in gold})
    pred_left = sorted({normalize_name(p) for p in predicted})
    matched = 0
    for name in list(gold_left):
        if name in pred_left:
            gold_left.remove(name)
            pred_left.remove(name)
            matched += 1
    for name in list(gold_left):
        partner = next((p for p in pred_left if _contains(p, name) or _contains(name, p)), None)
        if partner is not None:
            gold_left.remove(name)
            pred_left.remove(partner)
            matched += 1
    return matched, gold_left, pred_left


def score_entities(
    gold: Sequence[dict[str, str]], predicted: Sequence[tuple[str, str]], labels: dict[str, str]
) -> dict[str, tuple[int, list[str], list[str]]]:
    """Per (mapped) label: lenient matches between the gold and predicted names of one passage."""
    gold_by: dict[str, set[str]] = defaultdict(set)
    pred_by: dict[str, set[str]] = defaultdict(set)
    for entity in gold:
        if entity["label"] in labels:
            gold_by[labels[entity["label"]]].add(entity["text"])
    for text, label in predicted:
        if label in labels:
            pred_by[labels[label]].add(text)
    return {label: lenient_match(gold_by[label], pred_by[label]) for label in set(gold_by) | set(pred_by)}


def set_counts(gold: Iterable[str], predicted: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    g, p = set(gold), set(predicted)
    return g & p, p - g, g - p


@dataclass
class Report:
    entities: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    entities_coarse: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    countries: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    topics: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    errors: list[Errors] = field(default_factory=list)
    passages: int = 0

    def add(self, row: dict[str, Any], article: Any) -> None:
        gold = row["gold"]
        self.passages += 1
        err = Errors(id=str(row.get("id", self.passages)))
        predicted = [(e.text, e.label) for e in article.entities]
        for label, (tp, missed, extra) in score_entities(
            gold["entities"], predicted, {x: x for x in ENTITY_LABELS}
        ).items():
            self.entities[label].add(tp, len(extra), len(missed))
            err.missed += [f"{label}:{m}" for m in missed]
            err.spurious += [f"{label}:{s}" for s in extra]
        for label, (tp, missed, extra) in score_entities(gold["entities"], predicted, COARSE).items():
            self.entities_coarse[label].add(tp, len(extra), len(missed))
        hit, extra_c, missed_c = set_counts(gold["countries"], article.countries)
        for code in hit:
            self.countries[code].add(1, 0, 0)
        for code in extra_c:
            self.countries[code].add(0, 1, 0)
        for code in missed_c:
            self.countries[code].add(0, 0, 1)
        err.missed += [f"country:{c}" for c in sorted(missed_c)]
        err.spurious += [f"country:{c}" for c in sorted(extra_c)]
        hit, extra_t, missed_t = set_counts(gold["topics"], [t.id for t in article.topics])
        for topic in hit:
            self.topics[topic].add(1, 0, 0)
        for topic in extra_t:
            self.topics[topic].add(0, 1, 0)
        for topic in missed_t:
            self.topics[topic].add(0, 0, 1)
        err.missed += [f"topic:{t}" for t in sorted(missed_t)]
        err.spurious += [f"topic:{t}" for t in sorted(extra_t)]
        if err.missed or err.spurious:
            self.errors.append(err)

    def summary(self) -> dict[str, Any]:
        micro_ent = _total(self.entities.values())
        coarse = _total(self.entities_coarse.values())
        micro_cty = _total(self.countries.values())
        macro_cty = _mean(c.f1 for c in self.countries.values())
        target = [self.topics[t] for t in TARGET_TOPICS]
        withdrawal = self.topics["troop_withdrawal"]
        return {
            "passages": self.passages,
            "entities_f1": round(coarse.f1, 3),
            "entities_p": round(coarse.precision, 3),
            "entities_r": round(coarse.recall, 3),
            "entities_f1_labels": round(micro_ent.f1, 3),
            "countries_f1": round(micro_cty.f1, 3),
            "countries_p": round(micro_cty.precision, 3),
            "countries_r": round(micro_cty.recall, 3),
            "countries_macro_f1": round(macro_cty, 3),
            "topics_macro_f1": round(_mean(c.f1 for c in target), 3),
            "topics_macro_f1_all": round(_mean(c.f1 for c in self.topics.values()), 3),
            "troop_withdrawal_p": round(withdrawal.precision, 3),
            "troop_withdrawal_r": round(withdrawal.recall, 3),
            "entity_labels": {k: v.as_dict() for k, v in sorted(self.entities.items())},
            "entity_coarse": {k: v.as_dict() for k, v in sorted(self.entities_coarse.items())},
            "topic_scores": {k: v.as_dict() for k, v in sorted(self.topics.items())},
        }


def _total(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total.add(c.tp, c.fp, c.fn)
    return total


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def load_devset(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def evaluate(rows: Sequence[dict[str, Any]], enricher: Any) -> tuple[Report, float]:
    """Score `rows` enriched by `enricher`; also returns the CPU seconds enrichment took (CPU time, not
    wall time: the figures should not depend on what else the machine is running)."""
    from schemas import RawArticle

    raws = [RawArticle(id=str(row.get("id", "")), title=row["title"], text=row.get("text", "")) for row in rows]
    started = time.process_time()
    articles = enricher.enrich_batch(raws)
    elapsed = time.process_time() - started
    report = Report()
    for row, article in zip(rows, articles, strict=True):
        report.add(row, article)
    return report, elapsed


def long_articles(rows: Sequence[dict[str, Any]], words: int) -> list[dict[str, Any]]:
    """News-length articles for timing only (their gold labels are meaningless): consecutive passages
    joined until each has about `words` words."""
    joined: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for row in rows:
        current.append(row)
        if sum(len(f"{r['title']} {r.get('text', '')}".split()) for r in current) >= words:
            text = "\n\n".join(f"{r['title']}. {r.get('text', '')}" for r in current[1:])
            joined.append(
                {
                    "id": current[0].get("id"),
                    "title": current[0]["title"],
                    "text": f"{current[0].get('text', '')}\n\n{text}",
                    "gold": {"entities": [], "countries": [], "topics": []},
                }
            )
            current = []
    return joined


def ner_only_seconds(rows: Sequence[dict[str, Any]], enricher: Any) -> float:
    """The bare spaCy pass enrichment wraps, timed on the same texts: the in-run speed baseline."""
    texts = [f"{r['title']}\n\n{r['text']}" if r.get("text") else r["title"] for r in rows]
    started = time.process_time()
    for _ in enricher.nlp.pipe(texts, batch_size=enricher.config.batch_size):
        pass
    return time.process_time() - started


def _print_table(title: str, counts: dict[str, Counts], keys: Iterable[str]) -> None:
    print(f"\n{title}")
    print(f"  {'':22} {'P':>6} {'R':>6} {'F1':>6} {'TP':>5} {'FP':>5} {'FN':>5}")
    for key in keys:
        c = counts.get(key, Counts())
        print(f"  {key:22} {c.precision:6.3f} {c.recall:6.3f} {c.f1:6.3f} {c.tp:5d} {c.fp:5d} {c.fn:5d}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, default=DEFAULT_DEVSET)
    parser.add_argument("--limit", type=int, default=0, help="score only the first N passages")
    parser.add_argument("--fast", action="store_true", help="no spaCy model: gazetteer and rules only")
    parser.add_argument("--spacy-model", help="spaCy model package or path (default: en_core_web_sm)")
    parser.add_argument(
        "--ner-max-chars",
        type=int,
        default=None,
        help="run the model on the title + the first N characters (0: whole text; default: EnrichConfig's)",
    )
    parser.add_argument("--errors", action="store_true", help="list each passage's misses and spurious tags")
    parser.add_argument("--no-speed", action="store_true", help="skip the repeated timing runs")
    parser.add_argument("--repeat", type=int, default=2, help="timing runs (best is kept)")
    parser.add_argument(
        "--long-words",
        type=int,
        default=800,
        help="also time articles of about this many words, made by joining consecutive passages (0: skip)",
    )
    args = parser.parse_args(argv)

    from pipelines.enrich import EnrichConfig, Enricher

    rows = load_devset(args.devset, args.limit)
    config = EnrichConfig(use_model=not args.fast, model_name=args.spacy_model)
    if args.ner_max_chars is not None:
        config = dataclasses.replace(config, ner_max_chars=args.ner_max_chars)
    enricher = Enricher(config)
    report, elapsed = evaluate(rows, enricher)
    summary = report.summary()

    if args.errors:
        for err in report.errors:
            print(f"{err.id}: missed {err.missed} spurious {err.spurious}")
    _print_table("Entities (lenient text match, per label)", report.entities, ENTITY_LABELS)
    _print_table("Entities (PERSON / ORG / LOC = GPE+LOC)", report.entities_coarse, ("PERSON", "ORG", "LOC"))
    ranked = sorted(report.countries, key=lambda c: -(report.countries[c].tp + report.countries[c].fn))
    _print_table("Countries (15 most frequent in gold)", report.countries, ranked[:15])
    _print_table("Topics", report.topics, sorted(report.topics))
    print(
        f"\npassages={summary['passages']} entities_f1={summary['entities_f1']} "
        f"(5 labels {summary['entities_f1_labels']}) countries_f1={summary['countries_f1']} "
        f"(macro {summary['countries_macro_f1']}) topics_macro_f1={summary['topics_macro_f1']} "
        f"(all topics {summary['topics_macro_f1_all']}) troop_withdrawal P={summary['troop_withdrawal_p']} "
        f"R={summary['troop_withdrawal_r']}"
    )

    speed: dict[str, float] = {}
    if not args.no_speed:
        best = elapsed
        for _ in range(max(0, args.repeat - 1)):
            best = min(best, evaluate(rows, enricher)[1])
        speed["enrich_articles_per_s"] = round(len(rows) / best, 1)
        words = sum(len(f"{r['title']} {r.get('text', '')}".split()) for r in rows)
        speed["mean_words"] = round(words / max(1, len(rows)))
        if enricher.nlp is not None:
            ner = min(ner_only_seconds(rows, enricher) for _ in range(max(1, args.repeat)))
            speed["ner_only_articles_per_s"] = round(len(rows) / ner, 1)
            speed["rules_overhead"] = round(best / ner - 1, 3)
        if args.long_words:
            long_rows = long_articles(rows, args.long_words)
            seconds = min(evaluate(long_rows, enricher)[1] for _ in range(max(1, args.repeat)))
            speed["long_articles_per_s"] = round(len(long_rows) / seconds, 1)
            speed["long_mean_words"] = round(
                sum(len(f"{r['title']} {r['text']}".split()) for r in long_rows) / max(1, len(long_rows))
            )
        print(" ".join(f"{k}={v}" for k, v in speed.items()))
    print(json.dumps({"benchmark": "quality", "model": "fast" if args.fast else "ner", **summary, **speed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
