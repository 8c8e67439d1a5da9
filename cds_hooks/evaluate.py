"""Picture (+ draft orders) in, cards out. Pure: no network, no clock (``today`` is passed in)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from mappings.picture import ClinicalPicture

from .cards import Draft, Fact, finalise
from .knowledge import Knowledge, knowledge
from .rules import orders as order_rules
from .rules import patient_view


@dataclass(frozen=True)
class Gap:
    """Data that could not be read, and what it would have told the cards."""

    key: str
    reason: str
    feeds: str


def data_incomplete(gaps: list[Gap], pic: ClinicalPicture, unknown_orders: list[str], k: Knowledge) -> list[Draft]:
    facts = [Fact(f"`{g.key}`: {g.reason}. Not checked: {g.feeds}.") for g in gaps]
    unreadable = [w for w in pic.warnings if "could not be read" in w]
    if unreadable:
        facts.append(Fact(f"{len(unreadable)} resource(s) could not be read", [w.split(":")[0] for w in unreadable[:10]]))
    if unknown_orders:
        facts.append(Fact("Draft order(s) whose drug could not be identified were not checked", unknown_orders))
    if not facts:
        return []
    what = ", ".join(sorted({g.key for g in gaps})) or "some resources"
    return [Draft("data-incomplete", f"Some data could not be checked ({what}): cards rest on partial data", facts,
                  k.rule("data-incomplete")["guidance"])]


def evaluate(
    hook: str,
    pic: ClinicalPicture,
    *,
    hook_instance: str,
    today: date,
    max_cards: int = 10,
    gaps: list[Gap] | None = None,
    draft_entries: list[dict[str, Any]] | None = None,
    selections: list[str] | None = None,
    action_selection: bool = False,
) -> list[dict[str, Any]]:
    k = knowledge()
    gaps = gaps or []
    drafts: list[Draft] = []
    unknown_orders: list[str] = []
    if pic.breast_cancer:
        if hook == "patient-view":
            for rule in patient_view.RULES:
                drafts.extend(rule(pic, k, today))
        else:
            orders, unknown_orders = order_rules.read_drafts(draft_entries or [], selections if hook == "order-select" else None)
            for order_rule in order_rules.RULES:
                drafts.extend(order_rule(pic, orders, k, today))
    # A patient with no breast cancer gets no cards, unless the data that would tell (the
    # Conditions) could not be read.
    if pic.breast_cancer or any(g.key == "conditions" for g in gaps):
        drafts.extend(data_incomplete(gaps, pic, unknown_orders if pic.breast_cancer else [], k))
    return finalise(drafts, k, hook_instance, max_cards, action_selection)
