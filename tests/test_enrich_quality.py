"""Enrichment quality: the hard cases of entities, places, countries, actors and topics.

Most tests run without the spaCy model (gazetteer, rules and the topic matcher are plain code); the
ones marked `slow` use the session's `enricher` (model loaded once) for what needs NER or the parser.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.quality import Report, evaluate, lenient_match, load_devset
from pipelines.enrich import Enricher
from pipelines.enrich.entities import EntityExtractor, role_before
from pipelines.enrich.text import inflections, split_sentences, token_spans, tokens
from pipelines.enrich.topics import TopicMatcher, load_taxonomy
from schemas import Article, RawArticle
from seeds import seed_path

REPO = Path(__file__).resolve().parent.parent
DEVSET = REPO / "tests" / "data" / "devset" / "devset.jsonl"


def enrich(enricher: Enricher, title: str, text: str = "") -> Article:
    return enricher.enrich(RawArticle(title=title, text=text))


def topic_ids(article: Article) -> set[str]:
    return {t.id for t in article.topics}


def spans_of(text: str, *pieces: tuple[str, str]) -> list[tuple[int, int, str]]:
    """Model-like entity spans for the first occurrence of each (surface, label)."""
    found = []
    for surface, label in pieces:
        start = text.index(surface)
        found.append((start, start + len(surface), label))
    return found


# --- text helpers ---------------------------------------------------------------------------------


def test_inflections_cover_irregular_and_regular_forms() -> None:
    assert {"withdraw", "withdraws", "withdrew", "withdrawn", "withdrawing"} <= inflections("withdraw")
    assert {"kidnapped", "kidnapping", "kidnaps"} <= inflections("kidnap")
    assert {"leave", "left", "leaving"} <= inflections("leave")
    assert {"soldier", "soldiers"} <= inflections("soldier")
    assert "targetted" not in inflections("target")


def test_token_spans_match_tokens() -> None:
    text = "U.S.-led forces withdrew; Culiacán's mayor said."
    assert [text[a:b].lower() for a, b in token_spans(text)] == tokens(text)


# --- topics (no model: the window test stands in for the parse) ------------------------------------

WITHDRAWAL_POSITIVE = [
    ("Lawmakers demand withdrawal of U.S. troops", "Parliament voted to demand the withdrawal of U.S. troops."),
    ("Parliament calls for the expulsion of foreign forces", "It called for the expulsion of foreign forces."),
    ("France to pull out its soldiers from Mali", "France said it would pull out its soldiers within six months."),
    ("Last U.S. troops leave base in northern Syria", "The last U.S. troops left the base on Monday, officials said."),
    ("Army begins drawdown of forces", "The army began a drawdown of forces from the eastern region on Friday."),
    ("President to bring troops home", "The president said he would pull the troops out of Syria by April."),
]
WITHDRAWAL_NEGATIVE = [
    ("Senator withdrew from the race", "The senator withdrew from the race on Tuesday, citing health reasons."),
    ("Banks cap cash withdrawal", "Banks capped cash withdrawals at $100 a week as the currency slid."),
    ("Russia rules out pullback", "Russia said it had no plans to withdraw its forces from the border region."),
    ("Champion withdraws from tournament", "The champion withdrew from the tournament with a wrist injury."),
    ("Retail chain to pull out of China", "The retailer will pull out of China after years of losses."),
    ("Ministry denies pullback", "The ministry denied reports that it planned to withdraw troops from the border."),
    ("Rescue at barracks", "Rescuers pulled two soldiers from the rubble of the collapsed barracks."),
]


@pytest.mark.parametrize(("title", "text"), WITHDRAWAL_POSITIVE)
def test_troop_withdrawal_phrasings_are_detected(fast_enricher: Enricher, title: str, text: str) -> None:
    article = enrich(fast_enricher, title, text)
    tag = article.topic("troop_withdrawal")
    assert tag is not None, [t.id for t in article.topics]
    assert 0 < tag.score <= 1
    assert tag.evidence and all(sentence in f"{title}\n\n{text}" for sentence in tag.evidence)


@pytest.mark.parametrize(("title", "text"), WITHDRAWAL_NEGATIVE)
def test_withdrawals_that_are_not_troop_withdrawals(fast_enricher: Enricher, title: str, text: str) -> None:
    assert "troop_withdrawal" not in topic_ids(enrich(fast_enricher, title, text))


def test_accidental_explosion_is_not_a_bombing(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher,
        "Gas explosion kills four in apartment block",
        "An accidental gas explosion destroyed an apartment block in the city, killing four people.",
    )
    assert "bombing" not in topic_ids(article)
    assert "natural_disaster" not in topic_ids(article)


def test_smoke_grenades_at_a_protest_are_protest_not_bombing(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher,
        "Police fire smoke grenades at protesters",
        "Riot police fired smoke grenades and tear gas at thousands of protesters in the capital.",
    )
    assert "protest" in topic_ids(article)
    assert "bombing" not in topic_ids(article)


def test_car_bomb_is_a_bombing_with_evidence(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher, "Car bomb kills 12 in Mogadishu", "A car bomb exploded outside a hotel, killing 12."
    )
    tag = article.topic("bombing")
    assert tag is not None and tag.score >= 0.6
    assert tag.evidence[0] == "Car bomb kills 12 in Mogadishu"


@pytest.mark.parametrize(
    ("title", "text", "topic"),
    [
        ("Israeli jets strike Gaza", "Israeli jets struck targets in Gaza overnight, the military said.", "airstrike"),
        ("Quake kills 50 in eastern Turkey", "A magnitude 6.1 earthquake struck eastern Turkey.", "natural_disaster"),
        ("Gunmen kidnap 20 students", "Gunmen abducted 20 students from a school in northwest Nigeria.", "abduction"),
        (
            "Heavy fighting near Goma",
            "Heavy fighting broke out between M23 rebels and the army near Goma.",
            "armed_clash",
        ),
        ("Opposition leader arrested", "Police arrested the opposition leader at his home in Harare.", "arrest"),
        ("Warring sides agree ceasefire", "The two sides signed a ceasefire agreement in Jeddah.", "agreement"),
        ("Thousands protest in Belgrade", "Thousands of protesters marched through Belgrade on Sunday.", "protest"),
    ],
)
def test_short_texts_get_their_topic(fast_enricher: Enricher, title: str, text: str, topic: str) -> None:
    """A headline plus one sentence, as many feeds carry, is enough."""
    assert topic in topic_ids(enrich(fast_enricher, title, text))


@pytest.mark.parametrize(
    ("title", "text", "topic"),
    [
        (
            "Fare war breaks out among airlines",
            "Budget carriers slashed fares as a price war broke out.",
            "armed_clash",
        ),
        (
            "Party wins landslide in election",
            "The ruling party won a landslide in Sunday's election.",
            "natural_disaster",
        ),
        (
            "Hiroshima marks anniversary of atomic bombing",
            "The city marked the anniversary of the 1945 bombing.",
            "bombing",
        ),
        (
            "Carmaker strikes battery deal",
            "The carmaker struck a $2 billion battery deal with a Thai partner.",
            "agreement",
        ),
        (
            "MP alleges character assassination",
            "The lawmaker said the report was character assassination.",
            "assassination",
        ),
    ],
)
def test_false_friends(fast_enricher: Enricher, title: str, text: str, topic: str) -> None:
    assert topic not in topic_ids(enrich(fast_enricher, title, text))


def test_taxonomy_has_the_contract_ids_with_descriptions() -> None:
    topics = {t.id: t for t in load_taxonomy(seed_path("topics.yaml"))}
    for topic_id in (
        "troop_withdrawal troop_deployment airstrike armed_clash bombing assassination terrorism protest arrest "
        "abduction agreement sanctions election coup diplomacy nuclear_program natural_disaster"
    ).split():
        assert topics[topic_id].description


def test_cue_frames_need_a_parse_only_when_not_a_plain_phrase() -> None:
    matcher = TopicMatcher(load_taxonomy(seed_path("topics.yaml")))
    plain = matcher.scan(split_sentences("France will pull out its soldiers from Mali."))
    assert plain.to_parse() == []
    loose = matcher.scan(split_sentences("The withdrawal does not affect U.S. military forces in the region."))
    assert loose.to_parse() == [0]


# --- entities: rules on given model spans (no model needed) ----------------------------------------


def test_title_before_a_name_is_a_role_not_an_org(fast_enricher: Enricher) -> None:
    text = "U.S. Secretary of State Mike Pompeo said on Sunday that Pompeo's team would stay."
    model = spans_of(text, ("U.S.", "GPE"), ("State", "ORG"), ("Mike Pompeo", "PERSON"))
    entities = EntityExtractor(fast_enricher.gazetteer).extract(text, model, fast_enricher.gazetteer.find(text))
    assert not [e for e in entities if e.text == "State"]
    person = next(e for e in entities if e.text == "Mike Pompeo")
    assert person.label == "PERSON" and person.role == "U.S. Secretary of State"
    assert person.kb_id == "Q473239"  # from the actor KB
    later = [e for e in entities if e.text == "Pompeo"]
    assert later and all(e.label == "PERSON" and e.canonical == "Mike Pompeo" for e in later)
    assert role_before(text, text.index("Mike")) == ("U.S. Secretary of State", 0)


def test_later_mentions_link_to_the_full_name_whatever_the_model_said(fast_enricher: Enricher) -> None:
    text = "Gen. Ahmad Rostami was killed on Friday. Rostami had led the brigade. Officials said Rostami was buried."
    model = spans_of(text, ("Ahmad Rostami", "PERSON"), ("Rostami had", "ORG"))
    model[1] = (model[1][0], model[1][0] + len("Rostami"), "ORG")
    entities = EntityExtractor(fast_enricher.gazetteer).extract(text, model, fast_enricher.gazetteer.find(text))
    rostami = [e for e in entities if e.text == "Rostami"]
    assert len(rostami) == 2
    assert {(e.label, e.canonical) for e in rostami} == {("PERSON", "Ahmad Rostami")}


def test_acronym_after_its_expansion_is_the_same_org(fast_enricher: Enricher) -> None:
    text = "Fighters of the Popular Resistance Front (PRF) attacked a convoy. The PRF said it lost two men."
    model = spans_of(text, ("Popular Resistance Front", "ORG"))
    entities = EntityExtractor(fast_enricher.gazetteer).extract(text, model, fast_enricher.gazetteer.find(text))
    prf = [e for e in entities if e.text == "PRF"]
    assert len(prf) == 2
    assert all(e.label == "ORG" and e.canonical == "Popular Resistance Front" for e in prf)


def test_places_the_model_calls_people_are_places(fast_enricher: Enricher) -> None:
    text = "Russian forces shelled Kyiv overnight. Residents of Kyiv said the attack lasted hours."
    model = spans_of(text, ("Russian", "NORP"), ("Kyiv", "PERSON"))
    matches = fast_enricher.gazetteer.find(text)
    article = fast_enricher.enrich(RawArticle(title="Shelling", text=text))
    entities = EntityExtractor(fast_enricher.gazetteer).extract(text, model, matches, [])
    assert any(e.text == "Kyiv" for e in entities)
    kyiv = [e for e in article.entities if e.text == "Kyiv"]
    assert kyiv and all(e.label == "GPE" and e.kb_id and e.kb_id.startswith("geonames:") for e in kyiv)


@pytest.mark.parametrize(
    ("surface", "canonical"),
    [
        ("ISIS", "Islamic State"),
        ("ISIL", "Islamic State"),
        ("Daesh", "Islamic State"),
        ("Hezbollah", "Hezbollah"),
        ("YPG", None),
        ("SDF", "Syrian Democratic Forces"),
        ("PKK", None),
        ("Houthis", None),
    ],
)
def test_armed_groups_and_acronyms_come_from_the_actor_kb(
    fast_enricher: Enricher, surface: str, canonical: str | None
) -> None:
    article = enrich(fast_enricher, "Militants attack", f"Officials blamed the {surface} for the attack on Sunday.")
    entity = next(e for e in article.entities if e.text == surface)
    assert entity.label == "ORG" and entity.kb_id
    if canonical:
        assert entity.canonical == canonical
    assert article.actors  # e.g. "REB" or "SYR REB"


def test_all_caps_dateline_is_a_place(fast_enricher: Enricher) -> None:
    article = enrich(fast_enricher, "Blast in Iraqi capital", "BAGHDAD (Wire) — A blast hit a market on Sunday.")
    dateline = next(e for e in article.entities if e.text == "BAGHDAD")
    assert dateline.label == "GPE" and dateline.canonical == "Baghdad"
    assert not any(e.text == "Wire" for e in article.entities)
    assert article.countries == ["IQ"]


# --- places and countries ---------------------------------------------------------------------------


def test_us_state_never_resolves_to_a_foreign_city(fast_enricher: Enricher) -> None:
    article = enrich(fast_enricher, "Hurricane slams Florida", "The hurricane made landfall in Florida on Tuesday.")
    assert article.countries == ["US"]
    assert not any(p.country != "US" for p in article.places)
    florida = next(e for e in article.entities if e.text == "Florida")
    assert florida.label == "GPE"


def test_city_state_qualifier_and_context_disambiguate(fast_enricher: Enricher) -> None:
    texas = enrich(fast_enricher, "Tornado hits Paris, Texas", "A tornado damaged homes in Paris, Texas, on Monday.")
    assert [p.country for p in texas.places if p.name == "Paris"] == ["US"]
    assert texas.countries == ["US"]
    lebanon = enrich(
        fast_enricher, "Lebanese army deploys in Tripoli", "Clashes erupted in Tripoli, Lebanese troops said."
    )
    assert [p.country for p in lebanon.places if p.name == "Tripoli"] == ["LB"]
    libya = enrich(fast_enricher, "Libyan militias clash in Tripoli", "Fighting in Tripoli killed 12 Libyan fighters.")
    assert [p.country for p in libya.places if p.name == "Tripoli"] == ["LY"]


def test_georgia_the_country_and_georgia_the_state(fast_enricher: Enricher) -> None:
    country = enrich(
        fast_enricher, "Protests in Georgia", "Thousands rallied in Tbilisi, Georgia's capital, on Sunday."
    )
    assert country.countries == ["GE"]
    state = enrich(fast_enricher, "Storm in Georgia", "The storm hit Atlanta, Georgia, and 40 Georgia counties.")
    assert state.countries == ["US"]


def test_demonyms_and_aliases_resolve_to_countries(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher,
        "Iraqi lawmakers meet UAE and DPRK envoys",
        "Iraqi lawmakers met envoys from the UAE and the DPRK in Baghdad, and a U.K. delegation.",
    )
    assert {"IQ", "AE", "KP"} <= set(article.countries)
    assert article.countries[0] == "IQ"
    assert "Western Asia" in article.regions


def test_incidental_nationality_is_not_an_article_country(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher,
        "Floods kill dozens in southern Brazil",
        "Floods in Brazil's Rio Grande do Sul state killed 40 people, Brazilian officials said on Sunday. "
        "Rescuers searched for survivors in Porto Alegre, the state capital. The dead included a Japanese tourist.",
    )
    assert article.countries == ["BR"]


def test_cities_have_coordinates_and_ascii_names(fast_enricher: Enricher) -> None:
    article = enrich(fast_enricher, "Gunfights in CULIACAN", "CULIACAN, Mexico (Wire) — Gunfights erupted in Culiacan.")
    culiacan = next(p for p in article.places if p.country == "MX")
    assert culiacan.name == "Culiacan" and culiacan.geonames_id
    assert 24 < culiacan.lat < 25.5 and -108 < culiacan.lon < -107
    assert article.countries == ["MX"]


def test_ambiguous_congo_defaults_to_drc(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher, "Rebels advance in eastern Congo", "Rebels seized a town in eastern Congo on Sunday."
    )
    assert article.countries == ["CD"]


def test_actor_tags_from_kb_and_from_demonym_nouns(fast_enricher: Enricher) -> None:
    article = enrich(
        fast_enricher,
        "Iraqi government demands U.S. troops leave",
        "The Iraqi government asked U.S. troops to leave, and Hezbollah welcomed the vote.",
    )
    assert {"IRQ GOV", "USA MIL", "LBN REB"} <= set(article.actors)


# --- with the spaCy model --------------------------------------------------------------------------


@pytest.mark.slow
def test_seed_article_keeps_its_tags(enricher: Enricher, seed_text: str) -> None:
    article = enrich(
        enricher, "Iraq's parliament calls for expulsion of U.S. troops after Soleimani killing", seed_text
    )
    assert "troop_withdrawal" in topic_ids(article)
    assert {"IQ", "IR", "US"} <= set(article.countries)
    assert article.countries[0] == "IQ"
    people = {e.canonical for e in article.entities if e.label == "PERSON"}
    assert {"Qassem Soleimani", "Adel Abdul-Mahdi", "Mike Pompeo"} <= people
    assert not [e for e in article.entities if e.text == "State" and e.label == "ORG"]
    soleimani = [e for e in article.entities if e.text == "Soleimani"]
    assert soleimani and {e.canonical for e in soleimani} == {"Qassem Soleimani"}
    assert len({e.kb_id for e in soleimani}) == 1
    baghdad = [e for e in article.entities if e.text == "BAGHDAD"]
    assert baghdad and baghdad[0].label == "GPE"
    assert "IRQ GOV" in article.actors
    assert any(p.name == "Baghdad" and p.country == "IQ" for p in article.places)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("Wildfire forces evacuation of Yellowknife", "A wildfire forced thousands of residents to leave the city."),
        ("Pentagon statement", "The withdrawal does not affect U.S. military forces in the region, officials said."),
        ("Border clash", "A clash with Chinese soldiers in the valley left 20 Indian soldiers dead."),
        ("Army withdraws support", "The army withdrew its support for the president on Tuesday."),
    ],
)
def test_parser_rejects_cues_that_are_not_linked(enricher: Enricher, title: str, text: str) -> None:
    assert "troop_withdrawal" not in topic_ids(enrich(enricher, title, text))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("Junta gives troops a month", "The junta gave French special forces one month to leave the country."),
        ("Troops to go", "Ukraine was told to withdraw all of its remaining troops from the four regions."),
        ("Peacekeepers depart", "The last convoy of Russian peacekeepers left Nagorno-Karabakh on Wednesday."),
    ],
)
def test_parser_confirms_linked_cues(enricher: Enricher, title: str, text: str) -> None:
    assert "troop_withdrawal" in topic_ids(enrich(enricher, title, text))


@pytest.mark.slow
def test_model_entities_are_completed_by_gazetteer(enricher: Enricher) -> None:
    article = enrich(
        enricher,
        "Russia launches missiles at Kyiv",
        "KYIV, Ukraine (Wire) — Russian missiles struck Kyiv overnight, and Ukrainian President Volodymyr "
        "Zelenskyy said Zelenskyy's government would respond. The Islamic State group was not involved.",
    )
    labels = {(e.text, e.label) for e in article.entities}
    assert {("Kyiv", "GPE"), ("KYIV", "GPE"), ("Russian", "NORP"), ("Ukrainian", "NORP")} <= labels
    assert ("Volodymyr Zelenskyy", "PERSON") in labels
    assert not any(e.text == "Wire" for e in article.entities)
    assert "airstrike" in topic_ids(article)
    assert article.countries[:2] == ["UA", "RU"] or set(article.countries[:2]) == {"UA", "RU"}


# --- the quality benchmark --------------------------------------------------------------------------


def test_lenient_match_pairs_names_once() -> None:
    matched, missed, extra = lenient_match(
        ["Islamic State", "Mike Pompeo", "the Pentagon"], ["Islamic State group", "Pompeo's", "Pentagon", "Iraq"]
    )
    # "Islamic State" ~ "Islamic State group", "the Pentagon" = "Pentagon", "Mike Pompeo" ~ "Pompeo's"
    assert matched == 3
    assert missed == []
    assert extra == ["Iraq"]


def test_report_counts_precision_and_recall() -> None:
    report = Report()
    row = {
        "id": "x",
        "gold": {"entities": [{"text": "Iraq", "label": "GPE"}], "countries": ["IQ", "US"], "topics": ["protest"]},
    }
    article = Article(title="t", text="Iraq", countries=["IQ", "IR"], topics=[{"id": "protest", "score": 0.9}])
    report.add(row, article)
    summary = report.summary()
    assert summary["countries_p"] == 0.5 and summary["countries_r"] == 0.5
    assert summary["entity_labels"]["GPE"]["fn"] == 1
    assert summary["topic_scores"]["protest"]["f1"] == 1.0


@pytest.mark.slow
def test_quality_benchmark_on_a_subset_gives_sane_figures(enricher: Enricher) -> None:
    rows = load_devset(DEVSET, limit=40)
    report, seconds = evaluate(rows, enricher)
    summary = report.summary()
    assert summary["passages"] == 40 and seconds > 0
    for key in ("entities_f1", "countries_f1", "countries_macro_f1", "topics_macro_f1", "troop_withdrawal_p"):
        assert 0.0 <= summary[key] <= 1.0
    # far above what chance or an empty tagger would score, on passages the rules were tuned on
    assert summary["entities_f1"] > 0.75
    assert summary["countries_f1"] > 0.8
    assert summary["topics_macro_f1_all"] > 0.6
    assert set(summary["entity_labels"]) <= {"PERSON", "ORG", "GPE", "LOC", "NORP"}


def test_quality_benchmark_script_prints_json_last(tmp_path: Path) -> None:
    subset = tmp_path / "subset.jsonl"
    subset.write_text("\n".join(DEVSET.read_text(encoding="utf-8").splitlines()[:6]) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "benchmarks/quality.py", "--fast", "--devset", str(subset), "--no-speed"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["benchmark"] == "quality" and last["model"] == "fast" and last["passages"] == 6
    assert "Topics" in result.stdout
