"""Read the value of an Observation (or an Observation component) in whatever form it came.

Real receptor results arrive as LOINC answers, SNOMED qualifiers, free text ("less than 1.8",
"ER 80% positive"), quantities, or only as an ``interpretation``. This module turns each form
into one small record: a meaning from the answer table, a number, and the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .codes import lookup_answer
from .fhir import as_list, codings, concept_text

_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)")
_COMPARATORS = (
    ("less than or equal to", "<="),
    ("greater than or equal to", ">="),
    ("less than", "<"),
    ("greater than", ">"),
    ("<=", "<="),
    (">=", ">="),
    ("<", "<"),
    (">", ">"),
)
_IHC = re.compile(r"(?<![\d.])([0-3])\s*\+|\bscore\s*:?\s*([0-3])\b|^\s*([0-3])\s*$")

# Order matters: negations before the positive words they contain.
_TEXT_MEANINGS = (
    ("not amplified", "negative"),
    ("non-amplified", "negative"),
    ("nonamplified", "negative"),
    ("not detected", "negative"),
    ("no mutation", "negative"),
    ("low positive", "low-positive"),
    ("weakly positive", "low-positive"),
    ("amplified", "positive"),
    ("positive", "positive"),
    ("detected", "positive"),
    ("negative", "negative"),
    ("equivocal", "equivocal"),
    ("borderline", "equivocal"),
    ("indeterminate", "indeterminate"),
    ("premenopausal", "premenopausal"),
    ("postmenopausal", "postmenopausal"),
)


@dataclass
class Value:
    meaning: str | None = None  # a meaning from answer_codes.csv (or the text rules above)
    number: float | None = None
    unit: str | None = None
    comparator: str | None = None
    text: str = ""
    codes: tuple[tuple[str, str], ...] = ()  # (system, code) of a coded value that had no meaning

    @property
    def empty(self) -> bool:
        return self.meaning is None and self.number is None and not self.text


def meaning_from_text(text: str) -> str | None:
    low = text.lower()
    for phrase, meaning in _TEXT_MEANINGS:
        if phrase in low:
            return meaning
    if re.fullmatch(r"\s*(pos|\+)\s*", low):
        return "positive"
    if re.fullmatch(r"\s*(neg|-)\s*", low):
        return "negative"
    return None


def ihc_score_from_text(text: str) -> str | None:
    match = _IHC.search(text)
    if not match:
        return None
    digit = next(g for g in match.groups() if g is not None)
    return f"{digit}+" if digit != "0" else "0"


def number_from_text(text: str) -> tuple[float | None, str | None]:
    low = text.lower()
    comparator = None
    for phrase, comp in _COMPARATORS:
        if phrase in low:
            comparator = comp
            break
    match = _NUMBER.search(low)
    return (float(match.group(1)) if match else None), comparator


def _quantity(value: dict) -> tuple[float | None, str | None, str | None]:
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None, None, None
    unit = value.get("code") or value.get("unit")
    comparator = value.get("comparator")
    return float(number), unit if isinstance(unit, str) else None, comparator if isinstance(comparator, str) else None


def read_value(element: dict) -> Value:
    """The value of an Observation or component; falls back to its ``interpretation``."""
    out = Value()
    concept = element.get("valueCodeableConcept")
    if isinstance(concept, dict):
        unmatched = []
        for system, code, _ in codings(concept):
            meaning = lookup_answer(system, code)
            if meaning:
                out.meaning = meaning
                break
            unmatched.append((system, code))
        out.text = concept_text(concept)
        if out.meaning is None:
            out.codes = tuple(unmatched)
            out.meaning = meaning_from_text(out.text) if out.text else None
    quantity = element.get("valueQuantity")
    if isinstance(quantity, dict):
        out.number, out.unit, out.comparator = _quantity(quantity)
    for key in ("valueInteger", "valueDecimal"):
        number = element.get(key)
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            out.number = float(number)
    ratio = element.get("valueRatio")
    if isinstance(ratio, dict):
        num, _, _ = _quantity(ratio.get("numerator") or {})
        den, _, _ = _quantity(ratio.get("denominator") or {})
        if num is not None and den:
            out.number = num / den
    text = element.get("valueString")
    if isinstance(text, str) and text.strip():
        out.text = text.strip()
        out.meaning = meaning_from_text(out.text)
        if out.number is None:
            out.number, out.comparator = number_from_text(out.text)
            if out.number is not None and "%" in out.text:
                out.unit = "%"
    boolean = element.get("valueBoolean")
    if isinstance(boolean, bool):
        out.meaning = "positive" if boolean else "negative"
    if out.meaning is None:
        for interp in as_list(element.get("interpretation")):
            for system, code, display in codings(interp):
                meaning = lookup_answer(system, code) or meaning_from_text(display)
                if meaning:
                    out.meaning = meaning
                    break
            if out.meaning is None:
                meaning = meaning_from_text(concept_text(interp))
                if meaning:
                    out.meaning = meaning
            if out.meaning:
                break
    return out
