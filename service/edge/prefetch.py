"""Prefetch first, then fetch what is missing (CDS Hooks 2.0, "Providing FHIR resources").

A prefetch key that is absent, null or an OperationOutcome counts as missing and is fetched
from ``fhirServer`` with the EHR's token, unless the token's scope (``fhirAuthorization.scope``,
SMART v1 or v2) does not grant that read or search: then it is not fetched and is reported as not
checked (a data-incomplete card; a 412 when the key is required). When a required key can be had neither way the hook
answers 412 (spec: "Precondition Failed").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from cds_hooks.catalog import resource_type
from cds_hooks.evaluate import Gap as DataGap
from mappings.queries import Query

from ..fhir_client import Budget, FetchResult, FhirFetcher, bundle_resources, run_all
from .hook_request import ParsedHook, RequestError
from .scopes import Access, Scopes

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
    """(resources, bundle-with-next-link) of a prefetch value (null or a resource: _check_types ran);
    (None, None) when it counts as missing."""
    if value is None:
        return None, None
    rtype = value["resourceType"]
    if rtype == "OperationOutcome":
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
    context = {**vars(hook.context), **(hook.context.model_extra or {})}  # root fields for tokens; no deep copy
    prefetch = request.prefetch or {}
    server = request.fhirServer
    auth = request.fhirAuthorization
    token = auth.access_token if auth else None
    scopes = Scopes.parse(auth.scope if auth else None)
    out = Gathered()
    budget = Budget.start(deadline)  # one deadline for every query, page and retry of this call
    jobs: dict[str, Any] = {}
    unobtainable: list[tuple[str, str]] = []
    _check_types(prefetch, queries)
    for q in queries:
        resources, partial = _prefetched(prefetch.get(q.key))
        rtype = resource_type(q.template)
        if resources is not None:
            out.resources.extend(resources)
            if partial is not None:
                denied = _denied(scopes, rtype, "s")
                if server and not denied:
                    # The client may page a prefetched search: read the remaining pages.
                    jobs[q.key] = fetcher.follow(server, {**partial, "entry": []}, token, FetchResult(pages=1), budget=budget)
                else:
                    why = f"its next pages were not read: {denied}" if denied else "no fhirServer was given to read them"
                    out.gaps.append(DataGap(q.key, f"the prefetched search has more pages and {why}", q.feeds))
            continue
        relative = resolve_template(q.template, context)
        if not (server and relative):
            problem = "not prefetched, and no fhirServer was given to read it from"
        elif denied := _denied(scopes, rtype, "s" if "?" in relative else "r"):
            problem = f"not prefetched, and not fetched: {denied}"
        else:
            jobs[q.key] = fetcher.read(server, relative, token, budget=budget)
            if scopes.access(rtype, "s" if "?" in relative else "r") is Access.PARTIAL:
                out.gaps.append(DataGap(q.key, f"the token's scope grants only part of {rtype} ({scopes.narrowing(rtype)}); "
                                               "what it leaves out was not read", q.feeds))
            continue
        if q.required:
            unobtainable.append((q.key, problem))
        else:
            out.gaps.append(DataGap(q.key, problem, q.feeds))
    if unobtainable:
        for job in jobs.values():
            job.close()  # the fetches that were prepared never start
        raise RequestError(
            412,
            "precondition-failed",
            "Required FHIR data was not prefetched and could not be read from a fhirServer.",
            [{"field": ("prefetch", key), "problem": problem, "issue": "required"} for key, problem in unobtainable],
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


def _denied(scopes: Scopes, rtype: str, interaction: str) -> str | None:
    """Why the EHR's token may not do ``interaction`` on ``rtype``, or None when it may."""
    if scopes.access(rtype, interaction) is not Access.NONE:
        return None
    return f"the fhirAuthorization scope does not grant {'search' if interaction == 's' else 'read'} of {rtype}"
