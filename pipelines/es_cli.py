"""`newswatch es setup|status` and `newswatch kibana import`: put the index design and the dashboards in place."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines import logs
from pipelines.settings import Settings, SettingsError, load_settings
from pipelines.stores import elasticsearch_config

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    """--sink/--es-url/--es-index-prefix for commands that read the configured store."""
    parser.add_argument("--sink", choices=["sqlite", "elasticsearch"], help="store to use (env NEWSWATCH_SINK)")
    parser.add_argument("--es-url", help="Elasticsearch URL (env NEWSWATCH_ES_URL)")
    parser.add_argument("--es-index-prefix", help="index/alias prefix (env NEWSWATCH_ES_INDEX_PREFIX)")


def store_flag_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_store_flags(parent)
    return parent


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = load_settings(
        config_file=getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        log_level=getattr(args, "log_level", None),
        log_json=True if getattr(args, "log_json", False) else None,
        es_url=getattr(args, "es_url", None),
        es_index_prefix=getattr(args, "es_index_prefix", None),
        **overrides,
    )
    logs.configure(settings.log_level, settings.log_json)
    return settings


def cmd_es(args: argparse.Namespace, _: list[str]) -> int:
    from connectors.elasticsearch import IndexLayout, Retrier, RetryPolicy, make_client, redact_url
    from connectors.es_setup import IndexSetup, SetupError, load_templates, status
    from deploy import ELASTICSEARCH_DIR

    settings = _settings(args)
    if not settings.es_url:
        raise SettingsError("es_url (NEWSWATCH_ES_URL or --es-url) is needed for `newswatch es`")
    config = elasticsearch_config(settings)
    client = make_client(config)
    retrier = Retrier(RetryPolicy(max_retries=config.max_retries, max_backoff=config.max_backoff))
    layout = IndexLayout(config.index_prefix)
    try:
        if args.action == "status":
            found = status(client, layout, retrier)
            if args.json:
                print(json.dumps(found))
            else:
                for kind, info in found.items():
                    print(
                        f"{kind:<14} {info['read_alias']} -> {', '.join(info['read_indices']) or '(missing)'}"
                        f"  write: {info['write_index'] or '(missing)'}  documents: {info['documents']}"
                    )
            return EXIT_OK if all(i["write_index"] for i in found.values()) else EXIT_ERROR
        templates = load_templates(Path(args.templates) if args.templates else ELASTICSEARCH_DIR, config.index_prefix)
        report = IndexSetup(client, layout, retrier).apply(templates, migrate=args.migrate)
    except SetupError as exc:
        print(f"newswatch: es setup: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"Elasticsearch {report.version} at {redact_url(config.url)} (cluster {report.cluster})")
        for line in report.actions:
            print(f"  {line}")
        for line in report.pending_migrations:
            print(f"  PENDING {line}")
    return EXIT_OK if report.ok else EXIT_ERROR


def cmd_kibana(args: argparse.Namespace, _: list[str]) -> int:
    from connectors.kibana import KibanaAuth, KibanaError, import_saved_objects, with_index_prefix
    from deploy import KIBANA_SAVED_OBJECTS

    settings = _settings(args, kibana_url=args.kibana_url)
    if not settings.kibana_url:
        raise SettingsError("kibana_url (NEWSWATCH_KIBANA_URL or --kibana-url) is needed for `newswatch kibana import`")
    path = Path(args.file) if args.file else KIBANA_SAVED_OBJECTS
    try:
        text = with_index_prefix(path.read_text(encoding="utf-8"), settings.es_index_prefix)
        result = import_saved_objects(
            settings.kibana_url,
            text,
            auth=KibanaAuth(settings.es_api_key, settings.es_username, settings.es_password),
            space=args.space,
            ca_file=str(settings.es_ca_file) if args.ca_file_from_es and settings.es_ca_file else None,
            wait=args.wait,
        )
    except (OSError, KibanaError) as exc:
        print(f"newswatch: kibana import: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"success": result.success, "successCount": result.success_count, "errors": result.errors}))
    else:
        print(
            f"imported {result.success_count} saved object(s) from {path}" + ("" if result.success else " with errors:")
        )
        for line in result.describe_errors():
            print(f"  {line}")
    return EXIT_OK if result.success else EXIT_ERROR


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `es` and `kibana` on the main parser's subcommands."""
    es_flags = argparse.ArgumentParser(add_help=False)
    es_flags.add_argument("--es-url", help="Elasticsearch URL (env NEWSWATCH_ES_URL)")
    es_flags.add_argument("--es-index-prefix", help="index/alias prefix (env NEWSWATCH_ES_INDEX_PREFIX)")
    es_flags.add_argument("--json", action="store_true", help="print one JSON object")

    es = sub.add_parser("es", parents=[common], help="Elasticsearch index setup and status")
    es_sub = es.add_subparsers(dest="action", required=True, metavar="ACTION")
    setup = es_sub.add_parser(
        "setup",
        parents=[common, es_flags],
        help="create or update templates, indices and aliases (idempotent)",
        description="Apply deploy/elasticsearch: ILM policies (where the cluster has ILM), component and index "
        "templates, and one versioned index per kind behind read and write aliases. Safe to run again.",
    )
    setup.add_argument("--templates", help="directory laid out like deploy/elasticsearch (default: the bundled one)")
    setup.add_argument(
        "--migrate",
        action="store_true",
        help="when the templates ask for a new index version: reindex into it and move the aliases",
    )
    es_sub.add_parser("status", parents=[common, es_flags], help="aliases, indices and document counts")
    es.set_defaults(func=cmd_es)

    kibana = sub.add_parser("kibana", parents=[common], help="Kibana dashboards")
    kibana_sub = kibana.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = kibana_sub.add_parser(
        "import",
        parents=[common],
        help="import the newswatch data views, visualizations and dashboard",
        description="POST deploy/kibana/newswatch.ndjson to Kibana's saved-objects import API (overwriting "
        "objects with the same ids). Credentials: NEWSWATCH_ES_API_KEY or NEWSWATCH_ES_USERNAME/PASSWORD.",
    )
    imp.add_argument("--kibana-url", help="Kibana base URL (env NEWSWATCH_KIBANA_URL)")
    imp.add_argument("--es-index-prefix", help="point the data views at this prefix's aliases")
    imp.add_argument("--file", help="NDJSON to import (default: the bundled deploy/kibana/newswatch.ndjson)")
    imp.add_argument("--space", help="Kibana space id (default: the default space)")
    imp.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying while Kibana starts")
    imp.add_argument(
        "--ca-file-from-es", action="store_true", help="verify Kibana's TLS certificate with NEWSWATCH_ES_CA_FILE"
    )
    imp.add_argument("--json", action="store_true", help="print Kibana's answer as one JSON object")
    kibana.set_defaults(func=cmd_kibana)
