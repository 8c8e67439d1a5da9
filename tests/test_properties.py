"""Property-based tests: malformed resources never raise, and no card contradicts receptor status."""

from __future__ import annotations

import uuid
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures
from cds_hooks.evaluate import each_card, evaluate
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


draft_fields = st.sampled_from(["medicationCodeableConcept", "medicationReference", "dosageInstruction", "contained", "action",
                                "resource", "timing", "repeat", "period", "periodUnit", "frequency", "doseAndRate", "doseQuantity",
                                "value", "unit", "code", "text", "reference", "id", "status", "route", "extension", "coding"])


@st.composite
def draft_entries(draw):
    """Draft-order entries built from a real draft, with random values put at random places (fuzzing the reader)."""
    rx = draw(st.sampled_from(["224905", "3639", "72965", "2267582", "50610"]))
    order = {"resourceType": draw(st.sampled_from(["MedicationRequest", "RequestGroup", "NutritionOrder"])), "id": "d",
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rx}]},
             "dosageInstruction": [{"timing": {"repeat": {"period": 3, "periodUnit": "wk"}},
                                    "doseAndRate": [{"doseQuantity": {"value": 420, "unit": "mg"}}]}],
             "action": [{"resource": {"reference": "#m"}}], "contained": [{"resourceType": "MedicationRequest", "id": "m"}]}
    for _ in range(draw(st.integers(1, 6))):
        node = order
        for _ in range(draw(st.integers(0, 5))):
            children = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))]
            if not children:
                break
            node = draw(st.sampled_from(children))
        if isinstance(node, dict):
            node[draw(draft_fields)] = draw(json_values)
        elif isinstance(node, list):
            node.append(draw(json_values))
    return [{"resource": order}, *draw(st.lists(json_values, max_size=2))]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(draft_entries(), st.sampled_from(["order-select", "order-sign"]))
def test_arbitrary_draft_orders_never_raise(entries, hook):
    pic = build_picture(fixtures.load(fixtures.PATIENTS / "mbc-her2pos-1.json", TODAY), today=TODAY)
    evaluate(hook, pic, hook_instance="x", today=TODAY, draft_entries=entries, selections=["MedicationRequest/d"])


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
    cards = each_card("patient-view", pic, today=TODAY)
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


# -- any-sample semantics (contract: order-receptor-mismatch; ABC: a receptor positive in at least one
# sample supports its therapy). The oracle below reads the contract, not cds_hooks/rules/safety.py.

HER2_SHAPES = {"0": ("0", "negative", False), "ultralow": ("0", "negative", True), "1+": ("1+", "negative", False),
               "2+": ("2+", "equivocal", False), "3+": ("3+", "positive", False)}


@st.composite
def sampled_pictures(draw):
    """A picture whose receptor statuses come from 1-3 tested samples, consolidated as the mapping does."""
    from mappings.picture import ReceptorResult
    from mappings.receptors import consolidate, current_status

    results = []
    for i in range(draw(st.integers(1, 3))):
        when = date(2020 + 2 * i, 3, 1)
        common = {"date": when, "sample_key": f"s{i}", "specimen": "primary" if i == 0 else "metastasis"}
        er = draw(st.sampled_from([None, 0.0, 5.0, 80.0]))
        if er is not None:
            status = "negative" if er < 1 else "low-positive" if er <= 10 else "positive"
            results.append(ReceptorResult("ER", f"Observation/er-{i}", status=status, percent=er, kind="percent", **common))
        pr = draw(st.sampled_from([None, 0.0, 30.0]))
        if pr is not None:
            results.append(ReceptorResult("PR", f"Observation/pr-{i}", status="negative" if pr < 1 else "positive", percent=pr,
                                          kind="percent", **common))
        her2 = draw(st.sampled_from([None, *HER2_SHAPES]))
        if her2 is not None:
            score, status, ultralow = HER2_SHAPES[her2]
            results.append(ReceptorResult("HER2", f"Observation/her2-{i}", status=status, her2_ihc=score, ultralow=ultralow, kind="ihc", **common))
    pic = ClinicalPicture(patient="Patient/p", breast_cancer=True, metastatic=True, metastasis_date=date(2022, 1, 1),
                          metastases=[Metastasis(site="liver", reference="Condition/liver", date=date(2022, 1, 1), basis="code")])
    pic.receptor_history = results
    samples = consolidate(results)
    pic.er, pic.pr, pic.her2 = (current_status(m, samples.get(m, [])) for m in ("ER", "PR", "HER2"))
    pic.menopause = "postmenopausal"
    return pic, results


