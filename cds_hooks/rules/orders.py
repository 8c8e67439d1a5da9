"""order-select and order-sign rules: the draft medication orders against the patient's picture.

Draft orders are read leniently (the CDS Hooks sandbox sends R4-invalid drafts, and the first
order-select call may carry no medication at all): an order whose drug cannot be identified is
named in the data-incomplete card instead of failing the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from mappings.fhir import as_list, concept_text, reference_of
from mappings.picture import ClinicalPicture
from mappings.treatments import identify, medication_concept
from mappings.codes import drug_class

from ..cards import Draft, Fact, Suggestion
from ..describe import marker_fact, when
from ..knowledge import Knowledge
from .common import service_request
from .safety import ENDOCRINE_CLASSES, HER2_CLASSES, contradicts

CYTOTOXIC = {"anthracycline", "taxane", "platinum", "antimetabolite", "other-chemotherapy"}
LVEF_MAX_AGE_DAYS = 92  # "no LVEF in the last 3 months"
LVEF_LOW = 50.0


@dataclass
class DraftOrder:
    reference: str
    ingredient: str
    drug_class: str
    text: str
    resource: dict[str, Any]
    selected: bool


def read_drafts(entries: list[dict[str, Any]], selections: list[str] | None) -> tuple[list[DraftOrder], list[str]]:
    """Identified medication drafts, and references of drafts whose drug could not be identified."""
    orders, unknown = [], []
    chosen = set(selections or [])
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest":
            continue
        ref = reference_of(resource)
        concept = medication_concept(resource, {})
        ingredient, _, _ = identify(concept)
        klass = drug_class(ingredient) if ingredient else None
        if ingredient is None or klass is None:
            unknown.append(ref)
            continue
        orders.append(DraftOrder(ref, ingredient, klass, concept_text(concept) or ingredient, resource,
                                 selected=not chosen or ref in chosen))
    return orders, unknown


def _dose_mg(resource: dict[str, Any]) -> tuple[float | None, str | None, str]:
    """(dose, unit, route-and-schedule text) of the first dosage instruction."""
    for dosage in as_list(resource.get("dosageInstruction")):
        if not isinstance(dosage, dict):
            continue
        route = concept_text(dosage.get("route")) if isinstance(dosage.get("route"), dict) else ""
        text = " ".join(filter(None, [route, dosage.get("text") if isinstance(dosage.get("text"), str) else ""]))
        repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage.get("timing"), dict) else {}
        period = repeat.get("period") if isinstance(repeat, dict) else None
        unit = repeat.get("periodUnit") if isinstance(repeat, dict) else None
        if isinstance(period, (int, float)) and unit in ("wk", "d"):
            text += f" every {period:g} {'week' if unit == 'wk' else 'day'}(s)"
        for dr in as_list(dosage.get("doseAndRate")):
            q = dr.get("doseQuantity") if isinstance(dr, dict) else None
            if isinstance(q, dict) and isinstance(q.get("value"), (int, float)):
                unit = next((u for u in (q.get("code"), q.get("unit")) if isinstance(u, str) and u), "")
                return float(q["value"]), unit, text
        return None, None, text
    return None, None, ""


def _period_weeks(resource: dict[str, Any]) -> float | None:
    for dosage in as_list(resource.get("dosageInstruction")):
        repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage, dict) and isinstance(dosage.get("timing"), dict) else {}
        if not isinstance(repeat, dict):
            continue
        period, unit = repeat.get("period"), repeat.get("periodUnit")
        if isinstance(period, (int, float)) and isinstance(unit, str):
            return {"wk": period, "d": period / 7}.get(unit)
    return None


def _delete(order: DraftOrder) -> Suggestion:
    label = f"Remove the draft {order.ingredient} order"
    return Suggestion(label, [{"type": "delete", "description": label, "resourceId": order.reference}])


def cardiac_monitoring(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    her2_orders = [o for o in orders if o.selected and o.drug_class in HER2_CLASSES]
    if not her2_orders:
        return []
    last = pic.latest(pic.lvef)
    recent = last is not None and last.date is not None and (today - last.date) <= timedelta(days=LVEF_MAX_AGE_DAYS)
    low = last is not None and isinstance(last.value, (int, float)) and last.value < LVEF_LOW
    if recent and not low:
        return []
    names = ", ".join(sorted({o.ingredient for o in her2_orders}))
    if last is None:
        fact, summary = Fact("No LVEF result recorded"), f"{names.capitalize()} ordered with no LVEF on record: assess LVEF first"
    elif low:
        fact = Fact(f"Last LVEF {last.value:g}% on {when(last.date)} (below {LVEF_LOW:g}%)", [last.reference])
        summary = f"{names.capitalize()} ordered with last LVEF {last.value:g}% (<{LVEF_LOW:g}%): reassess cardiac function"
    else:
        fact = Fact(f"Last LVEF {last.value:g}% on {when(last.date)}, more than 3 months ago", [last.reference])
        summary = f"{names.capitalize()} ordered; last LVEF is older than 3 months: repeat before treatment"
    rule = k.rule("order-cardiac-monitoring")
    sr = service_request(rule["service_request_text"], pic.patient, [])
    return [Draft("order-cardiac-monitoring", summary, [Fact(f"Draft order: {o.text}", [o.reference]) for o in her2_orders] + [fact],
                  rule["guidance"], [Suggestion("Order an echocardiogram (LVEF)", [{"type": "create", "description": "Order an echocardiogram (LVEF)", "resource": sr}])])]


def anthracycline_her2(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    active = {t.ingredient: t for t in pic.treatments if t.active}
    anthra = [o for o in orders if o.drug_class == "anthracycline"]
    antibody = [o for o in orders if o.drug_class == "anti-her2-antibody"]
    active_anthra = [t for t in active.values() if t.drug_class == "anthracycline"]
    active_antibody = [t for t in active.values() if t.drug_class == "anti-her2-antibody"]
    if not ((anthra and (antibody or active_antibody)) or (antibody and active_anthra)):
        return []
    facts = [Fact(f"Draft order: {o.text}", [o.reference]) for o in anthra + antibody]
    facts += [Fact(f"Active: {t.ingredient} since {when(t.start)}", t.evidence[:2]) for t in active_anthra + active_antibody]
    targets = [o for o in anthra if o.selected] or [o for o in antibody if o.selected] or anthra or antibody
    names = " + ".join(sorted({o.ingredient for o in anthra} | {t.ingredient for t in active_anthra})) or "anthracycline"
    partner = " + ".join(sorted({o.ingredient for o in antibody} | {t.ingredient for t in active_antibody}))
    return [Draft("order-anthracycline-her2", f"{names.capitalize()} with {partner}: concurrent anthracycline and anti-HER2 antibody raises heart-failure risk",
                  facts, k.rule("order-anthracycline-her2")["guidance"], [_delete(o) for o in targets[:2]], key="|".join(o.reference for o in targets))]


def receptor_mismatch(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    out = []
    for o in orders:
        if not o.selected or not contradicts([o.drug_class], pic, o.ingredient):
            continue
        if o.drug_class in ENDOCRINE_CLASSES:
            why, facts = "HR-negative disease", [marker_fact(pic.er), marker_fact(pic.pr)]
        else:
            why, facts = f"HER2-negative disease ({pic.her2.category if pic.her2.category != 'unknown' else 'IHC score not recorded'})", [marker_fact(pic.her2)]
        out.append(Draft("order-receptor-mismatch", f"{o.ingredient.capitalize()} ordered for {why}: receptor status does not support it",
                         [Fact(f"Draft order: {o.text}", [o.reference]), *facts], k.rule("order-receptor-mismatch")["guidance"],
                         [_delete(o)], key=o.reference))
    return out


def trastuzumab_dose(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-trastuzumab-dose")
    out = []
    for o in orders:
        if not o.selected or o.ingredient != "trastuzumab":
            continue
        dose, unit, route = _dose_mg(o.resource)
        words = f"{o.text} {route}".lower()
        if "hyaluronidase" in words or "subcutaneous" in words or "hylecta" in words:
            continue  # fixed 600 mg subcutaneous dose: not a mg/kg schedule
        weight = pic.latest(pic.weight)
        if dose is None:
            continue  # an incomplete draft (no dose yet): nothing to check
        if unit and unit.lower() not in ("mg", "mg/kg"):
            continue
        if weight is None or not isinstance(weight.value, (int, float)) or weight.value <= 0:
            out.append(Draft("order-trastuzumab-dose", "Trastuzumab dose cannot be checked: no body weight recorded",
                             [Fact(f"Draft order: {o.text}, {dose:g} {unit}", [o.reference]), Fact("No body weight recorded")],
                             rule["guidance"], key=o.reference))
            continue
        per_kg = dose if unit and unit.lower() == "mg/kg" else dose / float(weight.value)
        weeks = _period_weeks(o.resource)
        allowed = {1: [4, 2], 3: [8, 6]}.get(round(weeks) if weeks else 0, rule["schedules_mg_per_kg"])
        if any(abs(per_kg - s) <= s * rule["tolerance"] for s in allowed):
            continue
        sched = f" every {weeks:g} week(s)" if weeks else ""
        out.append(Draft("order-trastuzumab-dose", f"Trastuzumab {dose:g} mg{sched} is {per_kg:.1f} mg/kg: fits no label schedule",
                         [Fact(f"Draft order: {o.text}, {dose:g} {unit}{sched}", [o.reference]),
                          Fact(f"Body weight {weight.value:g} kg on {when(weight.date)}", [weight.reference])],
                         rule["guidance"], key=o.reference))
    return out


def endocrine_premenopausal(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    ais = [o for o in orders if o.selected and o.drug_class == "aromatase-inhibitor"]
    if not ais or pic.menopause != "premenopausal":
        return []
    if any(o.drug_class == "ovarian-suppression" for o in orders) or "ovarian-suppression" in pic.active_classes():
        return []
    return [Draft("order-endocrine-premenopausal", f"{ais[0].ingredient.capitalize()} ordered for a premenopausal patient without ovarian suppression",
                  [Fact(f"Draft order: {o.text}", [o.reference]) for o in ais]
                  + [Fact("Menopausal status: premenopausal", [pic.menopause_evidence] if pic.menopause_evidence else []),
                     Fact("No active or ordered goserelin, leuprolide or triptorelin")],
                  k.rule("order-endocrine-premenopausal")["guidance"])]


def combination_chemotherapy(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-combination-chemotherapy")
    cytotoxic = {o.ingredient: o for o in orders if o.drug_class in CYTOTOXIC}
    if len(cytotoxic) < 2:
        return []
    partners = set(rule["exceptions_with_classes"])
    if any(o.drug_class in partners for o in orders) or pic.active_classes() & partners:
        return []
    names = " + ".join(sorted(cytotoxic))
    return [Draft("order-combination-chemotherapy", f"Combination chemotherapy ({names}): sequential single agents are preferred outside visceral crisis",
                  [Fact(f"Draft order: {o.text}", [o.reference]) for o in cytotoxic.values()]
                  + [Fact("No record of rapidly progressive visceral disease or visceral crisis in the data read")],
                  rule["guidance"])]


RULES = (
    anthracycline_her2,
    cardiac_monitoring,
    receptor_mismatch,
    trastuzumab_dose,
    endocrine_premenopausal,
    combination_chemotherapy,
)
