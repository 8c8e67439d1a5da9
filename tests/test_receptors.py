"""ASCO/CAP receptor rules, each from a small hand-written Observation."""

from __future__ import annotations

from datetime import date

import pytest

from mappings.build import build_picture

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"


def obs(oid, code, when="2025-01-10", system=LOINC, status="final", **value):
    r = {"resourceType": "Observation", "id": oid, "status": status, "code": {"coding": [{"system": system, "code": code}]},
         "subject": {"reference": "Patient/p"}, "effectiveDateTime": when}
    r.update(value)
    return r


def cc(code, system=LOINC):
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


def pct(v):
    return {"valueQuantity": {"value": v, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}


BC = {"resourceType": "Condition", "id": "bc", "code": {"coding": [{"system": SCT, "code": "254837009"}]}, "onsetDateTime": "2024-01-01"}


def picture(*resources):
    return build_picture([BC, *resources], today=date(2026, 11, 22))


@pytest.mark.parametrize("value,status", [(0, "negative"), (0.5, "negative"), (1, "low-positive"), (10, "low-positive"), (11, "positive"), (95, "positive")])
def test_er_percent_cut_offs(value, status):
    assert picture(obs("er", "85329-1", **pct(value))).er.status == status


def test_pr_low_is_positive_and_hr_positive_from_pr_alone():
    p = picture(obs("er", "85329-1", **pct(0)), obs("pr", "85325-9", **pct(5)))
    assert p.pr.status == "positive" and p.hr_status == "positive"


@pytest.mark.parametrize("answer,system,status", [("LA6576-8", LOINC, "positive"), ("LA6577-6", LOINC, "negative"),
                                                   ("10828004", SCT, "positive"), ("260385009", SCT, "negative")])
def test_qualitative_answers(answer, system, status):
    assert picture(obs("er", "85337-4", **cc(answer, system))).er.status == status


def test_qualitative_and_percent_conflict_is_reported_not_guessed():
    p = picture(obs("er", "85337-4", **cc("LA6577-6")), obs("er2", "85329-1", **pct(50)))
    assert p.er.status == "unknown" and "50" in p.er.conflict


@pytest.mark.parametrize("score,status,category", [("LA6111-4", "negative", "0"), ("LA11841-6", "negative", "low"),
                                                    ("LA11842-4", "equivocal", "unknown"), ("LA11843-2", "positive", "positive")])
def test_her2_ihc_scores(score, status, category):
    p = picture(obs("h", "85319-2", **cc(score)))
    assert (p.her2.status, p.her2.category) == (status, category)


@pytest.mark.parametrize("ratio,copies,ihc,status", [
    (2.5, 5.0, "LA11842-4", "positive"),   # group 1
    (2.2, 3.0, "LA11842-4", "negative"),   # group 2, not IHC 3+
    (1.5, 7.0, "LA11842-4", "positive"),   # group 3 with IHC 2+
    (1.5, 7.0, "LA11841-6", "negative"),   # group 3 with IHC 1+
    (1.5, 4.5, "LA11842-4", "negative"),   # group 4
    (1.2, 2.0, "LA11842-4", "negative"),   # group 5
])
def test_her2_ish_groups_settle_ihc_2plus(ratio, copies, ihc, status):
    p = picture(obs("ihc", "85319-2", **cc(ihc)), obs("r", "49683-6", valueQuantity={"value": ratio}),
                obs("c", "74860-8", valueQuantity={"value": copies}))
    assert p.her2.status == status
    if status == "negative":
        assert p.her2.category == "low"


def test_synthea_fish_strings():
    """Synthea's FISH text is a ratio without a copy number: IHC negative makes it negative (groups 3-5
    are all negative with IHC 0/1+); "greater than 2.2" alone is group 1 or 2, so it is not amplified."""
    neg = picture(obs("ihc", "85319-2", **cc("260385009", SCT)), obs("f", "85318-4", valueString="less than 1.8"))
    assert (neg.her2.status, neg.her2.ish, neg.her2.category) == ("negative", "ratio-only", "unknown")
    alone = picture(obs("f", "85318-4", valueString="greater than 2.2"))
    assert (alone.her2.status, alone.her2.ish, alone.subtype) == ("equivocal", "ratio-only", "unknown")


@pytest.mark.parametrize("ihc,ratio,copies,status,ish", [
    (None, 2.4, None, "equivocal", "ratio-only"),             # group 1 or 2: not read as amplified (ASCO/CAP 2018)
    (None, 2.4, 4.5, "positive", "amplified"),               # group 1: the near miss
    ("LA11842-4", 2.4, None, "equivocal", "ratio-only"),     # IHC 2+ with a ratio only: still no group
    ("LA11841-6", 2.4, None, "equivocal", "ratio-only"),     # IHC 1+: group 1 would be positive, group 2 negative
    ("LA11843-2", 2.4, None, "positive", "ratio-only"),      # IHC 3+ decides
    ("LA11841-6", 1.5, None, "negative", "ratio-only"),      # groups 3-5 are all negative with IHC 1+
    ("LA11842-4", 1.5, None, "equivocal", "ratio-only"),     # group 3 with IHC 2+ would be positive
    (None, 1.5, None, "equivocal", "ratio-only"),            # group 3 needs the concurrent IHC
    ("LA11842-4", None, 3.0, "negative", "copies-only"),     # < 4 copies: group 2 or 5, both negative without IHC 3+
    ("LA11842-4", None, 7.0, "positive", "copies-only"),     # >= 6 copies: group 1 or 3, both positive with IHC 2+
    (None, None, 7.0, "equivocal", "copies-only"),           # group 3 without IHC cannot be settled
])
def test_her2_ish_needs_ratio_and_copy_number(ihc, ratio, copies, status, ish):
    items = [obs("ihc", "85319-2", **cc(ihc))] if ihc else []
    if ratio is not None:
        items.append(obs("r", "49683-6", valueQuantity={"value": ratio}))
    if copies is not None:
        items.append(obs("c", "74860-8", valueQuantity={"value": copies}))
    p = picture(*items)
    assert (p.her2.status, p.her2.ish) == (status, ish)
    assert (p.her2.ratio, p.her2.copies) == (ratio, copies)
    if status == "equivocal":
        assert p.subtype == "unknown"


def test_overall_interpretation_can_settle_an_ungrouped_ratio():
    p = picture(obs("r", "49683-6", valueQuantity={"value": 2.4}), obs("i", "48676-1", **cc("LA6577-6")))
    assert p.her2.status == "negative"


def test_ultralow_only_when_the_data_says_so():
    assert picture(obs("h", "85319-2", valueString="0 (ultralow)")).her2.category == "ultralow"
    assert picture(obs("h", "85319-2", valueString="0")).her2.category == "0"


def test_components_and_interpretation():
    comp = obs("er", "85337-4", component=[{"code": {"coding": [{"system": SCT, "code": "1234804006"}]}, **pct(7)}])
    assert picture(comp).er.status == "low-positive"
    interp = obs("pr", "85339-0", interpretation=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "POS", "display": "Positive"}]}])
    assert picture(interp).pr.status == "positive"


