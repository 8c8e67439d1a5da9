"""Which receptor statuses any tested sample has shown: the basis of "a receptor positive in at least
one sample supports its therapy" (ABC 5/6: endocrine and/or anti-HER2 therapy when the receptor is
positive in at least one biopsy, regardless of timing; DESTINY-Breast04: HER2-low on any prior
sample qualified for trastuzumab deruxtecan).

Pure, on demand: the per-sample consolidation is ``ClinicalPicture.receptor_samples`` (cached).
The current status per marker (which may come from a problem-list Condition) is counted as a
sample too, so a status known only that way is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .picture import ClinicalPicture


@dataclass(frozen=True)
class SampleSeen:
    """One sample's status in words, for the card that explains a mismatch."""

    marker: str
    status: str  # ER: positive | low-positive | negative; PR: positive | negative; HER2: positive | negative | equivocal
    category: str  # HER2 only: 0 | ultralow | low | positive | unknown
    date: str | None
    specimen: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class ReceptorsSeen:
    samples: dict[str, list[SampleSeen]] = field(default_factory=dict)  # ER, PR, HER2 (HR) -> known samples, oldest first

    def statuses(self, marker: str) -> set[str]:
        return {s.status for s in self.samples.get(marker, [])}

    def her2_categories(self) -> set[str]:
        return {s.category for s in self.samples.get("HER2", []) if s.status == "negative"}

    @property
    def hr_positive_any(self) -> bool:
        return bool(self.statuses("ER") & {"positive", "low-positive"} or "positive" in self.statuses("PR")
                    or "positive" in self.statuses("HR"))

    @property
    def her2_positive_any(self) -> bool:
        return "positive" in self.statuses("HER2")


def receptors_seen(pic: ClinicalPicture) -> ReceptorsSeen:
    out: dict[str, list[SampleSeen]] = {}
    for marker, current in (("ER", pic.er), ("PR", pic.pr), ("HER2", pic.her2)):
        seen = [
            SampleSeen(marker, s.status, s.category if marker == "HER2" else "unknown",
                       s.date.isoformat() if s.date else None, s.specimen, tuple(s.evidence))
            for s in pic.receptor_samples.get(marker, []) if s.status != "unknown"
        ]
        if current.status != "unknown" and not any(tuple(current.evidence) == s.evidence for s in seen):
            seen.append(SampleSeen(marker, current.status, current.category if marker == "HER2" else "unknown",
                                   current.date.isoformat() if current.date else None, current.specimen, tuple(current.evidence)))
        out[marker] = seen
    if pic.hr_override:  # a combined ER/PR result, with neither known alone
        out["HR"] = [SampleSeen("HR", pic.hr_override[0], "unknown", None, "unknown", tuple(pic.hr_override[1]))]
    return ReceptorsSeen(out)
