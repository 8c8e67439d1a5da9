"""Biomarker tests the picture lacks: germline BRCA1/2, PD-L1, PIK3CA/ESR1/AKT1/PTEN, HER2 IHC score. One function per rule code."""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import marker_fact, receptor_facts, when
from ..knowledge import Knowledge
from .common import create, service_request


def has_result(pic: ClinicalPicture, *markers: str) -> bool:
    return bool(pic.biomarker(*markers))


def biomarker_card(code: str, pic: ClinicalPicture, k: Knowledge, basis: list[Fact], summary_text: str) -> Draft:
    rule = k.rule(code)
    sr = service_request(rule["test"], pic.patient, pic.metastatic_evidence[:3])
    return Draft(code, summary_text, basis + [Fact(f"No result for: {rule['test']}")], [rule["why"]],
                 [create(rule["order_label"], sr)])


_RESULT_WORDS = {"detected": "variant detected", "positive": "positive", "negative": "negative", "not-detected": "no variant detected"}


def biomarker_gbrca(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """Germline BRCA1/2 is what PARP inhibitors need: a somatic or origin-unknown BRCA result is named, not counted."""
    if not pic.metastatic or pic.her2.status != "negative" or has_result(pic, "gBRCA"):
        return []
    rule = k.rule("biomarker-gbrca")
    facts = [marker_fact(pic.her2)]
    seen = pic.biomarker("sBRCA", "BRCA")
    for b in seen:
        what = rule["somatic"] if b.marker == "sBRCA" else rule["unknown_origin"]
        facts.append(Fact(f"{b.gene or 'BRCA1/2'} {_RESULT_WORDS.get(b.result, 'result')} on {when(b.date)}, {what}", [b.reference]))
    if any(b.marker == "sBRCA" for b in seen):
        text = "HER2-negative metastatic disease: only a tumour-only (somatic) BRCA result, no germline BRCA1/2 test for PARP inhibitors"
    else:
        text = "HER2-negative metastatic disease without germline BRCA1/2 result: test for PARP inhibitor eligibility"
    return [biomarker_card("biomarker-gbrca", pic, k, facts, text)]


def biomarker_pdl1(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.subtype != "TNBC" or has_result(pic, "PD-L1"):
        return []
    return [biomarker_card("biomarker-pdl1", pic, k, receptor_facts(pic), "Triple-negative metastatic disease without PD-L1 result: test before first-line therapy")]


def biomarker_pik3ca_esr1(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.subtype != "HR+/HER2-" or has_result(pic, "PIK3CA", "ESR1", "AKT1", "PTEN"):
        return []
    return [biomarker_card("biomarker-pik3ca-esr1", pic, k, receptor_facts(pic), "HR+/HER2- metastatic disease without PIK3CA/ESR1/AKT1/PTEN results: test for targeted options")]


def biomarker_her2_low(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.her2.status != "negative" or any(r.marker == "HER2" and r.her2_ihc for r in pic.receptor_history):
        return []
    return [biomarker_card("biomarker-her2-low", pic, k, [marker_fact(pic.her2)], "HER2-negative without an IHC score: HER2 0 vs HER2-low decides trastuzumab deruxtecan")]
