"""Biomarker tests the picture lacks: germline BRCA1/2, PD-L1, PIK3CA/ESR1/AKT1/PTEN, HER2 IHC score. One function per rule code."""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import receptor_lines, when
from ..knowledge import Knowledge
from .common import create, service_request


def has_result(pic: ClinicalPicture, *markers: str) -> bool:
    return bool(pic.biomarker(*markers))


def biomarker_card(code: str, pic: ClinicalPicture, k: Knowledge, basis: list[Fact], summary_text: str,
                   test: str | None = None, why: list[str] | None = None, missing: Fact | None = None) -> Draft:
    rule = k.rule(code)
    test = test or rule["test"]
    sr = service_request(test, pic.patient, pic.metastatic_evidence[:3])
    label = rule["order_label"] if test == rule["test"] else f"Order {test}"  # test names keep their capitals (PD-L1, ESR1)
    return Draft(code, summary_text, basis + [missing or Fact(f"No result for: {test}")], why or [rule["why"]],
                 [create(label, sr)])


_RESULT_WORDS = {"detected": "variant detected", "positive": "positive", "negative": "negative", "not-detected": "no variant detected"}


def biomarker_gbrca(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """Germline BRCA1/2 is what PARP inhibitors need: a somatic or origin-unknown BRCA result is named, not counted."""
    if not pic.metastatic or pic.her2.status != "negative" or has_result(pic, "gBRCA"):
        return []
    rule = k.rule("biomarker-gbrca")
    facts = receptor_lines(pic)
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
    """Triple-negative or ER-low (1-10%) HER2-negative metastatic disease without a PD-L1 result."""
    er_low = pic.er.status == "low-positive" and pic.her2.status == "negative"
    if not pic.metastatic or not (pic.subtype == "TNBC" or er_low) or has_result(pic, "PD-L1"):
        return []
    if er_low:
        rule = k.rule("biomarker-pdl1")
        return [biomarker_card("biomarker-pdl1", pic, k, receptor_lines(pic), "ER-low (1-10%) HER2-negative metastatic disease without PD-L1 result: test before first-line therapy",
                               why=[rule["why_er_low"], rule["why"]])]
    return [biomarker_card("biomarker-pdl1", pic, k, receptor_lines(pic), "Triple-negative metastatic disease without PD-L1 result: test before first-line therapy")]


def biomarker_pik3ca_esr1(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """No PIK3CA/AKT1/PTEN result, or no ESR1 result from a sample taken after the last progression
    (or relapse) on endocrine therapy: ESR1 mutations emerge under treatment (ASCO 2023)."""
    if not pic.metastatic or pic.subtype != "HR+/HER2-":
        return []
    rule = k.rule("biomarker-pik3ca-esr1")
    no_pathway = not has_result(pic, "PIK3CA", "AKT1", "PTEN")
    event = pic.endocrine_progression
    since = event.date if event is not None else None
    esr1 = pic.biomarker("ESR1")
    esr1_since = [b for b in esr1 if since is not None and b.date is not None and b.date >= since]
    needs_esr1 = event is not None and since is not None and not esr1_since
    if not no_pathway and not needs_esr1:
        return []
    basis = receptor_lines(pic)
    if not needs_esr1:
        if has_result(pic, "ESR1"):
            return [biomarker_card("biomarker-pik3ca-esr1", pic, k, basis, "HR+/HER2- metastatic disease without PIK3CA/AKT1/PTEN result: test for targeted options",
                                   missing=Fact("No PIK3CA, AKT1 or PTEN result found"))]
        return [biomarker_card("biomarker-pik3ca-esr1", pic, k, basis, "HR+/HER2- metastatic disease without PIK3CA/ESR1/AKT1/PTEN results: test for targeted options")]
    assert event is not None and since is not None
    what = event.detail or event.kind.replace("-", " ")
    basis.append(Fact(f"{'Relapse' if event.kind == 'relapse' else 'Progression'} on endocrine therapy {since.isoformat()} ({what})", event.evidence))
    last = max(esr1, key=lambda b: b.date or date.min) if esr1 else None
    missing = Fact(f"No ESR1 result from a sample taken since {since.isoformat()}"
                   + (f"; last ESR1 result {last.result.replace('-', ' ')} on {last.date.isoformat() if last.date else 'an undated sample'}" if last else ""),
                   [last.reference] if last else [])
    if no_pathway:
        return [biomarker_card("biomarker-pik3ca-esr1", pic, k, basis + [Fact("No PIK3CA, AKT1 or PTEN result found")],
                               f"Progression on endocrine therapy {since.isoformat()} without ESR1, PIK3CA, AKT1 or PTEN results since: test, ctDNA preferred",
                               why=[rule["why_esr1"], rule["why"]], missing=missing)]
    return [biomarker_card("biomarker-pik3ca-esr1", pic, k, basis,
                           f"Progression on endocrine therapy {since.isoformat()} without an ESR1 result since: test ESR1, ctDNA preferred",
                           test=rule["esr1_test"], why=[rule["why_esr1"]], missing=missing)]


def biomarker_her2_low(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.her2.status != "negative" or any(r.marker == "HER2" and r.her2_ihc for r in pic.receptor_history):
        return []
    return [biomarker_card("biomarker-her2-low", pic, k, receptor_lines(pic), "HER2-negative without an IHC score: HER2 0 vs HER2-low decides trastuzumab deruxtecan")]
