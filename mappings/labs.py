"""Calcium and albumin in one unit each, whatever unit the laboratory reported.

Pure unit arithmetic (no clinical threshold lives here: the rules take those from knowledge.yaml).
A unit not listed is not guessed: the caller gets None and says the value could not be used.
"""

from __future__ import annotations

# Molar mass of calcium 40.078 g/mol (IUPAC standard atomic weight): 1 mmol/L = 4.0078 mg/dL.
# Calcium is divalent: 1 mEq/L = 0.5 mmol/L.
_CALCIUM_TO_MG_DL = {"mg/dl": 1.0, "mmol/l": 4.0078, "meq/l": 2.0039}
_ALBUMIN_TO_G_DL = {"g/dl": 1.0, "g/l": 0.1, "mg/dl": 0.001}


def _factor(table: dict[str, float], unit: str | None) -> float | None:
    return table.get((unit or "").strip().lower().replace(" ", ""))


def calcium_mg_dl(value: float, unit: str | None) -> float | None:
    factor = _factor(_CALCIUM_TO_MG_DL, unit)
    return value * factor if factor is not None else None


def calcium_from_mg_dl(value: float, unit: str | None) -> float | None:
    """A calcium in mg/dL back in ``unit`` (to show a corrected value in the unit the lab used)."""
    factor = _factor(_CALCIUM_TO_MG_DL, unit)
    return value / factor if factor is not None else None


def albumin_g_dl(value: float, unit: str | None) -> float | None:
    factor = _factor(_ALBUMIN_TO_G_DL, unit)
    return value * factor if factor is not None else None


def convert_calcium(value: float, unit: str | None, to_unit: str | None) -> float | None:
    mg_dl = calcium_mg_dl(value, unit)
    return calcium_from_mg_dl(mg_dl, to_unit) if mg_dl is not None else None
