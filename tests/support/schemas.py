"""JSON Schemas of CDS Hooks 3.0 (ballot) messages, written for this project in tests/schemas/ from
the spec's logical models (CDSHooksServices, CDSHooksResponse, CDSHooksFeedback), and their validators."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
BASE = "https://mbc-cds-hooks.example.org/schemas/"
SERVICES, RESPONSE, FEEDBACK = "cds-hooks-services", "cds-hooks-response", "cds-hooks-feedback"


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in sorted(SCHEMAS.glob("*.schema.json"))]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def problems(name: str, document: Any) -> list[str]:
    """Every schema violation, as 'path: message' (empty when valid)."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))]


def assert_valid(name: str, document: Any) -> None:
    found = problems(name, document)
    assert not found, f"{name}: " + "; ".join(found[:10])
