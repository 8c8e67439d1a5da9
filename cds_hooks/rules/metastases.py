"""Care by where the disease is: bone, brain, a single site (oligometastatic), staging at first metastasis."""

from __future__ import annotations

from datetime import date, timedelta

from mappings.picture import ClinicalPicture

from ..cards import Draft, Fact
from ..describe import marker_fact, sites_fact, treatment_fact, when
from ..knowledge import Knowledge
from .common import create, service_request

STAGING_KINDS = {"staging-ct", "bone-scan", "pet-ct"}
STAGING_WINDOW_DAYS = 90
# Imaging that found the metastasis usually precedes the problem-list entry by days to weeks.
STAGING_LOOKBACK_DAYS = 30


def bone_targeted_agent(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not ({"bone", "bone-marrow"} & set(pic.sites)) or "bone-modifying-agent" in pic.active_classes():
        return []
    past = [t for t in pic.treatments if t.drug_class == "bone-modifying-agent"]
    facts = [sites_fact(pic), treatment_fact(past, "Bone-modifying agents") if past else Fact("No active bone-modifying agent (denosumab, zoledronic acid, pamidronate) recorded")]
    return [Draft("bone-targeted-agent", "Bone metastases without an active bone-modifying agent: consider denosumab or zoledronic acid", facts,
                  k.rule("bone-targeted-agent")["guidance"])]


def brain_metastasis(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    cns = [m for m in pic.metastases if m.site in ("brain", "meninges") and not m.regional]
    if not cns:
        return []
    rule = k.rule("brain-metastasis")
    facts = [Fact(f"{'Leptomeningeal' if m.site == 'meninges' else 'Brain'} metastasis since {when(m.date)}", [m.reference]) for m in cns]
    facts.append(marker_fact(pic.her2))
    sites = {m.site for m in cns}
    if sites == {"meninges"}:
        # Leptomeningeal disease has its own pathway: not SRS or surgery as routine (EANO-ESMO 2017).
        return [Draft("brain-metastasis", "Leptomeningeal metastases recorded: plan systemic and intrathecal therapy with neuro-oncology",
                      facts, rule["leptomeningeal"], source=rule["leptomeningeal_source"])]
    guidance = rule["guidance"] + (rule["leptomeningeal"][:1] if "meninges" in sites else [])
    which = "Brain and leptomeningeal" if "meninges" in sites else "Brain"
    return [Draft("brain-metastasis", f"{which} metastases recorded: plan local therapy and CNS-active systemic therapy", facts, guidance)]


def oligometastatic(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """A single site of limited disease; never brain or leptomeningeal disease or a malignant effusion alone."""
    if not pic.metastatic or len(pic.sites) != 1 or pic.sites[0] in k.rule("oligometastatic")["not_for_sites"]:
        return []
    lesions = [m for m in pic.metastases if not m.regional]
    if len(lesions) > 5:
        return []
    return [Draft("oligometastatic", f"Metastatic disease at a single site ({pic.sites[0]}): discuss a multimodal approach if low-volume",
                  [sites_fact(pic), Fact(f"{len(lesions)} metastasis record(s); lesion count not recorded as data")],
                  k.rule("oligometastatic")["guidance"])]


def staging_workup(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    first = pic.metastasis_date
    if not pic.metastatic or first is None or (today - first).days > STAGING_WINDOW_DAYS or first > today:
        return []
    since = first - timedelta(days=STAGING_LOOKBACK_DAYS)
    if any(p["kind"] in STAGING_KINDS and p["date"] and p["date"] >= since for p in pic.procedures):
        return []
    rule = k.rule("staging-workup")
    facts = [sites_fact(pic), Fact(f"No CT of chest and abdomen, bone scan or PET-CT recorded since {since.isoformat()} (matched by procedure name: no verified code list exists)")]
    sr = service_request(rule["service_request_text"], pic.patient, pic.metastatic_evidence[:3])
    return [Draft("staging-workup", f"Metastasis first recorded {first.isoformat()}: no staging CT, bone scan or PET-CT recorded since", facts,
                  rule["guidance"], [create("Order staging CT and bone scan", sr)])]
