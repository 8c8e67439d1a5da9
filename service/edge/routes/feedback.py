"""POST /cds-services/{id}/feedback: validated whole, committed before the answer."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request

from cds_hooks.catalog import Service

from ...metrics import count_feedback
from ...settings import Settings
from ...store import DATABASE_ERRORS, StoreUnavailable
from ..auth import require_auth
from ..feedback import parse_feedback
from ..responses import JSONResponse, unknown_service
from .body import read_body

log = logging.getLogger("mbc_cds_hooks")


def router(settings: Settings, catalog: dict[str, Service]) -> APIRouter:
    api = APIRouter()

    @api.post("/cds-services/{service_id}/feedback", dependencies=[Depends(require_auth)])
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        if service_id not in catalog:
            return unknown_service(service_id)
        items = parse_feedback(await read_body(request, settings.max_body_bytes))  # RequestError: the app's handler answers
        try:
            new = await request.app.state.feedback.add(service_id, items)  # committed before the answer
        except DATABASE_ERRORS as exc:  # nothing was stored: say so, so the EHR sends it again
            raise StoreUnavailable(type(exc).__name__) from None
        count_feedback(service_id, (item.outcome for item in items))
        log.info("feedback stored", extra={"event": "feedback", "service": service_id, "items": len(items), "new": new})
        return JSONResponse({"stored": len(items)})

    return api
