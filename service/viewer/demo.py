"""``mbc-cds-hooks viewer``: the same page on 127.0.0.1 with one patient's data, without an EHR.

For integrators and reviewers: the page, the payload and the mapping are the service's own; only
the data source differs (a file, or a FHIR server read with a token given on the command line).
Binds the loopback interface only: the page shows patient data and has no login.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import date

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response

from ..edge.hook_request import RequestError
from ..edge.responses import JSONResponse, error
from .data import PatientData, payload
from .routes import PREFIX, static_router

Source = Callable[[], Awaitable[PatientData]]


def demo_app(source: Source, *, patient: str, fhir_server: str | None, today: Callable[[], date]) -> FastAPI:
    app = FastAPI(title="MBC timeline (local demo)", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(static_router())

    @app.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.post(f"{PREFIX}/api/picture")
    async def picture() -> Response:
        try:
            data = await source()
        except RequestError as exc:
            return error(exc.status, exc.error, exc.message, exc.details)
        return JSONResponse(payload(data, today=today(), fhir_server=fhir_server, patient=patient, mode="demo"))

    return app


def loopback_socket(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: any free port), so the URL is known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts: the printed URL works at once
    return sock
