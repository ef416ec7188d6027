"""Topic detection from the data-driven taxonomy in seeds/topics.yaml, with scores and evidence sentences.

Two passes, so the expensive one runs rarely:

1. `scan`: one Aho-Corasick pass over every sentence's word tokens finds each topic's strong phrases,
   weak phrases, exclusions and cue frames (a trigger such as "pull out" near a theme such as
   "soldiers"). Term lists accept lemmas with a trailing `~` ("withdraw~" matches withdraws, withdrew,
   withdrawn, withdrawing), so patterns are lemma-aware without a lemmatizer.
2. `score`: a cue frame counts only when its trigger and theme are linked. With a dependency parse
   of the sentence (only sentences holding an unconfirmed cue are parsed) the link is syntactic:
   "pull out its soldiers" (object), "troops will leave" (subject), "withdrawal of U.S. troops"
   (of-phrase), "ordered troops to withdraw" (shared head); "Wildfire forces evacuation" (a verb,
   not the noun "forces") and "withdrew from the race" (no theme) are not. Without a parse (fast mode)
   the trigger and theme must lie within the topic's window. Negated ("did not withdraw", "ruled out")
   and historical ("the 2021 coup", "anniversary") evidence is discounted.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, overload

import ahocorasick
import yaml

from pipelines.enrich.text import _TOKEN, Sentence, inflections, token_spans, tokens
from schemas import TopicTag

Role = Literal["strong", "weak", "cue", "exclude"]
STRONG_WEIGHT = 1.0
CUE_WEIGHT = 1.0  # a cue frame whose trigger and theme are syntactically linked: as good as a strong phrase
CUE_UNPARSED_WEIGHT = 0.7  # a cue frame within the window, no parse to check it
WEAK_WEIGHT = 0.35
DISCOUNT = 0.25  # negated or historical evidence
TITLE_FACTOR = 1.5
LEAD_FACTOR = 1.2
MAX_EVIDENCE = 3
SETTLED_SCORE = 0.85  # strong phrases alone this sure: cue sentences of the topic are not worth a parse
NEGATION_WINDOW = 4
DENIAL_WINDOW = 8  # "denied reports that it planned to withdraw"
HISTORY_WINDOW = 6

# Words that negate an event mentioned right after them ("did not withdraw", "no plans to pull out").
_NEGATORS = frozenset(
    "not n't no never without deny denies denied denying rule rules ruled ruling refuse refuses refused "
    "reject rejects rejected rejecting against neither nor".split()
)
_DENIALS = frozenset("deny denies denied denying dismissed refuted".split())
_NEGATION_PHRASES = (("no", "plans"), ("rule", "out"), ("rules", "out"), ("ruled", "out"), ("ruling", "out"))
# Words that place an event in the past ("the 1983 bombing", "marks the anniversary of the bombing").
_HISTORY = frozenset("anniversary anniversaries commemorate commemorates commemorated commemoration memorial".split())
_NON_TOKEN = re.compile(r"[^A-Za-z0-9]+")
_PAST_PHRASES = ("last year", "years ago", "year ago", "months ago", "decades ago", "in the past")

# Dependency relations through which a theme can attach to its trigger.
_OBJECT_DEPS = frozenset({"dobj", "nsubjpass", "attr", "oprd", "dative", "obj"})
_SUBJECT_DEPS = frozenset({"nsubj", "csubj", "agent"})
_MODIFIER_DEPS = frozenset({"compound", "amod", "nmod", "poss", "npadvmod", "appos"})
_CLAUSE_DEPS = frozenset({"xcomp", "ccomp", "dobj", "conj", "advcl"})


@dataclass(frozen=True)
class Topic:
    id: str
    label: str
    description: str
    strong: tuple[str, ...]
    cues: tuple[tuple[tuple[str, ...], ...], ...]
    exclude: tuple[str, ...]
    window: int
    min_score: float
    weak: tuple[str, ...] = ()
    link: bool = True  # cue frames need a syntactic link when the sentence is parsed


class TermHit(NamedTuple):
    token: int  # index of the first word token of the match in its sentence
    length: int  # number of word tokens


class SentenceHits:
    """What one topic's terms matched in one sentence (a slotted class: built for every hit)."""

    __slots__ = ("cue_groups", "excluded", "pairs", "strong", "tight", "weak")

    def __init__(self) -> None:
        self.strong: list[TermHit] = []
        self.weak: list[TermHit] = []
        self.excluded = False
        self.cue_groups: dict[int, list[TermHit]] = {}
        self.pairs: list[tuple[TermHit, TermHit]] = []  # (trigger, theme) within window
        self.tight = False  # a pair reads as a plain phrase ("pull out its soldiers"): no parse needed


