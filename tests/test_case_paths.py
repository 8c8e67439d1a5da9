"""Every case of fixtures/manifest.yaml through both paths, with no difference allowed:
``cds_hooks.evaluate`` on the fixture's resources (as ``explain`` runs it, no HTTP), and the HTTP
service against the real FHIR test server, fetching itself and with full prefetch (issue 11): the
same cards, rule codes, indicators, summaries and details."""

from __future__ import annotations

from typing import Any

import pytest

import fixtures
from cds_hooks.cards import rules_of
from cds_hooks.evaluate import evaluate
from mappings.build import build_picture
from tests.conftest import SERVICE_FOR_HOOK, case_request, today

pytestmark = pytest.mark.integration
CASES = fixtures.manifest()
ORDER_CASES = [c for c in CASES if c["hook"] != "patient-view"]


@pytest.fixture(scope="session")
def orders_loaded(fhir_server) -> Any:
    """The fixture patients on the server; PUT with stable ids, so loading again (beside other tests) changes nothing."""
    for path in sorted(fixtures.PATIENTS.glob("*.json")):
        fhir_server.post_bundle(fixtures.rolled(fixtures.read_json(path), today()))
    return fhir_server


def _cards(cards: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(tuple(rules_of(c)), c["indicator"], c["summary"], c.get("detail", "")) for c in cards]


def _direct(case: dict[str, Any]) -> list[dict[str, Any]]:
    picture = build_picture(fixtures.load(fixtures.HERE / case["file"], today()), today=today())
    if case["hook"] == "patient-view":
        return evaluate("patient-view", picture, hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", today=today())
    draft = fixtures.rolled(fixtures.read_json(fixtures.HERE / case["draft_orders"]), today())
    return evaluate(case["hook"], picture, hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", today=today(),
                    draft_entries=draft.get("entry"), selections=case.get("selections") if case["hook"] == "order-select" else None)


def test_there_are_order_cases_for_every_order_rule():
    from cds_hooks.knowledge import knowledge

    order_rules = {code for code in knowledge().rules if code.startswith("order-")}
    assert order_rules <= {c for case in ORDER_CASES for c in case["expect"]}


@pytest.mark.parametrize("mode", ["fetch", "prefetch"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_evaluate_and_http_give_the_same_cards(case, mode, orders_loaded, live_service):
    body = case_request(case, orders_loaded.base_url if mode == "fetch" else None)
    response = live_service.client.post(f"/cds-services/{SERVICE_FOR_HOOK[case['hook']]}", json=body)
    assert response.status_code == 200, response.text
    over_http, direct = _cards(response.json()["cards"]), _cards(_direct(case))
    assert over_http == direct, f"{case['id']} ({mode}): HTTP {over_http} != evaluate {direct}"
    codes = {code for rules, _, _, _ in direct for code in rules}
    assert set(case["expect"]) <= codes and not set(case["absent"]) & codes, (case["id"], codes)
