"""The README's throughput benchmark runs as documented, on a small corpus: both paths do the same work and
the last line carries the figures and target verdicts the docs quote. No speed is asserted here (that is
what the benchmark itself is for)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _counts(lines: list[str], path: str) -> tuple[int, int]:
    """(enriched, alerts) from the benchmark's line for one run of `path`."""
    line = next(line for line in lines if f"] {path}:" in line)
    found = re.search(r"enriched=(\d+) alerts=(\d+)", line)
    assert found, line
    return int(found[1]), int(found[2])


def test_throughput_fast_runs_both_paths_alike_and_reports_the_job_floor(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--fast", "--count", "40", "--repeat", "1"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "NEWSWATCH_BENCH_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    beam, loop = _counts(lines, "beam pipeline"), _counts(lines, "plain loop")
    assert beam == loop, lines
    assert beam[0] == 40
    assert beam[1] > 0  # the corpus is composed of news that the default subscriptions match
    assert (tmp_path / "corpus-40x800-7.jsonl").exists()

    figures = json.loads(lines[-1])
    assert figures["articles"] == 40 and figures["mode"] == "fast"
    assert len(figures["runs_articles_per_s"]) == len(figures["runs_loop_articles_per_s"]) == 1
    assert figures["floor_articles_per_s"] > 0 and figures["floor_cpu_ms_per_article"] > 0
    assert figures["target_articles_per_s"] == 1500
    assert figures["target_met"] == (figures["articles_per_s"] >= 1500)
    assert figures["target_ratio_met"] == (figures["ratio_vs_loop"] >= 0.8)
    assert any(line.startswith("target >= 1,500 articles/s (fast): ") for line in lines)