T = TypeVar("T")


class _PerSentence(Sequence[T]):
    """A per-sentence list computed on first access: most sentences of an article match no topic
    term, and their word lists, cased tokens and spans are never looked at."""

    def __init__(self, size: int, make: Callable[[int], T]) -> None:
        self._size = size
        self._make = make
        self._cache: dict[int, T] = {}

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError(index)
        found = self._cache.get(index, _MISSING)
        if found is _MISSING:
            found = self._cache[index] = self._make(index)
        return found


_MISSING: Any = object()


@dataclass
class ArticleScan:
    """The result of `TopicMatcher.scan`: per topic, per sentence index, what matched."""

    sentences: Sequence[Sentence]
    title_sentences: int
    words: Sequence[list[str]]  # lower-case word tokens per sentence
    spans: Sequence[list[tuple[int, int]]]  # their character spans in the sentence text
    hits: dict[str, dict[int, SentenceHits]]
    topics: dict[str, Topic] = field(default_factory=dict)
    linked: frozenset[str] = frozenset()  # topics whose cue frames need a syntactic link
    cased: Sequence[list[str]] | None = None  # the word tokens as written (capitalisation), per sentence

    def settled(self) -> frozenset[str]:
        """Topics whose evidence that needs no parse (strong phrases, cue frames that read as one
        phrase) already reaches a confident score. Only a parser asks (fast mode never does)."""
        settled: set[str] = set()
        for topic_id, per_sentence in self.hits.items():
            topic = self.topics[topic_id]
            sure = 0.0
            for index, found in per_sentence.items():
                if found.excluded:
                    continue
                sure_hits = found.strong + [t for t, _ in found.pairs] if found.tight else found.strong
                if sure_hits and not all(_discounted(self.words[index], h) for h in sure_hits):
                    sure += STRONG_WEIGHT * _position_factor(index, self.title_sentences)
            if 1.0 - math.exp(-sure) >= max(SETTLED_SCORE, topic.min_score):
                settled.add(topic_id)
        return frozenset(settled)

    def to_parse(self) -> list[int]:
        """Sentences whose evidence depends on a cue frame that only a parse can confirm (and would
        change the verdict: a topic its surer evidence already settles needs no parse)."""
        wanted: set[int] = set()
        settled = self.settled() if self.linked.intersection(self.hits) else frozenset()
        for topic_id, per_sentence in self.hits.items():
            if topic_id in settled or topic_id not in self.linked:
                continue
            for index, found in per_sentence.items():
                if found.pairs and not found.tight and not found.strong and not found.excluded:
                    wanted.add(index)
        return sorted(wanted)


def load_taxonomy(path: Path) -> list[Topic]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    topics = []
    for topic_id, spec in data["topics"].items():
        for cue in spec.get("cues") or ():
            if len(cue) < 2:
                raise ValueError(f"{path}: a cue of topic {topic_id!r} needs a trigger group and a theme group: {cue}")
        topics.append(
            Topic(
                id=topic_id,
                label=spec.get("label", topic_id),
                description=" ".join(str(spec.get("description", "")).split()),
                strong=tuple(spec.get("strong") or ()),
                cues=tuple(tuple(tuple(group) for group in cue) for cue in spec.get("cues") or ()),
                exclude=tuple(spec.get("exclude") or ()),
                window=int(spec.get("window", defaults.get("window", 7))),
                min_score=float(spec.get("min_score", defaults.get("min_score", 0.45))),
                weak=tuple(spec.get("weak") or ()),
                link=bool(spec.get("link", defaults.get("link", True))),
            )
        )
    return topics


