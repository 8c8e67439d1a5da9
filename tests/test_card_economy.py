"""Card economy (card-contract.md): every fixture and every shared real record, through both kinds of
hook, in fetch and prefetch modes against the real FHIR test server, keeps to the limits, repeats no
detail line, cites once, keeps FHIR references out of the text, and leaves every rule that fired
visible to a machine. The figures (cards, characters, references per answer) are printed at the end
of the run, so a change shows its effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import fixtures
from cds_hooks.cards import EVIDENCE_EXTENSION, visible_rules
from cds_hooks.catalog import services
from cds_hooks.economy import Limits, violations
from cds_hooks.evaluate import fire
from mappings.build import build_picture
from service.kit.loader import load_files
from tests.conftest import REALDATA, SERVICE_FOR_HOOK, case_request, hook_request, today

pytestmark = pytest.mark.integration

LIMITS = Limits()
REGIMEN = fixtures.ORDERS / "economy-regimen.json"
FIXTURE_FILES = sorted(fixtures.PATIENTS.glob("*.json"))
REAL_FILES = sorted(REALDATA.glob("*.json")) if REALDATA.is_dir() else []
PATIENTS = [(p, True) for p in FIXTURE_FILES] + [(p, False) for p in REAL_FILES]
ORDER_CASES = [c for c in fixtures.manifest() if c["hook"] != "patient-view"]
FIGURES: list[tuple[str, ...]] = []


def _resources(path: Path, rolled: bool) -> list[dict[str, Any]]:
    """Fixtures are rolled to today (as the tests load them); real records are read as written."""
    return fixtures.load(path, today()) if rolled else fixtures.resources_of(fixtures.read_json(path))


@pytest.fixture(scope="module")
def loaded(fhir_server) -> Any:
    fhir_server.reset()
    for path in FIXTURE_FILES:
        fhir_server.post_bundle(fixtures.rolled(fixtures.read_json(path), today()))
    if REAL_FILES:
        report = load_files(REAL_FILES, fhir_server.base_url, token=getattr(fhir_server, "token", None), progress=False)
        assert not report.rejected and not report.fatal, (report.rejected[:3], report.fatal)
    return fhir_server


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not FIGURES:
        return
    reporter.write_line("")
    reporter.write_line("card economy: answer | mode | cards | detail characters | longest card | FHIR references")
    for row in FIGURES:
        reporter.write_line("  " + " | ".join(row))
    worst = max(FIGURES, key=lambda r: int(r[3]))
    reporter.write_line(f"  {len(FIGURES)} answers; most cards {max(int(r[2]) for r in FIGURES)}; "
                        f"most characters {worst[3]} ({worst[0]}, {worst[1]})")
    FIGURES.clear()


def _check(name: str, mode: str, hook: str, cards: list[dict[str, Any]], fired: list[str]) -> None:
    details = [len(c.get("detail", "")) for c in cards]
    refs = sum(len((c.get("extension") or {}).get(EVIDENCE_EXTENSION, [])) for c in cards)
    FIGURES.append((name, mode, str(len(cards)), str(sum(details)), str(max(details, default=0)), str(refs)))
    broken = violations(cards, hook, LIMITS)
    assert not broken, f"{name} ({hook}, {mode}): {broken}"
    hidden = set(fired) - set(visible_rules(cards))
    assert not hidden, f"{name} ({hook}, {mode}): rules fired but not visible: {sorted(hidden)}"


def _fired(hook: str, resources: list[dict[str, Any]], entries: list[dict[str, Any]] | None = None,
           selections: list[str] | None = None) -> list[str]:
    pic = build_picture(resources, today=today())
    return [d.rule for d in fire(hook, pic, today=today(), draft_entries=entries, selections=selections)]


def _post(live_service, hook: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = live_service.client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["cards"]


@pytest.mark.parametrize("mode", ["fetch", "prefetch"])
@pytest.mark.parametrize("path,rolled", PATIENTS, ids=[p.stem for p, _ in PATIENTS])
def test_patient_view_and_order_sign_keep_the_economy(path: Path, rolled: bool, mode: str, loaded, live_service):
    resources = _resources(path, rolled)
    patient = fixtures.patient_id(resources)
    assert patient, path
    regimen = fixtures.rolled(fixtures.read_json(REGIMEN), today())
    for hook, context in (("patient-view", {}), ("order-sign", {"draftOrders": regimen})):
        service = services()[SERVICE_FOR_HOOK[hook]]
        if mode == "fetch":
            body = hook_request(hook, patient, fhir_server=loaded.base_url, context=context)
        else:
            prefetch = fixtures.prefetch_for(resources, [q.key for q in service.queries])
            body = hook_request(hook, patient, prefetch=prefetch, context=context)
        cards = _post(live_service, hook, body)
        fired = _fired(hook, resources, regimen.get("entry") if context else None)
        _check(f"{path.stem} {hook}", mode, hook, cards, fired)


@pytest.mark.parametrize("mode", ["fetch", "prefetch"])
@pytest.mark.parametrize("case", ORDER_CASES, ids=[c["id"] for c in ORDER_CASES])
def test_order_cases_keep_the_economy(case: dict[str, Any], mode: str, loaded, live_service):
    body = case_request(case, loaded.base_url if mode == "fetch" else None)
    cards = _post(live_service, case["hook"], body)
    draft = body["context"]["draftOrders"]
    fired = _fired(case["hook"], fixtures.load(fixtures.HERE / case["file"], today()), draft.get("entry"),
                   case.get("selections") if case["hook"] == "order-select" else None)
    _check(case["id"], mode, case["hook"], cards, fired)
