"""Therapy options by subtype and line, and the resistance-risk flags."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import SUBTYPE_WORDS, line_fact, receptor_facts, treatment_fact, when
from ..knowledge import Knowledge
from .common import ANTI_HER2, ENDOCRINE, class_of
from .safety import contradicts

ENDOCRINE_RESISTANCE_DAYS = 183  # 6 months (ABC definition of primary endocrine resistance)


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
    anti_her2_regimens = [r for r in pic.regimens if any(class_of(d) in ANTI_HER2 for d in r[1])]
    if pic.her2.status == "positive" and len(anti_her2_regimens) >= 2:
        text = "; ".join(f"{' + '.join(r[1])} from {r[0].isoformat()}" for r in anti_her2_regimens)
        reasons.append(("her2-pretreated", Fact(f"{len(anti_her2_regimens)} anti-HER2 regimens: {text}")))
    first_et = next((r for r in pic.regimens if pic.metastasis_date and r[0] >= pic.metastasis_date and any(class_of(d) in ENDOCRINE for d in r[1])), None)
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
