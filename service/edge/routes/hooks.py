"""CDS Hooks discovery and service calls: request in, prefetch or fetch, picture, cards out."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from importlib import metadata

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cds_hooks.cards import visible_rules
from cds_hooks.catalog import Service, discovery
from cds_hooks.economy import Limits
from cds_hooks.evaluate import evaluate
from mappings.build import build_picture

from ...metrics import count_cards
from ...settings import Settings
from ...viewer.routes import launch_url
from ..auth import require_auth
from ..hook_request import RequestError, parse_hook_request
from ..prefetch import gather
from ..responses import JSONResponse, unknown_service
from ..schemas import HOOK_OPENAPI, HOOK_RESPONSES
from .body import read_body

log = logging.getLogger("mbc_cds_hooks")

# Discovery changes only with a deployment: a client may reuse it for 5 minutes, then revalidates
# with If-None-Match (a 304 costs no body). "private": the answer follows an authenticated request.
DISCOVERY_CACHE_CONTROL = "private, max-age=300, must-revalidate"


def service_version() -> str | None:
    """This service's release, from the installed package metadata (pyproject.toml version)."""
    try:
        return metadata.version("mbc-cds-hooks")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return None


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: "*" or any listed tag, compared weakly (a W/ prefix does not matter)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in (t[2:] if t.startswith("W/") else t for t in tags)


def router(settings: Settings, catalog: dict[str, Service]) -> APIRouter:
    api = APIRouter()
    limits = Limits(max_cards=settings.max_cards, max_card_chars=settings.max_detail_chars_per_card,
                    max_answer_chars=settings.max_detail_chars_per_answer)

    document = orjson.dumps(discovery(service_version()))  # static: built once, with its validator
    etag = '"' + hashlib.sha256(document).hexdigest()[:32] + '"'
    cache = {"ETag": etag, "Cache-Control": DISCOVERY_CACHE_CONTROL}

    @api.get("/cds-services", dependencies=[Depends(require_auth)])
    async def discover(request: Request) -> Response:
        """Discovery, with an ETag so an EHR can re-discover cheaply (If-None-Match -> 304, cds-hooks/docs#204)."""
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=cache)
        return Response(document, media_type="application/json", headers=cache)

    @api.post("/cds-services/{service_id}", dependencies=[Depends(require_auth)],
              openapi_extra=HOOK_OPENAPI, responses=HOOK_RESPONSES)
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        service = catalog.get(service_id)
        if service is None:
            log.info("hook rejected", extra={"event": "hook", "service": None, "status": 404, "error": "unknown-service", "outcome": "rejected"})
            return unknown_service(service_id)
        try:
            body = await read_body(request, settings.max_body_bytes)
            hook = parse_hook_request(body, service.hook, max_prefetch_resources=settings.max_prefetch_resources,
                                      max_draft_orders=settings.max_draft_orders)
            data = await gather(hook, service.queries, request.app.state.fetcher, settings.hook_deadline_seconds)
        except RequestError as exc:
            log.info("hook rejected", extra={
                "event": "hook", "service": service_id, "hook": service.hook, "status": exc.status, "error": exc.error,
                "outcome": "rejected", "cards": 0, "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            })
            return exc.response()
        today = datetime.now(timezone.utc).date()
        picture = build_picture(data.resources, today=today)
        context = hook.context.model_dump()
        draft = context.get("draftOrders") or {}
        cards = evaluate(
            service.hook, picture, hook_instance=hook.request.hookInstance, today=today, limits=limits,
            gaps=data.gaps, draft_entries=draft.get("entry") if isinstance(draft, dict) else None,
            selections=context.get("selections"),
            viewer_url=launch_url(settings, request) if settings.viewer_enabled and service.hook == "patient-view" else None,
            action_selection=request.app.state.auth.supports_action_selection(getattr(request.state, "jwt_claims", None)),
        )
        rules = visible_rules(cards)  # merged and overflow rules count too
        log.info("hook answered", extra={
            "event": "hook", "service": service_id, "hook": service.hook, "status": 200, "cards": len(cards),
            "outcome": "data-incomplete" if "data-incomplete" in rules else "complete", "fhir_retries": data.retries,
            "rules": rules, "resources": len(data.resources),
            "fetched": data.fetched, "gaps": [g.key for g in data.gaps],
            "fetch_ms": round(data.fetch_ms, 1), "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })
        count_cards(service_id, rules)
        return JSONResponse({"cards": cards})

    return api
