"""Property tests (hypothesis) for lines of therapy over random treatment histories (issue 12):
a line number never decreases when a record is added after the others; adding a maintenance agent
to a running regimen never changes the line; no therapy option offers an agent already given for
metastatic disease (by ingredient) unless the guideline allows its re-use."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cds_hooks.evaluate import each_card
from cds_hooks.knowledge import knowledge
from mappings.build import build_picture
from mappings.picture import BiomarkerResult, MarkerStatus

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
TODAY = date(2026, 11, 1)
METASTASIS = date(2023, 1, 10)
DRUGS = {"letrozole": "72965", "anastrozole": "84857", "fulvestrant": "282357", "tamoxifen": "10324", "palbociclib": "1601374",
         "ribociclib": "1873916", "everolimus": "141704", "capecitabine": "194000", "paclitaxel": "56946", "docetaxel": "72962",
         "trastuzumab": "224905", "pertuzumab": "1298944", "goserelin": "50610", "eribulin": "1045453"}
BASE = [{"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2019-01-01"},
        {"resourceType": "Condition", "id": "m", "code": {"coding": [{"system": SCT, "code": "94222008"}]}, "onsetDateTime": METASTASIS.isoformat()}]


def record(rid: str, name: str, start: date, days: int | None) -> dict[str, Any]:
    """A MedicationRequest; ``days`` None = still active."""
    bounds = {"start": start.isoformat()}
    if days is not None:
        bounds["end"] = (start + timedelta(days=days)).isoformat()
    return {"resourceType": "MedicationRequest", "id": rid, "status": "active" if days is None else "completed", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": DRUGS[name]}]}, "authoredOn": start.isoformat(),
            "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": bounds}}}]}


def worsened(rid: str, when: date) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": {"coding": [{"system": LOINC, "code": "97509-4"}]},
            "effectiveDateTime": when.isoformat(), "valueCodeableConcept": {"coding": [{"system": SCT, "code": "271299001"}]}}


@st.composite
def histories(draw) -> list[dict[str, Any]]:
    """Records of random drugs with random starts (before and after metastasis), durations, and progressions."""
    out = []
    for i in range(draw(st.integers(1, 8))):
        start = METASTASIS + timedelta(days=draw(st.integers(-400, 1200)))
        days = draw(st.none() | st.integers(0, 400))
        out.append(record(f"r{i}", draw(st.sampled_from(sorted(DRUGS))), start, days))
    for i in range(draw(st.integers(0, 3))):
        out.append(worsened(f"pd{i}", METASTASIS + timedelta(days=draw(st.integers(0, 1300)))))
    return out


def picture(resources: list[dict[str, Any]]):
    return build_picture(BASE + resources, today=TODAY)


def last_start(resources: list[dict[str, Any]]) -> date:
    return max(date.fromisoformat(r.get("authoredOn") or r["effectiveDateTime"]) for r in resources)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(histories(), st.sampled_from(sorted(DRUGS)), st.integers(1, 400), st.none() | st.integers(0, 200))
def test_a_line_number_never_decreases_when_a_record_is_added_after_the_others(history, name, after, days):
    before = picture(history)
    start = last_start(history) + timedelta(days=after)
    assume(start <= TODAY)
    later = picture(history + [record("new", name, start, days)])
    line_before = before.current_line.line if before.current_line else 0
    line_after = later.current_line.line if later.current_line else 0
    assert line_after >= line_before
    assert len(later.lines) >= len(before.lines)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(histories(), st.sampled_from(["letrozole", "anastrozole", "goserelin"]), st.integers(1, 300))
def test_adding_a_maintenance_agent_to_a_running_regimen_never_changes_the_line(history, name, after):
    before = picture(history)
    current = before.current_line
    assume(current is not None and current.ongoing and current.start is not None)
    # After every earlier record, and later than the regimen window, so it is a record of its own.
    start = max(current.start, last_start(history)) + timedelta(days=31 + after)
    assume(start <= TODAY)
    # A progression between the line's start and the new record would make it a new line by definition.
    assume(not any(p.date and current.start < p.date <= start for p in before.progressions))
    later = picture(history + [record("maint", name, start, None)])
    assert later.current_line is not None and later.current_line.line == current.line
    assert len(later.lines) == len(before.lines)


SUBTYPES = {
    "HR+/HER2-": ("positive", "negative", "low"),
    "HR+/HER2+": ("positive", "positive", "positive"),
    "HR-/HER2+": ("negative", "positive", "positive"),
    "TNBC": ("negative", "negative", "0"),
}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(histories(), st.sampled_from(sorted(SUBTYPES)), st.sets(st.sampled_from(["gBRCA", "PIK3CA", "ESR1", "AKT1", "PTEN"])),
       st.sampled_from(["premenopausal", "postmenopausal", "unknown"]), st.sampled_from(["female", "male"]))
def test_no_option_offers_an_agent_already_given_unless_the_guideline_allows_reuse(history, subtype, positives, menopause, sex):
    pic = picture(history)
    hr, her2, category = SUBTYPES[subtype]
    pic.er = MarkerStatus("ER", status=hr, percent=80 if hr == "positive" else 0, source="observation")
    pic.pr = MarkerStatus("PR", status=hr, source="observation")
    pic.her2 = MarkerStatus("HER2", status=her2, category=category, source="observation")
    pic.menopause, pic.gender = menopause, sex
    pic.biomarkers = [BiomarkerResult(m, "detected", TODAY, f"Observation/{m}", germline=True if m == "gBRCA" else None) for m in positives]
    given_agents = {a for line in pic.lines for a in line.agents}
    defined = {o["id"]: o for o in knowledge().therapy_options}
    cards = [c for c in each_card("patient-view", pic, today=TODAY)
             if c["source"]["topic"]["code"] == "therapy-options"]
    assert len(cards) == 1
    ext = cards[0]["extension"]["mbc-cds-hooks.therapy-options"]
    for option in ext["options"] + ext.get("nextOptions", []):
        assert set(option["givenAgents"]) == set(option["agents"]) & given_agents  # by ingredient, not by class
        if not option["met"] or option["given"]:
            continue  # not offered: listed with met false, or marked as given
        reuse = set(defined[option["id"]].get("reuse") or [])
        if defined[option["id"]].get("alternatives"):
            assert set(option["agents"]) - given_agents  # a menu offers the agents not given yet
        else:
            assert set(option["givenAgents"]) <= reuse, option
