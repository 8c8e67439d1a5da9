"""Reading the EHR's FHIR server: concurrent searches on one shared client, paged, bounded.

Every failure becomes a short reason string (never an exception out of this module), so the hook
can still answer with what it has and say what could not be checked. Every bound (the hook's
deadline, retries, bytes per response, pages and resources per query) ends the same way: stop,
keep what was read, say why in ``FetchResult.problem``. Nothing here logs: URLs carry patient ids.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from .metrics import observe_fhir

Resource = dict[str, Any]

# Transient by nature; 400/401/403/404 and the rest of 4xx will answer the same again.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MIN_ATTEMPT_SECONDS = 0.1  # a retry that would start later than this before the deadline is pointless
_BACKSTOP_SECONDS = 0.25  # run_all's last resort, past the deadline the fetchers keep themselves
_MAX_WAIT_SECONDS = 10.0  # a longer Retry-After is not waited for, even without a deadline


@dataclass(frozen=True)
class FetchLimits:
    max_pages: int = 20
    retries: int = 2
    backoff_seconds: float = 0.2
    max_response_bytes: int = 50_000_000
    max_resources: int = 20_000


@dataclass(frozen=True)
class Budget:
    """The hook's one deadline, shared by every request, page and retry of one call."""

    seconds: float
    until: float  # time.monotonic()

    @classmethod
    def start(cls, seconds: float) -> Budget:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.until - time.monotonic()

    def expired(self) -> str:
        return f"the FHIR server did not answer within the {self.seconds:g} s deadline"


@dataclass
class FetchResult:
    resources: list[Resource] = field(default_factory=list)
    problem: str | None = None  # why the data is missing or incomplete; None when complete
    pages: int = 0
    retries: int = 0
    status: int | None = None  # HTTP status of a refused first request (401: token refused), else None


@dataclass
class _Answer:
    """One GET's outcome; ``retryable`` answers go round again while retries and time remain."""

    body: Resource | None = None
    problem: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    outcome: str = "ok"  # metrics label: ok, timeout, http-4xx, http-5xx, network, invalid
    status: int | None = None  # HTTP status of a non-2xx answer


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: SplitResult) -> tuple[str, str, int | None, str]:
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: never the same server
        port = -1
    return scheme, (parts.hostname or "").lower(), port, parts.username or ""


def _same_server(url: str, base: str) -> bool:
    """A next link is followed only on the server the EHR named: the token must not leak elsewhere.

    Same scheme, host, port and user, and a path under the base path at a segment boundary:
    ``https://ehr/fhir-other`` is not under ``https://ehr/fhir``.
    """
    a, b = urlsplit(url), urlsplit(base)
    if _origin(a) != _origin(b) or _origin(a)[2] == -1:
        return False
    root = b.path.rstrip("/")
    return a.path == root or a.path.startswith(root + "/")


def _next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def bundle_resources(bundle: Resource) -> list[Resource]:
    out = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            out.append(entry["resource"])
    return out


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _status_problem(status: int) -> str:
    if status in (401, 403):
        return f"the FHIR server refused access (HTTP {status})"
    if status == 429:
        return "the FHIR server is rate limiting (HTTP 429)"
    return f"the FHIR server answered HTTP {status}"


