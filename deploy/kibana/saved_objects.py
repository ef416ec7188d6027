"""The Kibana saved objects in newswatch.ndjson, written as data (JSON-in-JSON is unreadable by hand).

Regenerate after a change:  python -m deploy.kibana.saved_objects > deploy/kibana/newswatch.ndjson
(tests/test_kibana.py fails when the file and this module disagree).

Only what a stock Kibana 8.x ships: data views, Lens (XY, metric), Maps (an Elasticsearch documents
layer on a geo_point) and a saved search, on one dashboard. The format is Kibana >= 8.9's: Lens
`formBased` layers, Maps 8.1+ layer type names, dashboard panels by reference (`panelRefName`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

PREFIX = "newswatch"
ARTICLES_VIEW = f"{PREFIX}-articles"
ALERTS_VIEW = f"{PREFIX}-alerts"
CORE_MIGRATION = "8.8.0"
# The last migration of each type this format already includes (Kibana runs only newer ones on import).
TYPE_MIGRATION = {
    "index-pattern": "7.11.0",
    "lens": "8.9.0",
    "map": "8.4.0",
    "search": "7.9.3",
    "dashboard": "8.7.0",
}
PANEL_VERSION = "8.9.0"
# Alerts a subscriber was or will be told about: not suppressed near-duplicates, not cancelled ones
# (an alert stored before alerts had a status has none, and was delivered: `not` keeps it).
ALERTS_TOLD = "not status : (suppressed or cancelled)"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _object(kind: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": object_id,
        "type": kind,
        "attributes": attributes,
        "references": references,
        "managed": False,
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": TYPE_MIGRATION[kind],
    }


def data_view(object_id: str, title: str, name: str, time_field: str, url_fields: list[str]) -> dict[str, Any]:
    """A data view on an alias; `url_fields` render as links (Discover, the saved search, tooltips)."""
    formats = {f: {"id": "url", "params": {"urlTemplate": None, "labelTemplate": None}} for f in url_fields}
    return _object(
        "index-pattern",
        object_id,
        {
            "title": title,
            "name": name,
            "timeFieldName": time_field,
            "fieldFormatMap": _dumps(formats),
            "fields": "[]",
            "fieldAttrs": "{}",
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "typeMeta": "{}",
        },
        [],
    )


def _count(label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "sourceField": "___records___",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }


def _terms(field: str, label: str, size: int, order_by: str, other: bool = False) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": other,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
        },
    }


def _date_histogram(field: str) -> dict[str, Any]:
    return {
        "label": "Published",
        "customLabel": True,
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def lens(
    object_id: str,
    title: str,
    description: str,
    view_id: str,
    visualization_type: str,
    columns: dict[str, dict[str, Any]],
    column_order: list[str],
    visualization: dict[str, Any],
    kql: str = "",
) -> dict[str, Any]:
    layer = "layer-0"
    return _object(
        "lens",
        object_id,
        {
            "title": title,
            "description": description,
            "visualizationType": visualization_type,
            "state": {
                "datasourceStates": {
                    "formBased": {
                        "layers": {layer: {"columns": columns, "columnOrder": column_order, "incompleteColumns": {}}}
                    }
                },
                "visualization": {**visualization, "layerId": layer, "layerType": "data"}
                if visualization_type == "lnsMetric"
                else visualization,
                "query": {"query": kql, "language": "kuery"},
                "filters": [],
                "internalReferences": [],
                "adHocDataViews": {},
            },
        },
        [{"type": "index-pattern", "id": view_id, "name": f"indexpattern-datasource-layer-{layer}"}],
    )


def _xy(series: str, x: str, accessors: list[str], split: str | None = None, legend: bool = True) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "layerId": "layer-0",
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": accessors,
    }
    if split:
        layer["splitAccessor"] = split
    return {
        "legend": {"isVisible": legend, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": series,
        "layers": [layer],
        "axisTitlesVisibilitySettings": {"x": False, "yLeft": True, "yRight": True},
        "tickLabelsVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "gridlinesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "yLeftExtent": {"mode": "full"},
        "yRightExtent": {"mode": "full"},
    }


def top_values(object_id: str, title: str, field: str, label: str, description: str) -> dict[str, Any]:
    return lens(
        object_id,
        title,
        description,
        ARTICLES_VIEW,
        "lnsXY",
        {"value": _terms(field, label, 15, "count"), "count": _count("Articles")},
        ["value", "count"],
        _xy("bar_horizontal", "value", ["count"], legend=False),
    )


def places_map() -> dict[str, Any]:
    layers = [
        {
            "id": "basemap",
            "type": "EMS_VECTOR_TILE",
            "label": None,
            "sourceDescriptor": {"type": "EMS_TMS", "isAutoSelect": True, "lightModeDefault": "road_map_desaturated"},
            "style": {"type": "EMS_VECTOR_TILE", "color": ""},
            "minZoom": 0,
            "maxZoom": 24,
            "alpha": 1,
            "visible": True,
            "includeInFitToBounds": True,
        },
        {
            "id": "article-places",
            "type": "GEOJSON_VECTOR",
            "label": "Places named in articles",
            "sourceDescriptor": {
                "id": "article-places-source",
                "type": "ES_SEARCH",
                "geoField": "places.location",
                "scalingType": "LIMIT",
                "filterByMapBounds": True,
                "tooltipProperties": ["title", "places.name", "countries", "topics.id", "published", "url"],
                "sortField": "@timestamp",
                "sortOrder": "desc",
                "topHitsSplitField": "",
                "topHitsSize": 1,
                "applyGlobalQuery": True,
                "applyGlobalTime": True,
                "applyForceRefresh": True,
                "indexPatternRefName": "layer_1_source_index_pattern",
            },
            "style": {
                "type": "VECTOR",
                "isTimeAware": True,
                "properties": {
                    "icon": {"type": "STATIC", "options": {"value": "marker"}},
                    "fillColor": {"type": "STATIC", "options": {"color": "#D36086"}},
                    "lineColor": {"type": "STATIC", "options": {"color": "#FFFFFF"}},
                    "lineWidth": {"type": "STATIC", "options": {"size": 1}},
                    "iconSize": {"type": "STATIC", "options": {"size": 6}},
                    "symbolizeAs": {"options": {"value": "circle"}},
                },
            },
            "minZoom": 0,
            "maxZoom": 24,
            "alpha": 0.8,
            "visible": True,
            "includeInFitToBounds": True,
            "joins": [],
        },
    ]
    state = {
        "zoom": 1.6,
        "center": {"lon": 25.0, "lat": 25.0},
        "timeFilters": {"from": "now-7y", "to": "now"},
        "refreshConfig": {"isPaused": True, "interval": 0},
        "query": {"query": "", "language": "kuery"},
        "filters": [],
        "settings": {
            "autoFitToDataBounds": False,
            "initialLocation": "LAST_SAVED_LOCATION",
            "showSpatialFilters": True,
        },
    }
    return _object(
        "map",
        f"{PREFIX}-places-map",
        {
            "title": "newswatch: places in the news",
            "description": "Every place an article names (places.location); the tooltip shows the article.",
            "layerListJSON": _dumps(layers),
            "mapStateJSON": _dumps(state),
            "uiStateJSON": _dumps({"isLayerTOCOpen": True, "openTOCDetails": []}),
        },
        [{"name": "layer_1_source_index_pattern", "type": "index-pattern", "id": ARTICLES_VIEW}],
    )


def recent_alerts() -> dict[str, Any]:
    search_source = {
        "query": {"query": "", "language": "kuery"},
        "filter": [],
        "highlightAll": True,
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return _object(
        "search",
        f"{PREFIX}-recent-alerts",
        {
            "title": "newswatch: recent alerts",
            "description": "Alerts newest first, in every status (suppressed near-duplicates and held digest "
            "alerts too); the url column links to the article.",
            "columns": ["subscription_name", "title", "url", "status", "countries", "topics.id"],
            "sort": [["created_at", "desc"]],
            "hits": 0,
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(search_source)},
        },
        [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": ALERTS_VIEW}],
    )


def dashboard(panels: list[tuple[dict[str, Any], tuple[int, int, int, int]]]) -> dict[str, Any]:
    """Panels by reference: panelRefName `panel_<i>` and a reference of that name (accepted by every
    8.x dashboard loader: older ones match the name exactly, newer ones fall back to it)."""
    panel_json = []
    references = []
    for number, (obj, (x, y, w, h)) in enumerate(panels):
        index = f"p{number}"
        panel_json.append(
            {
                "version": PANEL_VERSION,
                "type": obj["type"],
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"name": f"panel_{index}", "type": obj["type"], "id": obj["id"]})
    return _object(
        "dashboard",
        f"{PREFIX}-overview",
        {
            "title": "newswatch: news overview",
            "description": "What the news is about, where and who: articles over time by topic, top countries, "
            "people and organisations, a map of places, and the latest alerts.",
            "panelsJSON": _dumps(panel_json),
            "optionsJSON": _dumps(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "timeRestore": True,
            "timeFrom": "now-7y",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
            },
        },
        references,
    )


def saved_objects() -> list[dict[str, Any]]:
    articles = data_view(ARTICLES_VIEW, ARTICLES_VIEW, "newswatch articles", "@timestamp", ["url"])
    alerts = data_view(ALERTS_VIEW, ALERTS_VIEW, "newswatch alerts", "created_at", ["url"])
    article_count = lens(
        f"{PREFIX}-articles-count",
        "Articles",
        "Articles in the time range",
        ARTICLES_VIEW,
        "lnsMetric",
        {"count": _count("Articles")},
        ["count"],
        {"metricAccessor": "count"},
    )
    alert_count = lens(
        f"{PREFIX}-alerts-count",
        "Alerts",
        "Alerts raised in the time range: delivered, digested or held for a digest (as `newswatch stats` counts)",
        ALERTS_VIEW,
        "lnsMetric",
        {"count": _count("Alerts")},
        ["count"],
        {"metricAccessor": "count"},
        kql=ALERTS_TOLD,
    )
    over_time = lens(
        f"{PREFIX}-articles-over-time-by-topic",
        "Articles over time by topic",
        "Articles per interval, stacked by topic (an article with two topics counts in both)",
        ARTICLES_VIEW,
        "lnsXY",
        {
            "date": _date_histogram("@timestamp"),
            "topic": _terms("topics.id", "Topic", 10, "count", other=True),
            "count": _count("Articles"),
        },
        ["topic", "date", "count"],
        _xy("bar_stacked", "date", ["count"], split="topic"),
    )
    countries = top_values(
        f"{PREFIX}-top-countries", "Top countries", "countries", "Country", "Countries articles are about"
    )
    people = top_values(f"{PREFIX}-top-people", "Top people", "people", "Person", "People named in articles")
    organizations = top_values(
        f"{PREFIX}-top-organizations", "Top organisations", "organizations", "Organisation", "Organisations named"
    )
    places = places_map()
    alerts_table = recent_alerts()
    board = dashboard(
        [
            (article_count, (0, 0, 12, 7)),
            (alert_count, (0, 7, 12, 7)),
            (over_time, (12, 0, 36, 14)),
            (countries, (0, 14, 16, 15)),
            (people, (16, 14, 16, 15)),
            (organizations, (32, 14, 16, 15)),
            (places, (0, 29, 24, 20)),
            (alerts_table, (24, 29, 24, 20)),
        ]
    )
    return [
        articles,
        alerts,
        article_count,
        alert_count,
        over_time,
        countries,
        people,
        organizations,
        places,
        alerts_table,
        board,
    ]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(_dumps(obj) + "\n" for obj in objects)


if __name__ == "__main__":
    sys.stdout.write(to_ndjson(saved_objects()))
