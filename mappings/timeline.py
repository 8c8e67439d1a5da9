"""The disease course as timeline data: a pure function of the clinical picture.

The viewer draws what this returns and computes nothing clinical itself, so the page, the cards
and ``explain`` all rest on one mapping. Called once per viewer load, never on the hook path, so
the per-sample regrouping below (``consolidate``) costs the hooks nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .picture import ClinicalPicture, MarkerStatus
from .receptors import consolidate

TIMELINE_VERSION = "1"
MARKERS = ("ER", "PR", "HER2", "HR")  # HR: a combined ER/PR result


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _pct(value: float | None) -> str:
    return f" {value:g}%" if value is not None else ""


def marker_label(marker: str, status: str, percent: float | None = None, category: str = "unknown",
                 ihc: str | None = None, ish: str | None = None) -> str:
    """Words, not colours or symbols: 'ER positive 80%', 'HER2-low (IHC 1+)', 'HER2 positive (ISH amplified)'."""
    if marker != "HER2":
        return f"{marker} {status}{_pct(percent)}"
    test = ", ".join(t for t in (f"IHC {ihc}" if ihc else "", f"ISH {ish}" if ish else "") if t)
    words = {"0": "HER2 0", "ultralow": "HER2-ultralow", "low": "HER2-low", "positive": "HER2 positive"}.get(category)
    if words is None or status in ("equivocal", "unknown"):
        words = f"HER2 {status}"
    return f"{words} ({test})" if test else words


def marker_short(marker: str, status: str, percent: float | None = None, category: str = "unknown") -> str:
    """The timeline's compact label: 'ER+ 80%', 'PR- 0%', 'ER low 5%', 'HER2-low', 'HER2 equivocal'."""
    if marker == "HER2" and status == "negative" and category in ("0", "ultralow", "low"):
        return {"0": "HER2 0", "ultralow": "HER2-ultralow", "low": "HER2-low"}[category]
    sign = {"positive": "+", "negative": "-", "low-positive": " low"}.get(status, f" {status}")
    return f"{marker}{sign}{_pct(percent)}"


def receptor_samples(pic: ClinicalPicture) -> list[dict[str, Any]]:
    """One entry per tested sample (specimen, else result date), each marker's status in it, and
    whether that status changed from the marker's previous sample (receptor conversion)."""
    by_key: dict[str, dict[str, Any]] = {}
    site_of = {r.sample_key: r.specimen_site for r in pic.receptor_history if r.specimen_site}
    basis_of = {r.sample_key: r.specimen_basis for r in pic.receptor_history}
    for marker, samples in consolidate(pic.receptor_history).items():
        previous = None
        for s in samples:
            entry = by_key.setdefault(s.key, {
                "key": s.key, "date": s.date, "specimen": "unknown", "site": site_of.get(s.key),
                "specimenBasis": basis_of.get(s.key, "none"), "markers": {}, "evidence": set(),
            })
            if s.date and (entry["date"] is None or s.date > entry["date"]):
                entry["date"] = s.date
            if s.specimen != "unknown":
                entry["specimen"] = s.specimen
            value = (s.status, s.category) if marker == "HER2" else (s.status,)
            result: dict[str, Any] = {
                "status": s.status, "label": marker_label(marker, s.status, s.percent, s.category, s.ihc, s.ish),
                "short": marker_short(marker, s.status, s.percent, s.category),
                "evidence": s.evidence,
            }
            for name, item in (("percent", s.percent), ("ihc", s.ihc), ("ish", s.ish), ("conflict", s.conflict)):
                if item is not None:
                    result[name] = item
            if marker == "HER2":
                result["category"] = s.category
            if s.preliminary:
                result["preliminary"] = True
            if previous is not None and previous[0] != value and "unknown" not in (previous[0][0], s.status):
                result["changedFrom"] = previous[1]
            previous = (value, result["label"])
            entry["markers"][marker] = result
            entry["evidence"].update(s.evidence)
    out = sorted(by_key.values(), key=lambda e: (e["date"] or date.min, e["key"]))
    for e in out:
        e["markers"] = {m: e["markers"][m] for m in MARKERS if m in e["markers"]}
    out += _coded_statuses(pic)
    return [{**e, "date": _iso(e["date"]), "evidence": sorted(e["evidence"])} for e in out]


