"""Card economy: what a clinician sees when the chart opens, read in seconds.

The contract (card-contract.md, "Card economy") limits a patient-view answer to the summary plus
three cards, 900 characters of detail a card and 2,500 an answer, with no line of detail shown
twice. This module decides, from every draft the rules produced:
- merges the test gaps (biomarkers, HER2 IHC score, reflex ISH) into one "Tests to consider" card;
- orders the cards by the documented priority (knowledge.yaml ``card_economy``: safety, then
  time-sensitive testing, then treatment) and keeps the first three after the summary;
- lists what did not fit in the summary, one line each, with its rule codes in the summary's
  ``mbc-cds-hooks.rules`` extension, so every rule that fired stays visible to a machine;
- drops detail lines an earlier card already shows (receptor and site facts live in the summary);
- shortens a card that is still too long (guidance first, then facts), saying so in its last line.
Nothing is lost: ``explain`` and the viewer show every draft in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .cards import INDICATOR_ORDER, Draft, Fact, detail_lines, indicator_of, render
from .knowledge import Knowledge

SUMMARY = "mbc-summary"
MORE = "Further detail is in the clinical picture (explain, viewer)."
ALSO = "- Also: "


@dataclass(frozen=True)
class Limits:
    max_cards: int = 4  # patient-view: the summary and three others
    max_card_chars: int = 900
    max_answer_chars: int = 2500


def _unique(drafts: list[Draft]) -> list[Draft]:
    seen: set[tuple[str, str]] = set()
    out = []
    for d in drafts:
        if (d.rule, d.key) not in seen:
            seen.add((d.rule, d.key))
            out.append(d)
    return out


def _rank(k: Knowledge, rule: str) -> int:
    order = k.economy["priority"]
    return order.index(rule) if rule in order else len(order)


def merge_tests(tests: list[Draft], k: Knowledge) -> Draft:
    """One card for every test the picture lacks: one suggestion per test, every rule code kept."""
    tests = sorted(tests, key=lambda d: _rank(k, d.rule))
    spec = k.economy["tests_card"]
    names = [k.rule(d.rule).get("test_short", d.rule) for d in tests]
    facts: list[Fact] = []
    for d in tests:
        facts.extend(d.facts)
    indicator = min((indicator_of(d, k) for d in tests), key=lambda i: INDICATOR_ORDER[i])
    return Draft(
        rule=tests[0].rule,
        summary=f"{spec['title']}: {', '.join(names)}",
        facts=facts,
        guidance=[g for d in tests for g in d.guidance],
        suggestions=[s for d in tests for s in d.suggestions],
        indicator=indicator,
        key="tests",
        source=tests[0].source,
        rules=[d.rule for d in tests],
        title=spec["title"],
    )


def _fit(lines: list[str], limit: int) -> list[str]:
    """At most ``limit`` characters: guidance paragraphs go first, then facts (the summary's "Also"
    lines, which stand for whole cards, last), and the card says where the rest is."""
    def size(ls: list[str]) -> int:
        return len("\n".join(ls))

    if size(lines) <= limit:
        return lines
    out = list(lines)
    while out and size(out + ["", MORE]) > limit:
        droppable = [i for i, line in enumerate(out) if line and not line.startswith(ALSO)]
        i = droppable[-1] if droppable else len(out) - 1
        del out[i]
        while out and not out[-1]:
            out.pop()
    return out + (["", MORE] if out else [MORE])


def _shown_lines(draft: Draft, seen: set[str], limit: int) -> list[str]:
    """The draft's detail without lines an earlier card shows, blank runs collapsed, within ``limit``."""
    out: list[str] = []
    for line in detail_lines(draft):
        if line and (line in seen or line in out):  # shown by an earlier card, or by this one (a merged card's parts)
            continue
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    out = _fit(out, limit)
    seen.update(line for line in out if line and line != MORE)
    return out


def _with_overflow(summary: Draft, overflow: list[Draft], k: Knowledge) -> Draft:
    if not overflow:
        return summary
    extra = [Fact(f"{ALSO[2:]}{d.summary}", d.evidence()) for d in overflow]
    codes = [c for d in overflow for c in (d.rules or [d.rule])]
    # Machine-readable extensions of the cards that did not fit (the therapy options) travel with
    # the summary, which lists those cards: nothing a system reads is lost with the card.
    extension = dict(summary.extension or {})
    for d in overflow:
        for key, value in (d.extension or {}).items():
            extension.setdefault(key, value)
    return replace(summary, facts=summary.facts + extra, rules=[SUMMARY, *codes], extension=extension)


