"""Deployment assets shipped with the package: the Elasticsearch index design and Kibana saved objects."""

from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
ELASTICSEARCH_DIR = DEPLOY_DIR / "elasticsearch"
KIBANA_DIR = DEPLOY_DIR / "kibana"
KIBANA_SAVED_OBJECTS = KIBANA_DIR / "newswatch.ndjson"
