"""Medplum's CDS Hooks client (@medplum/core, fhir-test-server/cds-client.mjs) against the live
service with signed ES384 tokens and the real FHIR test server: discovery, then all three services
through Medplum's buildCdsRequest (Medplum prefetches from the FHIR server itself, never sends
fhirServer) and callCdsService, plus the request in which Medplum sends ``null`` for every prefetch
key because the app's context cannot fill the templates.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

import fixtures
from cds_hooks.catalog import services
from service.kit.dev_keys import generate
from tests.conftest import SERVICE_FOR_HOOK, LiveService, make_settings, rule_codes, today
from tests.support.fhir_server import SERVER_DIR, modules_installed, node_executable
from tests.support.schemas import RESPONSE, SERVICES, assert_valid

pytestmark = pytest.mark.integration
ISS = "https://medplum-app.example.test"
USER = {"resourceType": "Practitioner", "id": "example"}
CASES = {  # one manifest case per hook, each with rules that must fire and rules that must not
    "patient-view": "pv-hrpos-bone-1",
    "order-select": "os-her2pos-1-trastuzumab",
    "order-sign": "sign-her2pos-1-doxorubicin",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return generate(tmp_path_factory.mktemp("medplum-keys"), alg="ES384")


@pytest.fixture(scope="module")
def signed_service(tmp_path_factory: pytest.TempPathFactory, keys: Any) -> Iterator[LiveService]:
    settings = make_settings(tmp_path_factory.mktemp("medplum-live"), auth_required=True,
                             trusted_issuers=[{"iss": ISS, "jwks_file": str(keys.jwks)}])
    service = LiveService(settings)
    yield service
    service.stop()


def _case(case_id: str) -> dict[str, Any]:
    return next(c for c in fixtures.manifest() if c["id"] == case_id)


def _context(case: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": case["patient"]}
    if case["hook"] != "patient-view":
        context["draftOrders"] = fixtures.rolled(fixtures.read_json(fixtures.HERE / case["draft_orders"]), today())
        if case["hook"] == "order-select":
            context["selections"] = case["selections"]
    return context


def _run(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    node = node_executable()
    if node is None or not modules_installed():
        pytest.fail("Node.js and fhir-test-server/node_modules are needed (make test installs both)")
    out = subprocess.run([node, str(SERVER_DIR / "cds-client.mjs")], input=json.dumps(config), capture_output=True,
                         text=True, timeout=120, cwd=SERVER_DIR)
    results = {r["name"]: r for r in (json.loads(line) for line in out.stdout.splitlines() if line.startswith("{"))}
    assert out.returncode == 0 and "fatal" not in results, (out.stderr[-2000:], results.get("fatal"))
    return results


def test_medplum_client_calls_all_three_services(fhir_server: Any, signed_service: LiveService, keys: Any) -> None:
    for path in sorted(fixtures.PATIENTS.glob("*.json")):  # PUT with stable ids: harmless if already loaded
        fhir_server.post_bundle(fixtures.rolled(fixtures.read_json(path), today()))
    cases = {hook: _case(case_id) for hook, case_id in CASES.items()}
    scenarios = [{"name": hook, "service": SERVICE_FOR_HOOK[hook], "context": _context(case)} for hook, case in cases.items()]
    # The app has no patient in context: Medplum cannot fill {{context.patientId}} and sends null for every key.
    scenarios.append({"name": "nulls", "service": "mbc-patient-view", "context": {"userId": "Practitioner/example"}})
    results = _run({"fhirBase": fhir_server.base_url, "serviceBase": signed_service.base_url, "key": str(keys.private),
                    "kid": keys.kid, "iss": ISS, "user": USER, "scenarios": scenarios})

    discovery = results["discovery"]["response"]
    assert_valid(SERVICES, discovery)
    assert {s["id"] for s in discovery["services"]} == set(SERVICE_FOR_HOOK.values())

    for hook, case in cases.items():
        result = results[hook]
        assert result["ok"], result
        request = result["request"]
        keys_ = {q.key for q in services()[SERVICE_FOR_HOOK[hook]].queries}
        assert "fhirServer" not in request and set(request["prefetch"]) == keys_  # Medplum prefetched every key itself
        assert all(isinstance(v, dict) and v.get("resourceType") for v in request["prefetch"].values())
        assert_valid(RESPONSE, result["response"])
        codes = rule_codes(result["response"])
        assert set(case["expect"]) <= set(codes), (hook, case["expect"], codes)
        assert not set(case.get("absent", [])) & set(codes), (hook, codes)

    nulls = results["nulls"]
    assert not nulls["ok"] and nulls["stage"] == "call"
    assert set(nulls["request"]["prefetch"].values()) == {None}  # Medplum's null for keys it could not fill
    issue = nulls["outcome"]["issue"]  # the service's OperationOutcome, as Medplum surfaces it
    assert issue[0]["details"]["coding"][0]["code"] == "invalid-context"
    assert [i.get("expression") for i in issue] == [["context.patientId"]]
