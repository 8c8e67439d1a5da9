"""JSON answers of the HTTP edge: orjson-encoded, and one shape for every error.

Every non-2xx answer is a FHIR R4 OperationOutcome (CDS Hooks 3.0 ballot, "Returning
OperationOutcome"; FHIR-50287): one ``issue`` per problem, with

- ``severity`` and ``code`` (FHIR issue-type, http://hl7.org/fhir/R4/valueset-issue-type.html),
- ``details``: the service's own error code as a Coding (system :data:`ERROR_SYSTEM`, e.g.
  ``invalid-context``) plus the human-readable message as ``text``,
- ``diagnostics``: the specific problem, and ``expression``: the field, as a simple FHIRPath
  (``context.patientId``, ``feedback[0].outcomeTimestamp``) when there is one.

Routes and handlers build errors only through :func:`error` (or raise :class:`RequestError`,
which the app's handler turns into one), so every route group follows the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi.responses import Response

ERROR_SYSTEM = "https://mbc-cds-hooks.example.org/error-codes"

# The service's error codes and the FHIR R4 issue-type each maps to by default. A detail may
# name a more precise type ("required" for a missing field).
ERROR_CODES: dict[str, str] = {
    "invalid-json": "structure",
    "invalid-request": "invalid",
    "invalid-context": "invalid",
    "invalid-feedback": "invalid",
    "hook-mismatch": "not-supported",
    "unknown-service": "not-found",
    "not-found": "not-found",
    "method-not-allowed": "not-supported",
    "http-error": "processing",
    "too-large": "too-long",
    "too-many-resources": "too-costly",
    "too-many-orders": "too-costly",
    "unsupported-media-type": "not-supported",
    "precondition-failed": "processing",  # the CDS Hooks 3.0 example answers its 412 with "processing"
    "unauthorized": "security",
    "cors-refused": "forbidden",
    "store-unavailable": "transient",
    "not-ready": "transient",
    "internal-error": "exception",
}
# The timeline viewer's own codes (service/viewer: its SMART launch and picture API), apart so the
# conformance test of the CDS Hooks edge can require each of ERROR_CODES to be reached.
VIEWER_ERROR_CODES: dict[str, str] = {
    "invalid-launch": "invalid",
    "authorization-refused": "forbidden",  # the EHR's authorization server answered the launch with an error
    "missing-iss": "required",
    "missing-code": "required",
    "missing-state": "required",
    "no-patient-context": "required",
    "unknown-launch": "not-found",
    "launch-not-from-this-browser": "security",
    "invalid-authorization": "security",
    "no-session": "login",
    "token-refused": "login",
    "fhir-token-refused": "login",
    "fhir-access-denied": "forbidden",
    "fhir-server-not-allowed": "forbidden",
    "session-mismatch": "forbidden",
    "pkce-unsupported": "not-supported",
    "smart-configuration-invalid": "invalid",
    "smart-configuration-unavailable": "transient",
    "token-endpoint-unavailable": "transient",
    "token-invalid": "invalid",
}
ISSUE_TYPES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
    "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JSONResponse(Response):
    """orjson instead of the stdlib encoder: the card extension carries the whole picture."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RequestError(Exception):
    """A request the service cannot accept: its HTTP status, error code, message and the fields at fault.

    ``details`` are ``{"field": str | tuple, "problem": str}`` (optionally ``"issue"``: a FHIR issue-type).
    Raised anywhere in a route; the app's handler answers it with :func:`error`.
    """

    def __init__(self, status: int, error: str, message: str, details: Sequence[Mapping[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = list(details or [])

    def response(self) -> JSONResponse:
        return error(self.status, self.error, self.message, self.details)


def fhirpath(field: str | Sequence[Any]) -> str:
    """A field path as a simple FHIRPath: list positions as ``[n]``, odd names in backticks.

    A string is split on dots (``feedback.0.card`` -> ``feedback[0].card``); a tuple (a pydantic
    ``loc``) is taken part by part, so a key that itself holds a dot stays one name.
    """
    parts = field.split(".") if isinstance(field, str) else list(field)
    out = ""
    for part in parts:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
            continue
        name = str(part)
        name = name if _IDENTIFIER.fullmatch(name) else "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
        out += ("." if out else "") + name
    return out


def operation_outcome(err: str, message: str, details: Sequence[Mapping[str, Any]] | None = None,
                      severity: str = "error") -> dict[str, Any]:
    """The OperationOutcome of one error: one issue per detail, or one issue for the whole request."""
    default_type = ERROR_CODES.get(err) or VIEWER_ERROR_CODES.get(err, "processing")
    reason = {"coding": [{"system": ERROR_SYSTEM, "code": err}], "text": message}
    issues: list[dict[str, Any]] = []
    for d in details or []:
        issue: dict[str, Any] = {"severity": severity, "code": d.get("issue") or default_type, "details": reason}
        if d.get("problem"):
            issue["diagnostics"] = str(d["problem"])
        if d.get("field") not in (None, "", ()):
            issue["expression"] = [fhirpath(d["field"])]
        issues.append(issue)
    if not issues:
        issues.append({"severity": severity, "code": default_type, "details": reason})
    return {"resourceType": "OperationOutcome", "issue": issues}


def error(status: int, err: str, message: str, details: Sequence[Mapping[str, Any]] | None = None,
          headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one way this service answers with an error (any non-2xx status that has a body)."""
    severity = "fatal" if status >= 500 and err == "internal-error" else "error"
    if not details and 400 <= status < 500 and err != "unauthorized":
        details = [{"problem": message}]  # every client error says what is wrong (the JWT 401 alone does not)
    return JSONResponse(operation_outcome(err, message, details, severity), status_code=status, headers=dict(headers or {}))


def unknown_service(service_id: str) -> JSONResponse:
    return error(404, "unknown-service", f"No CDS service with id '{service_id[:100]}'; see GET /cds-services.",
                 [{"problem": "no such service id in discovery (GET /cds-services)"}])
