"""Kibana saved objects (newswatch.ndjson) and the module that writes them."""
