"""Reading the EHR's FHIR server: concurrent searches on one shared client, paged, bounded.

Every failure becomes a short reason string (never an exception out of this module), so the hook
can still answer with what it has and say what could not be checked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

Resource = dict[str, Any]


@dataclass
class FetchResult:
    resources: list[Resource] = field(default_factory=list)
    problem: str | None = None  # why the data is missing or incomplete; None when complete
    pages: int = 0


def _same_server(url: str, base: str) -> bool:
    """A next link is followed only on the server the EHR named: the token must not leak elsewhere."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.path.startswith(b.path.rstrip("/"))


def _next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def bundle_resources(bundle: Resource) -> list[Resource]:
    out = []
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            out.append(entry["resource"])
    return out


class FhirFetcher:
    def __init__(self, client: httpx.AsyncClient, max_pages: int):
        self.client = client
        self.max_pages = max_pages

    async def _get(self, url: str, token: str | None) -> tuple[Resource | None, str | None]:
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self.client.get(url, headers=headers)
        except httpx.TimeoutException:
            return None, "the FHIR server did not answer in time"
        except httpx.HTTPError as exc:
            return None, f"the FHIR server could not be reached ({type(exc).__name__})"
        if response.status_code in (401, 403):
            return None, f"the FHIR server refused access (HTTP {response.status_code})"
        if response.status_code >= 400:
            return None, f"the FHIR server answered HTTP {response.status_code}"
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None, "the FHIR server sent a response that is not JSON"
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return None, "the FHIR server sent JSON that is not a FHIR resource"
        return body, None

    async def read(self, base: str, relative: str, token: str | None) -> FetchResult:
        """A query: an instance read (Type/id) or a search, following next links up to the bound."""
        url = f"{base}/{relative}"
        result = FetchResult()
        body, problem = await self._get(url, token)
        result.pages = 1
        if problem:
            result.problem = problem
            return result
        assert body is not None
        if body["resourceType"] == "OperationOutcome":
            result.problem = "the FHIR server answered with an OperationOutcome"
            return result
        if body["resourceType"] != "Bundle":
            if "?" in relative:
                result.problem = f"the FHIR server answered a search with a {body['resourceType']}, not a Bundle"
            else:
                result.resources.append(body)
            return result
        return await self.follow(base, body, token, result)

    async def follow(self, base: str, bundle: Resource, token: str | None, result: FetchResult | None = None) -> FetchResult:
        """Collect a searchset Bundle and its next pages."""
        result = result or FetchResult(pages=1)
        seen: set[str] = set()
        while True:
            if bundle.get("type") not in ("searchset", None):
                result.problem = f"the FHIR server sent a Bundle of type '{bundle.get('type')}' for a search"
                return result
            result.resources.extend(bundle_resources(bundle))
            nxt = _next_link(bundle)
            if not nxt:
                return result
            if nxt in seen:
                result.problem = "the FHIR server's next links loop; results may be incomplete"
                return result
            if not _same_server(nxt, base):
                result.problem = "a next link pointed outside the FHIR server and was not followed; results may be incomplete"
                return result
            if result.pages >= self.max_pages:
                result.problem = f"more than {self.max_pages} pages of results; only the first {self.max_pages} were read"
                return result
            seen.add(nxt)
            body, problem = await self._get(nxt, token)
            result.pages += 1
            if problem:
                result.problem = f"{problem} (page {result.pages}); results may be incomplete"
                return result
            assert body is not None
            if body.get("resourceType") != "Bundle":
                result.problem = "a next page was not a Bundle; results may be incomplete"
                return result
            bundle = body


async def run_all(jobs: dict[str, Any], deadline: float) -> dict[str, FetchResult]:
    """Run the fetch coroutines concurrently; whatever is not done by the deadline is reported."""
    if not jobs:
        return {}
    tasks = {key: asyncio.ensure_future(coro) for key, coro in jobs.items()}
    done, pending = await asyncio.wait(tasks.values(), timeout=deadline)
    for task in pending:
        task.cancel()
    out: dict[str, FetchResult] = {}
    for key, task in tasks.items():
        if task in pending:
            out[key] = FetchResult(problem=f"the FHIR server did not answer within the {deadline:g} s deadline")
        elif task.exception() is not None:
            out[key] = FetchResult(problem=f"reading from the FHIR server failed ({type(task.exception()).__name__})")
        else:
            out[key] = task.result()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return out
