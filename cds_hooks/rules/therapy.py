"""Therapy options by subtype and line of therapy, and the resistance-risk flags.

The options, their order and their requirements are data (knowledge.yaml ``therapy_options``, the
order's source in ``therapy_order``); the line comes from the picture's lines of therapy
(mappings/lines.py). Each option's requirements are evaluated and shown; "given" is decided by
ingredient (after fulvestrant, elacestrant is not given); no option is kept that the receptor
status contradicts (safety.contradicts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from mappings.lines import CHEMOTHERAPY, ENDOCRINE, add_months, progression_on
from mappings.picture import ClinicalPicture, Progression, TherapyLine

from ..cards import Draft, Fact
from ..describe import SUBTYPE_WORDS, current_line_fact, early_treatment_fact, line_words, lower_first, nth, receptor_lines, when
from ..knowledge import Knowledge
from .common import class_of
from .safety import HER2_CLASSES, contradicts

THERAPY_EXTENSION = "mbc-cds-hooks.therapy-options"
EXTENSION_VERSION = "1"
POSITIVE = ("detected", "positive")
@dataclass
class Context:
    """What a requirement is checked against: the line the options are for and the lines before it."""

    line: int
    prior: list[TherapyLine]
    given: set[str]  # every agent given for metastatic disease (any line, the current one included)


def subtype_keys(pic: ClinicalPicture) -> set[str]:
    """The subtype, plus ER-low (ER 1-10%, HER2-negative), which also gets the triple-negative-type options."""
    keys = {pic.subtype}
    if pic.er.status == "low-positive" and pic.her2.status == "negative":
        keys.add("ER-low")
    return keys


def option_slots(option: dict[str, Any]) -> list[list[str]]:
    return [list(slot) for slot in option.get("regimen") or []] or [[a] for a in option.get("alternatives") or []]


def option_agents(option: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(a for slot in option_slots(option) for a in slot))


def her2_categories(pic: ClinicalPicture) -> set[str]:
    """HER2 categories seen in any sample: HER2-low qualified on any prior sample (DESTINY-Breast04; oncology.md §6.8)."""
    found = {pic.her2.category}
    not_amplified = {r.sample_key for r in pic.receptor_history if r.marker == "HER2" and r.her2_ish == "not-amplified"}
    for r in pic.receptor_history:
        if r.marker != "HER2" or r.status == "positive":
            continue
        if r.ultralow:
            found.add("ultralow")
        if r.her2_ihc == "1+" or (r.her2_ihc == "2+" and r.sample_key in not_amplified):
            found.add("low")
    return found


def _classes_given(lines: list[TherapyLine]) -> set[str]:
    return {c for line in lines for c in line.classes}


def _adjuvant_relapse_within(pic: ClinicalPicture, months: int) -> bool:
    relapse = pic.metastasis_date
    if relapse is None:
        return False
    for regimen in pic.early_treatment:
        if set(regimen.classes) & ENDOCRINE and regimen.start and regimen.start <= relapse:
            if regimen.end is None or relapse <= add_months(regimen.end, months):
                return True
    return False


def requirement_met(req: dict[str, Any], pic: ClinicalPicture, ctx: Context) -> bool:
    """One requirement of knowledge.yaml; an unknown or missing fact never counts as met."""
    if "biomarker" in req:
        return any(b.result in POSITIVE for b in pic.biomarker(*req["biomarker"]))
    if "germline" in req:
        return any(b.result in POSITIVE and b.germline is not False for b in pic.biomarker(req["germline"]))
    if "pdl1_cps_min" in req:
        return any((b.score_type or "").upper() == "CPS" and b.value is not None and b.value >= req["pdl1_cps_min"]
                   for b in pic.biomarker("PD-L1"))
    if "her2" in req:
        return bool(her2_categories(pic) & set(req["her2"]))
    if "menopause" in req:
        return pic.menopause == req["menopause"]
    if "adjuvant_relapse_within_months" in req:
        return _adjuvant_relapse_within(pic, int(req["adjuvant_relapse_within_months"]))
    if "prior" in req or "no_prior" in req:
        wanted = set(req.get("prior") or req.get("no_prior") or [])
        lines = ctx.prior + (pic.early_treatment if req.get("setting") == "any" else [])
        given = bool(_classes_given(lines) & wanted)
        return given if "prior" in req else not given
    if "endocrine_resistance" in req:
        return pic.endocrine_resistance in req["endocrine_resistance"]
    if "further_lines" in req:
        endocrine_line = any(set(line.classes) & ENDOCRINE for line in ctx.prior)
        return len(ctx.prior) - (1 if endocrine_line else 0) >= int(req["further_lines"])
    raise ValueError(f"knowledge.yaml: unknown requirement {req}")


def _applies(option: dict[str, Any], pic: ClinicalPicture, keys: set[str], line: int) -> bool:
    first, last = option["lines"]
    if not keys & set(option["subtypes"]) or line < first or (last is not None and line > last):
        return False
    sex = option.get("sex")
    male = pic.gender == "male"
    return sex is None or (sex == "male") == male


def evaluate_option(option: dict[str, Any], pic: ClinicalPicture, ctx: Context, k: Knowledge) -> dict[str, Any] | None:
    """The contract's option object (plus ``text`` for the card), or None when it does not apply or the
    receptor status contradicts one of its agents."""
    agents = option_agents(option)
    if any(contradicts([class_of(a)], pic, a) for a in agents):
        return None  # safety net: the knowledge file must never make this happen
    given_agents = [a for a in agents if a in ctx.given]
    if option.get("alternatives"):
        given = set(agents) <= ctx.given
    else:
        given = all(any(a in ctx.given for a in slot) for slot in option_slots(option))
    checked = [(r, requirement_met(r, pic, ctx)) for r in option.get("requires") or []]
    requires = [(r["text"], ok) for r, ok in checked]
    # Not for this patient at all (a known, other menopausal status): kept in the extension, not in the card text.
    other_status = any(not ok and "menopause" in r and pic.menopause != "unknown" for r, ok in checked)
    blocked = [a for a in given_agents if a not in (option.get("reuse") or [])]
    if blocked and not given and not option.get("alternatives"):
        requires.append((f"not given before for metastatic disease: {', '.join(blocked)}", False))
    out: dict[str, Any] = {
        "id": option["id"], "agents": agents, "classes": sorted({class_of(a) for a in agents}),
        "requires": [text for text, _ in requires], "met": all(ok for _, ok in requires), "given": given,
        "givenAgents": given_agents, "evidence": option["evidence"], "source": k.source(option["source"])["label"],
        "text": option["text"], "unmet": [text for text, ok in requires if not ok], "hide": other_status,
    }
    return out


def options_for(line: int, pic: ClinicalPicture, k: Knowledge) -> list[dict[str, Any]]:
    """Every applicable option for ``line``, in the order of knowledge.yaml."""
    ctx = Context(line, [ln for ln in pic.lines if ln.line < line], {a for ln in pic.lines for a in ln.agents})
    keys = subtype_keys(pic)
    found = [evaluate_option(o, pic, ctx, k) for o in k.therapy_options if _applies(o, pic, keys, line)]
    return [o for o in found if o is not None]


def where(pic: ClinicalPicture) -> tuple[int, TherapyLine | None, Progression | None]:
    """(the line the options are for, the line the patient is on now, the progression on it if any)."""
    current = pic.current_line
    if current is None:
        return 1, None, None
    if not current.ongoing:
        return current.line + 1, None, None
    progressed = progression_on(current, pic.progressions)
    if progressed:
        return current.line + 1, current, progressed[-1]
    return current.line, current, None


def public(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in o.items() if key not in ("text", "unmet", "hide")} for o in options]


def _name(o: dict[str, Any]) -> str:
    return str(o["text"]).split(" (")[0]


def _describe(o: dict[str, Any]) -> str:
    mark = ""
    if o["given"]:
        mark = " (given)"
    elif o["givenAgents"]:
        mark = f" ({', '.join(o['givenAgents'])} given before)"
    return f"{o['text']} [{o['evidence']}]{mark}"


def _listing(title: str, options: list[dict[str, Any]], shown: int = 3) -> list[str]:
    """Offered options numbered in order (one list), then the rest by name; what each unmet option
    misses is in the extension."""
    offered = [o for o in options if o["met"] and not o["given"]]
    if not offered:
        out = [f"{title} none with every requirement met."]
    else:
        out = [title + "\n" + "\n".join(f"{i + 1}. {_describe(o)}" for i, o in enumerate(offered[:shown]))]
    if len(offered) > shown:
        out.append(f"Also offered: {', '.join(lower_first(_name(o)) for o in offered[shown:])}.")
    unmet = [lower_first(_name(o)) for o in options if not o["met"] and not o["hide"]]
    if unmet:
        more = f" and {len(unmet) - 3} more" if len(unmet) > 3 else ""
        out.append(f"A requirement not met: {', '.join(unmet[:3])}{more}.")
    return out


def _facts(pic: ClinicalPicture, on_line: TherapyLine | None, progressed: Progression | None) -> list[Fact]:
    # The subtype the options rest on, in the summary card's own words: the card economy shows the
    # line once (in the summary), while the card on its own (explain, the viewer) still carries it.
    facts: list[Fact] = receptor_lines(pic)
    if pic.lines and (on_line is None or on_line is pic.lines[-1]):
        facts.append(current_line_fact(pic))  # the summary's own words: shown once when both cards are
    elif on_line is not None:
        facts.append(Fact(f"Current: {nth(on_line.line)} line {line_words(on_line)}", on_line.evidence[:2]))
    else:
        facts.append(Fact(f"No treatment for metastatic disease recorded since the first metastasis ({when(pic.metastasis_date)})",
                          pic.metastatic_evidence[:3]))
    if progressed is not None:
        facts.append(Fact(f"Progression on {when(progressed.date)} ({progressed.kind.replace('-', ' ')}) during the {nth(on_line.line if on_line else 1)} line",
                          progressed.evidence[:2]))
    earlier = [ln for ln in pic.lines if on_line is None or ln.line < on_line.line]
    if on_line is None and pic.lines:
        earlier = pic.lines[:-1]
    if earlier:
        facts.append(Fact("Earlier lines: " + "; ".join(f"{nth(ln.line)} {line_words(ln)}" for ln in earlier),
                          [r for ln in earlier for r in ln.evidence[:1]]))
    if pic.early_treatment:
        facts.append(early_treatment_fact(pic))
    if pic.metastatic and pic.metastasis_date is None and pic.lines:
        facts.append(Fact("Date of first metastasis not recorded: every regimen without curative intent is counted as a line"))
    return facts


def therapy_options(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    if not pic.metastatic or pic.subtype == "unknown":
        return []
    rule = k.rule("therapy-options")
    line, on_line, progressed = where(pic)
    options = options_for(line, pic, k)
    next_options = options_for(line + 1, pic, k) if on_line is not None and progressed is None else None
    facts = _facts(pic, on_line, progressed)
    notes = rule["notes"]
    male = pic.gender == "male"
    if male and pic.hr_status == "positive":
        facts.append(Fact(notes["male"]))
    elif pic.menopause == "unknown" and pic.hr_status == "positive":
        facts.append(Fact(notes["menopause-unknown"]))
    if "ER-low" in subtype_keys(pic):
        pdl1 = pic.biomarker("PD-L1")
        facts.append(Fact(notes["er-low"].format(percent=f"{pic.er.percent:g}%" if pic.er.percent is not None else "1-10%",
                                                 pdl1="PD-L1 result recorded" if pdl1 else "no PD-L1 result"), pic.er.evidence))
    if next_options is not None:
        # On a line now: its options are in the extension; the card says what to consider at progression.
        guidance = _listing(f"At progression consider ({nth(line + 1)} line):", next_options)
    else:
        guidance = _listing(f"Options for the {nth(line)} line:", options)
    guidance.append(k.therapy_order["text"])
    listed = next_options if next_options is not None else options
    if any(set(o["classes"]) & CHEMOTHERAPY for o in listed if o["met"] and not o["given"]):
        guidance += rule["guidance"]  # sequential single agents: only where chemotherapy is offered
    shown = [o for o in (next_options if next_options is not None else options) if o["met"] and not o["given"]]
    names = ", ".join(lower_first(_name(o)) for o in shown[:3]) or "no option with every requirement met"
    subtype = SUBTYPE_WORDS[pic.subtype]
    if next_options is not None and on_line is not None:
        summary = f"{subtype[0].upper()}{subtype[1:]}: {nth(line)} line since {when(on_line.start)[:7]}; at progression consider {names}"
    else:
        summary = f"{subtype[0].upper()}{subtype[1:]}: {nth(line)}-line options: {names}"
    basis = list(dict.fromkeys([r for ln in pic.lines if ln.line <= line for r in ln.evidence[:2]]
                               + (progressed.evidence if progressed else [])
                               + [r for ln in pic.lines if ln.basis == "progression" for r in _opening(pic, ln)])) or pic.metastatic_evidence[:3]
    extension: dict[str, Any] = {"version": EXTENSION_VERSION, "line": line, "lineBasis": basis, "options": public(options)}
    if next_options is not None:
        extension["nextOptions"] = public(next_options)
    key = ",".join(o["id"] for o in options + (next_options or []) if o["met"])
    return [Draft("therapy-options", summary, facts, guidance, key=key, extension={THERAPY_EXTENSION: extension})]


def _opening(pic: ClinicalPicture, line: TherapyLine) -> list[str]:
    """The progression records that opened ``line``."""
    before = [ln for ln in pic.lines if ln.line == line.line - 1]
    if not before or before[0].start is None or line.start is None:
        return []
    start = before[0].start
    return [r for p in pic.progressions if p.date and start < p.date <= line.start for r in p.evidence]


def resistance_risk(pic: ClinicalPicture, k: Knowledge, today: date) -> list[Draft]:
    # A flag about resistance to treatment of metastatic disease: an early, long-treated
    # triple-negative cancer would otherwise raise a flag on every chart opening.
    if not pic.metastatic:
        return []
    rule = k.rule("resistance-risk")
    reasons: list[tuple[str, Fact]] = []
    if pic.subtype == "TNBC":
        reasons.append(("tnbc", Fact("Triple-negative: ER, PR and HER2 negative", pic.er.evidence + pic.pr.evidence + pic.her2.evidence)))
    anti_her2 = [ln for ln in pic.lines if set(ln.classes) & HER2_CLASSES]
    if pic.her2.status == "positive" and len(anti_her2) >= 2:
        text = "; ".join(f"{nth(ln.line)} line {' + '.join(ln.agents)} from {when(ln.start)}" for ln in anti_her2)
        reasons.append(("her2-pretreated", Fact(f"Anti-HER2 lines for metastatic disease: {text}", [r for ln in anti_her2 for r in ln.evidence[:1]])))
    if pic.endocrine_resistance in ("primary", "secondary"):
        code = f"endocrine-{pic.endocrine_resistance}"
        reasons.append((code, Fact(f"{pic.endocrine_resistance.capitalize()} endocrine resistance: {pic.endocrine_resistance_basis}",
                                   pic.endocrine_resistance_evidence)))
    if pic.grade and pic.grade.value == 3:
        reasons.append(("high-grade", Fact(f"Histologic grade 3 ({when(pic.grade.date)})", [pic.grade.reference])))
    if not reasons:
        return []
    guidance = [rule["reasons"][code] for code, _ in reasons] + rule["guidance"]
    labels = {"tnbc": "triple-negative", "her2-pretreated": "HER2+ after 2 or more anti-HER2 lines",
              "endocrine-primary": "primary endocrine resistance", "endocrine-secondary": "secondary endocrine resistance",
              "high-grade": "grade 3"}
    return [Draft("resistance-risk", f"Higher-risk disease: {', '.join(labels[c] for c, _ in reasons)}", [f for _, f in reasons], guidance)]
