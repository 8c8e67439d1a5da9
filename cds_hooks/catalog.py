"""The services of GET /cds-services, read from services.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mappings.queries import Query, query

SERVICE_VERSION_EXTENSION = "mbc-cds-hooks.service-version"
_TYPE = re.compile(r"^([A-Z][A-Za-z]+)[/?]")


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    hook_version: str
    title: str
    description: str
    queries: tuple[Query, ...]
    specification_version: str
    usage_requirements: str

    def definition(self, service_version: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {q.key: q.template for q in self.queries},
            "usageRequirements": self.usage_requirements,
            "version": self.specification_version,
            "hookVersion": self.hook_version,
        }
        if service_version:
            out["extension"] = {SERVICE_VERSION_EXTENSION: service_version}
        return out


def resource_type(template: str) -> str:
    """The FHIR resource type a prefetch template reads (``Condition?patient=...`` -> ``Condition``)."""
    match = _TYPE.match(template)
    return match.group(1) if match else ""


def _usage(text: str, queries: tuple[Query, ...]) -> str:
    def names(items: list[str]) -> str:
        return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)

    types = list(dict.fromkeys(resource_type(q.template) for q in queries))
    return " ".join(text.split()).format(
        required=names([q.key for q in queries if q.required]),
        optional=names([q.key for q in queries if not q.required]),
        types=names(types),
    )


@lru_cache(maxsize=1)
def services() -> dict[str, Service]:
    data = yaml.safe_load((Path(__file__).parent / "services.yaml").read_text(encoding="utf-8"))
    out = {}
    for item in data["services"]:
        queries = tuple(query(k) for k in item["prefetch"])
        out[item["id"]] = Service(
            id=item["id"], hook=item["hook"], hook_version=str(item["hook_version"]), title=item["title"],
            description=" ".join(item["description"].split()), queries=queries,
            specification_version=str(data["specification_version"]),
            usage_requirements=_usage(data["usage_requirements"], queries),
        )
    return out


def discovery(service_version: str | None = None) -> dict[str, Any]:
    return {"services": [s.definition(service_version) for s in services().values()]}
