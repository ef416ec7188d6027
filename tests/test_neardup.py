"""The near-duplicate index finds exactly the stories that a comparison with every earlier one finds."""

from __future__ import annotations

import json
import random

from benchmarks.common import build_corpus
from pipelines.neardup import TEXT_THRESHOLD, NearDuplicateIndex, fingerprint, similarity


def _stories(count: int) -> list[tuple[str, str]]:
    """Titles and leads from the benchmark corpus, with reworded and truncated copies mixed in."""
    rng = random.Random(3)
    corpus = build_corpus(200, 120, seed=11)
    stories: list[tuple[str, str]] = []
    for line in corpus.read_text(encoding="utf-8").splitlines()[:count]:
        item = json.loads(line)
        lead = item["text"].split("\n\n")[0]
        stories.append((item["title"], lead))
        if rng.random() < 0.3:  # another feed's copy: first sentence only, a word of the title changed
            words = item["title"].split()
            words[rng.randrange(len(words))] = "Update"
            stories.append((" ".join(words), lead.split(". ")[0]))
    rng.shuffle(stories)
    return stories


def test_candidates_hold_every_story_a_full_comparison_finds() -> None:
    marks = [fingerprint(title, lead) for title, lead in _stories(200)]
    index = NearDuplicateIndex()
    duplicates = compared = 0
    for mark in marks:
        brute = [i for i, other in enumerate(index.items) if similarity(mark, other) >= TEXT_THRESHOLD]
        candidates = index.candidates(mark)
        assert set(brute) <= set(candidates)
        compared += len(candidates)
        duplicates += bool(brute)
        index.add(mark)
    assert duplicates > 20  # the reworded copies are found
    pairs = len(marks) * (len(marks) - 1) // 2
    print(f"compared {compared} of {pairs} pairs")
    assert compared < pairs / 4  # the point of the index: most unrelated stories are never scored


def test_title_prefix_filter_finds_titles_one_word_apart() -> None:
    index = NearDuplicateIndex()
    first = fingerprint("Iraq parliament votes to expel US troops after strike", "")
    index.add(fingerprint("Floods hit northern Italy as rivers burst their banks", ""))
    index.add(first)
    near = fingerprint("Iraq parliament votes to expel US troops after airstrike", "")
    assert similarity(near, first) >= TEXT_THRESHOLD
    assert index.candidates(near) == [1]
