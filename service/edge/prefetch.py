"""Prefetch first, then fetch what is missing (CDS Hooks 2.0, "Providing FHIR resources").

A prefetch key that is absent, null or an OperationOutcome counts as missing and is fetched
from ``fhirServer`` with the EHR's token. When a required key can be had neither way the hook
answers 412 (spec: "Precondition Failed").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from cds_hooks.evaluate import Gap as DataGap
from mappings.queries import Query

from ..fhir_client import Budget, FetchResult, FhirFetcher, bundle_resources, run_all
from .hook_request import ParsedHook, RequestError

_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass
class Gathered:
    resources: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[DataGap] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    fetch_ms: float = 0.0
    retries: int = 0


def resolve_template(template: str, context: dict[str, Any]) -> str | None:
    """Fill prefetch tokens from the context; None when a token cannot be filled."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token[len("context."):])
        elif token in _USER_TOKENS:
            user = context.get("userId")
            prefix = _USER_TOKENS[token] + "/"
            value = user[len(prefix):] if isinstance(user, str) and user.startswith(prefix) else None
        else:
            value = None
        if not isinstance(value, (str, int)) or value == "":
            missing = True
            return ""
        return str(value)

    resolved = _TOKEN.sub(fill, template)
    return None if missing else resolved


def _prefetched(value: Any) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """(resources, bundle-with-next-link) of a prefetch value; (None, None) when it counts as missing."""
    if not isinstance(value, dict):
        return None, None
    rtype = value.get("resourceType")
    if rtype == "OperationOutcome" or not isinstance(rtype, str):
        return None, None
    if rtype == "Bundle":
        has_next = any(isinstance(l, dict) and l.get("relation") == "next" for l in value.get("link") or [])
        return bundle_resources(value), value if has_next else None
    return [value], None


def _check_types(prefetch: dict[str, Any], queries: tuple[Query, ...]) -> None:
    """A prefetch value of this service is null or a FHIR resource (a Bundle, the resource read, or an
    OperationOutcome); anything else is the client's error: a 400 naming the key, not a 412 saying it is missing."""
    bad = []
    for q in queries:
        value = prefetch.get(q.key)
        if value is None:
            continue
        if not isinstance(value, dict):
            bad.append({"field": ("prefetch", q.key), "problem": f"a JSON {_json_type(value)}, not a FHIR resource or null", "issue": "value"})
        elif not isinstance(value.get("resourceType"), str):
            bad.append({"field": ("prefetch", q.key, "resourceType"), "problem": "a FHIR resource needs a resourceType string", "issue": "required"})
    if bad:
        raise RequestError(400, "invalid-request", "Prefetch values must be FHIR resources (a Bundle, the resource read, an OperationOutcome) or null.", bad)


def _json_type(value: Any) -> str:
    return {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}.get(type(value), type(value).__name__)


async def gather(hook: ParsedHook, queries: tuple[Query, ...], fetcher: FhirFetcher, deadline: float) -> Gathered:
    request = hook.request
    context = hook.context.model_dump()
    prefetch = request.prefetch or {}
    server = request.fhirServer
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    out = Gathered()
    budget = Budget.start(deadline)  # one deadline for every query, page and retry of this call
    jobs: dict[str, Any] = {}
    unobtainable: list[str] = []
    _check_types(prefetch, queries)
    for q in queries:
        resources, partial = _prefetched(prefetch.get(q.key))
        if resources is not None:
            out.resources.extend(resources)
            if partial is not None:
                if server:
                    # The client may page a prefetched search: read the remaining pages.
                    jobs[q.key] = fetcher.follow(server, {**partial, "entry": []}, token, FetchResult(pages=1), budget=budget)
                else:
                    out.gaps.append(DataGap(q.key, "the prefetched search has more pages and no fhirServer was given to read them", q.feeds))
            continue
        relative = resolve_template(q.template, context)
        if server and relative:
            jobs[q.key] = fetcher.read(server, relative, token, budget=budget)
        elif q.required:
            unobtainable.append(q.key)
        else:
            out.gaps.append(DataGap(q.key, "not prefetched, and no fhirServer was given to read it from", q.feeds))
    if unobtainable:
        raise RequestError(
            412,
            "precondition-failed",
            "Required FHIR data was not prefetched and no fhirServer was given to read it from.",
            [{"field": ("prefetch", key), "problem": "missing, null or an OperationOutcome, and no fhirServer to fetch it", "issue": "required"}
             for key in unobtainable],
        )
    started = time.perf_counter()
    results = await run_all(jobs, deadline)
    out.fetch_ms = (time.perf_counter() - started) * 1000
    feeds = {q.key: q.feeds for q in queries}
    for key, result in results.items():
        out.resources.extend(result.resources)
        out.fetched.append(key)
        out.retries += result.retries
        if result.problem:
            out.gaps.append(DataGap(key, result.problem, feeds[key]))
    return out
