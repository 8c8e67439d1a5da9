"""The drain's two halves alone: the SIGTERM hand-over to the server's own handler, and what the app
answers while draining. (tests/test_ops.py runs the whole through `serve`, one and two workers;
tests/test_scaleout.py behind HAProxy.)"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

from fastapi.testclient import TestClient

from service.edge.drain import Drain, install
from tests.support.conformance import error_code, error_fields


async def test_sigterm_drains_first_then_hands_over_and_a_second_sigterm_stops_at_once() -> None:
    received: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:  # stands for uvicorn's Server.handle_exit
        received.append(signum)

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        drain = Drain()
        restore = install(drain, 0.3, asyncio.get_running_loop())
        assert restore is not None
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert drain.draining and received == []  # not ready, still serving
        await asyncio.sleep(0.4)
        assert received == [signal.SIGTERM]  # the drain period is over: the server shuts down

        again = Drain()
        restore()
        assert signal.getsignal(signal.SIGTERM) is server_handler
        restore = install(again, 30, asyncio.get_running_loop())
        assert restore is not None
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        signal.raise_signal(signal.SIGTERM)  # an impatient operator: stop now
        await asyncio.sleep(0.05)
        assert again.draining and received == [signal.SIGTERM, signal.SIGTERM]
        restore()
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_nothing_is_installed_without_a_server_handler_or_with_drain_off() -> None:
    loop = asyncio.get_running_loop()
    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert install(Drain(), 5, loop) is None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        signal.signal(signal.SIGTERM, lambda *_: None)
        assert install(Drain(), 0, loop) is None
    finally:
        signal.signal(signal.SIGTERM, original)


def test_while_draining_readyz_is_503_and_every_answer_closes_its_connection(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").headers.get("connection") != "close"
    client.app.state.drain.begin()  # type: ignore[attr-defined]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and error_code(ready) == "not-ready" and error_fields(ready) == {"drain"}
    assert ready.headers["connection"] == "close"
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.headers["connection"] == "close"  # alive: not restarted by a liveness probe
    assert client.get("/cds-services").headers["connection"] == "close"
