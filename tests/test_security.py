"""Security under faults: secrets never reach logs or error messages (also at DEBUG, also as JSON logs, also
on failure paths), local feed files stay inside the allowed directories, and invalid settings are refused
naming the setting. Webhook SSRF protection: tests/test_alert_delivery.py (addresses, DNS rebinding,
redirects)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.rss import FeedFetcher, PollPolicy, poll_feed
from connectors.sqlite_store import SqliteStore
from pipelines.job import allowed_feed_dirs
from pipelines.logs import redact
from pipelines.settings import Settings, SettingsError, load_settings
from pipelines.subscriptions import subscription_from_options
from tests.alert_helpers import SEED_TEXT, SEED_TITLE, write_feed
from tests.conftest import run_cli
from tests.fault_support import ResettingServer
from tests.servers import NoidaServer, free_port
from tests.test_kafka_job import unique

SECRETS = {
    "NEWSWATCH_ES_API_KEY": "es-api-key-Zq81x",
    "NEWSWATCH_ES_USERNAME": "elastic",
    "NEWSWATCH_ES_PASSWORD": "es-password-Xk27y",
    "NEWSWATCH_KAFKA_SASL_PASSWORD": "kafka-sasl-password-Wm55z",
    "NEWSWATCH_SMTP_USERNAME": "mailer",
    "NEWSWATCH_SMTP_PASSWORD": "smtp-password-Jd63w",
}
WEBHOOK_SECRET = "webhook-secret-Pv90q"
SECRET_VALUES = [v for k, v in SECRETS.items() if not k.endswith("USERNAME")] + [WEBHOOK_SECRET]
LOG_MODES = [["--log-level", "DEBUG"], ["--log-level", "DEBUG", "--log-json"]]


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        leaked = [s for s in SECRET_VALUES if s in output]
        assert not leaked, f"secret(s) {leaked} in:\n" + "\n".join(
            line for line in output.splitlines() if any(s in line for s in leaked)
        )


# --- credentials in logs, on failure paths ---


@pytest.mark.slow
@pytest.mark.parametrize("log_mode", LOG_MODES, ids=["text", "json"])
def test_unreachable_elasticsearch_with_credentials_logs_no_secret(log_mode: list[str], tmp_path: Path) -> None:
    env = {
        **SECRETS,
        "NEWSWATCH_SINK": "elasticsearch",
        "NEWSWATCH_ES_URL": f"http://127.0.0.1:{free_port()}",
        "NEWSWATCH_ES_MAX_RETRIES": "1",
        "NEWSWATCH_ES_MAX_BACKOFF": "0.1",
    }
    done = run_cli("run", "--once", "--fast", "--data-dir", str(tmp_path), *log_mode, env=env, timeout=120)
    assert done.returncode == 1
    assert "ConnectionError" in done.stderr  # the failure is reported ...
    assert_no_secret(done.stdout, done.stderr)  # ... without the API key or password


@pytest.mark.slow
@pytest.mark.parametrize("log_mode", LOG_MODES, ids=["text", "json"])
def test_kafka_sasl_handshake_and_misconfiguration_log_no_secret(
    log_mode: list[str], noida_kafka: NoidaServer, tmp_path: Path
) -> None:
    """SASL/PLAIN sends the password in the clear, and kafka-python logs every request at DEBUG, that one
    too; then (once) SASL_SSL against a plaintext listener, which fails."""
    env = {
        **SECRETS,
        "NEWSWATCH_SOURCES": "kafka",
        "NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS": noida_kafka.kafka_bootstrap,
        "NEWSWATCH_KAFKA_TOPIC": unique("sasl"),
        "NEWSWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "NEWSWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
        "NEWSWATCH_KAFKA_SASL_USERNAME": "reader",
        "NEWSWATCH_KAFKA_READ_TIMEOUT": "5",
    }
    plain = run_cli("run", "--once", "--fast", "--data-dir", str(tmp_path / "a"), *log_mode, env=env, timeout=120)
    assert "SaslAuthenticate" in plain.stderr  # the handshake was logged ...
    assert_no_secret(plain.stdout, plain.stderr)  # ... without the password

    if "--log-json" in log_mode:
        env["NEWSWATCH_KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
        tls = run_cli("run", "--once", "--fast", "--data-dir", str(tmp_path / "b"), *log_mode, env=env, timeout=120)
        assert tls.returncode == 1 and "cycle failed: kafka" in tls.stderr
        assert_no_secret(tls.stdout, tls.stderr)


@pytest.mark.slow
def test_failed_webhook_and_email_deliveries_log_no_secret(tmp_path: Path) -> None:
    feed = write_feed(
        tmp_path,
        "wire.xml",
        [{"title": SEED_TITLE, "link": "https://wire.example/iraq", "text": SEED_TEXT, "published": datetime.now(UTC)}],
    )
    data = tmp_path / "data"
    receiver = ResettingServer()
    try:
        with SqliteStore(data / "newswatch.db") as store:
            store.put_subscription(
                subscription_from_options(
                    "Iraq",
                    topics=["troop_withdrawal"],
                    webhook=receiver.url(),
                    secret=WEBHOOK_SECRET,
                    emails=["desk@example.org"],
                    allow_private_webhooks=True,
                )
            )
        env = {
            **SECRETS,
            "NEWSWATCH_DATA_DIR": str(data),
            "NEWSWATCH_FEEDS": str(feed),
            "NEWSWATCH_FEED_DIRS": str(tmp_path),
            "NEWSWATCH_WEBHOOK_ALLOW_PRIVATE": "true",
            "NEWSWATCH_WEBHOOK_ATTEMPTS": "2",
            "NEWSWATCH_WEBHOOK_BACKOFF_MAX": "0.1",
            "NEWSWATCH_SMTP_HOST": "127.0.0.1",
            "NEWSWATCH_SMTP_PORT": str(free_port()),
            "NEWSWATCH_SMTP_TIMEOUT": "1",
        }
        done = run_cli("run", "--once", "--fast", "--log-level", "DEBUG", env=env, timeout=180)
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert receiver.connections == 2
    letters = run_cli("deadletters", "list", "--json", "--stage", "deliver", env=env)
    assert {json.loads(line)["details"]["channel"] for line in letters.stdout.splitlines()} == {"webhook", "email"}
    shown = run_cli("subscriptions", "list", "--json", env=env)
    assert "desk@example.org" in shown.stdout
    assert_no_secret(done.stdout, done.stderr, letters.stdout, letters.stderr, shown.stdout)


def test_redaction_masks_registered_secrets_and_sasl_bytes() -> None:
    load_settings(es_password="a-password-of-the-test")  # registers the settings' secrets
    assert redact("GET failed: auth a-password-of-the-test") == "GET failed: auth **********"
    sasl = "SaslAuthenticateRequest(version=2, auth_bytes=b'user\\x00user\\x00some-unregistered-pw')"
    assert redact(sasl) == "SaslAuthenticateRequest(version=2, auth_bytes=**********)"


# --- local feed files stay inside the allowed directories ---

RSS = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Desk</title>'
    "<item><title>Troops leave the base</title><link>https://desk.example/1</link></item>"
    "</channel></rss>"
)
SECRET_FILE_TEXT = "ssh-rsa AAAA-private-material"


@pytest.fixture
def feed_tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/ with a feed, a symlink to it, a symlink to a file outside, a symlink to a directory outside;
    outside/ with a file that must never be read."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "desk.xml").write_text(RSS)
    (outside / "secret.xml").write_text(SECRET_FILE_TEXT)
    (allowed / "alias.xml").symlink_to(allowed / "desk.xml")
    (allowed / "escape.xml").symlink_to(outside / "secret.xml")
    (allowed / "elsewhere").symlink_to(outside, target_is_directory=True)
    return {"allowed": allowed, "outside": outside, "root": tmp_path}


def test_file_feeds_cannot_leave_the_allowed_directories(feed_tree: dict[str, Path]) -> None:
    allowed = feed_tree["allowed"]
    fetcher = FeedFetcher(allowed_dirs=[allowed])
    for spec in (str(allowed / "desk.xml"), str(allowed / "alias.xml"), f"file://{allowed}/desk.xml"):
        assert [a.title for a in poll_feed(spec, None, fetcher, PollPolicy()).articles] == ["Troops leave the base"]
    for spec in (
        f"{allowed}/../outside/secret.xml",  # traversal
        str(allowed / "escape.xml"),  # a symlink to a file outside
        str(allowed / "elsewhere" / "secret.xml"),  # through a symlinked directory
        f"file://{allowed}/../outside/secret.xml",
        f"file://localhost{feed_tree['outside']}/secret.xml",
    ):
        batch = poll_feed(spec, None, fetcher, PollPolicy())
        assert batch.articles == []
        (letter,) = batch.dead_letters
        assert "outside the allowed feed directories" in letter.reason and "NEWSWATCH_FEED_DIRS" in letter.reason
        assert letter.payload == "" and SECRET_FILE_TEXT not in letter.model_dump_json()


@pytest.mark.slow
def test_the_job_reads_only_feed_files_in_feed_dirs(feed_tree: dict[str, Path]) -> None:
    """`newswatch run` with a feed directory holding a symlink out, and a traversal path, from a working
    directory of its own (the working directory is allowed too)."""
    workdir = feed_tree["root"] / "work"
    workdir.mkdir()
    allowed = feed_tree["allowed"]
    env = {
        "NEWSWATCH_FEEDS": f"{allowed},{allowed}/../outside/secret.xml",
        "NEWSWATCH_FEED_DIRS": str(allowed),
        "NEWSWATCH_DATA_DIR": str(workdir / "data"),
    }
    done = run_cli("run", "--once", "--fast", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "new=1 " in done.stderr  # desk.xml and its alias: one article
    letters = run_cli("deadletters", "list", "--json", env=env, cwd=workdir).stdout
    refused = {json.loads(line)["source"]: json.loads(line)["reason"] for line in letters.splitlines()}
    assert set(refused) == {str(allowed / "escape.xml"), f"{allowed}/../outside/secret.xml"}
    assert all("outside the allowed feed directories" in reason for reason in refused.values())
    assert_no_secret(done.stdout, done.stderr, letters)
    assert SECRET_FILE_TEXT not in done.stderr + letters


def test_a_working_directory_at_the_filesystem_root_is_not_an_allowed_feed_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A service started from / (systemd's default) would otherwise allow every file on the machine."""
    settings = Settings(data_dir=tmp_path, feed_dirs=[str(tmp_path)])
    monkeypatch.chdir("/")
    assert Path("/") not in allowed_feed_dirs(settings)
    assert tmp_path in allowed_feed_dirs(settings)
    monkeypatch.chdir(tmp_path)
    assert Path.cwd() in allowed_feed_dirs(settings)


