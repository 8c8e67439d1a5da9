"""Draft orders of order-select and order-sign, read leniently into what the order rules check.

What arrives in ``context.draftOrders`` (a Bundle):
- ``MedicationRequest``: the drug from ``medicationCodeableConcept``, or ``medicationReference`` to a
  contained Medication (``#id``) or one bundled beside it (``Medication/id`` or its fullUrl);
- ``RequestGroup`` (a regimen, as the CodeX oncology prior-authorization examples send paclitaxel
  + trastuzumab): its ``action[].resource`` (nested actions too) point to contained or bundled
  MedicationRequests, read as above and cited by the group;
- ``NutritionOrder``, ``ServiceRequest`` and anything else: not medication, ignored quietly.
A draft that names no medication yet (the CDS Hooks sandbox's first order-select call, or after
"remove draft") is skipped without a card; a draft that names a drug the code tables cannot
identify is reported, so the data-incomplete card can say it was not checked. The sandbox's
drafts are not valid R4 (single objects for arrays): every reader here tolerates that.

Dose and schedule come from ``dosageInstruction``: ``doseAndRate.doseQuantity`` and
``timing.repeat`` (frequency per period), with the dosage text as a fallback; what cannot be read
stays ``None`` (named by the rules, never guessed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mappings.codes import drug_class
from mappings.fhir import as_list, codings, concept_text, reference_of
from mappings.treatments import identify

Resource = dict[str, Any]
MEDICATION_ORDER = "MedicationRequest"
GROUP = "RequestGroup"

_DOSE_TEXT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(mg/kg|mg/m2|mg/m²|mg)(?![a-z])", re.IGNORECASE)
_WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "six": 6}
# "every 3 weeks", "every 21 days", "q3w", "q 3 wk", "3-weekly", "three-weekly"; then "weekly", "every week", "qw".
_EVERY = re.compile(r"\bevery\s+(\d+(?:\.\d+)?|one|two|three|four|six)\s*(day|week|wk)s?\b", re.IGNORECASE)
_Q = re.compile(r"\bq\s?(\d+)\s?(d|w|wk|wks|week|weeks|day|days)\b", re.IGNORECASE)
_N_WEEKLY = re.compile(r"\b(\d+|one|two|three|four|six)[- ]weekly\b", re.IGNORECASE)
_WEEKLY = re.compile(r"\b(weekly|every week|once a week|qw|qwk)\b", re.IGNORECASE)
_PERIOD_WEEKS = {"h": 1 / 168, "d": 1 / 7, "wk": 1.0, "mo": 30.4375 / 7, "a": 365.25 / 7}


@dataclass(frozen=True)
class DraftDose:
    """One dose and its schedule as the order states them; None where the order does not say."""

    amount: float | None
    unit: str | None  # mg | mg/kg | mg/m2 | the unit as sent
    dose_basis: str | None  # doseAndRate | text
    every_weeks: float | None  # interval between doses
    schedule_basis: str | None  # timing | text
    route: str  # route and dosage text, lower case, for "subcutaneous"

    def words(self) -> str:
        parts = []
        if self.amount is not None:
            parts.append(f"{self.amount:g} {self.unit or ''}".strip())
        if self.every_weeks is not None:
            parts.append(every_words(self.every_weeks))
        return " ".join(parts)


def every_words(weeks: float) -> str:
    if abs(weeks * 7 - 1) < 0.05:
        return "daily"
    if abs(weeks - 1) < 0.05:
        return "weekly"
    if abs(weeks - round(weeks)) < 0.05:
        return f"every {round(weeks)} weeks"
    days = weeks * 7
    return f"every {days:g} days" if abs(days - round(days)) < 0.05 else f"every {weeks:.1f} weeks"


@dataclass
class DraftOrder:
    reference: str  # "MedicationRequest/id"; a contained one as "RequestGroup/rg#id"
    evidence: str  # the "Type/id" to cite: the order, or the group that contains it
    ingredient: str
    drug_class: str
    text: str  # the medication as the order names it
    resource: Resource = field(repr=False)
    selected: bool
    concept: dict[str, Any] | None = field(default=None, repr=False)
    group: str | None = None  # "RequestGroup/id" when the order is part of a regimen

    @property
    def contained(self) -> bool:
        return "#" in self.reference

    @cached_property
    def dose(self) -> DraftDose:
        return read_dosage(self.resource)

    @cached_property
    def product_text(self) -> str:
        """Everything the order says about the product and route, lower case (subcutaneous forms)."""
        words = [self.text, *(d for _, _, d in codings(self.concept)), self.dose.route]
        return " ".join(words).lower()

    def fact_text(self) -> str:
        dose = self.dose.words()
        where = f" (in {self.group})" if self.group else ""
        return f"Draft order: {self.text}{', ' + dose if dose else ''}{where}"


@dataclass
class DraftReading:
    orders: list[DraftOrder] = field(default_factory=list)
    unidentified: list[str] = field(default_factory=list)  # drafts naming a drug that could not be identified


def _index(entries: list[Any]) -> dict[str, Resource]:
    """Bundled resources by "Type/id" and by fullUrl, for references inside the draft Bundle."""
    found: dict[str, Resource] = {}
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            continue
        if isinstance(res.get("id"), str) and res["id"]:
            found[f"{res['resourceType']}/{res['id']}"] = res
        if isinstance(entry.get("fullUrl"), str) and entry["fullUrl"]:
            found[entry["fullUrl"]] = res
    return found


def _resolve(ref: Any, holders: list[Resource], bundle: dict[str, Resource]) -> Resource | None:
    """A Reference to a contained resource of any holder (``#id``), or to a bundled one."""
    value = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("#"):
        for holder in holders:
            for res in as_list(holder.get("contained")):
                if isinstance(res, dict) and res.get("id") == value[1:]:
                    return res
        return None
    if value in bundle:
        return bundle[value]
    parts = value.split("/_history/")[0].rstrip("/").split("/")
    return bundle.get("/".join(parts[-2:])) if len(parts) >= 2 else None


def _medication(order: Resource, holders: list[Resource], bundle: dict[str, Resource]) -> tuple[dict[str, Any] | None, bool]:
    """(medication concept, whether the order names a medication at all)."""
    concept = order.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        named = bool(concept_text(concept) or next(codings(concept), None))
        return (concept if named else None), named
    target = order.get("medicationReference")
    if not isinstance(target, dict) or not target:
        return None, False
    medication = _resolve(target, [order, *holders], bundle)
    if isinstance(medication, dict):
        code = medication.get("code")
        if isinstance(code, dict) and (concept_text(code) or next(codings(code), None)):
            return code, True
        # A Medication with no code of its own: its first ingredient that names a drug.
        for item in as_list(medication.get("ingredient")):
            item_concept = item.get("itemCodeableConcept") if isinstance(item, dict) else None
            if isinstance(item_concept, dict) and (concept_text(item_concept) or next(codings(item_concept), None)):
                return item_concept, True
    display = target.get("display")
    if isinstance(display, str) and display.strip():
        return {"text": display.strip()}, True
    return None, True  # a reference that could not be resolved still names a medication


def _identify(concept: dict[str, Any] | None) -> tuple[str | None, str | None]:
    ingredient, _, _ = identify(concept)
    return ingredient, (drug_class(ingredient) if ingredient else None)


def _group_members(group: Resource) -> list[Any]:
    """Every action[].resource reference of a RequestGroup, nested actions included."""
    refs, stack = [], list(as_list(group.get("action")))
    while stack:
        action = stack.pop(0)
        if not isinstance(action, dict):
            continue
        if isinstance(action.get("resource"), dict):
            refs.append(action["resource"])
        stack.extend(as_list(action.get("action")))
    return refs


def read_drafts(entries: list[Any], selections: list[str] | None) -> DraftReading:
    """The medication orders among the drafts; ``selections`` (order-select) marks which are being chosen."""
    entries = [e for e in as_list(entries) if isinstance(e, dict)]
    bundle = _index(entries)
    chosen = set(selections or [])
    reading = DraftReading()
    seen: set[int] = set()

    def add(order: Resource, reference: str, evidence: str, holders: list[Resource], group: str | None) -> None:
        if id(order) in seen:
            return
        seen.add(id(order))
        concept, named = _medication(order, holders, bundle)
        if not named:
            return  # no medication chosen yet: nothing to check, nothing to report
        ingredient, klass = _identify(concept)
        if ingredient is None or klass is None:
            reading.unidentified.append(evidence if reference == evidence else f"{evidence} ({reference.split('#')[-1]})")
            return
        own = f"{MEDICATION_ORDER}/{order.get('id')}"
        selected = not chosen or bool({reference, evidence, own} & chosen) or (group is not None and group in chosen)
        reading.orders.append(DraftOrder(reference, evidence, ingredient, klass, concept_text(concept) or ingredient, order,
                                         selected, concept, group))

    for entry in entries:
        res = entry.get("resource")
        if not isinstance(res, dict):
            continue
        rtype = res.get("resourceType")
        if rtype == GROUP:
            group_ref = reference_of(res)
            for member_ref in _group_members(res):
                member = _resolve(member_ref, [res], bundle)
                if member is None:
                    if isinstance(member_ref.get("reference"), str) and member_ref["reference"].startswith(MEDICATION_ORDER):
                        reading.unidentified.append(f"{group_ref} ({member_ref['reference']}: not in the draft orders)")
                    continue
                if member.get("resourceType") != MEDICATION_ORDER:
                    continue
                value = member_ref.get("reference", "")
                contained = value.startswith("#")
                ref = f"{group_ref}{value}" if contained else reference_of(member)
                add(member, ref, group_ref if contained else ref, [res] if contained else [], group_ref)
        elif rtype == MEDICATION_ORDER:
            ref = reference_of(res)
            add(res, ref, ref, [], None)
    return reading


# -- dose and schedule ------------------------------------------------------------------------

_MASS_UNITS = {"mg", "mg/kg", "mg/m2"}


def _unit(quantity: dict[str, Any]) -> str | None:
    """The dose unit: mg, mg/kg or mg/m2 normalised (UCUM annotations such as {body weight} dropped), else as sent."""
    for key in ("code", "unit"):
        value = quantity.get(key)
        if isinstance(value, str) and value.strip():
            unit = re.sub(r"\{[^}]*\}", "", value).strip().replace("²", "2")
            return unit.lower() if unit.lower() in _MASS_UNITS else (unit or None)
    return None


def _number(word: str) -> float:
    return float(_WORD_NUMBERS[word.lower()]) if word.lower() in _WORD_NUMBERS else float(word)


def schedule_from_text(text: str) -> float | None:
    """Weeks between doses from free text ("every 3 weeks", "q3w", "3-weekly", "every 21 days", "weekly")."""
    match = _EVERY.search(text)
    if match:
        n = _number(match.group(1))
        return n if match.group(2).lower().startswith(("week", "wk")) else n / 7
    match = _Q.search(text)
    if match:
        n = float(match.group(1))
        return n / 7 if match.group(2).lower().startswith("d") else n
    match = _N_WEEKLY.search(text)
    if match:
        return _number(match.group(1))
    if _WEEKLY.search(text):
        return 1.0
    return None


def _timing_weeks(timing: Any) -> float | None:
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict):
        return None
    period, unit = repeat.get("period"), repeat.get("periodUnit")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or period <= 0 or not isinstance(unit, str) \
            or unit not in _PERIOD_WEEKS:
        return None
    frequency = repeat.get("frequency", 1)
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
        frequency = 1
    return period * _PERIOD_WEEKS[unit] / frequency


