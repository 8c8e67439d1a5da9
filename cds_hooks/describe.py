"""Patient facts in words, each with its evidence: the building blocks of card details."""

from __future__ import annotations

from datetime import date

from mappings.picture import ClinicalPicture, MarkerStatus, TherapyLine, Treatment
from mappings.timeline import marker_label

from .cards import Fact

SUBTYPE_WORDS = {
    "HR+/HER2-": "HR-positive/HER2-negative",
    "HR+/HER2+": "HR-positive/HER2-positive",
    "HR-/HER2+": "HR-negative/HER2-positive",
    "TNBC": "triple-negative",
    "unknown": "receptor status unknown",
}
HER2_CATEGORY_WORDS = {"0": "HER2 0", "ultralow": "HER2-ultralow", "low": "HER2-low", "positive": "HER2-positive"}


def when(value: date | None) -> str:
    return value.isoformat() if value else "date not recorded"


def specimen_words(status: MarkerStatus) -> str:
    return {"primary": "primary tumour sample", "metastasis": "metastasis sample"}.get(status.specimen, "sample site not recorded")


def ish_words(status: MarkerStatus) -> str:
    """The ISH part of a HER2 result; a ratio or copy number that fits no ASCO/CAP group is said so."""
    ratio = f"HER2/CEP17 ratio {status.ratio:g}" if status.ratio is not None else None
    copies = f"{status.copies:g} HER2 copies per cell" if status.copies is not None else None
    if status.ish == "ratio-only":
        return f"ISH {ratio} without the average HER2 copy number"
    if status.ish == "copies-only":
        return f"ISH {copies} without the HER2/CEP17 ratio"
    if status.ish == "ungrouped":
        return f"ISH {ratio}, {copies}: no ASCO/CAP group"
    if ratio and copies:
        return f"ISH {status.ish}: {ratio}, {copies}"
    return f"ISH {status.ish}"


def marker_fact(status: MarkerStatus) -> Fact:
    name = status.marker
    if status.status == "unknown" and not status.conflict:
        return Fact(f"{name}: no result")
    if status.conflict:
        return Fact(f"{name}: conflicting results, status unknown ({status.conflict})", status.evidence)
    words = status.status.replace("-", " ")
    if name == "HER2":
        extra = []
        if status.ihc:
            extra.append(f"IHC {status.ihc}")
        if status.ish:
            extra.append(ish_words(status))
        if status.category in HER2_CATEGORY_WORDS and status.status == "negative":
            words = f"negative, {HER2_CATEGORY_WORDS[status.category]}"
        detail = f" ({', '.join(extra)})" if extra else ""
    else:
        detail = f" ({status.percent:g}% of nuclei)" if status.percent is not None else ""
    source = " (coded on a problem-list condition: weaker than a test result)" if status.source == "condition" else ""
    prelim = " [preliminary]" if status.preliminary else ""
    return Fact(f"{name} {words}{detail}{prelim}, {when(status.date)}, {specimen_words(status)}{source}", status.evidence)


def receptor_facts(pic: ClinicalPicture) -> list[Fact]:
    facts = [marker_fact(pic.er), marker_fact(pic.pr), marker_fact(pic.her2)]
    if pic.hr_override and pic.er.status == "unknown" and pic.pr.status == "unknown":
        facts.append(Fact(f"Hormone receptors (ER and PR together): {pic.hr_override[0]}", pic.hr_override[1]))
    return facts


def sites_fact(pic: ClinicalPicture) -> Fact:
    distant = [m for m in pic.metastases if not m.regional]
    if not distant:
        refs = pic.metastatic_evidence
        return Fact(f"Metastatic disease recorded (no site), since {when(pic.metastasis_date)}", refs)
    parts = []
    for site in pic.sites:
        first = min((m.date for m in distant if m.site == site and m.date), default=None)
        parts.append(f"{site} since {when(first)}")
    visceral = "visceral disease" if pic.visceral else "no visceral disease"
    return Fact(f"Metastatic sites: {', '.join(parts)}; {visceral}", sorted({m.reference for m in distant}))


