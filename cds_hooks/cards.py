"""CDS Hooks 2.0 cards: building them from the knowledge file, and keeping them tidy.

Cards are plain dicts shaped by the spec (no None values, no empty arrays: CDS Hooks forbids
nulls and empty values). Hygiene lives here: summary < 140 characters, ``selectionBehavior``
whenever there are suggestions, stable uuids, no duplicates, critical > warning > info order,
and a maximum count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .knowledge import Knowledge
from .overrides import offered

RULE_SYSTEM = "https://mbc-cds-hooks.example.org/rule-codes"
PICTURE_EXTENSION = "mbc-cds-hooks.clinical-picture"
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
_NAMESPACE = uuid.UUID("5b0f4c1e-7a52-4f7e-9a0e-6f1d2c3b4a59")


@dataclass
class Fact:
    """A patient fact a card rests on, with the FHIR references that gave it."""

    text: str
    evidence: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        refs = ", ".join(f"`{r}`" for r in self.evidence[:6])
        more = f" and {len(self.evidence) - 6} more" if len(self.evidence) > 6 else ""
        return f"- {self.text}" + (f" ({refs}{more})" if refs else "")


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
    """A card before hygiene: rule code, facts, guidance, suggestions."""

    rule: str
    summary: str
    facts: list[Fact]
    guidance: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    indicator: str | None = None  # default from the knowledge file
    extension: dict[str, Any] | None = None
    key: str = ""  # distinguishes two cards of one rule (e.g. two draft orders)


def _clip(text: str, limit: int = 139) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def render(draft: Draft, knowledge: Knowledge, hook_instance: str, action_selection: bool = False) -> dict[str, Any]:
    rule = knowledge.rule(draft.rule)
    source = knowledge.source(rule["source"])
    indicator = draft.indicator or rule["indicator"]
    card_uuid = str(uuid.uuid5(_NAMESPACE, f"{hook_instance}|{draft.rule}|{draft.key}"))
    parts = ["**Patient facts**", *(f.markdown() for f in draft.facts)]
    if draft.guidance:
        parts += ["", "**Guidance**", *(f"- {g}" for g in draft.guidance)]
    cites = [source, *(knowledge.source(s) for s in rule.get("also_cite", []))]
    parts += ["", "**Source**: " + "; ".join(f"{s['citation']}" for s in cites)]
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": _clip(draft.summary),
        "indicator": indicator,
        "detail": "\n".join(parts),
        "source": {
            "label": source["label"],
            "url": source["url"],
            "topic": {"system": RULE_SYSTEM, "code": draft.rule, "display": rule["title"]},
        },
        "links": [{"label": _clip(s["label"], 100), "url": s["url"], "type": "absolute"} for s in cites],
    }
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
    if draft.extension:
        card["extension"] = draft.extension
    return card


def finalise(drafts: list[Draft], knowledge: Knowledge, hook_instance: str, max_cards: int,
             action_selection: bool = False) -> list[dict[str, Any]]:
    """Render, drop duplicates, order by indicator, keep at most ``max_cards``.

    When cards must be dropped, the least urgent go first; mbc-summary and data-incomplete are
    kept because they say what every other card rests on or could not check.
    """
    seen: set[tuple[str, str]] = set()
    cards: list[dict[str, Any]] = []
    for draft in drafts:
        if (draft.rule, draft.key) in seen:
            continue
        seen.add((draft.rule, draft.key))
        cards.append(render(draft, knowledge, hook_instance, action_selection))
    pinned = {"mbc-summary", "data-incomplete"}
    cards.sort(key=lambda c: (INDICATOR_ORDER[c["indicator"]], c["source"]["topic"]["code"] not in pinned))
    if len(cards) > max_cards:
        keep = [c for c in cards if c["source"]["topic"]["code"] in pinned][:max_cards]
        rest = [c for c in cards if c["source"]["topic"]["code"] not in pinned][: max_cards - len(keep)]
        cards = sorted(keep + rest, key=lambda c: (INDICATOR_ORDER[c["indicator"]], c["source"]["topic"]["code"] not in pinned))
    return cards
