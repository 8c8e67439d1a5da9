"""The FastAPI application: lifespan, middleware, error handlers, and the route groups.

One shared httpx.AsyncClient lives for the life of the app (created in the lifespan), so every
hook call reuses its connection pool. Every error answer is JSON; none carries a stack trace.
The routes live in ``routes/`` by group (hooks, feedback, ops); this module only assembles them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_hooks.catalog import services
from cds_hooks.knowledge import knowledge
from cds_hooks.overrides import check as check_override_reasons

from ..fhir_client import FetchLimits, FhirFetcher
from ..metrics import HookMetricsMiddleware
from ..settings import Settings, get_settings
from ..store import SqlReplayStore, StoreUnavailable, open_database, open_replay_database
from .auth import AuthFailed, Authenticator, unauthorized
from .cors import JsonCORSMiddleware
from .drain import CloseWhileDraining, Drain
from .drain import install as install_drain
from .feedback import FeedbackStore
from .request_id import RequestIdMiddleware
from .hook_request import validation_details
from .responses import JSONResponse, RequestError, error
from .routes import feedback as feedback_routes
from .routes import hooks as hook_routes
from .routes import ops as ops_routes
from .schemas import request_components

log = logging.getLogger("mbc_cds_hooks")


# FastAPI 0.163's built-in OpenTelemetry (fastapi/telemetry) turns itself on as soon as any library
# installs a global OpenTelemetry SDK provider, or FASTAPI_OTEL_AUTO_CONFIGURE=true: its spans carry
# url.path and url.query (patient ids in FHIR-style URLs) and its log records carry exception messages
# and stack traces. Off, explicitly, whatever the environment: operations get Prometheus metrics and
# PHI-free JSON logs instead (README, Telemetry). Also keeps its per-request check off the hot path.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                                  "auto_configure": False}


def _lifespan(settings: Settings, authenticator: Authenticator, catalog: dict[str, Any]):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
            # A PostgreSQL that does not answer yet leaves the replica up and not ready (store.DeferredDatabase).
            app.state.db = await open_database(url, settings.feedback_db, settings.database_pool_size, wait=False)
            app.state.feedback = FeedbackStore(app.state.db)
            if settings.viewer_enabled:
                from ..viewer.sessions import SessionStore

                key = settings.viewer_session_key.get_secret_value().encode() if settings.viewer_session_key else None
                app.state.viewer_sessions = SessionStore(app.state.db, key)
            # Used jtis live in the database, never only in memory: a restart must not accept a used
            # token again, and every worker and replica must refuse what one has seen (README, Authentication).
            replay_db = await open_replay_database(app.state.db, settings.feedback_db)
            authenticator.replay = SqlReplayStore(replay_db)
            # Long-lived start-up objects move out of the collector's way (performance.md: gc tail).
            gc.collect()
            gc.freeze()
            restore_sigterm = install_drain(app.state.drain, settings.drain_seconds, asyncio.get_running_loop())
            log.info("service ready", extra={"event": "startup", "services": list(catalog)})
            try:
                yield
            finally:  # after uvicorn has drained in-flight calls (MBC_SHUTDOWN_GRACE_SECONDS); the client closes next
                if restore_sigterm:
                    restore_sigterm()
                if replay_db is not app.state.db:
                    await replay_db.close()
                await app.state.db.close()
                log.info("service stopped", extra={"event": "shutdown"})

    return lifespan


def _error_handlers(app: FastAPI) -> None:
    """Every error answer goes through responses.error(): a FHIR OperationOutcome with our error code."""
    app.add_exception_handler(AuthFailed, unauthorized)  # bare 401; inside CORS, so it carries the CORS headers

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Query or path parameters of a route (the hook and feedback bodies are parsed by hand): 400, not 422.
        return error(400, "invalid-request", "The request has invalid parameters.", validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        problem = f"{request.method} {request.url.path[:200]}: {exc.detail}"
        return error(exc.status_code, err, str(exc.detail), [{"problem": problem}], headers=exc.headers)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("database unavailable", extra={"event": "store", "error": str(exc), "path": request.url.path})
        return error(503, "store-unavailable", "The service's database did not answer; nothing was stored. Retry shortly.",
                     [{"problem": "database unavailable; retry after 5 s"}], headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", extra={"event": "error", "error": type(exc).__name__, "path": request.url.path})
        return error(500, "internal-error", "The service failed unexpectedly; the error was logged without patient data.")


def _middleware(app: FastAPI, settings: Settings, catalog: dict[str, Any]) -> None:
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
    app.add_middleware(RequestIdMiddleware)  # every answer, CORS preflights too, carries the id
    app.add_middleware(CloseWhileDraining, drain=app.state.drain)  # outermost: after SIGTERM every answer closes


def _openapi(app: FastAPI) -> None:
    """FastAPI's document plus the CDS Hooks request models the hook endpoint reads by hand."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            base_openapi().setdefault("components", {}).setdefault("schemas", {}).update(request_components())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    knowledge()  # fail at start-up on a broken knowledge file, not on the first call
    check_override_reasons()
    catalog = services()
    authenticator = Authenticator(settings)  # static JWK Sets load now: a broken one stops start-up
    app = FastAPI(
        title="MBC CDS Hooks",
        version=knowledge().version,
        description="CDS Hooks 2.0 service for metastatic breast cancer.",
        lifespan=_lifespan(settings, authenticator, catalog),
        telemetry=TELEMETRY_OFF,
    )
    app.state.auth = authenticator
    app.state.drain = Drain()
    _error_handlers(app)
    _middleware(app, settings, catalog)
    app.include_router(hook_routes.router(settings, catalog))
    app.include_router(feedback_routes.router(settings, catalog))
    app.include_router(ops_routes.router())
    if settings.viewer_enabled:
        from ..viewer import routes as viewer_routes

        app.include_router(viewer_routes.router(settings))
    _openapi(app)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory service.edge.app:app_factory`` (used by workers)."""
    from ..logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
