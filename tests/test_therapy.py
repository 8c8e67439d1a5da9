"""Therapy options and the issue-12 card content on hand-built pictures: each requirement, each
caveat, and the CNS, effusion, ESR1 and ER-low rules, with their near misses."""

from __future__ import annotations

from dataclasses import replace

from datetime import date
from typing import Any

import pytest

from cds_hooks.evaluate import each_card
from cds_hooks.knowledge import KNOWLEDGE_FILE, _check, knowledge
from mappings.picture import BiomarkerResult, ClinicalPicture, MarkerStatus, Metastasis, Progression, ReceptorResult, TherapyLine

TODAY = date(2026, 11, 1)
SUBTYPES = {"HR+/HER2-": ("positive", "negative", "low"), "TNBC": ("negative", "negative", "0"), "HR-/HER2+": ("negative", "positive", "positive")}


def picture(subtype: str = "HR+/HER2-", sites: tuple[str, ...] = ("liver",), er_percent: float | None = 80, **extra: Any) -> ClinicalPicture:
    hr, her2, category = SUBTYPES[subtype]
    er_status = "low-positive" if hr == "positive" and er_percent is not None and er_percent <= 10 else hr
    pic = ClinicalPicture(patient="Patient/p", gender="female", breast_cancer=True, metastatic=True, metastasis_date=date(2026, 6, 1),
                          metastatic_evidence=["Condition/m"], menopause="postmenopausal")
    pic.er = MarkerStatus("ER", status=er_status, percent=er_percent if hr == "positive" else 0, source="observation", evidence=["Observation/er"])
    pic.pr = MarkerStatus("PR", status="negative", percent=0, source="observation", evidence=["Observation/pr"])
    pic.her2 = MarkerStatus("HER2", status=her2, category=category, source="observation", evidence=["Observation/her2"])
    pic.metastases = [Metastasis(site=s, reference=f"Condition/{s}", date=date(2026, 6, 1), basis="code") for s in sites]
    pic.receptor_history = [ReceptorResult("ER", "Observation/er", date(2026, 6, 5), specimen="metastasis", status=er_status)]
    for key, value in extra.items():
        setattr(pic, key, value)
    return pic


def cards(pic: ClinicalPicture) -> dict[str, dict[str, Any]]:
    return {c["source"]["topic"]["code"]: c for c in each_card("patient-view", pic, today=TODAY)}


def options(pic: ClinicalPicture, key: str = "options") -> dict[str, dict[str, Any]]:
    ext = cards(pic)["therapy-options"]["extension"]["mbc-cds-hooks.therapy-options"]
    return {o["id"]: o for o in ext.get(key, [])}


def line(n: int, agents: list[str], classes: list[str], start: date, end: date | None, **extra: Any) -> TherapyLine:
    return TherapyLine(n, agents, start, end, "metastatic", [f"MedicationRequest/{agents[0]}"], classes=classes, **extra)


@pytest.mark.parametrize("score_type,value,met", [("CPS", 15, True), ("CPS", 10, True), ("CPS", 5, False), ("TPS", 50, False), (None, 15, False)])
def test_pembrolizumab_needs_a_pd_l1_cps_of_10_or_more(score_type, value, met):
    pdl1 = BiomarkerResult("PD-L1", "positive", date(2026, 6, 10), "Observation/pdl1", value=value, score_type=score_type, assay="22C3")
    option = options(picture("TNBC", biomarkers=[pdl1]))["tnbc-1l-pembrolizumab"]
    assert option["met"] is met and option["requires"] == ["PD-L1 CPS 10 or more (22C3)"]


@pytest.mark.parametrize("germline,met", [(True, True), (None, True), (False, False)])
def test_parp_inhibitors_need_a_germline_brca_mutation(germline, met):
    brca = BiomarkerResult("gBRCA", "detected", date(2026, 6, 10), "Observation/brca", germline=germline)
    assert options(picture("TNBC", biomarkers=[brca]))["tnbc-parpi"]["met"] is met


def test_given_is_decided_by_ingredient_and_reuse_only_where_allowed():
    lines = [line(1, ["letrozole", "palbociclib"], ["aromatase-inhibitor", "cdk4/6-inhibitor"], date(2026, 6, 10), date(2026, 9, 1)),
             line(2, ["fulvestrant"], ["serd"], date(2026, 9, 10), None)]
    esr1 = BiomarkerResult("ESR1", "detected", date(2026, 9, 5), "Observation/esr1")
    opts = options(picture(lines=lines, biomarkers=[esr1]))
    assert opts["hrpos-esr1-elacestrant"]["given"] is False and opts["hrpos-esr1-elacestrant"]["met"]  # fulvestrant is not elacestrant
    assert opts["hrpos-2l-fulvestrant"]["given"] is True and opts["hrpos-2l-fulvestrant"]["givenAgents"] == ["fulvestrant"]
    abema = opts["hrpos-2l-abemaciclib-fulvestrant"]
    assert not abema["met"] and "not given before for metastatic disease: fulvestrant" in abema["requires"]


