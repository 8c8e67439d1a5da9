"""The FastAPI application: CDS Hooks discovery, service calls and feedback.

One shared httpx.AsyncClient lives for the life of the app (created in the lifespan), so every
hook call reuses its connection pool. Every error answer is JSON; none carries a stack trace.
"""

from __future__ import annotations

import gc
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_hooks.catalog import discovery, services
from cds_hooks.evaluate import evaluate
from cds_hooks.knowledge import knowledge
from mappings.build import build_picture

from .feedback import FeedbackStore, parse_feedback
from .fhir_client import FhirFetcher
from .hook_request import RequestError, parse_hook_request
from .prefetch import gather
from .settings import Settings, get_settings

log = logging.getLogger("mbc_cds_hooks")


class JSONResponse(Response):
    """orjson instead of the stdlib encoder: the card extension carries the whole picture."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, err: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": err, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    knowledge()  # fail at start-up on a broken knowledge file, not on the first call
    catalog = services()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        timeout = httpx.Timeout(settings.hook_deadline_seconds, connect=settings.fhir_connect_timeout_seconds)
        limits = httpx.Limits(max_connections=settings.fhir_max_connections, max_keepalive_connections=settings.fhir_max_connections)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            app.state.fetcher = FhirFetcher(client, settings.fhir_max_pages)
            app.state.feedback = FeedbackStore(settings.feedback_db)
            # Long-lived start-up objects move out of the collector's way (performance.md: gc tail).
            gc.collect()
            gc.freeze()
            log.info("service ready", extra={"event": "startup", "services": list(catalog)})
            try:
                yield
            finally:
                app.state.feedback.close()

    app = FastAPI(
        title="MBC CDS Hooks",
        version=knowledge().version,
        description="CDS Hooks 2.0 service for metastatic breast cancer.",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return error(exc.status_code, err, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", extra={"event": "error", "error": type(exc).__name__, "path": request.url.path})
        return error(500, "internal-error", "The service failed unexpectedly; the error was logged without patient data.")

    @app.get("/cds-services")
    async def discover() -> JSONResponse:
        return JSONResponse(discovery())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            raise RequestError(413, "too-large", f"The request body is larger than {settings.max_body_bytes} bytes.")
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            raise RequestError(413, "too-large", f"The request body is larger than {settings.max_body_bytes} bytes.")
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/fhir+json", ""):
            raise RequestError(415, "unsupported-media-type", "Send the hook request as application/json.")
        return body

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        service = catalog.get(service_id)
        if service is None:
            return error(404, "unknown-service", f"No CDS service with id '{service_id}'; see GET /cds-services.")
        try:
            body = await read_body(request)
            hook = parse_hook_request(body, service.hook)
            data = await gather(hook, service.queries, request.app.state.fetcher, settings.hook_deadline_seconds)
        except RequestError as exc:
            log.info("hook rejected", extra={"event": "hook", "service": service_id, "status": exc.status, "error": exc.error})
            return JSONResponse(exc.body(), status_code=exc.status)
        today = datetime.now(timezone.utc).date()
        picture = build_picture(data.resources, today=today)
        context = hook.context.model_dump()
        draft = context.get("draftOrders") or {}
        cards = evaluate(
            service.hook, picture, hook_instance=hook.request.hookInstance, today=today, max_cards=settings.max_cards,
            gaps=data.gaps, draft_entries=draft.get("entry") if isinstance(draft, dict) else None,
            selections=context.get("selections"),
        )
        log.info("hook answered", extra={
            "event": "hook", "service": service_id, "hook": service.hook, "status": 200, "cards": len(cards),
            "rules": [c["source"]["topic"]["code"] for c in cards], "resources": len(data.resources),
            "fetched": data.fetched, "gaps": [g.key for g in data.gaps],
            "fetch_ms": round(data.fetch_ms, 1), "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })
        return JSONResponse({"cards": cards})

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        if service_id not in catalog:
            return error(404, "unknown-service", f"No CDS service with id '{service_id}'; see GET /cds-services.")
        try:
            items = parse_feedback(await read_body(request))
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        stored = await request.app.state.feedback.add(service_id, items)
        log.info("feedback stored", extra={"event": "feedback", "service": service_id, "items": stored})
        return JSONResponse({"stored": stored})

    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory service.app:app_factory`` (used by workers)."""
    from .logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
