"""Picture (+ draft orders) in, cards out. Pure: no network, no clock (``today`` is passed in).

``fire`` runs every rule and returns its drafts in full (what ``explain`` and the viewer show);
``evaluate`` turns them into the cards an EHR shows, within the card economy (economy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from mappings.picture import ClinicalPicture

from . import economy
from .cards import Draft, Fact
from .drafts import read_drafts
from .economy import Limits
from .knowledge import Knowledge, knowledge
from .rules import orders as order_rules
from .rules import patient_view
from .rules.order_dose import unchecked


@dataclass(frozen=True)
class Gap:
    """Data that could not be read, and what it would have told the cards."""

    key: str
    reason: str
    feeds: str


def data_incomplete(gaps: list[Gap], pic: ClinicalPicture, unknown_orders: list[str], k: Knowledge,
                    order_notes: list[Fact] | None = None) -> list[Draft]:
    facts = [Fact(f"`{g.key}`: {g.reason}. Not checked: {g.feeds}.") for g in gaps]
    unreadable = [w.split(":")[0] for w in pic.warnings if "could not be read" in w]
    if unreadable:
        what = "One resource" if len(unreadable) == 1 else f"{len(unreadable)} resources"
        facts.append(Fact(f"{what} could not be read and were left out", unreadable[:10]))
    if unknown_orders:
        facts.append(Fact("A draft order whose drug could not be identified was not checked", unknown_orders))
    facts.extend(order_notes or [])
    if not facts:
        return []
    parts = sorted({g.key for g in gaps}) + (["unreadable resources"] if unreadable else []) + \
        (["unidentified draft orders"] if unknown_orders else []) + (["draft order doses"] if order_notes else [])
    return [Draft("data-incomplete", f"Not checked: {', '.join(parts)}; cards rest on partial data", facts,
                  k.rule("data-incomplete")["guidance"])]


def fire(
    hook: str,
    pic: ClinicalPicture,
    *,
    today: date,
    gaps: list[Gap] | None = None,
    draft_entries: list[dict[str, Any]] | None = None,
    selections: list[str] | None = None,
) -> list[Draft]:
    """Every rule's draft, in full: nothing trimmed, nothing merged."""
    k = knowledge()
    gaps = gaps or []
    drafts: list[Draft] = []
    unknown_orders: list[str] = []
    order_notes: list[Fact] = []
    if pic.breast_cancer:
        if hook == "patient-view":
            for rule in patient_view.RULES:
                drafts.extend(rule(pic, k, today))
        else:
            reading = read_drafts(draft_entries or [], selections if hook == "order-select" else None)
            unknown_orders = reading.unidentified
            order_notes = unchecked(reading.orders, k, hook)
            for order_rule in order_rules.RULES:
                drafts.extend(order_rule(pic, reading.orders, k, today))
    # A patient with no breast cancer gets no cards, unless the data that would tell (the
    # Conditions) could not be read.
    if pic.breast_cancer or any(g.key == "conditions" for g in gaps):
        drafts.extend(data_incomplete(gaps, pic, unknown_orders if pic.breast_cancer else [], k, order_notes))
    return drafts


def findings(drafts: list[Draft]) -> list[dict[str, Any]]:
    """Every draft in full, for ``explain`` and the viewer: each fact with the references it rests on."""
    k = knowledge()
    out = []
    for d in drafts:
        rule = k.rule(d.rule)
        source = k.source(d.source or rule["source"])
        out.append({
            "rule": d.rule, "title": rule["title"], "indicator": d.indicator or rule["indicator"], "summary": d.summary,
            "facts": [{"text": f.text, "evidence": f.evidence} for f in d.facts], "guidance": d.guidance,
            "suggestions": [s.label for s in d.suggestions], "source": {"label": source["label"], "url": source["url"]},
        })
    return out


def each_card(hook: str, pic: ClinicalPicture, *, today: date, hook_instance: str = "each-card", **kwargs: Any) -> list[dict[str, Any]]:
    """Every draft rendered as its own card, nothing merged or shortened: a rule's card as it would
    read on its own (rule-level tests, the viewer's list of findings)."""
    from .cards import render

    return [render(d, knowledge(), hook_instance) for d in fire(hook, pic, today=today, **kwargs)]


def evaluate(
    hook: str,
    pic: ClinicalPicture,
    *,
    hook_instance: str,
    today: date,
    limits: Limits | None = None,
    gaps: list[Gap] | None = None,
    draft_entries: list[dict[str, Any]] | None = None,
    selections: list[str] | None = None,
    viewer_url: str | None = None,
    action_selection: bool = False,
) -> list[dict[str, Any]]:
    """``viewer_url``: the timeline viewer's SMART launch URL, linked from the summary card when given;
    ``action_selection``: the client declared support for ``suggestion.actionSelectionBehavior`` (3.0)."""
    drafts = fire(hook, pic, today=today, gaps=gaps, draft_entries=draft_entries, selections=selections)
    arrange = economy.patient_view if hook == "patient-view" else economy.order_hook
    cards = arrange(drafts, knowledge(), hook_instance, limits or Limits(), action_selection)
    if viewer_url:
        add_viewer_link(cards, viewer_url)
    return cards


VIEWER_LINK_LABEL = "MBC timeline: receptors, sites, lines of therapy, LVEF"


def add_viewer_link(cards: list[dict[str, Any]], url: str) -> None:
    """A ``smart`` link (CDS Hooks 2.0 Link: the EHR launches it with ``iss`` and ``launch``) on the summary card."""
    for card in cards:
        if card["source"]["topic"]["code"] == "mbc-summary":
            card.setdefault("links", []).append({"label": VIEWER_LINK_LABEL, "url": url, "type": "smart"})
