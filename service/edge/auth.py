"""CDS Hooks client authentication: every call must carry a JWT signed by a trusted EHR.

Follows CDS Hooks 2.0 "Trusting CDS Clients" and its best practices: asymmetric algorithms only,
``iss`` and ``jku`` allow-lists, ``aud`` = the URL called, ``exp``/``iat``/``jti`` required,
``jti`` never accepted twice, and a bare 401 whose reason goes to the log, never to the caller.
``sub`` is not a CDS Hooks claim and is not required; unknown claims are ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from fastapi import Request
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from .jwks import KeyMap, KeySetCache, load_static, pick
from .responses import JSONResponse, error
from ..settings import Settings, TrustedIssuer
from ..store import StoreUnavailable

log = logging.getLogger("mbc_cds_hooks.auth")

# RECOMMENDED ES384/RS384 plus their siblings; never "none" and never HMAC (spec: SHALL NOT).
ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class _Registry(jws.JWSRegistry):
    # joserfc's 512-byte header cap is tight for an Epic header with a long jku URL.
    max_header_length = 2048
    max_signature_length = 2048


_JWS = _Registry(algorithms=ALGORITHMS, strict_check_header=False)


class AuthFailed(Exception):
    """A refused call. The reason and ids are for the log only; the caller sees a bare 401."""

    def __init__(self, reason: str, **ids: Any):
        super().__init__(reason)
        self.reason = reason
        self.ids = {k: _short(v) for k, v in ids.items() if v is not None}


def _short(value: Any) -> str:
    return str(value)[:200]  # ids come from the unverified token: keep log lines bounded


class ReplayStore(Protocol):
    """Remembers JWT ids so a captured token cannot be sent again while it is still valid."""

    async def first_use(self, jti: str, iss: str, expires_at: float) -> bool:
        """True the first time (iss, jti) is seen, False on a replay; forget it after ``expires_at``."""
        ...


@dataclass
class _Issuer:
    config: TrustedIssuer
    static: KeyMap


class Authenticator:
    """Checks the bearer JWT of one call. Built in create_app (static keys fail fast), started in the lifespan."""

    def __init__(self, settings: Settings, replay: ReplayStore | None = None, clock: Callable[[], float] = time.time):
        # The replay store is the service's database (store.SqlReplayStore), set in the app's lifespan:
        # durable, so a restart does not re-open used tokens, and shared by every worker and replica.
        self.required = settings.auth_required
        self._settings, self._clock = settings, clock
        self._issuers = {i.iss: _Issuer(i, load_static(i.jwks, i.jwks_file)) for i in settings.trusted_issuers}
        self.replay: ReplayStore | None = replay
        self._keys: KeySetCache | None = None

    def start(self, client: httpx.AsyncClient) -> None:
        """Use the app's shared HTTP client for JWK Sets, and say loudly when the service is open."""
        s = self._settings
        self._keys = KeySetCache(client, s.jwks_cache_seconds, s.jwks_refresh_interval_seconds, s.jwks_timeout_seconds)
        if not self.required:
            log.warning("authentication disabled: MBC_AUTH_REQUIRED=false accepts calls without a JWT; demo only",
                        extra={"event": "startup"})
        elif not self._issuers:
            log.warning("authentication required but MBC_TRUSTED_ISSUERS is empty: every call will get 401; "
                        "set MBC_TRUSTED_ISSUERS (README, Authentication), or MBC_AUTH_REQUIRED=false for a demo",
                        extra={"event": "startup"})
        if self.required and not s.public_base_url:
            log.warning("MBC_PUBLIC_BASE_URL unset: the expected JWT aud comes from the request's Host header; "
                        "set it in production and always behind a proxy", extra={"event": "startup"})

    def supports_action_selection(self, claims: dict[str, Any] | None) -> bool:
        """Whether the calling client (the verified ``iss``) declared support for actionSelectionBehavior."""
        issuer = self._issuers.get(claims.get("iss")) if claims else None  # type: ignore[arg-type]
        return bool(issuer and issuer.config.action_selection_behavior)

    def audience(self, request: Request) -> str:
        """The URL this call was made to; behind a proxy only MBC_PUBLIC_BASE_URL knows it."""
        base = self._settings.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
        return base + request.url.path

    async def check(self, request: Request) -> dict[str, Any] | None:
        """The verified claims, None when auth is off; raises AuthFailed otherwise."""
        if not self.required:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailed("no bearer token")
        try:
            return await self.verify(token.strip(), self.audience(request))
        except (AuthFailed, StoreUnavailable):
            raise
        except Exception as exc:  # fail closed: an unforeseen error refuses the call, never a 500
            raise AuthFailed(f"verification error {type(exc).__name__}") from exc

    async def verify(self, token: str, audience: str) -> dict[str, Any]:
        """Cheap header and allow-list checks first, so a forged token costs no key fetch and no crypto."""
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=_JWS)
            header, claims = obj.headers(), orjson.loads(obj.payload)
        except (JoseError, ValueError):
            raise AuthFailed("malformed token") from None
        if not isinstance(claims, dict):
            raise AuthFailed("malformed token")
        alg, kid, jku, typ, iss = header.get("alg"), header.get("kid"), header.get("jku"), header.get("typ"), claims.get("iss")
        ids = {"iss": iss, "kid": kid, "jti": claims.get("jti")}
        if alg not in ALGORITHMS or "crit" in header or "b64" in header:
            raise AuthFailed(f"algorithm or header not allowed: {_short(alg)}", **ids)
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthFailed("typ is not JWT", **ids)
        if not isinstance(kid, str) or not kid:
            raise AuthFailed("no kid", **ids)
        if not isinstance(iss, str) or (issuer := self._issuers.get(iss)) is None:
            raise AuthFailed("untrusted iss", **ids)
        if jku is not None and jku not in issuer.config.jku:
            raise AuthFailed("jku not allowed for this iss", **ids)
        key = await self._find_key(issuer, jku, kid, alg)
        if key is None:
            raise AuthFailed("unknown kid", **ids)
        try:
            valid = jws.validate_compact(obj, key, registry=_JWS)
        except (JoseError, ValueError):
            valid = False
        if not valid:
            raise AuthFailed("bad signature", **ids)
        self._check_claims(claims, iss, audience, ids)
        leeway = self._settings.auth_leeway_seconds
        if self.replay is None:  # not started: nothing could tell a replay, so refuse as "retry later"
            raise StoreUnavailable("replay store not started")
        try:
            first = await self.replay.first_use(claims["jti"], iss, float(claims["exp"]) + leeway)
        except Exception as exc:  # noqa: BLE001 - fail closed, but as "retry later", not as a bad token
            raise StoreUnavailable(type(exc).__name__) from None
        if not first:
            raise AuthFailed("jti replayed", **ids)
        return claims

    async def _find_key(self, issuer: _Issuer, jku: str | None, kid: str, alg: str) -> Key | None:
        key = pick(issuer.static, kid, alg)
        # Without a jku header the key set was exchanged out of band: the issuer's configured URLs.
        for url in [jku] if jku else issuer.config.jku:
            if key is not None or self._keys is None:
                break
            key = await self._keys.find(url, kid, alg)
        return key

    def _check_claims(self, claims: dict[str, Any], iss: str, audience: str, ids: dict[str, Any]) -> None:
        s, now = self._settings, int(self._clock())
        required: ClaimsOption = {"essential": True}
        registry = JWTClaimsRegistry(
            now=now, leeway=s.auth_leeway_seconds, iss={"essential": True, "value": iss},
            aud={"essential": True, "value": audience}, exp=required, iat=required, jti=required,
        )
        try:
            registry.validate(claims)  # also nbf when present (Epic sends it)
        except JoseError as exc:
            raise AuthFailed(f"claims: {exc}", **ids) from None
        if claims["exp"] > now + s.auth_max_token_lifetime_seconds + s.auth_leeway_seconds:
            raise AuthFailed("exp too far ahead", **ids)


async def require_auth(request: Request) -> None:
    """FastAPI dependency for discovery, service and feedback routes (CORS preflight never reaches it)."""
    request.state.jwt_claims = await request.app.state.auth.check(request)


async def unauthorized(request: Request, exc: Exception) -> JSONResponse:
    ids = exc.ids if isinstance(exc, AuthFailed) else {}
    reason = exc.reason if isinstance(exc, AuthFailed) else "refused"
    log.info("authentication failed", extra={"event": "auth", "reason": reason, "path": request.url.path, **ids})
    # No issue detail and no diagnostics: the caller learns nothing about why (CDS Hooks best practices).
    return error(401, "unauthorized", "Authentication failed.", headers={"WWW-Authenticate": "Bearer"})
