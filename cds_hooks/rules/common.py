"""Helpers the rule modules share: suggested resources, drug classes of ingredients."""

from __future__ import annotations

from typing import Any

from mappings.codes import drug_class

from ..cards import Suggestion


def service_request(text: str, patient: str | None, reasons: list[str], note: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"text": text},
        "subject": {"reference": patient or "Patient/unknown"},
    }
    if reasons:
        resource["reasonReference"] = [{"reference": r} for r in reasons[:10]]
    if note:
        resource["note"] = [{"text": note}]
    return resource


def create(label: str, resource: dict[str, Any]) -> Suggestion:
    return Suggestion(label=label, actions=[{"type": "create", "description": label, "resource": resource}])


def class_of(ingredient: str) -> str:
    return drug_class(ingredient) or ""
