"""SMART App Launch 2.0, service side, on authlib's OAuth 2.0 client.

authlib builds the authorization URL with the PKCE S256 challenge and performs the token request
(client authentication, form encoding, error answers). This module adds only what SMART puts on
top of OAuth: the endpoints from ``{iss}/.well-known/smart-configuration``, the scopes (v2
``patient/*.rs`` when the server lists ``permission-v2``, else v1 ``patient/*.read``), the
``launch`` and ``aud`` parameters, and the patient context the token answer must carry.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from authlib.deprecate import AuthlibDeprecationWarning  # installs its own "always" filter on import

with warnings.catch_warnings():
    # authlib 1.9 prefers httpx's successor httpx2 and warns when it falls back to httpx, which this
    # project pins (0.28): the API it uses is the same (authlib's own compatibility shim).
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from ..edge.hook_request import RequestError
from ..settings import Settings

V2_SCOPE = "patient/*.rs"
V1_SCOPE = "patient/*.read"
CONFIG_PATH = "/.well-known/smart-configuration"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 id datatype


@dataclass(frozen=True)
class SmartServer:
    iss: str
    authorization_endpoint: str
    token_endpoint: str
    v2: bool


def choose_scope(v2: bool, ehr_launch: bool) -> str:
    """EHR launch asks for ``launch`` (context from the EHR), standalone for ``launch/patient`` (a picker)."""
    context = "launch" if ehr_launch else "launch/patient"
    return f"{context} openid fhirUser {V2_SCOPE if v2 else V1_SCOPE}"


def _endpoint(config: dict[str, Any], name: str) -> str:
    url = config.get(name)
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise RequestError(502, "smart-configuration-invalid", f"The FHIR server's SMART configuration has no usable {name}.")
    return str(url)


def read_configuration(iss: str, config: Any) -> SmartServer:
    """Check a ``.well-known/smart-configuration`` document and keep what the launch needs."""
    if not isinstance(config, dict):
        raise RequestError(502, "smart-configuration-invalid", "The FHIR server's SMART configuration is not a JSON object.")
    methods = config.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise RequestError(502, "pkce-unsupported", "The authorization server does not offer PKCE with S256, which SMART App Launch 2.0 requires.")
    capabilities = config.get("capabilities")
    v2 = isinstance(capabilities, list) and "permission-v2" in capabilities
    return SmartServer(iss, _endpoint(config, "authorization_endpoint"), _endpoint(config, "token_endpoint"), v2)


async def discover(client: httpx.AsyncClient, iss: str, timeout: float) -> SmartServer:
    try:
        response = await client.get(iss + CONFIG_PATH, headers={"Accept": "application/json"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RequestError(502, "smart-configuration-unavailable",
                          f"The FHIR server's SMART configuration could not be read ({type(exc).__name__}).") from None
    if response.status_code != 200:
        raise RequestError(502, "smart-configuration-unavailable",
                          f"The FHIR server answered HTTP {response.status_code} for its SMART configuration.")
    try:
        config = response.json()
    except ValueError:
        config = None
    return read_configuration(iss, config)


def _client(settings: Settings, redirect_uri: str, timeout: float, scope: str | None = None) -> AsyncOAuth2Client:
    secret = settings.viewer_client_secret.get_secret_value() if settings.viewer_client_secret else None
    return AsyncOAuth2Client(
        client_id=settings.viewer_client_id, client_secret=secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256", timeout=timeout,
    )


def authorization_url(settings: Settings, server: SmartServer, redirect_uri: str, *, state: str, code_verifier: str,
                      launch: str | None) -> str:
    extra = {"aud": server.iss, **({"launch": launch} if launch else {})}
    client = _client(settings, redirect_uri, 1.0, choose_scope(server.v2, launch is not None))
    url, _ = client.create_authorization_url(server.authorization_endpoint, state=state, code_verifier=code_verifier, **extra)
    return str(url)


async def exchange_code(settings: Settings, token_endpoint: str, redirect_uri: str, code: str, code_verifier: str,
                        timeout: float) -> dict[str, Any]:
    """The token answer; RequestError when it was refused or carries no access token or patient."""
    async with _client(settings, redirect_uri, timeout) as client:
        try:
            token = await client.fetch_token(token_endpoint, grant_type="authorization_code", code=code,
                                             code_verifier=code_verifier)
        except OAuthError as exc:
            raise RequestError(401, "token-refused", f"The authorization server refused the token request ({exc.error}).") from None
        except httpx.HTTPError as exc:
            raise RequestError(502, "token-endpoint-unavailable",
                              f"The authorization server's token endpoint could not be reached ({type(exc).__name__}).") from None
    answer = dict(token)
    if not isinstance(answer.get("access_token"), str) or str(answer.get("token_type", "")).lower() != "bearer":
        raise RequestError(502, "token-invalid", "The authorization server sent no bearer access token.")
    if not isinstance(answer.get("patient"), str) or not answer["patient"]:
        raise RequestError(400, "no-patient-context", "The launch gave no patient context: open the viewer from a patient's chart.")
    if not FHIR_ID.fullmatch(answer["patient"]):  # it goes into FHIR URLs: an id, nothing else
        raise RequestError(502, "token-invalid", "The authorization server's patient context is not a FHIR id.")
    return answer
