"""The one safety invariant every card obeys: no therapy that no tested sample supports.

A receptor positive in at least one sample supports its therapy (ABC 5/6-7): discordance between
samples is the receptor-discordance card's job, not a mismatch. So an order (or a therapy option)
is flagged only when
- it is endocrine therapy or a CDK4/6 inhibitor and ER and PR are negative now and in every tested
  sample;
- it is HER2-directed and HER2 is negative (or only equivocal: IHC 2+ awaiting ISH) now and no
  sample was ever HER2-positive; trastuzumab deruxtecan stays allowed when any sample was HER2-low,
  or HER2-ultralow with HR-positive disease in any sample (DESTINY-Breast04 2022, -06 2025).
The therapy-options rule and the order-receptor-mismatch rule both ask ``contradicts``, so no
option is ever offered that an order of it would be flagged for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mappings.picture import ClinicalPicture
from mappings.receptor_support import SampleSeen, receptors_seen

ENDOCRINE_CLASSES = {"aromatase-inhibitor", "tamoxifen", "serd", "cdk4/6-inhibitor", "ovarian-suppression"}
HER2_CLASSES = {"anti-her2-antibody", "anti-her2-tki", "anti-her2-adc"}
# Trastuzumab deruxtecan is the one HER2-directed drug for HER2-negative disease (HER2-low or ultralow).
HER2_LOW_ALLOWED = {"anti-her2-adc"}
HER2_LOW_DRUG = "trastuzumab deruxtecan"


@dataclass(frozen=True)
class Mismatch:
    kind: str  # hr-negative | her2-negative | her2-equivocal
    words: str  # why, for a card summary
    samples: list[SampleSeen] = field(default_factory=list)  # the tested samples, oldest first
    note: str | None = None  # what would have supported the drug, when that needs saying


def mismatch(classes: list[str] | set[str], pic: ClinicalPicture, ingredient: str | None = None) -> Mismatch | None:
    """Why no tested sample supports this drug class (or ingredient); None when one does, or status is unknown."""
    classes = set(classes)
    seen = None
    if classes & ENDOCRINE_CLASSES and pic.hr_status == "negative":
        seen = receptors_seen(pic)
        if not seen.hr_positive_any:
            return Mismatch("hr-negative", "ER and PR negative in every tested sample",
                            seen.samples.get("ER", []) + seen.samples.get("PR", []) + seen.samples.get("HR", []))
    her2 = classes & HER2_CLASSES
    if her2 and pic.her2.status in ("negative", "equivocal"):
        seen = seen or receptors_seen(pic)
        if seen.her2_positive_any:
            return None
        categories = seen.her2_categories()
        low_drug = her2 <= HER2_LOW_ALLOWED and ingredient in (None, HER2_LOW_DRUG)
        if low_drug and ("low" in categories or ("ultralow" in categories and seen.hr_positive_any)):
            return None
        if pic.her2.status == "equivocal":
            return Mismatch("her2-equivocal", "HER2 only equivocal (IHC 2+ without conclusive ISH), never positive",
                            seen.samples.get("HER2", []))
        what, note = "HER2 negative in every tested sample", None
        if low_drug:
            what += ", none HER2-low"
            note = "Trastuzumab deruxtecan needs HER2-low (IHC 1+, or 2+ with ISH not amplified), or HER2-ultralow with HR-positive disease, in any sample"
            if "unknown" in categories:  # negative without an IHC score: 0 and low cannot be told apart
                note += "; a negative result without an IHC score cannot show HER2-low"
        return Mismatch("her2-negative", what, seen.samples.get("HER2", []), note)
    return None


def contradicts(classes: list[str] | set[str], pic: ClinicalPicture, ingredient: str | None = None) -> bool:
    """True when no tested sample supports a drug class (or a specific ingredient)."""
    return mismatch(classes, pic, ingredient) is not None
