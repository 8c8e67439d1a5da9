"""EHR authentication through the HTTP API: what real clients send passes, every forgery gets a bare 401.

Keys are generated per test session (no private key is committed). The sandbox-style issuer's
JWK Set is served by a real HTTP server on 127.0.0.1 that counts its requests; the Epic-style
issuer's keys are configured statically.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from pydantic import ValidationError

import fixtures
from service.edge.app import create_app
from service.store import SqlReplayStore
from service.settings import Settings
from tests.conftest import hook_request, make_settings
from tests.support.conformance import error_code

SANDBOX_ISS = "https://sandbox.example.test"
EPIC_ISS = "https://fhir.epic.example.test/interconnect"
DISCOVERY = "http://testserver/cds-services"
SERVICE = "http://testserver/cds-services/mbc-patient-view"
FEEDBACK = "http://testserver/cds-services/mbc-patient-view/feedback"

ES_KEY = ECKey.generate_key("P-384", parameters={"kid": "es-1"}, private=True)
RS_KEY = RSAKey.generate_key(2048, parameters={"kid": "epic-1"}, private=True)


def _public_set(*keys: Any) -> dict[str, Any]:
    return {"keys": [{**k.as_dict(private=False), "use": "sig"} for k in keys]}


class JwksServer:
    """A real JWK Set host: path -> JWK Set (or an HTTP status), with a request count per path."""

    def __init__(self) -> None:
        self.sets: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.hits[self.path] += 1
                found = server.sets.get(self.path, 404)
                body = b"" if isinstance(found, int) else json.dumps(found).encode()
                self.send_response(found if isinstance(found, int) else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def jwks(jwks_server: JwksServer) -> JwksServer:
    jwks_server.sets = {"/a/jwks.json": _public_set(ES_KEY), "/b/jwks.json": _public_set(RS_KEY),
                        "/evil/jwks.json": _public_set(ES_KEY), "/broken/jwks.json": 500}
    jwks_server.hits.clear()
    return jwks_server


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def auth_settings(tmp_path: Path, jwks: JwksServer, **overrides: Any) -> Settings:
    issuers = [
        {"iss": SANDBOX_ISS, "jku": [jwks.url("/a/jwks.json")]},
        {"iss": EPIC_ISS, "jku": [jwks.url("/b/jwks.json")], "jwks": _public_set(RS_KEY)},
        {"iss": "https://down.example.test", "jku": [_closed_port_url()]},
        {"iss": "https://broken.example.test", "jku": [jwks.url("/broken/jwks.json")]},
    ]
    return make_settings(tmp_path, auth_required=True, trusted_issuers=issuers, **overrides)


@pytest.fixture
def api(tmp_path: Path, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings(tmp_path, jwks))) as c:
        yield c


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sandbox_token(aud: str, jwks: JwksServer, *, key: Any = ES_KEY, header: dict[str, Any] | None = None,
                  claims: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> str:
    """What the CDS Hooks sandbox sends: ES384, typ JWT, kid, jku; iss/aud/exp/iat/jti, no sub."""
    now = int(time.time())
    h = {"alg": "ES384", "typ": "JWT", "kid": "es-1", "jku": jwks.url("/a/jwks.json"), **(header or {})}
    c = {"iss": SANDBOX_ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **(claims or {})}
    h = {k: v for k, v in h.items() if k not in drop}
    c = {k: v for k, v in c.items() if k not in drop}
    return jwt.encode(h, c, key, algorithms=[h["alg"]], default_type=None)


def epic_token(aud: str | list[str], **claims: Any) -> str:
    """Epic style: RS384, sub and nbf (iat - 5 min) present, jku omitted here (keys exchanged out of band)."""
    now = int(time.time())
    c = {"iss": EPIC_ISS, "sub": "epic-client-id", "aud": aud, "exp": now + 300, "nbf": now - 300, "iat": now,
         "jti": str(uuid.uuid4()), **claims}
    return jwt.encode({"alg": "RS384", "typ": "JWT", "kid": "epic-1"}, c, RS_KEY, algorithms=["RS384"])


def _unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _service_body() -> dict[str, Any]:
    return hook_request("patient-view", "p1", prefetch=fixtures.prefetch_for([], ["conditions", "observations"]))


FEEDBACK_BODY = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}


def _assert_401(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert error_code(r) == "unauthorized"  # an OperationOutcome that says nothing about why
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "security", "details": {
        "coding": [{"system": "https://mbc-cds-hooks.example.org/error-codes", "code": "unauthorized"}], "text": "Authentication failed."}}]}
    assert r.headers["www-authenticate"] == "Bearer"


# --- what real clients send passes -------------------------------------------------------------------------------


def test_sandbox_style_es384_via_jku_on_discovery_service_and_feedback(api, jwks):
    r = api.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks)))
    assert r.status_code == 200 and r.json()["services"]
    r = api.post("/cds-services/mbc-patient-view", json=_service_body(), headers=_bearer(sandbox_token(SERVICE, jwks)))
    assert r.status_code == 200 and r.json() == {"cards": []}
    r = api.post("/cds-services/mbc-patient-view/feedback", json=FEEDBACK_BODY, headers=_bearer(sandbox_token(FEEDBACK, jwks)))
    assert r.status_code == 200
    assert jwks.hits["/a/jwks.json"] == 1, "the JWK Set is cached across calls"


def test_epic_style_rs384_static_keys_with_sub_nbf_and_unknown_claims(api, jwks):
    r = api.get("/cds-services", headers=_bearer(epic_token(DISCOVERY, tenant="org-1", epic_extra={"x": 1})))
    assert r.status_code == 200
    r = api.post("/cds-services/mbc-patient-view", json=_service_body(), headers=_bearer(epic_token([SERVICE, "other"])))
    assert r.status_code == 200
    assert jwks.hits["/b/jwks.json"] == 0, "static keys need no fetch"


def test_epic_style_with_allow_listed_jku(api, jwks):
    now = int(time.time())
    claims = {"iss": EPIC_ISS, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    token = jwt.encode({"alg": "RS384", "typ": "JWT", "kid": "epic-1", "jku": jwks.url("/b/jwks.json")}, claims, RS_KEY,
                       algorithms=["RS384"])
    assert api.get("/cds-services", headers=_bearer(token)).status_code == 200


def test_public_base_url_sets_the_expected_audience(tmp_path, jwks):
    settings = auth_settings(tmp_path, jwks, public_base_url="https://cds.example.org/mbc/")
    with TestClient(create_app(settings)) as c:
        assert c.get("/cds-services", headers=_bearer(sandbox_token("https://cds.example.org/mbc/cds-services", jwks))).status_code == 200
        _assert_401(c.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks))))


# --- each attack gets a bare 401 -----------------------------------------------------------------------------------

OTHER_ES = ECKey.generate_key("P-384", parameters={"kid": "es-1"}, private=True)

ATTACKS: dict[str, Any] = {
    "wrong key": lambda j: sandbox_token(DISCOVERY, j, key=OTHER_ES),
    "alg none": lambda j: _unsigned({"alg": "none", "typ": "JWT", "kid": "es-1", "jku": j.url("/a/jwks.json")},
                                    {"iss": SANDBOX_ISS, "aud": DISCOVERY, "exp": int(time.time()) + 300,
                                     "iat": int(time.time()), "jti": str(uuid.uuid4())}),
    "HS256 signed with the public key": lambda j: _unsigned(
        {"alg": "HS256", "typ": "JWT", "kid": "es-1", "jku": j.url("/a/jwks.json")},
        {"iss": SANDBOX_ISS, "aud": DISCOVERY, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": str(uuid.uuid4())},
        secret=ES_KEY.as_pem(private=False)),
    "expired": lambda j: sandbox_token(DISCOVERY, j, claims={"exp": int(time.time()) - 120, "iat": int(time.time()) - 420}),
    "wrong aud": lambda j: sandbox_token("https://evil.example/cds-services", j),
    "aud of another endpoint": lambda j: sandbox_token(SERVICE, j),
    "untrusted jku": lambda j: sandbox_token(DISCOVERY, j, header={"jku": j.url("/evil/jwks.json")}),
    "jku of another issuer": lambda j: sandbox_token(DISCOVERY, j, header={"jku": j.url("/b/jwks.json")}),
    "unknown kid": lambda j: sandbox_token(DISCOVERY, j, header={"kid": "nope"}),
    "missing kid": lambda j: sandbox_token(DISCOVERY, j, drop=("kid",)),
    "missing jti": lambda j: sandbox_token(DISCOVERY, j, drop=("jti",)),
    "missing exp": lambda j: sandbox_token(DISCOVERY, j, drop=("exp",)),
    "missing iat": lambda j: sandbox_token(DISCOVERY, j, drop=("iat",)),
    "iat in the future": lambda j: sandbox_token(DISCOVERY, j, claims={"iat": int(time.time()) + 600}),
    "nbf in the future": lambda j: sandbox_token(DISCOVERY, j, claims={"nbf": int(time.time()) + 600}),
    "exp too far ahead": lambda j: sandbox_token(DISCOVERY, j, claims={"exp": int(time.time()) + 86_400}),
    "typ not JWT": lambda j: sandbox_token(DISCOVERY, j, header={"typ": "at+jwt"}),
    "untrusted iss": lambda j: sandbox_token(DISCOVERY, j, claims={"iss": "https://evil.example"}),
    "empty jti": lambda j: sandbox_token(DISCOVERY, j, claims={"jti": ""}),
    "garbage token": lambda j: "not.a.jwt",
    "garbage base64": lambda j: "eyJhbGciOi.!!!.$$$",
}


# The logged reason proves each token was refused for its own flaw, not by accident.
REASONS = {
    "wrong key": "bad signature", "alg none": "algorithm", "HS256 signed with the public key": "algorithm",
    "expired": "expired", "wrong aud": "'aud'", "aud of another endpoint": "'aud'", "untrusted jku": "jku not allowed",
    "jku of another issuer": "jku not allowed", "unknown kid": "unknown kid", "missing kid": "no kid",
    "missing jti": "'jti'", "missing exp": "'exp'", "missing iat": "'iat'", "iat in the future": "in the future",
    "nbf in the future": "not yet valid", "exp too far ahead": "exp too far", "typ not JWT": "typ",
    "untrusted iss": "untrusted iss", "empty jti": "'jti'", "garbage token": "malformed", "garbage base64": "malformed",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_gets_bare_401(api, jwks, attack, caplog):
    with caplog.at_level(logging.INFO, logger="mbc_cds_hooks"):
        _assert_401(api.get("/cds-services", headers=_bearer(ATTACKS[attack](jwks))))
    reasons = [r.reason for r in caplog.records if getattr(r, "event", None) == "auth" and hasattr(r, "reason")]
    assert reasons and REASONS[attack] in reasons[-1], reasons


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                                     {"Authorization": ""}], ids=["none", "empty bearer", "basic", "empty"])
def test_missing_or_wrong_authorization_header_is_401(api, headers):
    _assert_401(api.get("/cds-services", headers=headers))
    _assert_401(api.post("/cds-services/mbc-patient-view", json=_service_body(), headers=headers))
    _assert_401(api.post("/cds-services/mbc-patient-view/feedback", json=FEEDBACK_BODY, headers=headers))


def test_discovery_token_cannot_be_used_on_a_service_or_feedback_call(api, jwks):
    _assert_401(api.post("/cds-services/mbc-patient-view", json=_service_body(), headers=_bearer(sandbox_token(DISCOVERY, jwks))))
    _assert_401(api.post("/cds-services/mbc-patient-view/feedback", json=FEEDBACK_BODY, headers=_bearer(sandbox_token(SERVICE, jwks))))


def test_replayed_jti_is_refused(api, jwks):
    token = sandbox_token(DISCOVERY, jwks)
    assert api.get("/cds-services", headers=_bearer(token)).status_code == 200
    _assert_401(api.get("/cds-services", headers=_bearer(token)))
    jti = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"]
    assert api.get("/cds-services", headers=_bearer(epic_token(DISCOVERY, jti=jti))).status_code == 200, \
        "the same jti from another issuer is another token"


def test_replay_is_refused_across_workers_sharing_the_database(tmp_path, jwks):
    """The jti store is the database (SQLite beside the feedback, or DATABASE_URL): another process refuses it too."""
    settings = auth_settings(tmp_path, jwks, workers=2)
    token = sandbox_token(DISCOVERY, jwks)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        assert isinstance(first.app.state.auth.replay, SqlReplayStore)
        assert first.get("/cds-services", headers=_bearer(token)).status_code == 200
        _assert_401(second.get("/cds-services", headers=_bearer(token)))
        assert second.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks))).status_code == 200


def test_unknown_kid_refetches_at_most_once_per_interval(api, jwks):
    assert api.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks))).status_code == 200
    assert jwks.hits["/a/jwks.json"] == 1
    for kid in ("forged-1", "forged-2", "forged-3"):
        _assert_401(api.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks, header={"kid": kid}))))
    assert jwks.hits["/a/jwks.json"] == 2, "one refetch for the first unknown kid, none after it within the interval"


def test_rotated_key_is_picked_up_by_refetch(tmp_path, jwks):
    new = ECKey.generate_key("P-384", parameters={"kid": "es-2"}, private=True)
    with TestClient(create_app(auth_settings(tmp_path, jwks, jwks_refresh_interval_seconds=0))) as c:
        assert c.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks))).status_code == 200
        jwks.sets["/a/jwks.json"] = _public_set(ES_KEY, new)
        token = sandbox_token(DISCOVERY, jwks, key=new, header={"kid": "es-2"})
        assert c.get("/cds-services", headers=_bearer(token)).status_code == 200
    assert jwks.hits["/a/jwks.json"] == 2


@pytest.mark.parametrize("iss,path", [("https://down.example.test", None), ("https://broken.example.test", "/broken/jwks.json")])
def test_unreachable_or_failing_jwks_host_is_401_not_500(api, jwks, iss, path):
    issuer = next(i for i in api.app.state.auth._settings.trusted_issuers if i.iss == iss)
    token = sandbox_token(DISCOVERY, jwks, header={"jku": issuer.jku[0]}, claims={"iss": iss})
    _assert_401(api.get("/cds-services", headers=_bearer(token)))
    _assert_401(api.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks, header={"jku": issuer.jku[0]}, claims={"iss": iss}))))
    if path:
        assert jwks.hits[path] == 1, "a failing host is retried at most once per interval"


def test_hs256_and_none_are_refused_even_for_a_static_rsa_issuer(api):
    now = int(time.time())
    claims = {"iss": EPIC_ISS, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    pem = RS_KEY.as_pem(private=False)
    _assert_401(api.get("/cds-services", headers=_bearer(_unsigned({"alg": "HS256", "typ": "JWT", "kid": "epic-1"}, claims, pem))))
    _assert_401(api.get("/cds-services", headers=_bearer(_unsigned({"alg": "none", "typ": "JWT", "kid": "epic-1"}, claims))))


# --- what auth must not touch, and what it logs ------------------------------------------------------------------


def test_open_endpoints_and_cors_preflight_need_no_token(api):
    assert api.get("/healthz").status_code == 200
    assert api.get("/openapi.json").status_code == 200
    for path in ("/readyz", "/metrics", "/docs"):
        assert api.get(path).status_code != 401, path
    r = api.options("/cds-services/mbc-patient-view", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200 and "authorization" in r.headers["access-control-allow-headers"].lower()


def test_401_carries_cors_headers(api):
    r = api.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    _assert_401(r)
    assert r.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"


def test_failure_is_logged_with_ids_but_never_the_token(api, jwks, caplog):
    token = sandbox_token(DISCOVERY, jwks, claims={"iss": "https://evil.example", "jti": "jti-123"})
    with caplog.at_level(logging.INFO, logger="mbc_cds_hooks"):
        _assert_401(api.get("/cds-services", headers=_bearer(token)))
    records = [r for r in caplog.records if getattr(r, "event", None) == "auth"]
    assert records and records[-1].reason == "untrusted iss"
    assert records[-1].jti == "jti-123" and records[-1].kid == "es-1"
    for record in caplog.records:
        assert token not in json.dumps(record.__dict__, default=str)
        assert token.split(".")[2] not in json.dumps(record.__dict__, default=str)


def test_startup_warns_when_auth_is_off(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mbc_cds_hooks"), TestClient(create_app(make_settings(tmp_path))) as c:
        assert c.get("/cds-services").status_code == 200
    assert any("authentication disabled" in r.getMessage() and "demo only" in r.getMessage() for r in caplog.records)


# --- settings and the replay store ---------------------------------------------------------------------------------


def test_auth_is_required_by_default_and_issuers_parse_from_env(monkeypatch, tmp_path):
    jwks_file = tmp_path / "sandbox-jwks.json"
    jwks_file.write_text(json.dumps(_public_set(ES_KEY)))
    monkeypatch.setenv("MBC_TRUSTED_ISSUERS", json.dumps([
        {"iss": SANDBOX_ISS, "jku": ["https://sandbox.example.test/.well-known/jwks.json"], "jwks_file": str(jwks_file)}]))
    settings = Settings()
    assert settings.auth_required is True
    assert settings.trusted_issuers[0].jwks_file == str(jwks_file)


def test_static_jwks_file_serves_a_token_whose_jku_is_unreachable(tmp_path, jwks):
    """The sandbox case: its jku is allow-listed but unreachable, its public key is configured locally."""
    jwks_file = tmp_path / "sandbox-jwks.json"
    jwks_file.write_text(json.dumps(_public_set(ES_KEY)))
    unreachable = _closed_port_url()
    settings = make_settings(tmp_path, auth_required=True, trusted_issuers=[
        {"iss": SANDBOX_ISS, "jku": [unreachable], "jwks_file": str(jwks_file)}])
    with TestClient(create_app(settings)) as c:
        token = sandbox_token(DISCOVERY, jwks, header={"jku": unreachable})
        assert c.get("/cds-services", headers=_bearer(token)).status_code == 200


@pytest.mark.parametrize("issuer", [
    {"iss": "https://x.example", "jku": ["http://x.example/jwks.json"]},  # http off loopback
    {"iss": "https://x.example"},  # no key source
    {"iss": "", "jku": ["https://x.example/jwks.json"]},
])
def test_bad_issuer_config_is_refused_at_startup(tmp_path, issuer):
    with pytest.raises(ValidationError):
        make_settings(tmp_path, trusted_issuers=[issuer])


def test_static_jwks_without_usable_keys_stops_startup(tmp_path):
    settings = make_settings(tmp_path, auth_required=True, trusted_issuers=[
        {"iss": "https://x.example", "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}])
    with pytest.raises(ValueError):
        create_app(settings)


def test_replay_store_outage_is_503_not_401_or_500(tmp_path, jwks):
    """The token may be fine; the service cannot tell whether it was replayed: fail closed, ask to retry."""
    with TestClient(create_app(auth_settings(tmp_path, jwks, workers=2))) as api:
        api.portal.call(api.app.state.auth.replay.db.close)
        r = api.get("/cds-services", headers=_bearer(sandbox_token(DISCOVERY, jwks)))
        assert r.status_code == 503 and error_code(r) == "store-unavailable"
