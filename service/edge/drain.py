"""Graceful drain on SIGTERM: stop being chosen before stopping to listen.

A balancer learns that a replica is going away only from its health checks (HAProxy, nginx, a
cloud load balancer) or, on Kubernetes, from the endpoint update that follows the pod's deletion.
If the replica stopped listening at once, calls sent in that window would be refused or cut
(issue 16 measured 1-3 lost calls out of ~14,000 per rolling restart). So on the first SIGTERM:

1. ``/readyz`` answers 503 ``draining`` at once, and every answer carries ``Connection: close``
   so keep-alive clients reconnect elsewhere;
2. calls are still accepted and answered for ``MBC_DRAIN_SECONDS``;
3. then uvicorn's own shutdown runs: it stops accepting, lets in-flight calls finish within
   ``MBC_SHUTDOWN_GRACE_SECONDS`` and runs the lifespan's shutdown.

How it hooks into uvicorn (0.54, ``uvicorn/server.py``): ``Server.serve`` installs its
``handle_exit`` with ``signal.signal`` for SIGINT and SIGTERM before it runs the lifespan, in every
server process (one worker, or each worker under the ``MBC_WORKERS`` > 1 supervisor, which forwards
SIGTERM to its workers). The lifespan wraps that SIGTERM handler and hands the signal on to it when
the drain period is over, so uvicorn's graceful shutdown and exit status stay unchanged. A second
SIGTERM, or SIGINT (Ctrl+C), goes straight to uvicorn. Nothing is installed off the main thread or
where no Python handler owns SIGTERM (tests running the app in-process).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mbc_cds_hooks")

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Whether this process has been asked to stop (read by /readyz and the middleware)."""

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the SIGTERM

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


def install(drain: Drain, seconds: float, loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """Wrap the running server's SIGTERM handler; return a function that puts it back, or None."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):  # SIG_DFL / SIG_IGN: no server owns SIGTERM here
        return None
    handover: Handler = previous

    def start(signum: int) -> None:  # on the event loop, right after the signal
        if drain.draining:  # a second SIGTERM: stop now
            handover(signum, None)
            return
        drain.begin()
        log.info("draining", extra={"event": "shutdown", "drain_seconds": seconds})
        loop.call_later(seconds, handover, signum, None)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # A signal handler does as little as possible: the loop does the rest (and the logging).
        loop.call_soon_threadsafe(start, signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, handover)

    return restore


class CloseWhileDraining:
    """While draining, every answer carries ``Connection: close``: a keep-alive client (an EHR's
    connection pool, kube-proxy's established flows) opens its next connection elsewhere instead
    of holding one to a replica that is about to stop. Pure ASGI: one attribute read per call."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, closing)
