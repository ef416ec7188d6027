"""Kibana saved objects (deploy/kibana/newswatch.ndjson) and `newswatch kibana import`.

No Kibana here: the NDJSON is checked by structure (every reference resolves, every field a
visualization uses exists in the index mapping with a type it can aggregate), and the import is
checked against a local HTTP server that records what it receives and answers like Kibana."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.es_setup import load_templates
from connectors.kibana import parse_ndjson, with_index_prefix
from deploy import ELASTICSEARCH_DIR, KIBANA_SAVED_OBJECTS
from deploy.kibana.saved_objects import saved_objects, to_ndjson
from tests.conftest import run_cli

OBJECTS = parse_ndjson(KIBANA_SAVED_OBJECTS.read_text(encoding="utf-8"))
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}
TEMPLATES = load_templates(ELASTICSEARCH_DIR, "newswatch")
STOCK_TYPES = {"index-pattern", "lens", "map", "search", "dashboard", "visualization"}
STOCK_LENS = {"lnsXY", "lnsMetric", "lnsDatatable", "lnsPie", "lnsHeatmap", "lnsGauge", "lnsTagcloud"}
AGGREGATABLE = {"keyword", "date", "float", "double", "long", "integer", "geo_point", "boolean"}


def field_types(kind: str) -> dict[str, str]:
    """Dotted field -> mapping type (sub-fields like title.keyword included) of one index kind."""
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], prefix: str) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            out[path] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{path}.{sub}"] = sub_spec["type"]
            walk(spec.get("properties", {}), f"{path}.")

    walk(TEMPLATES.mappings(kind)["properties"], "")  # type: ignore[arg-type]
    return out


FIELDS = {"newswatch-articles": field_types("articles"), "newswatch-alerts": field_types("alerts")}


def view_of(obj: dict[str, Any], ref_name: str) -> str:
    ref = next(r for r in obj["references"] if r["name"] == ref_name)
    assert ref["type"] == "index-pattern"
    return BY_KEY[("index-pattern", ref["id"])]["attributes"]["title"]


def test_the_ndjson_is_what_the_generator_writes() -> None:
    """deploy/kibana/saved_objects.py is the source; regenerate the file after changing it."""
    assert KIBANA_SAVED_OBJECTS.read_text(encoding="utf-8") == to_ndjson(saved_objects())


def test_objects_are_stock_kibana_types_with_unique_ids() -> None:
    assert len(BY_KEY) == len(OBJECTS)
    assert {o["type"] for o in OBJECTS} <= STOCK_TYPES
    for obj in OBJECTS:
        assert obj["coreMigrationVersion"].startswith("8.") and obj["typeMigrationVersion"]
        assert obj["attributes"]["title"]
        if obj["type"] == "lens":
            assert obj["attributes"]["visualizationType"] in STOCK_LENS


def test_every_reference_resolves_to_an_object_in_the_file() -> None:
    for obj in OBJECTS:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in BY_KEY, f"{obj['id']}: dangling reference {ref}"


def test_data_views_point_at_the_read_aliases_with_a_time_field() -> None:
    views = {o["attributes"]["title"]: o["attributes"] for o in OBJECTS if o["type"] == "index-pattern"}
    assert set(views) == {"newswatch-articles", "newswatch-alerts"}
    for title, attributes in views.items():
        assert FIELDS[title][attributes["timeFieldName"]] == "date"
        formats = json.loads(attributes["fieldFormatMap"])
        assert formats["url"]["id"] == "url"  # links in Discover and the alerts table


def test_lens_columns_use_fields_the_mapping_has() -> None:
    lens = [o for o in OBJECTS if o["type"] == "lens"]
    assert len(lens) >= 5
    for obj in lens:
        layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            fields = FIELDS[view_of(obj, f"indexpattern-datasource-layer-{layer_id}")]
            assert set(layer["columnOrder"]) == set(layer["columns"])
            for column in layer["columns"].values():
                source = column["sourceField"]
                if source != "___records___":
                    assert fields.get(source) in AGGREGATABLE, f"{obj['id']}: {source} is not aggregatable"
        visualization = obj["attributes"]["state"]["visualization"]
        for layer in visualization.get("layers", [visualization]):
            accessors = [layer.get("xAccessor"), layer.get("splitAccessor"), layer.get("metricAccessor")]
            accessors += layer.get("accessors", [])
            columns = layers[layer["layerId"]]["columns"]
            assert all(a in columns for a in accessors if a), f"{obj['id']}: accessor without a column"


def test_dashboard_has_the_panels_analysts_need() -> None:
    (board,) = [o for o in OBJECTS if o["type"] == "dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    refs = {r["name"]: (r["type"], r["id"]) for r in board["references"]}
    shown = []
    for panel in panels:
        assert panel["panelRefName"] in refs, panel
        kind, object_id = refs[panel["panelRefName"]]
        assert panel["type"] == kind
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"] and grid["x"] + grid["w"] <= 48
        shown.append(BY_KEY[(kind, object_id)])
    columns = {
        c["sourceField"]
        for o in shown
        if o["type"] == "lens"
        for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
        for c in layer["columns"].values()
    }
    assert {"topics.id", "@timestamp", "countries", "people", "organizations"} <= columns
    assert {o["type"] for o in shown} >= {"lens", "map", "search"}
    # no two panels overlap
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridData"]["x"], p["gridData"]["x"] + p["gridData"]["w"])
        for y in range(p["gridData"]["y"], p["gridData"]["y"] + p["gridData"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_the_map_plots_places_location() -> None:
    (places,) = [o for o in OBJECTS if o["type"] == "map"]
    layers = json.loads(places["attributes"]["layerListJSON"])
    es_layers = [layer for layer in layers if layer["sourceDescriptor"]["type"] == "ES_SEARCH"]
    assert len(es_layers) == 1
    source = es_layers[0]["sourceDescriptor"]
    fields = FIELDS[view_of(places, source["indexPatternRefName"])]
    assert fields[source["geoField"]] == "geo_point"
    assert all(f in fields for f in source["tooltipProperties"])
    assert layers.index(es_layers[0]) == int(source["indexPatternRefName"].split("_")[1])
    json.loads(places["attributes"]["mapStateJSON"])


def test_the_alerts_table_shows_linked_alerts_newest_first() -> None:
    (search,) = [o for o in OBJECTS if o["type"] == "search"]
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    fields = FIELDS[view_of(search, source["indexRefName"])]
    assert all(c in fields for c in search["attributes"]["columns"])
    assert {"url", "status"} <= set(search["attributes"]["columns"])
    assert search["attributes"]["sort"] == [["created_at", "desc"]]


def test_the_alerts_metric_leaves_out_suppressed_and_cancelled_alerts() -> None:
    """Like `newswatch stats`: near-duplicates that were suppressed and cancelled alerts told nobody."""
    (metric,) = [o for o in OBJECTS if o["id"] == "newswatch-alerts-count"]
    assert view_of(metric, "indexpattern-datasource-layer-layer-0") == "newswatch-alerts"
    query = metric["attributes"]["state"]["query"]
    assert query == {"query": "not status : (suppressed or cancelled)", "language": "kuery"}
    assert FIELDS["newswatch-alerts"]["status"] == "keyword"


def test_data_views_follow_another_index_prefix() -> None:
    moved = parse_ndjson(with_index_prefix(KIBANA_SAVED_OBJECTS.read_text(), "acme"))
    titles = sorted(o["attributes"]["title"] for o in moved if o["type"] == "index-pattern")
    assert titles == ["acme-alerts", "acme-articles"]
    assert [o["id"] for o in moved] == [o["id"] for o in OBJECTS]  # ids, and so references, unchanged


# --- the import command, against a local server that answers like Kibana ---


class FakeKibana:
    """Records each request; answers from a queue of (status, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, answer = recorder.answers.pop(0) if recorder.answers else (200, {"success": True})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    server = FakeKibana([])
    yield server
    server.close()


def uploaded_file(request: dict[str, Any]) -> tuple[str, str]:
    """(filename, text) of the multipart `file` field."""
    head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request["body"])
    (part,) = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
    return part.get_filename(), part.get_payload(decode=True).decode()


