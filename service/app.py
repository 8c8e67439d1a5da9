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
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_hooks.catalog import discovery, services
from cds_hooks.evaluate import evaluate
from cds_hooks.knowledge import knowledge
from mappings.build import build_picture

from .auth import AuthFailed, Authenticator, require_auth, unauthorized
from .cors import JsonCORSMiddleware
from .feedback import FeedbackStore, parse_feedback
from .fhir_client import FetchLimits, FhirFetcher
from .hook_request import RequestError, parse_hook_request
from .prefetch import gather
from .metrics import HookMetricsMiddleware, count_cards, count_feedback, render
from .request_id import RequestIdMiddleware
from .schemas import HOOK_OPENAPI, HOOK_RESPONSES, request_components
from .settings import Settings, get_settings
from .store import SqlReplayStore, StoreUnavailable, open_database

log = logging.getLogger("mbc_cds_hooks")
READY_TIMEOUT_SECONDS = 2.0  # /readyz: a database slower than this counts as unreachable


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
    authenticator = Authenticator(settings)  # static JWK Sets load now: a broken one stops start-up

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        timeout = httpx.Timeout(settings.hook_deadline_seconds, connect=settings.fhir_connect_timeout_seconds)
        limits = httpx.Limits(max_connections=settings.fhir_max_connections, max_keepalive_connections=settings.fhir_max_connections)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            authenticator.start(client)  # JWK Set fetches share the pool, with their own short timeout
            app.state.fetcher = FhirFetcher(client, limits=FetchLimits(
                max_pages=settings.fhir_max_pages, retries=settings.fhir_retries,
                backoff_seconds=settings.fhir_backoff_seconds, max_response_bytes=settings.fhir_max_response_bytes,
                max_resources=settings.fhir_max_resources,
            ))
            url = settings.database_url.get_secret_value() if settings.database_url else None
            app.state.db = await open_database(url, settings.feedback_db, settings.database_pool_size)
            app.state.feedback = FeedbackStore(app.state.db)
            if settings.database_url or settings.workers > 1:
                # Several processes: a jti seen by one must be refused by all (README, Scale-out).
                authenticator.replay = SqlReplayStore(app.state.db)
            # Long-lived start-up objects move out of the collector's way (performance.md: gc tail).
            gc.collect()
            gc.freeze()
            log.info("service ready", extra={"event": "startup", "services": list(catalog)})
            try:
                yield
            finally:  # after uvicorn has drained in-flight calls (MBC_SHUTDOWN_GRACE_SECONDS); the client closes next
                await app.state.db.close()
                log.info("service stopped", extra={"event": "shutdown"})

    app = FastAPI(
        title="MBC CDS Hooks",
        version=knowledge().version,
        description="CDS Hooks 2.0 service for metastatic breast cancer.",
        lifespan=lifespan,
    )
    app.state.auth = authenticator
    app.add_exception_handler(AuthFailed, unauthorized)  # bare 401; inside CORS, so it carries the CORS headers
    app.add_middleware(
        JsonCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(HookMetricsMiddleware, hooks={sid: svc.hook for sid, svc in catalog.items()})
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer, CORS preflights too, carries the id

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return error(exc.status_code, err, str(exc.detail))

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("database unavailable", extra={"event": "store", "error": str(exc), "path": request.url.path})
        answer = error(503, "store-unavailable", "The service's database did not answer; nothing was stored. Retry shortly.")
        answer.headers["Retry-After"] = "5"
        return answer

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", extra={"event": "error", "error": type(exc).__name__, "path": request.url.path})
        return error(500, "internal-error", "The service failed unexpectedly; the error was logged without patient data.")

    @app.get("/cds-services", dependencies=[Depends(require_auth)])
    async def discover() -> JSONResponse:
        return JSONResponse(discovery())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Alive: the process answers HTTP."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "Not ready: a check failed (JSON names it)."}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready for traffic: settings valid and knowledge loaded (both at start-up), the database answers."""
        checks = {"settings": "ok", "knowledge": knowledge().version}
        try:
            await request.app.state.db.ping(READY_TIMEOUT_SECONDS)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["database"] = f"unreachable ({type(exc).__name__})"
            return JSONResponse({"status": "not-ready", "checks": checks}, status_code=503)
        return JSONResponse({"status": "ready", "checks": checks})

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format; labels carry no patient data."""
        body, content_type = render()
        return Response(body, media_type=content_type)

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

    @app.post("/cds-services/{service_id}", dependencies=[Depends(require_auth)],
              openapi_extra=HOOK_OPENAPI, responses=HOOK_RESPONSES)
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        service = catalog.get(service_id)
        if service is None:
            log.info("hook rejected", extra={"event": "hook", "service": None, "status": 404, "error": "unknown-service", "outcome": "rejected"})
            return error(404, "unknown-service", f"No CDS service with id '{service_id}'; see GET /cds-services.")
        try:
            body = await read_body(request)
            hook = parse_hook_request(body, service.hook, max_prefetch_resources=settings.max_prefetch_resources,
                                      max_draft_orders=settings.max_draft_orders)
            data = await gather(hook, service.queries, request.app.state.fetcher, settings.hook_deadline_seconds)
        except RequestError as exc:
            log.info("hook rejected", extra={
                "event": "hook", "service": service_id, "hook": service.hook, "status": exc.status, "error": exc.error,
                "outcome": "rejected", "cards": 0, "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            })
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
        rules = [c["source"]["topic"]["code"] for c in cards]
        log.info("hook answered", extra={
            "event": "hook", "service": service_id, "hook": service.hook, "status": 200, "cards": len(cards),
            "outcome": "data-incomplete" if "data-incomplete" in rules else "complete", "fhir_retries": data.retries,
            "rules": rules, "resources": len(data.resources),
            "fetched": data.fetched, "gaps": [g.key for g in data.gaps],
            "fetch_ms": round(data.fetch_ms, 1), "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })
        count_cards(service_id, rules)
        return JSONResponse({"cards": cards})

    @app.post("/cds-services/{service_id}/feedback", dependencies=[Depends(require_auth)])
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        if service_id not in catalog:
            return error(404, "unknown-service", f"No CDS service with id '{service_id}'; see GET /cds-services.")
        try:
            items = parse_feedback(await read_body(request))
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        try:
            new = await request.app.state.feedback.add(service_id, items)  # committed before the answer
        except Exception as exc:  # noqa: BLE001 - nothing was stored: say so, so the EHR sends it again
            raise StoreUnavailable(type(exc).__name__) from None
        count_feedback(service_id, (item.outcome for item in items))
        log.info("feedback stored", extra={"event": "feedback", "service": service_id, "items": len(items), "new": new})
        return JSONResponse({"stored": len(items)})

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the CDS Hooks request models the hook endpoint reads by hand."""
        if app.openapi_schema is None:
            base_openapi().setdefault("components", {}).setdefault("schemas", {}).update(request_components())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory service.app:app_factory`` (used by workers)."""
    from .logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
