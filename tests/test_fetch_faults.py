"""The service reads what was not prefetched from fhirServer, with the EHR's token, and degrades
to a data-incomplete card when the FHIR server fails (unit level: httpx mocked with respx)."""

from __future__ import annotations

import httpx
import pytest
import respx

import fixtures
from tests.conftest import hook_request, rule_codes

BASE = "https://ehr.example.org/fhir"


def _bundle(resources, next_url=None):
    b = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


@pytest.fixture
def patient():
    return fixtures.load(fixtures.PATIENTS / "mbc-hrpos-bone-1.json")


def _by_type(resources, rtype):
    return [r for r in resources if r["resourceType"] == rtype]


def _mock_all(router, resources, **overrides):
    routes = {
        "Patient": httpx.Response(200, json=_by_type(resources, "Patient")[0]),
        "Condition": httpx.Response(200, json=_bundle(_by_type(resources, "Condition"))),
        "Observation": httpx.Response(200, json=_bundle(_by_type(resources, "Observation"))),
    }
    routes.update(overrides)
    for rtype, resp in routes.items():
        router.get(url__regex=rf"{BASE}/{rtype}[/?].*").mock(return_value=resp) if not callable(resp) else router.get(url__regex=rf"{BASE}/{rtype}[/?].*").mock(side_effect=resp)
    router.get(url__regex=rf"{BASE}/.*").mock(return_value=httpx.Response(200, json=_bundle([])))


def test_missing_keys_are_fetched_with_the_bearer_token(client, patient):
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient)
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE, token="tok-123"))
        calls = list(router.calls)
    assert r.status_code == 200
    assert "biopsy-reassessment" in rule_codes(r.json())
    assert calls and all(c.request.headers["authorization"] == "Bearer tok-123" for c in calls)
    assert "data-incomplete" not in rule_codes(r.json())


def test_only_missing_keys_are_fetched(client, patient):
    prefetch = fixtures.prefetch_for(patient, ["conditions", "observations"])
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient)
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE, prefetch=prefetch))
        paths = {c.request.url.path.split("/")[-1] for c in router.calls}
    assert r.status_code == 200
    assert "Condition" not in paths and "Observation" not in paths and "MedicationRequest" in paths


@pytest.mark.parametrize("fault,reason", [
    (httpx.Response(500, json={"resourceType": "OperationOutcome"}), "HTTP 500"),
    (httpx.Response(401), "refused access"),
    (httpx.Response(200, content=b"<html>oops"), "not JSON"),
    (httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"}), "type"),
    (httpx.ConnectError("refused"), "could not be reached"),
    (httpx.ReadTimeout("slow"), "did not answer in time"),
])
def test_fhir_faults_become_a_data_incomplete_card(client, patient, fault, reason):
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient, Observation=fault if isinstance(fault, httpx.Response) else (lambda request, f=fault: (_ for _ in ()).throw(f)))
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
    assert r.status_code == 200
    cards = {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}
    assert "data-incomplete" in cards and reason in cards["data-incomplete"]["detail"]
    assert "receptor status" in cards["data-incomplete"]["detail"]  # says which checks could not run
    assert "mbc-summary" in cards  # the Conditions were read: what can still be said, is


def test_paging_is_followed_up_to_the_bound(tmp_path, patient):
    from fastapi.testclient import TestClient

    from service.edge.app import create_app
    from tests.conftest import make_settings

    conditions = _by_type(patient, "Condition")
    with respx.mock(assert_all_called=False) as router, TestClient(create_app(make_settings(tmp_path, fhir_max_pages=3))) as c:
        router.get(url__regex=rf"{BASE}/Condition\?patient=.*").mock(return_value=httpx.Response(200, json=_bundle(conditions[:1], f"{BASE}/Condition?page=2")))
        router.get(f"{BASE}/Condition?page=2").mock(return_value=httpx.Response(200, json=_bundle(conditions[1:], f"{BASE}/Condition?page=3")))
        router.get(f"{BASE}/Condition?page=3").mock(return_value=httpx.Response(200, json=_bundle([], f"{BASE}/Condition?page=4")))
        router.get(url__regex=rf"{BASE}/Observation.*").mock(return_value=httpx.Response(200, json=_bundle(_by_type(patient, "Observation"))))
        router.get(url__regex=rf"{BASE}/.*").mock(return_value=httpx.Response(200, json=_bundle([])))
        r = c.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
    cards = {x["source"]["topic"]["code"]: x for x in r.json()["cards"]}
    from cds_hooks.cards import visible_rules

    assert "bone-targeted-agent" in visible_rules(r.json()["cards"])  # the bone metastasis on page 2 was read
    assert "only the first 3 were read" in cards["data-incomplete"]["detail"]


