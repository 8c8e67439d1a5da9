"""mbc-summary: the clinical picture in a few lines, one fact a line, with the picture itself as an extension.

What a clinician needs first when the chart opens: subtype with the sample and date it rests on,
where the disease is, the current line of therapy, the LVEF on anti-HER2 therapy, and the
prognostic facts. Everything else is in the picture (explain, viewer); the card economy adds one
line for each card that did not fit.
"""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture

from ..cards import PICTURE_EXTENSION, Draft, Fact
from ..describe import (
    SUBTYPE_WORDS,
    age_years,
    current_line_fact,
    early_treatment_fact,
    months_between,
    receptor_lines,
    sites_fact,
    when,
)
from ..knowledge import Knowledge
from .cardiac import summary_lvef_fact


def _headline(pic: ClinicalPicture) -> str:
    words = SUBTYPE_WORDS[pic.subtype]
    if pic.subtype == "HR+/HER2-" and pic.her2.category in ("0", "ultralow", "low"):
        words = {"0": "HR-positive/HER2 0", "ultralow": "HR-positive/HER2-ultralow", "low": "HR-positive/HER2-low"}[pic.her2.category]
    if pic.er.status == "low-positive" and pic.pr.status != "positive":
        words += " (ER-low)"
    if not pic.metastatic:
        return f"Breast cancer, {words}; no metastasis recorded"
    where = ", ".join(pic.sites) or "site not recorded"
    return f"Metastatic breast cancer, {words}: {where}" + (" (visceral)" if pic.visceral else "")


def _course(pic: ClinicalPicture) -> list[Fact]:
    facts = []
    if pic.metastatic:
        facts.append(current_line_fact(pic))
    if pic.early_treatment:
        facts.append(early_treatment_fact(pic))
    elif not pic.metastatic and pic.treatments:
        facts.append(Fact("Treatment: " + ", ".join(f"{t.ingredient} from {when(t.start)}" for t in pic.treatments),
                          [r for t in pic.treatments for r in t.evidence[:1]]))
    return facts


def _status(pic: ClinicalPicture, today: date) -> Fact | None:
    """Performance status, menopausal status and grade in one line (what therapy choices hinge on)."""
    parts, refs = [], []
    if pic.ecog:
        parts.append(f"ECOG {pic.ecog.value} on {when(pic.ecog.date)}")
        refs.append(pic.ecog.reference)
    if pic.sex != "male":
        if pic.menopause != "unknown":
            parts.append(pic.menopause)
            refs += [pic.menopause_evidence] if pic.menopause_evidence else []
        else:
            age = age_years(pic, today)
            parts.append("menopausal status not recorded" + (f", age {age}" if age is not None else ""))
    if pic.grade and pic.grade.value:
        parts.append(f"grade {pic.grade.value}")
        refs.append(pic.grade.reference)
    if not parts:
        return None
    text = "; ".join(parts)
    return Fact(text[0].upper() + text[1:], refs)


def summary(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    facts = receptor_lines(pic)
    if pic.discordance:
        changes = ", ".join(f"{d['marker']} {d['from']} to {d['to']}" for d in pic.discordance)
        facts.append(Fact(f"Receptor change between samples: {changes}", [r for d in pic.discordance for r in d["evidence"]]))
    if pic.metastatic:
        facts.append(sites_fact(pic))
    facts += _course(pic)
    lvef = summary_lvef_fact(pic, k)  # on anti-HER2 therapy: last LVEF, pre-treatment value, fall
    if lvef:
        facts.append(lvef)
    de_novo = False
    if pic.metastatic and pic.diagnosis_date and pic.metastasis_date:
        months = months_between(pic.diagnosis_date, pic.metastasis_date)
        de_novo = months <= 3
        interval = "De novo metastatic disease" if de_novo else f"First metastasis {months} months after diagnosis"
        facts.append(Fact(f"{interval} (diagnosis {when(pic.diagnosis_date)})", pic.breast_cancer_evidence[:1]))
    status = _status(pic, today)
    if status:
        facts.append(status)
    guidance = [k.rule("mbc-summary")["de_novo"]] if de_novo else []
    return [Draft("mbc-summary", _headline(pic), facts, guidance=guidance, extension={PICTURE_EXTENSION: pic.to_extension()})]
