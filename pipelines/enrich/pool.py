"""Enrichment in worker processes, so a job uses every core.

Beam's local runner runs one Python worker (and `--direct_num_workers > 1` loses data here), and
enrichment is CPU-bound Python holding the GIL, so a single process uses one core. `EnrichPool`
forks worker processes *after* the model and gazetteers have loaded: the workers share that memory
copy-on-write (the parent freezes its objects out of the garbage collector first, so collections
do not dirty the shared pages) and start in milliseconds. Batches of RawArticles go in, Articles
come out, in order, as plain tuples rather than pickled pydantic models (pickling a model with
seventy entities costs more than enriching it in fast mode).

- Per-article failures come back as `EnrichFailure` (the caller dead-letters them); a worker that
  dies (killed, out of memory) breaks only its batches: they are retried article by article in a
  fresh pool, and an article that kills a worker again is reported as a failure, not retried forever.
- Workers ignore SIGINT (the parent decides when to stop), die with their parent (Linux
  PR_SET_PDEATHSIG) and are shut down by `close()`, when the last user releases a shared pool, and
  at interpreter exit.
- `NEWSWATCH_ENRICH_WORKERS` (default: the CPUs this process may use) sets the size; 0 or 1 means
  no pool (enrichment in the calling process). Without the `fork` start method (Windows) there is
  no pool either: spawned workers would each load the model again.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from pipelines.enrich import EnrichConfig, Enricher, shared_enricher
from pipelines.enrich.construct import trusted
from schemas import Article, Entity, Place, RawArticle, TopicTag

log = logging.getLogger(__name__)

WORKERS_ENV = "NEWSWATCH_ENRICH_WORKERS"


@dataclass(frozen=True)
class EnrichFailure:
    """An article enrichment raised on: the reason, for its dead letter."""

    reason: str


Outcome = Article | EnrichFailure


def default_workers() -> int:
    """NEWSWATCH_ENRICH_WORKERS, else the number of CPUs this process may run on."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured:
        try:
            return max(0, int(configured))
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be an integer, got {configured!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pool_supported() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


# --- what crosses the process boundary: plain tuples, rebuilt without re-validation ---------------

_RAW_FIELDS = tuple(RawArticle.model_fields)
_ARTICLE_FIELDS = tuple(Article.model_fields)
_ENTITY_FIELDS = tuple(Entity.model_fields)
_PLACE_FIELDS = tuple(Place.model_fields)
_TOPIC_FIELDS = tuple(TopicTag.model_fields)
_NESTED = {"entities": _ENTITY_FIELDS, "places": _PLACE_FIELDS, "topics": _TOPIC_FIELDS}


def pack_raw(raw: RawArticle) -> tuple[Any, ...]:
    return (tuple(raw.__dict__[name] for name in _RAW_FIELDS), raw.model_fields_set)


def unpack_raw(packed: tuple[Any, ...]) -> RawArticle:
    values, fields_set = packed
    return trusted(RawArticle, dict(zip(_RAW_FIELDS, values, strict=True)), fields_set)


def pack_article(article: Article) -> tuple[Any, ...]:
    values = []
    for name in _ARTICLE_FIELDS:
        value = article.__dict__[name]
        if name in _NESTED:
            fields = _NESTED[name]
            value = [(tuple(item.__dict__[f] for f in fields), tuple(item.model_fields_set)) for item in value]
        values.append(value)
    return tuple(values), tuple(article.model_fields_set)


_NESTED_CLASSES: dict[str, Any] = {"entities": Entity, "places": Place, "topics": TopicTag}


def unpack_article(packed: tuple[Any, ...]) -> Article:
    values, fields_set = packed
    rebuilt = []
    for name, value in zip(_ARTICLE_FIELDS, values, strict=True):
        if name in _NESTED:
            cls, fields = _NESTED_CLASSES[name], _NESTED[name]
            value = [trusted(cls, dict(zip(fields, item, strict=True)), item_set) for item, item_set in value]
        rebuilt.append(value)
    return trusted(Article, dict(zip(_ARTICLE_FIELDS, rebuilt, strict=True)), fields_set)


# --- the worker side -------------------------------------------------------------------------------

_worker_enricher: Enricher | None = None


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this worker when its parent dies, however it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _init_worker(config: EnrichConfig, parent: int) -> None:
    global _worker_enricher
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    _worker_enricher = shared_enricher(config)  # inherited through fork: nothing loads here
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)  # a worker only enriches: fewer young-generation collections