class FhirFetcher:
    def __init__(self, client: httpx.AsyncClient, limits: FetchLimits | None = None):
        self.client = client
        self.limits = limits or FetchLimits()

    async def _read_capped(self, response: httpx.Response) -> bytes | None:
        """The body, or None past the byte bound: a 60 MB page must not be buffered whole first."""
        cap = self.limits.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return None
        buf = bytearray()
        async for chunk in response.aiter_bytes():
            buf += chunk
            if len(buf) > cap:
                return None
        return bytes(buf)

    async def _exchange(self, url: str, headers: dict[str, str]) -> _Answer:
        """One GET, timed and counted by outcome (mbc_fhir_request_duration_seconds)."""
        started = time.perf_counter()
        outcome = "timeout"  # unless answered: cancelled by the hook's deadline
        try:
            answer = await self._exchange_once(url, headers)
            outcome = answer.outcome
            return answer
        finally:
            observe_fhir(outcome, time.perf_counter() - started)

    async def _exchange_once(self, url: str, headers: dict[str, str]) -> _Answer:
        try:
            async with self.client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status >= 300:
                    return _Answer(problem=_status_problem(status), retryable=status in _RETRY_STATUS,
                                   retry_after=_retry_after(response.headers.get("retry-after")), status=status,
                                   outcome="http-5xx" if status >= 500 else "http-4xx" if status >= 400 else "invalid")
                content = await self._read_capped(response)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return _Answer(problem=f"the FHIR server could not be reached ({type(exc).__name__})", retryable=True, outcome="network")
        except httpx.TimeoutException:
            return _Answer(problem="the FHIR server did not answer in time", retryable=True, outcome="timeout")
        except httpx.TransportError as exc:
            return _Answer(problem=f"the connection to the FHIR server broke off ({type(exc).__name__})", retryable=True, outcome="network")
        except Exception as exc:  # invalid URL or header, decoding error: the same again on a retry
            return _Answer(problem=f"the FHIR server could not be read ({type(exc).__name__})", outcome="invalid")
        if content is None:
            mb = self.limits.max_response_bytes / 1_000_000
            return _Answer(problem=f"a response was larger than {mb:g} MB and was not read", outcome="invalid")
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return _Answer(problem="the FHIR server sent a response that is not JSON", outcome="invalid")
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return _Answer(problem="the FHIR server sent JSON that is not a FHIR resource", outcome="invalid")
        return _Answer(body=body)

    async def _attempt(self, url: str, headers: dict[str, str], budget: Budget | None) -> _Answer:
        if budget is None:
            return await self._exchange(url, headers)
        try:
            async with asyncio.timeout(max(budget.remaining(), 0.0)):
                return await self._exchange(url, headers)
        except TimeoutError:
            return _Answer(problem=budget.expired())

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter; a Retry-After longer than that wins."""
        backoff = self.limits.backoff_seconds * 2 ** (state.attempt_number - 1) * random.uniform(0.5, 1.0)
        answer = state.outcome.result() if state.outcome and not state.outcome.failed else None
        return max(backoff, (answer.retry_after or 0.0) if answer else 0.0)

    async def _get(self, url: str, token: str | None, budget: Budget | None, result: FetchResult) -> _Answer:
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"

        def out_of_time(state: RetryCallState) -> bool:
            if state.upcoming_sleep > _MAX_WAIT_SECONDS:
                return True
            return budget is not None and state.upcoming_sleep + _MIN_ATTEMPT_SECONDS >= budget.remaining()

        retrying = AsyncRetrying(
            # tenacity annotates stop_base.__or__ as taking a stop_base only; stop_any calls any
            # callable(RetryCallState) -> bool, which is what AsyncRetrying's own stop= accepts.
            stop=stop_after_attempt(self.limits.retries + 1) | out_of_time,  # type: ignore[operator]
            wait=self._wait,
            retry=retry_if_result(lambda answer: answer.retryable),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else _Answer(problem="no attempt"),
        )
        answer: _Answer = await retrying(self._attempt, url, headers, budget)
        attempts = int(retrying.statistics.get("attempt_number", 1))
        result.retries += attempts - 1
        if answer.problem and answer.retry_after is not None:
            answer.problem += f", Retry-After {answer.retry_after:g} s"
        if answer.problem and attempts > 1:
            answer.problem += f" ({attempts} attempts)"
        return answer

    async def read(self, base: str, relative: str, token: str | None, budget: Budget | None = None) -> FetchResult:
        """A query: an instance read (Type/id) or a search, following next links up to the bounds."""
        url = f"{base}/{relative}"
        result = FetchResult(pages=1)
        answer = await self._get(url, token, budget, result)
        if answer.problem:
            result.problem, result.status = answer.problem, answer.status
            return result
        body = answer.body
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
        return await self.follow(base, body, token, result, budget=budget, first_url=url)

    async def follow(self, base: str, bundle: Resource, token: str | None, result: FetchResult | None = None,
                     budget: Budget | None = None, first_url: str | None = None) -> FetchResult:
        """Collect a searchset Bundle and its next pages."""
        result = result or FetchResult(pages=1)
        limits = self.limits
        seen: set[str] = {first_url} if first_url else set()
        while True:
            if bundle.get("type") not in ("searchset", None):
                result.problem = f"the FHIR server sent a Bundle of type '{bundle.get('type')}' for a search"
                return result
            page = bundle_resources(bundle)
            room = limits.max_resources - len(result.resources)
            if len(page) > room:
                result.resources.extend(page[:max(room, 0)])
                result.problem = f"more than {limits.max_resources} resources for one query; only the first {limits.max_resources} were read"
                return result
            result.resources.extend(page)
            nxt = _next_link(bundle)
            if not nxt:
                return result
            if nxt in seen:
                result.problem = "the FHIR server's next links loop; results may be incomplete"
                return result
            if not _same_server(nxt, base):
                result.problem = "a next link pointed outside the FHIR server and was not followed; results may be incomplete"
                return result
            if result.pages >= limits.max_pages:
                result.problem = f"more than {limits.max_pages} pages of results; only the first {limits.max_pages} were read"
                return result
            seen.add(nxt)
            answer = await self._get(nxt, token, budget, result)
            result.pages += 1
            if answer.problem:
                result.problem = f"{answer.problem} (page {result.pages}); results may be incomplete"
                return result
            assert answer.body is not None
            if answer.body.get("resourceType") != "Bundle":
                result.problem = "a next page was not a Bundle; results may be incomplete"
                return result
            bundle = answer.body


async def run_all(jobs: dict[str, Any], deadline: float) -> dict[str, FetchResult]:
    """Run the fetch coroutines concurrently.

    The fetchers stop themselves at the deadline (keeping what they read); waiting a little
    longer here only catches one that did not, which is then reported with nothing kept.
    """
    if not jobs:
        return {}
    tasks = {key: asyncio.ensure_future(coro) for key, coro in jobs.items()}
    done, pending = await asyncio.wait(tasks.values(), timeout=deadline + _BACKSTOP_SECONDS)
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
