"""The guideline knowledge file (knowledge.yaml), loaded and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

KNOWLEDGE_FILE = Path(__file__).parent / "knowledge.yaml"


REQUIREMENT_KINDS = {"biomarker", "germline", "pdl1_cps_min", "her2", "menopause", "adjuvant_relapse_within_months",
                     "prior", "no_prior", "further_lines", "endocrine_resistance"}


@dataclass(frozen=True)
class Knowledge:
    version: str
    sources: dict[str, dict[str, Any]]
    rules: dict[str, dict[str, Any]]
    therapy_options: list[dict[str, Any]]
    override_reasons: list[dict[str, str]]
    economy: dict[str, Any]
    therapy_order: dict[str, Any]

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
    for key, source in k.sources.items():
        if not str(source.get("url", "")).startswith("https://") or "search" in source["url"] or "?term=" in source["url"]:
            raise ValueError(f"knowledge.yaml: source {key} needs a DOI or label URL, not {source.get('url')!r}")
        if not isinstance(source.get("year"), int):
            raise ValueError(f"knowledge.yaml: source {key} needs a year")
    from mappings.codes import tables

    classes = tables().drug_class
    for option in k.therapy_options:
        oid = option["id"]
        if bool(option.get("regimen")) == bool(option.get("alternatives")):
            raise ValueError(f"knowledge.yaml: option {oid} needs exactly one of regimen or alternatives")
        agents = [a for slot in option.get("regimen") or [] for a in slot] + list(option.get("alternatives") or [])
        unknown = [a for a in agents + list(option.get("reuse") or []) if a not in classes]
        if unknown:
            raise ValueError(f"knowledge.yaml: option {oid} names agents without a drug class: {unknown}")
        if option["source"] not in k.sources or len(option["lines"]) != 2 or option.get("sex") not in (None, "female", "male"):
            raise ValueError(f"knowledge.yaml: option {oid} has a bad source, lines or sex")
        for req in option.get("requires") or []:
            if "text" not in req or not set(req) - {"text", "setting"} <= REQUIREMENT_KINDS:
                raise ValueError(f"knowledge.yaml: option {oid} has an unknown requirement {req}")


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
        therapy_order=data.get("therapy_order", {}),
    )
    _check(k)
    return k
