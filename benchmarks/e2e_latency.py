"""End to end: articles produced into Kafka at a steady rate, the continuous job (`newswatch run --source kafka
--interval 0.5`, a subprocess) reading them; time from produce to indexed and from produce to alert delivered,
and the highest rate the job sustains before its consumer lag keeps growing.

    python benchmarks/e2e_latency.py                      # default enrichment: 20 articles/s for 60 s, then rate steps
    python benchmarks/e2e_latency.py --fast               # gazetteer and rules only
    python benchmarks/e2e_latency.py --seconds 30 --steps 10,20,40 --step-seconds 20   # quicker

It starts its own noida-db (Kafka protocol), creates the topics, seeds the store with the default subscriptions
(they fire on about half the corpus; --alert-every-article adds one for every article) and starts the job.
Articles are the reproducible ~800-word corpus (benchmarks/common.py), each with a URL of its own, and carry
their publish time in a header. Indexed time: the store's write time of the article; alert time: the timestamp
of the alert message the job published to the alerts topic. A warm-up (model loading, first cycles) is excluded.
Sustained rate: each step publishes at a higher rate while the group's lag is sampled every second; a step whose
lag grows over its second half (more than 5 % of the rate per second), or does not drain afterwards, ends the
search, and the sustained rate is the last step before it. The job's CPU time per article is reported too: the
machine may be shared, and wall-clock figures then depend on what else runs. Last line: one JSON object.
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
    Bench,
    Corpus,
    Producer,
    bench,
    cpu_seconds,
    load_average,
    slope,
    summary,
    wait_for,
)


def warm_up(b: Bench, producer: Producer, listener: AlertListener, count: int) -> float:
    """Enough articles for the job to load the model and run its first cycles; returns the seconds it took."""
    started = time.time()
    producer.run(rate=max(1.0, count / 2), seconds=2.0, label="warmup")
    ids = set(producer.produced)
    if not wait_for(lambda: ids <= set(b.indexed_times()) and b.lag() == 0, timeout=600, every=1.0):
        raise SystemExit(f"warm-up articles never indexed; see the job log {b.job_log}")
    return time.time() - started


def measure(b: Bench, producer: Producer, listener: AlertListener, rate: float, seconds: float) -> dict[str, object]:
    """Publish for `seconds`, wait until every article is indexed and the job has caught up (its alerts are
    published in the same cycle), then compute the latencies over this phase's articles."""
    before = set(producer.produced)
    assert b.job is not None
    cpu_before = cpu_seconds(b.job.pid)
    producer.run(rate, seconds, label="steady")
    ids = [i for i in producer.produced if i not in before]
    finished = wait_for(lambda: set(ids) <= set(b.indexed_times()) and b.lag() == 0, timeout=600, every=1.0)
    if b.alert_every_article:
        finished = wait_for(lambda: set(ids) <= set(listener.delivered), timeout=120, every=1.0) and finished
    time.sleep(2.0)  # the last alerts reach the listener a moment after the offsets are committed
    cpu_after = cpu_seconds(b.job.pid)
    job_cpu_ms = (cpu_after - cpu_before) * 1000 / len(ids) if cpu_before is not None and cpu_after else None
    indexed = b.indexed_times()
    to_index = [indexed[i] - producer.produced[i] for i in ids if i in indexed]
    to_alert = [listener.delivered[i] - producer.produced[i] for i in ids if i in listener.delivered]
    return {
        "articles": len(ids),
        "alerting_articles": len(to_alert),
        "complete": finished,
        "indexed": len(to_index),
        "produce_to_indexed_s": summary(to_index),
        "produce_to_alert_s": summary(to_alert),
        "job_cpu_ms_per_article": round(job_cpu_ms, 1) if job_cpu_ms is not None else None,
    }


class LagSampler(threading.Thread):
    def __init__(self, b: Bench) -> None:
        super().__init__(daemon=True, name="lag")
        self.bench = b
        self.points: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopping.wait(1.0):
            try:
                self.points.append((time.monotonic() - started, float(self.bench.lag())))
            except Exception as exc:  # a sample lost to a busy broker is not a result
                print(f"  (lag sample failed: {exc})", file=sys.stderr)

    def stop(self) -> list[tuple[float, float]]:
        self.stopping.set()
        self.join(timeout=10)
        return self.points


def sustained_rate(b: Bench, producer: Producer, steps: list[float], seconds: float) -> tuple[float, list[dict]]:
    """Highest step rate whose lag did not keep growing (0 if even the first one grew)."""
    sustained = 0.0
    results = []
    for rate in steps:
        sampler = LagSampler(b)
        sampler.start()
        producer.run(rate, seconds, label=f"step{rate:g}")
        points = sampler.stop()
        second_half = [p for p in points if p[0] >= seconds / 2]
        growth = slope(second_half)
        drained = wait_for(lambda: b.lag() == 0, timeout=max(60.0, 2 * seconds), every=1.0)
        growing = growth > max(1.0, 0.05 * rate) or not drained
        peak = max((p[1] for p in points), default=0.0)
        results.append({"rate": rate, "lag_growth_per_s": round(growth, 2), "peak_lag": peak, "drained": drained})
        print(
            f"  step {rate:g}/s: lag growth {growth:+.2f} msg/s over the second half, peak lag {peak:.0f}, "
            f"{'drained' if drained else 'NOT drained'} -> {'falls behind' if growing else 'keeps up'}"
        )
        if growing:
            break
        sustained = rate
    return sustained, results


