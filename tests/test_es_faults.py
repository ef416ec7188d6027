"""Retries, backoff and failure modes of the Elasticsearch store.

Requests go to the real noida-db server through an injected transport node. The node forwards
everything, except the faults a healthy server cannot be made to show on demand (per-item 429,
a 503 or 413 answer, 401, a response lost after the write happened), which it scripts. A cluster that
is not there at all is the real thing: a port nobody listens on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from connectors.elasticsearch import ElasticsearchStore, make_client
from connectors.store import StoreUnavailable
from schemas import Alert
from tests.es_support import apply_setup, es_config, make_article
from tests.servers import NoidaServer, free_port


@dataclass
class Fault:
    match: str  # substring of the request target
    kind: Literal["items", "status", "lost"]
    statuses: dict[int, int] = field(default_factory=dict)  # items: bulk position -> status to fake
    status: int = 503


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, list[str]]] = field(default_factory=list)  # method, target, bulk ids sent
    headers: list[dict[str, str]] = field(default_factory=list)

    def node_class(self) -> type[Urllib3HttpNode]:
        plan = self

        class ScriptedNode(Urllib3HttpNode):
            def perform_request(self, method: str, target: str, body: bytes | None = None, **kwargs: Any) -> Any:
                return plan.handle(self, super().perform_request, method, target, body, kwargs)

        return ScriptedNode

    def handle(
        self, node: Urllib3HttpNode, forward: Callable[..., Any], method: str, target: str, body: bytes | None, kw: Any
    ) -> Any:
        lines = body.decode().splitlines() if body and "/_bulk" in target else []
        ids = [json.loads(line)[next(iter(json.loads(line)))]["_id"] for line in lines[0::2]]
        self.requests.append((method, target, ids))
        sent = {**dict(node._headers), **dict(kw.get("headers") or {})}
        self.headers.append({k.lower(): v for k, v in sent.items()})
        fault = next((f for f in self.faults if f.match in target), None)
        if fault is None:
            return forward(method, target, body=body, **kw)
        self.faults.remove(fault)
        if fault.kind == "status":
            error = {"type": "fake_error", "reason": f"scripted {fault.status}"}
            return _response(node, fault.status, {"error": {"root_cause": [error], **error}, "status": fault.status})
        if fault.kind == "lost":
            forward(method, target, body=body, **kw)
            raise ConnectionError("connection reset after the request was sent (scripted)")
        # items: forward the others, fake an error for the chosen positions, merge in order
        keep = [i for i in range(len(ids)) if i not in fault.statuses]
        forwarded: list[dict[str, Any]] = []
        if keep:
            sub_body = "".join(lines[2 * i] + "\n" + lines[2 * i + 1] + "\n" for i in keep).encode()
            forwarded = json.loads(forward(method, target, body=sub_body, **kw).body)["items"]
        items: list[dict[str, Any]] = []
        real = iter(forwarded)
        for position in range(len(ids)):
            if position in fault.statuses:
                status = fault.statuses[position]
                error = {"type": "es_rejected_execution_exception", "reason": "scripted rejection"}
                items.append({"index": {"_id": ids[position], "status": status, "error": error}})
            else:
                items.append(next(real))
        return _response(node, 200, {"took": 1, "errors": True, "items": items})


def _response(node: Urllib3HttpNode, status: int, body: dict[str, Any]) -> NodeApiResponse:
    headers = HttpHeaders({"content-type": "application/json", "x-elastic-product": "Elasticsearch"})
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=headers, duration=0.0, node=node.config)
    return NodeApiResponse(meta, json.dumps(body).encode())


def scripted_store(url: str, prefix: str, plan: FaultPlan, sleeps: list[float], **config: Any) -> ElasticsearchStore:
    cfg = es_config(url, prefix, **{"max_retries": 3, "max_backoff": 0.4, **config})
    return ElasticsearchStore(cfg, client=make_client(cfg, node_class=plan.node_class()), sleep=sleeps.append)


@pytest.fixture
def ready_prefix(noida_es: NoidaServer, es_prefix: str) -> str:
    apply_setup(noida_es.es_url, es_prefix)
    return es_prefix


def test_bulk_retries_only_the_throttled_items(
    noida_es: NoidaServer, ready_prefix: str, es_client: Elasticsearch
) -> None:
    articles = [make_article(n) for n in range(5)]
    plan = FaultPlan([Fault("/_bulk", "items", statuses={1: 429, 3: 429})])
    sleeps: list[float] = []
    with scripted_store(noida_es.es_url, ready_prefix, plan, sleeps) as store:
        outcomes = store.write_articles(articles)
    assert [o for _, o in outcomes] == ["new"] * 5
    bulks = [ids for _, target, ids in plan.requests if "/_bulk" in target]
    assert bulks == [[a.id for a in articles], [articles[1].id, articles[3].id]]  # only the failed two again
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.4
    es_client.indices.refresh(index=f"{ready_prefix}-articles")
    assert es_client.count(index=f"{ready_prefix}-articles")["count"] == 5


def test_a_5xx_answer_is_retried_whole(noida_es: NoidaServer, ready_prefix: str) -> None:
    plan = FaultPlan([Fault("/_bulk", "status", status=503)])
    sleeps: list[float] = []
    with scripted_store(noida_es.es_url, ready_prefix, plan, sleeps) as store:
        outcomes = store.write_articles([make_article(n) for n in range(3)])
    assert [o for _, o in outcomes] == ["new"] * 3
    assert [len(ids) for _, t, ids in plan.requests if "/_bulk" in t] == [3, 3]
    assert len(sleeps) == 1


def test_throttling_that_never_ends_fails_the_cycle_after_capped_backoff(
    noida_es: NoidaServer, ready_prefix: str
) -> None:
    plan = FaultPlan([Fault("/_bulk", "items", statuses={0: 429, 1: 429}) for _ in range(10)])
    sleeps: list[float] = []
    store = scripted_store(noida_es.es_url, ready_prefix, plan, sleeps, max_retries=6, max_backoff=2.0)
    with store, pytest.raises(StoreUnavailable, match="429"):
        store.write_articles([make_article(1), make_article(2)])
    assert len(sleeps) == 6  # (the sleeps are injected: no real waiting)
    assert all(s <= 2.0 for s in sleeps)  # capped
    assert sleeps[0] < 0.6 and sleeps[2] > 1.5 * sleeps[0] and sleeps[-1] > 1.5  # exponential up to the cap


def test_a_cluster_that_is_not_there_raises_store_unavailable(es_prefix: str) -> None:
    sleeps: list[float] = []
    cfg = es_config(f"http://127.0.0.1:{free_port()}", es_prefix, max_retries=3, max_backoff=0.2)
    with ElasticsearchStore(cfg, sleep=sleeps.append) as store:
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            store.write_articles([make_article(1)])
        with pytest.raises(StoreUnavailable):
            store.stored_hashes(["x"])
    assert len(sleeps) == 6  # 3 retries each, then give up


def test_an_alert_whose_response_was_lost_is_still_ours(noida_es: NoidaServer, ready_prefix: str) -> None:
    """The create reached the cluster but the answer did not; the retry gets 409 and must not
    mistake our own write for an earlier alert (that would drop the delivery)."""
    plan = FaultPlan([Fault("op_type=create", "lost")])
    sleeps: list[float] = []
    with scripted_store(noida_es.es_url, ready_prefix, plan, sleeps) as store:
        assert store.record_alert(Alert(subscription_id="s", article_id="a", title="t")) is True
        assert store.record_alert(Alert(subscription_id="s", article_id="a", title="t")) is False
    assert len(sleeps) == 1


def test_a_batch_of_alerts_whose_response_was_lost_is_still_ours(noida_es: NoidaServer, ready_prefix: str) -> None:
    """The same for record_alerts' bulk request: the resent creates get 409 for our own writes, which
    count as recorded; a pair that alerted before the batch still does not."""
    earlier = Alert(subscription_id="s", article_id="before", title="t")
    batch = [Alert(subscription_id="s", article_id=a, title="t") for a in ("x", "y")]
    with scripted_store(noida_es.es_url, ready_prefix, FaultPlan(), []) as store:
        assert store.record_alerts([earlier]) == [True]
    plan = FaultPlan([Fault("/_bulk", "lost")])
    sleeps: list[float] = []
    with scripted_store(noida_es.es_url, ready_prefix, plan, sleeps) as store:
        # the gate decides anew (a new created_at) for a pair it did not know had alerted
        again = earlier.model_copy(update={"created_at": earlier.created_at + timedelta(seconds=1)})
        assert store.record_alerts([*batch, again]) == [True, True, False]
        assert store.record_alerts(batch) == [False, False]
    assert len(sleeps) == 1


def test_refused_credentials_fail_at_once(noida_es: NoidaServer, ready_prefix: str) -> None:
    plan = FaultPlan([Fault("/_bulk", "status", status=401)])
    sleeps: list[float] = []
    store = scripted_store(noida_es.es_url, ready_prefix, plan, sleeps)
    with store, pytest.raises(StoreUnavailable, match="credentials"):
        store.write_articles([make_article(1)])
    assert sleeps == []


def test_a_request_too_large_for_the_cluster_is_split(noida_es: NoidaServer, ready_prefix: str) -> None:
    plan = FaultPlan([Fault("/_bulk", "status", status=413)])
    with scripted_store(noida_es.es_url, ready_prefix, plan, []) as store:
        outcomes = store.write_articles([make_article(n) for n in range(4)])
    assert [o for _, o in outcomes] == ["new"] * 4
    assert [len(ids) for _, t, ids in plan.requests if "/_bulk" in t] == [4, 2, 2]


def test_bulk_requests_are_bounded_by_count_and_bytes(noida_es: NoidaServer, ready_prefix: str) -> None:
    plan = FaultPlan()
    articles = [make_article(n, text="word " * (2000 if n == 4 else 20)) for n in range(9)]
    with scripted_store(noida_es.es_url, ready_prefix, plan, [], bulk_max_docs=3, bulk_max_bytes=6000) as store:
        outcomes = store.write_articles(articles)
    assert [o for _, o in outcomes] == ["new"] * 9
    sizes = [len(ids) for _, t, ids in plan.requests if "/_bulk" in t]
    assert max(sizes) <= 3 and sum(sizes) == 9
    assert [articles[4].id] in [ids for _, t, ids in plan.requests if "/_bulk" in t]  # the 10 KB one alone


def test_credentials_are_sent_but_never_logged(
    noida_es: NoidaServer, ready_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan([Fault("/_bulk", "status", status=503)])
    with scripted_store(
        noida_es.es_url, ready_prefix, plan, [], api_key=SecretStr("c2VjcmV0LWtleS12YWx1ZQ==")
    ) as store:
        store.write_articles([make_article(1)])
        assert "c2VjcmV0" not in repr(store.config)
    assert plan.headers[0]["authorization"] == "ApiKey c2VjcmV0LWtleS12YWx1ZQ=="
    assert "es retry" in caplog.text  # the retry was logged ...
    assert "c2VjcmV0" not in caplog.text  # ... and the key was not