def _enrich_packed(packed: list[tuple[Any, ...]]) -> list[tuple[str, Any]]:
    """Worker: a batch of packed RawArticles -> per article ("ok", packed Article) or ("error", reason)."""
    assert _worker_enricher is not None, "pool worker not initialised"
    raws = [unpack_raw(p) for p in packed]
    try:
        return [("ok", pack_article(a)) for a in _worker_enricher.enrich_batch(raws)]
    except Exception:  # one bad article must not sink its batch: one by one
        results: list[tuple[str, Any]] = []
        for raw in raws:
            try:
                results.append(("ok", pack_article(_worker_enricher.enrich(raw))))
            except Exception as exc:
                results.append(("error", f"{type(exc).__name__}: {exc}"))
        return results


def _unpack_results(results: list[tuple[str, Any]]) -> list[Outcome]:
    return [unpack_article(value) if kind == "ok" else EnrichFailure(value) for kind, value in results]


# --- the parent side -------------------------------------------------------------------------------


class EnrichPool:
    """Worker processes forked from a process that holds the loaded Enricher for `config`."""

    def __init__(self, config: EnrichConfig, workers: int) -> None:
        if workers < 1:
            raise ValueError("an EnrichPool needs at least one worker")
        if not pool_supported():
            raise RuntimeError("enrichment workers need the 'fork' start method (Linux, macOS)")
        self.config = config
        self.workers = workers
        self.enricher = shared_enricher(config)  # loaded here, before the fork, and shared with the workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        _live_pools.add(self)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the enrichment pool is closed")
            if self._executor is None:
                gc.collect()
                gc.freeze()  # the loaded resources stay out of collections: shared pages stay shared
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_init_worker,
                    initargs=(self.config, os.getpid()),
                )
            return self._executor

    def submit(self, raws: Sequence[RawArticle]) -> Future[list[tuple[str, Any]]]:
        """Start enriching a batch in a worker; `result(future)` turns its answer into Articles."""
        self._reset_if_broken()
        return self._pool().submit(_enrich_packed, [pack_raw(r) for r in raws])

    def result(self, future: Future[list[tuple[str, Any]]], raws: Sequence[RawArticle]) -> list[Outcome]:
        """The outcome of a submitted batch, one per article; a batch whose worker died is retried
        article by article in a fresh pool."""
        try:
            return _unpack_results(future.result())
        except BrokenProcessPool as exc:
            log.warning("an enrichment worker died (%s); retrying its batch of %d article(s)", exc, len(raws))
            return self._retry_alone(raws)

    def enrich_batch(self, raws: Sequence[RawArticle]) -> list[Outcome]:
        """One batch, split over the workers, waited for."""
        if not raws:
            return []
        size = -(-len(raws) // self.workers)
        chunks = [raws[i : i + size] for i in range(0, len(raws), size)]
        futures = [self.submit(chunk) for chunk in chunks]
        outcomes: list[Outcome] = []
        for chunk, future in zip(chunks, futures, strict=True):
            outcomes += self.result(future, chunk)
        return outcomes

    def _retry_alone(self, raws: Sequence[RawArticle]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for raw in raws:
            self._reset_if_broken()
            try:
                outcomes += _unpack_results(self._pool().submit(_enrich_packed, [pack_raw(raw)]).result())
            except BrokenProcessPool as exc:
                log.error("article %s killed an enrichment worker; dead-lettered", raw.id)
                outcomes.append(EnrichFailure(f"enrichment worker died: {exc}"))
        self._reset_if_broken()
        return outcomes

    def _reset_if_broken(self) -> None:
        with self._lock:
            executor = self._executor
            if executor is not None and getattr(executor, "_broken", False):
                executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def close(self) -> None:
        """Stop the workers (waiting for the batches they are on); idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        _live_pools.discard(self)

    def __enter__(self) -> EnrichPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def enrich_in_process(enricher: Enricher, raws: Sequence[RawArticle]) -> list[Outcome]:
    """The batch in this process, with the same per-article failure handling as the workers."""
    try:
        return list(enricher.enrich_batch(raws))
    except Exception:
        log.warning("enrichment of a batch of %d failed; retrying article by article", len(raws))
    outcomes: list[Outcome] = []
    for raw in raws:
        try:
            outcomes.append(enricher.enrich(raw))
        except Exception as exc:
            outcomes.append(EnrichFailure(f"{type(exc).__name__}: {exc}"))
    return outcomes


class BatchEnricher:
    """What a Beam DoFn or a loop uses: articles added one by one go to the workers in chunks as
    they come, outcomes collected in order, through the shared pool when there is one (up to two
    chunks per worker in flight, so the caller's own work on earlier chunks overlaps the workers'),
    else in the calling process.

    Chunks are `batch_size / workers` articles, and `flush` splits what is left over every worker:
    a small cycle (a few dozen articles) keeps every core busy instead of sending one batch to one
    worker. Each article carries a `tag` the caller gets back with its outcome (a DoFn keeps the
    window and timestamp of the element there)."""

    def __init__(self, config: EnrichConfig, workers: int | None = None) -> None:
        self.enricher = shared_enricher(config)
        self.pool = acquire_pool(config, workers)
        self.workers = self.pool.workers if self.pool is not None else 1
        self.chunk_size = max(1, config.batch_size // self.workers)
        self.in_flight = 2 * self.workers if self.pool is not None else 1
        self._buffer: list[RawArticle] = []
        self._tags: list[Any] = []
        self._pending: deque[tuple[list[Any], Sequence[RawArticle], Any]] = deque()

    def add(self, raw: RawArticle, tag: Any = None) -> Iterator[tuple[list[Any], Sequence[RawArticle], list[Outcome]]]:
        """Buffer one article; yields (tags, articles, outcomes) of the chunks that are done."""
        self._buffer.append(raw)
        self._tags.append(tag)
        if len(self._buffer) >= self.chunk_size:
            self._submit(self._buffer, self._tags)
            self._buffer, self._tags = [], []
        yield from self._ready()

    def flush(self) -> Iterator[tuple[list[Any], Sequence[RawArticle], list[Outcome]]]:
        """Everything added so far, the rest split over the workers; waits for all of it."""
        if self._buffer:
            size = -(-len(self._buffer) // self.workers)
            for start in range(0, len(self._buffer), size):
                self._submit(self._buffer[start : start + size], self._tags[start : start + size])
            self._buffer, self._tags = [], []
        while self._pending:
            yield self._collect(*self._pending.popleft())

    def map(self, batches: Iterable[Sequence[RawArticle]]) -> Iterator[tuple[Sequence[RawArticle], list[Outcome]]]:
        """Pipelined: (chunk, outcomes) in input order."""
        for batch in batches:
            for raw in batch:
                for _, done, outcomes in self.add(raw):
                    yield done, outcomes
        for _, done, outcomes in self.flush():
            yield done, outcomes

    def _submit(self, batch: list[RawArticle], tags: list[Any]) -> None:
        if self.pool is None:
            self._pending.append((tags, batch, enrich_in_process(self.enricher, batch)))
        else:
            self._pending.append((tags, batch, self.pool.submit(batch)))

    def _ready(self) -> Iterator[tuple[list[Any], Sequence[RawArticle], list[Outcome]]]:
        """Outcomes of the oldest chunks: those already done, and enough to keep at most
        `in_flight` chunks pending."""
        while self._pending and (len(self._pending) > self.in_flight or self._done(self._pending[0][2])):
            yield self._collect(*self._pending.popleft())

    @staticmethod
    def _done(pending: Any) -> bool:
        return not isinstance(pending, Future) or pending.done()

    def _collect(
        self, tags: list[Any], batch: Sequence[RawArticle], pending: Any
    ) -> tuple[list[Any], Sequence[RawArticle], list[Outcome]]:
        if isinstance(pending, Future):
            assert self.pool is not None
            return tags, batch, self.pool.result(pending, batch)
        return tags, batch, pending

    def close(self) -> None:
        """Release the pool (the last user stops its workers); pending chunks are abandoned."""
        self._pending.clear()
        self._buffer, self._tags = [], []
        pool, self.pool = self.pool, None
        release_pool(pool)

    def __enter__(self) -> BatchEnricher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- shared pools: one per config and process, closed when the last user releases it --------------

_live_pools: set[EnrichPool] = set()
_shared: dict[tuple[EnrichConfig, int], tuple[EnrichPool, int]] = {}
_shared_lock = threading.Lock()


def acquire_pool(config: EnrichConfig, workers: int | None = None) -> EnrichPool | None:
    """The process's pool for `config` (started on first use), or None when enrichment should run in
    the calling process (one worker configured, or no fork). Pair with `release_pool`."""
    count = default_workers() if workers is None else workers
    if count <= 1 or not pool_supported():
        return None
    key = (config, count)
    with _shared_lock:
        pool, users = _shared.get(key, (None, 0))
        if pool is None:
            pool = EnrichPool(config, count)
        _shared[key] = (pool, users + 1)
        return pool


def release_pool(pool: EnrichPool | None) -> None:
    """One user less; the last one closes the pool (its workers exit)."""
    if pool is None:
        return
    with _shared_lock:
        for key, (shared, users) in list(_shared.items()):
            if shared is pool:
                if users > 1:
                    _shared[key] = (shared, users - 1)
                    return
                del _shared[key]
                break
    pool.close()


@atexit.register
def close_all_pools() -> None:
    """Every pool of this process, at exit (and from signal handlers that end the process)."""
    with _shared_lock:
        _shared.clear()
    for pool in list(_live_pools):
        pool.close()