def _coded_statuses(pic: ClinicalPicture) -> list[dict[str, Any]]:
    """Receptor status read from a problem-list entry (no test result): shown, marked as such."""
    out = []
    for status in (pic.er, pic.pr, pic.her2):
        if status.source != "condition":
            continue
        out.append({
            "key": f"condition:{status.marker}", "date": status.date, "specimen": "unknown", "site": None,
            "specimenBasis": "condition", "evidence": set(status.evidence),
            "markers": {status.marker: _status_entry(status)},
        })
    return out


def _status_entry(status: MarkerStatus) -> dict[str, Any]:
    return {"status": status.status, "evidence": status.evidence, "category": status.category,
            "short": marker_short(status.marker, status.status, status.percent, status.category),
            "label": marker_label(status.marker, status.status, status.percent, status.category, status.ihc, status.ish)
            + " (coded on a problem-list entry, no test result)"}


def metastatic_sites(pic: ClinicalPicture) -> list[dict[str, Any]]:
    """Each site once, with the first date it was recorded and every resource that records it."""
    by_site: dict[tuple[str, bool], dict[str, Any]] = {}
    for m in pic.metastases:
        entry = by_site.setdefault((m.site, m.regional), {
            "site": m.site, "regional": m.regional, "firstSeen": None, "dates": set(), "evidence": [], "basis": m.basis,
            "display": m.display,
        })
        if m.date:
            entry["dates"].add(m.date)
            if entry["firstSeen"] is None or m.date < entry["firstSeen"]:
                entry["firstSeen"] = m.date
        if m.reference not in entry["evidence"]:
            entry["evidence"].append(m.reference)
    ordered = sorted(by_site.values(), key=lambda e: (e["regional"], e["firstSeen"] or date.max, e["site"]))
    return [{**e, "firstSeen": _iso(e["firstSeen"]), "dates": [d.isoformat() for d in sorted(e["dates"])]} for e in ordered]


def therapy_lines(pic: ClinicalPicture) -> list[dict[str, Any]]:
    """The lines lane: early (adjuvant/neoadjuvant) treatment as line 0, then the lines for metastatic disease."""
    return [{
        "line": t.line, "agents": list(t.agents), "start": _iso(t.start), "end": _iso(t.end), "setting": t.setting,
        "ongoing": t.end is None, "evidence": list(t.evidence), "stopReason": t.stop_reason,
    } for t in [*pic.early_treatment, *pic.lines]]


