"""The load an EHR puts on the service during a rolling restart: signed hook calls and feedback.

``concurrency`` callers share one keep-alive connection pool (as an EHR's HTTP client would). Each
call carries its own JWT (fresh ``jti``, ``aud`` = the URL called); every ``feedback_every``-th
call of a caller is a feedback post naming a card id used once, so the store can be checked for
exactly-once. Every call is recorded: when it started, how long it took, the status (0 when no
HTTP answer came back) and the exception type if any. An httpx client costs about 1.4 ms per call
(performance.md), so this measures "no call lost" and latency under load, not peak throughput.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

from service.kit.hook_client import Signer

HOOK_PATH = "/cds-services/mbc-patient-view"
FEEDBACK_PATH = HOOK_PATH + "/feedback"


@dataclass(frozen=True)
class Call:
    kind: str  # "hook" or "feedback"
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer
    error: str = ""
    card: str = ""  # feedback: the card id posted


@dataclass
class Load:
    calls: list[Call] = field(default_factory=list)

    def failures(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if (kind is None or c.kind == kind) and c.status != 200]

    def stored_cards(self) -> list[str]:
        return [c.card for c in self.calls if c.kind == "feedback" and c.status == 200]


def run_in_thread(base_url: str, signer: Signer, hook_body: dict[str, Any], stop: threading.Event,
                  concurrency: int = 8, feedback_every: int = 10) -> tuple[threading.Thread, Load]:
    """Start the load in a thread of its own (its own event loop); it ends when ``stop`` is set."""
    load = Load()
    body = orjson.dumps(hook_body)

    async def caller(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            if i % feedback_every == 0:
                card = f"scaleout-{n}-{i}"
                payload = orjson.dumps({"feedback": [{"card": card, "outcome": "overridden",
                                                      "outcomeTimestamp": datetime.now(timezone.utc).isoformat()}]})
                kind, path = "feedback", FEEDBACK_PATH
            else:
                card, payload, kind, path = "", body, "hook", HOOK_PATH
            url = base_url + path
            headers = {"Authorization": f"Bearer {signer.token(url)}", "Content-Type": "application/json"}
            started = time.monotonic()
            try:
                response = await client.post(url, content=payload, headers=headers)
                status, error = response.status_code, ""
                if status == 200 and kind == "hook" and "cards" not in response.json():
                    status, error = 599, "no cards in a 200 answer"  # counted as a failure
            except httpx.HTTPError as exc:
                status, error = 0, type(exc).__name__
            load.calls.append(Call(kind, started, time.monotonic() - started, status, error, card))

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=15, limits=limits) as client:
            await asyncio.gather(*(caller(client, n) for n in range(concurrency)))

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="ehr-load", daemon=True)
    thread.start()
    return thread, load


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the inclusive method; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def figures(calls: list[Call], windows: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """Calls, failures, calls per second and p50/p99 in ms, of all calls or of those started in ``windows``."""
    chosen = calls if windows is None else [c for c in calls if any(a <= c.started <= b for a, b in windows)]
    span = (max(c.started + c.seconds for c in chosen) - min(c.started for c in chosen)) if chosen else 0.0
    ms = [c.seconds * 1000 for c in chosen]
    return {"calls": len(chosen), "failures": sum(c.status != 200 for c in chosen),
            "per_second": len(chosen) / span if span else 0.0, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
