"""Shared fixtures: real servers (noida-db, local HTTP), the CLI as a subprocess, one loaded enricher."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.enrich import EnrichConfig, Enricher, shared_enricher
from tests.servers import FeedServer, NoidaServer, env_with

REPO = Path(__file__).resolve().parent.parent
SEED_TITLE = "Iraq's parliament calls for expulsion of U.S. troops after Soleimani killing"


@pytest.fixture(scope="session")
def enricher() -> Enricher:
    """The default enrichment (spaCy NER + gazetteer), loaded once for the whole session."""
    return shared_enricher(EnrichConfig())


@pytest.fixture(scope="session")
def fast_enricher() -> Enricher:
    return shared_enricher(EnrichConfig(use_model=False))


@pytest.fixture(scope="session")
def seed_text() -> str:
    return (REPO / "seeds" / "seed-article.txt").read_text(encoding="utf-8")


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


def _noida(tmp_path_factory: pytest.TempPathFactory, service: str, env_var: str) -> Iterator[NoidaServer]:
    """The server .ci/run started (address in env_var), else one of our own for this session."""
    if os.environ.get(env_var):
        host, _, port = os.environ[env_var].rpartition(":")
        server = NoidaServer(Path("/nonexistent"), (service,), {service: int(port)})
        yield server
        return
    server = NoidaServer(tmp_path_factory.mktemp(f"noida-{service}"), (service,)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def noida_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoidaServer]:
    yield from _noida(tmp_path_factory, "kafka", "NEWSWATCH_TEST_NOIDA_KAFKA")


@pytest.fixture(scope="session")
def noida_es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoidaServer]:
    yield from _noida(tmp_path_factory, "elasticsearch", "NEWSWATCH_TEST_NOIDA_ES")


def run_cli(*args: str, env: dict[str, str] | None = None, input_text: str | None = None,
            cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`newswatch ARGS` as a user runs it: a separate process, the repo on its path."""
    environment = env_with(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=environment, input=input_text, cwd=cwd or REPO, timeout=timeout)
