"""The viewer's HTTP routes: the page, the SMART launch and callback, and the picture API.

Mounted by ``create_app`` only when ``MBC_VIEWER_ENABLED``. The viewer needs no CDS Hooks JWT (a
browser navigation cannot carry one): the SMART launch is its authorization, and the service reads
FHIR only from servers on ``MBC_VIEWER_FHIR_SERVERS``. Nothing logged names the patient or a token.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import orjson
from authlib.common.security import generate_token
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..edge.hook_request import RequestError
from ..edge.responses import JSONResponse, error
from ..edge.routes.body import read_body
from ..settings import Settings
from .data import payload, read_patient
from .sessions import LAUNCH, SESSION, SessionStore
from .smart import authorization_url, discover, exchange_code

log = logging.getLogger("mbc_cds_hooks")

PREFIX = "/viewer"
LAUNCH_PATH = f"{PREFIX}/launch"
CALLBACK_PATH = f"{PREFIX}/callback"
COOKIE = "mbc_viewer_session"
LAUNCH_COOKIE = "mbc_viewer_launch"  # binds a launch's state to the browser that started it (no login CSRF)
LAUNCH_SECONDS = 600  # from the redirect to the authorization server until its callback
MAX_API_BODY = 4096
# Everything from this origin, nothing from outside (hospitals run offline); no inline script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'")
_STATIC = {"index.html": "text/html; charset=utf-8", "viewer.js": "text/javascript; charset=utf-8",
           "viewer.css": "text/css; charset=utf-8"}


def public_base(settings: Settings, request: Request) -> str:
    return settings.public_base_url or str(request.base_url).rstrip("/")


def launch_url(settings: Settings, request: Request) -> str:
    """The summary card's ``smart`` link: the EHR opens it with ``iss`` and ``launch``."""
    return public_base(settings, request) + LAUNCH_PATH


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def static_router() -> APIRouter:
    """The page and its two files; shared with the local demo (``mbc-cds-hooks viewer``)."""
    api = APIRouter(include_in_schema=False)
    files = {name: _asset(name) for name in _STATIC}  # read once: the package's files do not change

    def send(name: str) -> Response:
        return Response(files[name], media_type=_STATIC[name],
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})

    @api.get(PREFIX)
    async def bare() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @api.get(f"{PREFIX}/")
    async def page() -> Response:
        return send("index.html")

    @api.get(f"{PREFIX}/static/{{name}}")
    async def asset(name: str) -> Response:
        if name not in files or name == "index.html":
            return error(404, "not-found", f"No viewer file '{name}'.")
        return send(name)

    return api


class PictureRequest(BaseModel):
    """Body of ``POST /viewer/api/picture``. With a session cookie both fields are optional (the
    launch fixed them); with ``Authorization: Bearer`` (a SMART client of the integrator's own)
    both are required."""

    model_config = ConfigDict(extra="forbid")
    fhirServer: str | None = Field(None, max_length=2048)
    patient: str | None = Field(None, pattern=r"^[A-Za-z0-9\-.]{1,64}$")


def parse_picture_request(body: bytes) -> PictureRequest:
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise RequestError(400, "invalid-json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise RequestError(400, "invalid-request", "The body must be a JSON object.")
    try:
        return PictureRequest.model_validate(data)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]} for e in exc.errors()]
        raise RequestError(400, "invalid-request", "The body does not fit the picture request.", details) from None


def _normal(url: str) -> str:
    return url.strip().rstrip("/")


def _allowed(settings: Settings, server: str) -> str:
    base = _normal(server)
    if base not in settings.viewer_fhir_servers:
        raise RequestError(403, "fhir-server-not-allowed",
                           "This FHIR server is not on the viewer's allow-list (MBC_VIEWER_FHIR_SERVERS); the service does not call it.")
    return base


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "invalid-authorization", "Send the FHIR access token as 'Authorization: Bearer <token>'.")
    return token.strip()


def _cookie(response: Response, settings: Settings, request: Request, name: str, value: str, max_age: int, path: str) -> None:
    # Cross-site frames (an EHR embedding the viewer) need SameSite=None, which browsers accept only with Secure (https).
    secure = public_base(settings, request).startswith("https:")
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, secure=secure, samesite="none" if secure else "lax")


