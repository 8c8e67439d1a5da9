"""patient-view rules: each decides whether its card fires and which facts it rests on.

The words come from knowledge.yaml; this module holds only the conditions of the contract
(../shared/card-contract.md, "Rule codes").
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mappings.codes import tables
from mappings.picture import ClinicalPicture

from ..cards import PICTURE_EXTENSION, Draft, Fact, Suggestion
from ..describe import (
    SUBTYPE_WORDS,
    age_years,
    line_fact,
    marker_fact,
    months_between,
    receptor_facts,
    sites_fact,
    treatment_fact,
    when,
)
from ..knowledge import Knowledge
from .safety import contradicts

ENDOCRINE = {"aromatase-inhibitor", "tamoxifen", "serd"}
ANTI_HER2 = {"anti-her2-antibody", "anti-her2-tki", "anti-her2-adc"}
STAGING_KINDS = {"staging-ct", "bone-scan", "pet-ct"}
STAGING_WINDOW_DAYS = 90
# Imaging that found the metastasis usually precedes the problem-list entry by days to weeks.
STAGING_LOOKBACK_DAYS = 30
ENDOCRINE_RESISTANCE_DAYS = 183  # 6 months (ABC definition of primary endocrine resistance)


def service_request(text: str, patient: str | None, reasons: list[str], note: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"text": text},
        "subject": {"reference": patient or "Patient/unknown"},
    }
    if reasons:
        resource["reasonReference"] = [{"reference": r} for r in reasons[:10]]
    if note:
        resource["note"] = [{"text": note}]
    return resource


def _create(label: str, resource: dict[str, Any]) -> Suggestion:
    return Suggestion(label=label, actions=[{"type": "create", "description": label, "resource": resource}])


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
    if pic.metastatic and pic.diagnosis_date and pic.metastasis_date:
        months = months_between(pic.diagnosis_date, pic.metastasis_date)
        label = "de novo metastatic disease" if months <= 3 else f"disease-free interval about {months} months"
        facts.append(Fact(f"Prognostic factor: {label} (diagnosis {when(pic.diagnosis_date)}, first metastasis {when(pic.metastasis_date)})",
                          pic.breast_cancer_evidence[:2] + pic.metastatic_evidence[:2]))
    if pic.metastatic and pic.sites:
        liver = " including liver" if "liver" in pic.sites else ""
        facts.append(Fact(f"Prognostic factor: {len(pic.sites)} metastatic site(s); {'visceral involvement' + liver if pic.visceral else 'no visceral involvement'}"))
    if pic.ecog:
        facts.append(Fact(f"ECOG performance status {pic.ecog.value} ({when(pic.ecog.date)})", [pic.ecog.reference]))
    if pic.grade and pic.grade.value:
        facts.append(Fact(f"Histologic grade {pic.grade.value} ({when(pic.grade.date)})", [pic.grade.reference]))
    age = age_years(pic, today)
    if pic.menopause != "unknown":
        facts.append(Fact(f"Menopausal status: {pic.menopause}", [pic.menopause_evidence] if pic.menopause_evidence else []))
    else:
        proxy = f"; age {age} is shown only as a proxy" if age is not None else ""
        facts.append(Fact(f"Menopausal status: not recorded{proxy}"))
    if pic.discordance:
        facts.append(Fact(f"Receptor discordance between samples: {', '.join(d['marker'] for d in pic.discordance)} (see its card)"))
    if pic.unmapped:
        facts.append(Fact(f"{sum(u.count for u in pic.unmapped)} coded entries were read but not classified (listed in the clinical picture's `unmapped`)"))
    return [Draft("mbc-summary", text, facts, guidance=k.rule("mbc-summary")["guidance"],
                  extension={PICTURE_EXTENSION: pic.to_json()})]


def receptor_status_missing(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if pic.receptor_history or pic.hr_override or any(s.source != "none" for s in (pic.er, pic.pr, pic.her2)):
        return []
    facts = [Fact("Breast cancer recorded", pic.breast_cancer_evidence[:3]), Fact("No ER, PR or HER2 result found in the data read")]
    if pic.metastatic:
        facts.append(sites_fact(pic))
    return [Draft("receptor-status-missing", "No ER, PR or HER2 result: receptor status is needed before choosing therapy", facts,
                  guidance=k.rule("receptor-status-missing")["guidance"])]


def biopsy_reassessment(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic:
        return []
    for r in pic.receptor_history:
        sampled = r.specimen_date or r.date
        if r.specimen == "metastasis" or (pic.metastasis_date and sampled and sampled >= pic.metastasis_date):
            return []
    rule = k.rule("biopsy-reassessment")
    facts = [sites_fact(pic)]
    latest = [marker_fact(s) for s in (pic.er, pic.pr, pic.her2) if s.status != "unknown"]
    if latest:
        facts += latest
        facts.append(Fact(f"No ER/PR/HER2 result from a sample taken on or after the first evidence of metastasis ({when(pic.metastasis_date)}) or from a metastatic site"))
    else:
        facts.append(Fact("No ER/PR/HER2 result at all"))
    guidance = list(rule["guidance"])
    ranks = tables().sites
    candidates = sorted(pic.sites, key=lambda s: int(ranks.get(s, {}).get("biopsy_rank", 9)))
    if pic.sites and all(s in ("bone", "bone-marrow") for s in pic.sites):
        guidance.append(rule["bone_only"])
        summary_text = "Bone-only metastatic disease without a metastasis biopsy: consider biopsy to reassess ER, PR and HER2"
    else:
        preferred = [s for s in candidates if s not in ("bone", "bone-marrow")]
        if preferred:
            guidance.append(f"Preferred lesion to sample here: {preferred[0]} (then {', '.join(preferred[1:]) or 'none'}); bone last.")
        summary_text = "No receptor testing since metastasis: consider biopsy of a metastasis to reassess ER, PR and HER2"
    sr = service_request(rule["service_request_text"], pic.patient, [m.reference for m in pic.metastases if not m.regional],
                         note=f"Preferred site: {next((s for s in candidates if s not in ('bone', 'bone-marrow')), candidates[0] if candidates else 'any accessible lesion')}")
    return [Draft("biopsy-reassessment", summary_text, facts, guidance, [_create("Order biopsy of a metastasis with ER/PR/HER2 testing", sr)])]


def receptor_discordance(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.discordance:
        return []
    facts = []
    changed = []
    for d in pic.discordance:
        changed.append(f"{d['marker']} {d['from']}→{d['to']}")
        facts.append(Fact(f"{d['marker']}: {d['from']} on {d['fromDate'] or 'undated'} ({d['fromSpecimen']} sample) → {d['to']} on {d['toDate'] or 'undated'} ({d['toSpecimen']} sample)", d["evidence"]))
    return [Draft("receptor-discordance", f"Receptor discordance between samples: {', '.join(changed)}", facts,
                  k.rule("receptor-discordance")["guidance"])]


def _has_result(pic: ClinicalPicture, *markers: str) -> bool:
    return bool(pic.biomarker(*markers))


def _biomarker_card(code: str, pic: ClinicalPicture, k: Knowledge, basis: list[Fact], summary_text: str) -> Draft:
    rule = k.rule(code)
    sr = service_request(rule["test"], pic.patient, pic.metastatic_evidence[:3])
    return Draft(code, summary_text, basis + [Fact(f"No result found for: {rule['test']}")], [rule["why"]],
                 [_create(f"Order {rule['test'][0].lower()}{rule['test'][1:]}", sr)])


def biomarker_gaps(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic:
        return []
    out = []
    her2 = marker_fact(pic.her2)
    if pic.her2.status == "negative" and not _has_result(pic, "gBRCA"):
        out.append(_biomarker_card("biomarker-gbrca", pic, k, [her2], "HER2-negative metastatic disease without germline BRCA1/2 result: test for PARP inhibitor eligibility"))
    if pic.subtype == "TNBC" and not _has_result(pic, "PD-L1"):
        out.append(_biomarker_card("biomarker-pdl1", pic, k, receptor_facts(pic), "Triple-negative metastatic disease without PD-L1 result: test before first-line therapy"))
    if pic.subtype == "HR+/HER2-" and not _has_result(pic, "PIK3CA", "ESR1", "AKT1", "PTEN"):
        out.append(_biomarker_card("biomarker-pik3ca-esr1", pic, k, receptor_facts(pic), "HR+/HER2- metastatic disease without PIK3CA/ESR1/AKT1/PTEN results: test for targeted options"))
    if pic.her2.status == "negative" and not any(r.marker == "HER2" and r.her2_ihc for r in pic.receptor_history):
        out.append(_biomarker_card("biomarker-her2-low", pic, k, [her2], "HER2-negative without an IHC score: HER2 0 vs HER2-low decides trastuzumab deruxtecan"))
    return out


def _requirement_met(req: dict[str, Any], pic: ClinicalPicture) -> bool:
    if "menopause" in req and pic.menopause != req["menopause"]:
        return False
    if "her2_category" in req and pic.her2.category not in req["her2_category"]:
        return False
    positive = ("detected", "positive")
    for marker, wanted in (req.get("biomarker") or {}).items():
        if not any(b.result in positive for b in pic.biomarker(marker)):
            return False
    if "biomarker_any" in req and not any(
        any(b.result in positive for b in pic.biomarker(marker)) for marker in req["biomarker_any"]
    ):
        return False
    return True


def therapy_options(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.subtype == "unknown":
        return []
    line = min(pic.line + 1, 3) if pic.metastasis_date else 1
    given = set(pic.prior_therapy_classes)
    lines_out = []
    cited = []
    for option in k.therapy_options:
        if pic.subtype not in option["subtypes"] or line not in option["lines"]:
            continue
        if not _requirement_met(option.get("requires") or {}, pic):
            continue
        if contradicts(option["classes"], pic):
            continue  # safety net: the knowledge file must never make this happen
        done = option.get("given_if_all") and set(option["given_if_all"]) <= given
        mark = " — *already given*" if done else ""
        lines_out.append(f"{option['text']} ({option['evidence']}){mark}")
        cited.append(option["id"])
    if not lines_out:
        return []
    nth = {1: "first", 2: "second", 3: "third or later"}[line]
    facts = [Fact(f"Subtype: {SUBTYPE_WORDS[pic.subtype]}"), *receptor_facts(pic), line_fact(pic),
             treatment_fact(pic.treatments, "Treatments given")]
    if pic.menopause == "unknown" and pic.hr_status == "positive":
        facts.append(Fact("Menopausal status not recorded: if pre- or perimenopausal, add ovarian function suppression"))
    guidance = [f"Options for {nth}-line treatment:"] + [f"{i + 1}. {t}" for i, t in enumerate(lines_out)] + k.rule("therapy-options")["guidance"]
    return [Draft("therapy-options", f"{SUBTYPE_WORDS[pic.subtype][0].upper()}{SUBTYPE_WORDS[pic.subtype][1:]} metastatic disease: {nth}-line options ({len(lines_out)})",
                  facts, guidance, key=",".join(cited))]


def resistance_risk(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    # A flag about resistance to treatment of metastatic disease: an early, long-treated
    # triple-negative cancer would otherwise raise a warning on every chart opening.
    if not pic.metastatic:
        return []
    rule = k.rule("resistance-risk")
    reasons: list[tuple[str, Fact]] = []
    if pic.subtype == "TNBC":
        reasons.append(("tnbc", Fact("Triple-negative: ER, PR and HER2 negative", pic.er.evidence + pic.pr.evidence + pic.her2.evidence)))
    anti_her2_regimens = [r for r in pic.regimens if any(_class_of(d) in ANTI_HER2 for d in r[1])]
    if pic.her2.status == "positive" and len(anti_her2_regimens) >= 2:
        text = "; ".join(f"{' + '.join(r[1])} from {r[0].isoformat()}" for r in anti_her2_regimens)
        reasons.append(("her2-pretreated", Fact(f"{len(anti_her2_regimens)} anti-HER2 regimens: {text}")))
    first_et = next((r for r in pic.regimens if pic.metastasis_date and r[0] >= pic.metastasis_date and any(_class_of(d) in ENDOCRINE for d in r[1])), None)
    if first_et:
        start = first_et[0]
        early = [(p.date, p) for p in pic.progression if p.date and start < p.date <= start + timedelta(days=ENDOCRINE_RESISTANCE_DAYS)]
        if early:
            progressed_on, progression = early[0]
            reasons.append(("endocrine-resistance", Fact(
                f"Progression on {progressed_on.isoformat()}, within 6 months of starting first-line endocrine therapy ({' + '.join(first_et[1])}, {start.isoformat()})",
                [progression.reference])))
    if pic.grade and pic.grade.value == 3:
        reasons.append(("high-grade", Fact(f"Histologic grade 3 ({when(pic.grade.date)})", [pic.grade.reference])))
    if not reasons:
        return []
    guidance = [rule["reasons"][code] for code, _ in reasons] + rule["guidance"]
    labels = {"tnbc": "triple-negative", "her2-pretreated": "HER2+ after 2+ anti-HER2 regimens",
              "endocrine-resistance": "early progression on endocrine therapy", "high-grade": "grade 3"}
    return [Draft("resistance-risk", f"Higher-risk disease: {', '.join(labels[c] for c, _ in reasons)}", [f for _, f in reasons], guidance)]


def _class_of(ingredient: str) -> str:
    return tables().drug_class.get(ingredient, "")


def bone_targeted_agent(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not ({"bone", "bone-marrow"} & set(pic.sites)) or "bone-modifying-agent" in pic.active_classes():
        return []
    past = [t for t in pic.treatments if t.drug_class == "bone-modifying-agent"]
    facts = [sites_fact(pic), treatment_fact(past, "Bone-modifying agents") if past else Fact("No active bone-modifying agent (denosumab, zoledronic acid, pamidronate) recorded")]
    return [Draft("bone-targeted-agent", "Bone metastases without an active bone-modifying agent: consider denosumab or zoledronic acid", facts,
                  k.rule("bone-targeted-agent")["guidance"])]


def brain_metastasis(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    cns = [m for m in pic.metastases if m.site in ("brain", "meninges") and not m.regional]
    if not cns:
        return []
    facts = [Fact(f"{m.site.capitalize()} metastasis since {when(m.date)}", [m.reference]) for m in cns]
    facts.append(marker_fact(pic.her2))
    which = "Leptomeningeal" if all(m.site == "meninges" for m in cns) else "Brain"
    return [Draft("brain-metastasis", f"{which} metastases recorded: plan local therapy and CNS-active systemic therapy", facts,
                  k.rule("brain-metastasis")["guidance"])]


def oligometastatic(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or len(pic.sites) != 1:
        return []
    lesions = [m for m in pic.metastases if not m.regional]
    if len(lesions) > 5:
        return []
    return [Draft("oligometastatic", f"Metastatic disease at a single site ({pic.sites[0]}): discuss a multimodal approach if low-volume",
                  [sites_fact(pic), Fact(f"{len(lesions)} metastasis record(s); lesion count not recorded as data")],
                  k.rule("oligometastatic")["guidance"])]


def staging_workup(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    first = pic.metastasis_date
    if not pic.metastatic or first is None or (today - first).days > STAGING_WINDOW_DAYS or first > today:
        return []
    since = first - timedelta(days=STAGING_LOOKBACK_DAYS)
    if any(p["kind"] in STAGING_KINDS and p["date"] and p["date"] >= since for p in pic.procedures):
        return []
    rule = k.rule("staging-workup")
    facts = [sites_fact(pic), Fact(f"No CT of chest and abdomen, bone scan or PET-CT recorded since {since.isoformat()} (matched by procedure name: no verified code list exists)")]
    sr = service_request(rule["service_request_text"], pic.patient, pic.metastatic_evidence[:3])
    return [Draft("staging-workup", f"Metastasis first recorded {first.isoformat()}: no staging CT, bone scan or PET-CT recorded since", facts,
                  rule["guidance"], [_create("Order staging CT and bone scan", sr)])]


RULES = (
    summary,
    receptor_status_missing,
    biopsy_reassessment,
    receptor_discordance,
    biomarker_gaps,
    therapy_options,
    resistance_risk,
    bone_targeted_agent,
    brain_metastasis,
    oligometastatic,
    staging_workup,
)
