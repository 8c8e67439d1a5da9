"""Resources in, clinical picture out: the one entry point of ``mappings``.

Pure and total: any list of dicts gives a picture. A resource that cannot be read lands in
``unmapped`` (or ``warnings``) instead of raising, so one bad resource never hides the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import cast

from .codes import lookup_observation, procedure_kind
from .conditions import ConditionFacts, read_condition
from .fhir import Resource, codings, concept_text, effective_date, extensions, first_date, parse_date, reference_of, status_code
from .observations import ObservationFacts, gene_coding, read_fact, report_origins
from .picture import ClinicalPicture, MarkerStatus, Unmapped
from .receptors import (
    MARKER_OF,
    RECEPTOR_CONCEPTS,
    ReceptorContext,
    consolidate,
    current_status,
    discordance,
    read_receptor_observation,
)
from .lines import build_lines, endocrine_resistance
from .picture import MedicationUse
from .treatments import read_medication, summarise

SKIP_OBSERVATION = {"entered-in-error", "cancelled", "registered"}
MEDICATION_TYPES = {"MedicationRequest", "MedicationStatement", "MedicationAdministration"}


# US Core Birth Sex Extension, url http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex, as in
# US Core 7.0.0 (https://hl7.org/fhir/us/core/STU7/StructureDefinition-us-core-birthsex.html; unchanged
# since 3.1.1; mCODE's CancerPatient builds on US Core Patient): a valueCode from the BirthSex value set,
# v3 AdministrativeGender F or M, NullFlavor UNK (ASKU and OTH in some versions).
_BIRTH_SEX = {"F": "female", "M": "male", "UNK": "unknown", "ASKU": "unknown", "OTH": "unknown"}


def birth_sex(patient: Resource) -> str | None:
    for ext in extensions(patient, "us-core-birthsex"):
        value = ext.get("valueCode")
        if isinstance(value, str):
            return _BIRTH_SEX.get(value.strip().upper(), "unknown")
    return None


def _unique(resources: Iterable[Resource]) -> list[tuple[str, Resource]]:
    """(reference, resource) once per resource: the same resource may come from several queries."""
    seen: set[str] = set()
    out = []
    for res in resources:
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            continue
        key = reference_of(res)
        if key not in seen or key.endswith("(no id)"):
            seen.add(key)
            out.append((key, res))
    return out


# When one Observation carries several codings (Synthea-derived data sends the interpretation
# code beside the IHC or FISH code), the most specific concept wins.
_SPECIFIC_FIRST = ("her2-ish", "her2-ratio", "her2-copies", "her2-ihc", "er-percent", "pr-percent")


def _obs_concept(obs: Resource) -> tuple[str | None, tuple[str, str, str] | None, bool]:
    first = None
    found: list[tuple[str, bool]] = []
    for system, code, display in codings(obs.get("code")):
        concept, mismatch = lookup_observation(system, code)
        if concept:
            found.append((concept, mismatch))
        else:
            first = first or (system, code, display)
    if found:
        found.sort(key=lambda f: _SPECIFIC_FIRST.index(f[0]) if f[0] in _SPECIFIC_FIRST else len(_SPECIFIC_FIRST))
        return found[0][0], None, found[0][1]
    return None, first or ("", "", concept_text(obs.get("code"))), False


def build_picture(resources: Iterable[Resource], today: date | None = None) -> ClinicalPicture:
    today = today or date.today()
    items = _unique(resources)
    pic = ClinicalPicture()
    unmapped: list[tuple[str, str, str, str]] = []
    specimens: dict[str, Resource] = {}
    medications: dict[str, Resource] = {}
    observations: list[tuple[Resource, str, str]] = []
    med_resources: list[tuple[str, Resource]] = []
    reports: list[tuple[str, Resource, str]] = []  # genomics reports: (reference, resource, element listing results)
    cond = ConditionFacts()
    for ref, res in items:
        rtype = res["resourceType"]
        try:
            if rtype == "Patient" and pic.patient is None:
                pic.patient = ref
                pic.birth_date = parse_date(res.get("birthDate"))
                pic.gender = res.get("gender") if isinstance(res.get("gender"), str) else None
                pic.birth_sex = birth_sex(res)
            elif rtype == "Condition":
                read_condition(res, ref, cond)
            elif rtype == "Observation":
                if status_code(res.get("status")) in SKIP_OBSERVATION:
                    continue
                concept, unknown, mismatch = _obs_concept(res)
                if concept is None:
                    # _obs_concept always gives the unknown coding when it finds no concept
                    unmapped.append((ref, *cast(tuple[str, str, str], unknown)))
                    continue
                if mismatch:
                    pic.warnings.append(f"{ref}: code sent with an unexpected code system; read by code alone")
                observations.append((res, ref, concept))
                if concept == "genomics-report":
                    reports.append((ref, res, "hasMember"))
            elif rtype == "Specimen":
                specimens[ref] = res
            elif rtype == "Medication":
                medications[ref] = res
            elif rtype in MEDICATION_TYPES:
                med_resources.append((ref, res))
            elif rtype in ("Procedure", "DiagnosticReport", "ImagingStudy"):
                if rtype == "DiagnosticReport":
                    reports.append((ref, res, "result"))
                description = res.get("description")
                text = concept_text(res.get("code")) or (description if isinstance(description, str) else "")
                for modality in res.get("modality") or []:
                    text += " " + concept_text(modality)
                kind = procedure_kind(text) if text else None
                if kind and status_code(res.get("status")) not in ("entered-in-error", "not-done", "cancelled", "preparation"):
                    period = res.get("performedPeriod")
                    when = first_date(res.get("performedDateTime"), period if isinstance(period, dict) else None,
                                      res.get("effectiveDateTime"), res.get("started"), res.get("issued"))
                    pic.procedures.append({"kind": kind, "date": when, "evidence": ref, "text": text.strip()})
        except Exception as exc:  # noqa: BLE001 - one unreadable resource must not hide the rest
            pic.warnings.append(f"{ref}: could not be read ({type(exc).__name__})")
            unmapped.append((ref, "", "", "unreadable resource"))

    unmapped.extend(cond.unmapped)
    pic.flagged_conditions = cond.flagged
    # Conditions decide breast cancer and the first evidence of metastasis.
    pic.breast_cancer_evidence = [r for r, _ in cond.breast_cancer]
    pic.breast_cancer = bool(cond.breast_cancer)
    dx_dates = [d for _, d in cond.breast_cancer if d]
    pic.diagnosis_date = min(dx_dates) if dx_dates else None
    obs_facts = ObservationFacts(report_origin=report_origins(reports))
    receptor_obs: list[tuple[Resource, str, str]] = []
    for res, ref, concept in observations:
        if concept in RECEPTOR_CONCEPTS:
            receptor_obs.append((res, ref, concept))
            continue
        try:
            if not read_fact(res, concept, ref, effective_date(res), obs_facts):
                gene = gene_coding(res) if concept in ("genomic-variant", "region-studied") else None
                unmapped.append((ref, *(gene or next(codings(res.get("code")), ("", "", "")))))
        except Exception as exc:  # noqa: BLE001
            pic.warnings.append(f"{ref}: could not be read ({type(exc).__name__})")
    pic.metastases = cond.metastases + obs_facts.metastases
    distant = [m for m in pic.metastases if not m.regional]
    evidence = [(m.reference, m.date) for m in distant] + cond.metastatic_evidence + obs_facts.metastatic_evidence
    pic.metastatic = bool(evidence)
    pic.metastatic_evidence = sorted({r for r, _ in evidence})
    met_dates = [d for _, d in evidence if d]
    pic.metastasis_date = min(met_dates) if met_dates else None

    # Receptors, now that the date of metastasis is known.
    ctx = ReceptorContext(specimens=specimens, metastasis_conditions={m.reference for m in distant},
                          metastasis_date=pic.metastasis_date)
    results = []
    for res, ref, concept in receptor_obs:
        if concept not in MARKER_OF:
            continue
        try:
            results.extend(read_receptor_observation(res, concept, ref, effective_date(res), ctx,
                                                     status_code(res.get("status")) == "preliminary"))
        except Exception as exc:  # noqa: BLE001
            pic.warnings.append(f"{ref}: could not be read ({type(exc).__name__})")
    results.sort(key=lambda r: (r.date or date.min, r.marker, r.reference))
    pic.receptor_history = results
    samples = consolidate(results)
    pic.er = current_status("ER", samples.get("ER", []))
    pic.pr = current_status("PR", samples.get("PR", []))
    pic.her2 = current_status("HER2", samples.get("HER2", []))
    hr = current_status("HR", samples.get("HR", []))
    pic.discordance = discordance(samples)
    for receptor in (pic.er, pic.pr, pic.her2):
        if receptor.conflict:
            pic.warnings.append(f"{receptor.marker}: {receptor.conflict}")
    _receptors_from_conditions(pic, cond, hr)

    # Treatments.
    uses: list[MedicationUse] = []
    identified: dict = {}  # one lookup per distinct medication coding: cycles repeat the same code
    for ref, res in med_resources:
        try:
            use = read_medication(res, ref, medications, today, unmapped, identified)
        except Exception as exc:  # noqa: BLE001
            pic.warnings.append(f"{ref}: could not be read ({type(exc).__name__})")
            continue
        if use is not None:
            uses.append(use)
    pic.treatments = summarise(uses)
    pic.medication_uses = sorted(uses, key=lambda u: (u.start or date.min, u.ingredient, u.reference))

    pic.lvef = sorted(obs_facts.lvef, key=lambda m: m.date or date.min)
    pic.weight = sorted(obs_facts.weight, key=lambda m: m.date or date.min)
    pic.ecog = pic.latest(obs_facts.ecog)
    pic.grade = pic.latest([g for g in obs_facts.grade if g.value is not None]) or (obs_facts.grade[-1] if obs_facts.grade else None)
    pic.progression = sorted(obs_facts.progression, key=lambda m: m.date or date.min)
    if obs_facts.menopause:
        status, _, ref = max(obs_facts.menopause, key=lambda m: m[1] or date.min)
        pic.menopause, pic.menopause_evidence = status, ref
    pic.biomarkers = sorted(obs_facts.biomarkers, key=lambda b: (b.marker, b.date or date.min))
    pic.labs = sorted(obs_facts.labs, key=lambda lab: (lab.date or date.min, lab.test, lab.reference))
    pic.complications = sorted(cond.complications, key=lambda c: (c.date or date.min, c.kind, c.reference))
    _lines_of_therapy(pic)
    pic.unmapped = _aggregate(unmapped)
    return pic


def _lines_of_therapy(pic: ClinicalPicture) -> None:
    """Lines, early treatment, progressions and endocrine resistance: once per picture, from the records read."""
    surgery = [p["date"] for p in pic.procedures if p["kind"] == "breast-surgery" and p["date"]]
    built = build_lines(pic.medication_uses, metastatic=pic.metastatic, metastasis_date=pic.metastasis_date,
                        metastases=pic.metastases, statuses=[(m.date, m.reference, "") for m in pic.progression],
                        surgery=surgery)
    pic.lines, pic.early_treatment, pic.progressions = built.lines, built.early, built.progressions
    pic.warnings.extend(f"{ref}: no date, so it is in no line of therapy" for ref in built.undated)
    resistance = endocrine_resistance(built.lines, built.early, built.progressions, hr_positive=pic.hr_status == "positive",
                                      metastatic=pic.metastatic, relapse=pic.metastasis_date,
                                      relapse_evidence=pic.metastatic_evidence)
    pic.endocrine_resistance = resistance.status
    pic.endocrine_resistance_basis = resistance.basis
    pic.endocrine_resistance_evidence = resistance.evidence
    pic.endocrine_progression = resistance.last_progression_on_endocrine


def _receptors_from_conditions(pic: ClinicalPicture, cond: ConditionFacts, hr: MarkerStatus) -> None:
    """Receptor status coded on a problem is weaker evidence: used only where no test result exists."""
    coded: dict[str, tuple[str, str, date | None]] = {}
    for marker, status, ref, when in sorted(cond.receptor_status, key=lambda x: x[3] or date.min):
        coded[marker] = (status, ref, when)
    for marker, attr in (("ER", "er"), ("PR", "pr"), ("HER2", "her2")):
        current: MarkerStatus = getattr(pic, attr)
        if current.status == "unknown" and not current.conflict and marker in coded:
            status, ref, when = coded[marker]
            current.status, current.date, current.evidence, current.source = status, when, [ref], "condition"
            if marker == "HER2" and status == "positive":
                current.category = "positive"
    # HR+ without separate ER/PR (SNOMED 417181009, combined ER+PR test): ER/PR stay unknown but HR is known.
    hr_coded = coded.get("HR")
    if pic.er.status == "unknown" and pic.pr.status == "unknown":
        if hr.status != "unknown":
            pic.hr_override = (hr.status, hr.evidence)
        elif hr_coded:
            pic.hr_override = (hr_coded[0], [hr_coded[1]])


def _aggregate(items: list[tuple[str, str, str, str]]) -> list[Unmapped]:
    """One entry per distinct code, with how many resources carried it."""
    by_code: dict[tuple[str, str, str], Unmapped] = {}
    for ref, system, code, display in items:
        key = (system, code, "" if code else display)
        if key in by_code:
            by_code[key].count += 1
        else:
            by_code[key] = Unmapped(reference=ref, system=system, code=code, display=display)
    return list(by_code.values())
