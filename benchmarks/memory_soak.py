"""Memory of the continuous job over a long run at steady load: RSS sampled every few seconds while articles
are produced into Kafka at a steady rate; start, peak and end RSS, and the slope over the second half.

    python benchmarks/memory_soak.py                  # 20 minutes at 20 articles/s, default enrichment
    python benchmarks/memory_soak.py --minutes 5      # shorter
    python benchmarks/memory_soak.py --fast           # gazetteer and rules only

The job is `newswatch run --source kafka --interval 0.5` as a subprocess, against a noida-db this script starts
(benchmarks/harness.py, as e2e_latency.py). RSS comes from psutil when installed, else /proc/PID/status. Start
RSS is taken after a warm-up (model loaded, first cycles run); "flat" means the least-squares slope over the
second half is under --flat-mb-per-min (default 1 MB/min). Targets: peak under 1.5 GB, and flat. Last line: one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import build_corpus, finish, print_machine
from benchmarks.harness import AlertListener, Corpus, Producer, bench, load_average, rss_mb, slope, wait_for

PEAK_TARGET_MB = 1536.0


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
            samples: list[tuple[float, float]] = []
            next_report = 60.0
            while feeding.is_alive():
                rss = rss_mb(pid)
                if rss is None or b.job.poll() is not None:
                    raise SystemExit(f"the job exited (status {b.job.poll()}); see {b.job_log}")
                elapsed = time.monotonic() - started
                samples.append((elapsed / 60, rss))
                if elapsed >= next_report:
                    print(f"  {elapsed / 60:5.1f} min  RSS {rss:7.1f} MB  lag {b.lag()}  articles {producer.count}")
                    next_report += 60
                feeding.join(timeout=args.sample_seconds)
            lag_at_end = b.lag()
            load_minutes = (time.monotonic() - started) / 60
            catching_up: list[float] = []
            deadline = time.monotonic() + 300
            while b.lag() > 0 and time.monotonic() < deadline:  # the backlog, if any, still counts for the peak
                rss = rss_mb(pid)
                if rss is not None:
                    catching_up.append(rss)
                time.sleep(args.sample_seconds)
            caught_up = b.lag() == 0
            indexed = len(b.indexed_times())
        finally:
            producer.close()
            listener.stop()

    start_mb, end_mb = samples[0][1], samples[-1][1]
    peak_mb = max(rss for _, rss in samples + [(0.0, r) for r in catching_up])
    growth = slope([s for s in samples if s[0] >= load_minutes / 2])
    flat = growth < args.flat_mb_per_min
    print(f"RSS under load: start {start_mb:.1f} MB, end {end_mb:.1f} MB ({len(samples)} samples)")
    print(f"peak RSS (load and catch-up): {peak_mb:.1f} MB")
    print(f"slope over the second half of the load: {growth:+.2f} MB/min -> {'flat' if flat else 'GROWING'}")
    print(
        f"articles produced {producer.count}, stored {indexed}; lag when producing stopped {lag_at_end}"
        f"{'' if caught_up else ' (did not catch up within 300 s: the job does not sustain this rate here)'}"
    )
    met = peak_mb < PEAK_TARGET_MB and flat
    print(f"target peak < {PEAK_TARGET_MB:.0f} MB and flat: {'met' if met else 'NOT met'}")
    print(f"load average after: {load_average()}")
    finish(
        {
            "mode": "fast" if args.fast else "ner",
            "minutes": args.minutes,
            "rate": args.rate,
            "interval_s": args.interval,
            "rss_start_mb": round(start_mb, 1),
            "rss_peak_mb": round(peak_mb, 1),
            "rss_end_mb": round(end_mb, 1),
            "slope_second_half_mb_per_min": round(growth, 3),
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
