"""mbc-summary: the clinical picture in words, with the picture itself as an extension."""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture

from ..cards import PICTURE_EXTENSION, Draft, Fact
from ..describe import SUBTYPE_WORDS, age_years, line_fact, months_between, receptor_facts, sites_fact, treatment_fact, when
from ..knowledge import Knowledge
from .cardiac import summary_lvef_fact


def summary(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    words = SUBTYPE_WORDS[pic.subtype]
    if pic.subtype == "HR+/HER2-" and pic.her2.category in ("0", "ultralow", "low"):
        words = f"HR-positive/HER2-{'low' if pic.her2.category == 'low' else pic.her2.category if pic.her2.category == 'ultralow' else '0'}"
    if pic.metastatic:
        where = ", ".join(pic.sites) or "site not recorded"
        text = f"Metastatic breast cancer, {words}: {where}"
        if pic.visceral:
            text += " (visceral)"
    else:
        text = f"Breast cancer, {words}; no metastasis recorded"
    facts = receptor_facts(pic)
    if pic.metastatic:
        facts.append(sites_fact(pic))
    facts.append(treatment_fact(pic.treatments))
    if pic.metastatic:
        facts.append(line_fact(pic))
    # Known prognostic factors, each with its source; no survival figure is shown as the patient's own.
    de_novo = False
    if pic.metastatic and pic.diagnosis_date and pic.metastasis_date:
        months = months_between(pic.diagnosis_date, pic.metastasis_date)
        de_novo = months <= 3
        label = "de novo metastatic disease" if de_novo else f"disease-free interval about {months} months"
        facts.append(Fact(f"Prognostic factor: {label} (diagnosis {when(pic.diagnosis_date)}, first metastasis {when(pic.metastasis_date)})",
                          pic.breast_cancer_evidence[:2] + pic.metastatic_evidence[:2]))
    if pic.metastatic and pic.sites:
        liver = " including liver" if "liver" in pic.sites else ""
        facts.append(Fact(f"Prognostic factor: {len(pic.sites)} metastatic site(s); {'visceral involvement' + liver if pic.visceral else 'no visceral involvement'}"))
    lvef = summary_lvef_fact(pic, k)  # on anti-HER2 therapy: last LVEF, pre-treatment value, fall
    if lvef:
        facts.append(lvef)
    if pic.ecog:
        facts.append(Fact(f"ECOG performance status {pic.ecog.value} ({when(pic.ecog.date)})", [pic.ecog.reference]))
    if pic.grade and pic.grade.value:
        facts.append(Fact(f"Histologic grade {pic.grade.value} ({when(pic.grade.date)})", [pic.grade.reference]))
    age = age_years(pic, today)
    if pic.gender == "male":
        pass  # menopausal status does not apply to men (their endocrine therapy note is in the therapy card)
    elif pic.menopause != "unknown":
        facts.append(Fact(f"Menopausal status: {pic.menopause}", [pic.menopause_evidence] if pic.menopause_evidence else []))
    else:
        proxy = f"; age {age} is shown only as a proxy" if age is not None else ""
        facts.append(Fact(f"Menopausal status: not recorded{proxy}"))
    if pic.discordance:
        facts.append(Fact(f"Receptor discordance between samples: {', '.join(d['marker'] for d in pic.discordance)} (see its card)"))
    if pic.unmapped:
        facts.append(Fact(f"{sum(u.count for u in pic.unmapped)} coded entries were read but not classified (listed in the clinical picture's `unmapped`)"))
    guidance = list(k.rule("mbc-summary")["guidance"])
    if de_novo:
        guidance.append(k.rule("mbc-summary")["de_novo"])
    return [Draft("mbc-summary", text, facts, guidance=guidance,
                  extension={PICTURE_EXTENSION: pic.to_json()})]
