"""When a drug was first and last given, from the picture's medication records.

Pure, and computed on demand from ``ClinicalPicture.medication_uses`` (only the order rules and
the summary of a patient on anti-HER2 therapy ask), so the per-resource mapping cost stays flat.
A record's dose date is what it can tell: an administration its own date; an order or statement
that is still active "today" (treatment ongoing, unless the order is on hold); an ended one its
end, else its start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from .fhir import status_code
from .picture import ClinicalPicture, MedicationUse


@dataclass(frozen=True)
class DoseDate:
    """One dated exposure to a drug, with the record it rests on."""

    date: date
    ingredient: str
    reference: str
    basis: str  # administration | active order | active statement | order end | order start | statement end | statement start

    def words(self) -> str:
        """e.g. "trastuzumab given on 2026-10-11", "trastuzumab order ended 2026-09-01"."""
        if self.basis == "administration":
            return f"{self.ingredient} given on {self.date.isoformat()}"
        if self.basis.startswith("active"):
            return f"{self.ingredient} {self.basis} as of {self.date.isoformat()}"
        noun, edge = self.basis.split(" ")
        return f"{self.ingredient} {noun} {'ended' if edge == 'end' else 'started'} {self.date.isoformat()}"


def dose_date(use: MedicationUse, today: date) -> DoseDate | None:
    """The latest date on which this record shows the drug was (or is being) given."""
    if use.resource_type == "MedicationAdministration":
        return DoseDate(min(use.start, today), use.ingredient, use.reference, "administration") if use.start else None
    noun = "order" if use.resource_type == "MedicationRequest" else "statement"
    if use.active:
        if status_code(use.resource.get("status")) == "on-hold":
            # Held (e.g. trastuzumab after an LVEF fall): not being given; its open end is only "today".
            return DoseDate(min(use.start, today), use.ingredient, use.reference, f"{noun} start") if use.start else None
        return DoseDate(today, use.ingredient, use.reference, f"active {noun}")
    if use.end is not None:
        return DoseDate(min(use.end, today), use.ingredient, use.reference, f"{noun} end")
    if use.start is not None:
        return DoseDate(min(use.start, today), use.ingredient, use.reference, f"{noun} start")
    return None


def last_dose(pic: ClinicalPicture, ingredients: Iterable[str], today: date) -> DoseDate | None:
    """The most recent dose of any of ``ingredients`` (canonical ingredient names)."""
    wanted = set(ingredients)
    dates = [d for d in (dose_date(u, today) for u in pic.medication_uses if u.ingredient in wanted) if d is not None]
    return max(dates, key=lambda d: (d.date, d.basis == "administration")) if dates else None


def first_dose(pic: ClinicalPicture, classes: Iterable[str]) -> MedicationUse | None:
    """The earliest dated record of any drug of ``classes`` (``medication_uses`` is sorted by start)."""
    wanted = set(classes)
    return next((u for u in pic.medication_uses if u.drug_class in wanted and u.start is not None), None)