def test_import_posts_the_ndjson_the_way_kibana_wants(kibana: FakeKibana) -> None:
    kibana.answers.append((200, {"success": True, "successCount": len(OBJECTS), "errors": []}))
    result = run_cli(
        "kibana",
        "import",
        "--kibana-url",
        kibana.url,
        env={"NEWSWATCH_ES_USERNAME": "analyst", "NEWSWATCH_ES_PASSWORD": "pa55-word"},
    )
    assert result.returncode == 0, result.stderr
    assert f"imported {len(OBJECTS)} saved object(s)" in result.stdout
    (request,) = kibana.requests
    url = urlsplit(request["path"])
    assert url.path == "/api/saved_objects/_import" and parse_qs(url.query) == {"overwrite": ["true"]}
    assert request["headers"]["kbn-xsrf"]
    assert request["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"analyst:pa55-word").decode()
    filename, text = uploaded_file(request)
    assert filename.endswith(".ndjson")
    assert text == KIBANA_SAVED_OBJECTS.read_text(encoding="utf-8")
    assert "pa55-word" not in result.stdout + result.stderr


def test_import_into_a_space_with_an_api_key_and_another_prefix(kibana: FakeKibana) -> None:
    result = run_cli(
        "kibana",
        "import",
        "--space",
        "analysts",
        "--es-index-prefix",
        "acme",
        "--json",
        env={"NEWSWATCH_KIBANA_URL": kibana.url, "NEWSWATCH_ES_API_KEY": "a2V5LWlk"},
    )
    assert result.returncode == 0, result.stderr
    (request,) = kibana.requests
    assert urlsplit(request["path"]).path == "/s/analysts/api/saved_objects/_import"
    assert request["headers"]["Authorization"] == "ApiKey a2V5LWlk"
    _, text = uploaded_file(request)
    assert "acme-articles" in text and '"title":"newswatch-articles"' not in text
    assert json.loads(result.stdout)["success"] is True


def test_import_waits_for_a_starting_kibana_and_reports_errors(kibana: FakeKibana) -> None:
    kibana.answers += [
        (503, {"message": "Kibana server is not ready yet"}),
        (
            200,
            {
                "success": False,
                "successCount": 10,
                "errors": [{"id": "newswatch-places-map", "type": "map", "title": "m", "error": {"type": "unknown"}}],
            },
        ),
    ]
    result = run_cli("kibana", "import", "--kibana-url", kibana.url, "--wait", "30")
    assert len(kibana.requests) == 2
    assert result.returncode == 1
    assert "map newswatch-places-map" in result.stdout


def test_import_refused_is_an_error(kibana: FakeKibana) -> None:
    kibana.answers.append((401, {"message": "Unauthorized"}))
    result = run_cli("kibana", "import", "--kibana-url", kibana.url)
    assert result.returncode == 1 and "401" in result.stderr
