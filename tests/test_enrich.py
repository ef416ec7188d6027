"""Enrichment of the seed article and the cases the first version must get right."""

from __future__ import annotations

import pytest

from pipelines.enrich import Enricher
from schemas import Article, RawArticle
from tests.conftest import SEED_TITLE


@pytest.fixture(scope="module")
def seed(enricher: Enricher, seed_text: str) -> Article:
    return enricher.enrich(RawArticle(title=SEED_TITLE, text=seed_text, url="https://news.example.com/seed"))


def test_seed_article_topics_countries_people(seed: Article) -> None:
    topic_ids = [t.id for t in seed.topics]
    assert "troop_withdrawal" in topic_ids
    withdrawal = seed.topic("troop_withdrawal")
    assert withdrawal is not None and withdrawal.score >= 0.9 and withdrawal.evidence
    assert {"IQ", "IR", "US"} <= set(seed.countries)
    assert seed.countries[0] == "IQ"  # most salient first: the article is about Iraq
    people = {e.text for e in seed.entities if e.label == "PERSON"}
    assert {"Qassem Soleimani", "Adel Abdul-Mahdi", "Mike Pompeo"} <= people


def test_entity_offsets_index_title_plus_text(seed: Article) -> None:
    full = seed.title + "\n\n" + seed.text
    assert full == seed.full_text
    for entity in seed.entities:
        assert full[entity.start : entity.end] == entity.text


def test_roles_surnames_and_no_state_org(seed: Article) -> None:
    assert not any(e.label == "ORG" and e.text == "State" for e in seed.entities)
    pompeo = next(e for e in seed.entities if e.text == "Mike Pompeo")
    assert pompeo.role == "U.S. Secretary of State"
    surnames = [e for e in seed.entities if e.text == "Soleimani"]
    assert surnames and all(e.label == "PERSON" and e.canonical == "Qassem Soleimani" for e in surnames)
    us = [e for e in seed.entities if e.text == "U.S."]
    assert us and all(e.kb_id == "US" and e.canonical == "United States" for e in us)


def test_places_have_coordinates_and_regions(seed: Article) -> None:
    baghdad = next(p for p in seed.places if p.name == "Baghdad")
    assert baghdad.country == "IQ" and 33 < baghdad.lat < 34 and 44 < baghdad.lon < 45
    assert "Western Asia" in seed.regions


@pytest.mark.parametrize(
    "title, text, topic, present",
    [
        ("France to pull out its soldiers from Mali", "", "troop_withdrawal", True),
        (
            "Senator withdrew from the race",
            "She cited family reasons; troops of volunteers thanked her.",
            "troop_withdrawal",
            False,
        ),
        ("Banks limit cash withdrawal", "Lebanese banks capped withdrawals.", "troop_withdrawal", False),
        ("Gas explosion at a factory kills three", "The accidental blast was caused by a leak.", "bombing", False),
        ("Police fire smoke grenades at protesters", "Thousands marched in the capital.", "bombing", False),
        ("Police fire smoke grenades at protesters", "Thousands marched in the capital.", "protest", True),
        ("Car bomb kills 12 in Mogadishu", "", "bombing", True),
    ],
)
def test_topic_cases(fast_enricher: Enricher, title: str, text: str, topic: str, present: bool) -> None:
    article = fast_enricher.enrich(RawArticle(title=title, text=text))
    assert (article.topic(topic) is not None) is present


def test_short_text_countries_without_model(fast_enricher: Enricher) -> None:
    article = fast_enricher.enrich(RawArticle(title="Iraqi forces retake town near Mosul"))
    assert article.countries == ["IQ"]
    georgia = fast_enricher.enrich(RawArticle(title="Georgia and Russia hold talks in Tbilisi"))
    assert georgia.countries[:2] == ["GE", "RU"] and "US" not in georgia.countries
    state = fast_enricher.enrich(RawArticle(title="Storms hit Georgia and Texas", text="Atlanta lost power."))
    assert state.countries == ["US"]


def test_batch_enrichment_matches_single(enricher: Enricher) -> None:
    raws = [
        RawArticle(title="Kabul blast", text="A suicide bomber struck Kabul."),
        RawArticle(title="Quake hits Japan", text="A magnitude 7 earthquake struck near Tokyo."),
    ]
    batch = enricher.enrich_batch(raws)
    assert [a.countries for a in batch] == [enricher.enrich(r).countries for r in raws]
    assert batch[1].topic("natural_disaster") is not None