def read_dosage(order: Resource) -> DraftDose:
    """The first dosage instruction's dose and schedule; text fills what the structure lacks."""
    for dosage in as_list(order.get("dosageInstruction")):
        if not isinstance(dosage, dict):
            continue
        texts = [dosage[k] for k in ("text", "patientInstruction") if isinstance(dosage.get(k), str)]
        timing = dosage.get("timing")
        if isinstance(timing, dict) and isinstance(timing.get("code"), dict):
            texts.append(concept_text(timing["code"]))
        route = " ".join([concept_text(dosage.get("route")), *texts]).lower()
        amount = unit = dose_basis = None
        for rate in as_list(dosage.get("doseAndRate")):
            quantity = rate.get("doseQuantity") if isinstance(rate, dict) else None
            value = quantity.get("value") if isinstance(quantity, dict) else None
            if isinstance(quantity, dict) and isinstance(value, (int, float)) and not isinstance(value, bool):
                amount, unit, dose_basis = float(value), _unit(quantity), "doseAndRate"
                break
        text = " ".join(texts)
        if amount is None:
            match = _DOSE_TEXT.search(text)
            if match:
                amount, unit, dose_basis = float(match.group(1)), match.group(2).lower().replace("²", "2"), "text"
        weeks, schedule_basis = _timing_weeks(timing), "timing"
        if weeks is None:
            weeks, schedule_basis = schedule_from_text(text), "text"
        return DraftDose(amount, unit, dose_basis, weeks, schedule_basis if weeks is not None else None, route)
    return DraftDose(None, None, None, None, None, "")
