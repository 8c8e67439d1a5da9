"""Cardiac safety of anti-HER2 antibodies and ADCs: LVEF monitoring, and anthracyclines with or
after trastuzumab (trastuzumab label). The LVEF words are shared with the summary card, so the
patient view and the order check show the same fall from the same pre-treatment value."""

from __future__ import annotations

from datetime import date
from typing import Any

from mappings.cardiac import CARDIOTOXIC_HER2_CLASSES, LvefCourse, lvef_course
from mappings.exposure import last_dose
from mappings.picture import ClinicalPicture
from mappings.suppression import add_interval

from ..cards import Draft, Fact, Suggestion
from ..describe import months_between, when
from ..drafts import DraftOrder
from ..knowledge import Knowledge
from .common import service_request
from .order_common import capital, delete, names, order_fact


def _value(m: Any) -> str:
    return f"{m.value:g}% on {when(m.date)}"


def lvef_fact(course: LvefCourse) -> Fact:
    """The last LVEF, the pre-treatment value and the fall, with the Observations behind them."""
    last, base, first = course.last, course.baseline, course.first_dose
    if last is None:
        return Fact("No LVEF on record")
    if first is None:
        return Fact(f"Last LVEF {_value(last)}", [last.reference])
    first_dose = f"first anti-HER2 antibody/ADC dose {when(first.start)}"
    if base is None:
        return Fact(f"Last LVEF {_value(last)}; no LVEF before the {first_dose}: the fall cannot be measured",
                    [last.reference, first.reference])
    if course.fall is None:
        return Fact(f"Last LVEF {_value(last)}, before the {first_dose}; none since", [last.reference])
    fall = course.fall
    change = f"fall of {fall:g} points" if fall > 0 else ("no fall" if fall == 0 else f"rise of {-fall:g} points")
    return Fact(f"LVEF {_value(last)}; pre-treatment {_value(base)} ({first_dose}): {change}", [last.reference, base.reference])


def lvef_findings(course: LvefCourse, rule: dict[str, Any], today: date) -> list[str]:
    """Which of the label's criteria the LVEF course meets (empty: none)."""
    last = course.last
    if last is None:
        return ["no LVEF on record"]
    found = []
    value, fall = float(last.value), course.fall  # type: ignore[arg-type]
    if fall is not None and fall >= rule["fall_points"]:
        found.append(f"fall of {fall:g} points from the pre-treatment value (>= {rule['fall_points']})")
    if value < rule["lvef_low"]:
        low = f"last LVEF {value:g}% below {rule['lvef_low']}%"
        if fall is not None and fall >= rule["fall_points_below_low"]:
            low += f" after a fall of {fall:g} points (>= {rule['fall_points_below_low']})"
        found.append(low)
    if last.date is None or (today - last.date).days > rule["lvef_max_age_days"]:
        found.append(f"last LVEF {when(last.date)}, more than 3 months ago")
    return found


def on_anti_her2(pic: ClinicalPicture) -> bool:
    return any(t.active and t.drug_class in CARDIOTOXIC_HER2_CLASSES for t in pic.treatments)


def meets_withhold_criterion(course: LvefCourse, rule: dict[str, Any]) -> bool:
    """The label's criterion to withhold: a fall of >= 16 points, or >= 10 points to below the lower limit."""
    fall = course.fall
    if fall is None or course.last is None:
        return False
    return fall >= rule["fall_points"] or (float(course.last.value) < rule["lvef_low"]  # type: ignore[arg-type]
                                           and fall >= rule["fall_points_below_low"])


def summary_lvef_fact(pic: ClinicalPicture, k: Knowledge) -> Fact | None:
    """For the patient view of a patient on an anti-HER2 antibody or ADC: the LVEF course in one line."""
    if not on_anti_her2(pic):
        return None
    course = lvef_course(pic)
    if course.last is None:
        return Fact("On anti-HER2 therapy with no LVEF on record")
    fact = lvef_fact(course)
    if meets_withhold_criterion(course, k.rule("order-cardiac-monitoring")):
        fact = Fact(f"{fact.text} (meets the label's criterion to withhold)", fact.evidence)
    return fact


def cardiac_monitoring(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    her2_orders = [o for o in orders if o.selected and o.drug_class in CARDIOTOXIC_HER2_CLASSES]
    if not her2_orders:
        return []
    rule = k.rule("order-cardiac-monitoring")
    course = lvef_course(pic)
    found = lvef_findings(course, rule, today)
    if not found:
        return []
    drugs = capital(names(her2_orders))
    last = course.last
    if last is None:
        summary = f"{drugs} ordered with no LVEF on record: assess LVEF before the first dose"
    elif meets_withhold_criterion(course, rule):
        summary = f"{drugs} ordered with LVEF {last.value:g}%, {course.fall:g} points below the pre-treatment value: the label says withhold"
    elif float(last.value) < rule["lvef_low"]:  # type: ignore[arg-type]
        summary = f"{drugs} ordered with LVEF {last.value:g}% (below {rule['lvef_low']}%): reassess cardiac function before this dose"
    else:
        summary = f"{drugs} ordered; last LVEF is older than 3 months: repeat it before this dose"
    facts = [order_fact(o) for o in her2_orders] + [lvef_fact(course), Fact("Criteria met: " + "; ".join(found))]
    sr = service_request(rule["service_request_text"], pic.patient, [course.last.reference] if course.last else [])
    label = "Order an echocardiogram (LVEF)"
    return [Draft("order-cardiac-monitoring", summary, facts, rule["guidance"],
                  [Suggestion(label, [{"type": "create", "description": label, "resource": sr}])],
                  key="|".join(o.reference for o in her2_orders))]


def anthracycline_her2(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule("order-anthracycline-her2")
    anthra = [o for o in orders if o.drug_class == "anthracycline"]
    antibody = [o for o in orders if o.drug_class == "anti-her2-antibody"]
    active_anthra = [t for t in pic.treatments if t.active and t.drug_class == "anthracycline"]
    active_antibody = [t for t in pic.treatments if t.active and t.drug_class == "anti-her2-antibody"]
    concurrent = bool((anthra and (antibody or active_antibody)) or (antibody and active_anthra))
    facts = [order_fact(o) for o in anthra + antibody]
    facts += [Fact(f"Active: {t.ingredient} since {when(t.start)}", t.evidence[:2]) for t in active_anthra + active_antibody]
    targets = [o for o in anthra if o.selected] or [o for o in antibody if o.selected] or anthra or antibody
    if concurrent:
        drugs = " + ".join(sorted({o.ingredient for o in anthra} | {t.ingredient for t in active_anthra})) or "anthracycline"
        partner = " + ".join(sorted({o.ingredient for o in antibody} | {t.ingredient for t in active_antibody}))
        summary = f"{capital(drugs)} with {partner}: concurrent anthracycline and anti-HER2 antibody raises heart-failure risk"
    else:
        if not anthra:
            return []
        last = last_dose(pic, rule["window_ingredients"], today)
        if last is None or today > add_interval(last.date, rule["window_months"], "mo"):
            return []
        months = months_between(last.date, today)
        ago = f"{months} month{'s' if months != 1 else ''}" if months >= 1 else f"{(today - last.date).days} days"
        summary = f"{capital(names(anthra))} ordered {ago} after the last trastuzumab dose ({last.date.isoformat()}): within the {rule['window_months']}-month wash-out"
        facts.append(Fact(f"Last trastuzumab dose: {last.words()}", [last.reference]))
    return [Draft("order-anthracycline-her2", summary, facts, rule["guidance"], delete(targets[:2]),
                  key="|".join(o.reference for o in targets))]