def current_line(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ongoing line for metastatic disease with the highest number, if any."""
    ongoing = [ln for ln in lines if ln["setting"] == "metastatic" and ln["ongoing"]]
    return max(ongoing, key=lambda ln: ln["line"]) if ongoing else None


def biomarker_results(pic: ClinicalPicture) -> list[dict[str, Any]]:
    """One entry per marker, result and date: germline BRCA1 and BRCA2 reported together are one gBRCA fact."""
    grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
    for b in pic.biomarkers:
        item = b.to_json()
        key = (item["marker"], item["result"], item["date"], item.get("germline"))
        entry = grouped.setdefault(key, {**item, "evidence": []})
        entry["evidence"].append(b.reference)
    return sorted(grouped.values(), key=lambda e: (e["date"] or "", e["marker"]))


def _measure(name: str, m: Any) -> dict[str, Any]:
    return {"name": name, "value": m.value, "unit": m.unit, "date": _iso(m.date), "evidence": m.reference}


def timeline(pic: ClinicalPicture, today: date) -> dict[str, Any]:
    """Lanes (receptor samples, metastatic sites, lines, progression, LVEF, biomarkers, measurements)
    and the same facts as one dated event list, for the table that is the timeline's text alternative."""
    receptors = receptor_samples(pic)
    sites = metastatic_sites(pic)
    lines = therapy_lines(pic)
    lvef = [{"value": m.value, "unit": m.unit or "%", "date": _iso(m.date), "evidence": m.reference} for m in pic.lvef]
    progressions = [{"date": _iso(m.date), "evidence": m.reference} for m in pic.progression]
    biomarkers = biomarker_results(pic)
    measurements = [_measure("Body weight", m) for m in pic.weight]
    if pic.ecog:
        measurements.append(_measure("ECOG performance status", pic.ecog))

    events: list[dict[str, Any]] = []
    if pic.breast_cancer:
        events.append({"date": _iso(pic.diagnosis_date), "lane": "Diagnosis", "label": "Breast cancer diagnosed",
                       "evidence": pic.breast_cancer_evidence})
    for s in receptors:
        where = f"{s['specimen']} sample" + (f", {s['site']}" if s.get("site") else "")
        labels = "; ".join(m["label"] + (f", was {m['changedFrom']}" if "changedFrom" in m else "") for m in s["markers"].values())
        events.append({"date": s["date"], "lane": "Receptors", "label": f"{labels} ({where})", "evidence": s["evidence"]})
    for site in sites:
        kind = "regional lymph node, not distant" if site["regional"] else "metastatic site first recorded"
        events.append({"date": site["firstSeen"], "lane": "Metastatic sites", "label": f"{site['site']}: {kind}",
                       "evidence": site["evidence"]})
    for ln in lines:
        name = f"Line {ln['line']}" if ln["setting"] == "metastatic" else f"{ln['setting'].capitalize()} treatment"
        until = "ongoing" if ln["ongoing"] else f"until {ln['end'] or 'unknown'}"
        stop = f", stopped: {ln['stopReason']}" if ln.get("stopReason") else ""
        events.append({"date": ln["start"], "lane": "Therapy", "label": f"{name}: {' + '.join(ln['agents'])} ({until}{stop})",
                       "evidence": ln["evidence"]})
    for p in progressions:
        events.append({"date": p["date"], "lane": "Progression", "label": "Disease status: worsened", "evidence": [p["evidence"]]})
    for v in lvef:
        events.append({"date": v["date"], "lane": "LVEF", "label": f"LVEF {v['value']:g}{v['unit']}" if isinstance(v["value"], (int, float))
                       else f"LVEF {v['value']}", "evidence": [v["evidence"]]})
    for b in biomarkers:
        origin = "germline" if b.get("germline") is True else "somatic" if b.get("germline") is False else ""
        events.append({"date": b["date"], "lane": "Biomarkers", "label": f"{b['marker']} {b['result']}" + (f" ({origin})" if origin else ""),
                       "evidence": b["evidence"]})
    for m in measurements:
        unit = f" {m['unit']}" if m["unit"] else ""
        events.append({"date": m["date"], "lane": "Measurements", "label": f"{m['name']} {m['value']}{unit}", "evidence": [m["evidence"]]})
    for proc in pic.procedures:
        events.append({"date": _iso(proc["date"]), "lane": "Procedures", "label": proc["text"] or proc["kind"], "evidence": [proc["evidence"]]})
    events.sort(key=lambda e: (e["date"] or "", e["lane"]))
    dated = [e["date"] for e in events if e["date"]]
    return {
        "version": TIMELINE_VERSION,
        "start": min(dated) if dated else today.isoformat(),
        "end": max([today.isoformat(), *dated]),
        "today": today.isoformat(),
        "diagnosisDate": _iso(pic.diagnosis_date),
        "metastasisDate": _iso(pic.metastasis_date),
        "receptors": receptors,
        "sites": sites,
        "lines": lines,
        "currentLine": current_line(lines),
        "progressions": progressions,
        "lvef": lvef,
        "biomarkers": biomarkers,
        "measurements": measurements,
        "events": events,
    }
