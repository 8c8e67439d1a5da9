"""Lines of therapy, early treatment, progression and endocrine resistance (mappings/lines.py), each
rule from a small hand-written record set, with its near miss."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from mappings.build import build_picture
from mappings.lines import add_months

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
TODAY = date(2026, 11, 1)
RXCUI = {"letrozole": "72965", "anastrozole": "84857", "palbociclib": "1601374", "fulvestrant": "282357", "trastuzumab": "224905",
         "pertuzumab": "1298944", "docetaxel": "72962", "paclitaxel": "56946", "capecitabine": "194000", "ribociclib": "1873916",
         "goserelin": "50610", "tamoxifen": "10324", "zoledronic acid": "77655", "everolimus": "141704"}
HR_POSITIVE = [
    {"resourceType": "Observation", "id": "er", "status": "final", "code": {"coding": [{"system": LOINC, "code": "85337-4"}]},
     "effectiveDateTime": "2019-01-10", "valueCodeableConcept": {"coding": [{"system": SCT, "code": "10828004"}]}},
    {"resourceType": "Observation", "id": "her2", "status": "final", "code": {"coding": [{"system": LOINC, "code": "85319-2"}]},
     "effectiveDateTime": "2019-01-10", "valueCodeableConcept": {"coding": [{"system": SCT, "code": "260385009"}]}},
]


def cancer(onset: str = "2019-01-01") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": onset}


def met(site_code: str = "94222008", onset: str = "2025-01-10", cid: str = "m") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "code": {"coding": [{"system": SCT, "code": site_code}]}, "onsetDateTime": onset}


def drug(mid: str, name: str, start: str, end: str | None = None, status: str | None = None, intent: str | None = None,
         stop: str | None = None) -> dict[str, Any]:
    bounds: dict[str, str] = {"start": start}
    if end:
        bounds["end"] = end
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": mid, "status": status or ("completed" if end else "active"), "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": RXCUI[name]}]}, "authoredOn": start,
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": bounds}}}],
    }
    if intent:
        code = {"curative": "373808002", "palliative": "363676003"}[intent]
        r["extension"] = [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-procedure-intent",
                           "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}]
    if stop:
        r["statusReason"] = {"coding": [{"system": SCT, "code": stop}]}
    return r


def worsened(oid: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": LOINC, "code": "97509-4"}]},
            "effectiveDateTime": when, "valueCodeableConcept": {"coding": [{"system": SCT, "code": "271299001"}]}}


def picture(*resources: dict[str, Any], receptors: bool = True):
    return build_picture([cancer(), *(HR_POSITIVE if receptors else []), *resources], today=TODAY)


def agents(pic) -> list[list[str]]:
    return [line.agents for line in pic.lines]


def test_adjuvant_is_early_treatment_and_progression_opens_the_second_line():
    p = picture(met(), drug("adj", "anastrozole", "2019-03-01", "2024-03-01"),
                drug("l", "letrozole", "2025-02-01", "2025-08-20"), drug("p", "palbociclib", "2025-02-10", "2025-08-20"),
                worsened("pd", "2025-08-15"), drug("f", "fulvestrant", "2025-09-01"))
    assert agents(p) == [["letrozole", "palbociclib"], ["fulvestrant"]]
    assert [(ln.line, ln.basis, ln.stop_reason) for ln in p.lines] == [(1, "first", "progression"), (2, "progression", None)]
    assert p.lines[1].end is None and p.lines[0].end == date(2025, 8, 20)
    assert [(e.line, e.setting, e.agents) for e in p.early_treatment] == [(0, "early", ["anastrozole"])]
    assert [(pr.date, pr.kind) for pr in p.progressions] == [(date(2025, 8, 15), "disease-status")]


def test_an_agent_added_to_a_running_regimen_stays_in_its_line():
    # Letrozole added as maintenance beside trastuzumab + pertuzumab (issue 12): still first line.
    p = picture(met(), drug("t", "trastuzumab", "2025-02-01"), drug("pz", "pertuzumab", "2025-02-01"),
                drug("d", "docetaxel", "2025-02-01", "2025-06-01"), drug("l", "letrozole", "2025-07-01"))
    assert agents(p) == [["docetaxel", "pertuzumab", "trastuzumab", "letrozole"]]
    assert p.lines[0].endocrine_start == date(2025, 7, 1) and p.lines[0].ongoing


def test_a_new_regimen_after_a_stopped_one_is_a_new_line_but_a_substitution_is_not():
    switched = picture(met(), drug("l", "letrozole", "2025-02-01", "2025-05-01"), drug("a", "anastrozole", "2025-05-05"))
    assert agents(switched) == [["letrozole", "anastrozole"]]  # same class: a substitution
    changed = picture(met(), drug("l", "letrozole", "2025-02-01", "2025-05-01"), drug("c", "capecitabine", "2025-05-05"))
    assert agents(changed) == [["letrozole"], ["capecitabine"]] and changed.lines[1].basis == "regimen-change"


def test_endocrine_maintenance_after_chemotherapy_stays_in_the_line_unless_after_a_gap():
    kept = picture(met(), drug("p", "paclitaxel", "2025-02-01", "2025-06-01"), drug("l", "letrozole", "2025-06-20"))
    assert agents(kept) == [["paclitaxel", "letrozole"]]
    gap = picture(met(), drug("p", "paclitaxel", "2025-02-01", "2025-06-01"), drug("l", "letrozole", "2025-10-20"))
    assert agents(gap) == [["paclitaxel"], ["letrozole"]]


def test_intent_overrides_the_date_and_supportive_drugs_are_never_a_line():
    p = picture(met(onset="2025-03-01"), drug("pre", "capecitabine", "2025-02-01", intent="palliative"),
                drug("cur", "paclitaxel", "2025-06-01", "2025-08-01", intent="curative"), drug("z", "zoledronic acid", "2025-03-05"))
    assert agents(p) == [["capecitabine"]]
    assert [e.agents for e in p.early_treatment] == [["paclitaxel"]]


def test_ovarian_suppression_joins_the_line_it_runs_with_and_never_opens_one():
    alone = picture(met(), drug("g", "goserelin", "2025-02-01"))
    assert alone.lines == []
    joined = picture(met(), drug("g", "goserelin", "2025-02-01"), drug("l", "letrozole", "2025-02-05"))
    assert agents(joined) == [["letrozole", "goserelin"]]


def test_a_site_first_seen_after_staging_is_a_progression_and_one_seen_at_staging_is_not():
    p = picture(met(onset="2025-01-10"), met("94381002", "2025-01-25", "liver"), met("94225005", "2025-09-01", "brain"))
    assert [(pr.date, pr.kind, pr.evidence) for pr in p.progressions] == [(date(2025, 9, 1), "new-site", ["Condition/brain"])]


def test_a_drug_stopped_for_no_response_is_a_progression():
    p = picture(met(), drug("l", "letrozole", "2025-02-01", "2025-07-01", stop="266721009"), drug("c", "capecitabine", "2025-08-01"))
    assert [ln.basis for ln in p.lines] == ["first", "progression"] and p.lines[0].stop_reason == "progression"
    assert [pr.kind for pr in p.progressions] == ["treatment-stopped"]
    tolerated = picture(met(), drug("l", "letrozole", "2025-02-01", "2025-07-01", stop="407563006"))
    assert tolerated.lines[0].stop_reason == "not-tolerated" and tolerated.progressions == []


def test_undated_records_are_reported_not_dropped():
    undated = drug("u", "letrozole", "2025-02-01")
    del undated["authoredOn"], undated["dosageInstruction"]
    p = picture(met(), undated)
    assert p.lines == [] and [t.ingredient for t in p.treatments] == ["letrozole"]
    assert any(w.startswith("MedicationRequest/u:") and "no line" in w for w in p.warnings)


def test_not_metastatic_means_every_regimen_is_early():
    p = picture(drug("l", "letrozole", "2025-02-01"))
    assert p.lines == [] and [e.agents for e in p.early_treatment] == [["letrozole"]]
    assert p.endocrine_resistance == "unknown"


def test_json_shape():
    p = picture(met(), drug("l", "letrozole", "2025-02-01"))
    js = p.to_json()
    assert js["lines"] == [{"line": 1, "agents": ["letrozole"], "start": "2025-02-01", "end": None,
                            "evidence": ["MedicationRequest/l"], "setting": "metastatic"}]
    assert js["earlyTreatment"] == [] and js["progressions"] == [] and js["endocrineResistance"] == "none"
    assert "regimensAfterMetastasis" not in js


@pytest.mark.parametrize("adjuvant,relapse,expected", [
    (("2019-03-01", None), "2020-06-01", "primary"),             # during the first 2 years
    (("2019-03-01", None), "2022-06-01", "secondary"),           # on it, after 2 years
    (("2019-03-01", "2024-03-01"), "2025-01-10", "secondary"),   # within 12 months of completing it
    (("2019-03-01", "2024-03-01"), "2025-04-10", "none"),        # more than 12 months after
])
def test_endocrine_resistance_after_adjuvant_therapy(adjuvant, relapse, expected):
    start, end = adjuvant
    p = picture(met(onset=relapse), drug("adj", "anastrozole", start, end))
    assert p.endocrine_resistance == expected, p.endocrine_resistance_basis
    if expected != "none":
        assert "MedicationRequest/adj" in p.endocrine_resistance_evidence and "Condition/m" in p.endocrine_resistance_evidence


def test_tamoxifen_then_an_aromatase_inhibitor_counts_from_the_first_adjuvant_drug():
    p = picture(met(onset="2022-01-10"), drug("t", "tamoxifen", "2019-03-01", "2021-03-01"), drug("a", "anastrozole", "2021-03-05"))
    assert p.endocrine_resistance == "secondary"


@pytest.mark.parametrize("progression,expected", [("2025-06-15", "primary"), ("2025-09-01", "secondary"), (None, "none")])
def test_endocrine_resistance_on_first_line_endocrine_therapy(progression, expected):
    extra = [worsened("pd", progression)] if progression else []
    p = picture(met(onset="2025-01-10"), drug("l", "letrozole", "2025-02-01"), drug("p", "palbociclib", "2025-02-01"), *extra)
    assert p.endocrine_resistance == expected
    assert (p.endocrine_progression is not None) == (progression is not None)


def test_endocrine_resistance_is_unknown_without_the_facts_that_decide_it():
    no_date = build_picture([cancer(), *HR_POSITIVE, {"resourceType": "Condition", "id": "m", "code": {"coding": [{"system": SCT, "code": "94222008"}]}},
                             drug("adj", "anastrozole", "2019-03-01", "2024-03-01")], today=TODAY)
    assert no_date.endocrine_resistance == "unknown" and "not recorded" in no_date.endocrine_resistance_basis
    assert [ln.agents for ln in no_date.lines] == [["anastrozole"]]  # no date to place it: counted as a line, and the card says so
    hr_negative = picture(met(), drug("l", "letrozole", "2025-02-01"), receptors=False)
    assert hr_negative.endocrine_resistance == "unknown"


def test_relapse_during_adjuvant_endocrine_therapy_is_the_endocrine_progression():
    p = picture(met(onset="2022-06-01"), drug("adj", "anastrozole", "2019-03-01"))
    assert p.endocrine_progression is not None and p.endocrine_progression.kind == "relapse"
    assert p.endocrine_progression.date == date(2022, 6, 1)


def test_add_months_keeps_the_day_or_the_last_day_of_the_month():
    assert add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), 24) == date(2026, 2, 28)
    assert add_months(date(2025, 1, 15), 12) == date(2026, 1, 15)