def test_anti_her2_antibodies_may_be_reused_beyond_progression():
    lines = [line(1, ["trastuzumab", "pertuzumab", "docetaxel"], ["anti-her2-antibody", "taxane"], date(2025, 1, 1), date(2025, 9, 1)),
             line(2, ["trastuzumab deruxtecan"], ["anti-her2-adc"], date(2025, 9, 10), date(2026, 8, 1))]
    opts = options(picture("HR-/HER2+", lines=lines))
    tucatinib = opts["her2pos-3l-tucatinib"]
    assert tucatinib["met"] and not tucatinib["given"] and tucatinib["givenAgents"] == ["trastuzumab"]
    assert opts["her2pos-tdxd"]["given"] and "her2pos-1l-thp" not in opts


def test_sex_decides_the_endocrine_options_and_their_wording():
    man = picture(gender="male", menopause="unknown")
    opts = options(man)
    assert {"hrpos-1l-male-ai-cdk46-gnrh", "hrpos-male-tamoxifen"} <= set(opts) and not {"hrpos-1l-et-cdk46", "hrpos-ofs"} & set(opts)
    text = " ".join(c["detail"] for c in cards(man).values()).lower()
    assert "premenopausal" not in text and "ovarian function suppression" not in text and "gnrh agonist" in text
    woman = picture(menopause="unknown")
    assert "if pre- or perimenopausal, add ovarian function suppression" in cards(woman)["therapy-options"]["detail"]


def test_er_low_gets_the_triple_negative_options_a_caveat_and_a_pd_l1_prompt():
    low = cards(picture(er_percent=5))
    assert "biomarker-pdl1" in low and "ER-low" in low["biomarker-pdl1"]["summary"]
    opts = options(picture(er_percent=5))
    assert opts["tnbc-1l-chemo"]["met"] and not opts["tnbc-1l-pembrolizumab"]["met"] and opts["hrpos-1l-et-cdk46"]["met"]
    assert "ER low-positive (5%)" in low["therapy-options"]["detail"]
    high = picture(er_percent=60)
    assert "biomarker-pdl1" not in cards(high) and "tnbc-1l-chemo" not in options(high)


def test_no_biopsy_card_when_the_cns_is_the_only_site_and_no_cns_lesion_proposed_otherwise():
    assert "biopsy-reassessment" not in cards(picture(sites=("brain",), receptor_history=[]))
    assert "biopsy-reassessment" not in cards(picture(sites=("meninges", "brain"), receptor_history=[]))
    card = cards(picture(sites=("brain", "bone"), receptor_history=[]))["biopsy-reassessment"]
    assert "not proposed for biopsy only to re-test receptors" in card["detail"] and "Preferred site: brain" not in str(card)


@pytest.mark.parametrize("site,fires", [("liver", True), ("brain", False), ("meninges", False), ("pleura", False), ("peritoneum", False)])
def test_oligometastatic_never_for_cns_disease_or_an_effusion_alone(site, fires):
    assert ("oligometastatic" in cards(picture(sites=(site,)))) is fires


def test_leptomeningeal_disease_has_its_own_text_and_citation():
    lepto = cards(picture(sites=("meninges",)))["brain-metastasis"]
    assert lepto["source"]["label"] == "EANO-ESMO leptomeningeal metastasis guideline (2017)"
    assert "intrathecal" in lepto["detail"] and "by number, size and symptoms" not in lepto["detail"]
    brain = cards(picture(sites=("brain",)))["brain-metastasis"]
    assert brain["source"]["label"] == "ESO-ESMO ABC 6/7 (2024)" and "by number, size and symptoms" in brain["detail"]
    both = cards(picture(sites=("brain", "meninges")))["brain-metastasis"]
    assert "Brain and leptomeningeal" in both["summary"] and "intrathecal" in both["detail"]


