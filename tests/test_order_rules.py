"""Order-hook safety rules (issue 11) and draft reading (issue 15), each from small hand-written
resources: the card a given patient gets for a given draft, why, and the near miss that stays silent."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_hooks.drafts import read_drafts, read_dosage, schedule_from_text
from cds_hooks.evaluate import each_card, evaluate
from cds_hooks.rules.safety import contradicts, mismatch
from mappings.build import build_picture
from mappings.cardiac import lvef_course
from mappings.exposure import last_dose
from mappings.suppression import add_interval, gonadal_suppression

TODAY = date(2026, 11, 1)
SCT, LOINC, RX = "http://snomed.info/sct", "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm"
BC = {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2024-01-01"}
MET = {"resourceType": "Condition", "id": "met", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C78.7"}]},
       "onsetDateTime": "2025-01-01"}
RXCUI = {"trastuzumab": "224905", "pertuzumab": "1298944", "doxorubicin": "3639", "cyclophosphamide": "3002", "letrozole": "72965",
         "fulvestrant": "282357", "tamoxifen": "10324", "ribociclib": "1873916", "goserelin": "50610", "leuprolide": "42375",
         "lapatinib": "480167", "t-dm1": "1371041", "t-dxd": "2267582", "paclitaxel": "56946", "carboplatin": "40048",
         "anastrozole": "84857", "palbociclib": "1601374"}


def patient(gender: str = "female", birth: str = "1960-01-01", birthsex: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": "p", "gender": gender, "birthDate": birth}
    if birthsex:
        res["extension"] = [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": birthsex}]
    return res


def lvef(oid: str, when: str, value: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": LOINC, "code": "10230-1"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": "%"}}


def weight(kg: float, when: str = "2026-10-25") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"w-{when}", "status": "final", "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": kg, "unit": "kg"}}


def menopause(state: str) -> dict[str, Any]:
    code = {"pre": "22636003", "post": "76498008"}[state]
    return {"resourceType": "Observation", "id": "meno", "status": "final", "code": {"coding": [{"system": SCT, "code": "161712005"}]},
            "effectiveDateTime": "2026-01-01", "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}


def order(mid: str, drug: str, status: str = "active", start: str = "2026-01-01", end: str | None = None, mg: float | None = None) -> dict[str, Any]:
    bounds = {"start": start, **({"end": end} if end else {})}
    dosage: dict[str, Any] = {"timing": {"repeat": {"boundsPeriod": bounds}}}
    if mg is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": "mg"}}]
    return {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order", "authoredOn": start,
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": RXCUI[drug]}]}, "dosageInstruction": [dosage]}


def given(mid: str, drug: str, when: str, mg: float | None = None, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": RX, "code": RXCUI[drug]}]}
    if text:
        concept["text"] = text
    res: dict[str, Any] = {"resourceType": "MedicationAdministration", "id": mid, "status": "completed", "effectiveDateTime": when,
                           "medicationCodeableConcept": concept}
    if mg is not None:
        res["dosage"] = {"dose": {"value": mg, "unit": "mg"}}
    return res


def receptor(oid: str, code: str, when: str, value: dict[str, Any], site: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": when, "bodySite": {"text": site}, **value}


def pct(v: float) -> dict[str, Any]:
    return {"valueQuantity": {"value": v, "unit": "%"}}


def ihc(score: str, text: str | None = None) -> dict[str, Any]:
    la = {"0": "LA6111-4", "1+": "LA11841-6", "2+": "LA11842-4", "3+": "LA11843-2"}[score]
    return {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": la}], "text": text or score}}


def sample(tag: str, when: str, site: str, er: float, pr: float, her2: str, her2_text: str | None = None) -> list[dict[str, Any]]:
    return [receptor(f"er-{tag}", "85329-1", when, pct(er), site), receptor(f"pr-{tag}", "85325-9", when, pct(pr), site),
            receptor(f"her2-{tag}", "85319-2", when, ihc(her2, her2_text), site)]


HER2POS = sample("met", "2025-01-10", "liver", 0, 0, "3+")
HRPOS = sample("met", "2025-01-10", "liver", 90, 50, "0")


def picture(*resources: dict[str, Any], metastatic: bool = True, who: dict[str, Any] | None = None):
    base = [who or patient(), BC] + ([MET] if metastatic else [])
    return build_picture([*base, *resources], today=TODAY)


def draft(mid: str, drug: str, mg: float | None = None, every: tuple[float, str] | None = None, text: str = "",
          unit: str = "mg", route: str = "intravenous") -> dict[str, Any]:
    dosage: dict[str, Any] = {"text": text, "route": {"text": route}}
    if every:
        dosage["timing"] = {"repeat": {"frequency": 1, "period": every[0], "periodUnit": every[1]}}
    if mg is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": unit, "code": unit}}]
    return {"resourceType": "MedicationRequest", "id": mid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": RXCUI[drug]}]}, "dosageInstruction": [dosage]}


def cards(pic, *drafts: dict[str, Any], hook: str = "order-sign", selections: list[str] | None = None,
          entries: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    out = each_card(hook, pic, today=TODAY,
                    draft_entries=entries if entries is not None else [{"resource": d} for d in drafts], selections=selections)
    return {c["source"]["topic"]["code"]: c for c in out}


# -- order-cardiac-monitoring -------------------------------------------------------------------

Q3W = (3, "wk")


def test_lvef_fall_of_16_points_fires_although_recent_and_above_50():
    pic = picture(*HER2POS, lvef("l0", "2025-01-20", 70), order("t", "trastuzumab", start="2025-02-01"), lvef("l1", "2026-10-20", 53))
    course = lvef_course(pic)
    assert (course.baseline.value, course.last.value, course.fall) == (70, 53, 17)
    card = cards(pic, draft("d", "trastuzumab", 390, Q3W))["order-cardiac-monitoring"]
    assert "fall of 17 points" in card["detail"] and card["indicator"] == "warning"
    assert "Observation/l0" in card["extension"]["mbc-cds-hooks.evidence"]


@pytest.mark.parametrize("before,after,fires", [(62, 55, False), (60, 49, True), (65, 50, False), (58, 48, True)])
def test_lvef_thresholds(before, after, fires):
    pic = picture(*HER2POS, lvef("l0", "2025-01-20", before), order("t", "trastuzumab", start="2025-02-01"), lvef("l1", "2026-10-20", after))
    assert ("order-cardiac-monitoring" in cards(pic, draft("d", "trastuzumab", 390, Q3W))) is fires


def test_pre_treatment_value_is_before_the_first_antibody_or_adc_of_any_regimen():
    # LVEF 68 before trastuzumab (2024), 60 before T-DM1 (2026): the fall counts from 68.
    pic = picture(*HER2POS, lvef("l0", "2024-01-05", 68), order("t", "trastuzumab", "completed", "2024-01-10", "2025-06-01"),
                  lvef("l1", "2026-01-05", 60), order("k", "t-dm1", "completed", "2026-01-10", "2026-09-01"), lvef("l2", "2026-10-01", 51))
    course = lvef_course(pic)
    assert course.baseline.reference == "Observation/l0" and course.fall == 17


def test_tyrosine_kinase_inhibitors_neither_set_the_baseline_nor_get_the_card():
    pic = picture(*HER2POS, order("lap", "lapatinib", start="2024-06-01"), lvef("l0", "2025-01-20", 70))
    assert lvef_course(pic).first_dose is None
    assert "order-cardiac-monitoring" not in cards(pic, draft("d", "lapatinib", 1250, (1, "d")))  # LVEF 21 months old
    assert "order-cardiac-monitoring" in cards(pic, draft("d", "trastuzumab", 390, Q3W))


def test_no_lvef_and_stale_lvef():
    assert "no LVEF on record" in cards(picture(*HER2POS), draft("d", "pertuzumab", 420, Q3W))["order-cardiac-monitoring"]["detail"]
    stale = picture(*HER2POS, lvef("l0", "2026-07-01", 62))
    assert "more than 3 months ago" in cards(stale, draft("d", "t-dxd", 350, Q3W))["order-cardiac-monitoring"]["detail"]


def test_summary_card_shows_the_fall_on_anti_her2_therapy():
    pic = picture(*HER2POS, lvef("l0", "2025-01-20", 70), order("t", "trastuzumab", start="2025-02-01"), lvef("l1", "2026-10-20", 53))
    [summary] = [c for c in each_card("patient-view", pic, today=TODAY)
                 if c["source"]["topic"]["code"] == "mbc-summary"]
    assert "LVEF 53% on 2026-10-20; pre-treatment 70% on 2025-01-20" in summary["detail"]
    assert "fall of 17 points (meets the label's criterion to withhold)" in summary["detail"]


# -- order-anthracycline-her2 -----------------------------------------------------------------


@pytest.mark.parametrize("stopped,fires", [("2026-09-01", True), ("2026-04-02", True), ("2026-03-31", False), ("2026-02-01", False)])
def test_anthracycline_within_7_months_of_the_last_trastuzumab_dose(stopped, fires):
    pic = picture(*HER2POS, order("t", "trastuzumab", "stopped", "2025-02-01", stopped))
    found = cards(pic, draft("d", "doxorubicin", 110, Q3W))
    assert ("order-anthracycline-her2" in found) is fires
    if fires:
        assert found["order-anthracycline-her2"]["indicator"] == "critical"


def test_last_dose_is_the_latest_administration_and_emtansine_does_not_count():
    pic = picture(*HER2POS, order("t", "trastuzumab", "completed", "2025-02-01", "2025-12-01"),
                  given("a1", "trastuzumab", "2026-01-20T10:00:00Z", 420), order("k", "t-dm1", "completed", "2026-02-10", "2026-10-20"))
    last = last_dose(pic, ["trastuzumab"], TODAY)
    assert (last.date, last.reference, last.basis) == (date(2026, 1, 20), "MedicationAdministration/a1", "administration")
    assert "order-anthracycline-her2" not in cards(pic, draft("d", "doxorubicin", 110, Q3W))  # trastuzumab 9 months ago


def test_concurrent_anthracycline_and_antibody_in_one_draft():
    pic = picture(*HER2POS)
    found = cards(pic, draft("a", "doxorubicin", 110, Q3W), draft("b", "trastuzumab", 420, Q3W))
    assert found["order-anthracycline-her2"]["summary"].startswith("Doxorubicin with trastuzumab")


# -- order-trastuzumab-dose --------------------------------------------------------------------


def reload_picture(last: str = "2026-10-11") -> Any:
    return picture(*HER2POS, weight(70), order("t", "trastuzumab", "completed", "2025-02-01", last),
                   given("a", "trastuzumab", f"{last}T10:00:00Z", 420))


@pytest.mark.parametrize("mg,every,last,fires", [
    (560, (3, "wk"), "2026-10-11", True),    # 8 mg/kg 3-weekly, 21 days after the last dose: within 4 weeks
    (560, (3, "wk"), "2026-10-04", True),    # 28 days: still within the 3-weekly window
    (560, (3, "wk"), "2026-10-03", False),   # 29 days: a dose missed by more than a week, reload is right
    (280, (1, "wk"), "2026-10-11", False),   # 4 mg/kg weekly after 21 days: more than a missed week
    (280, (1, "wk"), "2026-10-22", True),    # 4 mg/kg weekly 10 days after the last dose
    (560, None, "2026-10-11", True),         # schedule unreadable: the contract's 4 weeks
    (420, (3, "wk"), "2026-10-11", False),   # maintenance 6 mg/kg
    (140, (1, "wk"), "2026-10-11", False),   # maintenance 2 mg/kg
])
def test_loading_dose_reload_window_follows_the_schedule(mg, every, last, fires):
    found = cards(reload_picture(last), draft("d", "trastuzumab", mg, every))
    reload = "order-trastuzumab-dose" in found and "loading dose" in found["order-trastuzumab-dose"]["detail"]
    assert reload is fires, found.get("order-trastuzumab-dose", {}).get("detail")


@pytest.mark.parametrize("mg,every,text,phrase", [
    (300, (3, "wk"), "", "fits no label schedule"),
    (280, (2, "wk"), "", "every 2 weeks is not a label schedule"),
    (420, None, "", "schedule could not be read"),
])
def test_doses_and_schedules_off_label_or_unreadable(mg, every, text, phrase):
    found = cards(picture(*HER2POS, weight(70)), draft("d", "trastuzumab", mg, every, text))
    assert phrase in found["order-trastuzumab-dose"]["detail"]


def test_schedule_from_text_when_timing_is_absent():
    found = cards(picture(*HER2POS, weight(70)), draft("d", "trastuzumab", 420, None, "420 mg IV q3w"))
    assert "order-trastuzumab-dose" not in found


def test_subcutaneous_fixed_dose_mg_per_kg_orders_and_missing_weight():
    pic = picture(*HER2POS)  # no weight
    sc = draft("sc", "trastuzumab", 600, Q3W, route="subcutaneous")
    assert "order-trastuzumab-dose" not in cards(pic, sc)
    assert "order-trastuzumab-dose" not in cards(pic, draft("kg", "trastuzumab", 6, Q3W, unit="mg/kg"))
    assert "no body weight" in cards(pic, draft("mg", "trastuzumab", 420, Q3W))["order-trastuzumab-dose"]["summary"]


def test_a_dose_that_cannot_be_read_is_named_at_signing_not_while_selecting():
    pic = picture(*HER2POS, weight(70))
    no_dose = draft("d", "trastuzumab", None, Q3W)
    assert "data-incomplete" not in cards(pic, no_dose, hook="order-select", selections=["MedicationRequest/d"])
    assert "no dose in mg or mg/kg" in cards(pic, no_dose)["data-incomplete"]["detail"]
    assert "5 mL" in cards(pic, draft("d", "trastuzumab", 5, Q3W, unit="mL"), hook="order-select")["data-incomplete"]["detail"]


# -- order-endocrine-premenopausal and order-endocrine-male -------------------------------------


def test_gnrh_depot_cover_depends_on_the_product():
    pic = picture(*HRPOS, menopause("pre"), given("g", "goserelin", "2026-09-07T10:00:00Z", 10.8))
    assert [d.covered_until for d in gonadal_suppression(pic, TODAY).active] == [date(2026, 11, 30)]
    lapsed = picture(*HRPOS, menopause("pre"), given("g", "goserelin", "2026-09-07T10:00:00Z", 3.6))
    s = gonadal_suppression(lapsed, TODAY)
    assert not s.suppressed and s.lapsed[0].covered_until == date(2026, 10, 5)
    assert "order-endocrine-premenopausal" not in cards(pic, draft("d", "letrozole", 2.5, (1, "d")))
    assert "covers until 2026-10-05" in cards(lapsed, draft("d", "letrozole", 2.5, (1, "d")))["order-endocrine-premenopausal"]["detail"]


def test_gnrh_dose_of_unknown_strength_is_reported_not_guessed():
    recent = picture(*HRPOS, menopause("pre"), given("g", "goserelin", "2026-10-20T10:00:00Z"))
    assert gonadal_suppression(recent, TODAY).suppressed  # within 28 days, every depot covers
    old = picture(*HRPOS, menopause("pre"), given("g", "goserelin", "2026-09-07T10:00:00Z"))
    card = cards(old, draft("d", "letrozole", 2.5, (1, "d")))["order-endocrine-premenopausal"]
    assert "cannot be told" in card["detail"]


def test_monthly_depots_count_calendar_months():
    assert add_interval(date(2026, 1, 31), 1, "mo") == date(2026, 2, 28)
    assert add_interval(date(2026, 9, 7), 3, "mo") == date(2026, 12, 7)
    pic = picture(*HRPOS, menopause("pre"), given("l", "leuprolide", "2026-08-10T10:00:00Z", 11.25))
    assert gonadal_suppression(pic, TODAY).active[0].covered_until == date(2026, 11, 10)


@pytest.mark.parametrize("birth,meno,extra,fires", [
    ("1986-05-20", None, [], True),                      # 40, status not recorded
    ("1961-03-08", None, [], False),                     # 65, status not recorded
    ("1970-01-01", "post", [], False),                   # recorded postmenopausal
    ("1981-06-30", None, [{"resourceType": "Procedure", "id": "bso", "status": "completed", "performedDateTime": "2024-03-12",
                           "code": {"text": "Bilateral salpingo-oophorectomy"}}], False),
    ("1981-06-30", None, [{"resourceType": "Procedure", "id": "oo", "status": "completed", "performedDateTime": "2024-03-12",
                           "code": {"text": "Oophorectomy"}}], True),  # laterality not stated: named, not counted
])
def test_premenopausal_rule_by_status_age_and_ablation(birth, meno, extra, fires):
    pic = picture(*HRPOS, *([menopause(meno)] if meno else []), *extra, who=patient(birth=birth))
    found = cards(pic, draft("d", "fulvestrant", 500, (4, "wk")))
    assert ("order-endocrine-premenopausal" in found) is fires
    if extra and fires:
        assert "not counted as ablation" in found["order-endocrine-premenopausal"]["detail"]


def test_gnrh_ordered_with_the_ai_counts():
    pic = picture(*HRPOS, menopause("pre"))
    assert "order-endocrine-premenopausal" in cards(pic, draft("d", "letrozole", 2.5, (1, "d")))
    assert "order-endocrine-premenopausal" not in cards(pic, draft("d", "letrozole", 2.5, (1, "d")), draft("g", "goserelin", 3.6, (4, "wk")))


@pytest.mark.parametrize("gender,birthsex,sex", [("male", None, "male"), ("female", "M", "male"), ("male", "F", "female"),
                                                 ("unknown", None, "unknown"), ("female", "UNK", "female")])
def test_sex_from_birth_sex_extension_else_gender(gender, birthsex, sex):
    assert picture(who=patient(gender, birthsex=birthsex)).sex == sex


def test_aromatase_inhibitor_for_a_man():
    man = patient("male", "1971-04-04", "M")
    pic = picture(*HRPOS, who=man)
    found = cards(pic, draft("d", "letrozole", 2.5, (1, "d")))
    assert "order-endocrine-male" in found and "order-endocrine-premenopausal" not in found
    assert "Sex: male (birth sex, US Core extension)" in found["order-endocrine-male"]["detail"]
    on_gnrh = picture(*HRPOS, given("l", "leuprolide", "2026-09-15T10:00:00Z", 11.25), who=man)
    assert "order-endocrine-male" not in cards(on_gnrh, draft("d", "letrozole", 2.5, (1, "d")))
    assert "order-endocrine-male" not in cards(pic, draft("d", "tamoxifen", 20, (1, "d")))


# -- order-ribociclib-tamoxifen, order-interstitial-lung-disease, order-combination-chemotherapy --


def test_ribociclib_with_tamoxifen_drafted_or_active():
    pic = picture(*HRPOS, menopause("post"))
    assert "order-ribociclib-tamoxifen" in cards(pic, draft("r", "ribociclib", 600, (1, "d")), draft("t", "tamoxifen", 20, (1, "d")))
    on_tamoxifen = picture(*HRPOS, menopause("post"), order("tam", "tamoxifen"))
    card = cards(on_tamoxifen, draft("r", "ribociclib", 600, (1, "d")))["order-ribociclib-tamoxifen"]
    assert "Active: tamoxifen" in card["detail"]
    assert "order-ribociclib-tamoxifen" not in cards(pic, draft("r", "ribociclib", 600, (1, "d")), draft("l", "letrozole", 2.5, (1, "d")))


def test_ild_card_is_info_and_a_warning_with_pneumonitis_on_record():
    pic = picture(*HER2POS, lvef("l", "2026-10-01", 60))
    assert cards(pic, draft("d", "t-dxd", 350, Q3W))["order-interstitial-lung-disease"]["indicator"] == "info"
    pneumonitis = {"resourceType": "Condition", "id": "pn", "code": {"text": "Radiation pneumonitis"}, "onsetDateTime": "2025-05-01",
                   "clinicalStatus": {"coding": [{"code": "resolved"}]}}
    flagged = picture(*HER2POS, lvef("l", "2026-10-01", 60), pneumonitis)
    assert not [u for u in flagged.unmapped if u.reference == "Condition/pn"]  # classified, not dropped
    card = cards(flagged, draft("d", "t-dxd", 350, Q3W))["order-interstitial-lung-disease"]
    assert card["indicator"] == "warning" and "Radiation pneumonitis, 2025-05-01, resolved" in card["detail"]
    assert "order-interstitial-lung-disease" not in cards(flagged, draft("d", "t-dm1", 250, Q3W))


def test_combination_chemotherapy_only_for_metastatic_disease_without_visceral_crisis():
    ac = [draft("a", "doxorubicin", 110, Q3W), draft("c", "cyclophosphamide", 1050, Q3W)]
    assert "order-combination-chemotherapy" in cards(picture(*HRPOS), *ac)
    assert "order-combination-chemotherapy" not in cards(picture(*HRPOS, metastatic=False), *ac)
    crisis = {"resourceType": "Condition", "id": "vc", "code": {"text": "Visceral crisis (liver failure from metastases)"}, "onsetDateTime": "2026-10-20"}
    assert "order-combination-chemotherapy" not in cards(picture(*HRPOS, crisis), *ac)
    curative = [{**d, "extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-procedure-intent",
                                     "valueCodeableConcept": {"coding": [{"system": SCT, "code": "373808002"}]}}]} for d in ac]
    assert "order-combination-chemotherapy" not in cards(picture(*HRPOS), *curative)


# -- order-receptor-mismatch: any tested sample supports its therapy ------------------------------


def discordant(primary_er: float, primary_her2: str, met_er: float, met_her2: str, met_text: str | None = None):
    return picture(*sample("p", "2020-03-05", "Breast, left", primary_er, primary_er, primary_her2),
                   *sample("m", "2026-08-15", "liver", met_er, met_er, met_her2, met_text))


def test_a_receptor_positive_in_any_sample_supports_its_therapy():
    pic = discordant(80, "1+", 0, "0")  # ER+ HER2-low primary, ER- HER2-0 metastasis
    assert pic.hr_status == "negative" and pic.her2.category == "0"
    assert not contradicts(["aromatase-inhibitor"], pic) and not contradicts(["anti-her2-adc"], pic, "trastuzumab deruxtecan")
    found = mismatch(["anti-her2-antibody"], pic, "trastuzumab")
    assert found is not None and found.kind == "her2-negative" and len(found.samples) == 2
    assert not contradicts(["anti-her2-antibody"], discordant(0, "3+", 0, "0"), "trastuzumab")  # HER2+ primary supports trastuzumab


def test_ultralow_supports_tdxd_only_with_hr_positive_disease():
    hr_pos = discordant(90, "0", 90, "0", "0 (ultralow)")
    tnbc = discordant(0, "0", 0, "0", "0 (ultralow)")
    assert hr_pos.her2.category == "ultralow"
    assert not contradicts(["anti-her2-adc"], hr_pos, "trastuzumab deruxtecan")
    assert contradicts(["anti-her2-adc"], tnbc, "trastuzumab deruxtecan")
    assert contradicts(["anti-her2-adc"], hr_pos, "trastuzumab emtansine")


def test_her2_equivocal_only_flags_her2_directed_therapy():
    pic = picture(*sample("m", "2026-09-25", "liver", 90, 50, "2+"))
    assert pic.her2.status == "equivocal"
    assert mismatch(["anti-her2-antibody"], pic, "trastuzumab").kind == "her2-equivocal"  # type: ignore[union-attr]
    assert not contradicts(["aromatase-inhibitor"], pic)
    found = cards(pic, draft("d", "trastuzumab", 560, Q3W))["order-receptor-mismatch"]
    assert "equivocal (IHC 2+, no conclusive ISH)" in found["detail"]


# -- draft orders: RequestGroups, medicationReference, empty drafts ---------------------------------


def test_request_group_with_contained_orders_and_group_selection():
    members = [draft("pac", "paclitaxel", 140, (1, "wk")), draft("tra", "trastuzumab", 300, Q3W)]
    group = {"resourceType": "RequestGroup", "id": "rg", "status": "draft", "intent": "order", "contained": members,
             "action": [{"resource": {"reference": "#pac"}}, {"action": [{"resource": {"reference": "#tra"}}]}]}
    reading = read_drafts([{"resource": group}], ["RequestGroup/rg"])
    assert [(o.reference, o.evidence, o.selected, o.group) for o in reading.orders] == [
        ("RequestGroup/rg#pac", "RequestGroup/rg", True, "RequestGroup/rg"), ("RequestGroup/rg#tra", "RequestGroup/rg", True, "RequestGroup/rg")]
    card = cards(picture(*HER2POS, weight(70)), entries=[{"resource": group}])["order-trastuzumab-dose"]
    assert "(in RequestGroup/rg)" in card["detail"] and "suggestions" not in card  # a contained order has no id to delete


def test_bundled_orders_medication_references_and_other_request_types():
    med = {"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RX, "code": "224905"}]}}
    by_ref = {**draft("a", "trastuzumab", 420, Q3W), "medicationReference": {"reference": "Medication/m1"}}
    del by_ref["medicationCodeableConcept"]
    contained = {**draft("b", "letrozole", 2.5, (1, "d")), "contained": [{"resourceType": "Medication", "id": "x",
                                                                          "code": {"text": "Letrozole 2.5 mg tablet"}}],
                 "medicationReference": {"reference": "#x"}}
    del contained["medicationCodeableConcept"]
    by_display = {"resourceType": "MedicationRequest", "id": "c", "status": "draft", "medicationReference": {"display": "Anastrozole 1 mg"}}
    group = {"resourceType": "RequestGroup", "id": "rg", "action": [{"resource": {"reference": "MedicationRequest/a"}},
                                                                    {"resource": {"reference": "urn:uuid:1234"}},
                                                                    {"resource": {"reference": "MedicationRequest/missing"}}]}
    entries = [{"resource": group}, {"resource": by_ref}, {"fullUrl": "urn:uuid:1234", "resource": contained}, {"resource": med},
               {"resource": by_display}, {"resource": {"resourceType": "NutritionOrder", "id": "n", "status": "draft"}},
               {"resource": {"resourceType": "ServiceRequest", "id": "s", "status": "draft", "code": {"text": "Echocardiogram"}}}]
    reading = read_drafts(entries, None)
    assert [(o.ingredient, o.reference, o.group) for o in reading.orders] == [
        ("trastuzumab", "MedicationRequest/a", "RequestGroup/rg"), ("letrozole", "MedicationRequest/b", "RequestGroup/rg"),
        ("anastrozole", "MedicationRequest/c", None)]
    assert reading.unidentified == ["RequestGroup/rg (MedicationRequest/missing: not in the draft orders)"]


def test_a_draft_without_medication_gets_no_card_and_an_unknown_drug_is_named():
    pic = picture(*HER2POS)
    sandbox_first_call = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
                          "category": {"coding": [{"code": "outpatient"}]}, "reasonCode": {"text": ""}}
    assert cards(pic, sandbox_first_call, hook="order-select", selections=["MedicationRequest/request-123"]) == {}
    assert cards(pic, {**sandbox_first_call, "medicationCodeableConcept": {"coding": []}}) == {}
    unknown = {**sandbox_first_call, "medicationCodeableConcept": {"text": "Investigational agent XYZ-123"}}
    assert "MedicationRequest/request-123" in cards(pic, unknown)["data-incomplete"]["extension"]["mbc-cds-hooks.evidence"]


@pytest.mark.parametrize("text,weeks", [("every 3 weeks", 3), ("q3w", 3), ("Q 3 wk", 3), ("3-weekly", 3), ("three-weekly", 3),
                                        ("every 21 days", 3), ("weekly", 1), ("once a week", 1), ("q7d", 1), ("daily", None)])
def test_schedule_text(text, weeks):
    found = schedule_from_text(text)
    assert (round(found, 2) if found is not None else None) == weeks


def test_dosage_from_structure_then_text():
    structured = read_dosage(draft("d", "trastuzumab", 6, (21, "d"), unit="mg/kg"))
    assert (structured.amount, structured.unit, structured.every_weeks, structured.schedule_basis) == (6, "mg/kg", 3, "timing")
    text_only = read_dosage({"dosageInstruction": [{"text": "Trastuzumab 8 mg/kg IV loading, then every 3 weeks"}]})
    assert (text_only.amount, text_only.unit, text_only.dose_basis, text_only.every_weeks) == (8, "mg/kg", "text", 3)
    single_object = read_dosage({"dosageInstruction": {"doseAndRate": {"doseQuantity": {"value": 420, "unit": "mg"}}}})
    assert (single_object.amount, single_object.every_weeks) == (420, None)


def test_at_most_one_card_per_draft_order_and_rule():
    pic = picture(*HER2POS)  # no weight, no LVEF
    found = evaluate("order-sign", pic, hook_instance="t", today=TODAY,
                     draft_entries=[{"resource": draft("a", "trastuzumab", 420, Q3W)}, {"resource": draft("b", "trastuzumab", 300, Q3W)},
                                    {"resource": draft("c", "doxorubicin", 110, Q3W)}])
    per_order: dict[tuple[str, str], int] = {}
    for card in found:
        for ref in ("MedicationRequest/a", "MedicationRequest/b", "MedicationRequest/c"):
            if ref in card.get("extension", {}).get("mbc-cds-hooks.evidence", []):
                key = (card["source"]["topic"]["code"], ref)
                per_order[key] = per_order.get(key, 0) + 1
    assert per_order and max(per_order.values()) == 1


def test_suggested_echocardiogram_is_valid_fhir_r4():
    from fhir.resources.R4B import get_fhir_model_class

    card = cards(picture(*HER2POS), draft("d", "trastuzumab", 420, Q3W))["order-cardiac-monitoring"]
    [action] = card["suggestions"][0]["actions"]
    get_fhir_model_class("ServiceRequest").model_validate(action["resource"])


def test_an_order_on_hold_is_not_a_dose_today():
    held = order("t", "trastuzumab", "on-hold", "2025-02-01")
    pic = picture(*HER2POS, weight(70), held, given("a", "trastuzumab", "2026-09-20T10:00:00Z", 420))
    last = last_dose(pic, ["trastuzumab"], TODAY)
    assert (last.date, last.basis) == (date(2026, 9, 20), "administration")
    assert "order-trastuzumab-dose" not in cards(pic, draft("d", "trastuzumab", 560, Q3W))  # reload after 6 weeks on hold
