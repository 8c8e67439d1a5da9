"""Gonadal suppression: GnRH agonist depots whose product-specific interval covers today, and
ovarian ablation (bilateral oophorectomy, ovarian irradiation).

Aromatase inhibitors and fulvestrant need ovarian suppression or ablation in pre- and
perimenopausal women, and an aromatase inhibitor needs a GnRH agonist in men (ABC 5; fulvestrant
and ribociclib labels). A depot covers its own interval from the day it was given: goserelin
10.8 mg given 55 days ago still suppresses (12 weeks), goserelin 3.6 mg given 55 days ago does not
(28 days). Intervals are data (gnrh_intervals.csv, with sources). A dose whose strength is not in
the table covers at least the shortest interval of that drug; beyond that it is reported as
unknown, never guessed. Pure and computed on demand.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from .codes import gnrh_interval, gnrh_products
from .exposure import dose_date
from .picture import ClinicalPicture, MedicationUse

GNRH_CLASS = "ovarian-suppression"  # drug_classes.csv: goserelin, leuprolide, triptorelin


def add_interval(start: date, n: int, unit: str) -> date:
    """``start`` plus n days, weeks or calendar months (a month-end start stays in range)."""
    if unit == "d":
        return start + timedelta(days=n)
    if unit == "wk":
        return start + timedelta(weeks=n)
    if unit == "mo":
        months = start.month - 1 + n
        year, month = start.year + months // 12, months % 12 + 1
        return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))
    raise ValueError(f"interval unit {unit!r}")


@dataclass(frozen=True)
class GnrhDose:
    ingredient: str
    given: date
    reference: str
    basis: str  # from exposure.DoseDate: administration | active order | order start | ...
    dose_mg: float | None
    product: str | None  # the table's product when the strength is known
    covered_until: date | None  # None: the strength is unknown and the shortest interval has passed
    ongoing: bool  # an active order or statement

    def words(self) -> str:
        dose = f" {self.dose_mg:g} mg" if self.dose_mg is not None else " (dose not recorded)"
        if self.ongoing:
            return f"{self.ingredient}{dose}: {self.basis} as of {self.given.isoformat()}"
        until = f", covers until {self.covered_until.isoformat()}" if self.covered_until else ""
        return f"{self.ingredient}{dose} given {self.given.isoformat()}{until}"


@dataclass(frozen=True)
class Suppression:
    active: list[GnrhDose] = field(default_factory=list)  # doses covering today
    lapsed: list[GnrhDose] = field(default_factory=list)  # the last dose of each drug, no longer covering
    unknown: list[GnrhDose] = field(default_factory=list)  # dose strength unknown, beyond the shortest interval
    ablation: list[dict[str, Any]] = field(default_factory=list)  # pic.procedures of kind ovarian-ablation
    oophorectomy_unspecified: list[dict[str, Any]] = field(default_factory=list)  # laterality not stated

    @property
    def suppressed(self) -> bool:
        return bool(self.active or self.ablation)


def _dose(use: MedicationUse, today: date) -> GnrhDose | None:
    when = dose_date(use, today)
    if when is None:
        return None
    mg = use.dose_mg()
    ongoing = when.basis.startswith("active") and use.resource_type != "MedicationAdministration"
    known = gnrh_interval(use.ingredient, mg)
    if known is not None:
        n, unit, product = known
        return GnrhDose(use.ingredient, when.date, use.reference, when.basis, mg, product, add_interval(when.date, n, unit), ongoing)
    shortest = min((add_interval(when.date, n, unit) for _, n, unit, _ in gnrh_products(use.ingredient)), default=None)
    covered = shortest if shortest is not None and shortest >= today else None
    return GnrhDose(use.ingredient, when.date, use.reference, when.basis, mg, None, covered, ongoing)


def gonadal_suppression(pic: ClinicalPicture, today: date) -> Suppression:
    """GnRH agonist doses covering today, lapsed or of unknown cover; ablation procedures."""
    latest: dict[str, GnrhDose] = {}
    active: list[GnrhDose] = []
    for use in pic.medication_uses:
        if use.drug_class != GNRH_CLASS:
            continue
        dose = _dose(use, today)
        if dose is None:
            continue
        if dose.ongoing or (dose.covered_until is not None and dose.covered_until >= today):
            active.append(dose)
        prior = latest.get(dose.ingredient)
        if prior is None or dose.given >= prior.given:
            latest[dose.ingredient] = dose
    lapsed: list[GnrhDose] = []
    unknown: list[GnrhDose] = []
    if not active:
        for dose in latest.values():
            (unknown if dose.product is None and dose.covered_until is None else lapsed).append(dose)
    done = [p for p in pic.procedures if p.get("kind") == "ovarian-ablation"]
    unspecified = [p for p in pic.procedures if p.get("kind") == "oophorectomy"]
    return Suppression(active, lapsed, unknown, done, unspecified)