# --- invalid settings name the setting ---


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NEWSWATCH_INTERVAL": "-5"}, "interval (NEWSWATCH_INTERVAL): Input should be greater than 0"),
        ({"NEWSWATCH_FETCH_WORKERS": "many"}, "fetch_workers (NEWSWATCH_FETCH_WORKERS): Input should be a valid int"),
        ({"NEWSWATCH_KAFKA_AUTO_OFFSET_RESET": "middle"}, "kafka_auto_offset_reset (NEWSWATCH_KAFKA_AUTO_OFF"),
        ({"NEWSWATCH_SOURCES": "rss,ftp"}, "sources (NEWSWATCH_SOURCES): unknown source(s) ftp"),
        ({"NEWSWATCH_ES_INDEX_PREFIX": "Bad Prefix"}, "es_index_prefix (NEWSWATCH_ES_INDEX_PREFIX)"),
        ({"NEWSWATCH_SINK": "elasticsearch"}, "sink=elasticsearch needs es_url (NEWSWATCH_ES_URL or --es-url)"),
        ({"NEWSWATCH_ES_PASSWORD_FILE": "/nonexistent/pw"}, "es_password_file: cannot read /nonexistent/pw"),
        ({"NEWSWATCH_KAFKA_TOPICS": "x"}, "unknown setting(s) in the environment: NEWSWATCH_KAFKA_TOPICS"),
    ],
)
def test_invalid_env_settings_name_the_setting(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("NEWSWATCH_") and not k.startswith("NEWSWATCH_TEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSWATCH_ES_API_KEY", SECRETS["NEWSWATCH_ES_API_KEY"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert named in str(raised.value)
    assert_no_secret(str(raised.value))


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("bad.toml", 'interval = -1\nes_api_key = "es-api-key-Zq81x"\n', "interval (NEWSWATCH_INTERVAL)"),
        ("bad.yaml", "fetch_max_bytes: lots\nes_api_key: es-api-key-Zq81x\n", "fetch_max_bytes (NEWSWATCH_FETCH_MAX"),
        ("typo.toml", "[newswatch]\nfeedz = 'x'\n", "feedz (feedz): unknown setting"),
        ("broken.toml", "interval = \n", "not valid TOML"),
        ("list.yaml", "- interval\n", "expected a table of settings"),
    ],
)
def test_invalid_config_files_name_the_setting(name: str, text: str, named: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(text)
    done = run_cli("stats", "--config", str(path), "--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert named in done.stderr
    assert_no_secret(done.stderr)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--interval", "-5"], "interval (NEWSWATCH_INTERVAL): Input should be greater than 0"),
        (["--source", "rss,ftp"], "sources (NEWSWATCH_SOURCES): unknown source(s) ftp"),
        (["--sink", "mongodb"], "argument --sink: invalid choice: 'mongodb'"),
    ],
)
def test_invalid_flags_name_the_flag_or_setting(flags: list[str], named: str, tmp_path: Path) -> None:
    done = run_cli("run", "--once", *flags, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and named in done.stderr