def cycle_overhead(b: Bench, after_cycle: int) -> dict[str, float | None]:
    """Cycle seconds vs records read: the intercept is a cycle's fixed cost, the slope the cost per record."""
    cycles = [(s, r) for n, s, r in b.cycles() if n > after_cycle]
    busy = [(float(r), s) for s, r in cycles if r > 0]
    idle = [s for s, r in cycles if r == 0]
    per_record = slope(busy) if len(busy) > 2 else None
    fixed = None
    if per_record is not None:
        fixed = sum(s - per_record * r for r, s in busy) / len(busy)
    return {
        "cycles": len(cycles),
        "idle_cycle_s": round(sum(idle) / len(idle), 3) if idle else None,
        "fixed_s": round(fixed, 3) if fixed is not None else None,
        "per_article_ms": round(per_record * 1000, 2) if per_record is not None else None,
        "mean_cycle_s": round(sum(s for s, _ in cycles) / len(cycles), 3) if cycles else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="articles/s in the latency phase (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the latency phase (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="the job's --interval (default 0.5 s)")
    parser.add_argument("--fast", action="store_true", help="no statistical NER (gazetteer and rules only)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up articles, not measured (default 20)")
    parser.add_argument("--steps", default="20,30,40,60,80,120,160,240", help="rates of the sustained-rate search")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="length of each rate step (default 30)")
    parser.add_argument("--no-sustained", action="store_true", help="skip the sustained-rate search")
    parser.add_argument("--count", type=int, default=2000, help="corpus articles (default 2000)")
    parser.add_argument("--words", type=int, default=800, help="words per article (default 800)")
    parser.add_argument("--job-log", type=Path, help="keep the job's log (its cycle summaries) here")
    parser.add_argument(
        "--alert-every-article",
        action="store_true",
        help="add a subscription matching every article (default: the shipped subscriptions, ~half the corpus)",
    )
    args = parser.parse_args(argv)

    print_machine()
    load_before = load_average()
    print(f"load average before: {load_before} (the machine is shared: other work slows the job down)")
    corpus_path = build_corpus(args.count, args.words)
    mode = "fast (no NER)" if args.fast else "spaCy NER + gazetteer"
    with bench(args.fast, args.interval, alert_every_article=args.alert_every_article) as b:
        print(f"job: newswatch {' '.join(b.command)}   (enrichment: {mode}; broker: noida-db, started here)")
        print(f"corpus: {corpus_path} ({args.count} x ~{args.words} words); topic {b.topic}, {b.partitions} partitions")
        listener = AlertListener(b)
        listener.start()
        producer = Producer(b, Corpus(corpus_path, b.run_id))
        try:
            took = warm_up(b, producer, listener, args.warmup)
            warm_cycles = max((n for n, _, _ in b.cycles()), default=0)
            print(f"warm-up: {args.warmup} articles indexed in {took:.1f}s (model loading, first cycles)")
            print(f"latency phase: {args.rate:g} articles/s for {args.seconds:g}s ...")
            result = measure(b, producer, listener, args.rate, args.seconds)
            overhead = cycle_overhead(b, warm_cycles)
            idx, alr = result["produce_to_indexed_s"], result["produce_to_alert_s"]
            print(
                f"  {result['articles']} articles: indexed {result['indexed']}, with an alert "
                f"{result['alerting_articles']}{'' if result['complete'] else ' (INCOMPLETE after 600 s)'}"
            )
            print(f"  produce -> indexed  p50 {idx['p50']}s  p95 {idx['p95']}s  p99 {idx['p99']}s  max {idx['max']}s")  # type: ignore[index]
            print(f"  produce -> alert    p50 {alr['p50']}s  p95 {alr['p95']}s  p99 {alr['p99']}s  max {alr['max']}s")  # type: ignore[index]
            print(f"  job CPU per article: {result['job_cpu_ms_per_article']} ms (CPU time, whatever else runs)")
            print(
                f"  cycles: {overhead['cycles']}, mean {overhead['mean_cycle_s']}s; fixed cost per cycle "
                f"{overhead['fixed_s']}s, per article {overhead['per_article_ms']} ms; idle cycle "
                f"{overhead['idle_cycle_s']}s; interval {args.interval:g}s"
            )
            sustained, steps = None, []
            if not args.no_sustained:
                print(f"sustained-rate search: steps {args.steps} articles/s, {args.step_seconds:g}s each ...")
                rates = [float(r) for r in args.steps.split(",") if r.strip()]
                sustained, steps = sustained_rate(b, producer, rates, args.step_seconds)
                top = " (the highest step: more may be sustained)" if sustained == rates[-1] else ""
                print(f"  sustained rate: {sustained:g} articles/s{top}")
        finally:
            producer.close()
            listener.stop()
            if args.job_log:
                args.job_log.write_bytes(b.job_log.read_bytes())
    load_after = load_average()
    print(f"load average after: {load_after}")
    p95 = result["produce_to_alert_s"]["p95"]  # type: ignore[index]
    target = p95 is not None and p95 < 5.0 and bool(result["complete"])
    print(f"target produce->alert p95 < 5 s at {args.rate:g}/s: {'met' if target else 'NOT met'}")
    finish(
        {
            "mode": "fast" if args.fast else "ner",
            "rate": args.rate,
            "seconds": args.seconds,
            "interval_s": args.interval,
            "words_per_article": args.words,
            **{k: v for k, v in result.items() if k not in ("produce_to_indexed_s", "produce_to_alert_s")},
            "produce_to_indexed_s": result["produce_to_indexed_s"],
            "produce_to_alert_s": result["produce_to_alert_s"],
            "cycle": overhead,
            "sustained_rate": sustained,
            "steps": steps,
            "target_p95_alert_under_5s": target,
            "load_average": {"before": load_before, "after": load_after},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