def test_entered_in_error_ignored_and_preliminary_flagged():
    p = picture(obs("e1", "85337-4", status="entered-in-error", **cc("LA6576-8")), obs("e2", "85337-4", status="preliminary", **cc("LA6577-6")))
    assert p.er.status == "negative" and p.er.preliminary and len(p.receptor_history) == 1


def test_condition_coded_status_is_weaker_than_a_result():
    z17 = {"resourceType": "Condition", "id": "z", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z17.0"}]}}
    only = picture(z17)
    assert only.er.status == "positive" and only.er.source == "condition"
    both = picture(z17, obs("er", "85337-4", **cc("LA6577-6")))
    assert both.er.status == "negative" and both.er.source == "observation"


def test_discordance_between_primary_and_metastasis_including_her2_0_to_low():
    met = {"resourceType": "Condition", "id": "m", "code": {"coding": [{"system": SCT, "code": "94381002"}]}, "onsetDateTime": "2026-06-01"}
    p = picture(met, obs("h1", "85319-2", "2019-01-01", **cc("LA6111-4")), obs("h2", "85319-2", "2026-06-10", **cc("LA11841-6")),
                obs("p1", "85339-0", "2019-01-01", **cc("LA6576-8")), obs("p2", "85339-0", "2026-06-10", **cc("LA6577-6")))
    changes = {(d["marker"], d["from"], d["to"]) for d in p.discordance}
    assert changes == {("HER2", "0", "low"), ("PR", "positive", "negative")}
    assert {r.specimen for r in p.receptor_history if r.date == date(2019, 1, 1)} == {"primary"}


def test_specimen_body_site_decides_primary_or_metastasis():
    spec = {"resourceType": "Specimen", "id": "s1", "collection": {"bodySite": {"coding": [{"system": SCT, "code": "10200004"}]}, "collectedDateTime": "2025-01-09"}}
    p = picture(spec, obs("er", "85337-4", specimen={"reference": "Specimen/s1"}, **cc("LA6576-8")))
    assert p.er.specimen == "metastasis" and p.receptor_history[0].specimen_site == "liver"


def test_history_keeps_both_the_collection_date_and_the_result_date():
    """The sample decides primary/metastasis and "most recent"; the report date is what the EHR shows."""
    spec = {"resourceType": "Specimen", "id": "s1", "collection": {"collectedDateTime": "2025-01-09"}}
    p = picture(spec, obs("er", "85337-4", "2025-01-14", specimen={"reference": "Specimen/s1"}, **cc("LA6576-8")))
    entry = p.to_json()["receptorHistory"][0]
    assert entry["specimenDate"] == "2025-01-09" and entry["date"] == "2025-01-14"
    assert p.to_json()["er"]["date"] == "2025-01-09"


def her2_card(*resources):
    from cds_hooks.evaluate import each_card

    pic = picture(*resources)
    found = [c for c in each_card("patient-view", pic, today=date(2026, 11, 22))
             if c["source"]["topic"]["code"] == "her2-equivocal"]
    return found[0] if found else None


def test_her2_equivocal_card_asks_for_reflex_ish():
    card = her2_card(obs("ihc", "85319-2", **cc("LA11842-4")))
    assert card["indicator"] == "warning" and "IHC 2+" in card["summary"]
    [suggestion] = card["suggestions"]
    resource = suggestion["actions"][0]["resource"]
    assert resource["resourceType"] == "ServiceRequest" and "average HER2 copy number" in resource["code"]["text"]
    assert resource["reasonReference"] == [{"reference": "Observation/ihc"}]


def test_her2_equivocal_card_for_a_ratio_without_copy_number_and_its_near_miss():
    ratio_only = her2_card(obs("ihc", "85319-2", **cc("LA11842-4")), obs("r", "49683-6", valueQuantity={"value": 2.4}))
    assert "ratio without average copy number" in ratio_only["summary"]
    assert "2.4 without the average HER2 copy number" in ratio_only["detail"]
    assert her2_card(obs("ihc", "85319-2", **cc("LA11842-4")), obs("r", "49683-6", valueQuantity={"value": 2.4}),
                     obs("c", "74860-8", valueQuantity={"value": 4.5})) is None


def test_a_later_sample_settles_an_earlier_ihc_2plus():
    assert her2_card(obs("ihc", "85319-2", when="2024-01-10", **cc("LA11842-4")),
                     obs("ihc2", "85319-2", when="2025-03-01", **cc("LA11841-6"))) is None
