"""Non-receptor Observations: staging, disease status, LVEF, weight, ECOG, menopause, grade, biomarkers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from .codes import biomarker_for_gene, gene_symbol, lookup_body_site, lookup_observation, pdl1_code, pdl1_terms, site_from_text, variant_origin
from .fhir import Resource, as_list, codings, concept_text, ref_target
from .labs import convert_calcium
from .picture import BiomarkerResult, LabResult, Measurement, Metastasis
from .values import Value, number_from_text, read_value

GENE_CONCEPTS = {"brca1": "BRCA", "brca2": "BRCA", "brca1-2": "BRCA", "palb2": "PALB2", "pik3ca": "PIK3CA", "pten": "PTEN"}
BRCA_GENES = {"brca1": "BRCA1", "brca2": "BRCA2", "brca1-2": "BRCA1/2"}
# Germline test codes (oncology.md 2.8 lists the BRCA1/2 codes as germline tests): germline unless
# the result states another origin.
GERMLINE_TEST_CONCEPTS = {"brca1", "brca2", "brca1-2", "palb2"}
PDL1_CONCEPTS = {"pdl1", "pdl1-percent", "pdl1-report"}
# "CPS 5", "TPS: 30%", "IC 1%", "CPS < 1"; the long names are turned into these abbreviations first.
# "IC1" (an SP142 category, not 1%) and "22C3" are not scores: a space, colon or "=" must come first.
_SCORE = re.compile(r"\b(cps|tps|ic)\b\)?\s*(?:score\s*)?(?:of|is|=|:)?\s*(<=|>=|≤|≥|<|>)?\s*(\d+(?:\.\d+)?)\s*(%)?")
_LONG_SCORE_NAMES = (("combined positive score", "cps"), ("tumour proportion score", "tps"), ("tumor proportion score", "tps"),
                     ("immune cells", "ic"), ("immune cell", "ic"))
_COMPARATOR = {"≤": "<=", "≥": ">="}
_CLONES = re.compile(r"\b(?:22c3|sp142|sp263|28-8)\b")
# Read and understood; nothing the cards use today.
CLASSIFIED_ONLY = {
    "karnofsky", "t-category", "n-category", "tumor-size", "lymph-nodes", "treatment-status", "tmb", "msi",
    "gene-studied", "genomic-source-class", "allelic-state", "genomics-report", "brca-ihc", "pten-ihc",
}
_LB_TO_KG = 0.45359237
LAB_CONCEPTS = {"calcium-total", "calcium-corrected", "albumin"}


@dataclass
class ObservationFacts:
    report_origin: dict[str, tuple[bool, str]] = field(default_factory=dict)  # result reference -> (germline?, basis)
    metastatic_evidence: list[tuple[str, date | None]] = field(default_factory=list)
    metastases: list[Metastasis] = field(default_factory=list)
    lvef: list[Measurement] = field(default_factory=list)
    weight: list[Measurement] = field(default_factory=list)
    ecog: list[Measurement] = field(default_factory=list)
    menopause: list[tuple[str, date | None, str]] = field(default_factory=list)
    grade: list[Measurement] = field(default_factory=list)
    progression: list[Measurement] = field(default_factory=list)
    biomarkers: list[BiomarkerResult] = field(default_factory=list)
    labs: list[LabResult] = field(default_factory=list)


def _result(meaning: str | None) -> str:
    return {"positive": "positive", "present": "detected", "negative": "negative", "none": "not-detected"}.get(meaning or "", "unknown")


def source_class(element: Resource) -> bool | None:
    """Germline (True) or somatic (False) from a genomic-source-class (LOINC 48002-0) component."""
    for comp in as_list(element.get("component")):
        if isinstance(comp, dict) and any(lookup_observation(s, c)[0] == "genomic-source-class" for s, c, _ in codings(comp.get("code"))):
            meaning = read_value(comp).meaning
            return True if meaning == "germline" else False if meaning == "somatic" else None
    return None


def _test_names(obs: Resource) -> str:
    method = obs.get("method")
    return " ".join(filter(None, (concept_text(obs.get("code")), concept_text(method) if isinstance(method, dict) else "")))


def _origin(obs: Resource, concept: str, ref: str, facts: ObservationFacts) -> tuple[bool | None, str | None]:
    """Where a variant came from, and how that was read: the result's own genomic source class, else
    its report's, else a test name that says it, else a germline test code."""
    germline = source_class(obs)
    if germline is not None:
        return germline, "source-class"
    if ref in facts.report_origin:
        return facts.report_origin[ref]
    germline = variant_origin(_test_names(obs))
    if germline is not None:
        return germline, "test-name"
    if concept in GERMLINE_TEST_CONCEPTS:
        return True, "test-code"
    return None, None


def _brca_marker(germline: bool | None) -> str:
    return "gBRCA" if germline else "sBRCA" if germline is False else "BRCA"


