"""Every rule fires on its fixture and stays silent on its near miss, through HTTP, against a real
FHIR server: once with no prefetch (the service fetches) and once with full prefetch."""

from __future__ import annotations

from typing import Any

import pytest

import fixtures
from tests.conftest import SERVICE_FOR_HOOK, case_request, rule_codes, today

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
    codes = rule_codes(answer)
    missing = [c for c in case.get("expect", []) if c not in codes]
    unwanted = [c for c in case.get("absent", []) if c in codes]
    assert not missing and not unwanted, f"{case['id']} ({case['why']}): missing {missing}, unwanted {unwanted}; got {codes}"
    if "therapy" in case:
        check_therapy(case, answer)
    for phrase in case.get("text_absent", []):
        found = [c["source"]["topic"]["code"] for c in answer["cards"] if phrase.lower() in (c["summary"] + c.get("detail", "")).lower()]
        assert not found, f"{case['id']}: {phrase!r} in {found}"


def _offered(option: dict[str, Any]) -> bool:
    return option["met"] and not option["given"]


def check_therapy(case: dict[str, Any], answer: dict[str, Any]) -> None:
    """The therapy-options extension against the manifest's `therapy` (fixtures/README.md)."""
    want = case["therapy"]
    cards = [c for c in answer["cards"] if c["source"]["topic"]["code"] == "therapy-options"]
    assert len(cards) == 1, case["id"]
    ext = cards[0]["extension"]["mbc-cds-hooks.therapy-options"]
    assert ext["version"] == "1" and ext["lineBasis"], case["id"]
    assert ext["line"] == want["line"], f"{case['id']}: line {ext['line']}, expected {want['line']} ({case['why']})"
    options = {o["id"]: o for o in ext["options"]}
    following = {o["id"]: o for o in ext.get("nextOptions", [])}
    for o in [*ext["options"], *ext.get("nextOptions", [])]:
        assert set(o) >= {"id", "agents", "classes", "requires", "met", "given", "givenAgents", "evidence", "source"}, o
    if "no_next" in want:
        assert ("nextOptions" not in ext) == want["no_next"], f"{case['id']}: nextOptions {'absent' if 'nextOptions' not in ext else 'present'}"
    else:  # on a line now (no progression since it began) exactly when next options are expected
        assert ("nextOptions" in ext) == any(k.startswith("next_") for k in want), case["id"]
    for key, pool, offered in (("offered", options, True), ("not_offered", options, False),
                               ("next_offered", following, True), ("next_not_offered", following, False)):
        for oid in want.get(key, []):
            assert (oid in pool and _offered(pool[oid])) == offered, f"{case['id']}: {key} {oid}: {pool.get(oid)}"
    both = {**following, **options}
    for oid in want.get("given", []):
        assert oid in both and both[oid]["given"], f"{case['id']}: {oid} should be given: {both.get(oid)}"
    for oid in want.get("not_given", []):
        assert oid in both and not both[oid]["given"], f"{case['id']}: {oid} should not be given: {both.get(oid)}"


def test_every_rule_code_has_a_firing_case_and_a_near_miss():
    from cds_hooks.knowledge import knowledge

    fired = {c for case in CASES for c in case.get("expect", [])}
    silent = {c for case in CASES for c in case.get("absent", [])}
    rules = set(knowledge().rules) - {"data-incomplete"}
    assert rules <= fired, rules - fired
    assert rules <= silent, rules - silent
