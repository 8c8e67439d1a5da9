"""Metastasis, treatment history and other facts: each code path from a small hand-written resource."""

from __future__ import annotations

from datetime import date

import pytest

from mappings.build import build_picture

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
TODAY = date(2026, 11, 22)
BC = {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2020-01-01"}


def cond(cid, system=None, code=None, text=None, onset="2025-05-01", **extra):
    concept = {}
    if code:
        concept["coding"] = [{"system": system, "code": code}]
    if text:
        concept["text"] = text
    return {"resourceType": "Condition", "id": cid, "code": concept, "onsetDateTime": onset, **extra}


def obs(oid, code, system=LOINC, when="2025-05-01", **value):
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": system, "code": code}]},
            "effectiveDateTime": when, **value}


def med(mid, code=None, text=None, rtype="MedicationRequest", status="active", start="2025-06-01", **extra):
    concept = {"coding": [{"system": RX, "code": code}]} if code else {"text": text}
    key = "authoredOn" if rtype == "MedicationRequest" else "effectiveDateTime"
    r = {"resourceType": rtype, "id": mid, "status": status, "medicationCodeableConcept": concept, key: start, **extra}
    if rtype == "MedicationRequest":
        r["intent"] = "order"
    return r


def pic(*resources):
    return build_picture([BC, *resources], today=TODAY)


@pytest.mark.parametrize("resource,site", [
    (cond("m", SCT, "94222008"), "bone"),
    (cond("m", ICD, "C79.51"), "bone"),
    (cond("m", ICD, "C78.7"), "liver"),
    (cond("m", ICD, "C79.31"), "brain"),
    (cond("m", SCT, "128462008", bodySite=[{"coding": [{"system": SCT, "code": "39607008"}]}]), "lung"),
    (cond("m", text="Metastatic carcinoma to the pleura"), "pleura"),
])
def test_metastatic_site_by_code_bodysite_or_text(resource, site):
    p = pic(resource)
    assert p.metastatic and p.sites == [site] and p.metastasis_date == date(2025, 5, 1)


def test_axillary_nodes_alone_are_not_distant():
    p = pic(cond("ax", SCT, "94181007"))
    assert not p.metastatic and p.sites == [] and p.metastases[0].regional


@pytest.mark.parametrize("extra", [
    {"verificationStatus": {"coding": [{"code": "refuted"}]}},
    {"verificationStatus": {"coding": [{"code": "entered-in-error"}]}},
    {"clinicalStatus": {"coding": [{"code": "resolved"}]}},
    {"clinicalStatus": {"coding": [{"code": "inactive"}]}},
])
def test_refuted_resolved_inactive_metastases_are_skipped(extra):
    assert not pic(cond("m", SCT, "94381002", **extra)).metastatic


@pytest.mark.parametrize("resource", [
    obs("s", "21908-9", valueCodeableConcept={"coding": [{"system": SCT, "code": "258228008"}]}),
    obs("s", "21908-9", valueCodeableConcept={"coding": [{"system": "http://cancerstaging.org", "code": "4"}]}),
    obs("s", "21907-1", valueCodeableConcept={"coding": [{"system": SCT, "code": "55440008"}]}),
    obs("s", "97509-4", valueCodeableConcept={"coding": [{"system": SCT, "code": "399409002"}]}),
    obs("s", "1287652008", system=SCT, valueBoolean=True),
])
def test_stage_iv_m1_and_disease_status_make_metastatic(resource):
    p = pic(resource)
    assert p.metastatic and p.sites == []


def test_m0_and_visceral():
    assert not pic(obs("s", "21907-1", valueCodeableConcept={"coding": [{"system": SCT, "code": "30893008"}]})).metastatic
    assert pic(cond("m", SCT, "94381002")).visceral and not pic(cond("m", SCT, "94222008")).visceral


def test_meta_profile_is_never_used():
    r = cond("m", SCT, "94222008", meta={"profile": ["http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"]})
    assert pic(r).sites == ["bone"]


def test_product_codes_roll_up_and_names_match():
    p = pic(med("a", "583214"), med("b", "1156671", rtype="MedicationStatement"), med("c", text="Kadcyla 100 mg"),
            med("d", "1601380", rtype="MedicationAdministration", status="completed", start="2026-11-01"))
    by_drug = {t.ingredient: t for t in p.treatments}
    assert by_drug["paclitaxel"].drug_class == "taxane"
    assert by_drug["fulvestrant"].drug_class == "serd"
    assert by_drug["trastuzumab emtansine"].drug_class == "anti-her2-adc"
    assert by_drug["palbociclib"].active  # an administration three weeks ago is current therapy


def test_cancelled_and_unknown_medications():
    p = pic(med("x", "583214", status="cancelled"), med("y", "197361"))
    assert p.treatments == []
    assert ("http://www.nlm.nih.gov/research/umls/rxnorm", "197361") in {(u.system, u.code) for u in p.unmapped}


def test_other_facts():
    p = pic(obs("l1", "10230-1", when="2026-01-01", valueQuantity={"value": 62, "unit": "%"}),
            obs("l2", "10230-1", when="2026-10-01", valueQuantity={"value": 48, "unit": "%"}),
            obs("e", "89247-1", valueInteger=1),
            obs("mp", "161712005", system=SCT, valueCodeableConcept={"coding": [{"system": SCT, "code": "22636003"}]}),
            obs("w", "29463-7", valueQuantity={"value": 154, "unit": "lb", "code": "[lb_av]"}),
            obs("g", "44648-4", valueString="Grade 3"),
            obs("b", "21636-6", valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA6577-6"}]}),
            obs("v", "69548-6", valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9633-4"}]}, component=[
                {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]}, "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org/geneId", "code": "HGNC:3467"}]}},
                {"code": {"coding": [{"system": LOINC, "code": "48002-0"}]}, "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6684-0"}]}}]))
    assert p.latest(p.lvef).value == 48 and p.ecog.value == 1 and p.menopause == "premenopausal"
    assert p.weight[0].value == pytest.approx(69.9, abs=0.1) and p.grade.value == 3
    assert [(b.marker, b.result, b.germline) for b in p.biomarkers] == [("ESR1", "detected", False), ("gBRCA", "negative", True)]


def test_unknown_observation_and_condition_codes_are_listed():
    p = pic(obs("bp", "8480-6", valueQuantity={"value": 120}), cond("htn", SCT, "38341003"))
    assert {("http://loinc.org", "8480-6"), (SCT, "38341003")} <= {(u.system, u.code) for u in p.unmapped}
