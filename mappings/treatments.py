"""Treatment history from MedicationRequest, MedicationStatement and MedicationAdministration.

RxNorm product codes (SCD, SBD, group codes) roll up to ingredients through the shipped table
(no RxNav at run time); a drug with no known code is matched by name. Regimens and lines of therapy
are built from the same records in ``lines.py`` (REGIMEN_WINDOW_DAYS, RESTART_GAP_DAYS below).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date

from .codes import RXNORM, drug_class, ingredient_for_rxcui, ingredient_from_text, lookup_answer, norm_system, strength_for_rxcui
from .fhir import Resource, as_list, codings, concept_text, extensions, first_date, ref_target, status_code
from .picture import MedicationUse, Treatment

REGIMEN_WINDOW_DAYS = 30
RESTART_GAP_DAYS = 90
# An administration is an event; a cancer drug given within this many days is treated as current.
ADMINISTRATION_ACTIVE_DAYS = 42
# Supportive or companion classes that do not make a regimen of their own.
NOT_A_REGIMEN = {"bone-modifying-agent", "ovarian-suppression"}

_SKIP_STATUS = {
    "MedicationRequest": {"entered-in-error", "cancelled", "draft"},
    "MedicationStatement": {"entered-in-error", "not-taken", "intended"},
    "MedicationAdministration": {"entered-in-error", "not-done"},
}
_SKIP_INTENT = {"proposal", "plan"}
_ACTIVE_STATUS = {
    "MedicationRequest": {"active", "on-hold"},
    "MedicationStatement": {"active"},
    "MedicationAdministration": {"in-progress"},
}


# "10.8 mg", "3.6mg", "120 MG" in a medication's name or a dosage text; per-volume strengths ("60 MG/ML") are
# taken only from the product table, where the pack size is known.
_AMOUNT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(mg|mcg|g)\b(?!\s*/)", re.IGNORECASE)


def medication_concept(resource: Resource, medications: dict[str, Resource]) -> dict | None:
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept
    target = resource.get("medicationReference")
    if isinstance(target, dict):
        ref = target.get("reference")
        if isinstance(ref, str) and ref.startswith("#"):
            for contained in as_list(resource.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained.get("code")
        key = ref_target(target)
        if key and key in medications:
            return medications[key].get("code")
        if isinstance(target.get("display"), str):
            return {"text": target["display"]}
    return None


def identify(concept: dict | None) -> tuple[str | None, str, tuple[str, str, str] | None]:
    """(ingredient, basis, first unknown coding) for a medication concept."""
    unknown = None
    for system, code, display in codings(concept):
        if norm_system(system) == RXNORM or not system:
            ingredient = ingredient_for_rxcui(code)
            if ingredient:
                return ingredient, "code", None
        unknown = unknown or (system, code, display)
    text = concept_text(concept)
    ingredient = ingredient_from_text(text) if text else None
    if ingredient:
        return ingredient, "name", None
    return None, "", unknown or ("", "", text)


def _dates(resource: Resource) -> tuple[date | None, date | None]:
    rtype = resource.get("resourceType")
    if rtype == "MedicationRequest":
        start = end = None
        for dosage in as_list(resource.get("dosageInstruction")):
            if isinstance(dosage, dict):
                bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") if isinstance(dosage.get("timing"), dict) else None
                if isinstance(bounds, dict):
                    start = start or first_date(bounds.get("start"))
                    end = end or first_date(bounds.get("end"))
        validity = (resource.get("dispenseRequest") or {}).get("validityPeriod") if isinstance(resource.get("dispenseRequest"), dict) else None
        return start or first_date(resource.get("authoredOn"), validity), end
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return first_date(period.get("start")), first_date(period.get("end"))
    when = first_date(resource.get("effectiveDateTime"), resource.get("dateAsserted"))
    return when, when if rtype == "MedicationAdministration" else None


def _identify_cached(concept: dict | None, cache: dict | None) -> tuple[str | None, str, tuple[str, str, str] | None]:
    if cache is None or not isinstance(concept, dict):
        return identify(concept)
    coding = concept.get("coding")
    if not isinstance(coding, list):
        return identify(concept)
    key = (tuple((c.get("system"), c.get("code")) for c in coding if isinstance(c, dict)), concept.get("text"))
    try:
        hit = key in cache
    except TypeError:  # an unhashable code value: read it the slow way
        return identify(concept)
    if not hit:
        cache[key] = identify(concept)
    return cache[key]


def _quantity(value: object) -> tuple[float | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None, None
    unit = next((u for u in (value.get("code"), value.get("unit")) if isinstance(u, str) and u.strip()), None)
    return float(number), unit


def read_dose(resource: Resource, concept: dict | None) -> tuple[float | None, str | None, str | None]:
    """(amount, unit, basis) of one dose: the dosage as recorded, else the product's strength, else text.

    MedicationRequest.dosageInstruction and MedicationStatement.dosage carry doseAndRate.doseQuantity;
    MedicationAdministration.dosage carries dose. The product table's strength (rxnorm_codes.csv) and a
    stated amount in the drug's name ("goserelin 10.8 mg implant") come after.
    """
    rtype = resource.get("resourceType")
    dosages = as_list(resource.get("dosage")) if rtype in ("MedicationStatement", "MedicationAdministration") else []
    dosages += as_list(resource.get("dosageInstruction"))
    texts = []
    for dosage in dosages:
        if not isinstance(dosage, dict):
            continue
        amount, unit = _quantity(dosage.get("dose"))
        if amount is not None:
            return amount, unit, "dosage"
        for rate in as_list(dosage.get("doseAndRate")):
            amount, unit = _quantity(rate.get("doseQuantity") if isinstance(rate, dict) else None)
            if amount is not None:
                return amount, unit, "dosage"
        if isinstance(dosage.get("text"), str):
            texts.append(dosage["text"])
    for system, code, _ in codings(concept):
        if norm_system(system) == RXNORM or not system:
            strength = strength_for_rxcui(code)
            if strength is not None:
                return strength, "mg", "strength"
    for text in [concept_text(concept), *texts]:
        match = _AMOUNT.search(text or "")
        if match:
            return float(match.group(1)), match.group(2).lower(), "text"
    return None, None, None


def read_intent(resource: Resource) -> str | None:
    """curative or palliative from the mCODE procedure-intent extension (STU1-STU4 URLs end alike)."""
    for ext in extensions(resource, "mcode-procedure-intent"):
        for system, code, _ in codings(ext.get("valueCodeableConcept")):
            meaning = lookup_answer(system, code)
            if meaning in ("curative", "palliative"):
                return meaning
    return None


def read_stop_reason(resource: Resource) -> str | None:
    """Why the drug was stopped, from statusReason or the mCODE termination-reason extension (STU1-STU4).

    Values: completed | no-response | not-tolerated | patient-choice | other (mCODE
    TreatmentTerminationReasonVS, answer_codes.csv); None when not recorded or not coded.
    """
    reasons = as_list(resource.get("statusReason"))
    for ext in extensions(resource, "termination-reason"):
        reasons.append(ext.get("valueCodeableConcept"))
    for concept in reasons:
        for system, code, _ in codings(concept):
            meaning = lookup_answer(system, code)
            if meaning and meaning.startswith("stop-"):
                return meaning[5:]
    return None


def read_medication(resource: Resource, ref: str, medications: dict[str, Resource], today: date,
                    unmapped: list[tuple[str, str, str, str]], cache: dict | None = None) -> MedicationUse | None:
    rtype = resource.get("resourceType", "")
    status = status_code(resource.get("status"))
    if status in _SKIP_STATUS.get(rtype, set()):
        return None
    if rtype == "MedicationRequest" and status_code(resource.get("intent")) in _SKIP_INTENT:
        return None
    concept = medication_concept(resource, medications)
    ingredient, basis, unknown = _identify_cached(concept, cache)
    if ingredient is None:
        if unknown is not None:
            unmapped.append((ref, *unknown))
        return None
    klass = drug_class(ingredient)
    if klass is None:
        unmapped.append((ref, RXNORM, "", ingredient))
        return None
    start, end = _dates(resource)
    active = status in _ACTIVE_STATUS.get(rtype, set())
    if active and end is not None and end < today:
        active = False
    if rtype == "MedicationAdministration" and start is not None and (today - start).days <= ADMINISTRATION_ACTIVE_DAYS:
        active = True
    if active and end is None:
        end = today  # an open, active order runs until now: later doses continue the same course
    return MedicationUse(ingredient, klass, start, end, active, ref, basis, rtype, resource, concept)


def summarise(uses: list[MedicationUse]) -> list[Treatment]:
    """One summary per drug (lines of therapy are built from the same records in ``lines.py``)."""
    by_drug: dict[str, list[MedicationUse]] = defaultdict(list)
    for use in uses:
        by_drug[use.ingredient].append(use)
    treatments: list[Treatment] = []
    for ingredient, items in by_drug.items():
        starts = sorted(u.start for u in items if u.start)
        ends = [d for d in (u.end or u.start for u in items) if d]
        treatments.append(Treatment(
            ingredient=ingredient, drug_class=items[0].drug_class, start=starts[0] if starts else None,
            end=max(ends) if ends else None, active=any(u.active for u in items),
            evidence=sorted({u.reference for u in items}),
        ))
    treatments.sort(key=lambda t: (t.start or date.min, t.ingredient))
    return treatments
