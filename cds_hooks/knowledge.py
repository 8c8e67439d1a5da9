"""The guideline knowledge file (knowledge.yaml), loaded and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

KNOWLEDGE_FILE = Path(__file__).parent / "knowledge.yaml"


@dataclass(frozen=True)
class Knowledge:
    version: str
    sources: dict[str, dict[str, Any]]
    rules: dict[str, dict[str, Any]]
    therapy_options: list[dict[str, Any]]
    override_reasons: list[dict[str, str]]
    economy: dict[str, Any]

    def rule(self, code: str) -> dict[str, Any]:
        return self.rules[code]

    def source(self, key: str) -> dict[str, Any]:
        return self.sources[key]


def _check(k: Knowledge) -> None:
    """Fail at start-up, not at the bedside: every reference in the file must resolve."""
    for code, rule in k.rules.items():
        for key in [rule["source"]]:
            if key not in k.sources:
                raise ValueError(f"knowledge.yaml: rule {code} cites unknown source {key!r}")
        if rule["indicator"] not in ("info", "warning", "critical"):
            raise ValueError(f"knowledge.yaml: rule {code} has indicator {rule['indicator']!r}")
    listed = set(k.economy["priority"]) | set(k.economy["order_priority"])
    missing = set(k.rules) - listed - {"mbc-summary"}
    if missing or listed - set(k.rules):
        raise ValueError(f"knowledge.yaml: card_economy lists must name every rule once: missing {sorted(missing)}, unknown {sorted(listed - set(k.rules))}")
    if not set(k.economy["tests_card"]["rules"]) <= set(k.economy["priority"]):
        raise ValueError("knowledge.yaml: card_economy.tests_card.rules must be patient-view rules of the priority list")
    ids = [o["id"] for o in k.therapy_options]
    if len(ids) != len(set(ids)):
        raise ValueError("knowledge.yaml: duplicate therapy option ids")


@lru_cache(maxsize=1)
def knowledge() -> Knowledge:
    data = yaml.safe_load(KNOWLEDGE_FILE.read_text(encoding="utf-8"))
    k = Knowledge(
        version=str(data["version"]),
        sources=data["sources"],
        rules=data["rules"],
        therapy_options=data.get("therapy_options", []),
        override_reasons=data.get("override_reasons", []),
        economy=data["card_economy"],
    )
    _check(k)
    return k
