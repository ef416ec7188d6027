"""Bundled data: sample feeds, the seed article, topic taxonomy, subscriptions, gazetteer and actors."""

from pathlib import Path

SEEDS_DIR = Path(__file__).resolve().parent
FEEDS_DIR = SEEDS_DIR / "feeds"


def seed_path(*parts: str) -> Path:
    return SEEDS_DIR.joinpath(*parts)