def test_next_link_to_another_host_is_not_followed(client, patient):
    with respx.mock(assert_all_called=False) as router:
        evil = router.get(url__regex=r"https://evil\.example/.*").mock(return_value=httpx.Response(200, json=_bundle([])))
        _mock_all(router, patient, Condition=httpx.Response(200, json=_bundle(_by_type(patient, "Condition"), "https://evil.example/fhir/Condition?page=2")))
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE, token="secret"))
    assert not evil.called
    assert "outside the FHIR server" in {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}["data-incomplete"]["detail"]


def test_slow_server_ends_within_the_deadline(tmp_path, patient):
    import asyncio
    import time

    from fastapi.testclient import TestClient

    from service.edge.app import create_app
    from tests.conftest import make_settings

    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json=_bundle([]))

    with respx.mock(assert_all_called=False) as router, TestClient(create_app(make_settings(tmp_path, hook_deadline_seconds=0.5))) as c:
        _mock_all(router, patient, Observation=slow)
        started = time.monotonic()
        r = c.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
        elapsed = time.monotonic() - started
    assert r.status_code == 200 and elapsed < 3
    assert "deadline" in {x["source"]["topic"]["code"]: x for x in r.json()["cards"]}["data-incomplete"]["detail"]


def _sequence(*responses):
    """A respx side effect answering the given responses in turn, then the last one again."""
    calls = []

    def answer(request):
        calls.append(request)
        return responses[min(len(calls), len(responses)) - 1]

    return answer, calls


@pytest.mark.parametrize("first", [
    httpx.Response(503),
    httpx.Response(429, headers={"Retry-After": "0"}),
    httpx.Response(502, content=b"bad gateway"),
])
def test_transient_errors_are_retried(client, patient, first):
    answer, calls = _sequence(first, httpx.Response(200, json=_bundle(_by_type(patient, "Observation"))))
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient, Observation=answer)
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
    assert len(calls) == 2
    assert "data-incomplete" not in rule_codes(r.json()) and "biopsy-reassessment" in rule_codes(r.json())


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(client, patient, status):
    answer, calls = _sequence(httpx.Response(status), httpx.Response(200, json=_bundle(_by_type(patient, "Observation"))))
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient, Observation=answer)
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
    assert len(calls) == 1
    assert f"HTTP {status}" in {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}["data-incomplete"]["detail"]


def test_a_long_retry_after_is_not_waited_for(client, patient):
    answer, calls = _sequence(httpx.Response(429, headers={"Retry-After": "3600"}))
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient, Observation=answer)
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE))
    assert len(calls) == 1
    assert "Retry-After 3600 s" in {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}["data-incomplete"]["detail"]


@pytest.mark.parametrize(("url", "same"), [
    (f"{BASE}/Observation?page=2", True),
    (f"{BASE}?_getpages=abc", True),
    ("https://EHR.example.org:443/fhir/Observation", True),  # host case and the default port do not matter
    ("https://ehr.example.org/fhir-other/Observation", False),  # a sibling path, not under the base
    ("https://ehr.example.org/fhirx", False),
    ("https://ehr.example.org/Observation", False),
    ("http://ehr.example.org/fhir/Observation", False),  # scheme downgrade
    ("https://ehr.example.org:8443/fhir/Observation", False),
    ("https://ehr.example.org.evil.test/fhir/Observation", False),
    ("https://user@ehr.example.org/fhir/Observation", False),
    ("https://ehr.example.org:notaport/fhir/Observation", False),
])
def test_next_links_stay_under_the_base_path(url, same):
    from service.fhir_client import _same_server

    assert _same_server(url, BASE) is same
    assert _same_server(url, BASE + "/") is same


