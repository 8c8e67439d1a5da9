"""Lenient readers for FHIR R4 JSON (plain dicts).

Real EHR data is imperfect (a single object where an array belongs, a missing system, a code
sent with the wrong system), and one unreadable element must not hide the rest of a record. So
these readers never raise: they return what they can read, or None / an empty list.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

Resource = dict[str, Any]


def as_list(value: Any) -> list[Any]:
    """FHIR arrays sometimes arrive as a single object (seen in the CDS Hooks sandbox)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def codings(concept: Any) -> Iterator[tuple[str, str, str]]:
    """(system, code, display) for each usable Coding of a CodeableConcept (or a Coding)."""
    if not isinstance(concept, dict):
        return
    items = concept.get("coding") if "coding" in concept else concept
    if not isinstance(items, list):
        items = [items]
    for coding in items:
        if not isinstance(coding, dict):
            continue
        code = coding.get("code")
        if isinstance(code, str):
            code = code.strip()
        elif isinstance(code, int) and not isinstance(code, bool):
            code = str(code)
        else:
            continue
        if code:
            system = coding.get("system")
            display = coding.get("display")
            yield (
                system.strip() if isinstance(system, str) else "",
                code,
                display if isinstance(display, str) else "",
            )


def concept_text(concept: Any) -> str:
    """Text of a CodeableConcept: its text, else the displays of its codings."""
    if not isinstance(concept, dict):
        return ""
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    return " ".join(d for _, _, d in codings(concept) if d).strip()


def reference_of(resource: Resource) -> str:
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return f"{rtype}/{rid}"
    return f"{rtype or 'Resource'}/(no id)"


def ref_target(ref: Any) -> str | None:
    """'Type/id' of a Reference, dropping any base URL or version; None if not a literal reference."""
    if not isinstance(ref, dict):
        return None
    value = ref.get("reference")
    if not isinstance(value, str) or not value:
        return None
    value = value.split("/_history/")[0]
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date or dateTime; partial dates (YYYY, YYYY-MM) give the first day."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        if len(value) == 10 or value[10] == "T":
            # The local calendar date of a dateTime is its first ten characters (no UTC shift).
            return date.fromisoformat(value[:10])
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def first_date(*values: Any) -> date | None:
    for value in values:
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        parsed = parse_date(value)
        if parsed is not None:
            return parsed
    return None


def effective_date(obs: Resource) -> date | None:
    """When an Observation applies: effective[x], else issued."""
    period = obs.get("effectivePeriod")
    return first_date(
        obs.get("effectiveDateTime"),
        period if isinstance(period, dict) else None,
        obs.get("effectiveInstant"),
        obs.get("issued"),
    )


def status_code(value: Any) -> str:
    """A status that is either a code string or a CodeableConcept (Condition.clinicalStatus)."""
    if isinstance(value, str):
        return value.strip().lower()
    for _, code, _ in codings(value):
        return code.lower()
    return ""


def extensions(resource: Resource, url_suffix: str) -> Iterator[dict[str, Any]]:
    """Extensions whose URL ends with ``url_suffix`` (mCODE STU1-STU4 moved the same idea between URLs)."""
    for ext in as_list(resource.get("extension")):
        if isinstance(ext, dict) and isinstance(ext.get("url"), str) and ext["url"].endswith(url_suffix):
            yield ext
