"""The services of GET /cds-services, read from services.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mappings.queries import Query, query


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    queries: tuple[Query, ...]

    def definition(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {q.key: q.template for q in self.queries},
        }


@lru_cache(maxsize=1)
def services() -> dict[str, Service]:
    data = yaml.safe_load((Path(__file__).parent / "services.yaml").read_text(encoding="utf-8"))
    out = {}
    for item in data["services"]:
        out[item["id"]] = Service(
            id=item["id"], hook=item["hook"], title=item["title"], description=" ".join(item["description"].split()),
            queries=tuple(query(k) for k in item["prefetch"]),
        )
    return out


def discovery() -> dict[str, Any]:
    return {"services": [s.definition() for s in services().values()]}
