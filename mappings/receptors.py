"""ER, PR and HER2: from receptor Observations to statuses, per ASCO/CAP.

Rules (mappings/data/README.md and ../shared/reference/oncology.md 2.4):
- ER/PR positive at >= 1% of tumour nuclei; ER 1-10% is "low positive" (ASCO/CAP ER/PgR 2020).
- HER2 IHC 3+ positive; 2+ equivocal until ISH settles it with the five dual-probe groups;
  1+, or 2+ with ISH not amplified, is HER2-low; 0 is HER2 0 (ultralow only when the data says
  so) (ASCO/CAP HER2 2018, affirmed 2023).
Results of one sample (one Specimen, else one day) are read together; the current status is the
most recent sample's. Conflicting results of one sample give status ``unknown`` with the
conflict named: never a guess.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from .codes import lookup_body_site, site_from_text
from .fhir import Resource, as_list, codings, concept_text, extensions, first_date, ref_target
from .picture import MarkerStatus, ReceptorResult
from .values import Value, ihc_score_from_text, read_value

MARKER_OF = {
    "er-presence": "ER", "er-interpretation": "ER", "er-percent": "ER",
    "pr-presence": "PR", "pr-interpretation": "PR", "pr-percent": "PR",
    "hr-presence": "HR",
    "her2-ihc": "HER2", "her2-interpretation": "HER2", "her2-ish": "HER2",
    "her2-ratio": "HER2", "her2-copies": "HER2",
}
# Read and understood, but they decide no status (intensity, serum HER2, legacy assays, panels).
KNOWN_NO_STATUS = {
    "er-intensity", "pr-intensity", "er-legacy-quantitative", "her2-serum", "her2-protein",
    "cep17-copies", "her2-ish-panel", "tumor-marker-tnbc",
}
RECEPTOR_CONCEPTS = set(MARKER_OF) | KNOWN_NO_STATUS


@dataclass
class SpecimenInfo:
    kind: str = "unknown"  # primary | metastasis | unknown
    basis: str = "none"
    site: str | None = None
    collected: date | None = None
    key: str | None = None


@dataclass
class ReceptorContext:
    """What receptor reading needs from the rest of the record."""

    specimens: dict[str, Resource] = field(default_factory=dict)  # "Specimen/id" -> resource
    metastasis_conditions: set[str] = field(default_factory=set)  # "Condition/id"
    metastasis_date: date | None = None


def _site_of(concepts: list) -> str | None:
    for concept in concepts:
        for system, code, _ in codings(concept):
            site = lookup_body_site(system, code)
            if site:
                return site
        text = concept_text(concept)
        if text:
            site = site_from_text(text)
            if site:
                return site
    return None


def specimen_info(obs: Resource, ctx: ReceptorContext) -> SpecimenInfo:
    """Primary or metastasis, from the best evidence the Observation carries."""
    info = SpecimenInfo()
    spec_ref = ref_target(obs.get("specimen"))
    specimen = ctx.specimens.get(spec_ref) if spec_ref else None
    if spec_ref:
        info.key = spec_ref
    if specimen is not None:
        collection = specimen.get("collection") or {}
        if isinstance(collection, dict):
            info.collected = first_date(collection.get("collectedDateTime"), collection.get("collectedPeriod"))
            site = _site_of([collection.get("bodySite"), specimen.get("type")])
        else:
            site = None
        if site:
            info.site, info.basis = site, "specimen-site"
    if info.site is None:
        site = _site_of([obs.get("bodySite")])
        if site:
            info.site, info.basis = site, "observation-bodysite"
    if info.site is not None:
        info.kind = "primary" if info.site == "breast" else "metastasis"
        return info
    # mCODE STU3/4 "mcode-related-condition"; the core "condition-related" extension is used alike.
    for ext in [*extensions(obs, "related-condition"), *extensions(obs, "condition-related")]:
        target = ref_target(ext.get("valueReference"))
        if target in ctx.metastasis_conditions:
            info.kind, info.basis = "metastasis", "related-condition"
            return info
    return info


def _classify_date(info: SpecimenInfo, when: date | None, ctx: ReceptorContext) -> None:
    if info.kind != "unknown" or ctx.metastasis_date is None or when is None:
        return
    if when < ctx.metastasis_date:
        info.kind, info.basis = "primary", "date"


def _er_pr_status(marker: str, value: Value, percent_code: bool) -> tuple[str, float | None]:
    """Status and percent; a bare number counts as a percent only on a percent code or with a % unit."""
    percent = None
    if value.number is not None and (value.unit in ("%", "percent") or (percent_code and value.unit in (None, "{percent}"))):
        percent = value.number
    if percent is not None:
        if percent < 1 or (value.comparator in ("<", "<=") and percent <= 1):
            return "negative", percent
        if marker == "ER" and percent <= 10:
            return "low-positive", percent
        return "positive", percent
    if value.meaning == "low-positive":
        return ("low-positive" if marker == "ER" else "positive"), None
    if value.meaning in ("positive", "negative"):
        return value.meaning, None
    return "unknown", None


def read_receptor_observation(obs: Resource, concept: str, reference: str, when: date | None,
                              ctx: ReceptorContext, preliminary: bool) -> list[ReceptorResult]:
    """Results in one Observation: its own value and any receptor components."""
    info = specimen_info(obs, ctx)
    _classify_date(info, info.collected or when, ctx)
    sample_key = info.key or f"{(info.collected or when) or 'undated'}|{info.site or ''}|{reference if when is None else ''}"
    results: list[ReceptorResult] = []

    def add(conc: str, value: Value) -> None:
        marker = MARKER_OF.get(conc)
        if marker is None or value.empty:
            return
        result = ReceptorResult(
            marker=marker, reference=reference, date=when, specimen=info.kind, specimen_basis=info.basis,
            specimen_site=info.site, specimen_date=info.collected, sample_key=sample_key, preliminary=preliminary,
        )
        if marker in ("ER", "PR", "HR"):
            result.kind = "percent" if conc.endswith("-percent") else "presence"
            status, percent = _er_pr_status("ER" if marker == "HR" else marker, value, conc.endswith("-percent"))
            if marker == "HR" and status == "low-positive":
                status = "positive"
            result.status, result.percent = status, percent
        else:
            _read_her2(conc, value, result)
        results.append(result)

    own = read_value(obs)
    add(concept, own)
    from .codes import lookup_observation

    for comp in as_list(obs.get("component")):
        if not isinstance(comp, dict):
            continue
        for system, code, _ in codings(comp.get("code")):
            comp_concept, _ = lookup_observation(system, code)
            if comp_concept in MARKER_OF:
                add(comp_concept, read_value(comp))
                break
    return results


def _read_her2(concept: str, value: Value, result: ReceptorResult) -> None:
    text = value.text.lower()
    result.ultralow = "ultralow" in text or "ultra-low" in text
    if concept == "her2-ihc":
        result.kind = "ihc"
        score = None
        if value.meaning and value.meaning.startswith("ihc-"):
            score = value.meaning[4:]
        elif value.text:
            score = ihc_score_from_text(value.text)
        if score is None and value.number is not None and value.number in (0, 1, 2, 3):
            score = "0" if value.number == 0 else f"{int(value.number)}+"
        if score:
            result.her2_ihc = score
            result.status = {"3+": "positive", "2+": "equivocal"}.get(score, "negative")
        elif value.meaning in ("positive", "negative", "equivocal"):
            result.kind = "presence"
            result.status = value.meaning
    elif concept == "her2-interpretation":
        result.kind = "interpretation"
        if value.meaning in ("positive", "negative", "equivocal"):
            result.status = value.meaning
        elif value.meaning and value.meaning.startswith("ihc-"):
            result.her2_ihc = value.meaning[4:]
            result.status = {"3+": "positive", "2+": "equivocal"}.get(result.her2_ihc, "negative")
    elif concept == "her2-ish":
        result.kind = "ish"
        if value.meaning in ("positive", "negative", "equivocal"):
            result.her2_ish = {"positive": "amplified", "negative": "not-amplified"}.get(value.meaning, "equivocal")
        elif value.number is not None:
            # Synthea sends the ratio as text: "less than 1.8" / "greater than 2.2" (2007 cut-offs). A
            # ratio is not a result on its own (ASCO/CAP 2018 groups need the copy number too): the
            # sample's consolidation decides what it can.
            result.her2_ratio, result.comparator = value.number, value.comparator
            result.note = f"ISH reported as '{value.text}'" if value.text else None
        result.status = {"amplified": "positive", "not-amplified": "negative"}.get(result.her2_ish or "", "unknown")
    elif concept == "her2-ratio":
        result.kind = "ratio"
        result.her2_ratio, result.comparator = value.number, value.comparator
    elif concept == "her2-copies":
        result.kind = "copies"
        result.her2_copies = value.number


# -- consolidation per sample ---------------------------------------------------------------

@dataclass
class SampleStatus:
    marker: str
    key: str
    date: date | None
    specimen: str
    status: str = "unknown"
    percent: float | None = None
    category: str = "unknown"
    ihc: str | None = None
    ish: str | None = None
    ratio: float | None = None
    copies: float | None = None
    evidence: list[str] = field(default_factory=list)
    conflict: str | None = None
    preliminary: bool = False


# The dual-probe groups by (ratio >= 2.0, copy-number band: "<4", "4-6", ">=6") (ASCO/CAP 2018).
_GROUP_OF = {(True, "<4"): 2, (True, "4-6"): 1, (True, ">=6"): 1, (False, "<4"): 5, (False, "4-6"): 4, (False, ">=6"): 3}


def _ratio_at_least_2(ratio: float | None, comparator: str | None) -> bool | None:
    """Whether the ratio is >= 2.0; None when unknown ("less than 2.2" could be either)."""
    if ratio is None:
        return None
    if comparator in ("<", "<="):
        return False if ratio < 2.0 or (comparator == "<" and ratio == 2.0) else None
    if comparator in (">", ">="):
        return True if ratio >= 2.0 else None
    return ratio >= 2.0


def _copy_band(copies: float | None) -> str | None:
    if copies is None:
        return None
    return "<4" if copies < 4.0 else "4-6" if copies < 6.0 else ">=6"


def _group_status(group: int, ihc: str | None) -> str:
    """HER2 status of a dual-probe group given the concurrent IHC ("neg" = IHC negative without a score)."""
    if ihc == "3+":
        return "positive"
    if group == 1:
        return "positive"
    if group == 3:
        return "positive" if ihc == "2+" else "negative" if ihc in ("0", "1+", "neg") else "unknown"
    return "negative"


def _ungrouped_status(ratio_high: bool | None, band: str | None, ihc: str | None) -> str:
    """Status of an ISH result that lacks the ratio or the copy number (so no group can be named).

    Every group the known half allows is tried: when they all give one status (e.g. ratio < 2.0 with
    IHC 0/1+: groups 3-5 are all negative), that is the status; otherwise the result cannot be placed
    in an ASCO/CAP 2018 group and the status is equivocal (no status is guessed).
    """
    groups = {g for (high, b), g in _GROUP_OF.items() if ratio_high in (None, high) and band in (None, b)}
    statuses = {_group_status(g, ihc) for g in groups}
    return statuses.pop() if len(statuses) == 1 and "unknown" not in statuses else "equivocal"


def _consolidate_er_pr(marker: str, results: list[ReceptorResult], out: SampleStatus) -> None:
    percents = [r for r in results if r.percent is not None and r.status != "unknown"]
    qualitative = [r for r in results if r.percent is None and r.status != "unknown"]
    if percents:
        best = max(percents, key=lambda r: r.percent or 0)
        out.status, out.percent = best.status, best.percent
        pos_q = {r.status in ("positive", "low-positive") for r in qualitative}
        if pos_q and (out.status in ("positive", "low-positive")) not in pos_q:
            out.conflict = f"{marker} reported {qualitative[0].status} but {out.percent:g}% of nuclei stained"
            out.status = "unknown"
    elif qualitative:
        statuses = {r.status for r in qualitative}
        if len(statuses) == 1:
            out.status = statuses.pop()
        elif statuses <= {"positive", "low-positive"}:
            out.status = "low-positive" if "low-positive" in statuses else "positive"
        else:
            out.conflict = f"{marker} results of one sample disagree: {', '.join(sorted(statuses))}"
    if marker == "PR" and out.status == "low-positive":
        out.status = "positive"


def _consolidate_her2(results: list[ReceptorResult], out: SampleStatus) -> None:
    ihc_scores = {r.her2_ihc for r in results if r.her2_ihc}
    ratio_result = next((r for r in results if r.her2_ratio is not None and r.kind in ("ratio", "ish")), None)
    ratio, ratio_comparator = (ratio_result.her2_ratio, ratio_result.comparator) if ratio_result else (None, None)
    copies = next((r.her2_copies for r in results if r.her2_copies is not None), None)
    ish_values = {r.her2_ish for r in results if r.her2_ish}
    stated = {r.status for r in results if r.kind in ("interpretation", "presence") and r.status != "unknown"}
    ultralow = any(r.ultralow for r in results)
    if len(ihc_scores) > 1:
        out.conflict = f"HER2 IHC scores of one sample disagree: {', '.join(sorted(ihc_scores))}"
        return
    ihc = next(iter(ihc_scores), None)
    out.ihc = ihc
    out.ratio, out.copies = ratio, copies
    # IHC negative without a score is 0 or 1+: enough to read ISH groups 3-5 as negative.
    ihc_known = ihc or ("neg" if any(r.kind == "presence" and r.status == "negative" for r in results) else None)
    ratio_high, band = _ratio_at_least_2(ratio, ratio_comparator), _copy_band(copies)
    group = _GROUP_OF[(ratio_high, band)] if ratio_high is not None and band is not None else None
    ish = None
    ungrouped = None
    if group is not None:
        ish = {1: "amplified", 5: "not-amplified"}.get(group, f"group {group}")
    elif len(ish_values) == 1:
        ish = ish_values.pop()
    elif len(ish_values) > 1:
        out.conflict = "HER2 ISH results of one sample disagree"
        return
    elif ratio is not None or copies is not None:
        # ASCO/CAP 2018: a ratio without the average HER2 copy number (or the reverse) is no group.
        ish = "ratio-only" if copies is None else "copies-only" if ratio is None else "ungrouped"
        ungrouped = _ungrouped_status(ratio_high, band, ihc_known)
    out.ish = ish

    status = "unknown"
    if ihc == "3+":
        status = "positive"
    elif group is not None:
        status = _group_status(group, ihc_known)
        status = "equivocal" if status == "unknown" else status
    elif ungrouped is not None:
        status = ungrouped
    elif ish == "amplified":
        status = "positive"
    elif ish == "not-amplified":
        status = "negative"
    elif ihc == "2+":
        status = "equivocal"
    elif ish == "equivocal" and ihc not in ("0", "1+"):
        status = "equivocal"  # no "equivocal" ISH category since 2018: it places the result in no group
    elif ihc in ("0", "1+"):
        status = "negative"
    elif len(stated) == 1:
        status = next(iter(stated))
    elif len(stated) > 1:
        out.conflict = f"HER2 results of one sample disagree: {', '.join(sorted(stated))}"
        return
    if ungrouped == "equivocal":
        # An IHC "negative" was already weighed against every group; only the lab's overall
        # interpretation (e.g. 48676-1) may settle an ISH result that fits no group.
        stated = {r.status for r in results if r.kind == "interpretation" and r.status != "unknown"}
    if stated and status != "unknown" and len(stated) == 1 and next(iter(stated)) not in (status, "equivocal"):
        if status != "equivocal":
            out.conflict = f"HER2 reported {next(iter(stated))} but IHC/ISH results give {status}"
            return
        status = next(iter(stated))
    out.status = status
    if status == "positive":
        out.category = "positive"
    elif status == "negative":
        if ihc == "0":
            out.category = "ultralow" if ultralow else "0"
        elif ihc in ("1+", "2+"):
            out.category = "low"


def consolidate(results: list[ReceptorResult]) -> dict[str, list[SampleStatus]]:
    """Per marker, one status per sample, oldest first."""
    by_sample: dict[tuple[str, str], list[ReceptorResult]] = defaultdict(list)
    for r in results:
        by_sample[(r.marker, r.sample_key)].append(r)
    out: dict[str, list[SampleStatus]] = defaultdict(list)
    for (marker, key), group in by_sample.items():
        dates = [d for d in (r.specimen_date or r.date for r in group) if d]
        specimens = {r.specimen for r in group} - {"unknown"}
        sample = SampleStatus(
            marker=marker, key=key, date=max(dates) if dates else None,
            specimen=specimens.pop() if len(specimens) == 1 else "unknown",
            evidence=sorted({r.reference for r in group}),
            preliminary=any(r.preliminary for r in group),
        )
        if marker == "HER2":
            _consolidate_her2(group, sample)
        else:
            _consolidate_er_pr(marker, group, sample)
        out[marker].append(sample)
    for samples in out.values():
        samples.sort(key=lambda s: (s.date or date.min, s.key))
    return out


def current_status(marker: str, samples: list[SampleStatus]) -> MarkerStatus:
    status = MarkerStatus(marker)
    known = [s for s in samples if s.status != "unknown"]
    if not samples:
        return status
    latest = samples[-1]
    chosen = known[-1] if known else latest
    if latest.conflict and (not known or (latest.date or date.min) >= (chosen.date or date.min)):
        chosen = latest
    status.status = chosen.status
    status.percent = chosen.percent
    status.category = chosen.category if marker == "HER2" else "unknown"
    status.ihc, status.ish = chosen.ihc, chosen.ish
    status.ratio, status.copies = chosen.ratio, chosen.copies
    status.date, status.specimen = chosen.date, chosen.specimen
    status.evidence = chosen.evidence
    status.source = "observation"
    status.conflict = chosen.conflict
    status.preliminary = chosen.preliminary
    return status


def _her2_label(sample: SampleStatus) -> str:
    if sample.status == "negative" and sample.category in ("0", "ultralow", "low"):
        return {"0": "HER2 0", "ultralow": "HER2-ultralow", "low": "HER2-low"}[sample.category]
    return sample.status


def discordance(samples_by_marker: dict[str, list[SampleStatus]]) -> list[dict]:
    """Each change of status between consecutive known samples, HER2 0 vs low included."""
    changes: list[dict] = []
    for marker in ("ER", "PR", "HER2"):
        known = [s for s in samples_by_marker.get(marker, []) if s.status != "unknown" and s.status != "equivocal"]
        for before, after in zip(known, known[1:]):
            if marker == "HER2":
                a, b = before.status, after.status
                if a == b == "negative":
                    if before.category in ("unknown",) or after.category in ("unknown",):
                        continue
                    if {before.category, after.category} <= {"0", "ultralow"} or before.category == after.category:
                        continue
                    a, b = before.category, after.category
                elif a == b:
                    continue
                frm, to = (a, b)
            else:
                if before.status == after.status:
                    continue
                frm, to = before.status, after.status
            changes.append({
                "marker": marker, "from": frm, "to": to,
                "fromDate": before.date.isoformat() if before.date else None,
                "toDate": after.date.isoformat() if after.date else None,
                "fromSpecimen": before.specimen, "toSpecimen": after.specimen,
                "evidence": before.evidence + after.evidence,
            })
    return changes
