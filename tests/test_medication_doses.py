"""Medication records keep their dose and intent: rules about depots, reloads and bone agents read them."""

from __future__ import annotations

from datetime import date

from mappings.build import build_picture

TODAY = date(2026, 11, 1)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _uses(*resources):
    return build_picture([{"resourceType": "Patient", "id": "p"}, *resources], today=TODAY).medication_uses


def test_dose_from_dosage_instruction_in_mg():
    [use] = _uses({"resourceType": "MedicationRequest", "id": "g", "status": "active", "intent": "order",
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "50610"}]},
                   "authoredOn": "2026-09-01",
                   "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 10.8, "unit": "mg", "code": "mg"}}]}]})
    assert (use.ingredient, *use.dose, use.dose_mg()) == ("goserelin", 10.8, "mg", "dosage", 10.8)


def test_administration_dose_and_product_strength():
    admin, prolia = _uses(
        {"resourceType": "MedicationAdministration", "id": "t", "status": "completed", "effectiveDateTime": "2026-10-01",
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "224905"}]},
         "dosage": {"dose": {"value": 6, "unit": "mg/kg"}}},
        {"resourceType": "MedicationRequest", "id": "d", "status": "active", "intent": "order", "authoredOn": "2026-10-15",
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "993452"}]}},
    )
    assert (admin.dose[:2], admin.dose_mg()) == ((6.0, "mg/kg"), None)  # per kg: no absolute dose
    assert (prolia.ingredient, prolia.dose_mg(), prolia.dose[2]) == ("denosumab", 60.0, "strength")


def test_dose_from_text_but_not_from_a_concentration():
    text, conc = _uses(
        {"resourceType": "MedicationStatement", "id": "s", "status": "active", "effectiveDateTime": "2026-08-01",
         "medicationCodeableConcept": {"text": "Goserelin 3.6 mg implant"}},
        {"resourceType": "MedicationStatement", "id": "c", "status": "active", "effectiveDateTime": "2026-09-01",
         "medicationCodeableConcept": {"text": "denosumab 70 mg/mL injection"}},
    )
    assert (text.dose[0], text.dose[2]) == (3.6, "text")
    assert conc.dose[0] is None  # a strength per mL is not a dose


def test_mcode_treatment_intent():
    [use] = _uses({"resourceType": "MedicationRequest", "id": "a", "status": "completed", "intent": "order", "authoredOn": "2020-01-01",
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3639"}]},
                   "extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-procedure-intent",
                                  "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "373808002"}]}}]})
    assert use.intent == "curative"
