"""The newswatch command as a newcomer runs it: separate processes, default settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, SEED_TITLE, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `newswatch run --once` already ran with no flags at all."""
    cwd = tmp_path_factory.mktemp("newcomer")
    result = run_cli("run", "--once", cwd=cwd)
    assert result.returncode == 0, result.stderr
    (cwd / "first-run.stdout").write_text(result.stdout)
    (cwd / "first-run.stderr").write_text(result.stderr)
    return cwd


def test_first_run_prints_the_seed_alert(workdir: Path) -> None:
    stdout = (workdir / "first-run.stdout").read_text()
    assert f"ALERT [Troop withdrawal] {SEED_TITLE}" in stdout
    assert "topic troop_withdrawal" in stdout
    summary = (workdir / "first-run.stderr").read_text()
    assert "cycle=1" in summary and "dead_letters=1" in summary and "duplicates=1" in summary
    assert (workdir / ".newswatch" / "newswatch.db").exists()


def test_second_run_keeps_the_article_count(workdir: Path) -> None:
    before = json.loads(run_cli("stats", "--json", cwd=workdir).stdout)
    assert before["articles"] == 27  # 28 items in the seed feeds, one story carried twice
    assert before["alerts"] >= 1
    unchanged = run_cli("run", "--once", cwd=workdir)
    assert "rss.not_modified=4" in unchanged.stderr  # conditional fetch: nothing re-read
    (workdir / ".newswatch" / "state.db").unlink()  # forget feed state: every article is read again
    again = run_cli("run", "--once", "--fast", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "updated=27" in again.stderr and "new=0" in again.stderr
    after = json.loads(run_cli("stats", "--json", cwd=workdir).stdout)
    assert after["articles"] == before["articles"]
    assert after["alerts"] == before["alerts"]


def test_search_alerts_and_dead_letters_read_the_store(workdir: Path) -> None:
    hits = [
        json.loads(line)
        for line in run_cli("search", "troop", "--country", "IQ", "--json", cwd=workdir).stdout.splitlines()
    ]
    assert any(h["title"] == SEED_TITLE for h in hits)
    alerts = [json.loads(line) for line in run_cli("alerts", "list", "--json", cwd=workdir).stdout.splitlines()]
    assert any(a["title"] == SEED_TITLE and a["subscription_id"] == "troop-withdrawal" for a in alerts)
    letters = [json.loads(line) for line in run_cli("deadletters", "list", "--json", cwd=workdir).stdout.splitlines()]
    assert any(d["source"].endswith("broken.xml") and "no entries" in d["reason"] for d in letters)


def test_subscriptions_add_test_remove(workdir: Path) -> None:
    added = run_cli(
        "subscriptions",
        "add",
        "Withdrawal from Iraq, not Venezuela",
        "--topic",
        "troop_withdrawal",
        "--country",
        "IQ",
        "--query",
        "NOT country:VE",
        cwd=workdir,
    )
    assert added.returncode == 0, added.stderr
    listed = [json.loads(line) for line in run_cli("subscriptions", "list", "--json", cwd=workdir).stdout.splitlines()]
    assert "withdrawal-from-iraq-not-venezuela" in {s["id"] for s in listed}
    tested = run_cli("subscriptions", "test", "withdrawal-from-iraq-not-venezuela", "--json", cwd=workdir)
    fired = [json.loads(line) for line in tested.stdout.splitlines()]
    assert [f["title"] for f in fired] == [SEED_TITLE]
    assert run_cli("subscriptions", "remove", "withdrawal-from-iraq-not-venezuela", cwd=workdir).returncode == 0
    bad = run_cli("subscriptions", "add", "x", "--query", "country:IRQ", cwd=workdir)
    assert bad.returncode == 2 and "country" in bad.stderr


def test_malformed_and_unreachable_feeds_are_dead_letters(tmp_path: Path) -> None:
    feeds = f"{REPO / 'seeds/feeds/broken.xml'},http://127.0.0.1:9/feed.xml,{REPO / 'seeds/feeds/regional-desk.xml'}"
    result = run_cli("run", "--once", "--fast", "--feeds", feeds, "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rss.failed=2" in result.stderr
    letters = [
        json.loads(line)
        for line in run_cli("deadletters", "list", "--json", "--data-dir", str(tmp_path / "d")).stdout.splitlines()
    ]
    by_source = {d["source"]: d["reason"] for d in letters}
    assert "no entries" in by_source[str(REPO / "seeds/feeds/broken.xml")]
    assert "request failed" in by_source["http://127.0.0.1:9/feed.xml"]
    stats = json.loads(run_cli("stats", "--json", "--data-dir", str(tmp_path / "d")).stdout)
    assert stats["articles"] == 9  # the good feed was processed


def test_enrich_jsonl(tmp_path: Path, seed_text: str) -> None:
    lines = [
        json.dumps({"title": SEED_TITLE, "text": seed_text, "url": "https://news.example.com/seed"}),
        "{not json",
        json.dumps({"title": "Quake in Chile", "summary": "A strong earthquake hit Santiago."}),
    ]
    result = run_cli("enrich", "-", "-o", str(tmp_path / "out.jsonl"), input_text="\n".join(lines) + "\n")
    assert result.returncode == 3  # a line was dead-lettered
    dead = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert dead[0]["reason"].startswith("invalid JSON") and dead[0]["details"]["line"] == 2
    articles = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [a["title"] for a in articles] == [SEED_TITLE, "Quake in Chile"]
    seed = articles[0]
    assert "troop_withdrawal" in [t["id"] for t in seed["topics"]]
    assert {"IQ", "IR", "US"} <= set(seed["countries"])
    people = {e["text"] for e in seed["entities"] if e["label"] == "PERSON"}
    assert {"Qassem Soleimani", "Adel Abdul-Mahdi", "Mike Pompeo"} <= people
    assert any(p["name"] == "Baghdad" and p["country"] == "IQ" for p in seed["places"])
    assert articles[1]["countries"] == ["CL"]


def test_invalid_settings_fail_at_start_naming_the_setting(tmp_path: Path) -> None:
    result = run_cli("stats", env={"NEWSWATCH_SINK": "mongodb"}, cwd=tmp_path)
    assert result.returncode == 2 and "NEWSWATCH_SINK" in result.stderr
    unknown = run_cli("stats", env={"NEWSWATCH_FEEDZ": "x"}, cwd=tmp_path)
    assert unknown.returncode == 2 and "NEWSWATCH_FEEDZ" in unknown.stderr


def test_help_on_every_command() -> None:
    for command in (
        ["run"],
        ["enrich"],
        ["search"],
        ["subscriptions", "add"],
        ["alerts", "list"],
        ["deadletters", "list"],
        ["stats"],
        ["schema"],
    ):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and "usage: newswatch" in result.stdout
    assert "NEWSWATCH_FEEDS" in run_cli("run", "--help").stdout
