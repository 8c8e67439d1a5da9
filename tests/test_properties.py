"""Property-based tests: malformed resources never raise, and no card contradicts receptor status."""

from __future__ import annotations

import uuid
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures
from cds_hooks.evaluate import evaluate
from cds_hooks.rules.safety import ENDOCRINE_CLASSES, HER2_CLASSES
from mappings.build import build_picture
from mappings.picture import ClinicalPicture, MarkerStatus, Metastasis, TherapyLine

TODAY = date(2026, 11, 22)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
resource_types = st.sampled_from(["Observation", "Condition", "MedicationRequest", "MedicationStatement",
                                  "MedicationAdministration", "Specimen", "Patient", "Procedure", "Medication"])
fields = st.sampled_from(["code", "valueCodeableConcept", "valueQuantity", "valueString", "component", "status",
                          "clinicalStatus", "verificationStatus", "bodySite", "specimen", "effectiveDateTime",
                          "onsetDateTime", "medicationCodeableConcept", "medicationReference", "dosageInstruction",
                          "interpretation", "extension", "birthDate", "collection", "id", "stage", "intent"])


@st.composite
def resources(draw):
    res = {"resourceType": draw(resource_types), "id": draw(st.text(min_size=1, max_size=8))}
    for key in draw(st.lists(fields, max_size=6)):
        res[key] = draw(json_values)
    return res


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resources() | json_values, max_size=8))
def test_arbitrary_resources_never_raise(items):
    pic = build_picture(items, today=TODAY)
    pic.to_json()
    evaluate("patient-view", pic, hook_instance="x", today=TODAY)


STATUS = st.sampled_from(["positive", "negative", "unknown"])


@st.composite
def pictures(draw):
    pic = ClinicalPicture(patient="Patient/p", breast_cancer=True, metastatic=draw(st.booleans()))
    pic.er = MarkerStatus("ER", status=draw(st.sampled_from(["positive", "low-positive", "negative", "unknown"])), source="observation")
    pic.pr = MarkerStatus("PR", status=draw(STATUS), source="observation")
    her2 = draw(st.sampled_from(["positive", "negative", "equivocal", "unknown"]))
    category = {"positive": "positive"}.get(her2) or (draw(st.sampled_from(["0", "ultralow", "low", "unknown"])) if her2 == "negative" else "unknown")
    pic.her2 = MarkerStatus("HER2", status=her2, category=category, source="observation")
    pic.metastasis_date = date(2025, 1, 1) if pic.metastatic else None
    if pic.metastatic:
        pic.metastases = [Metastasis(site=s, reference=f"Condition/{s}", date=date(2025, 1, 1), basis="code")
                          for s in draw(st.sets(st.sampled_from(["bone", "liver", "lung", "brain"]), min_size=1))]
    pic.lines = [TherapyLine(i + 1, [draw(st.sampled_from(["letrozole", "paclitaxel", "trastuzumab", "capecitabine"]))],
                             date(2025, 2 + i, 1), date(2025, 2 + i, 20), "metastatic") for i in range(draw(st.integers(0, 4)))]
    pic.menopause = draw(st.sampled_from(["premenopausal", "postmenopausal", "unknown"]))
    return pic


@settings(max_examples=500)
@given(pictures(), st.sets(st.sampled_from(["gBRCA", "PIK3CA", "ESR1", "AKT1", "PTEN", "PD-L1"])))
def test_no_therapy_option_contradicts_receptor_status(pic, positives):
    from mappings.picture import BiomarkerResult

    pic.biomarkers = [BiomarkerResult(m, "detected", TODAY, f"Observation/{m}") for m in positives]
    cards = evaluate("patient-view", pic, hook_instance="x", today=TODAY, max_cards=100)
    for card in cards:
        if card["source"]["topic"]["code"] != "therapy-options":
            continue
        ext = card["extension"]["mbc-cds-hooks.therapy-options"]
        for option in ext["options"] + ext.get("nextOptions", []):
            option_id, classes = option["id"], set(option["classes"])
            if pic.hr_status == "negative":
                assert not classes & ENDOCRINE_CLASSES, option_id
            if pic.her2.status == "negative":
                her2_classes = classes & HER2_CLASSES
                assert not her2_classes or (her2_classes == {"anti-her2-adc"} and pic.her2.category in ("low", "ultralow")), option_id


def test_suggested_resources_are_valid_fhir_r4():
    from fhir.resources.R4B import get_fhir_model_class

    seen = 0
    for path in sorted(fixtures.PATIENTS.glob("*.json")):
        pic = build_picture(fixtures.load(path, TODAY), today=TODAY)
        for card in evaluate("patient-view", pic, hook_instance=str(uuid.uuid4()), today=TODAY, max_cards=100):
            for suggestion in card.get("suggestions", []):
                for action in suggestion["actions"]:
                    if "resource" in action:
                        get_fhir_model_class(action["resource"]["resourceType"]).model_validate(action["resource"])
                        seen += 1
    assert seen >= 5
