"""Receptor rules: no result at all, biopsy of a metastasis to reassess, discordance between samples."""

from __future__ import annotations

from datetime import date

from mappings.codes import tables
from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import marker_fact, receptor_lines, sites_fact, specimen_words, when
from ..knowledge import Knowledge
from .common import create, service_request


def receptor_status_missing(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if pic.receptor_history or pic.hr_override or any(s.source != "none" for s in (pic.er, pic.pr, pic.her2)):
        return []
    facts = [Fact("Breast cancer recorded", pic.breast_cancer_evidence[:3]), Fact("No ER, PR or HER2 result found in the data read")]
    if pic.metastatic:
        facts.append(sites_fact(pic))
    return [Draft("receptor-status-missing", "No ER, PR or HER2 result: receptor status is needed before choosing therapy", facts,
                  guidance=k.rule("receptor-status-missing")["guidance"])]


def biopsy_reassessment(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """No receptor result since metastasis; never a brain or leptomeningeal biopsy only to re-test
    receptors, so no card when the CNS is the only site."""
    rule = k.rule("biopsy-reassessment")
    cns = set(rule["cns_sites"])
    if not pic.metastatic or (pic.sites and set(pic.sites) <= cns):
        return []
    for r in pic.receptor_history:
        sampled = r.specimen_date or r.date
        if r.specimen == "metastasis" or (pic.metastasis_date and sampled and sampled >= pic.metastasis_date):
            return []
    facts = [sites_fact(pic)]
    latest = receptor_lines(pic) if any(s.status != "unknown" for s in (pic.er, pic.pr, pic.her2)) else []
    if latest:
        facts += latest
        facts.append(Fact(f"No ER/PR/HER2 result from a sample taken on or after the first evidence of metastasis ({when(pic.metastasis_date)}) or from a metastatic site"))
    else:
        facts.append(Fact("No ER/PR/HER2 result at all"))
    guidance = list(rule["guidance"])
    ranks = tables().sites
    sites = [s for s in pic.sites if s not in cns]
    candidates = sorted(sites, key=lambda s: int(ranks.get(s, {}).get("biopsy_rank", 9)))
    if set(pic.sites) & cns:
        guidance.append(rule["cns_note"])
    if sites and all(s in ("bone", "bone-marrow") for s in sites):
        guidance.append(rule["bone_only"])
        summary_text = "Bone-only metastatic disease without a metastasis biopsy: consider biopsy to reassess ER, PR and HER2"
    else:
        preferred = [s for s in candidates if s not in ("bone", "bone-marrow")]
        if preferred:
            then = f", then {', '.join(preferred[1:])}" if preferred[1:] else ""
            bone = "; bone last" if {"bone", "bone-marrow"} & set(candidates) else ""
            guidance.append(f"Preferred lesion to sample here: {preferred[0]}{then}{bone}.")
        summary_text = "No receptor testing since metastasis: consider biopsy of a metastasis to reassess ER, PR and HER2"
    sr = service_request(rule["service_request_text"], pic.patient, [m.reference for m in pic.metastases if not m.regional],
                         note=f"Preferred site: {next((s for s in candidates if s not in ('bone', 'bone-marrow')), candidates[0] if candidates else 'any accessible lesion')}")
    return [Draft("biopsy-reassessment", summary_text, facts, guidance, [create("Order biopsy of a metastasis with ER/PR/HER2 testing", sr)])]


def receptor_discordance(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.discordance:
        return []
    facts = []
    changed = []
    for d in pic.discordance:
        changed.append(f"{d['marker']} {d['from']}→{d['to']}")
        facts.append(Fact(f"{d['marker']}: {d['from']} on {d['fromDate'] or 'undated'} ({d['fromSpecimen']} sample) → {d['to']} on {d['toDate'] or 'undated'} ({d['toSpecimen']} sample)", d["evidence"]))
    return [Draft("receptor-discordance", f"Receptor discordance between samples: {', '.join(changed)}", facts,
                  k.rule("receptor-discordance")["guidance"])]


_UNGROUPED_ISH = {"ratio-only", "copies-only", "ungrouped"}


def her2_equivocal(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """The latest HER2 result cannot decide therapy yet: IHC 2+ awaiting ISH, or an ISH report that fits no ASCO/CAP group."""
    her2 = pic.her2
    if her2.status != "equivocal" or her2.source != "observation":
        return []
    rule = k.rule("her2-equivocal")
    on = f"{when(her2.date)}, {specimen_words(her2)}"
    if her2.ish in _UNGROUPED_ISH or (her2.ish or "").startswith("group"):
        what = "ratio without average copy number" if her2.ish == "ratio-only" else "result"
        reason, text = "ish", f"HER2 ISH {what} ({when(her2.date)}) fits no ASCO/CAP group: HER2 unknown until ISH is complete"
        label = "Order HER2 ISH reporting ratio and average copy number"
    elif her2.ihc == "2+" and not her2.ish:
        reason, text = "ihc", f"HER2 IHC 2+ on {when(her2.date)} without ISH: reflex ISH needed before HER2 decides therapy"
        label = "Order reflex HER2 ISH"
    else:
        reason, text = "equivocal", f"HER2 equivocal on {when(her2.date)}: IHC and ISH needed before HER2 decides therapy"
        label = "Order HER2 ISH"
    facts = [marker_fact(her2), Fact("No subtype assigned until HER2 is settled")]
    sr = service_request(rule["service_request_text"], pic.patient, her2.evidence, note=f"Sample of {on}")
    return [Draft("her2-equivocal", text, facts, [rule["reasons"][reason], *rule["guidance"]], [create(label, sr)])]
