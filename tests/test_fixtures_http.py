"""Every rule fires on its fixture and stays silent on its near miss, through HTTP, against a real
FHIR server: once with no prefetch (the service fetches) and once with full prefetch."""

from __future__ import annotations

from typing import Any

import pytest

import fixtures
from tests.conftest import SERVICE_FOR_HOOK, case_request, rule_codes, today
from tests.support.therapy import check_therapy
from tests.support.schemas import RESPONSE, assert_valid

pytestmark = pytest.mark.integration
CASES = fixtures.manifest()


@pytest.fixture(scope="session")
def loaded(fhir_server) -> Any:
    fhir_server.reset()
    for path in sorted(fixtures.PATIENTS.glob("*.json")):
        fhir_server.post_bundle(fixtures.rolled(fixtures.read_json(path), today()))
    return fhir_server


@pytest.mark.parametrize("mode", ["fetch", "prefetch"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, mode, loaded, live_service):
    body = case_request(case, loaded.base_url if mode == "fetch" else None)
    response = live_service.client.post(f"/cds-services/{SERVICE_FOR_HOOK[case['hook']]}", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid(RESPONSE, answer)  # CDS Hooks 3.0 CDSHooksResponse, tests/schemas
    codes = rule_codes(answer)
    missing = [c for c in case.get("expect", []) if c not in codes]
    unwanted = [c for c in case.get("absent", []) if c in codes]
    assert not missing and not unwanted, f"{case['id']} ({case['why']}): missing {missing}, unwanted {unwanted}; got {codes}"
    if "therapy" in case:
        check_therapy(case, answer)
    for phrase in case.get("text_absent", []):
        found = [c["source"]["topic"]["code"] for c in answer["cards"] if phrase.lower() in (c["summary"] + c.get("detail", "")).lower()]
        assert not found, f"{case['id']}: {phrase!r} in {found}"


def test_every_rule_code_has_a_firing_case_and_a_near_miss():
    from cds_hooks.knowledge import knowledge

    fired = {c for case in CASES for c in case.get("expect", [])}
    silent = {c for case in CASES for c in case.get("absent", [])}
    rules = set(knowledge().rules) - {"data-incomplete"}
    assert rules <= fired, rules - fired
    assert rules <= silent, rules - silent
