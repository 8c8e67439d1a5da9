"""Every rule fires on its fixture and stays silent on its near miss, through HTTP, against a real
FHIR server: once with no prefetch (the service fetches) and once with full prefetch."""

from __future__ import annotations

from typing import Any

import pytest

import fixtures
from cds_hooks.catalog import services
from tests.conftest import hook_request, rule_codes, today

pytestmark = pytest.mark.integration
CASES = fixtures.manifest()
SERVICE_FOR_HOOK = {"patient-view": "mbc-patient-view", "order-select": "mbc-order-select", "order-sign": "mbc-order-sign"}


@pytest.fixture(scope="session")
def loaded(fhir_server) -> Any:
    fhir_server.reset()
    for path in sorted(fixtures.PATIENTS.glob("*.json")):
        fhir_server.post_bundle(fixtures.rolled(fixtures.read_json(path), today()))
    return fhir_server


def _request(case: dict[str, Any], mode: str, base: str | None) -> dict[str, Any]:
    service = services()[SERVICE_FOR_HOOK[case["hook"]]]
    context: dict[str, Any] = {}
    if case["hook"] != "patient-view":
        context["draftOrders"] = fixtures.rolled(fixtures.read_json(fixtures.HERE / case["draft_orders"]), today())
        if case["hook"] == "order-select":
            context["selections"] = case["selections"]
    if mode == "fetch":
        return hook_request(case["hook"], case["patient"], fhir_server=base, context=context)
    resources = fixtures.load(fixtures.HERE / case["file"], today())
    prefetch = fixtures.prefetch_for(resources, [q.key for q in service.queries])
    return hook_request(case["hook"], case["patient"], prefetch=prefetch, context=context)


@pytest.mark.parametrize("mode", ["fetch", "prefetch"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, mode, loaded, live_service):
    body = _request(case, mode, loaded.base_url)
    response = live_service.client.post(f"/cds-services/{SERVICE_FOR_HOOK[case['hook']]}", json=body)
    assert response.status_code == 200, response.text
    codes = rule_codes(response.json())
    missing = [c for c in case.get("expect", []) if c not in codes]
    unwanted = [c for c in case.get("absent", []) if c in codes]
    assert not missing and not unwanted, f"{case['id']} ({case['why']}): missing {missing}, unwanted {unwanted}; got {codes}"


def test_every_rule_code_has_a_firing_case_and_a_near_miss():
    from cds_hooks.knowledge import knowledge

    fired = {c for case in CASES for c in case.get("expect", [])}
    silent = {c for case in CASES for c in case.get("absent", [])}
    rules = set(knowledge().rules) - {"data-incomplete"}
    assert rules <= fired, rules - fired
    assert rules <= silent, rules - silent
