"""Error answers as FHIR OperationOutcome: the check every error-reading test shares.

Every non-2xx answer of the service (304 Not Modified aside: it has no body) must be an
OperationOutcome whose issues carry a FHIR issue-type, our error code as a Coding in ``details``
and, for client errors other than 401, a ``diagnostics`` that says what is wrong.
"""

from __future__ import annotations

from typing import Any

import httpx

from service.edge.responses import ERROR_CODES, ERROR_SYSTEM, ISSUE_TYPES, VIEWER_ERROR_CODES

CHECKED: dict[str, int] = {}  # error code -> answers checked this session (shown by the conformance test)


def assert_operation_outcome(response: httpx.Response, strict: bool = True) -> dict[str, Any]:
    """Check one answer; return its body. ``strict``: the error code must be one of ERROR_CODES."""
    status = response.status_code
    if status < 300 or status == 304 or response.request.method == "HEAD":
        return {}
    where = f"{response.request.method} {response.request.url.path} -> {status}"
    assert response.headers.get("content-type", "").startswith("application/json"), (where, response.headers.get("content-type"))
    body = response.json()
    assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", (where, body)
    issues = body.get("issue")
    assert isinstance(issues, list) and issues, (where, body)
    codes = set()
    for issue in issues:
        assert issue.get("severity") in {"fatal", "error", "warning", "information"}, (where, issue)
        assert issue.get("code") in ISSUE_TYPES, (where, issue)
        coding = (issue.get("details") or {}).get("coding") or []
        ours = [c.get("code") for c in coding if c.get("system") == ERROR_SYSTEM]
        assert len(ours) == 1 and isinstance(ours[0], str) and ours[0], (where, issue)
        assert issue["details"].get("text"), (where, issue)
        if strict:
            assert ours[0] in ERROR_CODES or ours[0] in VIEWER_ERROR_CODES, (where, ours[0])
        if 400 <= status < 500 and status != 401:
            assert isinstance(issue.get("diagnostics"), str) and issue["diagnostics"], ("4xx without diagnostics", where, issue)
        for expression in issue.get("expression", []):
            assert isinstance(expression, str) and expression, (where, issue)
        codes.add(ours[0])
    assert len(codes) == 1, (where, codes)  # one answer, one error code
    if status == 401 and response.request.url.path.startswith("/cds-services"):
        # A CDS Hooks JWT refusal says nothing about why; the viewer's 401s (no session, a token the
        # FHIR server refused) must say it, so the page can tell the clinician.
        assert all(set(i) == {"severity", "code", "details"} for i in issues), ("401 must not say why", body)
    code = codes.pop()
    CHECKED[code] = CHECKED.get(code, 0) + 1
    return body


def error_code(response: httpx.Response) -> str:
    """Our error code of an error answer (after checking its shape)."""
    body = assert_operation_outcome(response)
    return str(body["issue"][0]["details"]["coding"][0]["code"])


def error_fields(response: httpx.Response) -> set[str]:
    """The FHIRPath expressions the error answer names."""
    body = assert_operation_outcome(response)
    return {e for issue in body["issue"] for e in issue.get("expression", [])}


def error_text(response: httpx.Response) -> str:
    """Message and diagnostics together, for tests that look for a word."""
    body = assert_operation_outcome(response)
    return " ".join([body["issue"][0]["details"]["text"], *(i.get("diagnostics", "") for i in body["issue"])])


def check_every_answer(client: httpx.Client, strict: bool = False) -> None:
    """Check every answer this client receives (an httpx response hook)."""
    def hook(response: httpx.Response) -> None:
        response.read()
        assert_operation_outcome(response, strict=strict)

    client.event_hooks["response"] = [*client.event_hooks.get("response", []), hook]
