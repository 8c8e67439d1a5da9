"""Non-receptor Observations: staging, disease status, LVEF, weight, ECOG, menopause, grade, biomarkers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from .codes import biomarker_for_gene, lookup_body_site, lookup_observation, site_from_text
from .fhir import Resource, as_list, codings, concept_text
from .picture import BiomarkerResult, Measurement, Metastasis
from .values import read_value

GENE_CONCEPTS = {"brca1": "gBRCA", "brca2": "gBRCA", "brca1-2": "gBRCA", "palb2": "PALB2", "pik3ca": "PIK3CA", "pten": "PTEN"}
PDL1_CONCEPTS = {"pdl1", "pdl1-percent", "pdl1-report"}
# Read and understood; nothing the cards use today.
CLASSIFIED_ONLY = {
    "karnofsky", "t-category", "n-category", "tumor-size", "lymph-nodes", "treatment-status", "tmb", "msi",
    "gene-studied", "genomic-source-class", "allelic-state", "genomics-report", "brca-ihc", "pten-ihc",
}
_LB_TO_KG = 0.45359237


@dataclass
class ObservationFacts:
    metastatic_evidence: list[tuple[str, date | None]] = field(default_factory=list)
    metastases: list[Metastasis] = field(default_factory=list)
    lvef: list[Measurement] = field(default_factory=list)
    weight: list[Measurement] = field(default_factory=list)
    ecog: list[Measurement] = field(default_factory=list)
    menopause: list[tuple[str, date | None, str]] = field(default_factory=list)
    grade: list[Measurement] = field(default_factory=list)
    progression: list[Measurement] = field(default_factory=list)
    biomarkers: list[BiomarkerResult] = field(default_factory=list)


def _result(meaning: str | None) -> str:
    return {"positive": "positive", "present": "detected", "negative": "negative", "none": "not-detected"}.get(meaning or "", "unknown")


def _gene_of(obs: Resource) -> tuple[str | None, bool | None, str | None]:
    """(biomarker, germline?, variant text) from a genomic variant's components."""
    marker = germline = detail = None
    for comp in as_list(obs.get("component")):
        if not isinstance(comp, dict):
            continue
        concept = None
        for system, code, _ in codings(comp.get("code")):
            concept, _ = lookup_observation(system, code)
            if concept:
                break
        value = comp.get("valueCodeableConcept")
        if concept == "gene-studied":
            for _, code, display in codings(value):
                marker = marker or biomarker_for_gene(code) or biomarker_for_gene(display)
            marker = marker or biomarker_for_gene(concept_text(value))
        elif concept == "genomic-source-class":
            meaning = read_value(comp).meaning
            germline = True if meaning == "germline" else False if meaning == "somatic" else None
        elif isinstance(comp.get("valueString"), str) or isinstance(value, dict):
            detail = detail or (comp.get("valueString") if isinstance(comp.get("valueString"), str) else concept_text(value)) or None
    return marker, germline, detail


def read_fact(obs: Resource, concept: str, ref: str, when: date | None, facts: ObservationFacts) -> bool:
    """Record the fact an Observation gives; False if the concept is not one this module reads."""
    value = read_value(obs)
    if concept in ("stage-group", "m-category"):
        if value.meaning in ("stage-iv", "m1"):
            facts.metastatic_evidence.append((ref, when))
    elif concept == "disease-status":
        if value.meaning == "distant-metastasis-present":
            facts.metastatic_evidence.append((ref, when))
        elif value.meaning == "disease-worsened":
            facts.progression.append(Measurement("worsened", when, ref))
    elif concept == "metastasis-site":
        if value.meaning not in ("none", "negative", None) or (value.meaning is None and value.text):
            site = None
            for system, code, _ in codings(obs.get("valueCodeableConcept")):
                site = lookup_body_site(system, code)
                if site:
                    break
            site = site or (site_from_text(value.text) if value.text else None)
            if site and site != "breast":
                facts.metastases.append(Metastasis(site=site, reference=ref, date=when, basis="code", display=value.text))
    elif concept == "history-metastatic":
        if value.meaning == "positive":
            facts.metastatic_evidence.append((ref, when))
    elif concept == "lvef":
        if value.number is not None:
            facts.lvef.append(Measurement(value.number, when, ref, "%"))
    elif concept == "body-weight":
        if value.number is not None:
            kg = value.number * _LB_TO_KG if (value.unit or "").lower() in ("[lb_av]", "lb", "lbs") else value.number
            facts.weight.append(Measurement(round(kg, 1), when, ref, "kg"))
    elif concept == "ecog":
        score = value.number
        if score is None and value.meaning and value.meaning.startswith("ecog-"):
            score = float(value.meaning[5:])
        if score is not None:
            facts.ecog.append(Measurement(int(score), when, ref))
    elif concept == "menopause":
        if value.meaning in ("premenopausal", "postmenopausal", "unknown"):
            facts.menopause.append((value.meaning, when, ref))
    elif concept == "grade":
        grade = value.meaning[6:] if value.meaning and value.meaning.startswith("grade-") else None
        if grade is None and value.text:
            match = re.search(r"\b([1-3]|i{1,3})\b", value.text.lower())
            if match:
                grade = {"i": "1", "ii": "2", "iii": "3"}.get(match.group(1), match.group(1))
        if grade is None and value.number in (1, 2, 3):
            grade = str(int(value.number))
        facts.grade.append(Measurement(int(grade) if grade else None, when, ref))
    elif concept in GENE_CONCEPTS:
        germline: bool | None = concept.startswith(("brca", "palb2")) or None
        facts.biomarkers.append(BiomarkerResult(GENE_CONCEPTS[concept], _result(value.meaning), when, ref,
                                                germline=germline, detail=value.text or None))
    elif concept in PDL1_CONCEPTS:
        number = value.number if concept == "pdl1-percent" or value.unit in ("%", "{score}", None) else None
        facts.biomarkers.append(BiomarkerResult("PD-L1", _result(value.meaning), when, ref, value=number,
                                                detail=value.text or None))
    elif concept in ("genomic-variant", "region-studied"):
        marker, germline, detail = _gene_of(obs)
        if not marker:
            return False  # a gene the cards do not use: listed in unmapped, not dropped
        if marker:
            result = "not-detected" if concept == "region-studied" else _result(value.meaning)
            if concept == "genomic-variant" and result == "unknown" and value.empty:
                result = "detected"  # mCODE GenomicVariant: the resource itself reports a found variant
            facts.biomarkers.append(BiomarkerResult(marker, result, when, ref, germline=germline, detail=detail))
    elif concept in CLASSIFIED_ONLY:
        pass
    else:
        return False
    return True


def gene_coding(obs: Resource) -> tuple[str, str, str] | None:
    """The gene-studied coding of a genomic Observation, to name an unused gene in ``unmapped``."""
    for comp in as_list(obs.get("component")):
        if not isinstance(comp, dict):
            continue
        if any(lookup_observation(s, c)[0] == "gene-studied" for s, c, _ in codings(comp.get("code"))):
            return next(codings(comp.get("valueCodeableConcept")), None)
    return None
