"""CDS Hooks 2.0 protocol: discovery, request validation and error answers, response shape."""

from __future__ import annotations

import re
from typing import Any

import fixtures
from tests.conftest import hook_request, rule_codes

TOKEN = re.compile(r"\{\{([^}]*)\}\}")
SPEC_TOKENS = {"context.patientId", "context.userId", "context.encounterId", "userPractitionerId",
               "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


def _no_empty_values(node: Any, path: str = "") -> list[str]:
    """CDS Hooks: no null, "", [] or {} anywhere in a response (spec #use-of-json)."""
    bad = []
    if node is None or node == "" or node == [] or node == {}:
        return [path]
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "extension":
                continue  # the clinical picture is our own extension object
            bad += _no_empty_values(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            bad += _no_empty_values(v, f"{path}[{i}]")
    return bad


def test_discovery_lists_three_services_with_spec_prefetch_tokens(client):
    body = client.get("/cds-services").json()
    services = {s["id"]: s for s in body["services"]}
    assert {"mbc-patient-view": "patient-view", "mbc-order-select": "order-select", "mbc-order-sign": "order-sign"} == {
        k: v["hook"] for k, v in services.items()}
    for service in services.values():
        assert service["description"] and service["title"]
        for template in service["prefetch"].values():
            assert set(TOKEN.findall(template)) <= SPEC_TOKENS, template
            assert not template.startswith("http"), "prefetch templates are relative"


def test_unknown_service_is_404_json(client):
    r = client.post("/cds-services/nope", json=hook_request("patient-view", "p1"))
    assert r.status_code == 404 and r.json()["error"] == "unknown-service"


def test_malformed_json_is_400_with_explanation(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid-json" and "position" in r.json()["message"]


def test_missing_fields_are_named(client):
    r = client.post("/cds-services/mbc-patient-view", json={"hook": "patient-view", "context": {}})
    assert r.status_code == 400
    fields = {d["field"] for d in r.json()["details"]}
    assert "hookInstance" in fields


def test_context_must_match_the_hook(client):
    body = hook_request("patient-view", "p1")
    del body["context"]["patientId"]
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 400 and r.json()["error"] == "invalid-context"
    assert r.json()["details"][0]["field"] == "context.patientId"
    sign = hook_request("order-sign", "p1")
    r = client.post("/cds-services/mbc-order-sign", json=sign)
    assert r.status_code == 400 and any(d["field"] == "context.draftOrders" for d in r.json()["details"])


def test_hook_mismatch_is_400(client):
    r = client.post("/cds-services/mbc-patient-view", json=hook_request("order-sign", "p1"))
    assert r.status_code == 400 and r.json()["error"] == "hook-mismatch"


def test_non_object_body_and_wrong_types(client):
    assert client.post("/cds-services/mbc-patient-view", json=[1, 2]).status_code == 400
    body = hook_request("patient-view", "p1")
    body["extension"] = ["not", "an", "object"]
    assert client.post("/cds-services/mbc-patient-view", json=body).status_code == 400


def test_extension_object_is_accepted(client):
    body = hook_request("patient-view", "p1", prefetch={"conditions": None})
    body["extension"] = {"com.epic.cdshooks.request.bpa-trigger-action": "OnOpenChart"}
    body["prefetch"] = fixtures.prefetch_for([], ["conditions", "observations"])
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_authorization_without_fhir_server_is_400(client):
    body = hook_request("patient-view", "p1", token="abc")
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "fhirServer"


def test_no_prefetch_and_no_fhir_server_is_412(client):
    r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "p1"))
    assert r.status_code == 412
    assert {d["field"] for d in r.json()["details"]} == {"prefetch.conditions", "prefetch.observations"}


def test_operation_outcome_prefetch_counts_as_missing(client):
    oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    body = hook_request("patient-view", "p1", prefetch={"conditions": oo, "observations": oo})
    assert client.post("/cds-services/mbc-patient-view", json=body).status_code == 412


def test_body_too_large_is_413(tmp_path):
    from fastapi.testclient import TestClient

    from service.edge.app import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=1000))) as c:
        r = c.post("/cds-services/mbc-patient-view", content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "too-large"


def test_wrong_content_type_is_415(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"hook=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_cors_preflight_from_the_sandbox(client):
    r = client.options("/cds-services/mbc-patient-view", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    evil = client.options("/cds-services", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert evil.headers.get("access-control-allow-origin") != "https://evil.example"


def test_full_prefetch_card_response_follows_the_spec(client):
    resources = fixtures.load(fixtures.PATIENTS / "mbc-hrpos-bone-1.json")
    body = hook_request("patient-view", "mbc-hrpos-bone-1", prefetch=fixtures.prefetch_for(resources, [
        "patient", "conditions", "observations", "specimens", "medicationRequests", "medicationStatements",
        "medicationAdministrations", "procedures"]))
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 200
    cards = r.json()["cards"]
    assert "mbc-summary" in rule_codes(r.json())
    assert _no_empty_values(r.json()) == []
    uuids = [c["uuid"] for c in cards] + [s["uuid"] for c in cards for s in c.get("suggestions", [])]
    assert len(uuids) == len(set(uuids))
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"] and card["source"]["url"].startswith("https://")
        if "suggestions" in card:
            assert card["selectionBehavior"] in ("at-most-one", "any")
        for link in card.get("links", []):
            assert link["type"] == "absolute" and "appContext" not in link
        for reason in card.get("overrideReasons", []):
            assert reason["code"] and reason["system"] and reason["display"]


def test_feedback_is_validated_and_stored(client):
    ok = {"feedback": [{"card": "c1", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": "2026-11-22T10:00:00Z"},
                       {"card": "c2", "outcome": "overridden", "overrideReason": {"reason": {"code": "not-applicable", "system": "x"}, "userComment": "n/a"},
                        "outcomeTimestamp": "2026-11-22T10:01:00Z"}]}
    r = client.post("/cds-services/mbc-patient-view/feedback", json=ok)
    assert r.status_code == 200 and r.json() == {"stored": 2}
    stored = client.portal.call(client.app.state.feedback.all)
    assert [(s["card"], s["outcome"]) for s in stored] == [("c1", "accepted"), ("c2", "overridden")]
    bad = {"feedback": [{"card": "c3", "outcome": "accepted", "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    r = client.post("/cds-services/mbc-patient-view/feedback", json=bad)
    assert r.status_code == 400 and r.json()["error"] == "invalid-feedback"
    assert client.post("/cds-services/nope/feedback", json=ok).status_code == 404
