"""CDS Hooks 2.0 cards: from a rule's draft (facts, guidance, suggestions) to the card dict.

Cards are plain dicts shaped by the spec (no None values, no empty arrays: CDS Hooks forbids
nulls and empty values). One citation per card (``source``), the FHIR references behind the facts
in ``extension["mbc-cds-hooks.evidence"]`` rather than inline, stable uuids. What a clinician sees
at once (how many cards, how long, in which order) is decided in ``economy.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .knowledge import Knowledge
from .overrides import offered

RULE_SYSTEM = "https://mbc-cds-hooks.example.org/rule-codes"
PICTURE_EXTENSION = "mbc-cds-hooks.clinical-picture"
EVIDENCE_EXTENSION = "mbc-cds-hooks.evidence"
RULES_EXTENSION = "mbc-cds-hooks.rules"
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
SUMMARY_LIMIT = 140  # CDS Hooks 2.0: summary "SHALL be less than 140 characters"
_NAMESPACE = uuid.UUID("5b0f4c1e-7a52-4f7e-9a0e-6f1d2c3b4a59")


@dataclass
class Fact:
    """A patient fact a card rests on, with the FHIR references that gave it."""

    text: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Suggestion:
    label: str
    actions: list[dict[str, Any]]
    recommended: bool = True
    # CDS Hooks 3.0 ballot suggestion.actionSelectionBehavior: "all" (the default) = the actions are
    # applied together. Rendered only for a client that declared support (render's action_selection).
    action_selection: str = "all"


@dataclass
class Draft:
    """A card before rendering: rule code, facts, guidance, suggestions.

    ``source`` picks another source of the knowledge file than the rule's own (one rule, two
    grounds: the endocrine and the HER2 branch of a mismatch); ``rules`` lists the rule codes a
    merged card carries; ``links`` are extra links (the viewer's SMART launch), never the citation.
    """

    rule: str
    summary: str
    facts: list[Fact]
    guidance: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    indicator: str | None = None  # default from the knowledge file
    extension: dict[str, Any] | None = None
    key: str = ""  # distinguishes two cards of one rule (e.g. two draft orders)
    source: str | None = None
    rules: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    title: str | None = None  # topic display of a merged card; default the rule's title

    def evidence(self) -> list[str]:
        """Every reference behind the card's facts, once, in the order the facts name them."""
        return list(dict.fromkeys(r for f in self.facts for r in f.evidence))


def clip(text: str, limit: int = SUMMARY_LIMIT - 1) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def detail_lines(draft: Draft) -> list[str]:
    """The detail as lines: facts as a list, then each piece of guidance as its own paragraph."""
    lines = [f"- {f.text}" for f in draft.facts]
    if draft.guidance:
        if lines:
            lines.append("")
        for i, g in enumerate(draft.guidance):
            if i:
                lines.append("")
            lines.append(g)
    return lines


def indicator_of(draft: Draft, knowledge: Knowledge) -> str:
    return draft.indicator or knowledge.rule(draft.rule)["indicator"]


def render(draft: Draft, knowledge: Knowledge, hook_instance: str, lines: list[str] | None = None,
           action_selection: bool = False) -> dict[str, Any]:
    """The card dict; ``lines`` replaces the detail when economy has shortened it; ``action_selection``
    adds each suggestion's ``actionSelectionBehavior`` for a client that declared support (3.0)."""
    rule = knowledge.rule(draft.rule)
    source = knowledge.source(draft.source or rule["source"])
    indicator = indicator_of(draft, knowledge)
    card_uuid = str(uuid.uuid5(_NAMESPACE, f"{hook_instance}|{draft.rule}|{draft.key}"))
    body = "\n".join(detail_lines(draft) if lines is None else lines).strip("\n")
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": clip(draft.summary),
        "indicator": indicator,
        "detail": body,
        "source": {
            "label": source["label"],
            "url": source["url"],
            "topic": {"system": RULE_SYSTEM, "code": draft.rule, "display": draft.title or rule["title"]},
        },
    }
    if not body:
        del card["detail"]
    if draft.links:
        card["links"] = [link for link in draft.links if link.get("url") != source["url"]]
    if draft.suggestions:
        card["selectionBehavior"] = "at-most-one" if len(draft.suggestions) == 1 else "any"
        card["suggestions"] = [
            {
                "label": s.label,
                "uuid": str(uuid.uuid5(_NAMESPACE, f"{card_uuid}|{i}|{s.label}")),
                "isRecommended": s.recommended,
                "actions": s.actions,
                **({"actionSelectionBehavior": s.action_selection} if action_selection else {}),
            }
            for i, s in enumerate(draft.suggestions)
        ]
    if indicator in ("warning", "critical"):
        card["overrideReasons"] = [dict(r) for r in offered()]
    extension: dict[str, Any] = {}
    evidence = draft.evidence()
    if evidence:
        extension[EVIDENCE_EXTENSION] = evidence
    if draft.rules:
        extension[RULES_EXTENSION] = draft.rules
    if draft.extension:
        extension.update(draft.extension)
    if extension:
        card["extension"] = extension
    return card


def rules_of(card: dict[str, Any]) -> list[str]:
    """The rule codes a card carries: its topic, and those of a merged card or the summary's overflow list."""
    code = card["source"]["topic"]["code"]
    listed = (card.get("extension") or {}).get(RULES_EXTENSION) or []
    return list(dict.fromkeys([code, *listed]))


def visible_rules(cards: list[dict[str, Any]]) -> list[str]:
    """Every rule code of an answer, as a test or an EHR's override memory sees them."""
    return list(dict.fromkeys(code for card in cards for code in rules_of(card)))
