"""CDS Hooks 3.0 (ballot) conformance of what the service sends and accepts.

- Discovery passes the CDSHooksServices schema (tests/schemas, written from the spec's logical
  models), declares the specification and hook versions and its FHIR version, and is cacheable
  (ETag, Cache-Control, 304 on If-None-Match).
- Every error code the service has is reachable and answered as an OperationOutcome (the fuzz and
  protocol suites check every other error answer they get, tests/support/conformance.py).
- Feedback: the CDSHooksFeedback schema and the service agree on what is valid.
(Every hook answer of the fixtures is checked against CDSHooksResponse in test_fixtures_http.py.)
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

import fixtures
from service.edge.app import create_app
from service.edge.responses import ERROR_CODES
from tests.conftest import case_request, hook_request, make_settings
from tests.support.conformance import assert_operation_outcome, check_every_answer, error_code
from tests.support.schemas import FEEDBACK, SERVICES, assert_valid, problems

ISS = "https://ehr.conformance.example.test"
KEY = ECKey.generate_key("P-384", parameters={"kid": "conf-1"}, private=True)


# --- discovery -----------------------------------------------------------------------------------

def test_discovery_passes_the_schema_and_declares_its_versions(client):
    r = client.get("/cds-services")
    assert r.status_code == 200
    body = r.json()
    assert_valid(SERVICES, body)
    release = metadata.version("mbc-cds-hooks")
    for service in body["services"]:
        assert service["version"] == "2.0.1"  # the CDS Hooks specification implemented (3.0 ballot: semver)
        assert service["hookVersion"] == "1.0"  # CDS Hooks Library 1.0.1, same for all three hooks
        assert service["extension"] == {"mbc-cds-hooks.service-version": release}
        usage = service["usageRequirements"]
        assert usage.startswith("FHIR R4 (4.0.1) only.") and "conditions and observations (required)" in usage
        assert "fhirServer" in usage and "patient/*.rs" in usage


def test_the_schema_catches_what_the_spec_forbids():
    """The schema is no rubber stamp: nulls, empty values, a non-semver version, unknown fields fail."""
    good = {"services": [{"hook": "patient-view", "id": "x", "description": "d", "version": "2.0.1"}]}
    assert problems(SERVICES, good) == []
    for broken in ({"services": [{"hook": "patient-view", "id": "x", "description": "d", "version": "STU2"}]},
                   {"services": [{"hook": "patient-view", "id": "x", "description": ""}]},
                   {"services": [{"hook": "patient-view", "id": "x", "description": "d", "title": None}]},
                   {"services": [{"hook": "patient-view", "id": "x", "description": "d", "prefetch": {}}]},
                   {"services": [{"hook": "patient-view", "id": "x", "description": "d", "hookVersions": "1.0"}]},
                   {"services": [{"id": "x", "description": "d"}]}):
        assert problems(SERVICES, broken), broken


def test_discovery_has_an_etag_and_answers_304_when_it_matches(client):
    first = client.get("/cds-services")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert first.headers["cache-control"] == "private, max-age=300, must-revalidate"
    for matching in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/cds-services", headers={"If-None-Match": matching})
        assert again.status_code == 304 and again.content == b"", matching
        assert again.headers["etag"] == etag and again.headers["cache-control"] == first.headers["cache-control"]
    changed = client.get("/cds-services", headers={"If-None-Match": '"an-older-discovery"'})
    assert changed.status_code == 200 and changed.json() == first.json()


def _token(aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"alg": "ES384", "typ": "JWT", "kid": "conf-1"},
                      {"iss": ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}, KEY, algorithms=["ES384"])


def _auth_client(tmp_path: Path) -> TestClient:
    jwks = {"keys": [{**KEY.as_dict(private=False), "use": "sig"}]}
    return TestClient(create_app(make_settings(tmp_path, auth_required=True, trusted_issuers=[{"iss": ISS, "jwks": jwks}])))


def test_304_only_after_authentication(tmp_path):
    with _auth_client(tmp_path) as api:
        ok = api.get("/cds-services", headers={"Authorization": f"Bearer {_token('http://testserver/cds-services')}"})
        assert ok.status_code == 200
        etag = ok.headers["etag"]
        assert error_code(api.get("/cds-services", headers={"If-None-Match": etag})) == "unauthorized"
        fresh = {"Authorization": f"Bearer {_token('http://testserver/cds-services')}", "If-None-Match": etag}
        assert api.get("/cds-services", headers=fresh).status_code == 304


# --- every error code, answered as an OperationOutcome ---------------------------------------------

def _post(c: TestClient, path: str, body: Any, **headers: str) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return c.post(path, content=content, headers={"content-type": "application/json", **headers})


def test_every_error_code_is_reachable_and_an_operation_outcome(tmp_path, monkeypatch):
    pv, feedback = "/cds-services/mbc-patient-view", "/cds-services/mbc-patient-view/feedback"
    case = next(c for c in fixtures.manifest() if c["hook"] == "order-sign")
    order_sign = case_request(case)
    small = make_settings(tmp_path, max_body_bytes=1000, max_prefetch_resources=2, max_draft_orders=1)
    seen: dict[str, int] = {}

    def expect(response: Any, status: int, code: str) -> None:
        assert response.status_code == status, (code, response.status_code, response.text[:300])
        body = assert_operation_outcome(response)
        assert body["issue"][0]["details"]["coding"][0]["code"] == code
        seen[code] = status

    with TestClient(create_app(small), raise_server_exceptions=False) as c:
        check_every_answer(c, strict=True)
        expect(_post(c, pv, b"{oops"), 400, "invalid-json")
        expect(_post(c, pv, b""), 400, "invalid-request")
        expect(_post(c, pv, {"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1"}}), 400, "invalid-context")
        expect(_post(c, pv, hook_request("order-sign", "p1")), 400, "hook-mismatch")
        expect(_post(c, "/cds-services/nope", hook_request("patient-view", "p1")), 404, "unknown-service")
        expect(c.get("/nowhere"), 404, "not-found")
        expect(c.put(pv), 405, "method-not-allowed")
        expect(_post(c, pv, {"hook": "patient-view", "pad": "x" * 2000}), 413, "too-large")
        expect(_post(c, pv, hook_request("patient-view", "p1", prefetch={"patient": None, "conditions": None, "observations": None})), 413, "too-many-resources")
        expect(_post(c, "/cds-services/mbc-order-sign", {**order_sign, "prefetch": {}, "context": {
            **order_sign["context"], "draftOrders": {"resourceType": "Bundle", "entry": [{}, {}]}}}), 413, "too-many-orders")
        expect(c.post(pv, content=b"hook=x", headers={"content-type": "text/plain"}), 415, "unsupported-media-type")
        expect(_post(c, pv, hook_request("patient-view", "p1")), 412, "precondition-failed")
        expect(_post(c, feedback, {"feedback": [{"card": "c", "outcome": "maybe"}]}), 400, "invalid-feedback")
        expect(c.options(pv, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}), 400, "cors-refused")

        import service.edge.routes.hooks as hooks

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(hooks, "build_picture", broken)
        empty = fixtures.prefetch_for([], ["conditions", "observations"])
        expect(_post(c, pv, hook_request("patient-view", "p1", prefetch=empty)), 500, "internal-error")
        c.portal.call(c.app.state.db.close)
        expect(c.get("/readyz"), 503, "not-ready")
        expect(_post(c, feedback, {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}),
               503, "store-unavailable")
    with _auth_client(tmp_path / "auth") as api:
        expect(api.get("/cds-services"), 401, "unauthorized")
    assert set(ERROR_CODES) - set(seen) == {"http-error"}, "an error code no test reaches"  # http-error: other Starlette HTTPExceptions


# --- feedback ------------------------------------------------------------------------------------

def test_feedback_schema_and_service_agree(client):
    """Feedback built from a real answer is valid and stored; what CDSHooksFeedback forbids is refused."""
    case = next(c for c in fixtures.manifest() if c["hook"] == "order-sign" and "order-anthracycline-her2" in c.get("expect", []))
    cards = client.post("/cds-services/mbc-order-sign", json=case_request(case)).json()["cards"]
    with_suggestion = next(card for card in cards if card.get("suggestions"))
    warning = next(card for card in cards if card.get("overrideReasons"))
    now = "2026-11-22T10:00:00.250Z"
    valid = [
        {"card": with_suggestion["uuid"], "outcome": "accepted", "outcomeTimestamp": now,
         "acceptedSuggestions": [{"id": with_suggestion["suggestions"][0]["uuid"]}]},
        {"card": warning["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-22T11:00:00+01:00",
         "overrideReason": {"reason": warning["overrideReasons"][0], "userComment": "discussed at tumour board"}},
        {"card": warning["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:05:00Z",
         "overrideReason": {"userComment": "free text only"}},
        {"card": warning["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:06:00Z"},
    ]
    for item in valid:
        body = {"feedback": [item]}
        assert_valid(FEEDBACK, body)
        assert client.post("/cds-services/mbc-order-sign/feedback", json=body).status_code == 200, item
    base = valid[1]
    invalid = {
        "cds-fb-1 outcome": {**base, "outcome": "dismissed"},
        "cds-fb-2 accepted needs acceptedSuggestions": {**valid[0], "acceptedSuggestions": None},
        "cds-fb-3 overrideReason needs reason or comment": {**base, "overrideReason": {}},
        "outcomeTimestamp is required": {k: v for k, v in base.items() if k != "outcomeTimestamp"},
        "offset past 14:00, no UTC datetime": {**base, "outcomeTimestamp": "0001-01-01T00:00:00+23:59"},
        "not a timestamp": {**base, "outcomeTimestamp": "yesterday"},
    }
    for why, item in invalid.items():
        item = {k: v for k, v in copy.deepcopy(item).items() if v is not None}
        body = {"feedback": [item]}
        assert problems(FEEDBACK, body), why
        r = client.post("/cds-services/mbc-order-sign/feedback", json=body)
        assert r.status_code == 400 and error_code(r) == "invalid-feedback", why


@pytest.mark.parametrize("path", ["/cds-services/mbc-patient-view", "/cds-services"])
def test_discovery_and_hook_answers_are_json(client, path):
    r = client.get(path) if path == "/cds-services" else client.post(path, json=hook_request(
        "patient-view", "p1", prefetch=fixtures.prefetch_for([], ["conditions", "observations"])))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"


# --- override reasons ----------------------------------------------------------------------------

HL7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
OURS = "https://mbc-cds-hooks.example.org/override-reasons"


def _hl7_displays() -> dict[str, str]:
    import csv

    with (Path(__file__).resolve().parents[1] / "cds_hooks" / "data" / "non_adherence_reason_codes.csv").open() as fh:
        return {row["code"]: row["display"] for row in csv.DictReader(fh)}


def test_cards_offer_hl7_override_reasons_where_hl7_has_one(client):
    case = next(c for c in fixtures.manifest() if "order-anthracycline-her2" in c.get("expect", []))
    cards = client.post("/cds-services/mbc-order-sign", json=case_request(case)).json()["cards"]
    reasons = next(card for card in cards if card["indicator"] in ("warning", "critical"))["overrideReasons"]
    hl7 = _hl7_displays()
    assert [r["code"] for r in reasons if r["system"] == HL7] == [
        "cds-not-applicable", "indication-order-exists", "action-completed", "patient-refuses"]
    assert all(r["display"] == hl7[r["code"]] for r in reasons if r["system"] == HL7)  # HL7's own display
    assert [r["code"] for r in reasons if r["system"] == OURS] == ["data-inaccurate", "clinical-judgement"]
    assert {r["system"] for r in reasons} == {HL7, OURS}


@pytest.mark.parametrize(("reason", "status"), [
    ({"system": HL7, "code": "patient-refuses"}, 200),
    ({"system": HL7, "code": "risk-benefit-ratio", "display": "Recipient assessment of risk/benefit ratio"}, 200),  # any HL7 code
    ({"system": OURS, "code": "data-inaccurate"}, 200),
    ({"system": OURS, "code": "already-addressed"}, 200),  # offered by older cards, before the HL7 codes
    ({"system": "urn:oid:1.2.840.114350.1.13.0.1.7.4.698084.1", "code": "epic-local-7"}, 200),  # the client's own reasons
    ({"system": HL7, "code": "not-a-code"}, 400),
    ({"system": OURS, "code": "bored"}, 400),
])
def test_feedback_accepts_hl7_and_our_reasons(client, reason, status):
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z",
                          "overrideReason": {"reason": reason}}]}
    r = client.post("/cds-services/mbc-patient-view/feedback", json=body)
    assert r.status_code == status, r.text
    if status == 400:
        assert error_code(r) == "invalid-feedback"
        assert {e for i in r.json()["issue"] for e in i.get("expression", [])} == {"feedback[0].overrideReason.reason"}
    else:
        stored = client.portal.call(client.app.state.feedback.all)
        assert stored[-1]["override_reason"] == {"reason": reason}


# --- actionSelectionBehavior only for a client that declared it ------------------------------------

def test_action_selection_behavior_only_for_clients_that_declared_support(tmp_path):
    """CDS Hooks 3.0 ballot, Capability Documentation: clients SHALL indicate support; services SHALL
    NOT use actionSelectionBehavior without knowing. The operator records it per trusted issuer."""
    jwks = {"keys": [{**KEY.as_dict(private=False), "use": "sig"}]}
    issuers = [{"iss": ISS, "jwks": jwks}, {"iss": ISS + "/v3", "jwks": jwks, "action_selection_behavior": True}]
    case = next(c for c in fixtures.manifest() if "order-anthracycline-her2" in c.get("expect", []))
    url = "http://testserver/cds-services/mbc-order-sign"
    now = int(time.time())
    with TestClient(create_app(make_settings(tmp_path, auth_required=True, trusted_issuers=issuers))) as api:
        answers = {}
        for iss in (ISS, ISS + "/v3"):
            token = jwt.encode({"alg": "ES384", "typ": "JWT", "kid": "conf-1"},
                               {"iss": iss, "aud": url, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}, KEY, algorithms=["ES384"])
            r = api.post("/cds-services/mbc-order-sign", json=case_request(case), headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
            assert_valid("cds-hooks-response", r.json())
            answers[iss] = [s for card in r.json()["cards"] for s in card.get("suggestions", [])]
    assert answers[ISS] and not any("actionSelectionBehavior" in s for s in answers[ISS])
    assert answers[ISS + "/v3"] and all(s["actionSelectionBehavior"] == "all" for s in answers[ISS + "/v3"])
