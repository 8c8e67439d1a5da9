"""Operations: liveness, readiness and Prometheus metrics (no token: keep them inside the cluster)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds_hooks.knowledge import knowledge

from ...metrics import render
from ...store import StoreUnavailable
from ..responses import JSONResponse, error

READY_TIMEOUT_SECONDS = 2.0  # /readyz: a database slower than this counts as unreachable


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/healthz")
    async def healthz() -> JSONResponse:
        """Alive: the process answers HTTP."""
        return JSONResponse({"status": "ok"})

    @api.get("/readyz", responses={503: {"description": "Not ready: draining after SIGTERM, or a failed check; an OperationOutcome names it."}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready for traffic: not draining, settings valid and knowledge loaded (both at start-up), the database answers."""
        checks = {"settings": "ok", "knowledge": knowledge().version}
        if request.app.state.drain.draining:  # SIGTERM: the balancer must stop choosing this replica now
            return error(503, "not-ready", "Not ready: draining after SIGTERM; calls already sent are still answered.",
                         [{"field": "drain", "problem": "draining"}])
        try:
            await request.app.state.db.ping(READY_TIMEOUT_SECONDS)
            checks["database"] = "ok"
        except StoreUnavailable as exc:  # not connected since start-up: the reason, retried in the background
            return error(503, "not-ready", "Not ready: the database did not answer.",
                         [{"field": "database", "problem": f"unreachable ({exc})"}])
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return error(503, "not-ready", "Not ready: the database did not answer.",
                         [{"field": "database", "problem": f"unreachable ({type(exc).__name__})"}])
        return JSONResponse({"status": "ready", "checks": checks})

    @api.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format; labels carry no patient data."""
        body, content_type = render()
        return Response(body, media_type=content_type)

    return api
