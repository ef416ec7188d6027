"""What every benchmark shares: the machine it ran on, a reproducible corpus, the closing JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.rss import parse_feed
from schemas import RawArticle
from seeds import FEEDS_DIR, seed_path

CACHE = Path(os.environ.get("NEWSWATCH_BENCH_CACHE", Path(__file__).resolve().parent / ".cache"))
DEVSET = Path(__file__).resolve().parent.parent / "tests" / "data" / "devset" / "devset.jsonl"


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu}


def print_machine() -> None:
    info = machine()
    print(f"machine: {info['cpus']} cpu(s) {info['cpu']}, {info['platform']}, Python {info['python']}")


def cpu_times() -> tuple[float, float]:
    """CPU seconds of this process, and of its children that have exited (enrichment workers are joined
    when their pool closes, at the end of each run): robust to other load on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def load_average() -> float:
    """The 1-minute load average (other work on the machine competes for its cores)."""
    with contextlib.suppress(OSError):
        return os.getloadavg()[0]
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finish(figures: dict[str, Any]) -> None:
    """The last output line: one JSON object of the figures (what tooling and the README read)."""
    sys.stdout.flush()
    print(json.dumps({**figures, "machine": machine()}))


def _source_paragraphs() -> tuple[list[str], list[str]]:
    """Titles and paragraphs of realistic news: the seed feeds, the seed article and the dev set."""
    titles: list[str] = []
    paragraphs: list[str] = []
    for path in sorted(FEEDS_DIR.iterdir()):
        if path.suffix in (".xml", ".atom"):
            for article in parse_feed(path.read_bytes(), url=str(path)).articles:
                titles.append(article.title)
                paragraphs += [p for p in article.text.split("\n\n") if len(p.split()) > 12]
    paragraphs += [p.strip() for p in seed_path("seed-article.txt").read_text().split("\n\n") if len(p.split()) > 12]
    if DEVSET.exists():
        for line in DEVSET.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            titles.append(item["title"])
            paragraphs += [p for p in re.split(r"\n\s*\n", item["text"]) if len(p.split()) > 12]
    return titles, paragraphs


def build_corpus(count: int = 2000, words: int = 800, seed: int = 7) -> Path:
    """`count` articles of about `words` words, composed reproducibly from the bundled news, as JSON Lines."""
    path = CACHE / f"corpus-{count}x{words}-{seed}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    titles, paragraphs = _source_paragraphs()
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for n in range(count):
            body: list[str] = []
            length = 0
            while length < words:
                paragraph = rng.choice(paragraphs)
                body.append(paragraph)
                length += len(paragraph.split())
            article = {
                "title": rng.choice(titles),
                "text": "\n\n".join(body),
                "url": f"https://bench.example.com/{seed}/{n}",
                "published": f"2024-01-{1 + n % 28:02d}T12:00:00Z",
            }
            out.write(json.dumps(article, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


def read_corpus(path: Path) -> Iterator[RawArticle]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield RawArticle.model_validate_json(line)
