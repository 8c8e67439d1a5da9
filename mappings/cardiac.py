"""LVEF on anti-HER2 therapy: the last value, the pre-treatment value and the fall between them.

The trastuzumab label measures an LVEF decline from the pre-treatment value: here the last LVEF on
or before the first dose of any anti-HER2 antibody or antibody-drug conjugate on record, so the
fall is cumulative across regimens (trastuzumab, then T-DM1, then T-DXd). Tyrosine kinase
inhibitors (lapatinib, tucatinib, neratinib) are not counted: their labels carry no such warning.
Pure and computed on demand; the thresholds that make a fall significant live with the rule
(cds_hooks/knowledge.yaml), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .exposure import first_dose
from .picture import ClinicalPicture, Measurement, MedicationUse

# Drug classes whose labels carry the LVEF warning (drug_classes.csv vocabulary).
CARDIOTOXIC_HER2_CLASSES = frozenset({"anti-her2-antibody", "anti-her2-adc"})


@dataclass(frozen=True)
class LvefCourse:
    last: Measurement | None  # most recent numeric LVEF
    baseline: Measurement | None  # last numeric LVEF on or before the first anti-HER2 dose
    first_dose: MedicationUse | None  # first anti-HER2 antibody/ADC record

    @property
    def fall(self) -> float | None:
        """Percentage points lost since the pre-treatment value; None without both values, or when the
        last value is the pre-treatment one (no on-treatment LVEF)."""
        if self.last is None or self.baseline is None or self.last is self.baseline:
            return None
        return round(float(self.baseline.value) - float(self.last.value), 1)  # type: ignore[arg-type]


def _numeric(items: list[Measurement]) -> list[Measurement]:
    return [m for m in items if isinstance(m.value, (int, float)) and not isinstance(m.value, bool)]


def lvef_course(pic: ClinicalPicture) -> LvefCourse:
    values = _numeric(pic.lvef)  # pic.lvef is sorted by date, undated first
    dated = [m for m in values if m.date is not None]
    last = dated[-1] if dated else (values[-1] if values else None)
    start = first_dose(pic, CARDIOTOXIC_HER2_CLASSES)
    baseline = None
    if start is not None and start.start is not None:
        first_day: date = start.start
        before = [m for m in dated if m.date is not None and m.date <= first_day]
        baseline = before[-1] if before else None
    return LvefCourse(last, baseline, start)
