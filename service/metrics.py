"""Prometheus metrics (GET /metrics), without patient data.

Labels are only service id, hook, HTTP status, outcome and rule code: all from fixed sets (an
unknown service id is counted as "unknown"), never a patient, user, URL or token.

With several worker processes, set PROMETHEUS_MULTIPROC_DIR to an empty writable directory
before start (``mbc-cds-hooks serve`` does it for MBC_WORKERS > 1): each worker writes its
figures there and every scrape sums them (prometheus-client multiprocess mode). Without it the
process's default registry is exposed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HOOK_REQUESTS = Counter("mbc_hook_requests", "CDS Hooks service calls by service, hook and HTTP status.", ["service", "hook", "status"])
HOOK_SECONDS = Histogram("mbc_hook_duration_seconds", "Time to answer a CDS Hooks service call.", ["service", "hook"])
FHIR_SECONDS = Histogram(
    "mbc_fhir_request_duration_seconds",
    "GET requests to EHR FHIR servers by outcome (ok, timeout, http-4xx, http-5xx, network, invalid); _count counts them.",
    ["outcome"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
CARDS = Counter("mbc_cards", "Cards returned, by service and rule code.", ["service", "rule"])
FEEDBACK = Counter("mbc_feedback", "Feedback items received, by service and outcome (accepted, overridden).", ["service", "outcome"])


def observe_fhir(outcome: str, seconds: float) -> None:
    FHIR_SECONDS.labels(outcome).observe(seconds)


@lru_cache(maxsize=4096)  # label sets come from fixed sets (service ids, rule codes, statuses): bounded
def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """A metric's labelled child, looked up once: ``labels()`` re-validates and hashes on every call."""
    return metric.labels(*labels)


def count_cards(service: str, rules: Iterable[str]) -> None:
    for rule in rules:
        _child(CARDS, service, rule).inc()


def count_feedback(service: str, outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        FEEDBACK.labels(service, outcome).inc()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (all workers' figures in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class HookMetricsMiddleware:
    """Counts and times ``POST /cds-services/{id}`` (pure ASGI: no per-request objects on other paths)."""

    def __init__(self, app: ASGIApp, hooks: Mapping[str, str]):
        self.app = app
        self.hooks = dict(hooks)  # service id -> hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith("/cds-services/"):
            await self.app(scope, receive, send)
            return
        service = path[len("/cds-services/"):]
        if "/" in service:  # feedback and anything deeper: not a hook call
            await self.app(scope, receive, send)
            return
        hook = self.hooks.get(service)
        labels = (service, hook) if hook else ("unknown", "unknown")
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _child(HOOK_SECONDS, *labels).observe(time.perf_counter() - started)
            _child(HOOK_REQUESTS, *labels, str(status)).inc()