def _pdl1_results(obs: Resource, concept: str, value: Value, ref: str, when: date | None) -> list[BiomarkerResult]:
    """One result per PD-L1 score the Observation reports (components first), with its assay.

    CPS has no verified LOINC code: a score counts as CPS, TPS or IC only where a component, unit,
    method or text names it; a bare "positive" keeps score_type and value None.
    """
    assays: list[str] = []
    code_score = ""
    for system, code, _ in codings(obs.get("code")):
        known = pdl1_code(system, code)
        if known:
            assays += [known[0]] if known[0] else []
            code_score = code_score or known[1]
    method = obs.get("method")
    texts = [concept_text(obs.get("code")), concept_text(method) if isinstance(method, dict) else "", value.text]
    named_assays, named_scores = pdl1_terms(" ".join(texts))
    assay = next(iter(assays + named_assays), None)
    result = _result(value.meaning)
    out: list[BiomarkerResult] = []

    def add(score_type: str | None, number: float | None, comparator: str | None, detail: str | None) -> None:
        upper_bound = comparator in ("<", "<=")
        out.append(BiomarkerResult("PD-L1", result, when, ref, value=None if upper_bound else number, detail=detail or None,
                                   score_type=score_type, assay=assay, comparator=comparator))

    for comp in as_list(obs.get("component")):
        if not isinstance(comp, dict):
            continue
        comp_value = read_value(comp)
        _, comp_scores = pdl1_terms(concept_text(comp.get("code")) + " " + (comp_value.unit or ""))
        if comp_scores and comp_value.number is not None:
            add(comp_scores[0], comp_value.number, comp_value.comparator, concept_text(comp.get("code")))
    if out:
        return out
    quantity = obs.get("valueQuantity")
    unit_text = " ".join(str(quantity.get(k) or "") for k in ("unit", "code")) if isinstance(quantity, dict) else ""
    if value.number is not None and not isinstance(obs.get("valueString"), str):
        _, unit_scores = pdl1_terms(unit_text)
        score_type = next(iter(unit_scores + ([code_score] if code_score else []) + named_scores), None)
        add(score_type, value.number, value.comparator, value.text)
        return out
    text = value.text.lower()
    for long_name, short in _LONG_SCORE_NAMES:
        text = text.replace(long_name, short)
    for match in _SCORE.finditer(text):
        score, comparator, number, _ = match.groups()
        add(score.upper(), float(number), _COMPARATOR.get(comparator, comparator), value.text)
    if not out and code_score:
        # The code names the score (83053-9: % of tumour cells): a bare "30%" is that score; clone
        # names ("22C3") are removed first so that their digits are never read as one.
        number, comparator = number_from_text(_CLONES.sub(" ", text)) if text else (None, None)
        add(code_score, number, comparator, value.text)
    if not out:
        add(None, None, None, value.text)
    return out


def _gene_of(obs: Resource) -> tuple[str | None, str | None, str | None]:
    """(biomarker, variant text, gene symbol) from a genomic variant's components (the origin: ``_origin``)."""
    marker = detail = symbol = None
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
                symbol = symbol or gene_symbol(code) or gene_symbol(display)
            marker = marker or biomarker_for_gene(concept_text(value))
            symbol = symbol or gene_symbol(concept_text(value))
        elif concept == "genomic-source-class":
            continue
        elif isinstance(comp.get("valueString"), str) or isinstance(value, dict):
            detail = detail or (comp.get("valueString") if isinstance(comp.get("valueString"), str) else concept_text(value)) or None
    return marker, detail, symbol


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
        gene = GENE_CONCEPTS[concept]
        germline, basis = _origin(obs, concept, ref, facts)
        facts.biomarkers.append(BiomarkerResult(_brca_marker(germline) if gene == "BRCA" else gene, _result(value.meaning),
                                                when, ref, germline=germline, detail=value.text or None, origin_basis=basis,
                                                gene=BRCA_GENES.get(concept)))
    elif concept in PDL1_CONCEPTS:
        facts.biomarkers.extend(_pdl1_results(obs, concept, value, ref, when))
    elif concept in ("genomic-variant", "region-studied"):
        found, detail, symbol = _gene_of(obs)
        if not found:
            return False  # a gene the cards do not use: listed in unmapped, not dropped
        germline, basis = _origin(obs, concept, ref, facts)
        result = "not-detected" if concept == "region-studied" else _result(value.meaning)
        if concept == "genomic-variant" and result == "unknown" and value.empty:
            result = "detected"  # mCODE GenomicVariant: the resource itself reports a found variant
        facts.biomarkers.append(BiomarkerResult(_brca_marker(germline) if found == "BRCA" else found, result, when, ref,
                                                germline=germline, detail=detail, origin_basis=basis,
                                                gene=symbol if found == "BRCA" else None))
    elif concept in LAB_CONCEPTS:
        if value.number is not None and value.comparator is None:
            facts.labs.append(LabResult(concept, value.number, value.unit, when, ref, _range_high(obs, value.unit, concept != "albumin")))
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


def report_origins(reports: list[tuple[str, Resource, str]]) -> dict[str, tuple[bool, str]]:
    """Result reference -> (germline?, "report") for genomics reports that state their origin (a
    genomic-source-class component, or a report name such as "germline panel" or "tumor-only NGS")."""
    out: dict[str, tuple[bool, str]] = {}
    for _, report, element in reports:
        try:
            germline = source_class(report)
            if germline is None:
                germline = variant_origin(concept_text(report.get("code")))
            if germline is None:
                continue
            for item in as_list(report.get(element)):
                target = ref_target(item)
                if target:
                    out[target] = (germline, "report")
        except Exception:  # noqa: BLE001 - an unreadable report only loses its origin, never the results
            continue
    return out


def _range_high(obs: Resource, unit: str | None, calcium: bool) -> float | None:
    """The upper reference limit in the result's own unit (a calcium range in another unit is converted)."""
    for item in as_list(obs.get("referenceRange")):
        high = item.get("high") if isinstance(item, dict) else None
        if not isinstance(high, dict) or isinstance(high.get("value"), bool) or not isinstance(high.get("value"), (int, float)):
            continue
        high_unit = next((u for u in (high.get("code"), high.get("unit")) if isinstance(u, str) and u.strip()), None)
        if high_unit is None or unit is None or high_unit.strip().lower() == unit.strip().lower():
            return float(high["value"])
        return convert_calcium(float(high["value"]), high_unit, unit) if calcium else None
    return None
