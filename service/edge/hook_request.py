"""CDS Hooks 2.0 request models and their validation.

The body is parsed by hand (orjson, then pydantic) instead of as a FastAPI body parameter for
three reasons: the spec's answer to bad input here is a 400 with a JSON explanation (FastAPI
gives 422), the context model depends on the hook named in the body, and prefetch values stay
plain dicts: validating every prefetched resource with fhir.resources costs 140-270 us per
resource (bench/mapping_cost.py), 13-18x the whole floor of a bare endpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .responses import RequestError

__all__ = ["RequestError", "parse_hook_request"]  # RequestError lives in responses; re-exported for the routes


class FhirAuthorization(BaseModel):
    """The token the EHR hands over for calls back to its FHIR server.

    The spec makes expires_in, scope and subject REQUIRED too; only the token itself is needed
    here, and the CDS Hooks sandbox has been seen without expires_in (sandbox#65), so those are
    accepted when absent.
    """

    model_config = ConfigDict(extra="allow")

    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be 'Bearer'")
        return value


class _Context(BaseModel):
    # Hook contexts may carry extra fields (extensions, newer hook versions): keep, ignore.
    model_config = ConfigDict(extra="allow")

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None


class PatientViewContext(_Context):
    pass


class DraftOrders(BaseModel):
    """A Bundle of draft orders. Entries stay dicts: real clients send imperfect R4 here."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]
    entry: list[dict[str, Any]] = Field(default_factory=list)


class OrderSignContext(_Context):
    draftOrders: DraftOrders


class OrderSelectContext(OrderSignContext):
    selections: list[str] = Field(min_length=1)


CONTEXT_MODELS: dict[str, type[_Context]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return value.rstrip("/")


class ParsedHook(BaseModel):
    """A validated request: the envelope plus the hook-specific context."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    request: HookRequest
    context: _Context


def validation_details(exc: ValidationError | Any, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """One detail per pydantic error: the field as a path (``loc``), what is wrong, and "required" when missing.

    Takes a pydantic ValidationError or FastAPI's RequestValidationError (same ``errors()`` items); the
    input values are never echoed (they may be patient data).
    """
    out = []
    errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else exc.errors()
    for err in errors:
        detail: dict[str, Any] = {"field": (*prefix, *err["loc"]), "problem": err["msg"]}
        if err["type"] == "missing":
            detail["issue"] = "required"
        out.append(detail)
    return out


def _check_counts(data: dict[str, Any], max_prefetch_resources: int | None, max_draft_orders: int | None) -> None:
    """Bound the work one request can ask for; counted on the raw JSON, before any model sees it."""
    prefetch = data.get("prefetch")
    if max_prefetch_resources is not None and isinstance(prefetch, dict):
        count = sum(
            max(1, len(v["entry"])) if isinstance(v, dict) and isinstance(v.get("entry"), list) else 1
            for v in prefetch.values()
        )
        if count > max_prefetch_resources:
            raise RequestError(413, "too-many-resources",
                               f"The prefetch holds {count} resources; this service accepts at most {max_prefetch_resources}.",
                               [{"field": "prefetch", "problem": f"more than {max_prefetch_resources} keys and Bundle entries"}])
    context = data.get("context")
    draft = context.get("draftOrders") if isinstance(context, dict) else None
    entries = draft.get("entry") if isinstance(draft, dict) else None
    if max_draft_orders is not None and isinstance(entries, list) and len(entries) > max_draft_orders:
        raise RequestError(413, "too-many-orders",
                           f"draftOrders holds {len(entries)} entries; this service accepts at most {max_draft_orders}.",
                           [{"field": "context.draftOrders.entry", "problem": f"more than {max_draft_orders} entries"}])


def json_body(body: bytes, what: str, empty_error: str, empty_message: str, empty_field: str) -> Any:
    """The parsed JSON of a request body; an empty or malformed body is a 400 that says where it broke."""
    if not body:
        raise RequestError(400, empty_error, empty_message, [{"field": empty_field, "problem": "empty body", "issue": "required"}])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid-json", f"The {what} body is not valid JSON: {exc.msg} at position {exc.pos}.",
                           [{"field": "", "problem": f"{exc.msg} at position {exc.pos} (line {exc.lineno}, column {exc.colno})"}]) from None


def parse_hook_request(body: bytes, expected_hook: str, *, max_prefetch_resources: int | None = None,
                       max_draft_orders: int | None = None) -> ParsedHook:
    """Validate a raw hook request body for a service that answers ``expected_hook``."""
    data = json_body(body, "request", "invalid-request", "The request body is empty; a CDS Hooks request is a JSON object.", "")
    if not isinstance(data, dict):
        raise RequestError(400, "invalid-request", "The request body must be a JSON object.",
                           [{"field": "", "problem": f"the body is a JSON {type(data).__name__.replace('NoneType', 'null')}, not an object"}])
    _check_counts(data, max_prefetch_resources, max_draft_orders)
    try:
        request = HookRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(400, "invalid-request", "The hook request is missing fields or has fields of the wrong type.", validation_details(exc)) from None
    if request.hook != expected_hook:
        raise RequestError(
            400,
            "hook-mismatch",
            f"This service answers the '{expected_hook}' hook, but the request is for '{request.hook}'.",
            [{"field": "hook", "problem": f"expected '{expected_hook}'", "issue": "value"}],
        )
    if request.fhirAuthorization is not None and request.fhirServer is None:
        raise RequestError(400, "invalid-request", "fhirAuthorization was sent without fhirServer.", [{"field": "fhirServer", "problem": "required when fhirAuthorization is present"}])
    try:
        context = CONTEXT_MODELS[expected_hook].model_validate(request.context)
    except ValidationError as exc:
        raise RequestError(400, "invalid-context", f"The context does not match the '{expected_hook}' hook.", validation_details(exc, ("context",))) from None
    return ParsedHook(request=request, context=context)
