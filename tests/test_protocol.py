"""CDS Hooks 2.0 protocol: discovery, request validation and error answers, response shape."""

from __future__ import annotations

import re
from typing import Any

import pytest

import fixtures
from tests.conftest import hook_request, rule_codes
from tests.support.conformance import error_code, error_fields, error_text

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
    assert r.status_code == 404 and error_code(r) == "unknown-service"


def test_malformed_json_is_400_with_explanation(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_code(r) == "invalid-json" and "position" in error_text(r)
    issue = r.json()["issue"][0]
    assert issue["code"] == "structure" and "column" in issue["diagnostics"]


def test_missing_fields_are_named(client):
    r = client.post("/cds-services/mbc-patient-view", json={"hook": "patient-view", "context": {}})
    assert r.status_code == 400
    assert "hookInstance" in error_fields(r)
    assert {i["code"] for i in r.json()["issue"] if i.get("expression") == ["hookInstance"]} == {"required"}


def test_context_must_match_the_hook(client):
    body = hook_request("patient-view", "p1")
    del body["context"]["patientId"]
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 400 and error_code(r) == "invalid-context"
    assert error_fields(r) == {"context.patientId"}
    sign = hook_request("order-sign", "p1")
    r = client.post("/cds-services/mbc-order-sign", json=sign)
    assert r.status_code == 400 and "context.draftOrders" in error_fields(r)


def test_hook_mismatch_is_400(client):
    r = client.post("/cds-services/mbc-patient-view", json=hook_request("order-sign", "p1"))
    assert r.status_code == 400 and error_code(r) == "hook-mismatch" and error_fields(r) == {"hook"}


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
    assert r.status_code == 400 and error_fields(r) == {"fhirServer"}


def test_no_prefetch_and_no_fhir_server_is_412(client):
    r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "p1"))
    assert r.status_code == 412
    assert error_code(r) == "precondition-failed"
    assert error_fields(r) == {"prefetch.conditions", "prefetch.observations"}


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
        assert r.status_code == 413 and error_code(r) == "too-large" and "2002 bytes" in error_text(r)


def test_wrong_content_type_is_415(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"hook=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and error_code(r) == "unsupported-media-type"
    assert "application/x-www-form-urlencoded" in r.json()["issue"][0]["diagnostics"]


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
    assert r.status_code == 400 and error_code(r) == "invalid-feedback" and error_fields(r) == {"feedback[0]"}
    assert client.post("/cds-services/nope/feedback", json=ok).status_code == 404


def test_empty_body_is_400_with_details(client):
    r = client.post("/cds-services/mbc-patient-view", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid-request"
    assert r.json()["issue"][0]["code"] == "required" and r.json()["issue"][0]["diagnostics"] == "empty body"


@pytest.mark.parametrize(("value", "field"), [
    ("hello", "prefetch.conditions"), (["a"], "prefetch.conditions"), (42, "prefetch.conditions"),
    ({"entry": []}, "prefetch.conditions.resourceType"),
])
def test_prefetch_value_of_the_wrong_type_is_400_naming_it(client, value, field):
    """Not a 412 saying the key is missing: the client sent it, wrongly typed."""
    body = hook_request("patient-view", "p1", prefetch={"conditions": value, "observations": None})
    r = client.post("/cds-services/mbc-patient-view", json=body)
    assert r.status_code == 400 and error_code(r) == "invalid-request"
    assert error_fields(r) == {field}


def test_unknown_route_and_method_are_operation_outcomes(client):
    r = client.get("/cds-services/mbc-patient-view")
    assert r.status_code == 405 and error_code(r) == "method-not-allowed"
    r = client.get("/no/such/path")
    assert r.status_code == 404 and error_code(r) == "not-found"


def test_refused_cors_preflight_is_an_operation_outcome(client):
    r = client.options("/cds-services", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 400 and error_code(r) == "cors-refused"
    assert r.json()["issue"][0]["code"] == "forbidden"