def _contract_flags(results, classes: set[str], ingredient: str | None) -> bool:
    """True when the contract says an order of these classes (ingredient) must be flagged."""
    er = [r.status for r in results if r.marker == "ER"]
    pr = [r.status for r in results if r.marker == "PR"]
    her2 = [r for r in results if r.marker == "HER2"]
    hr_any = any(s in ("positive", "low-positive") for s in er) or "positive" in pr
    if classes & ENDOCRINE_CLASSES and er and pr and set(er) == {"negative"} and set(pr) == {"negative"}:
        return True
    her2_classes = classes & HER2_CLASSES
    if her2_classes and her2 and {r.status for r in her2} <= {"negative", "equivocal"}:
        tdxd = her2_classes == {"anti-her2-adc"} and ingredient in (None, "trastuzumab deruxtecan")
        low = any(r.her2_ihc == "1+" for r in her2)
        ultralow = any(r.ultralow for r in her2)
        return not (tdxd and (low or (ultralow and hr_any)))
    return False


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(sampled_pictures())
def test_no_option_is_offered_that_no_tested_sample_supports(sampled):
    pic, results = sampled
    from mappings.codes import drug_class

    for card in each_card("patient-view", pic, today=TODAY):
        if card["source"]["topic"]["code"] != "therapy-options":
            continue
        ext = card["extension"]["mbc-cds-hooks.therapy-options"]
        for option in ext["options"] + ext.get("nextOptions", []):
            for agent in option["agents"]:
                assert not _contract_flags(results, {drug_class(agent) or ""}, agent), (option["id"], agent)


DRUGS = [("letrozole", "72965"), ("fulvestrant", "282357"), ("palbociclib", "1601374"), ("trastuzumab", "224905"),
         ("trastuzumab deruxtecan", "2267582"), ("trastuzumab emtansine", "1371041"), ("tucatinib", "2361285")]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(sampled_pictures())
def test_the_mismatch_card_fires_exactly_when_no_tested_sample_supports_the_order(sampled):
    from mappings.codes import drug_class

    pic, results = sampled
    for name, rxcui in DRUGS:
        draft = {"resourceType": "MedicationRequest", "id": "d", "status": "draft", "intent": "order",
                 "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui}]}}
        cards = evaluate("order-sign", pic, hook_instance="x", today=TODAY, draft_entries=[{"resource": draft}])
        fired = any(c["source"]["topic"]["code"] == "order-receptor-mismatch" for c in cards)
        assert fired is _contract_flags(results, {drug_class(name) or ""}, name), \
            (name, [(r.marker, r.status, r.her2_ihc, r.ultralow) for r in results])


def test_suggested_resources_are_valid_fhir_r4():
    from fhir.resources.R4B import get_fhir_model_class

    seen = 0
    for path in sorted(fixtures.PATIENTS.glob("*.json")):
        pic = build_picture(fixtures.load(path, TODAY), today=TODAY)
        for card in evaluate("patient-view", pic, hook_instance=str(uuid.uuid4()), today=TODAY):
            for suggestion in card.get("suggestions", []):
                for action in suggestion["actions"]:
                    if "resource" in action:
                        get_fhir_model_class(action["resource"]["resourceType"]).model_validate(action["resource"])
                        seen += 1
    assert seen >= 5
