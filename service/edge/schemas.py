"""CDS Hooks 2.0 request and response schemas for the OpenAPI document (/docs), documentation only.

The hook endpoint reads its body by hand (see hook_request.py) and the cards stay plain dicts, so
nothing here runs on a hook call: these models only describe the wire format in /openapi.json.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .hook_request import CONTEXT_MODELS, HookRequest

REF = "#/components/schemas/{model}"


class Coding(BaseModel):
    code: str
    system: str | None = None
    display: str | None = None


class Source(BaseModel):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = Field(None, description="The rule code (system https://mbc-cds-hooks.example.org/rule-codes).")


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = Field(None, description="A FHIR R4 resource (create, update).")
    resourceId: str | None = Field(None, description="Relative reference of the resource to delete.")


class Suggestion(BaseModel):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(BaseModel):
    model_config = ConfigDict(json_schema_extra={"description": "A CDS Hooks 2.0 card; empty fields are omitted."})

    uuid: str | None = None
    summary: str = Field(max_length=140)
    detail: str | None = Field(None, description="GitHub-flavoured Markdown.")
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: dict[str, Any] | None = Field(None, description="mbc-summary carries mbc-cds-hooks.clinical-picture.")


class CdsServiceResponse(BaseModel):
    cards: list[Card]
    systemActions: list[Action] | None = None


class IssueDetails(BaseModel):
    coding: list[Coding] = Field(description="The service's error code: system https://mbc-cds-hooks.example.org/error-codes.")
    text: str


class Issue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR R4 issue-type, e.g. invalid, required, structure, not-found, too-long, security.")
    details: IssueDetails
    diagnostics: str | None = Field(None, description="The specific problem.")
    expression: list[str] | None = Field(None, description="The field at fault, as a simple FHIRPath (context.patientId).")


class OperationOutcome(BaseModel):
    """Every non-2xx answer (CDS Hooks 3.0 ballot: OperationOutcome on errors). Codes: invalid-json,
    invalid-request, invalid-context, hook-mismatch, unknown-service, precondition-failed, too-large,
    too-many-resources, too-many-orders, unsupported-media-type, invalid-feedback, unauthorized,
    store-unavailable, internal-error."""

    resourceType: Literal["OperationOutcome"]
    issue: list[Issue]


def _defs(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


def request_components() -> dict[str, Any]:
    """HookRequest and the hook context models, to merge into ``components.schemas``."""
    out: dict[str, Any] = {}
    models: list[type[BaseModel]] = [HookRequest, *CONTEXT_MODELS.values()]
    for model in models:
        out.update(_defs(model))
    return out


_EXAMPLE = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "https://ehr.example.org/fhir",
    "fhirAuthorization": {"access_token": "...", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "mbc-cds-hooks"},
    "context": {"userId": "Practitioner/example", "patientId": "123"},
    "prefetch": {"patient": {"resourceType": "Patient", "id": "123"}},
}

HOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A CDS Hooks 2.0 request; `context` depends on the service's hook (see GET /cds-services).",
        "content": {"application/json": {
            "schema": {"allOf": [
                {"$ref": REF.format(model="HookRequest")},
                {"type": "object", "properties": {"context": {"anyOf": [{"$ref": REF.format(model=m.__name__)} for m in CONTEXT_MODELS.values()]}}},
            ]},
            "example": _EXAMPLE,
        }},
    }
}

HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": CdsServiceResponse, "description": "Cards (critical, warning, info)."},
    400: {"model": OperationOutcome, "description": "Invalid JSON, fields, context, or a hook the service does not answer."},
    404: {"model": OperationOutcome, "description": "Unknown service id."},
    412: {"model": OperationOutcome, "description": "Required data neither prefetched nor readable from fhirServer."},
    413: {"model": OperationOutcome, "description": "Body larger than MBC_MAX_BODY_BYTES."},
    415: {"model": OperationOutcome, "description": "Not application/json."},
}