def _keys(term: str) -> list[str]:
    """Automaton keys over the " tok tok " string: a trailing * leaves the right boundary open, a
    trailing ~ on a word stands for its inflections."""
    wildcard = term.endswith("*")
    term = term.rstrip("*")
    variants: list[list[str]] = [[]]
    for word in term.split():
        forms = sorted(inflections(word[:-1])) if word.endswith("~") else [word]
        variants = [[*v, f] for v in variants for f in forms]
    keys = []
    for variant in variants:
        words = " ".join(tokens(" ".join(variant)))
        if not words:
            raise ValueError(f"topic term {term!r} has no words")
        keys.append(f" {words}" if wildcard else f" {words} ")
    return keys


class TopicMatcher:
    """All topics' terms in one Aho-Corasick automaton: one pass per article, whatever the taxonomy size."""

    def __init__(self, topics: Sequence[Topic]) -> None:
        self.topics = {t.id: t for t in topics}
        self._automaton = ahocorasick.Automaton()
        entries: dict[str, list[tuple[str, Role, int]]] = defaultdict(list)
        for topic in topics:
            for role, terms in (("strong", topic.strong), ("weak", topic.weak), ("exclude", topic.exclude)):
                for term in terms:
                    for key in _keys(term):
                        entries[key].append((topic.id, role, 0))  # type: ignore[arg-type]
            for c, cue in enumerate(topic.cues):
                for g, group in enumerate(cue):
                    for term in group:
                        for key in _keys(term):
                            entries[key].append((topic.id, "cue", c * 100 + g))
        for key, values in entries.items():
            unique = tuple(dict.fromkeys(values))
            # Anchors (strong and weak phrases, cue triggers) make a sentence count for a topic;
            # dependents (cue themes, exclusions) only matter where an anchor of the same topic is.
            anchors = tuple(v for v in unique if v[1] in ("strong", "weak") or (v[1] == "cue" and v[2] % 100 == 0))
            dependents = tuple(v for v in unique if v not in anchors)
            # (key, anchors, dependents, words in the key): what each match needs, computed once here
            self._automaton.add_word(key, (key, anchors, dependents, key.strip().count(" ") + 1))
        self._automaton.make_automaton()
        self._linked = frozenset(t.id for t in topics if t.link and t.cues)

    # --- pass 1 ---

    def scan(self, sentences: Sequence[Sentence], title_sentences: int = 1) -> ArticleScan:
        """One automaton pass over the word tokens of the whole article (sentence by sentence, as
        " w w w " segments that no term can cross), then the cue frames of each topic."""
        title_sentences = max(1, title_sentences)
        if not sentences:
            return ArticleScan(sentences, title_sentences, [], [], {}, self.topics, self._linked, [])
        # " w w w " per sentence (the words of `tokens`), one string for the article, "\n" between sentences
        joined = " " + " \n ".join(_NON_TOKEN.sub(" ", s.text).strip() for s in sentences).lower() + " "
        segments = joined.split("\n")
        words: _PerSentence[list[str]] = _PerSentence(len(segments), lambda i: segments[i].split())
        cased: _PerSentence[list[str]] = _PerSentence(len(sentences), lambda i: _TOKEN.findall(sentences[i].text))
        starts = list(itertools.accumulate((len(segment) + 1 for segment in segments[:-1]), initial=0))
        hits: dict[str, dict[int, SentenceHits]] = {}
        later: list[tuple[int, TermHit, tuple[tuple[str, Role, int], ...]]] = []
        sentence, next_start, start = -1, 0, 0
        counted_to, spaces = 0, 0  # spaces in joined[start:counted_to]: word indexes counted incrementally
        for end, (key, anchors, dependents, length) in self._automaton.iter(joined):
            begin = end - len(key) + 1  # the space before the first word
            if begin >= next_start:
                sentence = bisect.bisect_right(starts, begin) - 1
                start = starts[sentence]
                next_start = starts[sentence + 1] if sentence + 1 < len(starts) else len(joined)
                counted_to, spaces = start, 0
            if begin + 1 >= counted_to:
                spaces += joined.count(" ", counted_to, begin + 1)
            else:  # a shorter key ending later can begin earlier than the last hit
                spaces = joined.count(" ", start, begin + 1)
            counted_to = begin + 1
            hit = TermHit(spaces - 1, length)
            if dependents:
                later.append((sentence, hit, dependents))
            for topic_id, role, group in anchors:
                per_sentence = hits.get(topic_id)
                if per_sentence is None:
                    per_sentence = hits[topic_id] = {}
                found = per_sentence.get(sentence)
                if found is None:
                    found = per_sentence[sentence] = SentenceHits()
                if role == "cue":
                    cue = found.cue_groups.get(group)
                    if cue is None:
                        found.cue_groups[group] = [hit]
                    else:
                        cue.append(hit)
                elif role == "strong":
                    found.strong.append(hit)
                else:
                    found.weak.append(hit)
        for sentence, hit, dependents in later:  # themes and exclusions, where their topic has an anchor
            for topic_id, role, group in dependents:
                per_sentence = hits.get(topic_id)
                found = per_sentence.get(sentence) if per_sentence is not None else None
                if found is None:
                    continue
                if role == "exclude":
                    found.excluded = True
                else:
                    cue = found.cue_groups.get(group)
                    if cue is None:
                        found.cue_groups[group] = [hit]
                    else:
                        cue.append(hit)
        for topic_id, per_sentence in hits.items():
            topic = self.topics[topic_id]
            for index, found in per_sentence.items():
                if len(found.cue_groups) > 1:  # every cue frame has a trigger and at least one theme
                    found.pairs = _pairs(topic, found)
                    if found.pairs:
                        found.tight = any(_tight(cased[index], words[index], t, th) for t, th in found.pairs)
        return ArticleScan(
            sentences,
            title_sentences,
            words,
            _PerSentence(len(sentences), lambda i: token_spans(sentences[i].text)),
            hits,
            self.topics,
            self._linked,
            cased,
        )

    # --- pass 2 ---

    def score(self, scan: ArticleScan, parses: dict[int, Any] | None = None) -> list[TopicTag]:
        """Topic tags of a scanned article. `parses` maps sentence index -> spaCy Doc of that sentence
        (the sentences `scan.to_parse()` named); None means no parser is available (fast mode), and
        cue frames are then judged by their window alone."""
        tags: list[TopicTag] = []
        for topic_id, per_sentence in scan.hits.items():
            topic = self.topics[topic_id]
            weighted: list[tuple[float, int]] = []
            for index, found in per_sentence.items():
                doc = parses.get(index) if parses is not None else None
                weight = self._sentence_weight(topic, found, scan, index, doc, parsing=parses is not None)
                if weight <= 0:
                    continue
                weighted.append((weight * _position_factor(index, scan.title_sentences), index))
            if not weighted:
                continue
            score = 1.0 - math.exp(-sum(w for w, _ in weighted))
            if score < topic.min_score:
                continue
            best = sorted(sorted(weighted, reverse=True)[:MAX_EVIDENCE], key=lambda wi: wi[1])
            tags.append(
                TopicTag(
                    id=topic_id,
                    label=topic.label,
                    score=round(score, 3),
                    evidence=[scan.sentences[i].text for _, i in best],
                )
            )
        return sorted(tags, key=lambda t: (-t.score, t.id))

    def detect(
        self,
        sentences: Sequence[Sentence],
        title_sentences: int = 1,
        parse: Callable[[list[str]], Iterable[Any]] | None = None,
    ) -> list[TopicTag]:
        """Both passes for one article; `parse` turns sentence texts into parsed spaCy Docs."""
        scan = self.scan(sentences, title_sentences)
        if parse is None:
            return self.score(scan, None)
        wanted = scan.to_parse()
        parses = dict(zip(wanted, parse([sentences[i].text for i in wanted]), strict=True)) if wanted else {}
        return self.score(scan, parses)

    def _sentence_weight(
        self, topic: Topic, found: SentenceHits, scan: ArticleScan, index: int, doc: Any | None, parsing: bool
    ) -> float:
        if found.excluded or not (found.strong or found.weak or found.pairs):
            return 0.0
        words = scan.words[index]
        candidates: list[tuple[float, TermHit]] = []
        candidates += [(STRONG_WEIGHT, hit) for hit in found.strong]
        if found.pairs:
            if found.tight and topic.link:
                cased = scan.cased[index] if scan.cased is not None else _TOKEN.findall(scan.sentences[index].text)
                tight = [t for t, th in found.pairs if _tight(cased, words, t, th)]
                candidates += [(CUE_WEIGHT, trigger) for trigger in tight]
            elif doc is not None and topic.link:
                spans = scan.spans[index]
                linked = [(t, th) for t, th in found.pairs if _linked(doc, spans, t, th)]
                candidates += [(CUE_WEIGHT, trigger) for trigger, _ in linked]
            elif not topic.link:
                candidates += [(CUE_WEIGHT, t) for t, _ in found.pairs]
            elif not parsing:
                candidates += [(CUE_UNPARSED_WEIGHT, t) for t, _ in found.pairs]
            # else: a parser is available but this sentence was not parsed (strong phrases settled the topic)
        candidates += [(WEAK_WEIGHT, hit) for hit in found.weak]
        if not candidates:
            return 0.0
        # The sentence counts as its best piece of evidence that is neither negated nor historical.
        best = 0.0
        for weight, hit in candidates:
            if _discounted(words, hit):
                weight *= DISCOUNT
            best = max(best, weight)
        return best