def test_next_link_to_a_sibling_path_is_not_followed_and_is_reported(client, patient):
    """A next link outside the base path would carry the EHR's token to another endpoint."""
    sibling = "https://ehr.example.org/fhir-other/Observation?page=2"
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient, Observation=httpx.Response(200, json=_bundle(_by_type(patient, "Observation"), next_url=sibling)))
        other = router.get(url__startswith="https://ehr.example.org/fhir-other/").mock(return_value=httpx.Response(200, json=_bundle([])))
        r = client.post("/cds-services/mbc-patient-view", json=hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE, token="tok"))
    assert r.status_code == 200 and not other.called
    incomplete = next(c for c in r.json()["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert "outside the FHIR server" in incomplete["detail"]


# --- fhirAuthorization.scope: what the token does not grant is not fetched, and is reported -------

@pytest.mark.parametrize(("scope", "expected"), [
    ("patient/*.read", {"Observation": "full", "Patient": "full"}),  # SMART v1
    ("user/Observation.read launch", {"Observation": "full", "Condition": "none"}),
    ("patient/*.rs", {"Observation": "full", "Patient": "full"}),  # SMART v2
    ("patient/Observation.s patient/Patient.r", {"Observation": "full", "Patient": "full", "Condition": "none"}),
    ("patient/Patient.s", {"Patient": "none"}),  # a read needs r
    ("patient/Observation.cud patient/*.write", {"Observation": "none"}),
    ("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
     {"Observation": "partial", "Condition": "none"}),
    ("patient/Observation.rs?category=x patient/Observation.rs", {"Observation": "full"}),
    ("system/*.cruds", {"MedicationStatement": "full"}),
    ("launch openid fhirUser offline_access", {"Observation": "full"}),  # no resource scope: nothing restricted
    (None, {"Observation": "full"}),
])
def test_smart_scopes_v1_and_v2(scope, expected):
    from service.edge.scopes import Scopes

    scopes = Scopes.parse(scope)
    for rtype, access in expected.items():
        interaction = "r" if rtype == "Patient" else "s"
        assert scopes.access(rtype, interaction).value == access, (scope, rtype)


def _scoped(scope, prefetch=None):
    body = hook_request("patient-view", "mbc-hrpos-bone-1", fhir_server=BASE, token="tok", prefetch=prefetch)
    body["fhirAuthorization"]["scope"] = scope
    return body


def test_types_the_scope_does_not_grant_are_not_fetched_and_are_named(client, patient):
    scope = "patient/Patient.r patient/Condition.rs patient/Observation.rs"  # no medications, specimens, procedures
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient)
        r = client.post("/cds-services/mbc-patient-view", json=_scoped(scope))
        fetched = {c.request.url.path.split("/")[-1] for c in router.calls}
    assert r.status_code == 200
    assert fetched == {"mbc-hrpos-bone-1", "Condition", "Observation"}
    incomplete = next(c for c in r.json()["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert "does not grant search of MedicationRequest" in incomplete["detail"]
    assert "treatment history" in incomplete["detail"]  # which checks could not run
    assert "biopsy-reassessment" in rule_codes(r.json())  # what the granted data supports still comes


def test_a_required_type_the_scope_does_not_grant_is_412_naming_it(client, patient):
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient)
        r = client.post("/cds-services/mbc-patient-view", json=_scoped("patient/Patient.r patient/Condition.rs"))
        assert not [c for c in router.calls if "Observation" in str(c.request.url)]
    assert r.status_code == 412
    issue = r.json()["issue"]
    assert [i["expression"] for i in issue] == [["prefetch.observations"]]
    assert "does not grant search of Observation" in issue[0]["diagnostics"]


def test_a_granular_scope_is_fetched_and_reported_as_partial(client, patient):
    scope = "patient/*.rs patient/Observation.rs?category=laboratory"
    with respx.mock(assert_all_called=False) as router:
        _mock_all(router, patient)
        r = client.post("/cds-services/mbc-patient-view", json=_scoped(scope.replace("patient/*.rs ", "patient/Patient.r patient/Condition.rs ")))
        assert [c for c in router.calls if "Observation" in str(c.request.url)]
    incomplete = next(c for c in r.json()["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert "grants only part of Observation (category=laboratory)" in incomplete["detail"]
