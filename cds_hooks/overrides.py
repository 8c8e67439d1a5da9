"""Override reasons: the Codings offered on cards, and which reasons feedback may name.

Offered reasons come from knowledge.yaml (HL7's non-adherence reason codes where HL7 has an
equivalent, the project's own otherwise). Feedback may name any code of either system, the
project's codes that HL7 codes replaced (older cards offered them), or a code of any other
system: a CDS client MAY add reasons of its own (CDS Hooks, card attributes, overrideReasons).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any

from .knowledge import knowledge

HL7_SYSTEM = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
OWN_SYSTEM = "https://mbc-cds-hooks.example.org/override-reasons"
SYSTEMS = {"hl7": HL7_SYSTEM, "mbc": OWN_SYSTEM}
_HL7_TABLE = Path(__file__).parent / "data" / "non_adherence_reason_codes.csv"


@lru_cache(maxsize=1)
def offered() -> tuple[dict[str, str], ...]:
    """The overrideReasons of a warning or critical card, as CDS Hooks Codings (display required)."""
    return tuple({"system": SYSTEMS[r["system"]], "code": r["code"], "display": r["display"]}
                 for r in knowledge().override_reasons)


@lru_cache(maxsize=1)
def _codes() -> dict[str, frozenset[str]]:
    with _HL7_TABLE.open(encoding="utf-8", newline="") as fh:
        hl7 = frozenset(row["code"] for row in csv.DictReader(fh))
    reasons: list[dict[str, Any]] = knowledge().override_reasons
    own = {r["code"] for r in reasons if r["system"] == "mbc"} | {r["replaces"] for r in reasons if r.get("replaces")}
    return {HL7_SYSTEM: hl7, OWN_SYSTEM: frozenset(own)}


def unknown_code(system: str | None, code: str) -> str | None:
    """Why a feedback reason cannot be accepted (a code its system does not have), else None."""
    known = _codes().get(system or "")
    if known is None or code in known:
        return None
    return f"'{code}' is not a code of {system}"


def check() -> None:
    """Fail at start-up on an offered reason its code system does not have."""
    for reason in offered():
        problem = unknown_code(reason["system"], reason["code"])
        if problem:
            raise ValueError(f"knowledge.yaml override_reasons: {problem}")