def test_esr1_is_tested_after_each_progression_on_endocrine_therapy():
    pd = Progression(date(2026, 9, 15), "disease-status", ["Observation/pd"])
    pik3ca = BiomarkerResult("PIK3CA", "not-detected", date(2026, 6, 10), "Observation/pik3ca")
    old = BiomarkerResult("ESR1", "not-detected", date(2026, 6, 10), "Observation/esr1-old")
    new = BiomarkerResult("ESR1", "not-detected", date(2026, 9, 20), "Observation/esr1-new")
    card = cards(picture(biomarkers=[pik3ca, old], endocrine_progression=pd))["biomarker-pik3ca-esr1"]
    assert "2026-09-15" in card["summary"] and "ctDNA" in card["summary"] and "last ESR1 result not detected on 2026-06-10" in card["detail"]
    assert "biomarker-pik3ca-esr1" not in cards(picture(biomarkers=[pik3ca, new], endocrine_progression=pd))
    # Without a progression on endocrine therapy, a PIK3CA result is enough; without one, the first clause fires.
    assert "biomarker-pik3ca-esr1" not in cards(picture(biomarkers=[pik3ca]))
    assert "biomarker-pik3ca-esr1" in cards(picture(biomarkers=[new]))


def test_resistance_risk_names_primary_and_secondary_endocrine_resistance():
    card = cards(picture(endocrine_resistance="primary", endocrine_resistance_basis="relapse 2026-06-01 within the first 2 years of adjuvant letrozole",
                         endocrine_resistance_evidence=["MedicationRequest/adj"]))["resistance-risk"]
    assert card["indicator"] == "info" and "primary endocrine resistance" in card["summary"]
    assert "Primary endocrine resistance: relapse 2026-06-01" in card["detail"]
    assert "resistance-risk" not in cards(picture(endocrine_resistance="none"))


def test_options_wait_for_progression_before_the_next_line():
    on_first = [line(1, ["letrozole", "palbociclib"], ["aromatase-inhibitor", "cdk4/6-inhibitor"], date(2026, 6, 10), None)]
    ext = cards(picture(lines=on_first))["therapy-options"]["extension"]["mbc-cds-hooks.therapy-options"]
    assert ext["line"] == 1 and {o["id"] for o in ext["options"]} >= {"hrpos-1l-et-cdk46"}
    assert "hrpos-2l-everolimus-exemestane" not in {o["id"] for o in ext["options"]}
    assert "hrpos-2l-everolimus-exemestane" in {o["id"] for o in ext["nextOptions"]}
    progressed = picture(lines=on_first, progressions=[Progression(date(2026, 10, 1), "disease-status", ["Observation/pd"])])
    ext = cards(progressed)["therapy-options"]["extension"]["mbc-cds-hooks.therapy-options"]
    assert ext["line"] == 2 and "nextOptions" not in ext and "Observation/pd" in ext["lineBasis"]


def test_bone_card_names_single_fraction_radiotherapy_and_de_novo_surgery_is_in_the_summary():
    bone = cards(picture(sites=("bone",)))["bone-targeted-agent"]
    assert "single 8 Gy radiotherapy fraction" in bone["detail"]
    de_novo = picture(diagnosis_date=date(2026, 5, 20))
    assert "De novo stage IV: surgery of the primary tumour is not routinely recommended" in cards(de_novo)["mbc-summary"]["detail"]
    relapse = picture(diagnosis_date=date(2019, 5, 20))
    assert "De novo stage IV" not in cards(relapse)["mbc-summary"]["detail"]


def test_every_source_has_a_url_that_is_not_a_search_page_and_a_year():
    k = knowledge()
    assert all(s["url"].startswith("https://") and isinstance(s["year"], int) for s in k.sources.values())
    bad = replace(k, sources={**k.sources, "x": {"label": "x", "url": "https://pubmed.ncbi.nlm.nih.gov/?term=x", "year": 2020}})
    with pytest.raises(ValueError, match="DOI or label URL"):
        _check(bad)
    assert KNOWLEDGE_FILE.exists()


def test_every_option_is_well_formed_and_ordered_with_a_recorded_source():
    k = knowledge()
    assert k.therapy_order["source"] in k.sources and k.therapy_order["status"] in ("V", "K")
    for option in k.therapy_options:
        assert option["source"] in k.sources and option["status"] in ("V", "K"), option["id"]


def test_readme_lists_every_entry_still_marked_k():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    k = knowledge()
    entries = [f"source `{key}`" for key, s in k.sources.items() if s.get("status") == "K"]
    entries += [f"rule `{code}`" for code, r in k.rules.items() if r.get("status") == "K"]
    entries += [f"option `{o['id']}`" for o in k.therapy_options if o.get("status") == "K"]
    missing = [e for e in entries if f"| {e} |" not in readme]
    assert not missing, missing
