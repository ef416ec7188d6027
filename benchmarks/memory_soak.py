"""Memory of the continuous job over a long run at steady load: RSS sampled every few seconds while articles
are produced into Kafka at a steady rate; start, peak and end RSS, and the slope over the second half.

    python benchmarks/memory_soak.py                  # 20 minutes at 20 articles/s, default enrichment
    python benchmarks/memory_soak.py --minutes 5      # shorter
    python benchmarks/memory_soak.py --fast           # gazetteer and rules only

The job is `newswatch run --source kafka --interval 0.5` as a subprocess, against a noida-db this script starts
(benchmarks/harness.py, as e2e_latency.py). Memory is the job's and its enrichment workers'
(forked children): their summed RSS, which counts the pages the workers share with the job once per process (an
upper bound, what the target is judged on), their summed PSS (shared pages split: the real cost), and the job's
own RSS. Start is taken after a warm-up (model loaded, first cycles run); "flat" means the least-squares slope
of the summed RSS over the second half is under --flat-mb-per-min (default 1 MB/min). Targets: peak under
1.5 GB, and flat. Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import build_corpus, finish, print_machine
from benchmarks.harness import (
    AlertListener,
    Corpus,
    JobMemory,
    Producer,
    bench,
    job_memory,
    load_average,
    slope,
    wait_for,
)

PEAK_TARGET_MB = 1536.0


def _mb(value: float | None) -> str:
    return f"{value:6.1f} MB" if value is not None else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the steady load (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="articles/s (default 20)")
    parser.add_argument("--interval", type=float, default=0.5, help="the job's --interval (default 0.5 s)")
    parser.add_argument("--fast", action="store_true", help="no statistical NER (gazetteer and rules only)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period (default 5 s)")
    parser.add_argument("--flat-mb-per-min", type=float, default=1.0, help="slope under which RSS counts as flat")
    parser.add_argument("--count", type=int, default=2000, help="corpus articles (default 2000)")
    parser.add_argument("--words", type=int, default=800, help="words per article (default 800)")
    args = parser.parse_args(argv)

    print_machine()
    print(f"load average before: {load_average()}")
    corpus_path = build_corpus(args.count, args.words)
    with bench(args.fast, args.interval) as b:
        assert b.job is not None
        pid = b.job.pid
        print(f"job: newswatch {' '.join(b.command)} (pid {pid}); {args.rate:g} articles/s for {args.minutes:g} min")
        listener = AlertListener(b)
        listener.start()
        producer = Producer(b, Corpus(corpus_path, b.run_id))
        try:
            producer.run(rate=10, seconds=2, label="warmup")
            warm = set(producer.produced)
            if not wait_for(lambda: warm <= set(b.indexed_times()) and b.lag() == 0, timeout=600, every=1.0):
                raise SystemExit(f"warm-up articles never indexed; see {b.job_log}")
            seconds = args.minutes * 60
            feeding = threading.Thread(target=producer.run, args=(args.rate, seconds, "soak"), daemon=True)
            started = time.monotonic()
            feeding.start()
            samples: list[tuple[float, JobMemory]] = []
            next_report = 60.0
            while feeding.is_alive():
                memory = job_memory(pid)
                if memory is None or b.job.poll() is not None:
                    raise SystemExit(f"the job exited (status {b.job.poll()}); see {b.job_log}")
                elapsed = time.monotonic() - started
                samples.append((elapsed / 60, memory))
                if elapsed >= next_report:
                    print(
                        f"  {elapsed / 60:5.1f} min  job RSS {memory.job_rss_mb:6.1f} MB  with workers: "
                        f"PSS {_mb(memory.total_pss_mb)} RSS {memory.total_rss_mb:6.1f} MB ({memory.processes} "
                        f"processes)  lag {b.lag()}  articles {producer.count}"
                    )
                    next_report += 60
                feeding.join(timeout=args.sample_seconds)
            lag_at_end = b.lag()
            load_minutes = (time.monotonic() - started) / 60
            catching_up: list[JobMemory] = []
            deadline = time.monotonic() + 300
            while b.lag() > 0 and time.monotonic() < deadline:  # the backlog, if any, still counts for the peak
                memory = job_memory(pid)
                if memory is not None:
                    catching_up.append(memory)
                time.sleep(args.sample_seconds)
            caught_up = b.lag() == 0
            indexed = len(b.indexed_times())
        finally:
            producer.close()
            listener.stop()

    everything = [m for _, m in samples] + catching_up
    start, end = samples[0][1], samples[-1][1]
    peak_job = max(m.job_rss_mb for m in everything)
    peak_rss = max(m.total_rss_mb for m in everything)
    pss = [m.total_pss_mb for m in everything if m.total_pss_mb is not None]
    peak_pss = max(pss) if pss else None
    second_half = [s for s in samples if s[0] >= load_minutes / 2]
    growth = slope([(minute, m.total_rss_mb) for minute, m in second_half])
    growth_job = slope([(minute, m.job_rss_mb) for minute, m in second_half])
    flat = growth < args.flat_mb_per_min
    print(
        f"job RSS: start {start.job_rss_mb:.1f} MB, end {end.job_rss_mb:.1f} MB, peak {peak_job:.1f} MB "
        f"({len(samples)} samples)"
    )
    print(
        f"job + {start.processes - 1} enrichment workers: peak PSS {_mb(peak_pss)}, peak summed RSS {peak_rss:.1f} MB "
        f"(counts the pages the forked workers share with the job once per process); start {start.total_rss_mb:.1f}, "
        f"end {end.total_rss_mb:.1f} MB"
    )
    print(
        f"slope over the second half of the load: {growth:+.2f} MB/min with workers, {growth_job:+.2f} MB/min job "
        f"alone -> {'flat' if flat else 'GROWING'}"
    )
    print(
        f"articles produced {producer.count}, stored {indexed}; lag when producing stopped {lag_at_end}"
        f"{'' if caught_up else ' (did not catch up within 300 s: the job does not sustain this rate here)'}"
    )
    met = peak_rss < PEAK_TARGET_MB and flat
    print(
        f"target peak < {PEAK_TARGET_MB:.0f} MB (summed RSS of the job and its workers) and flat: "
        f"{'met' if met else 'NOT met'}"
    )
    print(f"load average after: {load_average()}")
    finish(
        {
            "mode": "fast" if args.fast else "ner",
            "minutes": args.minutes,
            "rate": args.rate,
            "interval_s": args.interval,
            "processes": start.processes,
            "job_rss_start_mb": round(start.job_rss_mb, 1),
            "job_rss_peak_mb": round(peak_job, 1),
            "job_rss_end_mb": round(end.job_rss_mb, 1),
            "total_rss_start_mb": round(start.total_rss_mb, 1),
            "total_rss_peak_mb": round(peak_rss, 1),
            "total_rss_end_mb": round(end.total_rss_mb, 1),
            "total_pss_peak_mb": round(peak_pss, 1) if peak_pss is not None else None,
            "slope_second_half_mb_per_min": round(growth, 3),
            "job_slope_second_half_mb_per_min": round(growth_job, 3),
            "flat": flat,
            "samples": len(samples),
            "catch_up_samples": len(catching_up),
            "articles_produced": producer.count,
            "articles_stored": indexed,
            "lag_at_end": lag_at_end,
            "caught_up": caught_up,
            "target_met": met,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