def router(settings: Settings) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    api.include_router(static_router())

    def store(request: Request) -> SessionStore:
        sessions: SessionStore = request.app.state.viewer_sessions
        return sessions

    @api.get(LAUNCH_PATH)
    async def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
        """EHR launch (``iss`` + ``launch``) or standalone launch (``iss`` alone, or none with one allowed server)."""
        try:
            if launch is not None and (not launch or len(launch) > 4096):
                raise RequestError(400, "invalid-launch", "The launch parameter is empty or too long.")
            if iss is None:
                if launch is not None or len(settings.viewer_fhir_servers) != 1:
                    raise RequestError(400, "missing-iss", "Give iss=<FHIR base URL>, one of the viewer's allowed FHIR servers.")
                iss = settings.viewer_fhir_servers[0]
            base = _allowed(settings, iss)
            server = await discover(request.app.state.fetcher.client, base, settings.hook_deadline_seconds)
            state, verifier = generate_token(43), generate_token(64)  # authlib's CSPRNG tokens; 64 chars: RFC 7636 allows 43-128
            redirect_uri = public_base(settings, request) + CALLBACK_PATH
            await store(request).put(LAUNCH, {"iss": base, "tokenEndpoint": server.token_endpoint, "verifier": verifier,
                                              "redirectUri": redirect_uri}, LAUNCH_SECONDS, handle=state)
            url = authorization_url(settings, server, redirect_uri, state=state, code_verifier=verifier, launch=launch)
        except RequestError as exc:
            log.info("viewer launch refused", extra={"event": "viewer", "step": "launch", "status": exc.status, "error": exc.error})
            return error(exc.status, exc.error, exc.message, exc.details)
        log.info("viewer launch", extra={"event": "viewer", "step": "launch", "status": 302, "ehr_launch": launch is not None})
        response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
        _cookie(response, settings, request, LAUNCH_COOKIE, state, LAUNCH_SECONDS, CALLBACK_PATH)
        return response

    @api.get(CALLBACK_PATH)
    async def callback(request: Request, code: str | None = None, state: str | None = None) -> Response:
        error_code = request.query_params.get("error")  # RFC 6749 4.1.2.1: the user or server refused
        try:
            if not state:
                raise RequestError(400, "missing-state", "The authorization answer has no state: open the viewer again from the EHR.")
            started_here = hmac.compare_digest(request.cookies.get(LAUNCH_COOKIE, ""), state)
            pending = await store(request).take(LAUNCH, state)
            if error_code:
                raise RequestError(403 if error_code == "access_denied" else 400, "authorization-refused",
                                   f"The authorization server did not authorize the viewer ({error_code[:64]}).")
            if pending is None:
                raise RequestError(400, "unknown-launch", "This launch is unknown, used or older than 10 minutes: open the viewer again.")
            if not started_here:
                raise RequestError(400, "launch-not-from-this-browser", "This answer belongs to a launch started in another browser: open the viewer again.")
            if not code:
                raise RequestError(400, "missing-code", "The authorization answer has no code.")
            token = await exchange_code(settings, pending["tokenEndpoint"], pending["redirectUri"], code, pending["verifier"],
                                        settings.hook_deadline_seconds)
            expires = str(token.get("expires_in", "")).split(".")[0]
            ttl = min(settings.viewer_session_seconds, int(expires)) if expires.isdigit() and int(expires) > 0 \
                else settings.viewer_session_seconds
            handle = await store(request).put(SESSION, {"iss": pending["iss"], "patient": token["patient"],
                                                        "accessToken": token["access_token"], "scope": token.get("scope", "")}, ttl)
        except RequestError as exc:
            log.info("viewer callback refused", extra={"event": "viewer", "step": "callback", "status": exc.status, "error": exc.error})
            return error(exc.status, exc.error, exc.message, exc.details)
        response = RedirectResponse(f"{PREFIX}/", status_code=303, headers={"Cache-Control": "no-store"})
        _cookie(response, settings, request, COOKIE, handle, ttl, PREFIX)
        response.delete_cookie(LAUNCH_COOKIE, path=CALLBACK_PATH)
        log.info("viewer session", extra={"event": "viewer", "step": "callback", "status": 303, "session_seconds": ttl})
        return response

    @api.post(f"{PREFIX}/api/picture")
    async def picture(request: Request) -> Response:
        started = time.perf_counter()
        handle = request.cookies.get(COOKIE)
        from_session = False
        try:
            body = parse_picture_request(await read_body(request, MAX_API_BODY))
            token = _bearer(request)
            if token is not None:
                if not body.fhirServer or not body.patient:
                    raise RequestError(400, "invalid-request", "With a bearer token, give fhirServer and patient.",
                                       [{"field": f, "problem": "required with a bearer token"}
                                        for f in ("fhirServer", "patient") if not getattr(body, f)])
                server, patient = _allowed(settings, body.fhirServer), body.patient
            else:
                session = await store(request).get(SESSION, handle) if handle else None
                if session is None:
                    raise RequestError(401, "no-session", "No viewer session (or it has expired): open the viewer from the "
                                       "patient's chart in the EHR (SMART launch).")
                if (body.fhirServer and _normal(body.fhirServer) != session["iss"]) or (body.patient and body.patient != session["patient"]):
                    raise RequestError(403, "session-mismatch", "This session was launched for another FHIR server or patient.")
                server, patient, token = _allowed(settings, session["iss"]), session["patient"], session["accessToken"]
                from_session = True
            data = await read_patient(request.app.state.fetcher, server, patient, token, settings.hook_deadline_seconds)
        except RequestError as exc:
            if exc.error == "fhir-token-refused" and from_session and handle:
                await store(request).drop(SESSION, handle)  # the token is dead: a reload must not retry it
            log.info("viewer picture refused", extra={"event": "viewer", "step": "picture", "status": exc.status, "error": exc.error})
            return error(exc.status, exc.error, exc.message, exc.details)
        answer: dict[str, Any] = payload(data, today=datetime.now(timezone.utc).date(), fhir_server=server, patient=patient,
                                         mode="smart" if from_session else "bearer")
        log.info("viewer picture", extra={
            "event": "viewer", "step": "picture", "status": 200, "resources": answer["resourcesRead"],
            "gaps": [g["key"] for g in answer["gaps"]], "cards": len(answer["cards"]), "fetch_ms": answer["fetchMs"],
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        })
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    return api