def treatment_fact(treatments: list[Treatment], label: str = "Treatments so far") -> Fact:
    if not treatments:
        return Fact(f"{label}: none recorded")
    parts = [f"{t.ingredient} ({t.drug_class}, {'active' if t.active else 'past'}, from {when(t.start)})" for t in treatments]
    refs = [r for t in treatments for r in t.evidence[:2]]
    return Fact(f"{label}: {'; '.join(parts)}", refs)


def line_fact(pic: ClinicalPicture) -> Fact:
    """The lines of therapy for metastatic disease in one line (mappings/lines.py decides them)."""
    if not pic.lines:
        return Fact(f"No line of therapy for metastatic disease recorded (first metastasis {when(pic.metastasis_date)})")
    parts = [f"{ln.line}. {' + '.join(ln.agents)} from {when(ln.start)}" + ("" if ln.ongoing else f" to {when(ln.end)}") for ln in pic.lines]
    return Fact(f"Lines of therapy for metastatic disease: {'; '.join(parts)}", [r for ln in pic.lines for r in ln.evidence[:1]])


_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}


def nth(n: int) -> str:
    return _ORDINALS.get(n, f"{n}th")


def line_words(line: TherapyLine) -> str:
    """'letrozole + palbociclib (since 2025-03-02)', or with its end and why it stopped."""
    span = f"{when(line.start)} to {when(line.end)}" if line.end else f"since {when(line.start)}"
    stop = f", stopped: {line.stop_reason}" if line.stop_reason else ""
    return f"{' + '.join(line.agents)} ({span}{stop})"


def receptor_lines(pic: ClinicalPicture) -> list[Fact]:
    """ER, PR and HER2 in as few lines as their samples allow: one line per sample (specimen and date)."""
    groups: dict[tuple, list[MarkerStatus]] = {}
    out: list[Fact] = []
    missing = []
    for status in (pic.er, pic.pr, pic.her2):
        if status.conflict:
            out.append(marker_fact(status))
        elif status.status == "unknown" and status.source == "none":
            missing.append(status.marker)
        else:
            groups.setdefault((status.date, status.specimen, status.source, status.preliminary), []).append(status)
    for (when_, specimen, source, preliminary), statuses in groups.items():
        labels = ", ".join(marker_label(s.marker, s.status, s.percent, s.category, s.ihc, s.ish) for s in statuses)
        where = "problem list, not a test result" if source == "condition" else {
            "primary": "primary tumour", "metastasis": "metastasis"}.get(specimen, "sample site not recorded")
        prelim = ", preliminary" if preliminary else ""
        out.insert(len(out), Fact(f"{labels}: {where}, {when(when_)}{prelim}", [r for s in statuses for r in s.evidence]))
    if pic.hr_override and pic.er.status == "unknown" and pic.pr.status == "unknown":
        out.append(Fact(f"Hormone receptors (ER and PR tested together): {pic.hr_override[0]}", pic.hr_override[1]))
        missing = [m for m in missing if m not in ("ER", "PR")]
    if missing:
        out.append(Fact(f"No result: {', '.join(missing)}"))
    return out


def current_line_fact(pic: ClinicalPicture) -> Fact:
    """The line the patient is in (or was last in) for metastatic disease."""
    if not pic.lines:
        return Fact("No treatment for metastatic disease recorded")
    last = pic.lines[-1]
    if last.ongoing:
        return Fact(f"{nth(last.line).capitalize()} line: {line_words(last)}", last.evidence[:2])
    return Fact(f"No line running; last, {nth(last.line)} line: {line_words(last)}", last.evidence[:2])


def early_treatment_fact(pic: ClinicalPicture) -> Fact:
    """Adjuvant or neoadjuvant regimens: they decide endocrine resistance but are not lines."""
    parts = [(f"{line.setting} " if line.setting in ("adjuvant", "neoadjuvant") else "") + line_words(line)
             for line in pic.early_treatment]
    return Fact(f"Early treatment, not counted as a line: {'; '.join(parts)}", [r for line in pic.early_treatment for r in line.evidence[:1]])


def lower_first(text: str) -> str:
    """'Aromatase inhibitor' -> 'aromatase inhibitor' inside a sentence; 'CDK4/6', 'HER2' keep their capitals."""
    return text[0].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text


def age_years(pic: ClinicalPicture, today: date) -> int | None:
    if pic.birth_date is None:
        return None
    b = pic.birth_date
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month) - (b.day < a.day)
