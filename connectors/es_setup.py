"""`newswatch es setup`: apply the index design in deploy/elasticsearch to a cluster, idempotently.

Order: ILM policies (where the cluster has ILM) -> component templates -> composable index templates ->
one versioned index per kind behind its read and write aliases. Fields the templates add to an index of
the version they want are added to its mapping in place. When the templates ask for a newer index
version than the aliases point at, `migrate=True` creates the new index, reindexes into it and swaps
both aliases in one atomic update (the old index is kept for the operator to delete).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from connectors.elasticsearch import KINDS, IndexLayout, Kind, Retrier, describe_error
from connectors.es_documents import mapping_fields
from connectors.store import StoreUnavailable

log = logging.getLogger(__name__)

PLACEHOLDER = "{{prefix}}"
_VERSION = re.compile(r"-v(\d+)(?:-\d+)?$")


class SetupError(Exception):
    """The cluster is in a state setup will not paper over (a stray index, a failed reindex)."""


@dataclass
class Templates:
    """The index design, with the prefix filled in. Keys are the names objects get in the cluster."""

    ilm_policies: dict[str, dict[str, Any]]
    component_templates: dict[str, dict[str, Any]]
    index_templates: dict[str, dict[str, Any]]  # by kind

    def index_version(self, kind: Kind) -> int:
        return int(self.index_templates[kind].get("_meta", {}).get("index_version", 1))

    def rollover(self, kind: Kind) -> bool:
        return bool(self.index_templates[kind].get("_meta", {}).get("rollover", False))

    def mappings(self, kind: Kind) -> dict[str, Any]:
        """The mappings an index of this kind gets (from its component templates, in order)."""
        merged: dict[str, Any] = {}
        for name in self.index_templates[kind]["composed_of"]:
            component = self.component_templates.get(name, {})
            mappings = component.get("template", {}).get("mappings")
            if mappings:
                merged = {**merged, **mappings}
        return merged


def _fill(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, prefix)
    if isinstance(value, list):
        return [_fill(v, prefix) for v in value]
    if isinstance(value, dict):
        return {_fill(k, prefix): _fill(v, prefix) for k, v in value.items()}
    return value


def _read_dir(directory: Path, prefix: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SetupError(f"{path}: {exc}") from exc
        found[path.stem] = _fill(body, prefix)
    return found


def load_templates(directory: Path, prefix: str) -> Templates:
    """Read deploy/elasticsearch-style files: component_templates/, index_templates/ and ilm/."""
    if not (directory / "index_templates").is_dir():
        raise SetupError(f"{directory}: no index_templates/ directory (expected the layout of deploy/elasticsearch)")
    index_templates = _read_dir(directory / "index_templates", prefix)
    missing = [k for k in KINDS if k not in index_templates]
    if missing:
        raise SetupError(f"{directory}/index_templates: no template for {', '.join(missing)}")
    return Templates(
        ilm_policies={f"{prefix}-{k}": v for k, v in _read_dir(directory / "ilm", prefix).items()},
        component_templates={
            f"{prefix}-{k}": v for k, v in _read_dir(directory / "component_templates", prefix).items()
        },
        index_templates=index_templates,
    )


@dataclass
class SetupReport:
    cluster: str = ""
    version: str = ""
    ilm: bool = False
    actions: list[str] = field(default_factory=list)
    indices: dict[str, str] = field(default_factory=dict)
    pending_migrations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.pending_migrations

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "version": self.version,
            "ilm": self.ilm,
            "actions": self.actions,
            "indices": self.indices,
            "pending_migrations": self.pending_migrations,
            "ok": self.ok,
        }


def index_version(index_name: str) -> int | None:
    match = _VERSION.search(index_name)
    return int(match.group(1)) if match else None


class IndexSetup:
    """Applies Templates to one cluster under one prefix."""

    def __init__(self, client: Elasticsearch, layout: IndexLayout, retrier: Retrier) -> None:
        self.client, self.layout, self.retrier = client, layout, retrier

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.retrier.call(what, fn)

    def has_ilm(self) -> bool:
        """ILM is a real-cluster feature; test servers (noida-db) answer 400/404 to its API."""
        try:
            self._call("ilm status", self.client.ilm.get_status)
        except ApiError as exc:
            if exc.meta.status in (400, 404, 405, 501):
                return False
            raise
        return True

    def apply(self, templates: Templates, migrate: bool = False) -> SetupReport:
        info = self._call("info", self.client.info)
        report = SetupReport(cluster=str(info.get("cluster_name", "")), version=str(info["version"]["number"]))
        report.ilm = self.has_ilm()
        lifecycle_components = {n for n in templates.component_templates if n.endswith("-lifecycle")}
        if report.ilm:
            for name, policy in templates.ilm_policies.items():
                self._call(f"ilm policy {name}", partial(self.client.ilm.put_lifecycle, name=name, policy=policy))
                report.actions.append(f"ILM policy {name}: put")
        else:
            report.actions.append("ILM: not available on this cluster; lifecycle settings skipped")
        for name, body in templates.component_templates.items():
            if name in lifecycle_components and not report.ilm:
                continue
            kwargs: dict[str, Any] = {"name": name, "template": body["template"]}
            if "version" in body:
                kwargs["version"] = body["version"]
            if "_meta" in body:
                kwargs["meta"] = body["_meta"]
            self._call(f"component template {name}", partial(self.client.cluster.put_component_template, **kwargs))
            report.actions.append(f"component template {name}: put (version {body.get('version', '-')})")
        for kind in KINDS:
            body = templates.index_templates[kind]
            name = f"{self.layout.prefix}-{kind}"
            composed = [c for c in body["composed_of"] if report.ilm or c not in lifecycle_components]
            kwargs = {
                "name": name,
                "index_patterns": body["index_patterns"],
                "composed_of": composed,
                "priority": body.get("priority", 200),
            }
            for key, arg in (("version", "version"), ("_meta", "meta"), ("template", "template")):
                if key in body:
                    kwargs[arg] = body[key]
            self._call(f"index template {name}", partial(self.client.indices.put_index_template, **kwargs))
            report.actions.append(f"index template {name}: put (version {body.get('version', '-')})")
        for kind in KINDS:
            self._ensure_index(kind, templates, report, migrate)
        return report

    def _aliased(self, alias: str) -> dict[str, Any]:
        """index -> its aliases, for the indices behind `alias` ({} when the alias does not exist)."""
        try:
            return dict(self._call(f"get alias {alias}", partial(self.client.indices.get_alias, name=alias)))
        except ApiError as exc:
            if exc.meta.status == 404:
                return {}
            raise
        except StoreUnavailable:  # index_not_found on some servers means the same: no such alias
            return {}

    def _ensure_index(self, kind: Kind, templates: Templates, report: SetupReport, migrate: bool) -> None:
        read, write = self.layout.read_alias(kind), self.layout.write_alias(kind)
        target = self.layout.index_name(kind, templates.index_version(kind), templates.rollover(kind))
        behind_write = self._aliased(write)
        if not behind_write:
            for name in (read, write):
                exists = self._call(f"exists {name}", partial(self.client.indices.exists, index=name))
                if exists and not self._aliased(name):
                    raise SetupError(
                        f"an index named {name} exists where newswatch wants an alias (written before "
                        f"`newswatch es setup`?); move or delete it, or use another es_index_prefix"
                    )
            self._create(target, aliases={read: {}, write: {"is_write_index": True}})
            report.actions.append(f"index {target}: created behind {read} and {write}")
            report.indices[kind] = target
            return
        flagged = [i for i, a in behind_write.items() if a.get("aliases", {}).get(write, {}).get("is_write_index")]
        current = flagged[0] if flagged else sorted(behind_write)[-1]
        report.indices[kind] = current
        current_version = index_version(current) or 0
        wanted = templates.index_version(kind)
        if current_version >= wanted:
            if current not in self._aliased(read):
                self._update_aliases([{"add": {"index": current, "alias": read}}])
                report.actions.append(f"alias {read}: added to {current}")
            if current_version == wanted:
                self._add_new_fields(kind, current, templates, report)
            report.actions.append(f"index {current}: up to date (v{current_version})")
            return
        if not migrate:
            report.pending_migrations.append(
                f"{kind}: {current} is v{current_version}, templates want v{wanted}; run `newswatch es setup --migrate`"
            )
            return
        self._migrate(kind, list(behind_write), target, report)

    def _add_new_fields(self, kind: Kind, index: str, templates: Templates, report: SetupReport) -> None:
        """Fields the templates have and the index lacks (a newer newswatch writes them) are added to its
        mapping in place: under `dynamic: strict` every document carrying them would be refused otherwise.
        A change an existing field cannot take needs a new index version (`_meta.index_version`)."""
        wanted = templates.mappings(kind).get("properties", {})
        found: dict[str, Any] = dict(
            self._call(f"get mapping {index}", partial(self.client.indices.get_mapping, index=index))
        )
        current: dict[str, Any] = next(iter(found.values()), {})
        have = current.get("mappings", {}).get("properties", {})
        added = sorted(mapping_fields(wanted) - mapping_fields(have))
        if not added:
            return
        try:
            self._call(f"put mapping {index}", partial(self.client.indices.put_mapping, index=index, properties=wanted))
        except ApiError as exc:
            error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else exc.body
            raise SetupError(
                f"{kind}: cannot add {', '.join(added)} to {index} in place ({describe_error(error)}); bump "
                f"_meta.index_version in index_templates/{kind}.json and run `newswatch es setup --migrate`"
            ) from None
        report.actions.append(f"index {index}: mapping updated in place, added {', '.join(added)}")

    def _create(self, index: str, aliases: dict[str, Any]) -> None:
        self._call(f"create {index}", partial(self.client.indices.create, index=index, aliases=aliases))

    def _update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self._call("update aliases", partial(self.client.indices.update_aliases, actions=actions))

    def _migrate(self, kind: Kind, old_indices: list[str], target: str, report: SetupReport) -> None:
        """Reindex into the new version, then move both aliases in one atomic update."""
        read, write = self.layout.read_alias(kind), self.layout.write_alias(kind)
        exists = self._call(f"exists {target}", partial(self.client.indices.exists, index=target))
        if not exists:
            self._create(target, aliases={})
        result = self._call(
            f"reindex {kind}",
            partial(
                self.client.options(request_timeout=3600).reindex,
                source={"index": read},
                dest={"index": target},
                wait_for_completion=True,
                refresh=True,
            ),
        )
        failures = result.get("failures") or []
        if failures:
            first = "; ".join(describe_error(f.get("cause", f)) for f in failures[:3])
            raise SetupError(
                f"reindex of {kind} into {target}: {len(failures)} failure(s), aliases left on "
                f"{', '.join(old_indices)}: {first}"
            )
        actions: list[dict[str, Any]] = []
        for old in old_indices:
            actions += [{"remove": {"index": old, "alias": write}}, {"remove": {"index": old, "alias": read}}]
        actions += [
            {"add": {"index": target, "alias": read}},
            {"add": {"index": target, "alias": write, "is_write_index": True}},
        ]
        self._update_aliases(actions)
        report.indices[kind] = target
        report.actions.append(
            f"index {target}: {result.get('total', 0)} document(s) reindexed from {', '.join(old_indices)}; "
            f"aliases {read} and {write} moved (old index kept: delete it when satisfied)"
        )


def status(client: Elasticsearch, layout: IndexLayout, retrier: Retrier) -> dict[str, Any]:
    """Which index each alias points at and how many documents it holds."""
    setup = IndexSetup(client, layout, retrier)
    out: dict[str, Any] = {}
    for kind in KINDS:
        behind = setup._aliased(layout.write_alias(kind))
        read_indices = sorted(setup._aliased(layout.read_alias(kind)))
        count = None
        if read_indices:
            count = int(retrier.call(f"count {kind}", partial(client.count, index=layout.read_alias(kind)))["count"])
        out[kind] = {
            "read_alias": layout.read_alias(kind),
            "write_alias": layout.write_alias(kind),
            "write_index": next(iter(sorted(behind)), None),
            "read_indices": read_indices,
            "documents": count,
        }
    return out
