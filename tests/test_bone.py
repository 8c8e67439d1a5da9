"""Bone metastases: the bone agent must be at an oncology dose; fractures, cord compression and hypercalcaemia
(calcium corrected for albumin, in any unit) are urgent. Each from a few hand-written resources."""

from __future__ import annotations

from datetime import date

import pytest

from cds_hooks.evaluate import each_card
from mappings.build import build_picture
from mappings.labs import albumin_g_dl, calcium_mg_dl, convert_calcium

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
TODAY = date(2026, 11, 1)
BC = {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2020-01-01"}
BONE = {"resourceType": "Condition", "id": "bone", "code": {"coding": [{"system": ICD, "code": "C79.51"}]}, "onsetDateTime": "2026-03-01"}
LIVER = {"resourceType": "Condition", "id": "liver", "code": {"coding": [{"system": SCT, "code": "94381002"}]}, "onsetDateTime": "2026-03-01"}


def cond(cid, text=None, system=None, code=None, **extra):
    concept = {}
    if code:
        concept["coding"] = [{"system": system, "code": code}]
    if text:
        concept["text"] = text
    return {"resourceType": "Condition", "id": cid, "code": concept, "onsetDateTime": "2026-10-20", **extra}


def lab(oid, code, value, unit, when="2026-10-26", high=None, high_unit=None):
    r = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
         "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit, "code": unit}}
    if high is not None:
        r["referenceRange"] = [{"high": {"value": high, "unit": high_unit or unit}}]
    return r


def agent(mid, code=None, text=None, dose=None, status="active"):
    concept = {"coding": [{"system": RX, "code": code}]} if code else {"text": text}
    dosage = {"text": text or ""}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": "mg", "code": "mg"}}]
    return {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order", "medicationCodeableConcept": concept,
            "authoredOn": "2026-03-10", "dosageInstruction": [dosage]}


def cards(*resources):
    pic = build_picture([BC, *resources], today=TODAY)
    return {c["source"]["topic"]["code"]: c for c in each_card("patient-view", pic, today=TODAY)}


# -- units -----------------------------------------------------------------------------------

def test_unit_conversions():
    assert calcium_mg_dl(2.5, "mmol/L") == pytest.approx(10.02, abs=0.01)
    assert calcium_mg_dl(5.0, "mEq/L") == pytest.approx(10.02, abs=0.01)
    assert albumin_g_dl(28, "g/L") == pytest.approx(2.8)
    assert convert_calcium(10.5, "mg/dL", "mmol/L") == pytest.approx(2.62, abs=0.01)
    assert calcium_mg_dl(2.5, "mg%") is None  # a unit not listed is not guessed


# -- bone-targeted-agent ---------------------------------------------------------------------

@pytest.mark.parametrize("medication,fires,says", [
    (agent("d", code="993452", text="Denosumab 60 mg/mL prefilled syringe (Prolia)"), True, "Denosumab 60 mg active"),
    (agent("d", code="993449", text="Denosumab", dose=60), True, "not the 120 mg oncology dose"),
    (agent("d", code="993449", text="Denosumab", dose=120), False, None),
    (agent("z", code="1114085", text="Zoledronic acid 4 mg/100 mL"), False, None),
    (agent("z", code="77655", text="Zoledronic acid", dose=5), True, "Zoledronic acid 5 mg"),
    (agent("z", code="77655", text="Zoledronic acid"), True, "dose not recorded"),
    (agent("p", code="11473", text="Pamidronate 90 mg IV every 4 weeks"), False, None),
    (agent("d", code="993449", text="Denosumab", dose=120, status="completed"), True, "Bone-modifying agents: denosumab"),
])
def test_bone_agent_counts_only_at_an_oncology_dose(medication, fires, says):
    found = cards(BONE, medication)
    assert ("bone-targeted-agent" in found) == fires
    if says:
        assert says in found["bone-targeted-agent"]["detail"]


# -- bone-complication -----------------------------------------------------------------------

@pytest.mark.parametrize("complication", [
    cond("f", system=SCT, code="268029009"),
    cond("f", system=ICD, code="M84.50XA"),
    cond("f", text="Pathologic fracture of left humerus"),
    cond("s", text="Epidural spinal cord compression, T8"),
    cond("h", text="Hypercalcemia of malignancy"),
])
def test_recorded_complications_with_bone_metastases_are_urgent(complication):
    found = cards(BONE, complication)
    assert found["bone-complication"]["indicator"] == "warning"
    assert f"Condition/{complication['id']}" in found["bone-complication"]["extension"]["mbc-cds-hooks.evidence"]


@pytest.mark.parametrize("site,complication", [
    (LIVER, cond("f", system=SCT, code="268029009")),  # a fracture without bone metastases: the near miss
    (BONE, cond("f", system=SCT, code="268029009", clinicalStatus={"coding": [{"code": "resolved"}]})),
    (BONE, cond("f", text="Fracture of left radius")),  # traumatic: not pathological
])
def test_fractures_that_do_not_count(site, complication):
    assert "bone-complication" not in cards(site, complication)


def test_cord_compression_named_metastatic_is_not_a_site():
    pic = build_picture([BC, BONE, cond("s", text="Metastatic spinal cord compression at T10")], today=TODAY)
    assert pic.sites == ["bone"] and [c.kind for c in pic.complications] == ["spinal-cord-compression"]


@pytest.mark.parametrize("resources,fires,says", [
    # total calcium inside its range, above it once corrected: 2.50 + 0.025 x (40 - 28) = 2.80 mmol/L
    ([lab("ca", "2000-8", 2.50, "mmol/L", high=2.55), lab("alb", "1751-7", 28, "g/L")], True, "Corrected calcium 2.80 mmol/L"),
    # low calcium with low albumin, normal once corrected (mg/dL, g/dL, no range): 8.4 + (4.0 - 3.0) = 9.4 < 10.5
    ([lab("ca", "17861-6", 8.4, "mg/dL"), lab("alb", "1751-7", 3.0, "g/dL")], False, None),
    # high albumin lowers it: 10.8 + (4.0 - 4.6) = 10.2 < 10.5
    ([lab("ca", "17861-6", 10.8, "mg/dL"), lab("alb", "1751-7", 4.6, "g/dL")], False, None),
    # reported corrected calcium above the default limit in mg/dL
    ([lab("cc", "29265-6", 11.2, "mg/dL")], True, "above the upper limit used when no reference range is reported 10.5 mg/dL"),
    # a range in mg/dL on a result in mmol/L is converted: 2.70 mmol/L > 10.2 mg/dL (2.55 mmol/L)
    ([lab("ca", "2000-8", 2.70, "mmol/L", high=10.2, high_unit="mg/dL"), lab("alb", "1751-7", 40, "g/L")], True, "2.70 mmol/L"),
    # no albumin the same day: not corrected, said so
    ([lab("ca", "2000-8", 2.75, "mmol/L"), lab("alb", "1751-7", 40, "g/L", when="2026-10-01")], True, "not corrected for albumin"),
    # the latest calcium decides: an old high value followed by a normal one
    ([lab("old", "2000-8", 3.0, "mmol/L", when="2026-09-01"), lab("ca", "2000-8", 2.3, "mmol/L"), lab("alb", "1751-7", 40, "g/L")], False, None),
])
def test_hypercalcaemia_from_calcium_corrected_for_albumin(resources, fires, says):
    found = cards(BONE, *resources)
    assert ("bone-complication" in found) == fires
    if says:
        assert says in found["bone-complication"]["detail"]
        assert "hydration" in found["bone-complication"]["detail"]


def test_each_complication_names_its_urgent_management():
    detail = cards(BONE, cond("s", text="Spinal cord compression"), cond("f", system=SCT, code="268029009"),
                   lab("cc", "29265-6", 3.1, "mmol/L"))["bone-complication"]["detail"]
    for words in ("corticosteroids", "orthopaedic", "hydration"):
        assert words in detail
