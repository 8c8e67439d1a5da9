"""The one safety invariant every card obeys: no therapy the receptor status contradicts."""

from __future__ import annotations

from mappings.picture import ClinicalPicture

ENDOCRINE_CLASSES = {"aromatase-inhibitor", "tamoxifen", "serd", "cdk4/6-inhibitor", "ovarian-suppression"}
HER2_CLASSES = {"anti-her2-antibody", "anti-her2-tki", "anti-her2-adc"}
# Trastuzumab deruxtecan is the one HER2-directed drug for HER2-negative disease (HER2-low or ultralow).
HER2_LOW_ALLOWED = {"anti-her2-adc"}


def contradicts(classes: list[str] | set[str], pic: ClinicalPicture, ingredient: str | None = None) -> bool:
    """True when a drug class (or a specific ingredient) goes against the known receptor status."""
    classes = set(classes)
    if classes & ENDOCRINE_CLASSES and pic.hr_status == "negative":
        return True
    if classes & HER2_CLASSES and pic.her2.status == "negative":
        her2_low = pic.her2.category in ("low", "ultralow")
        only_tdxd = classes & HER2_CLASSES <= HER2_LOW_ALLOWED and ingredient in (None, "trastuzumab deruxtecan")
        return not (her2_low and only_tdxd)
    return False