def _render_all(drafts: list[Draft], k: Knowledge, hook_instance: str, limits: Limits,
                action_selection: bool) -> list[dict[str, Any]]:
    seen: set[str] = set()
    return [render(d, k, hook_instance, _shown_lines(d, seen, limits.max_card_chars), action_selection) for d in drafts]


def _size(cards: list[dict[str, Any]]) -> int:
    return sum(len(c.get("detail", "")) for c in cards)


def patient_view(drafts: list[Draft], k: Knowledge, hook_instance: str, limits: Limits,
                 action_selection: bool = False) -> list[dict[str, Any]]:
    drafts = _unique(drafts)
    tests_rules = set(k.economy["tests_card"]["rules"])
    tests = [d for d in drafts if d.rule in tests_rules]
    others = [d for d in drafts if d.rule not in tests_rules and d.rule != SUMMARY]
    if len(tests) > 1:
        others.append(merge_tests(tests, k))
    else:
        others.extend(tests)
    others.sort(key=lambda d: (_rank(k, d.rule), d.key))
    summary = next((d for d in drafts if d.rule == SUMMARY), None)
    room = limits.max_cards - (1 if summary else 0)
    shown, overflow = others[:max(room, 0)], others[max(room, 0):]
    while True:
        head = [_with_overflow(summary, overflow, k)] if summary else []
        cards = _render_all(head + shown, k, hook_instance, limits, action_selection)
        if _size(cards) <= limits.max_answer_chars or not shown or not summary:
            return cards
        overflow.insert(0, shown.pop())  # the least important card shown moves into the summary's list


def order_hook(drafts: list[Draft], k: Knowledge, hook_instance: str, limits: Limits,
               action_selection: bool = False) -> list[dict[str, Any]]:
    """Order hooks: every safety card is shown (one per draft order and rule), most urgent first.

    No card is dropped for length: when the answer is too long, the least urgent cards lose their
    guidance first (each says where the rest is), then their later facts.
    """
    drafts = _unique(drafts)
    drafts.sort(key=lambda d: (INDICATOR_ORDER[indicator_of(d, k)], _rank(k, d.rule), d.key))
    seen: set[str] = set()
    shown = [_shown_lines(d, seen, limits.max_card_chars) for d in drafts]
    total = sum(len("\n".join(lines)) for lines in shown)
    for i in reversed(range(len(shown))):
        if total <= limits.max_answer_chars:
            break
        lines = shown[i]
        short = _fit(lines, max(len(MORE), len("\n".join(lines)) - (total - limits.max_answer_chars)))
        total -= len("\n".join(lines)) - len("\n".join(short))
        shown[i] = short
    return [render(d, k, hook_instance, lines, action_selection) for d, lines in zip(drafts, shown)]


_INLINE_REFERENCE = re.compile(r"`[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}`")
_YEAR = re.compile(r"\b(19|20)\d{2}\b")


def violations(cards: list[dict[str, Any]], hook: str, limits: Limits) -> list[str]:
    """Where an answer breaks the card economy of the contract; empty when it keeps to it."""
    out: list[str] = []
    if hook == "patient-view" and len(cards) > limits.max_cards:
        out.append(f"{len(cards)} cards, more than {limits.max_cards}")
    total = sum(len(c.get("detail", "")) for c in cards)
    if total > limits.max_answer_chars:
        out.append(f"{total} characters of detail in the answer, more than {limits.max_answer_chars}")
    seen: dict[str, str] = {}
    for c in cards:
        code = c["source"]["topic"]["code"]
        detail = c.get("detail", "")
        if len(detail) > limits.max_card_chars:
            out.append(f"{code}: {len(detail)} characters of detail, more than {limits.max_card_chars}")
        if len(c["summary"]) >= 140:
            out.append(f"{code}: summary of {len(c['summary'])} characters")
        for line in filter(None, detail.split("\n")):
            if line in seen and line != MORE:
                out.append(f"{code}: detail line also in {seen[line]}: {line[:60]!r}")
            seen.setdefault(line, code)
        source = c["source"]
        if not source.get("label") or not source.get("url") or not _YEAR.search(source["label"]):
            out.append(f"{code}: source needs a label with a year and a url")
        if any(link.get("url") == source.get("url") for link in c.get("links", [])):
            out.append(f"{code}: a link repeats the source")
        if "**Source**" in detail or "Source:" in detail:
            out.append(f"{code}: detail repeats the citation")
        if _INLINE_REFERENCE.search(detail):
            out.append(f"{code}: FHIR reference inline in the detail (belongs in the evidence extension)")
    return out