def _position_factor(index: int, title_sentences: int) -> float:
    if index < title_sentences:
        return TITLE_FACTOR
    if index < title_sentences + 2:
        return LEAD_FACTOR
    return 1.0


def _discounted(words: Sequence[str], hit: TermHit) -> bool:
    return _negated(words, hit) or _historical(words, hit)


def _pairs(topic: Topic, found: SentenceHits) -> list[tuple[TermHit, TermHit]]:
    """(trigger, theme) pairs of any cue frame whose groups all occur within the window."""
    pairs: list[tuple[TermHit, TermHit]] = []
    cue_groups = found.cue_groups
    for c in sorted({g // 100 for g in cue_groups if g % 100 == 0}):  # frames whose trigger group matched
        cue = topic.cues[c]
        groups = [cue_groups.get(c * 100 + g) for g in range(len(cue))]
        if not all(groups):
            continue
        triggers, others = groups[0], groups[1:]
        for trigger in triggers:  # type: ignore[union-attr]
            close = [
                [h for h in group if _gap(trigger, h) <= topic.window and not _overlap(trigger, h)]  # type: ignore[union-attr]
                for group in others
            ]
            if all(close):
                pairs.append((trigger, min(close[0], key=lambda h: _gap(trigger, h))))
    return pairs


# Words that may stand between a trigger and its object in a plain phrase: "withdraw all its 2,000 troops".
_OBJECT_GAP = frozenset(
    "the a an its their his her our all some most more additional remaining further own of about nearly roughly "
    "around several thousands hundreds dozens last first some u s k n".split()
)
# Words between a subject and its verb: "troops will begin to leave".
_SUBJECT_GAP = frozenset(
    "will would could to have has had were are was is be been began begin begins started start starts also finally "
    "must should may might are expected due set completed complete completes".split()
)
# What may follow an intransitive trigger: "troops left on Monday", "soldiers withdrew from".
_AFTER_INTRANSITIVE = frozenset("from out back home on in at after before by as within over during".split())
_RESULTS = frozenset("dead injured wounded homeless stranded".split())
_NOMINAL_ENDINGS = ("ion", "al", "ure", "ment", "out", "down")


def _tight(cased: Sequence[str], words: Sequence[str], trigger: TermHit, theme: TermHit) -> bool:
    """A trigger and theme that read as one plain phrase, the way a dependency parse would link them:
    "pull out its soldiers", "withdrawal of 2,000 U.S. troops" (object), "troops will leave" (subject).
    Anything looser is left to the parser. `cased` holds the sentence's tokens as written."""

    def capitalised(i: int) -> bool:
        return cased[i][0].isupper()

    theme_end = theme.token + theme.length
    if theme.token > 0 and capitalised(theme.token):
        return False  # "Intermediate-Range Nuclear Forces Treaty": part of a name
    if theme.token >= trigger.token + trigger.length:
        gap = range(trigger.token + trigger.length, theme.token)
        if len(gap) > 5 or not all(words[i] in _OBJECT_GAP or words[i].isdigit() or capitalised(i) for i in gap):
            return False
        return not (theme_end < len(words) and words[theme_end] in _RESULTS)  # "left 20 soldiers dead"
    gap = range(theme_end, trigger.token)
    if len(gap) > 3 or not all(words[i] in _SUBJECT_GAP for i in gap):
        return False
    if words[trigger.token + trigger.length - 1].endswith(_NOMINAL_ENDINGS):
        return False  # "Wildfire forces evacuation": a noun trigger after a noun is no subject-verb pair
    after = trigger.token + trigger.length
    return after >= len(words) or words[after] in _AFTER_INTRANSITIVE or capitalised(after)


def _gap(a: TermHit, b: TermHit) -> int:
    if b.token >= a.token + a.length:
        return b.token - (a.token + a.length) + 1
    if a.token >= b.token + b.length:
        return a.token - (b.token + b.length) + 1
    return 0


def _overlap(a: TermHit, b: TermHit) -> bool:
    return a.token < b.token + b.length and b.token < a.token + a.length


def _negated(words: Sequence[str], hit: TermHit) -> bool:
    before = words[max(0, hit.token - NEGATION_WINDOW) : hit.token]
    if not _NEGATORS.isdisjoint(before):
        return True
    if not _DENIALS.isdisjoint(words[max(0, hit.token - DENIAL_WINDOW) : hit.token]):
        return True
    if "plans" not in before and "out" not in before:  # the last words of every negation phrase
        return False
    pairs = set(itertools.pairwise(before))
    return any(p in pairs for p in _NEGATION_PHRASES)


def _is_year(word: str) -> bool:
    """1800-2099 ("the 1983 bombing"); tokens are ASCII letters and digits."""
    return len(word) == 4 and word[:2] in ("18", "19", "20") and word.isdigit()


def _historical(words: Sequence[str], hit: TermHit) -> bool:
    near = words[max(0, hit.token - HISTORY_WINDOW) : hit.token + hit.length + HISTORY_WINDOW]
    if any(_is_year(w) for w in near):
        return True
    following = words[hit.token + hit.length : hit.token + hit.length + 2 * HISTORY_WINDOW]
    if "since" in following and any(w == "since" and _is_year(n) for w, n in itertools.pairwise(following)):
        return True  # "has been fighting the rebels since 2015": a long war, not today's news
    after = " ".join(words[hit.token + hit.length : hit.token + hit.length + HISTORY_WINDOW])
    if any(phrase in after for phrase in _PAST_PHRASES):
        return True  # "seized power last year", "signed two years ago"
    if "since" in words[max(0, hit.token - NEGATION_WINDOW) : hit.token]:
        return True  # "since the Taliban took power": a state of affairs, not the news
    return not _HISTORY.isdisjoint(words[: hit.token])


# --- syntactic links (spaCy Doc of one sentence) ---


def _tokens_for(doc: Any, spans: Sequence[tuple[int, int]], hit: TermHit) -> list[Any]:
    chosen: list[Any] = []
    for start, end in spans[hit.token : hit.token + hit.length]:
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is not None:
            chosen += [t for t in span if t not in chosen]
    return chosen


def _root(tokens_: list[Any]) -> Any | None:
    if not tokens_:
        return None
    inside = {t.i for t in tokens_}
    for token in tokens_:
        if token.head.i not in inside or token.head.i == token.i:
            return token
    return tokens_[0]


def _through_conj(token: Any) -> Any:
    """'withdraw its ambassador and troops': a conjunct stands in its first conjunct's place."""
    while token.dep_ == "conj" and token.head.i != token.i:
        token = token.head
    return token


def _linked(doc: Any, spans: Sequence[tuple[int, int]], trigger_hit: TermHit, theme_hit: TermHit) -> bool:
    trigger = _root(_tokens_for(doc, spans, trigger_hit))
    theme_tokens = _tokens_for(doc, spans, theme_hit)
    theme = _root(theme_tokens)
    if trigger is None or theme is None:
        return False
    if _coarse(theme) not in ("NOUN", "PROPN", "ADJ", "PRON", "NUM", "X"):
        return False  # "Wildfire forces evacuation": forces is a verb there
    if any(c.dep_ == "oprd" for c in trigger.children):
        return False  # "the clash left 20 soldiers dead": a result, not a departure
    theme_ids = {t.i for t in theme_tokens}
    objects = [c for c in trigger.children if c.dep_ in _OBJECT_DEPS and c.dep_ != "nsubjpass"]
    # "the army withdrew its support": support is what left. "troops left Chad": a place is where from.
    other_object = any(
        o.i not in theme_ids and _through_conj(o).i not in theme_ids and not _place_like(o) for o in objects
    )
    candidate: Any = theme
    for _ in range(3):  # the theme itself, then the phrase it sits in ("convoy of peacekeepers", "President X")
        if candidate.i != trigger.i and _attached(trigger, _through_conj(candidate), other_object):
            return True
        candidate = _phrase_head(candidate)
        if candidate is None or candidate.i == trigger.i:
            return False
    return False


def _coarse(token: Any) -> str:
    """Universal POS from the Penn tag (the parse pass skips the attribute ruler that would set pos_)."""
    if token.pos_:
        return str(token.pos_)
    tag = str(token.tag_)
    for prefix, pos in _TAG_POS:
        if tag.startswith(prefix):
            return pos
    return "X"


_TAG_POS = (
    ("NNP", "PROPN"),
    ("NN", "NOUN"),
    ("JJ", "ADJ"),
    ("PRP", "PRON"),
    ("WP", "PRON"),
    ("CD", "NUM"),
    ("VB", "VERB"),
    ("MD", "AUX"),
    ("RB", "ADV"),
    ("IN", "ADP"),
    ("DT", "DET"),
    ("CC", "CCONJ"),
    ("RP", "ADP"),
    ("TO", "PART"),
)


def _place_like(token: Any) -> bool:
    return bool(_coarse(token) == "PROPN" or token.lower_ in _PLACE_NOUNS or token.lower_.rstrip("s") in _PLACE_NOUNS)


_PLACE_NOUNS = frozenset(
    "country base region area city town territory village province zone camp position post capital soil island "
    "border frontier district state nation outpost".split()
)


def _phrase_head(token: Any) -> Any | None:
    """The noun a theme modifies: "convoy of peacekeepers" -> convoy, "President Moise" -> Moise."""
    if (
        token.dep_ == "pobj"
        and token.head.lower_ == "of"
        and _coarse(token.head.head) in ("NOUN", "NUM", "PRON", "ADJ")
    ):
        return token.head.head
    if token.dep_ in ("compound", "amod", "appos", "nmod", "poss", "nummod") and token.head.i != token.i:
        return token.head
    return None


def _attached(trigger: Any, theme: Any, other_object: bool) -> bool:
    # 1. direct: object, subject or modifier of the trigger
    if theme.head.i == trigger.i:
        if theme.dep_ in _OBJECT_DEPS:
            return True
        if theme.dep_ in _MODIFIER_DEPS:  # "troop withdrawal", "military pullout": only a noun trigger has modifiers
            return bool(trigger.lower_.endswith(_NOMINAL_ENDINGS) or trigger.tag_ == "NN")
        if theme.dep_ in _SUBJECT_DEPS:
            return not other_object
    # 2. "withdrawal of troops", "pullout by U.S. forces"
    if (
        theme.dep_ == "pobj"
        and theme.head.dep_ == "prep"
        and theme.head.head.i == trigger.i
        and theme.head.lower_ in ("of", "by", "between", "with", "against")
    ):
        return True
    # 3. the trigger modifies the theme: "troops withdrawing from", "the soldiers who left"
    if trigger.head.i == theme.i and trigger.dep_ in ("acl", "relcl", "compound", "amod"):
        return True
    # 4. a shared head: "troops began withdrawing", "ordered troops to leave", "forces completed their pullout"
    head = trigger.head
    climbed = 0
    while head.i != trigger.i and climbed < 2:
        if (
            theme.head.i == head.i
            and theme.dep_ in _SUBJECT_DEPS | _OBJECT_DEPS
            and trigger.dep_ in _CLAUSE_DEPS | {"acl"}
        ):
            return not (theme.dep_ in _SUBJECT_DEPS and other_object)
        if head.dep_ not in _CLAUSE_DEPS or head.head.i == head.i:
            break
        trigger, head = head, head.head
        climbed += 1
    return False


def describe(topics: Sequence[Topic]) -> list[dict[str, Any]]:
    return [{"id": t.id, "label": t.label, "description": t.description} for t in topics]
