"""Care by where the disease is: bone, brain, a single site (oligometastatic), staging at first metastasis."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mappings.labs import albumin_g_dl, calcium_from_mg_dl, calcium_mg_dl, convert_calcium
from mappings.picture import ClinicalPicture, MedicationUse

from ..cards import Draft, Fact
from ..describe import receptor_lines, sites_fact, treatment_fact, when
from ..knowledge import Knowledge
from .common import create, service_request

STAGING_KINDS = {"staging-ct", "bone-scan", "pet-ct"}
STAGING_WINDOW_DAYS = 90
# Imaging that found the metastasis usually precedes the problem-list entry by days to weeks.
STAGING_LOOKBACK_DAYS = 30


BONE_SITES = {"bone", "bone-marrow"}


def oncology_dose(use: MedicationUse, rule: dict[str, Any]) -> bool | None:
    """True at an oncology dose of a bone-modifying agent, False at another dose, None when the dose is not recorded."""
    if use.ingredient in rule["any_dose"]:
        return True
    target = rule["oncology_doses_mg"].get(use.ingredient)
    mg = use.dose_mg()
    if target is None or mg is None:
        return None
    return abs(mg - target) <= rule["dose_tolerance"] * target


def _agent_fact(use: MedicationUse, dose_ok: bool | None, rule: dict[str, Any]) -> Fact:
    name = use.ingredient[0].upper() + use.ingredient[1:]
    target = rule["oncology_doses_mg"].get(use.ingredient)
    if target is None:  # an agent without an oncology dose in knowledge.yaml: named, not judged
        return Fact(f"{name} active since {when(use.start)}: no oncology dose known to check it against", [use.reference])
    if dose_ok is None:
        return Fact(f"{name} active since {when(use.start)}, dose not recorded: the {target:g} mg oncology dose cannot be told from an osteoporosis product", [use.reference])
    return Fact(f"{name} {use.dose_mg():g} mg active since {when(use.start)}: not the {target:g} mg oncology dose", [use.reference])


def bone_targeted_agent(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """Bone metastases need a bone-modifying agent at its oncology dose: denosumab 60 mg (Prolia) does not count."""
    if not (BONE_SITES & set(pic.sites)):
        return []
    rule = k.rule("bone-targeted-agent")
    active = [(u, oncology_dose(u, rule)) for u in pic.medication_uses if u.drug_class == "bone-modifying-agent" and u.active]
    if any(ok for _, ok in active):
        return []
    facts = [sites_fact(pic)]
    if active:
        facts += [_agent_fact(u, ok, rule) for u, ok in active]
        agents = ", ".join(sorted({f"{u.ingredient} {u.dose_mg():g} mg" if ok is False else f"{u.ingredient} (dose not recorded)" for u, ok in active}))
        text = f"Bone metastases on {agents}: not an oncology dose; consider denosumab 120 mg or zoledronic acid 4 mg"
    else:
        past = [t for t in pic.treatments if t.drug_class == "bone-modifying-agent"]
        facts.append(treatment_fact(past, "Bone-modifying agents") if past else Fact("No active bone-modifying agent (denosumab, zoledronic acid, pamidronate) recorded"))
        text = "Bone metastases without an active bone-modifying agent: consider denosumab or zoledronic acid"
    return [Draft("bone-targeted-agent", text, facts, rule["guidance"])]


_COMPLICATION_WORDS = {"spinal-cord-compression": "spinal cord compression", "pathological-fracture": "pathological fracture",
                       "hypercalcaemia": "hypercalcaemia"}


def _calcium_fact(pic: ClinicalPicture, rule: dict[str, Any]) -> Fact | None:
    """The latest calcium, corrected for albumin (Payne) where it is a total calcium, when it is above its upper limit."""
    calciums = [lab for lab in pic.labs if lab.test in ("calcium-total", "calcium-corrected") and lab.date]
    if not calciums:
        return None
    latest = max(calciums, key=lambda lab: (lab.date or date.min, lab.test == "calcium-corrected"))
    unit = latest.unit or ""
    value, what, how = latest.value, "Corrected calcium", ""
    refs = [latest.reference]
    if latest.test == "calcium-total":
        albumin = next((a for a in reversed(pic.labs) if a.test == "albumin" and a.date == latest.date), None)
        alb_g_dl = albumin_g_dl(albumin.value, albumin.unit) if albumin else None
        ca_mg_dl = calcium_mg_dl(latest.value, latest.unit)
        if albumin is not None and alb_g_dl is not None and ca_mg_dl is not None:
            fix = rule["calcium_correction"]
            corrected = calcium_from_mg_dl(ca_mg_dl + fix["adds_mg_dl_per_g_dl"] * (fix["reference_albumin_g_dl"] - alb_g_dl), latest.unit)
            value = corrected if corrected is not None else value
            how = f": total calcium {latest.value:g} {unit}, albumin {albumin.value:g} {albumin.unit or ''} the same day (Payne correction)"
            refs.append(albumin.reference)
        else:
            what = "Total calcium"
            how = f", not corrected for albumin: {'no albumin result the same day' if albumin is None else 'a unit was not understood'}"
    limit, limit_how = latest.high, "upper reference limit"
    if limit is None:
        limit = rule["calcium_upper_limit"].get(unit) or convert_calcium(rule["calcium_upper_limit"]["mmol/L"], "mmol/L", latest.unit)
        limit_how = "upper limit used when no reference range is reported"
    if limit is None or value <= limit:
        return None
    return Fact(f"{what} {value:.2f} {unit} on {when(latest.date)}, above the {limit_how} {limit:g} {unit}{how}", refs)


def bone_complication(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    """Bone metastases with a fracture, cord compression or hypercalcaemia: each needs action now."""
    if not (BONE_SITES & set(pic.sites)):
        return []
    rule = k.rule("bone-complication")
    facts: list[Fact] = []
    kinds: list[str] = []
    for c in pic.complications:
        how = "" if c.basis == "code" else " (read from its name)"
        facts.append(Fact(f"{_COMPLICATION_WORDS[c.kind].capitalize()} recorded {when(c.date)}{how}: {c.display}", [c.reference]))
        kinds.append(c.kind)
    calcium = _calcium_fact(pic, rule)
    if calcium:
        facts.append(calcium)
        kinds.append("hypercalcaemia")
    if not facts:
        return []
    order = [kind for kind in _COMPLICATION_WORDS if kind in kinds]
    text = f"Bone metastases with {', '.join(_COMPLICATION_WORDS[kind] for kind in order)}: urgent management"
    guidance = [rule["management"][kind] for kind in order]
    return [Draft("bone-complication", text, [sites_fact(pic), *facts], guidance)]


def brain_metastasis(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    cns = [m for m in pic.metastases if m.site in ("brain", "meninges") and not m.regional]
    if not cns:
        return []
    rule = k.rule("brain-metastasis")
    facts = [Fact(f"{'Leptomeningeal' if m.site == 'meninges' else 'Brain'} metastasis since {when(m.date)}", [m.reference]) for m in cns]
    facts += receptor_lines(pic)
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
