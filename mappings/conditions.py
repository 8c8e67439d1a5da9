"""Conditions: breast cancer, distant metastases and receptor status coded as a problem.

Metastasis is read by code (SNOMED secondary neoplasm codes, ICD-10-CM C77-C79 and C7B), by
``bodySite`` when the code is generic, and by display text as a last resort. Regional axillary
nodes are kept but are not distant disease. Refuted, entered-in-error, resolved and inactive
metastases are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .codes import complications_from_text, condition_flag, lookup_body_site, lookup_condition, site_from_text
from .fhir import Resource, codings, concept_text, first_date, status_code
from .picture import Complication, FlaggedCondition, Metastasis

SKIP_VERIFICATION = {"refuted", "entered-in-error"}
INACTIVE_CLINICAL = {"resolved", "inactive"}
_METASTASIS_WORDS = ("metasta", "secondary malignant", "secondary neoplasm")
_REGIONAL_WORDS = ("axilla",)
COMPLICATIONS = {"pathological-fracture", "spinal-cord-compression", "hypercalcaemia"}


@dataclass
class ConditionFacts:
    breast_cancer: list[tuple[str, date | None]] = field(default_factory=list)
    metastases: list[Metastasis] = field(default_factory=list)
    metastatic_evidence: list[tuple[str, date | None]] = field(default_factory=list)  # no site (e.g. 315004001, stage IV)
    receptor_status: list[tuple[str, str, str, date | None]] = field(default_factory=list)  # marker, status, ref, date
    unmapped: list[tuple[str, str, str, str]] = field(default_factory=list)  # ref, system, code, display
    complications: list[Complication] = field(default_factory=list)
    flagged: list[FlaggedCondition] = field(default_factory=list)  # by keyword (condition_keywords.csv)


def condition_date(cond: Resource) -> date | None:
    period = cond.get("onsetPeriod")
    return first_date(cond.get("onsetDateTime"), period if isinstance(period, dict) else None, cond.get("recordedDate"))


def _site_from_body(cond: Resource) -> tuple[str | None, str]:
    for body in cond.get("bodySite") or []:
        for system, code, _ in codings(body):
            site = lookup_body_site(system, code)
            if site and site != "breast":
                return site, "bodySite"
        text = concept_text(body)
        site = site_from_text(text) if text else None
        if site and site != "breast":
            return site, "bodySite"
    return None, ""


def read_condition(cond: Resource, ref: str, facts: ConditionFacts) -> None:
    if status_code(cond.get("verificationStatus")) in SKIP_VERIFICATION:
        return
    inactive = status_code(cond.get("clinicalStatus")) in INACTIVE_CLINICAL
    when = condition_date(cond)
    code = cond.get("code")
    matched = False
    first_unmatched: tuple[str, str, str] | None = None
    for system, value, display in codings(code):
        entries = lookup_condition(system, value)
        if not entries:
            first_unmatched = first_unmatched or (system, value, display)
            continue
        matched = True
        for entry in entries:
            _apply(entry.concept, entry.site, entry.marker, entry.status, cond, ref, when, inactive, entry.display or display, facts)
        break
    raw_text = concept_text(code)
    text = raw_text.lower()
    kinds = complications_from_text(text) if text and not inactive else set()
    if not matched:
        # Concepts with no verified code (interstitial lung disease, visceral crisis): by keyword, and
        # resolved ones too (a history of pneumonitis matters before trastuzumab deruxtecan). A text
        # may say both ("visceral crisis from liver metastases"): both are kept.
        flag = condition_flag(raw_text) if raw_text else None
        if flag:
            facts.flagged.append(FlaggedCondition(flag, ref, when, raw_text, status_code(cond.get("clinicalStatus"))))
            matched = True
        if text and any(w in text for w in _METASTASIS_WORDS) and not inactive:
            regional = any(w in text for w in _REGIONAL_WORDS)
            site = site_from_text(text)
            if site == "breast":
                site = None
            body_site, _ = _site_from_body(cond)
            site = body_site or site
            # "Metastatic spinal cord compression" names a complication, not a site of its own.
            if site or not kinds:
                facts.metastases.append(Metastasis(
                    site=site or ("lymph-node" if regional else "other"), reference=ref, date=when,
                    basis="text", display=concept_text(code), regional=regional))
            matched = True
    if kinds:
        # By name, also beside a code that said something else ("bone metastasis with cord compression").
        coded = {c.kind for c in facts.complications if c.reference == ref}
        for kind in sorted(kinds - coded):
            facts.complications.append(Complication(kind, ref, when, "text", concept_text(code)))
        matched = True
    if not matched:
        system, value, display = first_unmatched or ("", "", concept_text(code))
        facts.unmapped.append((ref, system, value, display))
    for stage in cond.get("stage") or []:
        if not isinstance(stage, dict):
            continue
        from .codes import lookup_answer

        for system, value, _ in codings(stage.get("summary")):
            if lookup_answer(system, value) in ("stage-iv", "m1"):
                facts.metastatic_evidence.append((ref, when))


def _apply(concept: str, site: str, marker: str, status: str, cond: Resource, ref: str,
           when: date | None, inactive: bool, display: str, facts: ConditionFacts) -> None:
    if concept in ("breast-cancer", "breast-cancer-history"):
        facts.breast_cancer.append((ref, when))
    elif concept in ("metastasis", "metastasis-regional", "metastasis-generic"):
        if inactive:
            return
        basis = "code"
        if concept == "metastasis-generic" or not site or site == "other":
            body_site, how = _site_from_body(cond)
            if body_site:
                site, basis = body_site, how
            elif concept == "metastasis-generic":
                text_site = site_from_text(concept_text(cond.get("code")))
                site, basis = (text_site, "text") if text_site and text_site != "breast" else ("other", "code")
        facts.metastases.append(Metastasis(site=site or "other", reference=ref, date=when, basis=basis,
                                           display=display, regional=concept == "metastasis-regional"))
    elif concept in ("metastatic-breast-cancer", "disseminated"):
        if not inactive:
            facts.metastatic_evidence.append((ref, when))
            if concept == "metastatic-breast-cancer":
                facts.breast_cancer.append((ref, when))
    elif concept == "receptor-status" and marker and status:
        facts.receptor_status.append((marker, status, ref, when))
    elif concept in COMPLICATIONS and not inactive:
        facts.complications.append(Complication(concept, ref, when, "code", concept_text(cond.get("code")) or display))
