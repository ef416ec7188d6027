"""Indexing throughput of the Elasticsearch store: bulk batches (count and byte bounded) against the
one-request-per-document baseline, on the same server in the same run.

    python benchmarks/es_bulk.py [--docs 2000] [--es-url http://host:9200]

Without --es-url it starts its own noida-db (the test server). Prints figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.elasticsearch import ElasticsearchStore
from connectors.es_documents import article_document
from tests.es_support import apply_setup, es_config, rich_article, unique_prefix
from tests.servers import NoidaServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--baseline-docs", type=int, default=300, help="documents for the one-by-one baseline")
    parser.add_argument("--es-url")
    args = parser.parse_args()
    server = None
    url = args.es_url
    if not url:
        server = NoidaServer(Path(tempfile.mkdtemp()), ("elasticsearch",)).start()
        url = server.es_url
    try:
        articles = [rich_article(n).model_copy(update={"id": f"bench-{n}"}) for n in range(args.docs)]
        prefix = unique_prefix()
        apply_setup(url, prefix)
        store = ElasticsearchStore(es_config(url, prefix, max_retries=5, max_backoff=2.0))
        started = time.perf_counter()
        for start in range(0, len(articles), 200):  # the pipeline's batches (PipelineConfig.write_batch_size)
            store.write_articles(articles[start : start + 200])
        bulk_seconds = time.perf_counter() - started

        baseline = articles[: args.baseline_docs]
        index = store.layout.write_alias("articles")
        started = time.perf_counter()
        for article in baseline:
            store.client.index(index=index, id=article.id, document=article_document(article), require_alias=True)
        single_seconds = time.perf_counter() - started
        store.close()
    finally:
        if server:
            server.stop()
    bulk_rate = len(articles) / bulk_seconds
    single_rate = len(baseline) / single_seconds
    print(f"bulk:       {len(articles)} docs in {bulk_seconds:.2f}s = {bulk_rate:.0f} docs/s")
    print(f"one-by-one: {len(baseline)} docs in {single_seconds:.2f}s = {single_rate:.0f} docs/s (baseline)")
    print(f"speed-up:   {bulk_rate / single_rate:.1f}x")
    print(
        json.dumps(
            {
                "benchmark": "es_bulk",
                "docs": len(articles),
                "bulk_docs_per_s": round(bulk_rate, 1),
                "baseline_docs_per_s": round(single_rate, 1),
                "speedup": round(bulk_rate / single_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
