"""deploy/: what can be checked without a Docker engine. The compose file parses and is wired
consistently, every NEWSWATCH_* variable it sets is a real setting, and the index templates are valid."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from connectors.elasticsearch import KINDS
from connectors.es_setup import PLACEHOLDER, load_templates
from deploy import DEPLOY_DIR, ELASTICSEARCH_DIR
from pipelines.settings import Settings, unknown_env_vars

COMPOSE_TEXT = (DEPLOY_DIR / "compose.yaml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INTERPOLATED = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_stack_has_kafka_elasticsearch_kibana_and_the_job() -> None:
    assert {"kafka", "elasticsearch", "kibana", "newswatch", "newswatch-setup"} <= set(SERVICES)
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, f"{name}: pin the image version"


def test_dependencies_and_volumes_exist() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in {"service_healthy", "service_completed_successfully", "service_started"}
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_kafka_runs_in_kraft_mode_on_one_node() -> None:
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("ZOOKEEPER" in k for k in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {entry.split(":")[0] for entry in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")} <= listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    job = environment("newswatch")
    topics = SERVICES["kafka-topics"]["command"][0]
    for setting in ("NEWSWATCH_KAFKA_TOPIC", "NEWSWATCH_KAFKA_DLQ_TOPIC", "NEWSWATCH_ALERTS_TOPIC"):
        assert job[setting] in topics, f"{job[setting]} is not created (auto-creation is off)"


def test_elasticsearch_is_one_secured_node_and_kibana_trusts_its_ca() -> None:
    es = environment("elasticsearch")
    assert es["discovery.type"] == "single-node"
    assert es["xpack.security.enabled"] == "true" and es["xpack.security.http.ssl.enabled"] == "true"
    assert es["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    assert SERVICES["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:${STACK")
    kibana = environment("kibana")
    assert kibana["ELASTICSEARCH_HOSTS"] == "https://elasticsearch:9200"
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"  # Kibana 8 refuses the elastic superuser
    assert kibana["ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES"].endswith("ca/ca.crt")


def test_the_job_reads_kafka_and_rss_into_elasticsearch_with_tls() -> None:
    job = environment("newswatch")
    assert set(job["NEWSWATCH_SOURCES"].split(",")) == {"rss", "kafka"}
    assert job["NEWSWATCH_SINK"] == "elasticsearch"
    assert job["NEWSWATCH_ES_URL"].startswith("https://elasticsearch:")
    assert job["NEWSWATCH_ES_CA_FILE"].startswith("/certs/")
    assert any(v.startswith("certs:/certs") for v in SERVICES["newswatch"]["volumes"])
    assert job["NEWSWATCH_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    setup = SERVICES["newswatch-setup"]
    assert "newswatch es setup" in setup["command"][0] and "newswatch kibana import" in setup["command"][0]
    assert SERVICES["newswatch"]["depends_on"]["newswatch-setup"]["condition"] == "service_completed_successfully"


def test_every_newswatch_variable_in_the_compose_file_is_a_setting() -> None:
    names = set()
    for service in SERVICES:
        names |= {k for k in environment(service) if k.startswith("NEWSWATCH_")}
    names |= {v for v in INTERPOLATED.findall(COMPOSE_TEXT) if v.startswith("NEWSWATCH_")}
    assert names, "no NEWSWATCH_ variables found"
    assert unknown_env_vars({n: "x" for n in names}) == []


def test_the_jobs_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environment("newswatch").items():
        monkeypatch.setenv(name, INTERPOLATED.sub(lambda m: "300" if "INTERVAL" in m.group(1) else "pw", value))
    settings = Settings()
    assert settings.sink == "elasticsearch" and settings.sources == ["rss", "kafka"]
    assert settings.es_password is not None and settings.es_username == "newswatch"


def test_required_variables_are_in_the_env_example_and_the_build_context_is_the_repo() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_TEXT))
    example = (DEPLOY_DIR / ".env.example").read_text()
    assert required == {"ELASTIC_PASSWORD", "KIBANA_PASSWORD", "NEWSWATCH_ES_PASSWORD"}
    assert all(re.search(rf"^{name}=", example, re.MULTILINE) for name in required)
    build = SERVICES["newswatch-setup"]["build"]
    context = (DEPLOY_DIR / build["context"]).resolve()
    assert (context / "pyproject.toml").is_file() and (context / build["dockerfile"]).is_file()
    dockerfile = (context / build["dockerfile"]).read_text()
    for copied in re.findall(r"^COPY (\S+) \S+$", dockerfile, re.MULTILINE):
        assert (context / copied).exists() or copied == "README.md", f"Dockerfile copies missing {copied}"


def test_index_templates_are_valid_and_complete() -> None:
    for path in ELASTICSEARCH_DIR.rglob("*.json"):
        json.loads(path.read_text())
    templates = load_templates(ELASTICSEARCH_DIR, "acme")
    assert PLACEHOLDER not in json.dumps(templates.__dict__)
    for kind in KINDS:
        body = templates.index_templates[kind]
        assert body["index_patterns"] == [f"acme-{kind}-v*"]
        assert all(name in templates.component_templates for name in body["composed_of"])
        assert templates.mappings(kind)["dynamic"] == "strict"  # type: ignore[arg-type]
    assert templates.rollover("deadletters") and not templates.rollover("articles")
    policy = templates.ilm_policies["acme-deadletters"]
    assert "rollover" in policy["phases"]["hot"]["actions"] and "delete" in policy["phases"]["delete"]["actions"]
    lifecycle = templates.component_templates["acme-deadletters-lifecycle"]["template"]["settings"]["index"]
    assert lifecycle["lifecycle"] == {"name": "acme-deadletters", "rollover_alias": "acme-deadletters-write"}


def test_packaged_deploy_assets_are_declared() -> None:
    pyproject = (DEPLOY_DIR.parent / "pyproject.toml").read_text()
    assert '"deploy*"' in pyproject and "elasticsearch/**/*.json" in pyproject and "kibana/*.ndjson" in pyproject
