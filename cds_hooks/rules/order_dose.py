"""order-trastuzumab-dose: an intravenous trastuzumab order against the label's two schedules.

The mg/kg dose comes from the order (mg/kg as ordered, or mg over the latest body weight); the
schedule from its timing (or text). A weekly order must be 4 mg/kg (loading) or 2 mg/kg, a
3-weekly one 8 mg/kg (loading) or 6 mg/kg; any other interval is not a label schedule. A loading
dose while trastuzumab was given within the reload window (schedule interval + 1 week) is flagged:
the label reloads only after a missed dose. An order whose schedule cannot be read is checked
against both schedules and named as such; one whose dose cannot be read is listed by
``unchecked`` for the data-incomplete card. Subcutaneous trastuzumab-hyaluronidase is a fixed
600 mg dose, not a mg/kg schedule, and is not checked here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from mappings.exposure import last_dose
from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import when
from ..drafts import DraftOrder, every_words
from ..knowledge import Knowledge
from .order_common import order_fact

RULE = "order-trastuzumab-dose"
SCHEDULE_SLACK_WEEKS = 1 / 7  # a day either way still reads as the weekly or 3-weekly schedule


def _iv_trastuzumab(order: DraftOrder, rule: dict[str, Any]) -> bool:
    return order.selected and order.ingredient == rule["ingredient"] and \
        not any(word in order.product_text for word in rule["subcutaneous_words"])


def _schedule(weeks: float | None, rule: dict[str, Any]) -> int | str | None:
    """The label schedule (weeks) the order's interval matches; "other" for any other interval; None unread."""
    if weeks is None:
        return None
    for every in rule["schedules"]:
        if abs(weeks - every) <= SCHEDULE_SLACK_WEEKS:
            return int(every)
    return "other"


def unchecked(orders: list[DraftOrder], k: Knowledge, hook: str) -> list[Fact]:
    """IV trastuzumab drafts whose dose could not be read in mg or mg/kg (for the data-incomplete card).

    At order-select an order without any dose is still being written and is not listed; at
    order-sign it is."""
    rule = k.rule(RULE)
    out = []
    for o in orders:
        if not _iv_trastuzumab(o, rule):
            continue
        dose = o.dose
        if dose.amount is not None and dose.unit in ("mg", "mg/kg"):
            continue
        if dose.amount is None and hook == "order-select":
            continue
        stated = f" ({dose.amount:g} {dose.unit or 'no unit'})" if dose.amount is not None else ""
        out.append(Fact(f"{o.fact_text()}: no dose in mg or mg/kg could be read{stated}; the trastuzumab dose was not checked",
                        [o.evidence]))
    return out


def trastuzumab_dose(pic: ClinicalPicture, orders: list[DraftOrder], k: Knowledge, today: date) -> list[Draft]:
    rule = k.rule(RULE)
    tolerance = rule["tolerance"]
    out = []
    for o in orders:
        if not _iv_trastuzumab(o, rule):
            continue
        dose = o.dose
        if dose.amount is None or dose.unit not in ("mg", "mg/kg"):
            continue  # listed by unchecked()
        facts = [order_fact(o)]
        weight = pic.latest(pic.weight)
        if dose.unit == "mg":
            if weight is None or not isinstance(weight.value, (int, float)) or weight.value <= 0:
                facts.append(Fact("No body weight on record"))
                out.append(Draft(RULE, f"Trastuzumab {dose.amount:g} mg cannot be checked: no body weight on record",
                                 facts, rule["guidance"], key=o.reference))
                continue
            per_kg = dose.amount / float(weight.value)
            facts.append(Fact(f"Body weight {weight.value:g} kg on {when(weight.date)}: {per_kg:.1f} mg/kg", [weight.reference]))
        else:
            per_kg = dose.amount
        schedule = _schedule(dose.every_weeks, rule)
        schedules = rule["schedules"]
        if schedule is None:
            candidates = [(every, kind) for every, s in schedules.items() for kind, mg in s.items() if _near(per_kg, mg, tolerance)]
        elif schedule == "other":
            candidates = []
        else:
            candidates = [(schedule, kind) for kind, mg in schedules[schedule].items() if _near(per_kg, mg, tolerance)]
        sched_words = every_words(dose.every_weeks) if dose.every_weeks is not None else "schedule not readable"
        problems: list[str] = []
        if not candidates:
            if schedule == "other":
                problems.append(f"{sched_words} is not a label schedule (weekly or every 3 weeks)")
            else:
                problems.append(f"{per_kg:.1f} mg/kg {sched_words} fits no label schedule")
        loading = [every for every, kind in candidates if kind == "loading"]
        if loading and len(loading) == len(candidates):
            window = rule["reload_window_days"][schedule if isinstance(schedule, int) else "unknown"]
            last = last_dose(pic, [rule["ingredient"]], today)
            if last is not None and (today - last.date).days <= window:
                days = (today - last.date).days
                since = f"while trastuzumab is ongoing ({last.basis})" if last.basis.startswith("active") else f"{days} days after the last dose"
                problems.append(f"{per_kg:.1f} mg/kg loading dose {since}; reload only after a gap of over {window // 7} weeks")
                facts.append(Fact(f"Last trastuzumab dose: {last.words()}", [last.reference]))
        if schedule is None:
            fitting = ", ".join(f"{mg:g} mg/kg {every_words(float(every))} ({kind})" for every, kind in candidates
                                for mg in [schedules[every][kind]])
            facts.append(Fact("The order's schedule could not be read from timing or text" +
                              (f": {per_kg:.1f} mg/kg fits only {fitting}" if candidates else "")))
            if not problems:
                problems.append("schedule not readable: confirm it matches the dose")
        if not problems:
            continue
        facts.append(Fact("Found: " + "; ".join(problems)))
        summary = f"Trastuzumab {dose.amount:g} {dose.unit} {sched_words if schedule is not None else ''}".rstrip() + f": {problems[0]}"
        out.append(Draft(RULE, summary, facts, rule["guidance"], key=o.reference))
    return out


def _near(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= target * tolerance
