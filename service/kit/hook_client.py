"""A CDS Client for checking a deployment: calls a running service exactly as an EHR would.

It signs each call with its own JWT (``aud`` = the URL called), resolves the service's prefetch
templates itself from discovery, as the CDS Hooks sandbox does, and sends draft orders for the
order hooks, so one command shows whether CORS-free server-to-server calls, auth, prefetch and
cards work together.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwt

import fixtures

from .dev_keys import SigningKey
from ..edge.prefetch import resolve_template

ORDER_HOOKS = ("order-select", "order-sign")
JWT_LIFETIME_S = 300
MAX_PAGES = 20


class HookError(Exception):
    """A call failed: ``status`` is the HTTP status (0 when there was no answer), ``body`` what came back."""

    def __init__(self, message: str, status: int = 0, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Signer:
    key: SigningKey
    alg: str
    kid: str
    iss: str
    jku: str | None = None

    def token(self, aud: str) -> str:
        """A CDS Hooks JWT for one call (the sandbox's shape: no sub, tenant or nbf)."""
        header = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        if self.jku:
            header["jku"] = self.jku
        now = int(time.time())
        claims = {"iss": self.iss, "aud": aud, "exp": now + JWT_LIFETIME_S, "iat": now, "jti": str(uuid.uuid4())}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


def service_base(url: str) -> str:
    """The base the service is mounted at, whether given with or without ``/cds-services``."""
    url = url.rstrip("/")
    return url[: -len("/cds-services")] if url.endswith("/cds-services") else url


class HookClient:
    def __init__(self, client: httpx.Client, service_url: str, signer: Signer | None = None):
        self.client = client
        self.base = service_base(service_url)
        self.signer = signer

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.signer:
            headers["Authorization"] = f"Bearer {self.signer.token(url)}"
        return headers

    def _json(self, method: str, url: str, body: Any = None) -> Any:
        try:
            response = self.client.request(method, url, json=body, headers=self._headers(url))
        except httpx.HTTPError as exc:
            raise HookError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        if not response.is_success:
            raise HookError(f"{method} {url} answered HTTP {response.status_code}", response.status_code, payload)
        return payload

    def discover(self, service_id: str) -> dict[str, Any]:
        """The service's definition from GET /cds-services (signed too, as the sandbox does)."""
        found = self._json("GET", f"{self.base}/cds-services")
        services = found.get("services") if isinstance(found, dict) else None
        for svc in services or []:
            if isinstance(svc, dict) and svc.get("id") == service_id:
                return svc
        ids = ", ".join(str(s.get("id")) for s in services or [] if isinstance(s, dict))
        raise HookError(f"{self.base}/cds-services has no service '{service_id}' (services: {ids or 'none'})")

    def call(self, service_id: str, request: dict[str, Any]) -> dict[str, Any]:
        response = self._json("POST", f"{self.base}/cds-services/{service_id}", request)
        if not isinstance(response, dict):
            raise HookError("the service answered with something that is not a JSON object", 200, response)
        return response


def fetch_prefetch(client: httpx.Client, fhir_base: str, templates: dict[str, str], context: dict[str, Any],
                   token: str | None) -> tuple[dict[str, Any], list[str]]:
    """Resolve and GET each template; keys that cannot be had are left out, as real EHRs do.

    Searches follow next links (at most MAX_PAGES) so the service receives whole results.
    """
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    base = fhir_base.rstrip("/")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, template in templates.items():
        relative = resolve_template(template, context)
        if relative is None:
            problems.append(f"{key}: template tokens could not be filled")
            continue
        try:
            body = _get_all(client, f"{base}/{relative}", base, headers)
        except HookError as exc:
            problems.append(f"{key}: {exc}")
            continue
        out[key] = body
    return out, problems


def _get_all(client: httpx.Client, url: str, base: str, headers: dict[str, str]) -> dict[str, Any]:
    """A read, or a search with its pages merged into one searchset (a next link kept past MAX_PAGES)."""
    entries: list[Any] = []
    total: Any = None
    for _ in range(MAX_PAGES):
        try:
            response = client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise HookError(f"GET {url} failed: {type(exc).__name__}") from exc
        if not response.is_success:
            raise HookError(f"GET {url} answered HTTP {response.status_code}", response.status_code)
        try:
            body = response.json()
        except ValueError as exc:
            raise HookError(f"GET {url} did not answer with JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            return body
        total = body.get("total", total)
        entries.extend(body.get("entry") or [])
        nxt = next((ln.get("url") for ln in body.get("link") or [] if isinstance(ln, dict) and ln.get("relation") == "next"), None)
        if not nxt or urlsplit(nxt).netloc != urlsplit(base).netloc:
            return {"resourceType": "Bundle", "type": "searchset", "total": total if total is not None else len(entries), "entry": entries}
        url = nxt
    return {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": url}], "entry": entries,
            **({"total": total} if total is not None else {})}


def draft_orders(path: Path, today: date | None) -> tuple[dict[str, Any], list[str]]:
    """draftOrders (a collection Bundle) and the references to select, from a Bundle, array or one resource."""
    data = fixtures.read_json(path)
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        bundle = fixtures.rolled(data, today) if today else data
    else:
        items = data if isinstance(data, list) else [data]
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in items if isinstance(r, dict)]}
    selections = [f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in bundle.get("entry") or []
                  if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    return bundle, selections


def build_request(hook: str, patient: str, *, fhir_base: str | None, user: str, token: str | None = None,
                  orders: tuple[dict[str, Any], list[str]] | None = None, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CDS Hooks 2.0 request body, with a fresh hookInstance."""
    context: dict[str, Any] = {"userId": user, "patientId": patient}
    if hook in ORDER_HOOKS:
        bundle, selections = orders or ({"resourceType": "Bundle", "type": "collection", "entry": []}, [])
        context["draftOrders"] = bundle
        if hook == "order-select":
            context["selections"] = selections
    request: dict[str, Any] = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context}
    if fhir_base:
        request["fhirServer"] = fhir_base.rstrip("/")
        if token:
            request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                            "scope": "patient/*.read", "subject": "mbc-cds-hooks-cli", "patient": patient}
    if prefetch:
        request["prefetch"] = prefetch
    return request


def send(service_id: str, patient: str, *, service_url: str, fhir_base: str | None, user: str, token: str | None = None,
         orders: Path | None = None, prefetch: bool = False, signer: Signer | None = None, today: date | None = None,
         timeout: float = 30.0) -> tuple[dict[str, Any], list[str]]:
    """Discover the service, build its request (prefetch resolved here when asked), call it: (response, problems)."""
    with httpx.Client(timeout=timeout) as client:
        hooks = HookClient(client, service_url, signer)
        definition = hooks.discover(service_id)
        hook = str(definition.get("hook"))
        if hook in ORDER_HOOKS and orders is None:
            raise HookError(f"{service_id} is an {hook} service: give the draft orders with --orders FILE")
        draft = draft_orders(orders, today) if orders is not None and hook in ORDER_HOOKS else None
        request = build_request(hook, patient, fhir_base=fhir_base, user=user, token=token, orders=draft)
        problems: list[str] = []
        if prefetch:
            if not fhir_base:
                raise HookError("--prefetch needs --fhir-base")
            request["prefetch"], problems = fetch_prefetch(client, fhir_base, definition.get("prefetch") or {}, request["context"], token)
        return hooks.call(service_id, request), problems
